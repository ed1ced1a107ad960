"""Attribute helpers shared by the per-granule product (core.products.granule_netcdf) and the
request-level one (core.products.request_outputs), so both say the same things the same way:
the product's name and version, text without secrets, ISO 8601 times, the ACDD date, history
and coverage attributes, and the CF flag table of an index variable.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np

PRODUCT_NAME = "atl07-sst-colocation"  # also the distribution name (package_version)
CONVENTIONS = "CF-1.8, ACDD-1.3"
MAX_TEXT_CHARS = 8000  # a joined list of warnings is cut here: an attribute, not a log
_URL = re.compile(r"(?P<keep>[a-z][a-z0-9+.-]*://(?:[^\s/@?#]*@)?[^\s?#]*)(?P<drop>[?#][^\s,;]*)?", re.I)
_USERINFO = re.compile(r"(?<=://)[^\s/@?#]*@")
_FLAG_WORD = re.compile(r"[^A-Za-z0-9_.+@-]")
SYNTHETIC = "synthetic"  # core.config.Settings.data_mode of the offline sandbox
SYNTHETIC_TITLE_PREFIX = "SYNTHETIC (offline sandbox, not NASA data): "


def mark_synthetic(attrs: dict[str, Any], data_mode: str | None) -> dict[str, Any]:
    """A product made from the sandbox's synthetic scene says so in its title and ``data_mode``
    (real granule names and DOIs are in it too: without the mark it would pass for NASA data)."""
    if data_mode == SYNTHETIC:
        title = str(attrs.get("title", ""))
        attrs["title"] = title if title.startswith(SYNTHETIC_TITLE_PREFIX) else SYNTHETIC_TITLE_PREFIX + title
        attrs["data_mode"] = SYNTHETIC
        attrs["data_mode_comment"] = ("made in the offline development sandbox from a synthetic scene: the granule "
                                      "names and references are borrowed, the values are not measurements")
    return attrs


def package_version() -> str:
    try:
        from importlib.metadata import version

        return version(PRODUCT_NAME)
    except Exception:  # not installed (plain checkout on sys.path)
        return "0.1.0"


def scrub(value: str) -> str:
    """Drop URL query strings/fragments (presigned signatures) and user:password@ parts."""
    value = _URL.sub(lambda m: m.group("keep"), str(value))
    return _USERINFO.sub("", value)


def joined(items: Iterable[str]) -> str:
    """The distinct ``items`` in order, "; "-joined, scrubbed, at most MAX_TEXT_CHARS."""
    return scrub("; ".join(dict.fromkeys(items)))[:MAX_TEXT_CHARS]


def iso(t: np.datetime64) -> str:
    us = t.astype("datetime64[us]")
    return np.datetime_as_string(us, unit="us") + "Z"


def iso_duration(seconds: float) -> str:
    return f"PT{seconds:.6f}".rstrip("0").rstrip(".") + "S"


def lon_range(lon: np.ndarray) -> tuple[float, float]:
    """West and east edge of the smallest arc holding every longitude (west > east across 180)."""
    s = np.sort(((lon + 180.0) % 360.0) - 180.0)
    if s.size == 1:
        return float(s[0]), float(s[0])
    gaps = np.diff(np.concatenate([s, [s[0] + 360.0]]))
    i = int(np.argmax(gaps))
    if i == s.size - 1:  # largest gap is the one across +/-180: ordinary range
        return float(s[0]), float(s[-1])
    return float(s[i + 1]), float(s[i])


def flag_word(text: str) -> str:
    """``text`` as one word of a CF flag_meanings list (blank-separated)."""
    return _FLAG_WORD.sub("_", text)


def index_flags(names: Sequence[str], dtype: Any) -> dict[str, Any]:
    """The CF flag enumeration of an index into ``names``: -1 no_match, then 0, 1, … one per name."""
    return {"flag_values": np.arange(-1, len(names), dtype=dtype),
            "flag_meanings": " ".join(["no_match"] + [flag_word(s) for s in names])}


def utc_stamp(now: datetime) -> str:
    """``now`` (UTC) as the product's date attributes and history lines give it."""
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def date_attrs(created: str) -> dict[str, str]:
    """ACDD creation, modification and issue dates: all the time the file is made."""
    return {"date_created": created, "date_modified": created, "date_issued": created,
            "date_metadata_modified": created}


def history_entry(created: str, version: str, what: str) -> str:
    """One line of the ``history`` attribute: when, which software, what it did."""
    return f"{created} {PRODUCT_NAME} {version}: {what}"


def coverage_attrs(lat_min: float, lat_max: float, west: float, east: float,
                   t0: np.datetime64, t1: np.datetime64) -> dict[str, Any]:
    """ACDD geospatial and time coverage (``west`` > ``east`` across the antimeridian)."""
    return dict(
        geospatial_lat_min=float(lat_min), geospatial_lat_max=float(lat_max),
        geospatial_lon_min=west, geospatial_lon_max=east,
        time_coverage_start=iso(t0), time_coverage_end=iso(t1),
        time_coverage_duration=iso_duration((t1 - t0) / np.timedelta64(1, "s")),
    )
