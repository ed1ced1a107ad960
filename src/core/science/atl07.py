"""Read ICESat-2 ATL07 sea-ice segments (all six beams) into :class:`core.model.Atl07Granule`.

Subsetted or older granules lack beams and variables: anything missing is skipped with a
warning (logged and kept in ``granule.warnings``), never a crash. With a bbox only the index
runs of each beam that fall inside it (plus a margin) are read, so memory follows the region.

Read in place (a core.access.rangefile.RangeFile over S3, :func:`open_atl07_in_place`), the read runs
in waves, each fetched side by side before h5py decodes it from memory (core.access.inplace): every
beam's latitude/longitude (with a DMR++ byte map also all HDF5 metadata, before the file is
opened), then every variable's chunks for the bbox rows of all beams together.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import h5py
import numpy as np

from core.access.dmrpp import Range, metadata_ranges
from core.access.inplace import PAGE_HINT, ByteMap, dataset_ranges, file_page_size, open_in_place
from core.access.rangefile import RangeFile
from core.errors import InputError, UnreadableFileError
from core.model import BEAMS, Atl07Granule, BBox, BeamSegments

log = logging.getLogger(__name__)

GPS_EPOCH = np.datetime64("1980-01-06T00:00:00", "ns")
# GPS-UTC offset (leap seconds) and the UTC instant from which it applies. None since 2017.
_LEAPS_UTC = (
    ("1999-01-01", 13),
    ("2006-01-01", 14),
    ("2009-01-01", 15),
    ("2012-07-01", 16),
    ("2015-07-01", 17),
    ("2017-01-01", 18),
)
# the same thresholds expressed in GPS seconds (the GPS clock is ahead by the new offset)
_LEAP_GPS_S = np.array(
    [(np.datetime64(d, "s") - GPS_EPOCH.astype("datetime64[s]")).astype(np.int64) + n for d, n in _LEAPS_UTC],
    dtype=np.float64,
)
_LEAP_N = np.array([n for _, n in _LEAPS_UTC], dtype=np.int64)
DEFAULT_SDP_EPOCH_GPS_S = 1198800018.0  # 2018-01-01T00:00:00Z in GPS seconds

# Per-segment ATL07 variables carried into the product (output name, path under
# gtx/sea_ice_segments, dtype). ATL07 data dictionary / ATBD (ICESat-2-SIPS-SPEC-4261, Kwok et
# al.): height_segment_quality 1 good / 0 bad; height_segment_fit_quality_flag 1 best ... 5
# poor (opposite sense: never one column); height_segment_ssh_flag 1 = sea surface (lead);
# ice concentration from stats/ice_conc up to v005, stats/ice_conc_amsr2 / _ssmi from v006.
ATL07_FIELDS = (
    ("height_segment_fit_quality_flag", "heights/height_segment_fit_quality_flag", np.int16),
    ("height_segment_confidence", "heights/height_segment_confidence", np.float32),
    ("height_segment_ssh_flag", "heights/height_segment_ssh_flag", np.int16),
    ("height_segment_length_seg", "heights/height_segment_length_seg", np.float32),
    ("seg_dist_x", "seg_dist_x", np.float64),
    ("ice_conc", "stats/ice_conc", np.float32),
    ("ice_conc_amsr2", "stats/ice_conc_amsr2", np.float32),
    ("ice_conc_ssmi", "stats/ice_conc_ssmi", np.float32),
    # uncertainty and cloud/scattering flags that travel with a match (data dictionary, v003-v006;
    # as the granule has them): the fit's surface height error estimate (m), the consolidated
    # cloud flag (0 likely_clear, 1 likely_cloudy), the ASR cloud flag (0-2 clear, 3-5 cloudy,
    # 6 unknown), the multiple-scattering warning (-1 cannot_determine, 0 no_layers ... 5)
    ("height_segment_surface_error_est", "heights/height_segment_surface_error_est", np.float32),
    ("layer_flag", "stats/layer_flag", np.int16),
    ("cloud_flag_asr", "stats/cloud_flag_asr", np.int16),
    ("msw_flag", "stats/msw_flag", np.int16),
)
# read when present, no warning when absent (versions and subsets differ; none is essential)
QUIET_FIELDS = ("ice_conc", "ice_conc_amsr2", "ice_conc_ssmi", "height_segment_surface_error_est", "layer_flag",
                "cloud_flag_asr", "msw_flag")
# Flag tables of the ATL07 data dictionary (v003-v006), used only where a granule read does not
# declare its own (synthetic inputs); a granule's attributes always win.
DOCUMENTED_FLAGS = {
    "height_segment_quality": ([0, 1], "bad_quality good_quality"),
    "height_segment_fit_quality_flag": ([-1, 1, 2, 3, 4, 5], "invalid best high med low poor"),
    "height_segment_ssh_flag": ([0, 1], "sea_ice sea_surface"),
    "height_segment_type": (list(range(10)), "cloud_covered other specular_lead_low_w_bkg specular_lead_low "
                            "specular_lead_high_w_bkg specular_lead_high dark_lead_smooth_w_bkg "
                            "dark_lead_smooth dark_lead_rough_w_bkg dark_lead_rough"),
    "layer_flag": ([0, 1], "likely_clear likely_cloudy"),
    "cloud_flag_asr": (list(range(7)), "clear_with_high_confidence clear_with_medium_confidence "
                       "clear_with_low_confidence cloudy_with_low_confidence cloudy_with_medium_confidence "
                       "cloudy_with_high_confidence unknown"),
    "msw_flag": (list(range(-1, 6)), "cannot_determine no_layers layer_gt_3km layer_between_1_and_3_km "
                 "layer_lt_1km blow_snow_od_lt_0.5 blow_snow_od_gt_0.5"),
}
# Integer fields for which -1 is a flag value (fit flag: invalid; msw_flag: cannot_determine), so
# "missing" needs another code: this one (never a flag value of any ATL07 table).
FLAG_FILL = -127


def int_fill(name: str) -> int:
    """The code an integer ATL07 field takes where the granule has no value: -1, unless -1 is one
    of the field's flag values (then FLAG_FILL)."""
    return FLAG_FILL if -1 in DOCUMENTED_FLAGS.get(name, ((),))[0] else -1
ICE_CONC_FIELDS = ("ice_conc", "ice_conc_amsr2", "ice_conc_ssmi")  # one of them is enough
# attributes of a read variable copied into the product
COPIED_ATTRS = ("flag_values", "flag_meanings", "flag_masks", "units", "long_name", "description",
                "valid_min", "valid_max")
_MERGE_GAP = 2000  # read index runs separated by fewer segments than this as one slice

# What is read of each beam (under gtx/sea_ice_segments): the locations whole, then the rest only
# for the rows in the bbox; and a few granule-level variables. The in-place waves fetch these.
LOCATION_VARS = ("latitude", "longitude")
ROW_VARS = ("delta_time", "height_segment_id", "heights/height_segment_height", "heights/height_segment_type",
            "heights/height_segment_quality", *(var for _, var, _ in ATL07_FIELDS))
ANCILLARY_KEYS = ("release", "version", "granule_start_utc", "granule_end_utc")  # copied into attrs
GRANULE_VARS = ("ancillary_data/atlas_sdp_gps_epoch", "orbit_info/sc_orient", "orbit_info/sc_orient_time",
                *(f"ancillary_data/{k}" for k in ANCILLARY_KEYS))
# What a metadata read that misses fetches, without a byte map: ATL07's object headers and chunk
# indexes are ~3 KB each, one beside each variable's chunks, ~0.4 MB apart, so every miss is a
# round trip under h5py's lock; 4 MiB per miss took the fewest seconds in the modelled network
# (bench/README.md "ATL07 read in place": 64 KiB 448 requests, 1 MiB 239, 4 MiB 122 for the two
# seed granules). With a byte map the few misses left are group headers: RangeFile's 64 KiB.
ATL07_READAHEAD = 4 << 20
# A file object other than a RangeFile (an fsspec block-cached file, say) is opened with HDF5's page
# buffer: on a paged granule (Release 007) every metadata read then costs at most one page read.
# Several pages, since a one-page buffer thrashes (NSIDC UWG 2025 notebook: 32-64 MiB; HDF5 >= 1.14.4
# ignores it on a non-paged file, requirements pin h5py >= 3.12.1). A RangeFile keeps the pages
# itself: HDF5's page buffer reads raw data a whole page at a time too (measured on the scene: a 58 KB
# chunk read became one 8 MiB read), which would defeat chunk-exact reads.
PAGE_BUFFER_BYTES = 4 * PAGE_HINT


# Release 007 is ICESat-2's first cloud-optimized release: paged HDF5, all metadata in the first
# 8 MiB page (NSIDC, nsidc/cloud-optimized-icesat2 paper.qmd; ATL03 confirmed, ATL07 likely).
PAGED_FROM_RELEASE = 7
# ATL07 file names: ATL07-hh_yyyymmddhhmmss_ttttccss_rrr_vv.h5 (ATL07 data dictionary: rrr release)
_RELEASE = re.compile(r"^ATL\d\d-\d\d_\d{14}_\d{8}_(\d{3})_\d{2}")


def release_of(name: str) -> int | None:
    """The ICESat-2 release in a granule's file name or title, None where the name does not say."""
    match = _RELEASE.match(os.path.basename(name))
    return int(match.group(1)) if match else None


def gps_to_utc(gps_seconds: np.ndarray) -> np.ndarray:
    """GPS seconds since 1980-01-06 → datetime64[ns] UTC (leap seconds removed); NaN → NaT."""
    gps = np.asarray(gps_seconds, dtype=np.float64)
    idx = np.searchsorted(_LEAP_GPS_S, gps, side="right") - 1
    leap = np.where(idx >= 0, _LEAP_N[np.clip(idx, 0, None)], 0)
    ok = np.isfinite(gps)
    ns = np.zeros(gps.shape, dtype=np.int64)
    ns[ok] = np.round((gps[ok] - leap[ok]) * 1e9).astype(np.int64)
    out = GPS_EPOCH + ns.astype("timedelta64[ns]")
    out[~ok] = np.datetime64("NaT")
    return out


NO_TIME = "no usable time (delta_time is fill)"  # the warning of segments dropped for want of time


def atlas_delta_time_to_utc(delta_time: np.ndarray, sdp_epoch_gps_s: float = DEFAULT_SDP_EPOCH_GPS_S) -> np.ndarray:
    """ATLAS ``delta_time`` (GPS seconds since the SDP epoch) → datetime64[ns] UTC."""
    dt = np.asarray(delta_time, dtype=np.float64)
    # split the epoch and delta so float64 keeps sub-microsecond precision
    gps_whole = np.floor(sdp_epoch_gps_s)
    base = gps_to_utc(np.full(dt.shape, gps_whole) + np.floor(dt))
    frac_ns = np.round((dt - np.floor(dt) + (sdp_epoch_gps_s - gps_whole)) * 1e9)
    ok = np.isfinite(dt)
    out = base.copy()
    out[ok] = base[ok] + frac_ns[ok].astype(np.int64).astype("timedelta64[ns]")
    out[~ok] = np.datetime64("NaT")
    return out


def _fill_value(ds: h5py.Dataset) -> Any:
    fv = ds.attrs.get("_FillValue")
    if fv is None:
        return None
    return np.asarray(fv).ravel()[0] if np.size(fv) else None


def _source_name(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source))
    for attr in ("path", "name"):
        value = getattr(source, attr, None)
        if isinstance(value, str) and value:
            return os.path.basename(value)
    return "ATL07"


def _attr_str(value: Any) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", "replace").strip()
    if isinstance(value, np.ndarray):
        return " ".join(_attr_str(v) for v in value.ravel().tolist())
    return str(value).strip()


def _runs(mask: np.ndarray) -> list[slice]:
    """Index slices covering the True runs of ``mask``; nearby runs merged to limit reads."""
    return _index_runs(np.flatnonzero(mask))


def _index_runs(idx: np.ndarray) -> list[slice]:
    """Index slices covering the sorted indexes ``idx``; nearby runs merged to limit reads."""
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > _MERGE_GAP)
    starts = np.r_[idx[0], idx[breaks + 1]]
    stops = np.r_[idx[breaks], idx[-1]] + 1
    return [slice(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def _read(ds: h5py.Dataset, runs: list[slice] | None) -> np.ndarray:
    if runs is None:
        return ds[()]
    if not runs:
        return ds[0:0]
    return np.concatenate([ds[r] for r in runs])


def _as_float(arr: np.ndarray, fill: Any, dtype=np.float64) -> np.ndarray:
    out = np.asarray(arr, dtype=dtype)
    if fill is not None:
        out = np.where(np.asarray(arr) == np.asarray(fill, dtype=arr.dtype), np.nan, out)
    return out


def _as_int(arr: np.ndarray, fill: Any, dtype, missing: int = -1, flag_values: Any = None) -> np.ndarray:
    """Integers with the file's fill set to ``missing``; a fill that is also a declared flag value
    (v003's fit flag: _FillValue -1 = "invalid") stays what the flag table says it is."""
    out = np.asarray(arr).astype(dtype)
    if fill is not None and not (flag_values is not None and np.isin(fill, np.asarray(flag_values)).any()):
        out[np.asarray(arr) == np.asarray(fill, dtype=arr.dtype)] = missing
    return out


def beam_strength(beam: str, sc_orient: int | None) -> str:
    """0 = backward: left beams strong; 1 = forward: right beams strong; else unknown."""
    if sc_orient == 0:
        return "strong" if beam.endswith("l") else "weak"
    if sc_orient == 1:
        return "strong" if beam.endswith("r") else "weak"
    return "unknown"


def open_atl07_in_place(fs, s3_url: str, settings) -> tuple[RangeFile, ByteMap | None]:
    """An ATL07 granule on S3 as a RangeFile, with its byte map if a ``.dmrpp`` is published beside
    it: pass both to :func:`read_atl07` (``read_atl07(file, bbox=..., byte_map=byte_map)``)."""
    placed = open_in_place(fs, s3_url, settings)
    if placed.byte_map is None:
        placed.file.readahead = ATL07_READAHEAD
    return placed.file, placed.byte_map


def read_atl07(
    source: str | os.PathLike | BinaryIO | RangeFile,
    *,
    bbox: BBox | None = None,
    margin_deg: float = 0.1,
    byte_map: ByteMap | None = None,
) -> Atl07Granule:
    """Read every beam's sea-ice segments, optionally restricted to ``bbox`` (+ ``margin_deg``).

    A :class:`~core.access.rangefile.RangeFile` source is read in waves of side-by-side fetches;
    ``byte_map`` (its DMR++, core.access.dmrpp) lets the first wave hold the HDF5 metadata too."""
    name = _source_name(source)
    if isinstance(source, (str, os.PathLike)) and not os.path.exists(source):
        raise InputError(f"ATL07 file not found: {os.fspath(source)}", field="atl07")
    waves = _Waves(source, byte_map)
    waves.opening()
    buffered = not isinstance(source, (str, os.PathLike, RangeFile))
    try:
        h5 = h5py.File(source, "r", **({"page_buf_size": PAGE_BUFFER_BYTES} if buffered else {}))
    except (OSError, ValueError) as exc:
        raise UnreadableFileError(f"{name} is not an HDF5 file (ATL07 expected): {exc}", field="atl07") from None
    with h5:
        waves.opened(h5)
        return _read_granule(h5, name, bbox, margin_deg, waves)


class _Waves:
    """Fetches, side by side, what the next step of the read needs, when the source is a
    RangeFile (nothing otherwise): h5py would read it as one dependent round trip per object
    header and chunk, each holding h5py's global lock (core.access.inplace)."""

    def __init__(self, source: Any, byte_map: ByteMap | None):
        self.file = source if isinstance(source, RangeFile) else None
        self.byte_map = byte_map if self.file is not None else None

    def _fetch(self, h5: h5py.File | None, wants: Iterable[tuple[str, Sequence[slice] | None]],
               extra: Iterable[Range] = ()) -> None:
        if self.file is None:
            return
        ranges = list(extra)
        for path, rows in wants:
            ranges += dataset_ranges(h5, path, rows, self.byte_map)
        self.file.prefetch(ranges)

    def _locations(self, beams: Iterable[str]) -> list[tuple[str, None]]:
        return [(f"{b}/sea_ice_segments/{v}", None) for b in beams for v in LOCATION_VARS] + \
            [(p, None) for p in GRANULE_VARS]

    def opening(self) -> None:
        """Before h5py opens the file, with a byte map: all HDF5 metadata (what lies between the
        chunks, core.access.dmrpp.metadata_ranges: ~1.9 MB in ~500 gaps of a seed granule), every beam's
        locations and the granule-level variables. All of it, not a guess at what h5py will
        read: no miss is left to wait under h5py's lock, and in the modelled network it took
        less time than the ~130 gaps beside the chunks read plus the ~20 misses those leave
        (bench/README.md "ATL07 read in place")."""
        if self.file is not None and self.byte_map is not None:
            self._fetch(None, self._locations(BEAMS), metadata_ranges(self.byte_map.values(), self.file.size))
        elif self.file is not None:
            # no byte map: the first page, where a paged granule (Release 007) keeps all its
            # metadata, in one wave; on an older granule it holds the superblock and root group
            self.file.prefetch([(0, min(PAGE_HINT, self.file.size))])

    def opened(self, h5: h5py.File) -> None:
        """A paged granule: the rest of its first page if its pages are larger than the hint, and
        any later metadata miss widened to whole pages (a second metadata page, if any)."""
        page = file_page_size(h5) if self.file is not None else None
        if page and self.file is not None:
            self.file.align = self.file.readahead = page
            if self.byte_map is None:
                self.file.prefetch([(0, min(page, self.file.size))])

    def locations(self, h5: h5py.File, beams: Iterable[str]) -> None:
        """Without a byte map: every beam's latitude and the granule-level variables, from the chunk index."""
        if self.byte_map is None:
            self._fetch(h5, [(f"{b}/sea_ice_segments/latitude", None) for b in beams] +
                        [(p, None) for p in GRANULE_VARS])

    def longitudes(self, h5: h5py.File, runs_by_beam: dict[str, list[slice] | None]) -> None:
        """Longitude's chunks where latitude reaches the bbox (held already with a byte map)."""
        self._fetch(h5, [(f"{beam}/sea_ice_segments/longitude", runs)
                         for beam, runs in runs_by_beam.items() if runs != []])

    def rows(self, h5: h5py.File, runs_by_beam: dict[str, list[slice] | None]) -> None:
        """Every per-row variable's chunks holding the selected rows, all beams together."""
        self._fetch(h5, [(f"{beam}/sea_ice_segments/{v}", runs)
                         for beam, runs in runs_by_beam.items() if runs != [] for v in ROW_VARS])


def _read_granule(h5: h5py.File, name: str, bbox: BBox | None, margin_deg: float, waves: _Waves) -> Atl07Granule:
    short = _attr_str(h5.attrs["short_name"]) if "short_name" in h5.attrs else ""
    present = [b for b in BEAMS if f"{b}/sea_ice_segments" in h5]
    if short and short != "ATL07" or not short and not present:
        what = f"short_name {short!r}" if short else "no gt*/sea_ice_segments groups"
        raise InputError(f"{name} is not an ATL07 granule ({what})", field="atl07")
    waves.locations(h5, present)

    warnings: list[str] = []

    def warn(msg: str) -> None:
        log.warning("%s: %s", name, msg)
        warnings.append(msg)

    epoch = DEFAULT_SDP_EPOCH_GPS_S
    if "ancillary_data/atlas_sdp_gps_epoch" in h5:
        epoch = float(np.asarray(h5["ancillary_data/atlas_sdp_gps_epoch"][()]).ravel()[0])
    else:
        warn("ancillary_data/atlas_sdp_gps_epoch missing: assuming 2018-01-01 (1198800018 GPS s)")

    sc_orient, orient_of = _orientation(h5, epoch, warn)

    attrs = {k: _attr_str(h5.attrs[k]) for k in (
        "short_name", "title", "identifier_product_doi", "identifier_product_format_version",
        "time_coverage_start", "time_coverage_end", "date_created",
    ) if k in h5.attrs}
    for key in ANCILLARY_KEYS:
        if f"ancillary_data/{key}" in h5:
            attrs[key] = _attr_str(h5[f"ancillary_data/{key}"][()])

    # every beam's latitude, then longitude where latitude reaches the bbox, then the rows in
    # it: each step for all beams together, so that it is fetched in one wave
    latitudes = {beam: _latitudes(h5, beam, bbox, margin_deg) for beam in BEAMS}
    waves.longitudes(h5, {beam: lat.runs for beam, lat in latitudes.items() if isinstance(lat, _Latitudes)})
    located = {beam: lat if isinstance(lat, str) else _locate(lat, bbox, margin_deg)
               for beam, lat in latitudes.items()}
    waves.rows(h5, {beam: loc.runs for beam, loc in located.items() if isinstance(loc, _Located)})
    beams: list[BeamSegments] = []
    for beam in BEAMS:
        loc = located[beam]
        if isinstance(loc, str):
            warn(loc)
            continue
        beam_type = _attr_str(h5[beam].attrs["atlas_beam_type"]).lower() if "atlas_beam_type" in h5[beam].attrs else ""
        if beam_type not in ("strong", "weak") and "orbit_info/sc_orient" not in h5:
            warn(f"{beam}: no atlas_beam_type and orbit_info/sc_orient missing: beam strength unknown")
        beams.append(_read_beam(loc, beam, name, epoch, sc_orient, orient_of, beam_type, warn))
    return Atl07Granule(name=name, beams=beams, sc_orient=sc_orient, attrs=attrs, warnings=warnings)


def _orientation(h5: h5py.File, epoch: float, warn):
    """(sc_orient of the whole granule or None, per-delta_time orientation function or None).

    ``orbit_info/sc_orient`` holds one value per orientation period and ``sc_orient_time`` the
    delta_time each began: with a yaw flip inside the granule, each segment takes the
    orientation in force at its own time (0 backward, 1 forward, 2 transition)."""
    if "orbit_info/sc_orient" not in h5:  # warned by the caller if a beam has no atlas_beam_type either
        return None, None
    values = np.asarray(h5["orbit_info/sc_orient"][()]).ravel().astype(np.int64)
    if np.unique(values).size == 1:
        sc_orient = int(values[0])
        if sc_orient not in (0, 1):
            warn(f"orbit_info/sc_orient = {sc_orient} (transition): beam strength unknown")
        return sc_orient, None
    times = np.asarray(h5["orbit_info/sc_orient_time"][()]).ravel().astype(np.float64) \
        if "orbit_info/sc_orient_time" in h5 else np.empty(0)
    if times.size != values.size:
        warn(f"orbit_info/sc_orient changes within the granule ({values.tolist()}) without matching "
             "sc_orient_time: beam strength unknown")
        return None, None
    order = np.argsort(times)
    times, values = times[order], values[order]
    warn(f"yaw flip inside the granule (orbit_info/sc_orient {values.tolist()} from delta_time "
         f"{times.tolist()}): beam strength set per segment")

    def orient_of(delta_time: np.ndarray) -> np.ndarray:
        i = np.searchsorted(times, delta_time, side="right") - 1
        return np.where(i >= 0, values[np.clip(i, 0, None)], -1)

    return None, orient_of


def _h5_attrs(ds: h5py.Dataset) -> dict:
    """The copied attributes of one variable, as plain str / numpy values."""
    out = {}
    for key in COPIED_ATTRS:
        if key in ds.attrs:
            value = ds.attrs[key]
            is_text = isinstance(value, (bytes, np.bytes_, str)) or (
                isinstance(value, np.ndarray) and value.dtype.kind in "SUO")
            out[key] = _attr_str(value) if is_text else np.atleast_1d(np.asarray(value))
    return out


@dataclass
class _Located:
    """One beam's segments in the bbox: their index runs (None: all) and locations."""

    grp: h5py.Group
    n: int  # segments in the beam
    runs: list[slice] | None
    lat: np.ndarray
    lon: np.ndarray
    keep: np.ndarray  # of the segments in the runs: valid location inside the bbox
    valid_loc: np.ndarray  # of all segments (bbox None)


@dataclass
class _Latitudes:
    """One beam's latitude: whole (no bbox: ``runs`` None), else only in the index ``runs``
    where it reaches the bbox's latitudes (concatenated)."""

    grp: h5py.Group
    n: int
    lat: np.ndarray
    runs: list[slice] | None


def _latitudes(h5: h5py.File, beam: str, bbox: BBox | None, margin_deg: float) -> _Latitudes | str:
    """The beam's latitude whole (where is the track?), or why the beam is skipped."""
    path = f"{beam}/sea_ice_segments"
    if path not in h5:
        return f"{beam}: no sea_ice_segments group, beam skipped"
    grp = h5[path]
    missing = [v for v in ("latitude", "longitude", "delta_time") if v not in grp]
    if missing:
        return f"{beam}: {', '.join(missing)} missing, beam skipped"
    lat_ds = grp["latitude"]
    n = lat_ds.shape[0] if lat_ds.shape else 0
    if grp["longitude"].shape[:1] != (n,) or grp["delta_time"].shape[:1] != (n,):
        return f"{beam}: latitude/longitude/delta_time lengths differ, beam skipped"
    fill = _fill_value(lat_ds)
    if bbox is None:
        return _Latitudes(grp, n, _as_float(lat_ds[()], fill), None)
    # chunk by chunk: the whole track's latitude is never held, only where it reaches the bbox
    step = lat_ds.chunks[0] if lat_ds.chunks else max(n, 1)
    in_band = []
    for start in range(0, n, step):
        block = _as_float(lat_ds[start:start + step], fill)
        with np.errstate(invalid="ignore"):  # NaN (fill) latitudes are outside any band
            in_band.append(np.flatnonzero((block >= bbox.south - margin_deg) & (block <= bbox.north + margin_deg))
                           + start)
    runs = _index_runs(np.concatenate(in_band) if in_band else np.empty(0, np.int64))
    return _Latitudes(grp, n, _as_float(_read(lat_ds, runs), fill), runs)


def _rows(runs: list[slice]) -> np.ndarray:
    return np.concatenate([np.arange(r.start, r.stop) for r in runs]) if runs else np.empty(0, np.int64)


def _locate(latitudes: _Latitudes, bbox: BBox | None, margin_deg: float) -> _Located:
    """The beam's rows in ``bbox``: longitude read only where latitude reaches it (the rest of the
    track cannot be in the box whatever its longitude), both cut to the box's rows."""
    grp, n, lat, band = latitudes.grp, latitudes.n, latitudes.lat, latitudes.runs
    lon_ds = grp["longitude"]
    if band is not None and bbox is not None:
        lon = _as_float(_read(lon_ds, band), _fill_value(lon_ds))
        held = _rows(band)  # the rows lat and lon hold
        with np.errstate(invalid="ignore"):
            inside = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90.0) & \
                bbox.contains(np.nan_to_num(lon), np.nan_to_num(lat), margin_deg)
        runs = _index_runs(held[inside])
        rows = _rows(runs)
        if not rows.size:
            return _Located(grp, n, runs, lat[:0], lon[:0], inside[:0], inside[:0])
        # rows merged in between two of the box's runs but outside the band are not held:
        # never kept (no location), their other variables read with the run
        pos = np.minimum(np.searchsorted(held, rows), held.size - 1)
        there = held[pos] == rows
        return _Located(grp, n, runs, np.where(there, lat[pos], np.nan), np.where(there, lon[pos], np.nan),
                        there & inside[pos], inside[:0])
    lon = _as_float(lon_ds[()], _fill_value(lon_ds))
    valid_loc = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90.0)
    return _Located(grp, n, None, lat, lon, valid_loc, valid_loc)


def _read_beam(loc: _Located, beam, name, epoch, sc_orient, orient_of, beam_type, warn) -> BeamSegments:
    grp, n, runs, lat, lon, keep, valid_loc = loc.grp, loc.n, loc.runs, loc.lat, loc.lon, loc.keep, loc.valid_loc
    m = lat.shape[0]

    dt_ds = grp["delta_time"]
    delta_time = _as_float(_read(dt_ds, runs), _fill_value(dt_ds))
    time = atlas_delta_time_to_utc(delta_time, epoch)

    def optional(var: str, convert, default):
        if var in grp and grp[var].shape and grp[var].shape[0] == n:
            ds = grp[var]
            return convert(_read(ds, runs), _fill_value(ds))
        warn(f"{beam}: {var} missing, filled")
        return default

    seg_id = optional("height_segment_id", lambda a, f: _as_int(a, f, np.int64), np.full(m, -1, np.int64))
    height = optional("heights/height_segment_height", lambda a, f: _as_float(a, f, np.float32),
                      np.full(m, np.nan, np.float32))
    seg_type = optional("heights/height_segment_type", lambda a, f: _as_int(a, f, np.int16),
                        np.full(m, -1, np.int16))
    quality = optional("heights/height_segment_quality", lambda a, f: _as_int(a, f, np.int16),
                       np.full(m, -1, np.int16))
    extra: dict[str, np.ndarray] = {}
    field_attrs = {out: _h5_attrs(grp[var]) for out, var in (
        ("height_segment_quality", "heights/height_segment_quality"),
        ("height_segment_type", "heights/height_segment_type"),
        ("height_segment_height", "heights/height_segment_height")) if var in grp}
    for out, var, dtype in ATL07_FIELDS:
        if var in grp and grp[var].shape and grp[var].shape[0] == n:
            ds = grp[var]
            field_attrs[out] = _h5_attrs(ds)
            if np.issubdtype(dtype, np.integer):
                extra[out] = _as_int(_read(ds, runs), _fill_value(ds), dtype, int_fill(out),
                                     field_attrs[out].get("flag_values"))
            else:
                extra[out] = _as_float(_read(ds, runs), _fill_value(ds), dtype)
        elif out not in QUIET_FIELDS:
            warn(f"{beam}: {var} missing, filled")
    if not any(f in extra for f in ICE_CONC_FIELDS):
        warn(f"{beam}: no ice concentration (stats/ice_conc, stats/ice_conc_amsr2, stats/ice_conc_ssmi)")

    strength = beam_strength(beam, sc_orient)
    strength_flag = None
    if beam_type in ("strong", "weak") and orient_of is None and sc_orient in (0, 1, None):
        strength = beam_type  # the beam group's own attribute (v003 onwards)
    elif orient_of is not None:
        codes = {0: beam_strength(beam, 0), 1: beam_strength(beam, 1)}
        orient = orient_of(delta_time)
        strength_flag = np.select([orient == o for o in codes], [int(codes[o] == "strong") for o in codes],
                                  -1).astype(np.int8)

    good = keep & ~np.isnat(time)
    untimed = int(np.count_nonzero(keep & np.isnat(time)))
    if untimed:  # a broken granule's time is not an empty date: the manifest says so
        warn(f"{beam}: {untimed} segments in the box have {NO_TIME}, dropped")
    dropped = int(np.count_nonzero(~valid_loc)) if runs is None else 0
    dropped += untimed
    if dropped:
        log.info("%s %s: %d segments without valid location/time dropped", name, beam, dropped)
    return BeamSegments(
        granule=name,
        beam=beam,
        strength=strength if strength_flag is None else _summary_strength(strength_flag[good]),
        time=time[good],
        lat=lat[good],
        lon=lon[good],
        height_segment_id=seg_id[good],
        height=height[good],
        quality=quality[good],
        segment_type=seg_type[good],
        strength_flag=None if strength_flag is None else strength_flag[good],
        fields={k: v[good] for k, v in extra.items()},
        field_attrs=field_attrs,
    )


def _summary_strength(flag: np.ndarray) -> str:
    kinds = set(np.unique(flag).tolist())
    if kinds == {1}:
        return "strong"
    if kinds == {0}:
        return "weak"
    return "mixed" if kinds & {0, 1} else "unknown"
