"""One result for a whole request: every matched segment of every date of a request.

* one CF-1.8 trajectory netCDF (contiguous ragged array, as the per-granule products of
  core.products.granule_netcdf): the matched segments only, one trajectory per ATL07 granule × beam (× date if a
  granule spans midnight), written incrementally (one product in memory at a time) with h5netcdf;
* the same rows as Parquet, one file per date, Hive-partitioned (``date=YYYY-MM-DD/``), for
  Athena (template.yaml's Glue table) and DuckDB/pyarrow.

Generic over the products' variables: every ``obs`` and ``trajectory`` variable is carried with
its encoding and attributes (flag tables included); a variable some products lack is filled
where they lack it. Index variables (an ``obs`` integer whose comment says "index into <name>",
e.g. ``sst_granule`` → ``sst_source_name``) are re-indexed into one list across products in the
netCDF, and resolved to what they index in Parquet (a file-local index means nothing there).

Functional core: plain functions over xarray datasets; the Summarize handler and a local run
call :func:`write_request_products` the same way.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from core.atomic import atomic_path
from core.products.attributes import (
    CONVENTIONS,
    PRODUCT_NAME,
    coverage_attrs,
    date_attrs,
    history_entry,
    index_flags,
    joined,
    lon_range,
    mark_synthetic,
    package_version,
    scrub,
    utc_stamp,
)
from core.products.tables import MATCHES, PIXELS, Table

log = logging.getLogger(__name__)

OBS, TRAJ, ROW_SIZE = "obs", "trajectory", "rowSize"
MATCH_INDEX = "sst_granule"  # -1 = no match (core.products.granule_netcdf)
DATE_VAR = "colocation_date"  # trajectory variable added here: the request date it came from
NETCDF_NAME = "{request_id}_matches.nc"
PARQUET_NAME = "part-{run_id}.parquet"
CHUNK = 65536  # obs per HDF5 chunk
_INDEX_INTO = re.compile(r"index into (\w+)")
MAX_FLAG_TABLE_BYTES = 48_000  # beyond this an index's flag table is left to its name variable
# global attributes recomputed for the merged file (the products' values are per granule)
_RECOMPUTED = ("id", "summary", "source", "history", "date_created", "date_modified", "date_issued",
               "date_metadata_modified", "trajectory_count", "segments_total", "segments_matched",
               "segments_matched_any_height", "colocation_quality_warning",
               "segments_dropped_invalid_location_or_time", "reader_warnings", "request_date",
               "request_start", "request_end", "geospatial_lat_min", "geospatial_lat_max",
               "geospatial_lon_min", "geospatial_lon_max", "time_coverage_start", "time_coverage_end",
               "time_coverage_duration")
_SUMMED = ("segments_total", "segments_dropped_invalid_location_or_time")


class MergeError(ValueError):
    """Products that cannot be merged (named in the message)."""


def index_variables(ds: xr.Dataset) -> dict[str, str]:
    """``obs`` index variable → the variable it indexes (1-D, on a dimension of its own)."""
    out: dict[str, str] = {}
    for name, var in ds.variables.items():
        m = _INDEX_INTO.search(str(var.attrs.get("comment", "")))
        if var.dims == (OBS,) and m and m.group(1) in ds.variables:
            target = ds[m.group(1)]
            if target.ndim == 1 and target.dims[0] not in (OBS, TRAJ):
                out[str(name)] = m.group(1)
    return out


def matched_segments(ds: xr.Dataset) -> xr.Dataset:
    """The product cut to its matched segments (``sst_granule >= 0``); trajectories left without
    any are dropped and ``rowSize`` is recounted, so the result is still a contiguous ragged array."""
    if MATCH_INDEX not in ds or ROW_SIZE not in ds:
        raise MergeError(f"not a colocation product: no {MATCH_INDEX} or {ROW_SIZE}")
    # one product in memory (bounded: one granule's segments): a fancy index on a lazily opened
    # file reads element by element (netCDF4: ~100x slower); load() is in place, so once
    ds.load()
    matched = np.asarray(ds[MATCH_INDEX].values) >= 0
    rows = np.asarray(ds[ROW_SIZE].values, dtype=np.int64)
    if rows.sum() != matched.size:
        raise MergeError(f"{ROW_SIZE} sums to {rows.sum()}, but the product has {matched.size} obs")
    owner = np.repeat(np.arange(rows.size), rows)
    counts = np.bincount(owner[matched], minlength=rows.size)
    keep = counts > 0
    out = ds.isel({OBS: np.flatnonzero(matched), TRAJ: np.flatnonzero(keep)})
    out[ROW_SIZE] = out[ROW_SIZE].copy(data=counts[keep].astype(ds[ROW_SIZE].dtype))
    return out


def _encoded(ds: xr.Dataset) -> dict[str, xr.Variable]:
    """The variables as they are on disk (fill values, time units, dtypes), from any xarray
    dataset: opened from a file (no _FillValue in the encoding = none in the file) or in memory."""
    ds = ds.copy()
    for var in ds.variables.values():
        var.encoding.setdefault("_FillValue", None)
    variables, attrs = xr.conventions.encode_dataset_coordinates(ds)
    variables, _ = xr.conventions.cf_encoder(variables, attrs)
    return dict(variables)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return (isinstance(a, Mapping) and isinstance(b, Mapping) and a.keys() == b.keys()
                and all(_same(a[k], b[k]) for k in a))
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except (TypeError, ValueError):
        return str(a) == str(b)


def _flag_attrs(attrs: Mapping) -> dict:
    return {k: v for k, v in attrs.items() if k.startswith("flag_")}


@dataclass
class _Obs:
    dtype: np.dtype
    fill: Any  # None: the variable has no fill value (every product must then carry it)
    attrs: dict


@dataclass
class _Target:
    """A dimension an index variable points into (e.g. sst_source): one row per distinct name."""

    dim: str
    name_var: str
    names: list = field(default_factory=list)
    position: dict = field(default_factory=dict)
    columns: dict = field(default_factory=dict)  # variable on this dim -> list of values
    attrs: dict = field(default_factory=dict)


class RequestNetcdf:
    """Incremental writer of the request-level netCDF: ``add`` each product (decoded or not),
    then ``close``. Only ``obs`` rows go to disk as they come; trajectory and index rows (one per
    granule × beam / per L2P granule) are kept until ``close``. Written under a temporary name
    and renamed when complete."""

    def __init__(self, path: str | Path, *, request_id: str, request: Mapping | None = None,
                 now: datetime | None = None):
        import h5netcdf

        self.path = Path(path)
        self.request_id, self.request = request_id, dict(request or {})
        self.now = (now or datetime.now(UTC)).astimezone(UTC)
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._file = h5netcdf.File(self._tmp, "w")
        self._file.dimensions = {OBS: None}
        self.n_obs = 0
        self.n_valid_height = 0  # matched segments with a height (what segments_matched counts)
        self._obs: dict[str, _Obs] = {}
        self._traj: dict[str, list] = {}
        self._traj_attrs: dict[str, dict] = {}
        self._traj_ids: set[str] = set()
        self._time_encoding: dict[str, dict] = {}
        self._targets: dict[str, _Target] = {}  # by name variable
        self._index: dict[str, str] = {}  # index variable -> name variable
        self._global: dict | None = None
        self._sums = dict.fromkeys(_SUMMED, 0)
        self._warnings: list[str] = []
        self._quality_warnings: list[str] = []
        self._conflicts: list[str] = []
        # variables whose flag table / standard name differ between the merged products (different
        # collections): per collection in the sst_collection_* table instead (_per_collection)
        self._table_differs: set[str] = set()
        self._standard_names: dict[str, set[str]] = {}
        self._lat = [np.inf, -np.inf]
        self._time = [np.inf, -np.inf]
        self._arcs: list[tuple[float, float]] = []
        self.n_products = 0
        self.dates: list[str] = []

    # ------------------------------------------------------------------ adding products
    def add(self, product: xr.Dataset, *, date: str, name: str = "") -> int:
        """Append the matched segments of one per-granule product; returns how many."""
        label = name or product.attrs.get("id", "product")
        index = index_variables(product)
        ds = matched_segments(product)
        self._merge_globals(product.attrs)
        self.n_products += 1
        if date not in self.dates:
            self.dates.append(date)
        # the index variables' rows in the shared lists, then the obs values re-indexed
        remap = {var: self._add_targets(ds, var, target) for var, target in index.items()}
        for vname, var in ds.variables.items():  # one time encoding (units, dtype) for the file
            if np.issubdtype(var.dtype, np.datetime64):
                keep = {k: var.encoding[k] for k in ("units", "calendar", "dtype") if k in var.encoding}
                var.encoding.update(self._time_encoding.setdefault(str(vname), keep))
        enc = _encoded(ds)
        n = ds.sizes[OBS]
        start = self.n_obs
        if n:
            self._file.resize_dimension(OBS, start + n)
        for vname, var in enc.items():
            if var.dims == (OBS,):
                values = np.asarray(var.values)
                if vname in remap and n:
                    values = np.where(values >= 0, remap[vname][np.clip(values, 0, None)], values).astype(values.dtype)
                self._write_obs(vname, var, values, start, label)
            elif var.dims == (TRAJ,):
                self._add_traj(vname, var, label)
        for vname, have in self._traj.items():  # trajectory variables this product lacks: fill
            if vname != DATE_VAR and vname not in enc and ds.sizes[TRAJ]:
                fill = self._traj_attrs[vname].get("_FillValue", "" if isinstance(have[0], str) else None)
                if fill is None:
                    raise MergeError(f"{label} has no {vname}, which has no fill value to stand in for it")
                have.extend([fill] * ds.sizes[TRAJ])
        for vname, meta in self._obs.items():
            if vname not in enc and meta.fill is None and n:
                raise MergeError(f"{label} has no {vname}, which has no fill value to stand in for it")
        ids = [str(v) for v in np.asarray(ds["trajectory_id"].values)] if "trajectory_id" in ds else []
        unique = []
        for tid in ids:  # a granule spanning midnight gives a trajectory on two dates
            tid = tid if tid not in self._traj_ids else f"{tid}:{date}"
            self._traj_ids.add(tid)
            unique.append(tid)
        if ids:
            self._traj["trajectory_id"][-len(ids):] = unique
        self._traj.setdefault(DATE_VAR, []).extend([date] * ds.sizes[TRAJ])
        if n:
            self._extent(ds)
        if "height_segment_height" in ds:
            self.n_valid_height += int(np.isfinite(np.asarray(ds["height_segment_height"].values, np.float64)).sum())
        self.n_obs += n
        return n

    def _add_targets(self, ds: xr.Dataset, var: str, name_var: str) -> np.ndarray:
        dim = str(ds[name_var].dims[0])
        if self._index.setdefault(var, name_var) != name_var:
            raise MergeError(f"{var} indexes {name_var} here but {self._index[var]} elsewhere")
        t = self._targets.setdefault(name_var, _Target(dim=dim, name_var=name_var))
        on_dim = [v for v in ds.variables if ds[v].dims == (dim,)]
        local = [str(s) for s in np.asarray(ds[name_var].values)]
        mapping = np.empty(len(local), dtype=np.int64)
        for i, key in enumerate(local):
            if key not in t.position:
                t.position[key] = len(t.names)
                t.names.append(key)
                for v in on_dim:
                    t.columns.setdefault(v, [None] * (len(t.names) - 1)).append(str(np.asarray(ds[v].values)[i]))
                    t.attrs.setdefault(v, dict(ds[v].attrs))
                for v in t.columns:
                    if len(t.columns[v]) < len(t.names):
                        t.columns[v].append("unknown")
            mapping[i] = t.position[key]
        return mapping

    def _write_obs(self, name: str, var: xr.Variable, values: np.ndarray, start: int, label: str) -> None:
        meta = self._obs.get(name)
        attrs = {k: v for k, v in var.attrs.items() if k != "_FillValue"}
        fill = var.attrs.get("_FillValue")
        if meta is None:
            if start and fill is None:
                raise MergeError(f"{name} first appears in {label}, without a fill value for the earlier rows")
            dtype = values.dtype if values.dtype != object else np.dtype(object)
            kw = dict(chunks=(CHUNK,), compression="gzip", compression_opts=4, shuffle=True)
            if dtype.kind == "O":
                import h5py

                v = self._file.create_variable(name, (OBS,), h5py.string_dtype(), chunks=(CHUNK,))
            else:
                v = self._file.create_variable(name, (OBS,), dtype, fillvalue=fill, **kw)
            for k, val in attrs.items():
                if name not in self._index or not k.startswith("flag_"):
                    v.attrs[k] = val
            meta = self._obs[name] = _Obs(dtype, fill, attrs)
        elif name not in self._index and not _same(_flag_attrs(meta.attrs), _flag_attrs(attrs)):
            self._table_differs.add(name)
        if "standard_name" in attrs:
            self._standard_names.setdefault(name, set()).add(str(attrs["standard_name"]))
        if values.size:
            if values.dtype != meta.dtype and not np.can_cast(values.dtype, meta.dtype, "same_kind"):
                raise MergeError(f"{name} is {values.dtype} in {label}, {meta.dtype} before")
            self._file.variables[name][start:start + values.size] = values.astype(meta.dtype, copy=False)

    def _add_traj(self, name: str, var: xr.Variable, label: str) -> None:
        values = list(np.asarray(var.values))
        have = self._traj.setdefault(name, [])
        if name not in self._traj_attrs:
            self._traj_attrs[name] = dict(var.attrs)
            fill = var.attrs.get("_FillValue", "" if var.dtype == object else None)
            n_before = len(self._traj.get(DATE_VAR, []))
            if n_before and fill is None:
                raise MergeError(f"{name} first appears in {label}, without a fill value for the earlier rows")
            have.extend([fill] * n_before)
        have.extend(values)

    def _extent(self, ds: xr.Dataset) -> None:
        lat = np.asarray(ds["lat"].values, np.float64)
        lon = np.asarray(ds["lon"].values, np.float64)
        t = np.asarray(ds["time"].values)
        t = (t if np.issubdtype(t.dtype, np.datetime64) else xr.decode_cf(ds[["time"]])["time"].values)
        t = t.astype("datetime64[us]").astype(np.int64)
        self._lat = [min(self._lat[0], lat.min()), max(self._lat[1], lat.max())]
        self._time = [min(self._time[0], t.min()), max(self._time[1], t.max())]
        self._arcs.append(lon_range(lon))

    def _merge_globals(self, attrs: Mapping) -> None:
        for key in _SUMMED:
            if isinstance(attrs.get(key), (int, np.integer)):
                self._sums[key] += int(attrs[key])
        if attrs.get("reader_warnings"):
            self._warnings += [w for w in str(attrs["reader_warnings"]).split("; ") if w]
        quality = str(attrs.get("colocation_quality_warning") or "")
        if quality and quality not in self._quality_warnings:
            self._quality_warnings.append(quality)
        if self._global is None:
            self._global = {k: v for k, v in attrs.items() if k not in _RECOMPUTED}
            return
        for key in list(self._global):  # keep only what every product says alike
            if key not in attrs or not _same(attrs[key], self._global[key]):
                del self._global[key]

    # ------------------------------------------------------------------ finishing
    def close(self) -> dict:
        """Write the trajectory and index variables and the global attributes; publish the file."""
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        self._file.close()
        self._atomic.__exit__(None, None, None)
        log.info("wrote %s (%d products, %d trajectories, %d matched segments)", self.path.name,
                 self.n_products, self.n_traj, self.n_obs)
        return {"path": self.path, "products": self.n_products, "trajectories": self.n_traj,
                "matched": self.n_obs, "dates": list(self.dates)}

    def abort(self) -> None:
        """Close and delete the partial file (nothing half-written is left under ``path``)."""
        import contextlib

        with contextlib.suppress(Exception):
            self._file.close()
        with contextlib.suppress(Exception):
            self._atomic.__exit__(MergeError, MergeError("aborted"), None)

    @property
    def n_traj(self) -> int:
        return len(self._traj.get(DATE_VAR, []))

    def _finish(self) -> None:
        import h5py

        f = self._file
        f.dimensions[TRAJ] = self.n_traj
        self._traj_attrs[DATE_VAR] = {"long_name": "UTC date of the request whose per-date task made the trajectory"}
        for name, values in self._traj.items():
            attrs = self._traj_attrs.get(name, {})
            arr = np.asarray(values)
            if arr.dtype.kind in "OUS":
                v = f.create_variable(name, (TRAJ,), h5py.string_dtype())
                v[:] = np.array([str(x) for x in values], dtype=object)
            else:
                v = f.create_variable(name, (TRAJ,), arr.dtype if arr.size else np.int32,
                                      fillvalue=attrs.get("_FillValue"))
                if arr.size:
                    v[:] = arr
            for k, val in attrs.items():
                if k != "_FillValue":
                    v.attrs[k] = val
        for t in self._targets.values():
            f.dimensions[t.dim] = len(t.names)
            for name, values in t.columns.items():
                v = f.create_variable(name, (t.dim,), h5py.string_dtype())
                if values:
                    v[:] = np.array(values, dtype=object)
                for k, val in t.attrs.get(name, {}).items():
                    v.attrs[k] = val
        for var, name_var in self._index.items():
            names = self._targets[name_var].names
            table = index_flags(names, f.variables[var].dtype)
            small = len(table["flag_meanings"]) <= MAX_FLAG_TABLE_BYTES
            attrs = f.variables[var].attrs
            if small:
                for k, val in table.items():
                    attrs[k] = val
            attrs["comment"] = (f"0-based index into {name_var} (re-indexed across the request's products); "
                                "-1 where no match" + ("" if small else f"; {len(names)} names: see {name_var}"))
        self._per_collection()
        for k, v in self._attributes().items():
            f.attrs[k] = v

    def _per_collection(self) -> None:
        """Variables the merged products describe differently (several collections: NAVO's quality
        levels are not MODIS's, sea_water_temperature is not skin): no one table or standard name
        on the variable, but each row's in the sst_collection_* table its sst_collection indexes."""
        f = self._file
        for name in sorted(self._table_differs):
            attrs = f.variables[name].attrs
            for key in [k for k in attrs if k.startswith("flag_")]:
                del attrs[key]
            table = {"sst_quality_level": "sst_collection_quality_flag_meanings",
                     "sst_l2p_flags": "sst_collection_l2p_flag_meanings"}.get(name)
            attrs["comment"] = ("the merged products declare different flag tables"
                                + (f": each row's is {table}[sst_collection]" if table else ""))
            self._conflicts.append(f"{name}: flag tables differ between products (per collection: "
                                   f"{table or 'see the per-granule products'})")
        for name, names in self._standard_names.items():
            if len(names) < 2:
                continue
            attrs = f.variables[name].attrs
            suffix = " standard_error" if all(n.endswith(" standard_error") for n in names) else ""
            bases = {n.removesuffix(" standard_error") for n in names}
            if all(b.startswith("sea_") and b.endswith("temperature") for b in bases):
                attrs["standard_name"] = "sea_surface_temperature" + suffix  # CF's generic SST
            else:
                del attrs["standard_name"]
            attrs["comment"] = (str(attrs.get("comment", "")) + "; " if attrs.get("comment") else "") + (
                f"the collections' own standard names differ ({', '.join(sorted(names))}): each row's is "
                "sst_collection_standard_name[sst_collection]")

    def _screening(self) -> dict:
        """The request's screening parameters (kept even where products' attributes differ)."""
        out: dict[str, Any] = {}
        if "min_quality_level" in self.request:
            level = self.request["min_quality_level"]
            out["colocation_quality_screening"] = (f"quality_level >= {level}" if level is not None else
                                                   "none: no quality screening was applied (min_quality_level null)")
            if level is not None:
                out["colocation_min_quality_level"] = np.int64(level)
        if self.request.get("exclude_ice"):
            out["colocation_exclude_ice"] = "true"
        return out

    def _attributes(self) -> dict:
        attrs = dict(self._global or {"Conventions": CONVENTIONS, "featureType": "trajectory"})
        created = utc_stamp(self.now)
        n_sources = sum(len(t.names) for t in self._targets.values() if t.name_var == "sst_source_name")
        granules = len(set(self._traj.get("atl07_granule", [])))
        attrs.update({
            "id": f"{PRODUCT_NAME}_{scrub(self.request_id)}_request",
            "request_id": scrub(self.request_id),
            "summary": ("Every matched ATL07 sea-ice segment of every date of one request, with its "
                        "colocated GHRSST L2P SST: the per-granule products of the request cut to their "
                        "matched segments and concatenated (CF contiguous ragged array, one trajectory "
                        "per ATL07 granule and beam). Unmatched segments are in the per-granule products."),
            "source": scrub(f"per-granule products of request {self.request_id}: {self.n_products} products, "
                            f"{granules} ATL07 granules, {n_sources} GHRSST L2P granules (listed in "
                            "atl07_granule and sst_source_name)"),
            "history": history_entry(created, package_version(), "merged the matched segments of "
                                     f"{self.n_products} products over {len(self.dates)} dates"),
            **date_attrs(created),
            "trajectory_count": np.int32(self.n_traj),
            "segments_matched": np.int64(self.n_valid_height),
            "segments_matched_any_height": np.int64(self.n_obs),
            **{k: np.int64(v) for k, v in self._sums.items()},
            "colocation_dates": ",".join(self.dates),
        })
        for key in ("start", "end", "date"):
            if self.request.get(key) is not None:
                attrs[f"request_{key}"] = scrub(str(self.request[key]))
        mark_synthetic(attrs, self.request.get("data_mode"))
        if self._warnings:
            attrs["reader_warnings"] = joined(self._warnings)
        if self._quality_warnings:
            attrs["colocation_quality_warning"] = joined(self._quality_warnings)
        attrs.update(self._screening())
        # products of several kinds of SST disagree on their title and keywords
        attrs.setdefault("title", "ICESat-2 ATL07 sea ice segments colocated with GHRSST L2P sea surface temperature "
                                  "(each collection's kind: sst_collection_standard_name)")
        attrs.setdefault("keywords", "EARTH SCIENCE > OCEANS > OCEAN TEMPERATURE > SEA SURFACE TEMPERATURE, "
                                     "EARTH SCIENCE > CRYOSPHERE > SEA ICE > SEA ICE ELEVATION, ICESat-2, ATL07, "
                                     "GHRSST, L2P, colocation")
        if self._conflicts:
            attrs["merge_warnings"] = joined(self._conflicts)
        if self.n_obs:
            west, east = _covering_arc(self._arcs)
            t0, t1 = (np.datetime64(int(x), "us") for x in self._time)
            attrs.update(coverage_attrs(self._lat[0], self._lat[1], west, east, t0, t1))
        else:
            for key in ("geospatial_bounds_crs",):
                attrs.pop(key, None)
        return attrs


def _covering_arc(arcs: list[tuple[float, float]]) -> tuple[float, float]:
    """West and east edge of the smallest arc covering every (west, east) arc (west > east: across 180)."""
    pieces = []
    for w, e in arcs:
        pieces += [(w, 180.0), (-180.0, e)] if w > e else [(w, e)]
    pieces.sort()
    merged = [list(pieces[0])]
    for w, e in pieces[1:]:
        if w <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([w, e])
    if len(merged) == 1:
        return merged[0][0], merged[0][1]
    gaps = [(merged[i + 1][0] - merged[i][1], i) for i in range(len(merged) - 1)]
    gaps.append((merged[0][0] + 360.0 - merged[-1][1], len(merged) - 1))
    size, i = max(gaps)
    if i == len(merged) - 1:  # the largest gap is across +/-180: an ordinary range
        return merged[0][0], merged[-1][1]
    return merged[i + 1][0], merged[i][1]


# ---------------------------------------------------------------------------- Parquet
def matches_frame(product: xr.Dataset):
    """One row per matched segment of a (decoded) product, as a pandas DataFrame.

    Trajectory variables are repeated over their segments (``rowSize`` dropped); index variables
    are replaced by every variable on the dimension they index (``sst_granule`` →
    ``sst_source_name``, ``sst_source_platform`` …); integers with a fill value become nullable
    integers of their stored type (NULL = fill); times are UTC microseconds (timezone-aware)."""
    return segments_frame(product, matched_only=True)


def segments_frame(product: xr.Dataset, *, matched_only: bool = False):
    """One row per segment of a product (its contiguous ragged array unrolled), as pandas wants
    it: ``ds.to_dataframe()`` would cross every dimension (obs × trajectory × sst_source rows).
    The columns are those of :func:`matches_frame`; an unmatched segment's index-resolved
    columns (``sst_source_name`` …) are NULL. ``matched_only``: the matched segments only."""
    import pandas as pd

    index = index_variables(product)
    ds = matched_segments(product) if matched_only else product
    rows = np.asarray(ds[ROW_SIZE].values, dtype=np.int64)
    owner = np.repeat(np.arange(rows.size), rows)
    cols: dict[str, Any] = {}
    for key, var in ds.variables.items():
        if var.dims == (TRAJ,) and key != ROW_SIZE:
            cols[str(key)] = _column(var)[owner] if owner.size else _column(var)[:0]
    for key, var in ds.variables.items():
        name = str(key)
        if var.dims != (OBS,):
            continue
        if name in index:
            target_dim = ds[index[name]].dims[0]
            pick = np.asarray(var.values).astype(np.int64)
            for tname, tvar in ds.variables.items():
                if tvar.dims == (target_dim,):
                    cols[str(tname)] = _picked(_column(tvar), pick)
            continue
        cols[name] = _column(var)
    frame = pd.DataFrame(cols)
    return frame


def _picked(values, pick: np.ndarray):
    """``values[pick]``, NULL where ``pick`` is negative (an unmatched segment's index)."""
    if not pick.size:
        return values[:0]
    if pick.min() >= 0:
        return values[pick]
    out = np.full(pick.size, None, dtype=object)
    ok = pick >= 0
    if ok.any():
        out[ok] = np.asarray(values, dtype=object)[pick[ok]]
    return out


def _column(var: xr.Variable):
    """A variable's values for a table column: fills as NULL (nullable integers), times in us."""
    import pandas as pd

    values = np.asarray(var.values)
    if np.issubdtype(values.dtype, np.datetime64):  # UTC (CF times here are UTC): Parquet's isAdjustedToUTC
        return pd.DatetimeIndex(values.astype("datetime64[us]")).tz_localize("UTC")
    if values.dtype.kind in "OUS":
        return np.array([str(v) for v in values], dtype=object)
    stored, fill = var.encoding.get("dtype"), var.encoding.get("_FillValue")
    if values.dtype.kind == "f" and stored is not None and np.dtype(stored).kind in "iu":
        mask = np.isnan(values)  # an integer with a fill value, decoded by xarray to float + NaN
        return pd.arrays.IntegerArray(np.where(mask, 0, values).astype(stored), mask)
    if values.dtype.kind in "iu" and fill is not None:  # in memory (core.products.granule_netcdf): raw integers
        return pd.arrays.IntegerArray(values, values == fill)
    return values


def write_parquet(frames: list, path: str | Path, table: Table | None = None) -> Path | None:
    """One Parquet file of the rows of ``frames`` (None when there are none), written atomically,
    with ``table``'s units and descriptions of its columns (core.products.tables) as field metadata."""
    import fastparquet
    import pandas as pd

    frames = [f for f in frames if len(f)]
    if not frames:
        return None
    frame = pd.concat(frames, ignore_index=True, sort=False)
    if table is not None:  # fastparquet stores attrs as PANDAS_ATTRS: pandas reads them back as df.attrs
        frame.attrs = {"table": table.name, "columns": table.field_metadata(frame.columns)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        # ZSTD: Athena, DuckDB and pyarrow read it; smaller than Snappy for these float columns
        fastparquet.write(str(tmp), frame, compression="ZSTD", stats=True)
    return path


# ---------------------------------------------------------------------------- both at once
@dataclass
class RequestProducts:
    """What :func:`write_request_products` wrote (paths are local)."""

    netcdf: Path | None
    partitions: dict[str, Path]  # date -> its Parquet file (dates with matches only)
    products: int
    trajectories: int
    matched: int


def partition_path(parquet_dir: str | Path, date: str, run_id: str = "0") -> Path:
    """Hive layout: ``<parquet_dir>/date=YYYY-MM-DD/part-<run_id>.parquet``."""
    return Path(parquet_dir) / f"date={date}" / PARQUET_NAME.format(run_id=run_id)


def write_request_products(
    dates: Iterable[tuple[str, Iterable[xr.Dataset]]],
    netcdf_path: str | Path,
    parquet_dir: str | Path,
    *,
    request_id: str,
    request: Mapping | None = None,
    now: datetime | None = None,
    run_ids: Mapping[str, str] | None = None,
    on_partition: Callable[[str, Path], None] | None = None,
    pixels_dir: str | Path | None = None,
    on_pixel_partition: Callable[[str, Path], None] | None = None,
) -> RequestProducts:
    """The request-level netCDF and the date-partitioned Parquet of one request.

    ``dates``: (``YYYY-MM-DD``, that date's per-granule products) in date order; both iterables
    may be lazy (each product is read, added and released before the next is opened).
    ``run_ids``: the per-date run id naming each partition file (``part-<run_id>.parquet``).
    ``on_partition(date, path)`` is called once a date's Parquet file is complete (e.g. to upload
    and delete it). No product at all: no netCDF (``netcdf`` is None). ``pixels_dir``: the
    pixel-scale table (core.products.pixel_table) of the same products, partitioned alike, its
    own Glue table (``on_pixel_partition`` as ``on_partition``).
    """
    from core.products.pixel_table import pixel_frame

    writer: RequestNetcdf | None = None
    partitions: dict[str, Path] = {}
    try:
        for date, products in dates:
            frames, pixel_frames = [], []
            for ds in products:
                if writer is None:
                    writer = RequestNetcdf(netcdf_path, request_id=request_id, request=request, now=now)
                writer.add(ds, date=date)
                frames.append(matches_frame(ds))
                if pixels_dir is not None:
                    pixel_frames.append(pixel_frame(ds))
            run_id = (run_ids or {}).get(date, "0")
            path = write_parquet(frames, partition_path(parquet_dir, date, run_id), MATCHES)
            if path is not None:
                partitions[date] = path
                if on_partition:
                    on_partition(date, path)
            if pixels_dir is not None and (pixels := write_parquet(pixel_frames, partition_path(pixels_dir, date,
                                                                                                run_id), PIXELS)):
                if on_pixel_partition:
                    on_pixel_partition(date, pixels)
        summary = writer.close() if writer else {}
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return RequestProducts(netcdf=summary.get("path"), partitions=partitions, products=summary.get("products", 0),
                           trajectories=summary.get("trajectories", 0), matched=summary.get("matched", 0))


def glue_columns(frame) -> list[tuple[str, str]]:
    """(name, Glue/Athena type) of a :func:`matches_frame`'s columns (template.yaml lists them)."""
    kinds = {"str": "string", "object": "string", "float32": "float", "float64": "double", "int8": "tinyint",
             "int16": "smallint", "int32": "int", "int64": "bigint", "datetime64[us]": "timestamp",
             "datetime64[us, utc]": "timestamp"}
    return [(name, kinds[str(dtype).lower()]) for name, dtype in frame.dtypes.items()]
