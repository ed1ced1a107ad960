"""Independent decoding of the raw input files, for the end-to-end oracles.

Nothing here imports ``core``: ATL07 times are ``delta_time`` plus the granule's SDP epoch minus a
fixed GPS−UTC offset of 18 s (every leap second since 2017-01-01; ICESat-2 data start in 2018),
checked against the granule's own ``data_start_utc``; L2P values get fill, valid range (in packed
units, CF §2.5.1), scale/offset and units (Kelvin or Celsius) applied by hand from the attributes.
"""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np

GPS_EPOCH = np.datetime64("1980-01-06T00:00:00", "ns")
GPS_MINUS_UTC_S = 18
BEAMS = ("gt1l", "gt1r", "gt2l", "gt2r", "gt3l", "gt3r")
R_EARTH = 6371008.8
CELSIUS = {"celsius", "degc", "deg_c", "degree_celsius", "degrees_celsius", "c"}


def _scalar(value):
    value = np.asarray(value).ravel()[0] if value is not None else None
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode()
    return value


def _ns(seconds: np.ndarray) -> np.ndarray:
    """Float seconds → int64 ns without float64's rounding at 1e18."""
    s = np.asarray(seconds, dtype=np.float64)
    whole = np.floor(s)
    return whole.astype(np.int64) * 1_000_000_000 + np.round((s - whole) * 1e9).astype(np.int64)


def atlas_utc(delta_time, epoch_gps_s: float) -> np.ndarray:
    """ATLAS delta_time (s since the SDP epoch, GPS) → datetime64[ns] UTC, NaN → NaT."""
    dt = np.asarray(delta_time, dtype=np.float64)
    ok = np.isfinite(dt)
    epoch_ns = int(round(epoch_gps_s)) * 1_000_000_000 - GPS_MINUS_UTC_S * 1_000_000_000
    ns = np.where(ok, _ns(np.where(ok, dt, 0.0)) + epoch_ns, 0)
    out = GPS_EPOCH + ns.astype("timedelta64[ns]")
    out[~ok] = np.datetime64("NaT")
    return out


def read_atl07_raw(path: Path) -> dict:
    """{beam: namespace(lat, lon, time, id)} of segments with a valid location and time.

    Asserts that the fixed 18 s reproduces the granule's own ``data_start_utc`` (≤ 1 ms)."""
    beams = {}
    with h5py.File(path, "r") as f:
        epoch = float(np.asarray(f["ancillary_data/atlas_sdp_gps_epoch"][()]).ravel()[0])
        if "ancillary_data/data_start_utc" in f and "ancillary_data/start_delta_time" in f:
            stated = np.datetime64(_scalar(f["ancillary_data/data_start_utc"][()]).strip().rstrip("Z"), "ns")
            ours = atlas_utc([float(np.asarray(f["ancillary_data/start_delta_time"][()]).ravel()[0])], epoch)[0]
            assert abs((ours - stated) / np.timedelta64(1, "us")) <= 1000, (path, ours, stated)
        for beam in BEAMS:
            g = f.get(f"{beam}/sea_ice_segments")
            if g is None or not all(v in g for v in ("latitude", "longitude", "delta_time")):
                continue
            lat, lon = g["latitude"][()].astype(np.float64), g["longitude"][()].astype(np.float64)
            dt = g["delta_time"][()].astype(np.float64)
            for arr, var in ((lat, "latitude"), (lon, "longitude"), (dt, "delta_time")):
                fill = _scalar(g[var].attrs.get("_FillValue"))
                if fill is not None:
                    arr[arr == fill] = np.nan
            ids = g["height_segment_id"][()].astype(np.int64) if "height_segment_id" in g else np.full(lat.size, -1)
            ok = np.isfinite(lat) & np.isfinite(lon) & np.isfinite(dt) & (np.abs(lat) <= 90)
            # the raw fit flag, _FillValue included (v003: -1 = "invalid" is also the fill)
            fit = g["heights/height_segment_fit_quality_flag"][()].astype(np.int64) \
                if "heights/height_segment_fit_quality_flag" in g else np.full(lat.size, -999)
            height = g["heights/height_segment_height"][()].astype(np.float64) \
                if "heights/height_segment_height" in g else np.full(lat.size, np.nan)
            if "heights/height_segment_height" in g:
                fill = _scalar(g["heights/height_segment_height"].attrs.get("_FillValue"))
                if fill is not None:
                    height[height == np.float32(fill)] = np.nan
            beams[beam] = SimpleNamespace(lat=lat[ok], lon=lon[ok], time=atlas_utc(dt[ok], epoch), id=ids[ok],
                                          fit=fit[ok], height=height[ok])
    return beams


def in_bbox(lon, lat, bbox, margin=0.0) -> np.ndarray:
    """W,S,E,N (no antimeridian crossing) widened by ``margin`` degrees."""
    w, s, e, n = bbox
    lon = (np.asarray(lon) + 180.0) % 360.0 - 180.0
    return (lat >= s - margin) & (lat <= n + margin) & (lon >= w - margin) & (lon <= e + margin)


# --------------------------------------------------------------------------- L2P
def _var(f: h5py.File, names) -> h5py.Dataset | None:
    return next((f[n] for n in names if n in f), None)


def _grid(ds: h5py.Dataset) -> np.ndarray:
    data = ds[()]
    return data[0] if data.ndim == 3 else data  # (time=1, nj, ni)


def _decode(ds: h5py.Dataset) -> np.ndarray:
    """Fill and valid range on the packed values, then scale/offset: float64, NaN = missing."""
    raw = _grid(ds)
    a = ds.attrs
    out = raw.astype(np.float64)
    bad = np.zeros(raw.shape, dtype=bool)
    fill = _scalar(a.get("_FillValue"))
    if fill is not None:
        bad |= raw == fill
    lo, hi = _scalar(a.get("valid_min")), _scalar(a.get("valid_max"))
    if "valid_range" in a:
        lo, hi = np.asarray(a["valid_range"]).ravel()[:2]
    if lo is not None:
        bad |= raw < lo
    if hi is not None:
        bad |= raw > hi
    out = out * float(_scalar(a.get("scale_factor")) or 1.0) + float(_scalar(a.get("add_offset")) or 0.0)
    out[bad] = np.nan
    return out


def _since(units: str) -> tuple[float, np.datetime64]:
    m = re.match(r"\s*(seconds|minutes|hours|days) since (\d{4}-\d\d-\d\d)[ T]?(\d\d:\d\d:\d\d)?", units)
    assert m, units
    factor = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}[m.group(1)]
    return factor, np.datetime64(f"{m.group(2)}T{m.group(3) or '00:00:00'}", "ns")


def read_l2p_raw(path: Path) -> SimpleNamespace:
    """lat, lon, sst (K), time (datetime64[ns]), quality_level (or None) of every pixel."""
    with h5py.File(path, "r") as f:
        lat = _decode(_var(f, ("lat", "latitude")))
        lon = _decode(_var(f, ("lon", "longitude")))
        bad = ~np.isfinite(lat) | ~np.isfinite(lon) | (np.abs(lat) > 90) | (np.abs(lon) > 360)
        lat[bad] = lon[bad] = np.nan
        sst_ds = _var(f, ("sea_surface_temperature", "sst"))
        sst = _decode(sst_ds)
        units = str(_scalar(sst_ds.attrs.get("units", "kelvin"))).strip().lower()
        if units in CELSIUS:
            sst = sst + 273.15
        else:
            assert units in ("kelvin", "k"), units
        factor, t0 = _since(str(_scalar(f["time"].attrs["units"])))
        ref = t0 + np.timedelta64(int(round(float(np.asarray(f["time"][()]).ravel()[0]) * factor * 1e9)), "ns")
        dt_ds = _var(f, ("sst_dtime",))
        if dt_ds is None:
            time = np.full(sst.shape, ref)
        else:
            dt = _decode(dt_ds)
            time = ref + np.where(np.isfinite(dt), np.round(dt * 1e9), 0).astype("timedelta64[ns]")
            time[~np.isfinite(dt)] = np.datetime64("NaT")
        ql_ds = _var(f, ("quality_level",))
        ql = None
        if ql_ds is not None:
            q = _decode(ql_ds)
            ql = np.where(np.isfinite(q), q, -1).astype(np.int16)
        ice = _ice_bit(f)
    return SimpleNamespace(lat=lat, lon=lon, sst=sst, time=time, quality_level=ql, ice=ice)


def _ice_bit(f: h5py.File) -> np.ndarray:
    """Per pixel, the l2p_flags bit whose flag_meanings word is "ice" (GDS 2.0 Table 8.3: bit 2
    when the file gives meanings without masks); False where the file has no flags."""
    ds = _var(f, ("l2p_flags",))
    if ds is None:
        return np.zeros(_grid(_var(f, ("lat", "latitude"))).shape, bool)
    raw = _grid(ds).astype(np.int64)
    words = str(_scalar(ds.attrs.get("flag_meanings", b"")) or "").split()
    masks = ds.attrs.get("flag_masks")
    masks = [1 << i for i in range(len(words))] if masks is None else np.asarray(masks).ravel().tolist()
    mask = next((int(m) for w, m in zip(words, masks) if w.lower() in ("ice", "sea_ice")), 0)
    fill = _scalar(ds.attrs.get("_FillValue"))
    return ((raw & mask) != 0) & (raw != (fill if fill is not None else -(1 << 40)))


def is_l2p_file(path: Path) -> bool:
    """A real netCDF-4 granule (not a 98-byte .md5 sidecar or other non-HDF5 object)."""
    return h5py.is_hdf5(path)


# --------------------------------------------------------------------------- brute force
def haversine(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi, dlmb = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * R_EARTH * np.arcsin(np.sqrt(np.minimum(h, 1.0)))


def pixel_table(swaths, min_ql: int | None, lat_band: tuple[float, float] | None = None,
                exclude_ice: bool = False) -> SimpleNamespace:
    """Valid pixels of several decoded swaths, with their swath index and ice bit
    (``exclude_ice``: ice-flagged pixels are not valid)."""
    cols = {k: [] for k in ("lat", "lon", "sst", "t", "granule", "ql", "nj", "ni", "ice")}
    for i, s in enumerate(swaths):
        ok = np.isfinite(s.lat) & np.isfinite(s.lon) & np.isfinite(s.sst) & ~np.isnat(s.time)
        if s.quality_level is not None and min_ql is not None:
            ok &= s.quality_level >= min_ql
        if exclude_ice:
            ok &= ~s.ice
        if lat_band is not None:
            ok &= (s.lat >= lat_band[0]) & (s.lat <= lat_band[1])
        nj, ni = np.nonzero(ok)  # the pixel's place in its swath
        cols["nj"].append(nj)
        cols["ni"].append(ni)
        cols["ql"].append(s.quality_level[ok] if s.quality_level is not None else np.full(int(ok.sum()), -1))
        cols["ice"].append(s.ice[ok])
        cols["lat"].append(s.lat[ok])
        cols["lon"].append(s.lon[ok])
        cols["sst"].append(s.sst[ok])
        cols["t"].append(s.time[ok].astype("datetime64[ns]").astype(np.int64))
        cols["granule"].append(np.full(int(ok.sum()), i))
    return SimpleNamespace(**{k: np.concatenate(v) for k, v in cols.items()})


def nearest(seg_lat, seg_lon, seg_time, pixels: SimpleNamespace, radius_m: float, max_dt_s: float):
    """Per segment: (pixel index or -1, distance m, Δt s = pixel − segment). Nearest wins;
    an exact tie goes to the smaller |Δt|."""
    n = len(seg_lat)
    idx, dist, dts = np.full(n, -1), np.full(n, np.nan), np.full(n, np.nan)
    t_ns = np.asarray(seg_time).astype("datetime64[ns]").astype(np.int64)
    for i in range(n):
        d = haversine(seg_lat[i], seg_lon[i], pixels.lat, pixels.lon)
        dt = (pixels.t - t_ns[i]) / 1e9
        good = np.flatnonzero((d <= radius_m) & (np.abs(dt) <= max_dt_s))
        if good.size:
            order = np.lexsort((np.abs(dt[good]), d[good]))
            j = good[order[0]]
            idx[i], dist[i], dts[i] = j, d[j], dt[j]
    return idx, dist, dts
