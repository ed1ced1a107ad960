"""Read a window of a GHRSST L2P swath granule (local path or binary file object, e.g. s3fs).

Real PO.DAAC granules store attributes as one-element (byte) arrays, which breaks xarray's CF
decoding; the file is therefore opened undecoded, every attribute is normalised to a plain
scalar/str, and CF decoding (fill, scale/offset, times) runs on the normalised variables.

Only ``lat``/``lon`` are read whole. The other variables (SST, sst_dtime, quality_level,
l2p_flags, never chlorophyll, wind...) are read for the smallest row/column window holding
every pixel that can lie within ``radius_m`` of a query point, so bytes fetched over S3 and
memory follow the region, not the granule.

Products without ``quality_level`` (e.g. the MODIS subsets in tests/data/realdata/l2p) are
read: ``SstSwath.quality_level`` is None and a warning says so; core.science.pairing then refuses to
colocate them unless the request asks for no quality screening (min_quality_level null).
``sst_dtime`` in units this reader does not know is an error, never silently seconds.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import h5py
import numpy as np
import xarray as xr
from pykdtree.kdtree import KDTree

from core.access.dmrpp import Chunk, VariableMap, chunk_ranges, metadata_ranges
from core.access.rangefile import RangeFile
from core.errors import InputError, UnreadableFileError
from core.model import FLAGS_FILL, QL_FILL, SstSwath
from core.science.h5dataset import open_undecoded
from core.science.kernel import EARTH_RADIUS_M, CellRuns, chord_from_arc, lonlat_to_xyz, reachable_blocks

log = logging.getLogger(__name__)

LAT_NAMES = ("lat", "latitude", "Latitude")
LON_NAMES = ("lon", "longitude", "Longitude")
SST_NAMES = ("sea_surface_temperature", "sst", "sea_surface_skin_temperature", "SST")
SST_STANDARD_NAMES = (
    "sea_surface_skin_temperature",
    "sea_surface_subskin_temperature",
    "sea_surface_temperature",
    "sea_surface_foundation_temperature",
)
DTIME_NAMES = ("sst_dtime", "dtime", "sst_dt")
QUALITY_NAMES = ("quality_level", "sst_quality_level")
FLAGS_NAMES = ("l2p_flags", "flags")
# GDS 2.0 per-pixel error statistics and the analysis difference; read when present
OPTIONAL_VARS = ("sses_bias", "sses_standard_deviation", "dt_analysis")
# GDS 2.0 Table 8.3-2: generic l2p_flags bits 0-4, used when a file gives meanings without masks
GDS2_GENERIC_FLAGS = ("microwave", "land", "ice", "lake", "river")
# attributes of a flag or error variable worth carrying into the product
FLAG_ATTRS = ("flag_values", "flag_masks", "flag_meanings", "long_name", "comment", "units", "standard_name")
_TIME_UNIT_S = {"s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
                "ms": 1e-3, "milliseconds": 1e-3, "millisecond": 1e-3,
                "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hour": 3600.0, "hours": 3600.0}


def normalise_attr(value: Any) -> Any:
    """One-element arrays → scalars, bytes → str (recursively for string arrays)."""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return normalise_attr(value.reshape(()).item() if value.dtype.kind not in "SUO" else value.ravel()[0])
        if value.dtype.kind in "SO":
            return [normalise_attr(v) for v in value.ravel().tolist()]
        return value
    if isinstance(value, np.generic):
        return value.item() if value.dtype.kind in "SUO" else value
    return value


def normalise_attrs(ds: xr.Dataset) -> xr.Dataset:
    """Return ``ds`` with every variable and global attribute normalised (see normalise_attr)."""
    ds = ds.copy(deep=False)
    ds.attrs = {k: normalise_attr(v) for k, v in ds.attrs.items()}
    for name in ds.variables:
        ds[name].attrs = {k: normalise_attr(v) for k, v in ds[name].attrs.items()}
    return ds


def _source_name(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source))
    for attr in ("path", "name", "full_name"):
        value = getattr(source, attr, None)
        if isinstance(value, str) and value:
            return os.path.basename(value)
    return "L2P"


def _find(ds: xr.Dataset, names: Iterable[str]) -> str | None:
    for n in names:
        if n in ds.variables:
            return n
    return None


@dataclass
class L2PGranule:
    """An open L2P file: latitude in memory, longitude decoded chunk by chunk as queries need it,
    everything else read for a window.

    The reads come in phases (:func:`open_l2p`, :meth:`locate`, :meth:`window`); when the file
    is a :class:`~core.access.rangefile.RangeFile` each phase first fetches, in one wave of side-by-side
    ranges, every byte it will decode (located by ``byte_map``: a parsed DMR++ sidecar or the
    HDF5 chunk index), so h5py — which serialises all threads behind one lock — reads from
    memory instead of waiting on the network. Phases may be repeated for other query points:
    bytes already held are not fetched again; latitude/longitude bytes are dropped once decoded.
    """

    name: str
    ds: xr.Dataset  # undecoded, attributes normalised
    lat_name: str
    lon_name: str
    dims: tuple[str, str]
    sst_var: str
    dtime_var: str | None
    quality_var: str | None
    flags_var: str | None
    warnings: list[str] = field(default_factory=list)
    optional_vars: dict = field(default_factory=dict)  # SstSwath field -> variable name present
    file: Any = None  # the file object read (RangeFile, block-cached file) or None for a path
    byte_map: dict | None = None  # "/var" -> core.access.dmrpp.VariableMap, when the file is a RangeFile
    close_file: bool = False  # close() closes ``file`` too (core.pipeline.sst_granules opened it)
    sidecar_bytes: int = 0  # the DMR++ sidecar's bytes (fetched beside the granule), 0 without one
    no_window_reason: str | None = None  # why the last locate() found no window
    _lat: Any = field(default=None, repr=False)  # float32/64 (_location_dtype), NaN = invalid latitude
    # longitude of the chunks decoded so far (NaN elsewhere and where the location is invalid)
    _lon: Any = field(default=None, repr=False)
    _lon_read: set = field(default_factory=set, repr=False)  # chunk blocks decoded
    _exposed: Any = field(default=None, repr=False)  # blocks whose location lat/lon show
    _view: tuple | None = field(default=None, repr=False)
    _h5: Any = field(default=None, repr=False)  # h5py.File for the chunk index without a sidecar

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self._latitude().shape)

    # --- what the file fetched (core.pipeline.sst_granules's files; 0 for a local path) -------------------
    @property
    def size(self) -> int:
        return int(getattr(self.file, "size", 0) or 0)

    @property
    def bytes_fetched(self) -> int:
        return int(getattr(self.file, "bytes_fetched", 0)) + self.sidecar_bytes

    @property
    def fetch_requests(self) -> int:
        return int(getattr(self.file, "fetch_requests", 0)) + (1 if self.sidecar_bytes else 0)

    @property
    def resolves(self) -> int:
        return int(getattr(self.file, "resolves", 0))

    @property
    def resolved_host(self) -> str | None:
        return getattr(self.file, "resolved_host", None)

    def close(self) -> None:
        self.ds.close()  # closes the h5py file too (core.science.h5dataset)
        self._h5 = None
        if self.close_file and self.file is not None:
            self.file.close()

    def __enter__(self) -> L2PGranule:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- location --------------------------------------------------------------------------
    @property
    def lat(self) -> np.ndarray:
        """Latitude where the location is known: NaN in chunks whose longitude was not read for
        the last :meth:`locate` (no pixel there can be near its query points)."""
        return self._location()[0]

    @property
    def lon(self) -> np.ndarray:
        return self._location()[1]

    def _location(self) -> tuple[np.ndarray, np.ndarray]:
        if self._exposed is None:  # never located: the whole granule (local reads, tests)
            self._expose(list(self._blocks()))
        elif self._lon is None:  # released after a window (_release_coordinates): decoded again
            exposed = self._exposed
            self._expose([b for b in self._blocks() if (b[0].start, b[1].start) in exposed])
        if self._view is None:
            lat = np.full(self._lat.shape, np.nan, dtype=self._lat.dtype)
            # every decoded chunk shown: longitude as decoded (NaN elsewhere already), no copy
            lon = self._lon if self._exposed >= self._lon_read else np.full(self._lat.shape, np.nan, self._lat.dtype)
            for rows, cols in self._blocks():
                if (rows.start, cols.start) in self._exposed:
                    if lon is not self._lon:
                        lon[rows, cols] = self._lon[rows, cols]
                    lat[rows, cols] = np.where(np.isnan(self._lon[rows, cols]), np.nan, self._lat[rows, cols])
            self._view = lat, lon
        return self._view

    def _read_lat(self) -> np.ndarray:
        """Latitude, every chunk fetched in one wave (already held after a sidecar's first wave)."""
        ranges = self._chunk_ranges(self.lat_name)
        self._prefetch(ranges)
        # float32 when the file stores float32 unscaled (MODIS, VIIRS L2P): the same values in
        # half the memory of float64 (a granule's lat and lon are 11 MB each then, not 22)
        lat: np.ndarray = _decoded(self.ds, self.lat_name, dtype=self._location_dtype())
        self._discard(ranges)
        with np.errstate(invalid="ignore"):
            lat[~np.isfinite(lat) | (np.abs(lat) > 90.0)] = np.nan
        return lat

    def _latitude(self) -> np.ndarray:
        """Latitude, read again if a window released it (:meth:`_release_coordinates`)."""
        if self._lat is None:
            self._lat = self._read_lat()
        return self._lat

    def _release_coordinates(self) -> None:
        """Latitude, longitude and their views dropped once a window is decoded (issue 26: an open
        granule held ~45 MB until the date's end); a later locate() or window() reads them again
        (their bytes too: discarded once decoded), which only a granule reached again needs."""
        self._lat = self._lon = self._view = None
        self._lon_read = set()

    def _blocks(self):
        return _chunk_blocks(self.ds[self.lon_name], self._latitude().shape)

    def _location_dtype(self) -> type:
        """float32 if both coordinates are stored as unscaled float32 (exact), else float64."""
        exact32 = all(self.ds[v].dtype == np.float32 and "scale_factor" not in self.ds[v].attrs
                      and "add_offset" not in self.ds[v].attrs for v in (self.lat_name, self.lon_name))
        return np.float32 if exact32 else np.float64

    def _expose(self, blocks: list[tuple[slice, slice]]) -> None:
        """Decode longitude for ``blocks`` (fetching the chunks not read yet in one wave) and make
        them the location :attr:`lat`/:attr:`lon` show."""
        todo = [b for b in blocks if (b[0].start, b[1].start) not in self._lon_read]
        ranges = [r for rows, cols in todo for r in self._chunk_ranges(self.lon_name, (rows, cols))]
        self._prefetch(ranges)
        if self._lon is None:  # allocated at the first locate: an open granule holds latitude only
            self._lon = np.full(self._latitude().shape, np.nan, dtype=self._lat.dtype)
        d0, d1 = self.dims
        for rows, cols in todo:
            lon = _decoded(self.ds, self.lon_name, {d0: rows, d1: cols}, dtype=self._lat.dtype)
            lat = self._lat[rows, cols]
            bad = ~(np.isfinite(lat) & np.isfinite(lon)) | (np.abs(lon) > 360.0)
            lon[bad] = np.nan
            self._lon[rows, cols] = lon
            self._lon_read.add((rows.start, cols.start))
        self._discard(ranges)
        self._exposed = {(rows.start, cols.start) for rows, cols in blocks}
        self._view = None

    def locate(self, query_lat, query_lon, radius_m: float, margin_pixels: int = 2) -> tuple[slice, slice] | None:
        """The window (rows, cols) that can reach the query points, or None (then
        :attr:`no_window_reason` says why). Longitude is read only for the storage chunks holding
        a latitude in the points' latitude band."""
        self.no_window_reason = None
        band = latitude_band(query_lat, radius_m)
        if band is None:
            self.no_window_reason = "no segment with a valid latitude"
            return None
        with np.errstate(invalid="ignore"):
            in_band = (self._latitude() >= band[0]) & (self._lat <= band[1])
        blocks = [(rows, cols) for rows, cols in self._blocks() if in_band[rows, cols].any()]
        self._expose(blocks)
        if not blocks:
            self.no_window_reason = (f"no pixel in the segments' latitude band "
                                     f"({band[0]:.3f} to {band[1]:.3f} degrees north)")
            return None
        win = find_window(self.lat, self.lon, query_lat, query_lon, radius_m, margin_pixels=margin_pixels)
        if win is None:
            self.no_window_reason = f"no valid pixel within {radius_m:g} m of any segment"
        return win

    # --- bytes -----------------------------------------------------------------------------
    def _chunk_ranges(self, var: str, window=None) -> list[tuple[int, int]]:
        """Byte ranges of ``var``'s chunks holding ``window`` (None: all); [] when unknown."""
        vmap = self._variable_map(var)
        return [] if vmap is None else chunk_ranges(vmap, window)

    def _variable_map(self, var: str):
        if self.byte_map is None:
            return None
        key = f"/{var}"
        if key not in self.byte_map and self._h5 is not None and var in self._h5:
            self.byte_map[key] = h5_variable_map(self._h5[var])
        return self.byte_map.get(key)

    def _prefetch(self, ranges) -> None:
        if ranges and isinstance(self.file, RangeFile):
            self.file.prefetch(ranges)

    def _discard(self, ranges) -> None:
        if ranges and isinstance(self.file, RangeFile):
            self.file.discard(ranges)

    # --- the window ------------------------------------------------------------------------
    def window(self, rows: slice, cols: slice) -> SstSwath:
        """Read and decode SST, per-pixel time, quality level and flags for one window."""
        d0, d1 = self.dims
        names = [v for v in (self.sst_var, self.dtime_var, self.quality_var, self.flags_var,
                             *self.optional_vars.values()) if v]
        time_name = _find(self.ds, ("time",))
        loc_lat, loc_lon = self._location()
        window_ranges = [r for v in names for r in self._chunk_ranges(v, (rows, cols))]
        self._prefetch(window_ranges + (self._chunk_ranges(time_name) if time_name else []))
        sub = self.ds[names].isel({d0: rows, d1: cols})
        extra = {d: 0 for d in sub.dims if d not in self.dims}
        sub = sub.isel(extra)
        # decode only what we read; sst_dtime stays a float number of (scaled) units
        dec = xr.decode_cf(sub, decode_times=False, decode_timedelta=False)
        sst = np.asarray(dec[self.sst_var].values, dtype=np.float32)
        lo, hi = _valid_range(self.ds[self.sst_var].attrs)
        with np.errstate(invalid="ignore"):
            out_of_range = (sst < lo) | (sst > hi)
        sst[out_of_range] = np.nan  # CF: outside valid_min/valid_max is missing
        units = str(self.ds[self.sst_var].attrs.get("units", "kelvin")).strip().lower()
        if units in ("celsius", "degc", "deg_c", "degrees_celsius", "c"):
            sst = sst + np.float32(273.15)
        sst[~np.isfinite(sst)] = np.nan

        time = self._pixel_time(dec, time_name, sst.shape)
        quality = None
        if self.quality_var:
            quality = _to_int(dec[self.quality_var].values, np.int8, QL_FILL)
        flags = None
        if self.flags_var:
            flags = _to_int(dec[self.flags_var].values, np.int16, FLAGS_FILL)
        statistics = {}  # SSES and dt_analysis, with their own valid ranges applied
        for key, var in self.optional_vars.items():
            values = np.asarray(dec[var].values, dtype=np.float32)
            vlo, vhi = _valid_range(self.ds[var].attrs)
            with np.errstate(invalid="ignore"):
                values[(values < vlo) | (values > vhi)] = np.nan
            statistics[key] = values
        swath = SstSwath(
            granule=self.name,
            # copies: views would keep the whole granule's geolocation alive
            lat=loc_lat[rows, cols].copy(),
            lon=loc_lon[rows, cols].copy(),
            sst=sst,
            time=time,
            quality_level=quality,
            l2p_flags=flags,
            rows=rows,
            cols=cols,
            attrs=dict(self.ds.attrs),
            warnings=list(self.warnings),
            sst_out_of_range=out_of_range,
            ice_mask=self.ice_mask,
            variable_attrs=self.variable_attrs(),
            **statistics,
        )
        # decoded into the swath: the coordinates and their views (up to 4 x 11 MB a granule) and
        # the window's compressed bytes go now, not when the date's last granule closes (issue 26)
        self._release_coordinates()
        self._discard(window_ranges)
        return swath

    @property
    def ice_mask(self) -> int | None:
        """The l2p_flags bit whose meaning is "ice", from the file's own flag attributes."""
        if not self.flags_var:
            return None
        attrs = self.ds[self.flags_var].attrs
        meanings = str(attrs.get("flag_meanings", "")).split()
        masks = attrs.get("flag_masks")
        if masks is None:
            # GDS 2.0 fixes the generic bits; a file naming them in that order without masks
            if meanings[:len(GDS2_GENERIC_FLAGS)] != list(GDS2_GENERIC_FLAGS)[:len(meanings)]:
                return None
            masks = [1 << i for i in range(len(meanings))]
        masks = np.atleast_1d(np.asarray(masks)).tolist()
        for meaning, mask in zip(meanings, masks, strict=False):  # a file may list fewer masks than meanings
            if meaning.lower() in ("ice", "sea_ice"):
                return int(mask)
        return None

    def variable_attrs(self) -> dict:
        """Flag tables, units and comments of the variables a match copies, as in the file."""
        out = {}
        for key, var in (("sst", self.sst_var), ("quality_level", self.quality_var),
                         ("l2p_flags", self.flags_var), *self.optional_vars.items()):
            if var:
                out[key] = {k: v for k, v in self.ds[var].attrs.items() if k in FLAG_ATTRS}
        return out

    def _pixel_time(self, dec: xr.Dataset, time_name: str | None, shape) -> np.ndarray:
        ref = np.datetime64("NaT", "ns")
        if time_name is not None:
            tds = xr.decode_cf(self.ds[[time_name]].reset_coords(), decode_times=True)
            values = np.asarray(tds[time_name].values).ravel()
            if values.size and np.issubdtype(values.dtype, np.datetime64):
                ref = values[0].astype("datetime64[ns]")
        if np.isnat(ref):
            self.warnings.append("no decodable reference time: pixel times unknown")
            return np.full(shape, np.datetime64("NaT", "ns"))
        if self.dtime_var is None:
            return np.full(shape, ref)
        dtime = np.asarray(dec[self.dtime_var].values, dtype=np.float64)
        unit = str(self.ds[self.dtime_var].attrs.get("units", "seconds")).strip().lower()
        if unit not in _TIME_UNIT_S:
            raise InputError(f"{self.name}: {self.dtime_var} has units {unit!r}, not a time difference "
                             f"this reader knows ({', '.join(sorted(set(_TIME_UNIT_S)))})", field="sst")
        factor = _TIME_UNIT_S[unit]
        ns = np.where(np.isfinite(dtime), np.round(dtime * factor * 1e9), 0).astype(np.int64)
        out = ref + ns.astype("timedelta64[ns]")
        out[~np.isfinite(dtime)] = np.datetime64("NaT")
        return out


def _valid_range(attrs: dict) -> tuple[float, float]:
    """valid_min/valid_max (or valid_range) in physical units after scale/offset."""
    scale = float(attrs.get("scale_factor", 1.0))
    offset = float(attrs.get("add_offset", 0.0))
    vmin, vmax = attrs.get("valid_min"), attrs.get("valid_max")
    if "valid_range" in attrs and np.size(attrs["valid_range"]) == 2:
        vmin, vmax = np.asarray(attrs["valid_range"]).ravel().tolist()
    lo = -np.inf if vmin is None else float(vmin) * scale + offset
    hi = np.inf if vmax is None else float(vmax) * scale + offset
    if scale < 0:
        lo, hi = hi, lo
    # float32 storage of the scaled value: allow half a quantum of slack
    slack = abs(scale) * 0.5
    return lo - slack, hi + slack


def _to_int(values: np.ndarray, dtype, fill) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values)
        out = np.where(bad, 0, values).astype(np.int64).astype(dtype)
        out[bad] = fill
        return out
    return values.astype(np.int64).astype(dtype)


def open_l2p(source: str | os.PathLike | BinaryIO, name: str | None = None, *, byte_map: Mapping | None = None,
             lat_band: tuple[float, float] | None = None, lazy_lon: bool | None = None) -> L2PGranule:
    """Open an L2P granule and read its metadata and latitude; raise InputError if it is not one.

    When ``source`` is a :class:`~core.access.rangefile.RangeFile`: with ``byte_map`` (a parsed DMR++
    sidecar, core.access.dmrpp) the HDF5 metadata and every latitude chunk are fetched in one wave
    before h5py touches the file; without one h5py opens it (metadata fetched on demand) and its
    chunk index locates the later phases' chunks. ``lat_band`` (south, north): longitude read
    at once for the chunks holding a latitude in the band, as :meth:`L2PGranule.locate` does.
    Otherwise longitude waits for :meth:`L2PGranule.locate` when ``lazy_lon`` (default: for a
    RangeFile) and is read whole at once when not (a local file: ``lat``/``lon`` ready)."""
    name = name or _source_name(source)
    if isinstance(source, (str, os.PathLike)) and not os.path.exists(source):
        raise InputError(f"L2P file not found: {os.fspath(source)}", field="sst")
    ranged = isinstance(source, RangeFile)
    if isinstance(source, RangeFile) and byte_map is not None:
        lat_map = next((byte_map[f"/{n}"] for n in LAT_NAMES if f"/{n}" in byte_map), None)
        small = [v for v in byte_map.values() if len(v.shape) <= 1]  # dimension coordinates (time) xarray reads at open
        source.prefetch(metadata_ranges(byte_map.values(), source.size)
                        + [r for v in ([lat_map] if lat_map else []) + small for r in chunk_ranges(v)])
    try:
        h5 = h5py.File(source, "r")
    except Exception as exc:  # h5py raises several types for a file that is not HDF5
        raise UnreadableFileError(f"{name} is not a netCDF4/HDF5 file (GHRSST L2P expected): {exc}",
                                  field="sst") from None
    try:
        raw = open_undecoded(h5)  # closing it closes h5
    except Exception as exc:  # HDF5, but not a netCDF-4 layout h5py can walk
        h5.close()
        raise UnreadableFileError(f"{name}: its netCDF4/HDF5 structure cannot be read (GHRSST L2P expected): "
                                  f"{exc}", field="sst") from None
    try:
        granule = _granule(normalise_attrs(raw), name)
        if not isinstance(source, (str, os.PathLike)):
            granule.file = source
        if ranged:
            # without a sidecar the open file's chunk index locates what later phases fetch
            granule.byte_map, granule._h5 = (dict(byte_map) if byte_map is not None else {}), h5
        granule._lat = granule._read_lat()
        if lat_band is not None:
            with np.errstate(invalid="ignore"):
                in_band = (granule._lat >= lat_band[0]) & (granule._lat <= lat_band[1])
            granule._expose([(r, c) for r, c in granule._blocks() if in_band[r, c].any()])
        elif not (ranged if lazy_lon is None else lazy_lon):
            granule._expose(list(granule._blocks()))
        return granule
    except Exception:
        raw.close()
        raise


def _granule(ds: xr.Dataset, name: str) -> L2PGranule:
    lat_name, lon_name = _find(ds, LAT_NAMES), _find(ds, LON_NAMES)
    sst_name = _find(ds, SST_NAMES)
    if sst_name is None:
        sst_name = next((str(v) for v in ds.data_vars if ds[v].attrs.get("standard_name") in SST_STANDARD_NAMES),
                        None)
    if lat_name is None or lon_name is None or sst_name is None:
        found = (("lat", lat_name), ("lon", lon_name), ("sea_surface_temperature", sst_name))
        missing = [w for w, v in found if v is None]
        raise InputError(f"{name} is not a GHRSST L2P granule (no {', '.join(missing)} variable)", field="sst")
    if ds[lat_name].ndim != 2 or ds[lat_name].dims != ds[lon_name].dims:
        raise InputError(f"{name} is not an L2P swath: lat/lon are not 2-D on the same grid", field="sst")
    row_dim, col_dim = ds[lat_name].dims  # 2-D, checked above
    dims = (str(row_dim), str(col_dim))
    if not set(dims) <= set(ds[sst_name].dims):
        raise InputError(f"{name}: {sst_name} does not share the lat/lon grid {dims}", field="sst")

    warnings: list[str] = []

    def pick(names, what: str) -> str | None:
        var = _find(ds, names)
        if var is not None and not set(dims) <= set(ds[var].dims):
            var = None
        if var is None:
            warnings.append(what)
            log.warning("%s: %s", name, what)
        return var

    dtime = pick(DTIME_NAMES, "no sst_dtime: every pixel gets the granule reference time")
    quality = pick(QUALITY_NAMES, "no quality_level variable: no quality screening possible "
                                  "(pixels filtered on SST, location and time only; matches report quality_level -1)")
    flags = pick(FLAGS_NAMES, "no l2p_flags variable")
    optional = {var: var for var in OPTIONAL_VARS if var in ds.variables and set(dims) <= set(ds[var].dims)}
    return L2PGranule(name=name, ds=ds, lat_name=lat_name, lon_name=lon_name, dims=dims, sst_var=sst_name,
                      dtime_var=dtime, quality_var=quality, flags_var=flags, warnings=warnings,
                      optional_vars=optional)


def _decoded(ds: xr.Dataset, var: str, index: dict | None = None, dtype=np.float64) -> np.ndarray:
    """A (window of a) variable with CF fill/scale/offset applied, as ``dtype``."""
    sub = ds[[var]].reset_coords()
    if index:
        sub = sub.isel(index)
    return np.asarray(xr.decode_cf(sub, decode_times=False)[var].values).astype(dtype, copy=False)


def _chunk_blocks(var: xr.DataArray, shape: tuple[int, int]):
    """(rows, cols) slices of the variable's storage chunks: reading one costs one chunk."""
    chunks = var.encoding.get("chunksizes") or shape
    step_r, step_c = (int(c) for c in chunks[-2:])
    for r0 in range(0, shape[0], step_r):
        for c0 in range(0, shape[1], step_c):
            yield slice(r0, min(r0 + step_r, shape[0])), slice(c0, min(c0 + step_c, shape[1]))


def h5_variable_map(ds) -> VariableMap:
    """An h5py dataset's chunk index as a core.access.dmrpp.VariableMap (one chunk when contiguous)."""
    if ds.chunks is None:
        offset = ds.id.get_offset()
        chunks: tuple[Chunk, ...] = () if offset is None else (
            Chunk((0,) * ds.ndim, int(offset), int(ds.id.get_storage_size())),)
        chunk_shape = tuple(ds.shape)
    else:
        chunks = tuple(Chunk(tuple(int(o) for o in info.chunk_offset), int(info.byte_offset), int(info.size))
                       for info in (ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())))
        chunk_shape = tuple(ds.chunks)
    return VariableMap(ds.name, str(ds.dtype), tuple(ds.shape), chunk_shape, chunks, "")


def latitude_band(query_lat: np.ndarray, radius_m: float) -> tuple[float, float] | None:
    """Latitudes a pixel must lie within to be ``radius_m`` or closer to a query point
    (a great-circle distance is never shorter than its latitude difference)."""
    q = np.asarray(query_lat, dtype=np.float64)
    q = q[np.isfinite(q)]
    if q.size == 0:
        return None
    reach = np.degrees(radius_m / EARTH_RADIUS_M) + 1e-6
    return float(q.min() - reach), float(q.max() + reach)


def find_window(
    lat: np.ndarray,
    lon: np.ndarray,
    query_lat: np.ndarray,
    query_lon: np.ndarray,
    radius_m: float,
    *,
    margin_pixels: int = 2,
) -> tuple[slice, slice] | None:
    """Smallest row/col window holding every valid pixel within ``radius_m`` of a query point
    (widened by ``margin_pixels``), or None when no pixel is that close."""
    qlat = np.asarray(query_lat, dtype=np.float64).ravel()
    qlon = np.asarray(query_lon, dtype=np.float64).ravel()
    ok = np.isfinite(qlat) & np.isfinite(qlon)
    if not ok.any() or lat.size == 0:
        return None
    # thin the (dense) query points to one per cube of side `cell`; widen the search by the
    # cube's half-diagonal so no pixel within radius of any original point is missed
    cell = max(float(radius_m), 2000.0)
    cubes = CellRuns(lonlat_to_xyz(qlon[ok], qlat[ok]), cell)
    centres = np.unique(cubes.centres, axis=0)  # runs along a track repeat little; points in any order may
    reach = float(chord_from_arc(radius_m)) + cubes.half_diagonal
    band = latitude_band(qlat[ok], radius_m)
    assert band is not None  # some query latitude is finite (ok.any() above)
    south, north = band
    n_rows, n_cols = lat.shape
    with np.errstate(invalid="ignore"):
        # only pixels in the query latitude band can be close: a cheap first cut
        in_band = (lat >= south) & (lat <= north) & np.isfinite(lon)
    band_rows, band_cols = np.flatnonzero(in_band.any(axis=1)), np.flatnonzero(in_band.any(axis=0))
    row_hit = np.zeros(n_rows, dtype=bool)
    col_hit = np.zeros(n_cols, dtype=bool)
    if band_rows.size:
        r0, c0 = band_rows[0], band_cols[0]
        sub = (slice(r0, band_rows[-1] + 1), slice(c0, band_cols[-1] + 1))
        # then whole grid blocks far from every cube (float32, one pass), then pixel by pixel
        near = reachable_blocks(lat[sub], lon[sub], centres, reach) & in_band[sub]
        r, c = np.nonzero(near)
        dist, _ = KDTree(centres).query(lonlat_to_xyz(lon[sub][near], lat[sub][near]), k=1,
                                               distance_upper_bound=reach)
        hit = np.isfinite(dist)
        row_hit[r[hit] + r0] = True
        col_hit[c[hit] + c0] = True
    if not row_hit.any():
        return None
    rows, cols = np.flatnonzero(row_hit), np.flatnonzero(col_hit)
    return (
        slice(max(int(rows[0]) - margin_pixels, 0), min(int(rows[-1]) + 1 + margin_pixels, n_rows)),
        slice(max(int(cols[0]) - margin_pixels, 0), min(int(cols[-1]) + 1 + margin_pixels, n_cols)),
    )


def read_l2p(
    source: str | os.PathLike | BinaryIO,
    *,
    lat: np.ndarray,
    lon: np.ndarray,
    radius_m: float,
    name: str | None = None,
    margin_pixels: int = 2,
) -> SstSwath | None:
    """The window of an L2P granule that can reach the query points; None when none can."""
    band = latitude_band(lat, radius_m)
    if band is None:
        return None
    with open_l2p(source, name=name, lat_band=band) as granule:
        win = granule.locate(lat, lon, radius_m, margin_pixels=margin_pixels)
        if win is None:
            log.info("%s: %s (%d query points)", granule.name, granule.no_window_reason, np.size(lat))
            return None
        return granule.window(*win)


__all__ = ["L2PGranule", "h5_variable_map", "open_l2p", "read_l2p", "find_window", "latitude_band", "normalise_attrs",
           "normalise_attr"]
