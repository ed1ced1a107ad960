"""CF-1.8 / ACDD-1.3 trajectory netCDF of ATL07 segments with their colocated L2P SST.

Layout (CF §9.3.3 contiguous ragged array, ``featureType = "trajectory"``):

* dimension ``trajectory`` — one per ATL07 granule × beam, in the order of ``tracks``:
  ``trajectory_id`` (cf_role), ``atl07_granule``, ``beam``, ``beam_strength``,
  ``height_segment_quality_source``, ``rowSize`` (``sample_dimension = "obs"``).
* dimension ``obs`` — every segment with a valid location and time, matched or not, grouped
  by trajectory: ``time`` ``lat`` ``lon`` (coordinates), the ATL07 segment fields and the
  ``sst*`` match fields (fill where unmatched).
* dimension ``sst_source`` — one per L2P granule: ``sst_source_name`` (string).
  ``sst_granule(obs)`` is a 0-based int32 index into it, -1 = no match (declared as a CF flag
  enumeration ``flag_values = -1 0 1 …``, ``flag_meanings = no_match <granule names>``, and no
  _FillValue, so xarray keeps it an integer). An index rather than a string per observation
  keeps the file small, and every reader (netCDF4, xarray, the IOOS checker) handles it.

Fill values: float variables NaN; ``height_segment_quality``/``_type`` -1, ``sst_quality_level``
-1, ``sst_l2p_flags`` -1, ``height_segment_id`` -1 (xarray decodes these to float with NaN).
``time`` is float64 "microseconds since 2018-01-01" (exact to the microsecond; CF-1.8 has no
int64). ``sst_dt``/``sst_distance`` are auxiliary coordinates of ``sst`` (where/when it was
sampled relative to the segment); ``height_segment_id`` of ``height_segment_height``.

Written with h5netcdf (what the Lambda layer ships); netCDF4 and xarray read it unchanged.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr

from core.config import MODIS_L2P_COLLECTION
from core.atomic import atomic_path
from core.model import FLAGS_FILL, QL_FILL, Track

log = logging.getLogger(__name__)

PRODUCT_NAME = "atl07-sst-colocation"
NAMING_AUTHORITY = "atl07-sst-colocation"
# Names used here exist in every recent table; declaring the version the IOOS checker bundles
# keeps it from fetching another table over the network.
STANDARD_NAME_VOCABULARY = "CF Standard Name Table v93"
# The ATLAS SDP epoch, in UTC. float64 microseconds: exact integers to 2^53 us (~285 years), and
# CF-1.8 has no 64-bit integer type.
TIME_UNITS = "microseconds since 2018-01-01 00:00:00"
ATL07_DOI_DEFAULT = "https://doi.org/10.5067/ATLAS/ATL07.006"
SST_DOI_DEFAULT = "https://doi.org/10.5067/GHMDA-2PJ19"  # MODIS_A-JPL-L2P-v2019.0

GHRSST_QL_FLAG_VALUES = np.arange(6, dtype=np.int8)
GHRSST_QL_FLAG_MEANINGS = "no_data bad_data worst_quality low_quality acceptable_quality best_quality"
# GDS 2.0 generic l2p_flags bits; bits 5-15 are product specific.
GHRSST_L2P_FLAG_MASKS = np.array([1, 2, 4, 8, 16], dtype=np.int16)
GHRSST_L2P_FLAG_MEANINGS = "microwave land ice lake river"
# ATL07 flag tables by source variable (heights/...), as documented in the granules.
ATL07_QUALITY_FLAGS = {
    "heights/height_segment_quality": ([0, 1], "bad_quality good_quality"),
    "heights/height_segment_fit_quality_flag": ([1, 2, 3, 4, 5], "best high med low poor"),
}
ATL07_TYPE_FLAG_VALUES = np.arange(10, dtype=np.int16)
ATL07_TYPE_FLAG_MEANINGS = (
    "cloud_covered other specular_lead_low_w_bkg specular_lead_low specular_lead_high_w_bkg "
    "specular_lead_high dark_lead_smooth_w_bkg dark_lead_smooth dark_lead_rough_w_bkg dark_lead_rough"
)
_FLAG_WORD = re.compile(r"[^A-Za-z0-9_.+@-]")

# Processing parameters copied into global attributes as ``colocation_<name>``.
_PARAM_ATTRS = {
    "radius_m": "colocation_radius_m",
    "max_dt_s": "colocation_max_dt_s",
    "min_quality_level": "colocation_min_quality_level",
    "atl07_collection": "atl07_collection",
    "sst_collection": "sst_collection",
    "bbox": "colocation_bbox",
    "start": "request_start",
    "end": "request_end",
    "date": "request_date",
}
# Caller-overridable ACDD attributes (params may carry them, e.g. from Settings).
_OVERRIDABLE = (
    "title", "summary", "keywords", "institution", "project", "license", "naming_authority",
    "creator_name", "creator_email", "creator_url", "creator_type", "creator_institution",
    "publisher_name", "publisher_email", "publisher_url", "publisher_type", "product_version",
)
_SECRET_KEY = re.compile(r"token|passw|secret|credential|access_?key|session|auth|cookie", re.I)
_URL = re.compile(r"(?P<keep>[a-z][a-z0-9+.-]*://(?:[^\s/@?#]*@)?[^\s?#]*)(?P<drop>[?#][^\s,;]*)?", re.I)
_USERINFO = re.compile(r"(?<=://)[^\s/@?#]*@")


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version(PRODUCT_NAME)
    except Exception:  # not installed (plain checkout on sys.path)
        return "0.1.0"


def scrub(value: str) -> str:
    """Drop URL query strings/fragments (presigned signatures) and user:password@ parts."""
    value = _URL.sub(lambda m: m.group("keep"), str(value))
    return _USERINFO.sub("", value)


def _basename(source: str) -> str:
    """Granule name from a path, s3:// or https:// URL (never the query string)."""
    clean = scrub(source).rstrip("/")
    return clean.rsplit("/", 1)[-1]


def _iso(t: np.datetime64) -> str:
    us = np.datetime64(t, "us")
    return np.datetime_as_string(us, unit="us") + "Z"


def _iso_duration(seconds: float) -> str:
    return f"PT{seconds:.6f}".rstrip("0").rstrip(".") + "S"


def _lon_range(lon: np.ndarray) -> tuple[float, float]:
    """West and east edge of the smallest arc holding every longitude (west > east across 180)."""
    s = np.sort(((lon + 180.0) % 360.0) - 180.0)
    if s.size == 1:
        return float(s[0]), float(s[0])
    gaps = np.diff(np.concatenate([s, [s[0] + 360.0]]))
    i = int(np.argmax(gaps))
    if i == s.size - 1:  # largest gap is the one across +/-180: ordinary range
        return float(s[0]), float(s[-1])
    return float(s[i + 1]), float(s[i])


def _valid(track: Track) -> np.ndarray:
    seg = track.segments
    return (
        ~np.isnat(np.asarray(seg.time, dtype="datetime64[ns]"))
        & np.isfinite(seg.lat)
        & np.isfinite(seg.lon)
        & (np.abs(seg.lat) <= 90.0)
    )


def _check(track: Track, n_sources: int) -> None:
    seg, m = track.segments, track.matches
    n = len(seg)
    for name in ("time", "lon", "height_segment_id", "height", "quality", "segment_type"):
        if np.shape(getattr(seg, name))[0] != n:
            raise ValueError(f"{seg.granule} {seg.beam}: segments.{name} has length "
                             f"{np.shape(getattr(seg, name))[0]}, expected {n}")
    for name in ("sst", "distance_m", "dt_s", "quality_level", "l2p_flags", "granule_index"):
        if np.shape(getattr(m, name))[0] != n:
            raise ValueError(f"{seg.granule} {seg.beam}: matches.{name} has length "
                             f"{np.shape(getattr(m, name))[0]}, expected {n}")
    gi = np.asarray(m.granule_index)
    if gi.size and (gi.max() >= n_sources or gi.min() < -1):
        raise ValueError(f"{seg.granule} {seg.beam}: matches.granule_index outside "
                         f"[-1, {n_sources - 1}] (the sst_granules list)")


def _int32(values: np.ndarray, name: str) -> np.ndarray:
    if values.size and (values.min() < np.iinfo(np.int32).min or values.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{name} does not fit in int32 (CF-1.8 has no 64-bit integers)")
    return values.astype(np.int32)


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def _flat_attrs(prefix: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        name = re.sub(r"[^A-Za-z0-9_]", "_", f"{prefix}{key}")
        if _SECRET_KEY.search(str(key)) or (isinstance(value, (str, bytes)) and "SET_BY_META" in str(value)):
            continue
        if isinstance(value, Mapping):
            out.update(_flat_attrs(name + "_", value))
        elif isinstance(value, bytes):
            out[name] = scrub(value.decode("utf-8", "replace"))
        elif isinstance(value, (str, int, float, np.integer, np.floating)) and not isinstance(value, bool):
            out[name] = scrub(value) if isinstance(value, str) else value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
            out[name] = scrub(", ".join(str(v) for v in value))
    return out


def build_dataset(
    tracks: list[Track],
    sst_granules: list[str],
    params: dict,
    *,
    atl07_attrs: dict | None = None,
    history: str | None = None,
    request_id: str | None = None,
    now: datetime | None = None,
) -> xr.Dataset:
    """The output product for ``tracks`` (one trajectory each) matched against ``sst_granules``.

    ``sst_granules`` lists the L2P inputs in the order ``Matches.granule_index`` refers to
    (names, paths or URLs: only the file name is kept). ``params``: radius_m, max_dt_s,
    min_quality_level, atl07_collection, sst_collection, bbox, start/end (all optional) plus
    optional ACDD overrides (title, creator_name, license, ...). ``atl07_attrs``: metadata from
    the ATL07 reader, kept as ``atl07_<key>`` attributes. Segments without a valid time or
    location are dropped (counted in ``segments_dropped_invalid_location_or_time``); times are
    rounded to the microsecond. Zero tracks or zero matches still give a valid dataset.
    """
    params = dict(params or {})
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    sources = [_basename(s) for s in sst_granules]
    for t in tracks:
        _check(t, len(sources))

    masks = [_valid(t) for t in tracks]
    row_size = np.array([int(m.sum()) for m in masks], dtype=np.int32)
    dropped = int(sum(len(t.segments) for t in tracks) - row_size.sum())

    def obs(get, dtype):
        return _concat([np.asarray(get(t))[m] for t, m in zip(tracks, masks)], dtype)

    ns = obs(lambda t: t.segments.time, "datetime64[ns]").astype(np.int64)
    time = (((ns + 500) // 1000) * 1000).astype("datetime64[ns]")  # nearest microsecond
    lat = obs(lambda t: t.segments.lat, np.float64)
    lon = obs(lambda t: t.segments.lon, np.float64)
    lon = ((lon + 180.0) % 360.0) - 180.0
    sst_index = obs(lambda t: t.matches.granule_index, np.int32)
    matched = sst_index >= 0

    def when_matched(values: np.ndarray, fill) -> np.ndarray:
        # a match field is meaningless without a matched pixel: force the fill
        return np.where(matched, values, fill).astype(values.dtype, copy=False)

    str_dt = object  # python str objects: written as netCDF variable-length strings
    traj = "trajectory"
    q_sources = {t.segments.quality_source for t in tracks}
    q_flags = ATL07_QUALITY_FLAGS.get(q_sources.pop()) if len(q_sources) == 1 else None
    # mixed or unknown sources: no flag table to declare, so it is a dimensionless number
    quality_flags = ({"flag_values": np.array(q_flags[0], np.int16), "flag_meanings": q_flags[1]}
                     if q_flags else {"units": "1"})
    data_vars: dict[str, tuple] = {
        "trajectory_id": (traj, np.array([f"{t.segments.granule}:{t.segments.beam}" for t in tracks], dtype=str_dt), {
            "cf_role": "trajectory_id",
            "long_name": "ATL07 granule and beam",
        }),
        "atl07_granule": (traj, np.array([t.segments.granule for t in tracks], dtype=str_dt), {
            "long_name": "ATL07 source granule file name",
        }),
        "beam": (traj, np.array([t.segments.beam for t in tracks], dtype=str_dt), {
            "long_name": "ATLAS ground track (gt1l ... gt3r)",
        }),
        "beam_strength": (traj, np.array([t.segments.strength for t in tracks], dtype=str_dt), {
            "long_name": "beam energy from orbit_info/sc_orient: strong, weak or unknown",
        }),
        "height_segment_quality_source": (traj, np.array([t.segments.quality_source for t in tracks], dtype=str_dt), {
            "long_name": "ATL07 variable height_segment_quality was read from",
        }),
        "rowSize": (traj, row_size, {
            "long_name": "number of observations for this trajectory",
            "sample_dimension": "obs",
        }),
        "height_segment_id": ("obs", _int32(obs(lambda t: t.segments.height_segment_id, np.int64), "height_segment_id"), {
            "long_name": "ATL07 height segment identifier",
            "comment": "-1 where the source granule has no height_segment_id",
            "coverage_content_type": "referenceInformation",
        }),
        "height_segment_height": ("obs", obs(lambda t: t.segments.height, np.float32), {
            "long_name": "ATL07 height of segment surface",
            "standard_name": "height_above_mean_sea_level",
            "units": "m",
            "comment": "ATL07 heights/height_segment_height: mean height from the along-track "
                       "segment fit, relative to the mean sea surface",
            "coverage_content_type": "physicalMeasurement",
        }),
        "height_segment_quality": ("obs", obs(lambda t: t.segments.quality, np.int16), {
            "long_name": "ATL07 height segment quality flag",
            "standard_name": "quality_flag",
            **quality_flags,
            "comment": "copied from the ATL07 variable named in height_segment_quality_source "
                       "(heights/height_segment_quality: 1 good, 0 bad)",
            "coverage_content_type": "qualityInformation",
        }),
        "height_segment_type": ("obs", obs(lambda t: t.segments.segment_type, np.int16), {
            "long_name": "ATL07 segment surface type",
            "flag_values": ATL07_TYPE_FLAG_VALUES,
            "flag_meanings": ATL07_TYPE_FLAG_MEANINGS,
            "comment": "heights/height_segment_type; flag table as in the ATL07 data dictionary",
            "coverage_content_type": "referenceInformation",
        }),
        "sst": ("obs", when_matched(obs(lambda t: t.matches.sst, np.float32), np.float32(np.nan)), {
            "long_name": "colocated GHRSST L2P sea surface skin temperature",
            "standard_name": "sea_surface_skin_temperature",
            "units": "K",
            "comment": "nearest valid L2P pixel within colocation_radius_m and colocation_max_dt_s "
                       "with quality_level >= colocation_min_quality_level; fill where none",
            "coverage_content_type": "physicalMeasurement",
        }),
        "sst_distance": ("obs", when_matched(obs(lambda t: t.matches.distance_m, np.float32), np.float32(np.nan)), {
            "long_name": "great-circle distance from segment to matched SST pixel centre",
            "units": "m",
            "coverage_content_type": "auxiliaryInformation",
        }),
        "sst_dt": ("obs", when_matched(obs(lambda t: t.matches.dt_s, np.float64), np.nan), {
            "long_name": "matched SST pixel time minus segment time",
            "standard_name": "time_sample_difference_due_to_collocation",
            "units": "s",
            "comment": "pixel time is L2P time + sst_dtime",
            "coverage_content_type": "auxiliaryInformation",
        }),
        "sst_quality_level": ("obs", when_matched(obs(lambda t: t.matches.quality_level, np.int8), QL_FILL), {
            "long_name": "GHRSST quality level of matched SST pixel",
            "flag_values": GHRSST_QL_FLAG_VALUES,
            "flag_meanings": GHRSST_QL_FLAG_MEANINGS,
            "valid_min": np.int8(0),
            "valid_max": np.int8(5),
            "coverage_content_type": "qualityInformation",
        }),
        "sst_l2p_flags": ("obs", when_matched(obs(lambda t: t.matches.l2p_flags, np.int16), FLAGS_FILL), {
            "long_name": "GHRSST L2P flags of matched SST pixel",
            "flag_masks": GHRSST_L2P_FLAG_MASKS,
            "flag_meanings": GHRSST_L2P_FLAG_MEANINGS,
            "comment": "GDS 2.0 generic bits shown; bits 5-15 are specific to the L2P product",
            "coverage_content_type": "qualityInformation",
        }),
        "sst_granule": ("obs", sst_index, {
            "long_name": "index of the L2P granule the SST came from",
            # an enumeration: plain integers for every reader, names for CF-aware ones
            "flag_values": np.arange(-1, len(sources), dtype=np.int32),
            "flag_meanings": " ".join(["no_match"] + [_FLAG_WORD.sub("_", s) for s in sources]),
            "comment": "0-based index into sst_source_name (exact file names); -1 where no match",
            "coverage_content_type": "referenceInformation",
        }),
        "sst_source_name": ("sst_source", np.array(sources, dtype=str_dt), {
            "long_name": "GHRSST L2P source granule file name",
        }),
    }
    coords = {
        "time": ("obs", time, {"standard_name": "time", "long_name": "segment time (UTC)", "axis": "T"}),
        "lat": ("obs", lat, {"standard_name": "latitude", "long_name": "segment centre latitude",
                             "units": "degrees_north", "axis": "Y"}),
        "lon": ("obs", lon, {"standard_name": "longitude", "long_name": "segment centre longitude",
                             "units": "degrees_east", "axis": "X"}),
    }
    ds = xr.Dataset(data_vars=data_vars, coords=coords)

    # --- encoding: explicit fill values so every reader masks the same way -----------------
    fills = {
        "height_segment_id": np.int64(-1), "height_segment_height": np.float32(np.nan),
        "height_segment_quality": np.int16(-1), "height_segment_type": np.int16(-1),
        "sst": np.float32(np.nan), "sst_distance": np.float32(np.nan), "sst_dt": np.float64(np.nan),
        "sst_quality_level": QL_FILL, "sst_l2p_flags": FLAGS_FILL,
    }
    for name, var in ds.variables.items():
        var.encoding["_FillValue"] = fills.get(name)  # None: no fill for coordinates/ids
        if var.dtype == object:
            var.encoding["dtype"] = str
        elif var.dims == ("obs",) and var.size:
            var.encoding.update(zlib=True, complevel=4, shuffle=True)
    ds["time"].encoding.update(units=TIME_UNITS, calendar="standard", dtype="float64")
    # segment id labels the observation; distance and time offset say where and when the SST
    # sample was taken relative to the segment: auxiliary coordinates, not measurements.
    ds["height_segment_height"].encoding["coordinates"] = "time lat lon height_segment_id"
    ds["sst"].encoding["coordinates"] = "time lat lon sst_dt sst_distance"
    ds["sst"].attrs["ancillary_variables"] = "sst_quality_level sst_l2p_flags sst_granule"
    ds["height_segment_height"].attrs["ancillary_variables"] = "height_segment_quality height_segment_type"

    ds.attrs = _global_attrs(ds, tracks, sources, params, atl07_attrs, history, request_id, now, dropped)
    return ds


def _global_attrs(ds, tracks, sources, params, atl07_attrs, history, request_id, now, dropped) -> dict:
    granules = list(dict.fromkeys(t.segments.granule for t in tracks))
    version = _package_version()
    created = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    n_matched = int((ds["sst_granule"].values >= 0).sum())
    atl07_attrs = dict(atl07_attrs or {})
    atl07_doi = str(atl07_attrs.get("identifier_product_doi") or params.get("atl07_doi") or ATL07_DOI_DEFAULT)
    if atl07_doi.lower().startswith("doi:"):
        atl07_doi = "https://doi.org/" + atl07_doi[4:]
    sst_collection = params.get("sst_collection")
    if params.get("sst_doi"):
        sst_ref = str(params["sst_doi"])
    elif sst_collection in (None, MODIS_L2P_COLLECTION):
        sst_ref = f"MODIS_A-JPL-L2P-v2019.0 {SST_DOI_DEFAULT}"
    else:
        sst_ref = f"collection {sst_collection}"

    ident = request_id or hashlib.sha256(
        json.dumps([granules, sources, {k: str(v) for k, v in sorted(params.items())
                                        if not _SECRET_KEY.search(k)}]).encode()
    ).hexdigest()[:16]
    attrs: dict[str, Any] = {
        "Conventions": "CF-1.8, ACDD-1.3",
        "featureType": "trajectory",
        "title": "ICESat-2 ATL07 sea ice segments colocated with GHRSST L2P sea surface skin temperature",
        "summary": (
            "Every ATL07 sea-ice height segment (all beams) in the region and period of interest, "
            "with the nearest valid GHRSST L2P skin SST pixel within the colocation radius and time "
            "window (quality_level at least the configured minimum, pixel time = time + sst_dtime). "
            "Segments without a match are kept with fill values. CF contiguous ragged array: one "
            "trajectory per ATL07 granule and beam."
        ),
        "keywords": (
            "EARTH SCIENCE > OCEANS > OCEAN TEMPERATURE > SEA SURFACE TEMPERATURE > SEA SURFACE SKIN TEMPERATURE, "
            "EARTH SCIENCE > CRYOSPHERE > SEA ICE > SEA ICE ELEVATION, ICESat-2, ATL07, GHRSST, L2P, MODIS, colocation"
        ),
        "keywords_vocabulary": "GCMD Science Keywords",
        "standard_name_vocabulary": STANDARD_NAME_VOCABULARY,
        "id": f"{PRODUCT_NAME}_{scrub(ident)}",
        "naming_authority": NAMING_AUTHORITY,
        "product_version": version,
        "processing_level": "L3 colocation (ATL07 L3A with GHRSST L2P)",
        "cdm_data_type": "Trajectory",
        "source": scrub("ATL07 granules: " + (", ".join(granules) or "none")
                        + "; GHRSST L2P granules: " + (", ".join(sources) or "none")),
        "platform": "ICESat-2, Aqua" if sources else "ICESat-2",
        "instrument": "ATLAS, MODIS" if sources else "ATLAS",
        "project": "ICESat-2 / GHRSST colocation",
        "institution": PRODUCT_NAME,
        "creator_name": PRODUCT_NAME,
        "creator_type": "institution",
        "creator_institution": PRODUCT_NAME,
        "publisher_name": PRODUCT_NAME,
        "publisher_type": "institution",
        "publisher_institution": PRODUCT_NAME,
        "license": ("Derived from NASA ICESat-2 ATL07 and GHRSST L2P data, free and open; "
                    "cite the source data sets listed in references."),
        "references": f"ATL07: {atl07_doi}; GHRSST L2P: {sst_ref}",
        "comment": "Unmatched segments carry fill values in the sst* variables; sst_granule indexes "
                   "sst_source_name. Times are UTC (ATL07 GPS time minus leap seconds).",
        "acknowledgement": "ICESat-2 ATL07 data from NASA NSIDC DAAC; GHRSST L2P data from NASA PO.DAAC.",
        "program": "NASA Earth Science",
        "platform_vocabulary": "NASA/GCMD Platform Keywords",
        "instrument_vocabulary": "NASA/GCMD Instrument Keywords",
        "date_created": created,
        "date_modified": created,
        "date_issued": created,
        "date_metadata_modified": created,
        "history": scrub((history.rstrip() + "\n" if history else "")
                         + f"{created} {PRODUCT_NAME} {version}: colocated {len(tracks)} trajectories, "
                           f"{ds.sizes['obs']} segments, {n_matched} matched"),
        "trajectory_count": np.int32(len(tracks)),
        "segments_total": np.int64(ds.sizes["obs"]),
        "segments_matched": np.int64(n_matched),
        "segments_dropped_invalid_location_or_time": np.int64(dropped),
    }
    if request_id:
        attrs["request_id"] = scrub(request_id)
    for key, name in _PARAM_ATTRS.items():
        value = params.get(key)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, (bool,)):
            value = str(value).lower()
        elif not isinstance(value, (int, float, np.integer, np.floating)):
            value = scrub(str(value))
        attrs[name] = value
    for key in _OVERRIDABLE:
        if isinstance(params.get(key), str) and params[key]:
            attrs[key] = scrub(params[key])
    attrs.update(_flat_attrs("atl07_", {k: v for k, v in atl07_attrs.items()}))

    n = ds.sizes["obs"]
    if n:
        lat, lon = ds["lat"].values, ds["lon"].values
        west, east = _lon_range(lon)
        t0, t1 = ds["time"].values.min(), ds["time"].values.max()
        attrs.update(
            geospatial_lat_min=float(lat.min()), geospatial_lat_max=float(lat.max()),
            geospatial_lon_min=west, geospatial_lon_max=east,
            time_coverage_start=_iso(t0), time_coverage_end=_iso(t1),
            time_coverage_duration=_iso_duration((t1 - t0) / np.timedelta64(1, "s")),
        )
    elif (box := _bbox(params.get("bbox"))) is not None:
        w, s, e, nth = box
        attrs.update(geospatial_lat_min=s, geospatial_lat_max=nth, geospatial_lon_min=w, geospatial_lon_max=e)
    attrs.update(geospatial_lat_units="degrees_north", geospatial_lon_units="degrees_east")
    if "geospatial_lat_min" in attrs:
        attrs["geospatial_bounds_crs"] = "EPSG:4326"
    return attrs


def _bbox(value) -> tuple[float, ...] | None:
    """W,S,E,N from a sequence or a "w,s,e,n" string; None if absent or malformed."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        box = tuple(float(v) for v in parts)
    except (TypeError, ValueError):
        return None
    return box if len(box) == 4 else None


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` atomically (temporary name in the same directory, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=False)
    log.info("wrote %s (%d trajectories, %d obs)", path.name, ds.sizes.get("trajectory", 0), ds.sizes.get("obs", 0))
    return path
