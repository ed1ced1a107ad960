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
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from core.atomic import atomic_path
from core.collections import profile, profile_for_file
from core.model import FLAGS_FILL, QL_FILL, SstSource, Track
from core.science.atl07 import ATL07_FIELDS, DOCUMENTED_FLAGS, ICE_CONC_FIELDS

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
# obs variables: shuffle + deflate, one chunk each up to HDF5's default 1 MiB chunk cache
# (H5Pset_chunk_cache), so a reader of a slice still gets its chunk cached. h5py's guessed
# chunks split a 45 k-segment variable in 16. Seed case: level 2 deflates ~20 % faster than 4
# (one chunk each), and still ~4 % smaller than the guessed chunks at level 4; the write itself
# is dominated by per-variable h5netcdf bookkeeping (~0.17 s of ~0.23 s for 46 variables).
DEFLATE_LEVEL = 2
CHUNK_BYTES = 2**20

GHRSST_QL_FLAG_VALUES = np.arange(6, dtype=np.int8)
GHRSST_QL_FLAG_MEANINGS = "no_data bad_data worst_quality low_quality acceptable_quality best_quality"
# GDS 2.0 generic l2p_flags bits (used only when no file read gives its own table)
GHRSST_L2P_FLAG_MASKS = np.array([1, 2, 4, 8, 16], dtype=np.int16)
GHRSST_L2P_FLAG_MEANINGS = "microwave land ice lake river"
_FLAG_WORD = re.compile(r"[^A-Za-z0-9_.+@-]")

# Processing parameters copied into global attributes as ``colocation_<name>``.
_PARAM_ATTRS = {
    "radius_m": "colocation_radius_m",
    "max_dt_s": "colocation_max_dt_s",
    "min_quality_level": "colocation_min_quality_level",
    "atl07_collection": "atl07_collection",
    "sst_collection": "sst_collection",
    "sst_collections": "sst_collections",
    "bbox": "colocation_bbox",
    "bbox_margin_deg": "colocation_bbox_margin_deg",
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
    us = t.astype("datetime64[us]")
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


def _atl07_fill(dtype):
    return np.dtype(dtype).type(-1) if np.issubdtype(dtype, np.integer) else np.dtype(dtype).type(np.nan)


def _atl07_attrs(name: str, dtype, tracks: list[Track]) -> dict:
    """A product variable's attributes from the ATL07 granule(s) read: flag tables and units as
    the granule declares them (the first track that has the variable; versions differ)."""
    src: dict[str, Any] = next((t.segments.field_attrs[name] for t in tracks if name in t.segments.field_attrs), {})
    if name in DOCUMENTED_FLAGS and "flag_meanings" not in src:
        values, meanings = DOCUMENTED_FLAGS[name]
        src = {**src, "flag_values": np.array(values), "flag_meanings": meanings}
    attrs: dict[str, Any] = {"long_name": f"ATL07 {name}"}
    if src.get("long_name"):
        attrs["long_name"] = f"ATL07 {src['long_name']}"
    for key in ("flag_values", "flag_masks"):
        if key in src:
            typed = np.asarray(src[key]).astype(dtype)
            attrs[key] = typed[typed != _atl07_fill(dtype)] if key == "flag_values" else typed
    if "flag_meanings" in src:
        words = src["flag_meanings"].split()
        if "flag_values" in src and len(words) == np.size(src["flag_values"]):
            keep = np.asarray(src["flag_values"]).astype(dtype) != _atl07_fill(dtype)
            words = [w for w, k in zip(words, keep, strict=True) if k]  # the fill is no flag value
        attrs["flag_meanings"] = " ".join(_FLAG_WORD.sub("_", w) for w in words)
    if not any(k in attrs for k in ("flag_values", "flag_masks")):
        units = str(src.get("units", "1")).strip() or "1"
        attrs["units"] = {"meters": "m", "meter": "m"}.get(units, units)
    if name == "height_segment_quality":
        attrs["standard_name"] = "quality_flag"
    if name in ICE_CONC_FIELDS:
        attrs["standard_name"] = "sea_ice_area_fraction"  # units as the granule gives them
    where = next((var for out, var, _ in ATL07_FIELDS if out == name), f"heights/{name}")
    attrs["comment"] = (f"ATL07 gtx/sea_ice_segments/{where}, copied; flag table and units as in the granule "
                        "read; fill where the granule has no such variable")
    attrs["coverage_content_type"] = ("qualityInformation" if "quality" in name or "confidence" in name
                                      else "physicalMeasurement")
    return attrs


def _source_label(info: SstSource, key: str) -> str:
    """platform / sensor / standard_name of one L2P source: the file first, then the profile."""
    prof = profile(info.collection) or profile_for_file(info.attrs)
    if key == "standard_name":
        sst_attrs = info.variable_attrs.get("sst", {})
        return str(sst_attrs.get("standard_name") or prof.get("sst_standard_name") or "unknown")
    return str(info.attrs.get(key) or prof.get(key) or "unknown")


def _sst_standard_name(infos: list[SstSource], params: dict) -> str:
    """One standard name for the ``sst`` column: the sources' own if they agree (skin or
    sub-skin), else the generic sea_surface_temperature (per source in sst_source_standard_name).
    With no source read, the requested collections' profiles say it."""
    names = {_source_label(i, "standard_name") for i in infos if i.variable_attrs} - {"unknown"}
    if not any(i.variable_attrs for i in infos):
        requested = params.get("sst_collections") or [params.get("sst_collection")]
        names = {n for c in requested if (n := profile(c).get("sst_standard_name")) is not None}
    return names.pop() if len(names) == 1 else "sea_surface_temperature"


def _flag_table(infos: list[SstSource], var: str, dtype, values, meanings, *, key="flag_values") -> dict:
    """flag_values/flag_masks + flag_meanings as in the L2P files read, when they agree."""
    tables = set()
    for info in infos:
        attrs = info.variable_attrs.get(var, {})
        if attrs.get("flag_meanings") and attrs.get(key) is not None:
            tables.add((tuple(np.atleast_1d(np.asarray(attrs[key])).tolist()), str(attrs["flag_meanings"])))
    if len(tables) == 1:
        vals, words = tables.pop()
        return {key: np.asarray(vals).astype(dtype), "flag_meanings": words}
    return {key: np.asarray(values).astype(dtype), "flag_meanings": meanings}


def build_dataset(
    tracks: list[Track],
    sst_granules: Sequence[str | SstSource],
    params: dict,
    *,
    atl07_attrs: dict | None = None,
    history: str | None = None,
    request_id: str | None = None,
    now: datetime | None = None,
    warnings: list[str] | None = None,
) -> xr.Dataset:
    """The output product for ``tracks`` (one trajectory each) matched against ``sst_granules``.

    ``sst_granules`` lists the L2P inputs in the order ``Matches.granule_index`` refers to
    (:class:`SstSource` records, or names, paths or URLs: only the file name is kept). ``params``: radius_m, max_dt_s,
    min_quality_level, atl07_collection, sst_collection, bbox, start/end (all optional) plus
    optional ACDD overrides (title, creator_name, license, ...). ``atl07_attrs``: metadata from
    the ATL07 reader, kept as ``atl07_<key>`` attributes. Segments without a valid time or
    location are dropped (counted in ``segments_dropped_invalid_location_or_time``); times are
    rounded to the microsecond. Zero tracks or zero matches still give a valid dataset.
    """
    params = dict(params or {})
    now = (now or datetime.now(UTC)).astimezone(UTC)
    infos = [s if isinstance(s, SstSource) else SstSource(str(s)) for s in sst_granules]
    sources = [_basename(i.name) for i in infos]
    for t in tracks:
        _check(t, len(sources))

    masks = [_valid(t) for t in tracks]
    row_size = np.array([int(m.sum()) for m in masks], dtype=np.int32)
    dropped = int(sum(len(t.segments) for t in tracks) - row_size.sum())

    def obs(get, dtype):
        return _concat([np.asarray(get(t))[m] for t, m in zip(tracks, masks, strict=True)], dtype)

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
    screened = "min_quality_level" not in params or params["min_quality_level"] is not None
    data_vars: dict[str, tuple] = {}
    fills: dict[str, Any] = {}

    def add(name: str, dim: str, values: np.ndarray, attrs: dict, fill=None) -> None:
        data_vars[name] = (dim, values, attrs)
        if fill is not None:
            fills[name] = fill

    add("trajectory_id", traj, np.array([f"{t.segments.granule}:{t.segments.beam}" for t in tracks], dtype=str_dt), {
        "cf_role": "trajectory_id", "long_name": "ATL07 granule and beam"})
    add("atl07_granule", traj, np.array([t.segments.granule for t in tracks], dtype=str_dt), {
        "long_name": "ATL07 source granule file name"})
    add("beam", traj, np.array([t.segments.beam for t in tracks], dtype=str_dt), {
        "long_name": "ATLAS ground track (gt1l ... gt3r)"})
    add("beam_strength", traj, np.array([t.segments.strength for t in tracks], dtype=str_dt), {
        "long_name": "beam energy: strong, weak, mixed (yaw flip inside the granule) or unknown",
        "comment": "from the beam group's atlas_beam_type attribute where present, else "
                   "orbit_info/sc_orient (0 backward: left beams strong; 1 forward: right beams "
                   "strong); per segment in beam_strength_flag"})
    add("rowSize", traj, row_size, {
        "long_name": "number of observations for this trajectory", "sample_dimension": "obs"})

    # --- ATL07 fields: flag tables and units as in the granule that was read ----------------
    segment_ids = _int32(obs(lambda t: t.segments.height_segment_id, np.int64), "height_segment_id")
    add("height_segment_id", "obs", segment_ids, {
        "long_name": "ATL07 height segment identifier",
        "comment": "-1 where the source granule has no height_segment_id",
        "coverage_content_type": "referenceInformation"}, np.int64(-1))
    add("height_segment_height", "obs", obs(lambda t: t.segments.height, np.float32), {
        "long_name": "ATL07 height of segment surface",
        "standard_name": "height_above_mean_sea_level", "units": "m",
        "comment": "ATL07 heights/height_segment_height: mean height from the along-track "
                   "segment fit, relative to the mean sea surface",
        "coverage_content_type": "physicalMeasurement"}, np.float32(np.nan))
    add("beam_strength_flag", "obs", obs(lambda t: t.segments.strength_per_segment(), np.int8), {
        "long_name": "beam energy of the segment's beam at the segment's time",
        "flag_values": np.array([0, 1], np.int8), "flag_meanings": "weak strong",
        "comment": "per segment, so a yaw flip (orbit_info/sc_orient_time) inside a granule is "
                   "followed; -1 unknown", "coverage_content_type": "referenceInformation"}, np.int8(-1))
    atl07_vars: list[tuple[str, type[np.generic], Callable[[Track], np.ndarray]]] = [
        ("height_segment_quality", np.int16, lambda t: t.segments.quality),
        ("height_segment_type", np.int16, lambda t: t.segments.segment_type)]

    def stored(n: str, dtype: type[np.generic]) -> Callable[[Track], np.ndarray]:
        return lambda t: t.segments.fields.get(n, np.full(len(t.segments), _atl07_fill(dtype), dtype))

    names = [n for n, _, _ in ATL07_FIELDS if any(n in t.segments.fields for t in tracks)]
    atl07_vars += [(n, dtype, stored(n, dtype)) for n, _, dtype in ATL07_FIELDS if n in names]
    for name, dtype, get in atl07_vars:
        attrs = _atl07_attrs(name, dtype, tracks)
        add(name, "obs", obs(get, dtype), attrs, _atl07_fill(dtype))

    # --- the match and its neighbourhood ----------------------------------------------------
    sst_std_name = _sst_standard_name(infos, params)
    add("sst", "obs", when_matched(obs(lambda t: t.matches.sst, np.float32), np.float32(np.nan)), {
        "long_name": "colocated GHRSST L2P sea surface temperature",
        "standard_name": sst_std_name, "units": "K",
        "comment": ("nearest valid L2P pixel within sst_radius and colocation_max_dt_s"
                    + (" with quality_level >= colocation_min_quality_level" if screened
                       else "; NO quality screening was applied (min_quality_level null)")
                    + "; SST outside the L2P variable's valid_min/valid_max is not valid; fill where none. "
                    "Not bias corrected: bias-corrected SST = sst - sst_sses_bias (GDS 2.0)"),
        "coverage_content_type": "physicalMeasurement"}, np.float32(np.nan))
    add("sst_distance", "obs", when_matched(obs(lambda t: t.matches.distance_m, np.float32), np.float32(np.nan)), {
        "long_name": "great-circle distance from segment to matched SST pixel centre", "units": "m",
        "comment": "on a sphere of radius 6371008.8 m (IUGG mean); differs from the WGS84 "
                   "geodesic by up to ~0.4 % at high latitudes (docs/SCIENCE.md)",
        "coverage_content_type": "auxiliaryInformation"}, np.float32(np.nan))
    add("sst_dt", "obs", when_matched(obs(lambda t: t.matches.dt_s, np.float64), np.nan), {
        "long_name": "matched SST pixel time minus segment time",
        "standard_name": "time_sample_difference_due_to_collocation", "units": "s",
        "comment": "pixel time is L2P time + sst_dtime", "coverage_content_type": "auxiliaryInformation"},
        np.float64(np.nan))
    add("sst_radius", "obs", obs(lambda t: t.matches.radius_m, np.float32), {
        "long_name": "colocation radius applied to the segment", "units": "m",
        "comment": "colocation_radius_m, or in footprint mode half the diagonal of the local L2P "
                   "pixel (from the swath's own grid spacing) nearest to the segment; fill where "
                   "no L2P pixel was near", "coverage_content_type": "auxiliaryInformation"},
        np.float32(np.nan))
    add("sst_pixel_nj", "obs", when_matched(obs(lambda t: t.matches.pixel_nj, np.int32), np.int32(-1)), {
        "long_name": "row (nj) of the matched pixel in its L2P granule", "units": "1",
        "comment": "0-based, in the full swath of sst_source_name[sst_granule]; one pixel feeds "
                   "many segments: (sst_granule, sst_pixel_nj, sst_pixel_ni) identifies it",
        "coverage_content_type": "referenceInformation"}, np.int32(-1))
    add("sst_pixel_ni", "obs", when_matched(obs(lambda t: t.matches.pixel_ni, np.int32), np.int32(-1)), {
        "long_name": "column (ni) of the matched pixel in its L2P granule", "units": "1",
        "coverage_content_type": "referenceInformation"}, np.int32(-1))
    add("sst_quality_level", "obs", when_matched(obs(lambda t: t.matches.quality_level, np.int8), QL_FILL), {
        "long_name": "GHRSST quality level of matched SST pixel",
        **_flag_table(infos, "quality_level", np.int8, GHRSST_QL_FLAG_VALUES, GHRSST_QL_FLAG_MEANINGS),
        "valid_min": np.int8(0), "valid_max": np.int8(5),
        "coverage_content_type": "qualityInformation"}, QL_FILL)
    add("sst_l2p_flags", "obs", when_matched(obs(lambda t: t.matches.l2p_flags, np.int16), FLAGS_FILL), {
        "long_name": "GHRSST L2P flags of matched SST pixel",
        **_flag_table(infos, "l2p_flags", np.int16, GHRSST_L2P_FLAG_MASKS, GHRSST_L2P_FLAG_MEANINGS, key="flag_masks"),
        "comment": "flag table copied from the L2P granules read (GDS 2.0: bits 0-4 generic, "
                   "bits 5-15 product specific)",
        "coverage_content_type": "qualityInformation"}, FLAGS_FILL)
    add("sst_ice", "obs", when_matched(obs(lambda t: t.matches.ice, np.int8), np.int8(-1)), {
        "long_name": "ice bit of the matched pixel's l2p_flags",
        "flag_values": np.array([0, 1], np.int8), "flag_meanings": "not_ice ice",
        "comment": "the l2p_flags bit whose flag_meanings entry is 'ice' in the source file; "
                   "fill where no match or the file has no such bit",
        "coverage_content_type": "qualityInformation"}, np.int8(-1))
    for name, long_name in (("sses_bias", "SSES bias of the matched pixel"),
                            ("sses_standard_deviation", "SSES standard deviation of the matched pixel"),
                            ("dt_analysis", "matched pixel SST minus the L2P product's reference analysis")):
        if name == "dt_analysis" and not any("dt_analysis" in i.variable_attrs for i in infos):
            continue  # the products read have none
        comment = {
            "sses_bias": "GHRSST GDS 2.0 / PO.DAAC MODIS L2P user guide: bias-corrected SST = "
                         "sst - sst_sses_bias (the bias is subtracted)",
            "sses_standard_deviation": "GDS 2.0 Single Sensor Error Statistics: uncertainty of the "
                                       "bias-corrected SST",
            "dt_analysis": "L2P dt_analysis as in the source file (fill where the product has none)",
        }[name]
        add(f"sst_{name}", "obs", when_matched(obs(lambda t, n=name: getattr(t.matches, n), np.float32),
                                               np.float32(np.nan)), {
            "long_name": long_name, "units": "K", "comment": comment,
            **({"standard_name": f"{sst_std_name} standard_error"} if name == "sses_standard_deviation" else {}),
            "coverage_content_type": "qualityInformation"}, np.float32(np.nan))
    count_doc = {
        "n_valid": "valid pixels (finite SST inside the valid range and, if screened, quality_level "
                   ">= colocation_min_quality_level): the match is the nearest of them",
        "n_rejected_quality": "pixels with an SST whose quality_level is below colocation_min_quality_level",
        "n_out_of_range": "pixels whose SST lies outside the L2P variable's valid_min/valid_max",
        "n_ice": "pixels whose l2p_flags ice bit is set (also counted in one of the above)",
    }
    outside_dt = "geolocated L2P pixels within sst_radius but outside colocation_max_dt_s (or without a time)"
    for name, doc in count_doc.items():
        add(f"sst_{name}", "obs", obs(lambda t, n=name: getattr(t.matches, n), np.int32), {
            "long_name": f"number of L2P {doc}, within sst_radius and colocation_max_dt_s",
            "standard_name": "number_of_observations", "units": "1",
            "coverage_content_type": "auxiliaryInformation",
            "comment": "over the matched pixel's granule; summed over every granule read where no match"})
    add("sst_n_outside_dt", "obs", obs(lambda t: t.matches.n_outside_dt, np.int32), {
        "long_name": f"number of {outside_dt}", "standard_name": "number_of_observations", "units": "1",
        "coverage_content_type": "auxiliaryInformation",
        "comment": "with the counts above, says why a segment has no match: nothing within the "
                   "radius (all zero), only outside the time window, or only rejected pixels"})
    add("sst_median", "obs", obs(lambda t: t.matches.sst_median, np.float32), {
        "long_name": "median SST of the valid pixels within sst_radius and colocation_max_dt_s",
        "standard_name": sst_std_name, "cell_methods": "area: median", "units": "K",
        "coverage_content_type": "auxiliaryInformation"}, np.float32(np.nan))
    add("sst_stddev", "obs", obs(lambda t: t.matches.sst_std, np.float32), {
        "long_name": "standard deviation (ddof 0) of the SST of those valid pixels",
        "standard_name": sst_std_name, "cell_methods": "area: standard_deviation", "units": "K",
        "coverage_content_type": "auxiliaryInformation"}, np.float32(np.nan))
    add("sst_granule", "obs", sst_index, {
        "long_name": "index of the L2P granule the SST came from",
        # an enumeration: plain integers for every reader, names for CF-aware ones
        "flag_values": np.arange(-1, len(sources), dtype=np.int32),
        "flag_meanings": " ".join(["no_match"] + [_FLAG_WORD.sub("_", s) for s in sources]),
        "comment": "0-based index into sst_source_name (exact file names); -1 where no match",
        "coverage_content_type": "referenceInformation"})
    collections = list(dict.fromkeys(i.collection or "unknown" for i in infos))
    source_collection = np.array([collections.index(i.collection or "unknown") for i in infos], np.int32)
    add("sst_collection", "obs", np.where(matched, source_collection[np.clip(sst_index, 0, None)]
                                          if infos else -1, -1).astype(np.int32), {
        "long_name": "index of the SST collection the match came from",
        "flag_values": np.arange(-1, len(collections), dtype=np.int32),
        "flag_meanings": " ".join(["no_match"] + [_FLAG_WORD.sub("_", c) for c in collections]),
        "comment": "0-based index into sst_collection_name; -1 where no match",
        "coverage_content_type": "referenceInformation"})
    add("sst_collection_name", "sst_collection_dim", np.array(collections if infos else [], dtype=str_dt), {
        "long_name": "SST collection (CMR concept id or short name)"})
    add("sst_source_name", "sst_source", np.array(sources, dtype=str_dt), {
        "long_name": "GHRSST L2P source granule file name"})
    for key, long_name in (("platform", "platform"), ("sensor", "sensor"), ("standard_name", "SST standard name")):
        add(f"sst_source_{key}", "sst_source", np.array([_source_label(i, key) for i in infos], dtype=str_dt), {
            "long_name": f"{long_name} of the L2P granule (from the file, else the collection profile)"})
    coords = {
        "time": ("obs", time, {"standard_name": "time", "long_name": "segment time (UTC)", "axis": "T"}),
        "lat": ("obs", lat, {"standard_name": "latitude", "long_name": "segment centre latitude",
                             "units": "degrees_north", "axis": "Y"}),
        "lon": ("obs", lon, {"standard_name": "longitude", "long_name": "segment centre longitude",
                             "units": "degrees_east", "axis": "X"}),
    }
    ds = xr.Dataset(data_vars=data_vars, coords=coords)

    # --- encoding: explicit fill values so every reader masks the same way -----------------
    for vname, var in ds.variables.items():
        var.encoding["_FillValue"] = fills.get(str(vname))  # None: no fill for coordinates/ids
        if var.dtype == object:
            var.encoding["dtype"] = str
        elif var.dims == ("obs",) and var.size:
            var.encoding.update(zlib=True, complevel=DEFLATE_LEVEL, shuffle=True,
                                chunksizes=(min(var.size, max(1, CHUNK_BYTES // var.dtype.itemsize)),))
    ds["time"].encoding.update(units=TIME_UNITS, calendar="standard", dtype="float64")
    # segment id labels the observation; distance and time offset say where and when the SST
    # sample was taken relative to the segment: auxiliary coordinates, not measurements.
    # CF has no standard name for an SSES bias, an analysis difference, a fit confidence or a
    # pixel index: they label the sample they belong to, as auxiliary coordinates
    ds["height_segment_height"].encoding["coordinates"] = " ".join(
        v for v in ("time", "lat", "lon", "height_segment_id", "seg_dist_x", "height_segment_length_seg",
                    "height_segment_confidence") if v in ds.variables)
    ds["sst"].encoding["coordinates"] = " ".join(
        v for v in ("time", "lat", "lon", "sst_dt", "sst_distance", "sst_radius", "sst_pixel_nj", "sst_pixel_ni",
                    "sst_sses_bias", "sst_dt_analysis") if v in ds.variables)
    ds["sst"].attrs["ancillary_variables"] = " ".join(
        v for v in ("sst_quality_level", "sst_l2p_flags", "sst_ice", "sst_sses_bias",
                    "sst_sses_standard_deviation", "sst_granule") if v in ds)
    ds["height_segment_height"].attrs["ancillary_variables"] = " ".join(
        v for v in ("height_segment_quality", "height_segment_fit_quality_flag", "height_segment_confidence",
                    "height_segment_type", "height_segment_ssh_flag") if v in ds)

    ds.attrs = _global_attrs(ds, tracks, infos, params, atl07_attrs, history, request_id, now, dropped, warnings)
    return ds


def _global_attrs(ds, tracks, infos, params, atl07_attrs, history, request_id, now, dropped, warnings) -> dict:
    sources = [_basename(i.name) for i in infos]
    granules = list(dict.fromkeys(t.segments.granule for t in tracks))
    version = _package_version()
    created = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    n_matched = int((ds["sst_granule"].values >= 0).sum())
    atl07_attrs = dict(atl07_attrs or {})
    atl07_doi = str(atl07_attrs.get("identifier_product_doi") or params.get("atl07_doi") or ATL07_DOI_DEFAULT)
    if atl07_doi.lower().startswith("doi:"):
        atl07_doi = "https://doi.org/" + atl07_doi[4:]
    # platform, sensor and DOI per SST collection: from the files, then the collection profiles
    collections = list(dict.fromkeys(i.collection for i in infos))
    requested = params.get("sst_collections") or [params.get("sst_collection")]
    refs, platforms, sensors = [], [], []
    profiles = [profile(c) for c in requested if c]
    profiles += [profile(i.collection) or profile_for_file(i.attrs) for i in infos]
    if params.get("sst_doi"):
        refs.append(str(params["sst_doi"]))
    for prof in profiles:
        if prof:
            refs.append(f"{prof['short_name']} https://doi.org/{prof['doi']}")
    refs += [f"collection {c}" for c in [*requested, *collections] if c and not profile(c)]
    refs = list(dict.fromkeys(refs))
    for i in infos:
        platforms.append(_source_label(i, "platform"))
        sensors.append(_source_label(i, "sensor"))
    platforms = [p for p in dict.fromkeys(platforms) if p != "unknown"]
    sensors = [p for p in dict.fromkeys(sensors) if p != "unknown"]
    screened = "min_quality_level" not in params or params["min_quality_level"] is not None
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
            "EARTH SCIENCE > CRYOSPHERE > SEA ICE > SEA ICE ELEVATION, ICESat-2, ATL07, GHRSST, L2P, "
            + "".join(f"{x}, " for x in sensors) + "colocation"
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
        "platform": ", ".join(["ICESat-2", *platforms]),
        "instrument": ", ".join(["ATLAS", *sensors]),
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
        "references": f"ATL07: {atl07_doi}; GHRSST L2P: {', '.join(refs) or 'none'}",
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
        "colocation_quality_screening": (f"quality_level >= {params.get('min_quality_level')}" if screened else
                                         "none: no quality screening was applied (min_quality_level null)"),
    }
    if warnings:
        attrs["reader_warnings"] = scrub("; ".join(dict.fromkeys(warnings)))[:8000]
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
