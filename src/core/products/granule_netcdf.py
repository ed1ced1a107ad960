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
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from core.atomic import atomic_path
from core.collections import profile, profile_for_file
from core.model import FLAGS_FILL, QL_FILL, SstSource, Track
from core.products.attributes import (
    CONVENTIONS,
    PRODUCT_NAME,
    coverage_attrs,
    date_attrs,
    flag_word,
    history_entry,
    index_flags,
    joined,
    lon_range,
    mark_synthetic,
    package_version,
    scrub,
    utc_stamp,
)
from core.science.atl07 import ATL07_FIELDS, DOCUMENTED_FLAGS, ICE_CONC_FIELDS, int_fill
from core.science.pairing import ACCEPTABLE_WORDS, quality_meaning

log = logging.getLogger(__name__)

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

# Processing parameters copied into global attributes as ``colocation_<name>``.
_PARAM_ATTRS = {
    "radius_m": "colocation_radius_m",
    "max_dt_s": "colocation_max_dt_s",
    "min_quality_level": "colocation_min_quality_level",
    "exclude_ice": "colocation_exclude_ice",
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


def _basename(source: str) -> str:
    """Granule name from a path, s3:// or https:// URL (never the query string)."""
    clean = scrub(source).rstrip("/")
    return clean.rsplit("/", 1)[-1]


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


def _atl07_fill(name: str, dtype):
    """-1 for an integer field (FLAG_FILL where -1 is one of its flag values), NaN for a float."""
    return np.dtype(dtype).type(int_fill(name)) if np.issubdtype(dtype, np.integer) else np.dtype(dtype).type(np.nan)


# ATL07 data dictionary (v003-v006): ice concentration from passive microwave is in percent; the
# v003 granules label it units "1" while holding 18.8-95.0. CF's sea_ice_area_fraction is a
# fraction, so percent (declared, or "1"/none as in v003) is divided by 100.
_PERCENT_UNITS = ("percent", "%", "1", "")


def _ice_conc_scale(name: str, tracks: list[Track]) -> float:
    """1/100 when the granule's ice concentration is percent (see _PERCENT_UNITS), else 1."""
    src: dict[str, Any] = next((t.segments.field_attrs[name] for t in tracks if name in t.segments.field_attrs), {})
    return 0.01 if str(src.get("units", "")).strip().lower() in _PERCENT_UNITS else 1.0


def _atl07_attrs(name: str, dtype, tracks: list[Track]) -> dict:
    """A product variable's attributes from the ATL07 granule(s) read: flag tables and units as
    the granule declares them (the first track that has the variable; versions differ)."""
    src: dict[str, Any] = next((t.segments.field_attrs[name] for t in tracks if name in t.segments.field_attrs), {})
    if name in DOCUMENTED_FLAGS and "flag_meanings" not in src:
        values, meanings = DOCUMENTED_FLAGS[name]
        src = {**src, "flag_values": np.array(values), "flag_meanings": meanings}
    fill = _atl07_fill(name, dtype)
    attrs: dict[str, Any] = {"long_name": f"ATL07 {name}"}
    if src.get("long_name"):
        attrs["long_name"] = f"ATL07 {src['long_name']}"
    for key in ("flag_values", "flag_masks"):
        if key in src:
            typed = np.asarray(src[key]).astype(dtype)
            attrs[key] = typed[typed != fill] if key == "flag_values" else typed
    if "flag_meanings" in src:
        words = src["flag_meanings"].split()
        if "flag_values" in src and len(words) == np.size(src["flag_values"]):
            keep = np.asarray(src["flag_values"]).astype(dtype) != fill
            words = [w for w, k in zip(words, keep, strict=True) if k]  # the fill is no flag value
        attrs["flag_meanings"] = " ".join(flag_word(w) for w in words)
    if not any(k in attrs for k in ("flag_values", "flag_masks")):
        units = str(src.get("units", "1")).strip() or "1"
        attrs["units"] = {"meters": "m", "meter": "m"}.get(units, units)
    if name == "height_segment_quality":
        attrs["standard_name"] = "quality_flag"
    if name == "height_segment_surface_error_est":  # the fit's error estimate of height_segment_height
        attrs["standard_name"] = "height_above_mean_sea_level standard_error"
        if attrs.get("units") in (None, "1"):  # ATL07 data dictionary: meters (a granule without units)
            attrs["units"] = "m"
    where = next((var for out, var, _ in ATL07_FIELDS if out == name), f"heights/{name}")
    attrs["comment"] = (f"ATL07 gtx/sea_ice_segments/{where}, copied; flag table and units as in the granule "
                        "read; fill where the granule has no such variable")
    if name in ICE_CONC_FIELDS and _ice_conc_scale(name, tracks) != 1.0:
        attrs.update(standard_name="sea_ice_area_fraction", units="1", valid_min=np.float32(0), valid_max=np.float32(1))
        attrs["comment"] = (f"ATL07 gtx/sea_ice_segments/{where} divided by 100: the ATL07 data dictionary gives "
                            f"percent (the granule's units: {src.get('units', 'none')!r}); fill where absent")
    elif name in ICE_CONC_FIELDS:  # a unit of its own: no fraction standard name
        attrs["comment"] += f"; units {src.get('units')!r} as the granule declares them"
    elif "flag_values" in attrs and name in DOCUMENTED_FLAGS and int(fill) != -1:
        meaning = DOCUMENTED_FLAGS[name][1].split()[0]
        attrs["comment"] += f"; -1 is a flag value here ({meaning}), the fill is {int(fill)}"
    attrs["coverage_content_type"] = ("qualityInformation" if "quality" in name or "confidence" in name
                                      else "physicalMeasurement")
    return attrs


def _collection_of(info: SstSource) -> str:
    """The collection a source came from: the request's, else the file's own GDS 2.0 ``id`` (its
    collection's short name), else "unknown"."""
    return str(info.collection or info.attrs.get("id") or "unknown")


def _citation(info: SstSource, params: dict) -> str | None:
    """How to cite the source's collection: its profile's DOI, else the DOI CMR gave for it
    (params["sst_dois"]: collection -> DOI), else the file's own global attributes (ACDD/GDS 2.0
    ``doi``/``identifier_product_doi``, or ``title``/``id`` with ``references``)."""
    prof = profile(info.collection) or profile_for_file(info.attrs)
    if prof:
        return f"{prof['short_name']} https://doi.org/{prof['doi']}"
    collection = _collection_of(info)
    doi = (params.get("sst_dois") or {}).get(collection) or next(
        (str(info.attrs[k]) for k in ("doi", "DOI", "identifier_product_doi") if info.attrs.get(k)), None)
    if doi:
        doi = doi if doi.startswith("http") else "https://doi.org/" + doi.removeprefix("doi:")
        return f"{collection} {doi}"
    words = [str(info.attrs[k]) for k in ("title", "id", "references", "creator_name") if info.attrs.get(k)]
    return scrub(f"{collection}: " + "; ".join(words)) if words else None


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


def _declared_table(info: SstSource, var: str, key: str) -> tuple[tuple, str] | None:
    attrs = info.variable_attrs.get(var, {})
    if attrs.get("flag_meanings") and attrs.get(key) is not None:
        return tuple(np.atleast_1d(np.asarray(attrs[key])).tolist()), str(attrs["flag_meanings"])
    return None


def _flag_table(infos: list[SstSource], var: str, dtype, values, meanings, *, key="flag_values") -> dict:
    """flag_values/flag_masks + flag_meanings as in the L2P files read, when they agree; when the
    producers' tables differ, none on the variable (each collection's table is in the
    sst_collection_* variables, which sst_collection indexes)."""
    tables = {t for info in infos if (t := _declared_table(info, var, key)) is not None}
    if len(tables) == 1:
        vals, words = tables.pop()
        return {key: np.asarray(vals).astype(dtype), "flag_meanings": words}
    if len(tables) > 1:
        per = "sst_collection_quality_flag_meanings" if var == "quality_level" else "sst_collection_l2p_flag_meanings"
        return {"comment": f"the sources' producers declare different flag tables: each match's is {per}"
                           "[sst_collection]"}
    return {key: np.asarray(values).astype(dtype), "flag_meanings": meanings}


# What the SST is, by its source's standard name (CF standard name table; GDS 2.0 §5: skin,
# sub-skin, foundation; NAVO's VIIRS L2P: sea_water_temperature, a regression to buoys at depth):
# the words of the title and summary and the GCMD keyword.
_SST_KIND = {
    "sea_surface_skin_temperature": ("sea surface skin temperature", "SEA SURFACE SKIN TEMPERATURE"),
    "sea_surface_subskin_temperature": ("sea surface sub-skin temperature", "SEA SURFACE SUBSKIN TEMPERATURE"),
    "sea_surface_foundation_temperature": ("sea surface foundation temperature",
                                           "SEA SURFACE FOUNDATION TEMPERATURE"),
    "sea_water_temperature": ("bulk sea water temperature (regressed to buoys at depth)", None),
}


def sst_kind(standard_name: str) -> tuple[str, str]:
    """(words for the title/summary, GCMD keyword path) of an SST standard name."""
    words, leaf = _SST_KIND.get(standard_name, ("sea surface temperature", None))
    path = "EARTH SCIENCE > OCEANS > OCEAN TEMPERATURE > SEA SURFACE TEMPERATURE"
    return words, path + (f" > {leaf}" if leaf else "")


FREEZING_K = 271.35  # seawater freezing point at salinity ~35 (-1.8 °C): colder is no open-water SST
# sst_match_flags: bit -> meaning (what a match means, per segment)
MATCH_FLAGS = (("ice_flagged", "the matched pixel's L2P ice bit is set (GDS 2.0 l2p_flags): an ice surface "
                "temperature, not SST, may be reported"),
               ("below_freezing", f"matched SST < {FREEZING_K} K (-1.8 C, seawater's freezing point)"),
               ("unscreened", "no quality screening was applied (min_quality_level null)"),
               ("height_invalid", "the segment's height_segment_height is missing"))


def _screened(params: dict) -> bool:
    """Whether L2P pixels were screened by quality_level (min_quality_level null: not)."""
    return "min_quality_level" not in params or params["min_quality_level"] is not None


# ============================================================================ the variable table
_STR = object  # python str objects: written as netCDF variable-length strings
_F32_NAN = np.float32(np.nan)
# A key of _Var.attrs whose value is a function of the _Product giving several attributes at
# once (flag_values or flag_masks, then flag_meanings), written where the key stands.
_FLAG_TABLE = "<flag table>"


@dataclass(frozen=True)
class _Var:
    """One variable of the product, declared as data; :func:`build_dataset` makes each an xarray variable.

    ``source`` says where the values come from: a dotted attribute name (or a function) of each
    item along ``dim`` (a Track for ``trajectory`` and ``obs``, an SstSource for ``sst_source``, a
    collection name for ``sst_collection_dim``); None for the few build_dataset computes itself
    (``_Product.computed``). An attribute value may be a function of the _Product, for what
    depends on the inputs (the SST standard name, the flag tables the files declare).
    """

    name: str
    dim: str
    dtype: Any
    source: str | Callable[[Any], Any] | None
    attrs: Mapping[str, Any]
    fill: Any = None  # _FillValue; None: no fill (coordinates, ids, counts, enumerations, names)
    matched_only: bool = False  # a property of the matched pixel: the fill where there is no match
    when: Callable[[_Product], bool] | None = None  # declared only in the products this holds for


def _sst_comment(p: _Product) -> str:
    return ("nearest valid L2P pixel within sst_radius and colocation_max_dt_s"
            + (" with quality_level >= colocation_min_quality_level" if p.screened
               else "; NO quality screening was applied (min_quality_level null)")
            + "; SST outside the L2P variable's valid_min/valid_max is not valid; fill where none. "
            "Not bias corrected: bias-corrected SST = sst - sst_sses_bias (GDS 2.0)")


def _sst_std_name(p: _Product) -> str:
    return p.sst_standard_name


def _count_var(name: str, long_name: str, comment: str) -> _Var:
    """A per-segment count of the L2P pixels near the segment (they say why it has no match)."""
    return _Var(f"sst_{name}", "obs", np.int32, f"matches.{name}", {
        "long_name": long_name, "standard_name": "number_of_observations", "units": "1",
        "coverage_content_type": "auxiliaryInformation", "comment": comment})


_COUNT_DOC = {
    "n_valid": "valid pixels (finite SST inside the valid range and, if screened, quality_level "
               ">= colocation_min_quality_level): the match is the nearest of them",
    "n_rejected_quality": "pixels with an SST whose quality_level is below colocation_min_quality_level",
    "n_out_of_range": "pixels whose SST lies outside the L2P variable's valid_min/valid_max",
    "n_ice": "pixels whose l2p_flags ice bit is set (also counted in one of the above)",
    "n_excluded_ice": "pixels that would be valid but are excluded as ice (colocation_exclude_ice; ice bit set)",
}
_OUTSIDE_DT = "geolocated L2P pixels within sst_radius but outside colocation_max_dt_s (or without a time)"

_TRAJECTORY_VARS = (
    _Var("trajectory_id", "trajectory", _STR, lambda t: f"{t.segments.granule}:{t.segments.beam}", {
        "cf_role": "trajectory_id", "long_name": "ATL07 granule and beam"}),
    _Var("atl07_granule", "trajectory", _STR, "segments.granule", {
        "long_name": "ATL07 source granule file name"}),
    _Var("beam", "trajectory", _STR, "segments.beam", {
        "long_name": "ATLAS ground track (gt1l ... gt3r)"}),
    _Var("beam_strength", "trajectory", _STR, "segments.strength", {
        "long_name": "beam energy: strong, weak, mixed (yaw flip inside the granule) or unknown",
        "comment": "from the beam group's atlas_beam_type attribute where present, else "
                   "orbit_info/sc_orient (0 backward: left beams strong; 1 forward: right beams "
                   "strong); per segment in beam_strength_flag"}),
    _Var("rowSize", "trajectory", np.int32, None, {
        "long_name": "number of observations for this trajectory", "sample_dimension": "obs"}),
)

# --- ATL07 fields: flag tables and units as in the granule that was read (_atl07_vars) --------
_SEGMENT_VARS = (
    _Var("height_segment_id", "obs", np.int32, None, {
        "long_name": "ATL07 height segment identifier",
        "comment": "-1 where the source granule has no height_segment_id",
        "coverage_content_type": "referenceInformation"}, np.int64(-1)),
    _Var("height_segment_height", "obs", np.float32, "segments.height", {
        "long_name": "ATL07 height of segment surface",
        "standard_name": "height_above_mean_sea_level", "units": "m",
        "comment": "ATL07 heights/height_segment_height: mean height from the along-track "
                   "segment fit, relative to the mean sea surface",
        "coverage_content_type": "physicalMeasurement"}, _F32_NAN),
    _Var("beam_strength_flag", "obs", np.int8, lambda t: t.segments.strength_per_segment(), {
        "long_name": "beam energy of the segment's beam at the segment's time",
        "flag_values": np.array([0, 1], np.int8), "flag_meanings": "weak strong",
        "comment": "per segment, so a yaw flip (orbit_info/sc_orient_time) inside a granule is "
                   "followed; -1 unknown", "coverage_content_type": "referenceInformation"}, np.int8(-1)),
)

# --- the match and its neighbourhood -----------------------------------------------------------
_MATCH_VARS = (
    _Var("sst", "obs", np.float32, "matches.sst", {
        "long_name": "colocated GHRSST L2P sea surface temperature",
        "standard_name": _sst_std_name, "units": "K",
        "comment": _sst_comment,
        "coverage_content_type": "physicalMeasurement"}, _F32_NAN, matched_only=True),
    _Var("sst_distance", "obs", np.float32, "matches.distance_m", {
        "long_name": "great-circle distance from segment to matched SST pixel centre", "units": "m",
        "comment": "on a sphere of radius 6371008.8 m (IUGG mean); differs from the WGS84 "
                   "geodesic by up to ~0.4 % at high latitudes (docs/SCIENCE.md)",
        "coverage_content_type": "auxiliaryInformation"}, _F32_NAN, matched_only=True),
    _Var("sst_dt", "obs", np.float64, "matches.dt_s", {
        "long_name": "matched SST pixel time minus segment time",
        "standard_name": "time_sample_difference_due_to_collocation", "units": "s",
        "comment": "pixel time is L2P time + sst_dtime", "coverage_content_type": "auxiliaryInformation"},
        np.float64(np.nan), matched_only=True),
    _Var("sst_radius", "obs", np.float32, "matches.radius_m", {
        "long_name": "colocation radius applied to the segment", "units": "m",
        "comment": "colocation_radius_m, or in footprint mode half the diagonal of the local L2P "
                   "pixel (from the swath's own grid spacing) nearest to the segment; fill where "
                   "no L2P pixel was near", "coverage_content_type": "auxiliaryInformation"}, _F32_NAN),
    _Var("sst_pixel_nj", "obs", np.int32, "matches.pixel_nj", {
        "long_name": "row (nj) of the matched pixel in its L2P granule", "units": "1",
        "comment": "0-based, in the full swath of sst_source_name[sst_granule]; one pixel feeds "
                   "many segments: (sst_granule, sst_pixel_nj, sst_pixel_ni) identifies it",
        "coverage_content_type": "referenceInformation"}, np.int32(-1), matched_only=True),
    _Var("sst_pixel_ni", "obs", np.int32, "matches.pixel_ni", {
        "long_name": "column (ni) of the matched pixel in its L2P granule", "units": "1",
        "coverage_content_type": "referenceInformation"}, np.int32(-1), matched_only=True),
    _Var("sst_quality_level", "obs", np.int8, "matches.quality_level", {
        "long_name": "GHRSST quality level of matched SST pixel",
        _FLAG_TABLE: lambda p: _flag_table(p.infos, "quality_level", np.int8, GHRSST_QL_FLAG_VALUES,
                                           GHRSST_QL_FLAG_MEANINGS),
        "valid_min": np.int8(0), "valid_max": np.int8(5),
        "coverage_content_type": "qualityInformation"}, QL_FILL, matched_only=True),
    _Var("sst_l2p_flags", "obs", np.int16, "matches.l2p_flags", {
        "long_name": "GHRSST L2P flags of matched SST pixel",
        "comment": "flag table copied from the L2P granules read (GDS 2.0: bits 0-4 generic, "
                   "bits 5-15 product specific)",
        _FLAG_TABLE: lambda p: _flag_table(p.infos, "l2p_flags", np.int16, GHRSST_L2P_FLAG_MASKS,
                                           GHRSST_L2P_FLAG_MEANINGS, key="flag_masks"),
        "coverage_content_type": "qualityInformation"}, FLAGS_FILL, matched_only=True),
    _Var("sst_ice", "obs", np.int8, "matches.ice", {
        "long_name": "ice bit of the matched pixel's l2p_flags",
        "flag_values": np.array([0, 1], np.int8), "flag_meanings": "not_ice ice",
        "comment": "the l2p_flags bit whose flag_meanings entry is 'ice' in the source file; "
                   "fill where no match or the file has no such bit",
        "coverage_content_type": "qualityInformation"}, np.int8(-1), matched_only=True),
    _Var("sst_sses_bias", "obs", np.float32, "matches.sses_bias", {
        "long_name": "SSES bias of the matched pixel", "units": "K",
        "comment": "GHRSST GDS 2.0 / PO.DAAC MODIS L2P user guide: bias-corrected SST = "
                   "sst - sst_sses_bias (the bias is subtracted)",
        "coverage_content_type": "qualityInformation"}, _F32_NAN, matched_only=True),
    _Var("sst_sses_standard_deviation", "obs", np.float32, "matches.sses_standard_deviation", {
        "long_name": "SSES standard deviation of the matched pixel", "units": "K",
        "comment": "GDS 2.0 Single Sensor Error Statistics: uncertainty of the bias-corrected SST",
        "standard_name": lambda p: f"{p.sst_standard_name} standard_error",
        "coverage_content_type": "qualityInformation"}, _F32_NAN, matched_only=True),
    _Var("sst_bias_corrected", "obs", np.float32, lambda t: t.matches.sst - t.matches.sses_bias, {
        "long_name": "bias-corrected SST of the matched pixel: sst - sst_sses_bias", "units": "K",
        "comment": "GDS 2.0 Single Sensor Error Statistics: the SSES bias is subtracted; its uncertainty is "
                   "sst_sses_standard_deviation; fill where the product has no sses_bias",
        "coverage_content_type": "physicalMeasurement"}, _F32_NAN, matched_only=True),
    _Var("sst_pixel_lat", "obs", np.float32, "matches.pixel_lat", {
        "long_name": "centre latitude of the matched SST pixel", "units": "degrees_north",
        "coverage_content_type": "referenceInformation"}, _F32_NAN, matched_only=True),
    _Var("sst_pixel_lon", "obs", np.float32, lambda t: (t.matches.pixel_lon + 180.0) % 360.0 - 180.0, {
        "long_name": "centre longitude of the matched SST pixel", "units": "degrees_east",
        "coverage_content_type": "referenceInformation"}, _F32_NAN, matched_only=True),
    _Var("sst_match_flags", "obs", np.int8, None, {
        "long_name": "what the match means: flags of the matched pixel and the segment",
        "flag_masks": np.array([1 << i for i in range(len(MATCH_FLAGS))], np.int8),
        "flag_meanings": " ".join(w for w, _ in MATCH_FLAGS),
        "comment": "; ".join(f"{w}: {doc}" for w, doc in MATCH_FLAGS)
                   + ". Without a match only height_invalid can be set",
        "coverage_content_type": "qualityInformation"}),
    _Var("sst_dt_analysis", "obs", np.float32, "matches.dt_analysis", {
        "long_name": "matched pixel SST minus the L2P product's reference analysis", "units": "K",
        "comment": "L2P dt_analysis as in the source file (fill where the product has none)",
        "coverage_content_type": "qualityInformation"}, _F32_NAN, matched_only=True,
        when=lambda p: any("dt_analysis" in i.variable_attrs for i in p.infos)),  # else the products read have none
    *(_count_var(name, f"number of L2P {doc}, within sst_radius and colocation_max_dt_s",
                 "over the matched pixel's granule; summed over every granule read where no match")
      for name, doc in _COUNT_DOC.items()),
    _count_var("n_outside_dt", f"number of {_OUTSIDE_DT}",
               "with the counts above, says why a segment has no match: nothing within the "
               "radius (all zero), only outside the time window, or only rejected pixels"),
    _Var("sst_median", "obs", np.float32, "matches.sst_median", {
        "long_name": "median SST of the valid pixels within sst_radius and colocation_max_dt_s",
        "cell_methods": "area: median", "units": "K",
        "coverage_content_type": "auxiliaryInformation"}, _F32_NAN),
    _Var("sst_stddev", "obs", np.float32, "matches.sst_std", {
        "long_name": "standard deviation (ddof 0) of the SST of those valid pixels",
        "cell_methods": "area: standard_deviation", "units": "K",
        "comment": "fill (NaN) where fewer than two valid pixels are in reach: the spread of one value is undefined",
        "coverage_content_type": "auxiliaryInformation"}, _F32_NAN),
    _Var("sst_granule", "obs", np.int32, None, {
        "long_name": "index of the L2P granule the SST came from",
        # an enumeration: plain integers for every reader, names for CF-aware ones
        _FLAG_TABLE: lambda p: index_flags(p.sources, np.int32),
        "comment": "0-based index into sst_source_name (exact file names); -1 where no match",
        "coverage_content_type": "referenceInformation"}),
    _Var("sst_collection", "obs", np.int32, None, {
        "long_name": "index of the SST collection the match came from",
        _FLAG_TABLE: lambda p: index_flags(p.collections, np.int32),
        "comment": "0-based index into sst_collection_name; -1 where no match",
        "coverage_content_type": "referenceInformation"}),
)

_SOURCE_VARS = (
    _Var("sst_collection_name", "sst_collection_dim", _STR, str, {
        "long_name": "SST collection (CMR concept id or short name)"}),
    *(_Var(f"sst_collection_{key}", "sst_collection_dim", _STR, None, {"long_name": doc})
      for key, doc in (("standard_name", "CF standard name of the collection's SST variable"),
                       ("quality_flag_values", "quality_level flag_values of the collection's files"),
                       ("quality_flag_meanings", "quality_level flag_meanings of the collection's files "
                                                 "(the producer's own words for each level)"),
                       ("l2p_flag_masks", "l2p_flags flag_masks of the collection's files"),
                       ("l2p_flag_meanings", "l2p_flags flag_meanings of the collection's files"),
                       ("citation", "how to cite the collection (DOI)"))),
    _Var("sst_source_name", "sst_source", _STR, lambda i: _basename(i.name), {
        "long_name": "GHRSST L2P source granule file name"}),
    _Var("sst_source_platform", "sst_source", _STR, lambda i: _source_label(i, "platform"), {
        "long_name": "platform of the L2P granule (from the file, else the collection profile)"}),
    _Var("sst_source_sensor", "sst_source", _STR, lambda i: _source_label(i, "sensor"), {
        "long_name": "sensor of the L2P granule (from the file, else the collection profile)"}),
    _Var("sst_source_standard_name", "sst_source", _STR, lambda i: _source_label(i, "standard_name"), {
        "long_name": "SST standard name of the L2P granule (from the file, else the collection profile)"}),
)

_COORDINATES = (
    _Var("time", "obs", "datetime64[ns]", None, {
        "standard_name": "time", "long_name": "segment time (UTC)", "axis": "T"}),
    _Var("lat", "obs", np.float64, None, {
        "standard_name": "latitude", "long_name": "segment centre latitude", "units": "degrees_north", "axis": "Y"}),
    _Var("lon", "obs", np.float64, None, {
        "standard_name": "longitude", "long_name": "segment centre longitude", "units": "degrees_east", "axis": "X"}),
)

# segment id labels the observation; distance and time offset say where and when the SST
# sample was taken relative to the segment: auxiliary coordinates, not measurements.
# CF has no standard name for an SSES bias, an analysis difference, a fit confidence or a
# pixel index: they label the sample they belong to, as auxiliary coordinates
_HEIGHT_COORDINATES = ("time", "lat", "lon", "height_segment_id", "seg_dist_x", "height_segment_length_seg",
                       "height_segment_confidence")
# sst's coordinates are where and when it is reported (the segment's); where and when the pixel
# was sampled relative to it, and its error statistics, are ancillary variables
_SST_COORDINATES = ("time", "lat", "lon")
# CF has no standard name for a pixel index, a radius, a sampling distance, an SSES bias, a
# bias-corrected SST or a neighbourhood statistic (ACDD wants one on every data variable): they
# describe the matched pixel's sample, so they are the auxiliary coordinates of sst_granule (the
# index naming that pixel's granule), never of sst (whose coordinates say where it is reported)
_SAMPLE_COORDINATES = ("sst_distance", "sst_radius", "sst_pixel_nj", "sst_pixel_ni", "sst_pixel_lat", "sst_pixel_lon",
                       "sst_sses_bias", "sst_bias_corrected", "sst_dt_analysis", "sst_median", "sst_stddev")
_SST_ANCILLARY = ("sst_quality_level", "sst_l2p_flags", "sst_ice", "sst_match_flags", "sst_sses_bias",
                  "sst_sses_standard_deviation", "sst_granule", "sst_dt", "sst_distance", "sst_radius",
                  "sst_pixel_nj", "sst_pixel_ni", "sst_dt_analysis")
_HEIGHT_ANCILLARY = ("height_segment_quality", "height_segment_fit_quality_flag", "height_segment_confidence",
                     "height_segment_type", "height_segment_ssh_flag", "height_segment_surface_error_est",
                     "layer_flag", "cloud_flag_asr", "msw_flag")


def _atl07_vars(tracks: list[Track]) -> list[_Var]:
    """The ATL07 quality and type flags, and each optional ATL07_FIELDS field some granule read has."""

    def stored(n: str, dtype: type[np.generic]) -> Callable[[Track], np.ndarray]:
        scale = _ice_conc_scale(n, tracks) if n in ICE_CONC_FIELDS else 1.0
        if scale != 1.0:
            return lambda t: t.segments.fields.get(n, np.full(len(t.segments), np.nan, dtype)) * dtype(scale)
        return lambda t: t.segments.fields.get(n, np.full(len(t.segments), _atl07_fill(n, dtype), dtype))

    fields: list[tuple[str, type[np.generic], str | Callable[[Track], np.ndarray]]] = [
        ("height_segment_quality", np.int16, "segments.quality"),
        ("height_segment_type", np.int16, "segments.segment_type")]
    fields += [(n, dtype, stored(n, dtype)) for n, _, dtype in ATL07_FIELDS
               if any(n in t.segments.fields for t in tracks)]
    return [_Var(name, "obs", dtype, get, _atl07_attrs(name, dtype, tracks), _atl07_fill(name, dtype))
            for name, dtype, get in fields]


class _Product:
    """The inputs of one :func:`build_dataset` call, as the variable table reads them."""

    def __init__(self, tracks: list[Track], infos: list[SstSource], params: dict):
        self.tracks: list[Track] = tracks
        self.infos: list[SstSource] = infos
        self.params: dict = params
        self.masks = [_valid(t) for t in tracks]  # each track's segments with a valid location and time
        self.row_size = np.array([int(m.sum()) for m in self.masks], dtype=np.int32)
        self.dropped = int(sum(len(t.segments) for t in tracks) - self.row_size.sum())
        self.sources = [_basename(i.name) for i in infos]
        self.collections = list(dict.fromkeys(_collection_of(i) for i in infos))
        self.screened = _screened(params)
        self.sst_standard_name = _sst_standard_name(infos, params)
        self.sst_index = self.obs("matches.granule_index", np.int32)
        self.matched = self.sst_index >= 0
        self.computed = self._computed()

    def obs(self, source: str | Callable[[Track], Any], dtype) -> np.ndarray:
        """One value per valid segment, over every track in turn."""
        get = attrgetter(source) if isinstance(source, str) else source
        return _concat([np.asarray(get(t))[m] for t, m in zip(self.tracks, self.masks, strict=True)], dtype)

    def _computed(self) -> dict[str, np.ndarray]:
        """The variables whose values are no attribute of a track or a source."""
        ns = self.obs("segments.time", "datetime64[ns]").astype(np.int64)
        lon = self.obs("segments.lon", np.float64)
        source_collection = np.array([self.collections.index(_collection_of(i)) for i in self.infos], np.int32)
        return {
            "rowSize": self.row_size,
            "height_segment_id": _int32(self.obs("segments.height_segment_id", np.int64), "height_segment_id"),
            "sst_granule": self.sst_index,
            "sst_collection": np.where(self.matched, source_collection[np.clip(self.sst_index, 0, None)]
                                       if self.infos else -1, -1).astype(np.int32),
            "sst_match_flags": self._match_flags(),
            **self._collection_table(),
            "time": (((ns + 500) // 1000) * 1000).astype("datetime64[ns]"),  # nearest microsecond
            "lat": self.obs("segments.lat", np.float64),
            "lon": ((lon + 180.0) % 360.0) - 180.0,
        }

    def _match_flags(self) -> np.ndarray:
        """sst_match_flags (MATCH_FLAGS' bits) per valid segment."""
        sst = self.obs("matches.sst", np.float32)
        with np.errstate(invalid="ignore"):
            bits = (self.matched & (self.obs("matches.ice", np.int8) == 1),
                    self.matched & (sst < FREEZING_K),
                    self.matched & (not self.screened),
                    ~np.isfinite(self.obs("segments.height", np.float32)))
        return sum((b.astype(np.int8) << i for i, b in enumerate(bits)), np.zeros(self.matched.size, np.int8))

    def _collection_table(self) -> dict[str, np.ndarray]:
        """Per collection (sst_collection_dim): its SST standard name, quality and l2p flag tables and
        citation, as its files declare them: what each match's sst_collection means."""
        rows: dict[str, list[str]] = {k: [] for k in ("standard_name", "quality_flag_values", "quality_flag_meanings",
                                                      "l2p_flag_masks", "l2p_flag_meanings", "citation")}
        for collection in self.collections:
            members = [i for i in self.infos if _collection_of(i) == collection]
            info = next((i for i in members if i.variable_attrs), members[0])
            quality = _declared_table(info, "quality_level", "flag_values")
            flags = _declared_table(info, "l2p_flags", "flag_masks")
            rows["standard_name"].append(_source_label(info, "standard_name"))
            rows["quality_flag_values"].append(" ".join(map(str, quality[0])) if quality else "none")
            rows["quality_flag_meanings"].append(quality[1] if quality else "none")
            rows["l2p_flag_masks"].append(" ".join(map(str, flags[0])) if flags else "none")
            rows["l2p_flag_meanings"].append(flags[1] if flags else "none")
            rows["citation"].append(_citation(info, self.params) or "unknown")
        return {f"sst_collection_{k}": np.array(v, dtype=object) for k, v in rows.items()}

    @property
    def matched_valid_height(self) -> np.ndarray:
        return self.matched & np.isfinite(self.obs("segments.height", np.float32))

    def values(self, var: _Var) -> np.ndarray:
        """``var``'s values: along ``obs`` one per valid segment, else one per item of its dimension."""
        if var.source is None:
            return self.computed[var.name]
        if var.dim == "obs":
            values = self.obs(var.source, var.dtype)
            if var.matched_only:  # a match field is meaningless without a matched pixel: force the fill
                values = np.where(self.matched, values, var.fill).astype(values.dtype, copy=False)
            return values
        items: dict[str, Sequence[Any]] = {"trajectory": self.tracks, "sst_source": self.infos,
                                           "sst_collection_dim": self.collections}
        get = attrgetter(var.source) if isinstance(var.source, str) else var.source
        return np.array([get(item) for item in items[var.dim]], dtype=var.dtype)

    def attrs(self, var: _Var) -> dict[str, Any]:
        """``var.attrs`` for this product: functions of it evaluated, a flag table spliced in."""
        out: dict[str, Any] = {}
        for key, value in var.attrs.items():
            value = value(self) if callable(value) else value
            if key == _FLAG_TABLE:
                out.update(value)
            else:  # a copy: the table's arrays are shared by every product
                out[key] = value.copy() if isinstance(value, np.ndarray) else value
        return out

    def variable(self, var: _Var) -> tuple[str, np.ndarray, dict[str, Any]]:
        return var.dim, self.values(var), self.attrs(var)


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
    The variables are declared in the module's variable table (``_TRAJECTORY_VARS`` …).
    """
    params = dict(params or {})
    now = (now or datetime.now(UTC)).astimezone(UTC)
    infos = [s if isinstance(s, SstSource) else SstSource(str(s)) for s in sst_granules]
    for t in tracks:
        _check(t, len(infos))
    p = _Product(tracks, infos, params)
    declared = [v for v in (*_TRAJECTORY_VARS, *_SEGMENT_VARS, *_atl07_vars(tracks), *_MATCH_VARS, *_SOURCE_VARS)
                if v.when is None or v.when(p)]
    ds = xr.Dataset(data_vars={v.name: p.variable(v) for v in declared},
                    coords={v.name: p.variable(v) for v in _COORDINATES})
    _encode(ds, {v.name: v.fill for v in declared if v.fill is not None})
    _link_auxiliaries(ds)
    ds.attrs = _global_attrs(ds, p, atl07_attrs=atl07_attrs, history=history, request_id=request_id, now=now,
                             warnings=warnings)
    return ds


def _encode(ds: xr.Dataset, fills: Mapping[str, Any]) -> None:
    """Explicit fill values so every reader masks the same way; obs variables deflated, one chunk each."""
    for vname, var in ds.variables.items():
        var.encoding["_FillValue"] = fills.get(str(vname))  # None: no fill for coordinates/ids
        if var.dtype == object:
            var.encoding["dtype"] = str
        elif var.dims == ("obs",) and var.size:
            var.encoding.update(zlib=True, complevel=DEFLATE_LEVEL, shuffle=True,
                                chunksizes=(min(var.size, max(1, CHUNK_BYTES // var.dtype.itemsize)),))
    ds["time"].encoding.update(units=TIME_UNITS, calendar="standard", dtype="float64")


def _link_auxiliaries(ds: xr.Dataset) -> None:
    """CF auxiliary coordinates and ancillary variables of the two measurements (those present)."""
    ds["height_segment_height"].encoding["coordinates"] = " ".join(
        v for v in _HEIGHT_COORDINATES if v in ds.variables)
    ds["sst"].encoding["coordinates"] = " ".join(v for v in _SST_COORDINATES if v in ds.variables)
    ds["sst_granule"].encoding["coordinates"] = " ".join(v for v in _SAMPLE_COORDINATES if v in ds.variables)
    ds["sst"].attrs["ancillary_variables"] = " ".join(v for v in _SST_ANCILLARY if v in ds)
    ds["height_segment_height"].attrs["ancillary_variables"] = " ".join(v for v in _HEIGHT_ANCILLARY if v in ds)


# ============================================================================ global attributes
def _global_attrs(ds: xr.Dataset, p: _Product, *, atl07_attrs: dict | None, history: str | None,
                  request_id: str | None, now: datetime, warnings: list[str] | None) -> dict:
    """CF and ACDD-1.3 global attributes, in the order they are written."""
    atl07_attrs = dict(atl07_attrs or {})
    granules = list(dict.fromkeys(t.segments.granule for t in p.tracks))
    sensors = _source_labels(p.infos, "sensor")
    version = package_version()
    created = utc_stamp(now)
    n_obs, n_any = ds.sizes["obs"], int(p.matched.sum())
    n_matched = int(p.matched_valid_height.sum())
    done = f"colocated {len(p.tracks)} trajectories, {n_obs} segments, {n_matched} matched with a valid height"
    attrs: dict[str, Any] = {
        **_identification(p, sensors, _product_id(granules, p.sources, p.params, request_id), version),
        **_inputs_and_credit(p, granules, sensors, _atl07_doi(atl07_attrs, p.params)),
        **date_attrs(created),
        "history": scrub((history.rstrip() + "\n" if history else "") + history_entry(created, version, done)),
        "trajectory_count": np.int32(len(p.tracks)),
        "segments_total": np.int64(n_obs),
        # a match whose segment has no height pairs an SST with nothing: counted apart
        "segments_matched": np.int64(n_matched),
        "segments_matched_any_height": np.int64(n_any),
        "segments_dropped_invalid_location_or_time": np.int64(p.dropped),
        "colocation_quality_screening": (f"quality_level >= {p.params.get('min_quality_level')}" if p.screened else
                                         "none: no quality screening was applied (min_quality_level null)"),
        "colocation_ice_screening": ("pixels whose l2p_flags ice bit is set are never matched (exclude_ice)"
                                     if p.params.get("exclude_ice") else
                                     "none: ice-flagged pixels may be matched (sst_match_flags ice_flagged)"),
    }
    if (warning := _quality_warning(p)) is not None:
        attrs["colocation_quality_warning"] = warning
    if warnings:
        attrs["reader_warnings"] = joined(warnings)
    if request_id:
        attrs["request_id"] = scrub(request_id)
    attrs.update(_parameter_attrs(p.params))
    for key in _OVERRIDABLE:
        if isinstance(p.params.get(key), str) and p.params[key]:
            attrs[key] = scrub(p.params[key])
    attrs.update(_flat_attrs("atl07_", atl07_attrs))
    attrs.update(_coverage(ds, p.params))
    return mark_synthetic(attrs, p.params.get("data_mode"))


def _quality_warning(p: _Product) -> str | None:
    """Where the minimum quality level does not mean acceptable/best in a producer's own table."""
    level = p.params.get("min_quality_level")
    if not p.screened or level is None:
        return None
    found = []
    for collection in p.collections:
        info = next((i for i in p.infos if _collection_of(i) == collection and i.variable_attrs), None)
        word = quality_meaning(info.variable_attrs, int(level)) if info else None
        if word and ("probably" in word.lower() or not any(a in word.lower() for a in ACCEPTABLE_WORDS)):
            found.append(f"{collection}: quality_level {level} means {word!r}")
    return ("; ".join(found) + " in the producer's flag_meanings, not GHRSST's 'acceptable' (GDS 2.0): "
            "matches of that level are included") if found else None


def _ice_share(p: _Product) -> str:
    """The share of matches on ice-flagged pixels, for the summary (none when ice is excluded)."""
    if p.params.get("exclude_ice"):
        return " Pixels whose L2P ice bit is set were excluded (exclude_ice)."
    n = int(p.matched.sum())
    if not n:
        return ""
    ice = int((p.computed["sst_match_flags"][p.matched] & 1).sum())
    return (f" {ice} of the {n} matches ({100.0 * ice / n:.0f} %) are on pixels whose L2P ice bit is set: "
            "an ice surface temperature may be reported (sst_match_flags ice_flagged; exclude_ice excludes them).")


def _identification(p: _Product, sensors: list[str], ident: str, version: str) -> dict[str, Any]:
    """ACDD identification and description: what the file holds, its id and version; the SST's
    kind in the source's own words (its standard name)."""
    words, keyword = sst_kind(p.sst_standard_name)
    return {
        "Conventions": CONVENTIONS,
        "featureType": "trajectory",
        "title": f"ICESat-2 ATL07 sea ice segments colocated with GHRSST L2P {words}",
        "summary": (
            "Every ATL07 sea-ice height segment (all beams) in the region and period of interest, "
            f"with the nearest valid GHRSST L2P pixel ({words}, standard name {p.sst_standard_name}) "
            "within the colocation radius and time window (pixel time = time + sst_dtime; "
            + (f"quality_level at least {p.params.get('min_quality_level')}" if p.screened
               else "NOT screened on quality_level") + "). "
            "Segments without a match are kept with fill values. CF contiguous ragged array: one "
            "trajectory per ATL07 granule and beam." + _ice_share(p)
        ),
        "keywords": (
            f"{keyword}, "
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
    }


def _inputs_and_credit(p: _Product, granules: list[str], sensors: list[str], atl07_doi: str) -> dict[str, Any]:
    """ACDD source, platform and instrument; who made and publishes the file; what to cite."""
    return {
        "source": scrub("ATL07 granules: " + (", ".join(granules) or "none")
                        + "; GHRSST L2P granules: " + (", ".join(p.sources) or "none")),
        "platform": ", ".join(["ICESat-2", *_source_labels(p.infos, "platform")]),
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
        "references": f"ATL07: {atl07_doi}; GHRSST L2P: {', '.join(_sst_references(p.infos, p.params)) or 'none'}",
        "comment": "Unmatched segments carry fill values in the sst* variables; sst_granule indexes "
                   "sst_source_name. Times are UTC (ATL07 GPS time minus leap seconds).",
        "acknowledgement": "ICESat-2 ATL07 data from NASA NSIDC DAAC; GHRSST L2P data from NASA PO.DAAC.",
        "program": "NASA Earth Science",
        "platform_vocabulary": "NASA/GCMD Platform Keywords",
        "instrument_vocabulary": "NASA/GCMD Instrument Keywords",
    }


def _product_id(granules: list[str], sources: list[str], params: dict, request_id: str | None) -> str:
    """The request id, else a digest of the inputs and the parameters (secrets left out)."""
    return request_id or hashlib.sha256(
        json.dumps([granules, sources, {k: str(v) for k, v in sorted(params.items())
                                        if not _SECRET_KEY.search(k)}]).encode()
    ).hexdigest()[:16]


def _atl07_doi(atl07_attrs: Mapping[str, Any], params: dict) -> str:
    """The ATL07 data set's DOI as a URL: the granule's, else the request's, else ATL07_DOI_DEFAULT."""
    doi = str(atl07_attrs.get("identifier_product_doi") or params.get("atl07_doi") or ATL07_DOI_DEFAULT)
    return "https://doi.org/" + doi[4:] if doi.lower().startswith("doi:") else doi


# platform, sensor and DOI per SST collection: from the files, then the collection profiles
def _source_labels(infos: list[SstSource], key: str) -> list[str]:
    """The L2P sources' distinct platforms or sensors (``key``), the unknown left out."""
    return [x for x in dict.fromkeys(_source_label(i, key) for i in infos) if x != "unknown"]


def _sst_references(infos: list[SstSource], params: dict) -> list[str]:
    """The L2P data sets to cite: a DOI given in ``params``, the DOI of each profiled collection
    (requested, then of the files read), and any collection without a profile by its name."""
    requested = params.get("sst_collections") or [params.get("sst_collection")]
    collections = list(dict.fromkeys(i.collection for i in infos))
    profiles = [profile(c) for c in requested if c]
    profiles += [profile(i.collection) or profile_for_file(i.attrs) for i in infos]
    refs = [str(params["sst_doi"])] if params.get("sst_doi") else []
    refs += [f"{prof['short_name']} https://doi.org/{prof['doi']}" for prof in profiles if prof]
    # a collection without a profile: the DOI CMR gave, or the file's own attributes
    refs += [c for i in infos if not (profile(i.collection) or profile_for_file(i.attrs))
             and (c := _citation(i, params))]
    cited = " ".join(refs)
    refs += [f"collection {c}" for c in [*requested, *collections] if c and not profile(c) and c not in cited]
    return list(dict.fromkeys(refs))


def _parameter_attrs(params: dict) -> dict[str, Any]:
    """The processing parameters as attributes (_PARAM_ATTRS names), in netCDF attribute types."""
    attrs: dict[str, Any] = {}
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
    return attrs


def _coverage(ds: xr.Dataset, params: dict) -> dict[str, Any]:
    """ACDD geospatial and time coverage of the segments; with none, the request's bbox (if any)."""
    attrs: dict[str, Any] = {}
    if ds.sizes["obs"]:
        lat, t = ds["lat"].values, ds["time"].values
        attrs.update(coverage_attrs(lat.min(), lat.max(), *lon_range(ds["lon"].values), t.min(), t.max()))
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
