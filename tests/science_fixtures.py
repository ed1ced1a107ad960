"""Small synthetic ATL07 / GHRSST L2P files and an independent brute-force colocation oracle.

The files are written the way the real products are laid out (h5py / h5netcdf), including the
awkward parts: PO.DAAC-style one-element byte-array attributes, -999 lat/lon fill, scaled
sst_dtime, _FillValue as scalar or one-element array.
"""
from __future__ import annotations

import io
from pathlib import Path

import h5netcdf
import h5py
import numpy as np

R_EARTH = 6371008.8  # same sphere as the kernel (the oracle is otherwise independent)
L2P_EPOCH = np.datetime64("1981-01-01T00:00:00", "ns")
ATLAS_EPOCH_UTC = np.datetime64("2018-01-01T00:00:00", "ns")  # delta_time 0, GPS 1198800018 s


# --------------------------------------------------------------------------- geometry
def rotate_to(lat0: float, lon0: float, north_m: np.ndarray, east_m: np.ndarray):
    """Points given in metres around (0, 0) moved rigidly to (lat0, lon0) on the sphere.

    Works at the poles and across the antimeridian (longitudes come back in [-180, 180])."""
    lat = np.degrees(np.asarray(north_m, dtype=np.float64) / R_EARTH)
    lon = np.degrees(np.asarray(east_m, dtype=np.float64) / R_EARTH)
    la, lo = np.radians(lat), np.radians(lon)
    x, y, z = np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)
    # rotate about y by lat0 (towards north), then about z by lon0
    p = np.radians(lat0)
    x, z = x * np.cos(p) - z * np.sin(p), x * np.sin(p) + z * np.cos(p)
    q = np.radians(lon0)
    x, y = x * np.cos(q) - y * np.sin(q), x * np.sin(q) + y * np.cos(q)
    return np.degrees(np.arcsin(np.clip(z, -1, 1))), np.degrees(np.arctan2(y, x))


def swath_geometry(lat0, lon0, rows=40, cols=30, spacing_m=1000.0, jitter_m=150.0, rng=None):
    rng = rng or np.random.default_rng(0)
    r, c = np.meshgrid(np.arange(rows) - rows / 2, np.arange(cols) - cols / 2, indexing="ij")
    north = r * spacing_m + rng.normal(0, jitter_m, r.shape)
    east = c * spacing_m + rng.normal(0, jitter_m, c.shape)
    return rotate_to(lat0, lon0, north, east)


def track_geometry(lat0, lon0, n=200, length_m=40000.0, angle_deg=30.0, rng=None):
    rng = rng or np.random.default_rng(1)
    s = np.linspace(-length_m / 2, length_m / 2, n) + rng.normal(0, 20, n)
    a = np.radians(angle_deg)
    return rotate_to(lat0, lon0, s * np.cos(a), s * np.sin(a))


# --------------------------------------------------------------------------- oracle
def haversine(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi, dlmb = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * R_EARTH * np.arcsin(np.sqrt(np.minimum(h, 1.0)))


def oracle(seg_lat, seg_lon, seg_time, swath, radius_m, max_dt_s, min_ql):
    """Brute force: for each segment, every pixel's haversine distance; nearest valid wins, an
    exact tie goes to the smaller |Δt| (docs/SCIENCE.md).

    Returns (flat pixel index or -1, distance m, dt s) per segment."""
    lat, lon = swath.lat.ravel(), swath.lon.ravel()
    sst, t = swath.sst.ravel(), swath.time.ravel()
    ok = np.isfinite(lat) & np.isfinite(lon) & np.isfinite(sst) & ~np.isnat(t)
    if swath.quality_level is not None:
        ok &= swath.quality_level.ravel() >= min_ql
    cand = np.flatnonzero(ok)
    n = len(seg_lat)
    idx = np.full(n, -1)
    dist = np.full(n, np.nan)
    dts = np.full(n, np.nan)
    for i in range(n):
        if not (np.isfinite(seg_lat[i]) and np.isfinite(seg_lon[i])) or np.isnat(seg_time[i]):
            continue
        d = haversine(seg_lat[i], seg_lon[i], lat[cand], lon[cand])
        dt = (t[cand] - seg_time[i]) / np.timedelta64(1, "s")
        good = (d <= radius_m) & (np.abs(dt) <= max_dt_s)
        if good.any():
            j = np.flatnonzero(good)[np.lexsort((np.abs(dt[good]), d[good]))[0]]
            idx[i], dist[i], dts[i] = cand[j], d[j], dt[j]
    return idx, dist, dts


# --------------------------------------------------------------------------- L2P files
def _battr(text: str) -> np.ndarray:
    return np.array([text.encode()])  # PO.DAAC style: one-element byte array


def write_l2p(
    path: Path,
    lat: np.ndarray,
    lon: np.ndarray,
    sst_k: np.ndarray,
    dtime_s: np.ndarray,
    *,
    ref_time: str = "2019-06-22T10:00:01",
    quality: np.ndarray | None = None,
    flags: np.ndarray | None = None,
    dtime_scale: float | None = None,
    byte_attrs: bool = True,
    extra_vars: bool = True,
    chunks: tuple[int, int] | None = None,
    lat_name: str = "lat",
    lon_name: str = "lon",
    dims: tuple[str, str] = ("nj", "ni"),
    with_time_dim: bool = True,
    title: str = "Synthetic L2P SST",
    global_attrs: dict | None = None,
    sses: bool = False,
    dt_analysis: bool = False,
    dtime_units: str = "seconds",
    sst_standard_name: str = "sea_surface_skin_temperature",
    celsius: bool = False,
    quality_meanings: str | None = None,
) -> Path:
    """Write a GDS2-like L2P file. NaN sst/dtime → _FillValue; NaN lat/lon → -999.

    SSTs below 268.15 K (valid_min -1000) are stored as they are: out of the valid range, as
    real MODIS SSTs over ice are. ``celsius`` stores degrees Celsius (add_offset 0)."""
    A = _battr if byte_attrs else (lambda s: s)
    F = (lambda v, dt: np.array([v], dtype=dt))  # numeric attributes as one-element arrays
    rows, cols = lat.shape
    ref = np.datetime64(ref_time, "ns")
    tsec = int((ref - L2P_EPOCH) / np.timedelta64(1, "s"))
    kw = dict(compression="gzip", chunks=chunks) if chunks else {}
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"time": 1, dims[0]: rows, dims[1]: cols}
        f.attrs["title"] = A(title)
        f.attrs["Conventions"] = A("CF-1.7, ACDD-1.3")
        f.attrs["processing_level"] = A("L2P")
        f.attrs["file_quality_level"] = F(3, np.int32)
        for key, value in (global_attrs or {}).items():
            f.attrs[key] = A(value)
        t = f.create_variable("time", ("time",), np.int32)
        t[:] = [tsec]
        t.attrs["units"] = A("seconds since 1981-01-01 00:00:00")
        t.attrs["standard_name"] = A("time")
        for name, values, std in ((lat_name, lat, "latitude"), (lon_name, lon, "longitude")):
            v = f.create_variable(name, dims, np.float32, fillvalue=np.float32(-999.0), **kw)
            v[:] = np.where(np.isfinite(values), values, -999.0).astype(np.float32)
            v.attrs["units"] = A("degrees_north" if std == "latitude" else "degrees_east")
            v.attrs["standard_name"] = A(std)
        grid = (("time",) if with_time_dim else ()) + dims
        sl = (None,) if with_time_dim else ()
        gchunks = ((1,) + chunks if with_time_dim else chunks) if chunks else None
        gkw = dict(compression="gzip", chunks=gchunks) if chunks else {}

        v = f.create_variable("sea_surface_temperature", grid, np.int16, fillvalue=np.int16(-32767), **gkw)
        raw = np.where(np.isfinite(sst_k), np.round((sst_k - 273.15) / 0.005), -32767).astype(np.int16)
        v[:] = raw[sl] if with_time_dim else raw
        v.attrs["units"] = A("celsius" if celsius else "kelvin")
        v.attrs["scale_factor"] = F(0.005, np.float32)
        v.attrs["add_offset"] = F(0.0 if celsius else 273.15, np.float32)
        v.attrs["valid_min"] = F(-1000, np.int16)
        v.attrs["valid_max"] = F(10000, np.int16)
        v.attrs["standard_name"] = A(sst_standard_name)
        v.attrs["coordinates"] = A(f"{lon_name} {lat_name}")

        v = f.create_variable("sst_dtime", grid, np.int16, fillvalue=np.int16(-32768), **gkw)
        scale = dtime_scale or 1.0
        raw = np.where(np.isfinite(dtime_s), np.round(dtime_s / scale), -32768).astype(np.int16)
        v[:] = raw[sl] if with_time_dim else raw
        v.attrs["units"] = A(dtime_units)
        if dtime_scale:
            v.attrs["scale_factor"] = F(dtime_scale, np.float32)
            v.attrs["add_offset"] = F(0.0, np.float32)

        if quality is not None:
            v = f.create_variable("quality_level", grid, np.int8, fillvalue=np.int8(-128), **gkw)
            v[:] = quality.astype(np.int8)[sl] if with_time_dim else quality.astype(np.int8)
            v.attrs["valid_min"] = F(0, np.int8)
            v.attrs["valid_max"] = F(5, np.int8)
            v.attrs["flag_values"] = np.arange(6, dtype=np.int8)
            if quality_meanings:  # the producer's own words (GDS 2.0 leaves them to it)
                v.attrs["flag_meanings"] = A(quality_meanings)
        if flags is not None:
            v = f.create_variable("l2p_flags", grid, np.int16, **gkw)
            v[:] = flags.astype(np.int16)[sl] if with_time_dim else flags.astype(np.int16)
            v.attrs["flag_meanings"] = A("microwave land ice lake river")
        # GDS 2.0 SSES and dt_analysis: signed bytes with scale/offset, as PO.DAAC's MODIS L2P
        for name, on, scale, offset, values in (
            ("sses_bias", sses, 0.1574803144, 0.0, np.round(np.linspace(-0.8, 0.8, rows * cols)).reshape(rows, cols)),
            ("sses_standard_deviation", sses, 0.07874015719, 10.0, np.full((rows, cols), -120.0)),
            ("dt_analysis", dt_analysis, 0.1, 0.0, np.arange(rows * cols).reshape(rows, cols) % 50 - 25.0),
        ):
            if on:
                v = f.create_variable(name, grid, np.int8, fillvalue=np.int8(-128), **gkw)
                raw = np.clip(values, -127, 127).astype(np.int8)
                v[:] = raw[sl] if with_time_dim else raw
                v.attrs["units"] = A("kelvin")
                v.attrs["scale_factor"] = F(scale, np.float32)
                v.attrs["add_offset"] = F(offset, np.float32)
                v.attrs["valid_min"] = F(-127, np.int8)
                v.attrs["valid_max"] = F(127, np.int8)
        if extra_vars:
            rng = np.random.default_rng(5)
            for name in ("chlorophyll_a", "wind_speed_f"):  # incompressible noise: costly to read
                v = f.create_variable(name, grid, np.float32, **gkw)
                noise = rng.random((rows, cols)).astype(np.float32)
                v[:] = noise[sl] if with_time_dim else noise
                v.attrs["comment"] = A("non L2P core field")
    return path


def synthetic_swath_file(tmp_path: Path, lat0, lon0, *, rows=40, cols=30, seed=0, name="synthetic_L2P.nc",
                         ref_time="2019-06-22T10:00:01", cold_frac=0.0, **kw):
    """A jittered 1-km swath around (lat0, lon0) with some fill, random quality and dtime;
    ``cold_frac`` of the pixels hold 262-268 K (raw values below valid_min, any quality)."""
    rng = np.random.default_rng(seed)
    lat, lon = swath_geometry(lat0, lon0, rows, cols, rng=rng)
    sst = 271.0 + rng.random((rows, cols)) * 10
    if cold_frac:
        cold = rng.random((rows, cols)) < cold_frac
        sst[cold] = 262.0 + rng.random(int(cold.sum())) * 6.0
    sst[rng.random((rows, cols)) < 0.15] = np.nan
    dtime = np.repeat(np.arange(rows)[:, None] * 7.0, cols, axis=1)  # scan lines ~7 s apart
    quality = rng.integers(0, 6, (rows, cols))
    flags = rng.integers(0, 32, (rows, cols))
    lat[0, 0] = lon[0, 0] = np.nan  # lat/lon fill
    path = write_l2p(tmp_path / name, lat, lon, sst, dtime, quality=quality, flags=flags, ref_time=ref_time, **kw)
    return path, dict(lat=lat, lon=lon, sst=sst, dtime=dtime, quality=quality, flags=flags)


REAL_L2P_SUBSETS = ["SS_MODIS_A-JPL-L2P-v2014.0_cut.nc", "SS_MODIS_A-JPL-L2P-v2014.0_uncut.nc"]  # in realdata/l2p


def write_like_real_granule(path, zarr_json, rows, cols, rng):
    """A small file with the exact variables, dtypes and attributes of the full PO.DAAC granule
    (from its kerchunk description), every attribute stored as a one-element array."""
    import json

    meta = json.loads(zarr_json.read_text())
    raw = {}
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"time": 1, "nj": rows, "ni": cols}
        for key, arr in meta.items():
            if not key.endswith("/.zarray"):
                continue
            name = key.split("/")[0]
            attrs = meta[f"{name}/.zattrs"]
            dims = tuple(attrs["_ARRAY_DIMENSIONS"])
            dtype = np.dtype(arr["dtype"])
            shape = tuple({"time": 1, "nj": rows, "ni": cols}[d] for d in dims)
            fill = attrs.get("_FillValue")
            v = f.create_variable(name, dims, dtype, fillvalue=None if fill is None else dtype.type(fill))
            if name in ("lat", "lon"):
                lat, lon = swath_geometry(-45.0, 10.0, rows, cols, rng=rng)
                data = (lat if name == "lat" else lon).astype(dtype)
                data[:2, :3] = fill
            elif name == "time":
                data = np.array([1252627201], dtype)  # 2020-09-11T00:00:01
            else:
                lo, hi = attrs.get("valid_min", 0), attrs.get("valid_max", 100)
                data = rng.integers(lo, hi + 1, shape).astype(dtype)
                if fill is not None:
                    data[rng.random(shape) < 0.1] = fill
            v[:] = data
            raw[name] = data
            for a, value in attrs.items():
                if a in ("_ARRAY_DIMENSIONS", "_FillValue"):
                    continue
                if isinstance(value, str):
                    v.attrs[a] = np.array([value.encode()])
                elif isinstance(value, list):
                    v.attrs[a] = np.array(value, dtype=dtype)
                else:
                    v.attrs[a] = np.array([value], dtype=np.float32 if isinstance(value, float) else dtype)
        for a, value in meta[".zattrs"].items():
            f.attrs[a] = np.array([value.encode()]) if isinstance(value, str) else np.array([value])
    return raw


# --------------------------------------------------------------------------- ATL07 files
def delta_time_for(utc: str) -> float:
    """ATLAS delta_time for a UTC instant (after 2017: GPS = UTC + 18 s, epoch 2018-01-01 GPS)."""
    return float((np.datetime64(utc, "ns") - ATLAS_EPOCH_UTC) / np.timedelta64(1, "ns")) / 1e9


def write_atl07(
    path: Path | io.BytesIO,
    beams: dict[str, dict[str, np.ndarray]],
    *,
    sc_orient: int | None = 0,
    epoch: float | None = 1198800018.0,
    short_name: str | None = "ATL07",
    fill_as_array: bool = True,
    chunks: int | None = None,
    skip_vars: tuple[str, ...] = (),
    ice_conc_v006: bool = False,
    beam_type_attr: bool = False,
    sc_orient_time: list[float] | None = None,
):
    """beams: {beam: {lat, lon, delta_time, height, quality, type, id, ...}}; NaN height → fill.

    Also writes the v003-v006 fields the reader copies (confidence, ssh_flag, length_seg,
    seg_dist_x, stats/ice_conc or, with ``ice_conc_v006``, stats/ice_conc_amsr2 and _ssmi) with
    their flag attributes; ``sc_orient`` may be a list (a yaw flip) with ``sc_orient_time``."""
    with h5py.File(path, "w") as h:
        if short_name:
            h.attrs["short_name"] = np.bytes_(short_name)
        if epoch is not None:
            d = h.create_dataset("ancillary_data/atlas_sdp_gps_epoch", data=np.array([epoch]))
            d.attrs["units"] = np.bytes_("seconds since 1980-01-06T00:00:00.000000Z")
        if sc_orient is not None:
            h.create_dataset("orbit_info/sc_orient", data=np.atleast_1d(np.array(sc_orient, dtype=np.int8)))
        if sc_orient_time is not None:
            h.create_dataset("orbit_info/sc_orient_time", data=np.asarray(sc_orient_time, np.float64))
        starts = [np.nanmin(np.asarray(v["delta_time"], np.float64)) for v in beams.values() if len(v["delta_time"])]
        if epoch == 1198800018.0 and starts:  # what the granule states about its first time
            t0 = float(min(starts))
            utc = ATLAS_EPOCH_UTC + np.timedelta64(int(round(t0 * 1e6)), "us")
            h.create_dataset("ancillary_data/start_delta_time", data=np.array([t0]))
            h.create_dataset("ancillary_data/data_start_utc", data=np.array([f"{utc.astype('datetime64[us]')}Z".encode()]))
        for beam, v in beams.items():
            g = h.create_group(f"{beam}/sea_ice_segments")
            g.create_group("stats")
            n = len(v["lat"])
            kw = dict(chunks=(min(chunks, n),)) if chunks and n else {}

            def put(name, data, fill=None):
                if name in skip_vars:
                    return
                d = g.create_dataset(name, data=data, **kw)
                if fill is not None:
                    d.attrs["_FillValue"] = np.array([fill], dtype=data.dtype) if fill_as_array else data.dtype.type(fill)

            put("latitude", np.asarray(v["lat"], np.float64))
            put("longitude", np.asarray(v["lon"], np.float64))
            put("delta_time", np.asarray(v["delta_time"], np.float64))
            put("height_segment_id", np.asarray(v.get("id", np.arange(n) + 1), np.int32))
            h_ = np.asarray(v.get("height", np.zeros(n)), np.float32)
            fill = np.finfo(np.float32).max
            put("heights/height_segment_height", np.where(np.isfinite(h_), h_, fill).astype(np.float32), fill)
            put("heights/height_segment_quality", np.asarray(v.get("quality", np.ones(n)), np.int8))
            put("heights/height_segment_fit_quality_flag", np.asarray(v.get("fit_quality", np.full(n, 2)), np.int8), -1)
            put("heights/height_segment_type", np.asarray(v.get("type", np.ones(n)), np.int8))
            put("heights/height_segment_confidence", np.asarray(v.get("confidence", np.linspace(0.2, 1, n)), np.float32))
            put("heights/height_segment_ssh_flag", np.asarray(v.get("ssh_flag", np.arange(n) % 2), np.int8))
            put("heights/height_segment_length_seg", np.asarray(v.get("length_seg", np.full(n, 25.0)), np.float32))
            put("seg_dist_x", np.asarray(v.get("seg_dist_x", 1e6 + 10.0 * np.arange(n)), np.float64))
            conc = np.asarray(v.get("ice_conc", np.full(n, 95.0)), np.float32)
            for name in (("stats/ice_conc_amsr2", "stats/ice_conc_ssmi") if ice_conc_v006 else ("stats/ice_conc",)):
                put(name, conc)
            # uncertainty and cloud/scattering flags as the real v003 granules have them
            put("heights/height_segment_surface_error_est",
                np.asarray(v.get("surface_error_est", np.full(n, 0.02)), np.float32), np.finfo(np.float32).max)
            if "heights/height_segment_surface_error_est" in g:
                g["heights/height_segment_surface_error_est"].attrs["units"] = np.bytes_("meters")
            put("stats/layer_flag", np.asarray(v.get("layer_flag", np.arange(n) % 2), np.int16))
            put("stats/cloud_flag_asr", np.asarray(v.get("cloud_flag_asr", np.arange(n) % 7), np.int16))
            put("stats/msw_flag", np.asarray(v.get("msw_flag", np.arange(n) % 7 - 1), np.int8))
            for name, values, meanings in (
                ("stats/layer_flag", [0, 1], "likely_clear likely_cloudy"),
                ("stats/cloud_flag_asr", list(range(7)), "clear_with_high_confidence clear_with_medium_confidence "
                 "clear_with_low_confidence cloudy_with_low_confidence cloudy_with_medium_confidence "
                 "cloudy_with_high_confidence unknown"),
                ("stats/msw_flag", list(range(-1, 6)), "cannot_determine no_layers layer_gt_3km "
                 "layer_between_1_and_3_km layer_lt_1km blow_snow_od_lt_0.5 blow_snow_od_gt_0.5"),
            ):
                if name in g:
                    g[name].attrs["flag_values"] = np.array(values, g[name].dtype)
                    g[name].attrs["flag_meanings"] = np.bytes_(meanings)
            for name, values, meanings in (
                ("heights/height_segment_quality", [0, 1], "bad_quality good_quality"),
                ("heights/height_segment_fit_quality_flag", [-1, 1, 2, 3, 4, 5], "invalid best high med low poor"),
                ("heights/height_segment_ssh_flag", [0, 1], "sea_ice sea_surface"),
            ):
                if name in g:
                    g[name].attrs["flag_values"] = np.array(values, np.int8)
                    g[name].attrs["flag_meanings"] = np.bytes_(meanings)
            if beam_type_attr:
                h[beam].attrs["atlas_beam_type"] = np.bytes_("strong" if beam.endswith("l") else "weak")
    return path


class CountingReader(io.RawIOBase):
    """A read-only binary file that counts the bytes handed out (stands in for an s3fs file)."""

    def __init__(self, path: Path):
        self._f = open(path, "rb")
        self.bytes_read = 0
        self.name = str(path)

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        return self._f.seek(offset, whence)

    def tell(self):
        return self._f.tell()

    def readinto(self, b):
        n = self._f.readinto(b)
        self.bytes_read += n or 0
        return n

    def close(self):
        self._f.close()
        super().close()


# --------------------------------------------------------------------------- neighbourhood oracle
def footprint_oracle(lat, lon):
    """Per pixel half the cell diagonal from neighbour spacing, by explicit loops (independent
    of core.science.kernel.footprint_radius_m)."""
    rows, cols = lat.shape
    out = np.full(lat.shape, np.nan)
    ok = np.isfinite(lat) & np.isfinite(lon)
    for r in range(rows):
        for c in range(cols):
            if not ok[r, c]:
                continue
            sides = []
            for nbrs in (((r, c - 1), (r, c + 1)), ((r - 1, c), (r + 1, c))):
                d = [haversine(lat[r, c], lon[r, c], lat[i, j], lon[i, j]) for i, j in nbrs
                     if 0 <= i < rows and 0 <= j < cols and ok[i, j]]
                sides.append(float(np.mean(d)) if d else np.nan)
            across, along = sides
            across = along if np.isnan(across) else across
            along = across if np.isnan(along) else along
            out[r, c] = 0.5 * np.hypot(across, along)
    if np.isfinite(out).any():
        out[ok & ~np.isfinite(out)] = np.median(out[np.isfinite(out)])
    return out


def neighbourhood_oracle(seg_lat, seg_lon, seg_time, swath, radius_m, max_dt_s, min_ql, ice_mask=None,
                         out_of_range=None, exclude_ice=False):
    """Brute force over every pixel: per segment the radius used, the class counts within radius
    and Δt (valid, rejected by quality, outside the valid range, ice) and the median/std of the
    valid SSTs. ``radius_m="footprint"``: the footprint of the nearest geolocated pixel."""
    lat, lon = swath.lat.ravel(), swath.lon.ravel()
    sst, t = swath.sst.ravel(), swath.time.ravel()
    geo = np.isfinite(lat) & np.isfinite(lon)
    timed = ~np.isnat(t)
    ql = swath.quality_level.ravel() if swath.quality_level is not None else None
    q_ok = (ql >= min_ql) if ql is not None and min_ql is not None else np.ones(lat.size, bool)
    flags = swath.l2p_flags.ravel() if swath.l2p_flags is not None else None
    ice = ((flags.astype(np.int32) & ice_mask) != 0) & (flags != -1) if flags is not None and ice_mask else np.zeros(lat.size, bool)
    oor = out_of_range.ravel() if out_of_range is not None else np.zeros(lat.size, bool)
    fp = footprint_oracle(swath.lat, swath.lon).ravel() if radius_m == "footprint" else None
    n = len(seg_lat)
    res = {k: np.zeros(n, int) for k in ("n_valid", "n_rejected_quality", "n_out_of_range", "n_ice", "n_outside_dt",
                                         "n_excluded_ice")}
    res.update(radius=np.full(n, np.nan), median=np.full(n, np.nan), std=np.full(n, np.nan))
    for i in range(n):
        d = np.where(geo, haversine(seg_lat[i], seg_lon[i], np.where(geo, lat, 0), np.where(geo, lon, 0)), np.inf)
        if fp is not None:
            j = int(np.argmin(d))
            if not d[j] <= 5000.0:
                continue
            r = fp[j]
        else:
            r = radius_m
        res["radius"][i] = r
        dt = np.where(timed, (t - seg_time[i]) / np.timedelta64(1, "s"), np.inf)
        near = geo & timed & (d <= r) & (np.abs(dt) <= max_dt_s)
        valid = near & np.isfinite(sst) & q_ok
        if exclude_ice:
            res["n_excluded_ice"][i] = (valid & ice).sum()
            valid &= ~ice
        res["n_valid"][i] = valid.sum()
        res["n_rejected_quality"][i] = (near & np.isfinite(sst) & ~q_ok).sum()
        res["n_out_of_range"][i] = (near & oor).sum()
        res["n_ice"][i] = (near & ice).sum()
        res["n_outside_dt"][i] = (geo & (d <= r) & ~(np.abs(dt) <= max_dt_s)).sum()
        if valid.any():
            res["median"][i] = np.median(sst[valid].astype(np.float64))
            # the spread of a single pixel is undefined
            res["std"][i] = np.std(sst[valid].astype(np.float64)) if valid.sum() >= 2 else np.nan
    return res
