"""Synthetic but realistic inputs for the product and quicklook tests, built from core.model.

An ATL07-like granule (6 beams, ~2500 segments each, 3 beam pairs 3.3 km apart, 90 m within a
pair) runs across the tutorial's box north of Greenland; a second granule crosses the
antimeridian at ~76 N. MODIS-like swaths are 1 km grids in polar-stereographic space with a
cloudy patch (low quality) and gaps. Matches come from a pykdtree nearest-neighbour search
here in the fixture, independent of core.science.kernel.
"""
from __future__ import annotations

import numpy as np
from pykdtree.kdtree import KDTree

from core.model import BEAMS, BeamSegments, Matches, SstSwath, Track

R_EARTH = 6_371_008.8
GROUND_SPEED = 6_900.0  # m/s, ICESat-2 ground track speed

SEED_ATL07 = "ATL07-01_20190622055317_12980301_004_01.h5"
SEED_L2P = "20190622100001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0.nc"
AM_ATL07 = "ATL07-01_20190623120000_13120301_004_01.h5"
AM_L2P = "20190623113000-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0.nc"


def destination(lat, lon, az_deg, dist_m):
    """Great-circle destination point (spherical)."""
    p1, l1, a, d = np.radians(lat), np.radians(lon), np.radians(az_deg), np.asarray(dist_m) / R_EARTH
    p2 = np.arcsin(np.sin(p1) * np.cos(d) + np.cos(p1) * np.sin(d) * np.cos(a))
    l2 = l1 + np.arctan2(np.sin(a) * np.sin(d) * np.cos(p1), np.cos(d) - np.sin(p1) * np.sin(p2))
    return np.degrees(p2), (np.degrees(l2) + 180.0) % 360.0 - 180.0


def haversine(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * R_EARTH * np.arcsin(np.sqrt(np.clip(h, 0, 1)))


def _xyz(lat, lon):
    p, l = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(p) * np.cos(l), np.cos(p) * np.sin(l), np.sin(p)], axis=-1) * R_EARTH


def granule_beams(granule, lat0, lon0, az, n, t0, *, step_m=60.0, seed=0, sc_orient=0):
    """Six beams of one ATL07-like granule; beam pairs offset across track."""
    rng = np.random.default_rng(seed)
    offsets = {"gt1": -3300.0, "gt2": 0.0, "gt3": 3300.0}
    strong_side = "l" if sc_orient == 0 else "r"
    beams = []
    for beam in BEAMS:
        pair, side = beam[:3], beam[3]
        cross = offsets[pair] + (-45.0 if side == "l" else 45.0)
        blat, blon = destination(lat0, lon0, az + 90.0, cross)
        nb = n + int(rng.integers(-200, 200))
        dist = np.cumsum(rng.uniform(0.5, 1.5, nb) * step_m)
        lat, lon = destination(blat, blon, az, dist)
        time = np.datetime64(t0, "ns") + (dist / GROUND_SPEED * 1e9).astype("timedelta64[ns]") \
            + rng.integers(0, 1000, nb).astype("timedelta64[ns]")  # sub-microsecond parts
        height = (0.3 + 0.2 * np.sin(dist / 5000.0) + rng.normal(0, 0.05, nb)).astype(np.float32)
        height[rng.random(nb) < 0.02] = np.nan
        beams.append(BeamSegments(
            granule=granule, beam=beam, strength="strong" if side == strong_side else "weak",
            time=time, lat=lat, lon=lon,
            height_segment_id=np.arange(100_000, 100_000 + nb, dtype=np.int64),
            height=height,
            quality=rng.choice(np.array([0, 1, 1, 1], np.int16), nb),
            segment_type=rng.integers(0, 10, nb).astype(np.int16),
        ))
    return beams


def polar_swath(granule, lat_c, lon_c, t_start, *, half_km=60, seed=1):
    """A 1 km L2P-like window centred on (lat_c, lon_c), north-polar stereographic grid."""
    rng = np.random.default_rng(seed)
    k = 2 * R_EARTH
    r_c = k * np.tan(np.pi / 4 - np.radians(lat_c) / 2)
    xc, yc = r_c * np.sin(np.radians(lon_c)), -r_c * np.cos(np.radians(lon_c))
    ax = np.arange(-half_km, half_km + 1) * 1000.0
    x, y = np.meshgrid(xc + ax, yc + ax)
    r = np.hypot(x, y)
    lat = 90.0 - 2 * np.degrees(np.arctan(r / k))
    lon = np.degrees(np.arctan2(x, -y))
    sst = (271.5 + 3.0 * (lat_c - lat) + 0.5 * np.sin(x / 20e3) + rng.normal(0, 0.05, x.shape)).astype(np.float32)
    ql = np.full(x.shape, 5, np.int8)
    cloud = np.hypot(x - xc - 25e3, y - yc + 10e3) < 20e3
    ql[cloud] = 1
    sst[cloud & (rng.random(x.shape) < 0.5)] = np.nan
    ql[rng.random(x.shape) < 0.05] = 3
    rows = np.arange(x.shape[0])[:, None]
    time = np.datetime64(t_start, "ns") + (rows * 0.1477e9).astype("timedelta64[ns]") + np.zeros(x.shape, "timedelta64[ns]")
    return SstSwath(granule=granule, lat=lat.astype(np.float32), lon=lon.astype(np.float32), sst=sst,
                    time=time, quality_level=ql, l2p_flags=np.where(cloud, 4, 0).astype(np.int16))


def nearest_matches(seg: BeamSegments, swaths: list[SstSwath], *, radius_m=1000.0, max_dt_s=3 * 3600.0,
                    min_quality_level=4) -> Matches:
    """Fixture-side matching (nearest valid pixel, nearest granule wins)."""
    m = Matches.empty(len(seg))
    best = np.full(len(seg), np.inf)
    for gi, sw in enumerate(swaths):
        ok = np.isfinite(sw.sst) & np.isfinite(sw.lat) & np.isfinite(sw.lon) & ~np.isnat(sw.time)
        if sw.quality_level is not None:
            ok &= sw.quality_level >= min_quality_level
        if not ok.any():
            continue
        tree = KDTree(_xyz(sw.lat[ok].astype(np.float64), sw.lon[ok].astype(np.float64)))
        chord, idx = tree.query(_xyz(seg.lat, seg.lon), k=1)
        d = haversine(seg.lat, seg.lon, sw.lat[ok][idx], sw.lon[ok][idx])
        dt = (sw.time[ok][idx] - seg.time) / np.timedelta64(1, "s")
        take = (d <= radius_m) & (np.abs(dt) <= max_dt_s) & (d < best)
        best[take] = d[take]
        m.sst[take] = sw.sst[ok][idx][take]
        m.distance_m[take] = d[take]
        m.dt_s[take] = dt[take]
        if sw.quality_level is not None:
            m.quality_level[take] = sw.quality_level[ok][idx][take]
        else:  # a later, nearer granule without quality levels replaces an earlier match
            m.quality_level[take] = -1
        if sw.l2p_flags is not None:
            m.l2p_flags[take] = sw.l2p_flags[ok][idx][take]
        m.granule_index[take] = gi
    return m


def seed_scene(n=2500):
    """Tutorial box (-62.8,81.7,-56.4,83), 2019-06-22: 6 beams, one swath over part of the track."""
    beams = granule_beams(SEED_ATL07, 81.75, -58.0, 350.0, n, "2019-06-22T05:53:17.123456789", seed=3)
    swath = polar_swath(SEED_L2P, 82.6, -59.5, "2019-06-22T10:00:01", half_km=50, seed=4)
    tracks = [Track(b, nearest_matches(b, [swath], max_dt_s=6 * 3600.0)) for b in beams]
    return tracks, [swath]


def antimeridian_scene(n=2000):
    beams = granule_beams(AM_ATL07, 75.5, 179.2, 60.0, n, "2019-06-23T12:00:00", seed=5, sc_orient=1)
    swath = polar_swath(AM_L2P, 76.0, 179.9, "2019-06-23T11:30:00", half_km=45, seed=6)
    tracks = [Track(b, nearest_matches(b, [swath])) for b in beams]
    return tracks, [swath]


def unmatched_scene(n=1500):
    beams = granule_beams(SEED_ATL07, 81.75, -58.0, 350.0, n, "2019-06-22T05:53:17", seed=7)
    return [Track(b, Matches.empty(len(b))) for b in beams], []


PARAMS = {
    "radius_m": 1000.0,
    "max_dt_s": 21600.0,
    "min_quality_level": 4,
    "atl07_collection": "C3564876395-NSIDC_CPRD",
    "sst_collection": "C1940473819-POCLOUD",
    "bbox": (-62.8, 81.7, -56.4, 83.0),
}


def every_field_pairing(tmp_path, *, ice_conc_v006: bool = True):
    """A VIIRS-labelled pairing with SSES, dt_analysis, flag tables from the files, the footprint
    radius, no quality screening and a yaw flip: a product with every optional field.
    ``ice_conc_v006``: stats/ice_conc_amsr2 and _ssmi (v006 on), else stats/ice_conc (v003-v005).
    Returns (pairing, params); build_dataset(pairing.tracks, pairing.source_info(), params)."""
    from core.science.atl07 import read_atl07
    from core.params import ColocationParams
    from core.science.pairing import pair_granule, read_local_windows
    from tests.science_fixtures import delta_time_for, synthetic_swath_file, track_geometry, write_atl07

    l2p, _ = synthetic_swath_file(tmp_path, 82.3, -60.0, rows=40, cols=30, sses=True, dt_analysis=True,
                                  global_attrs={"platform": "NOAA-20", "sensor": "VIIRS", "id": "VIIRS_N20-OSPO-L2P-v2.61"},
                                  sst_standard_name="sea_surface_subskin_temperature")
    lat, lon = track_geometry(82.3, -60.0, n=200, length_m=40_000, angle_deg=20)
    t0 = delta_time_for("2019-06-22T10:02:00")
    atl = write_atl07(tmp_path / "ATL07-01_20190622095000_13070301_006_01.h5",
                      {b: dict(lat=lat, lon=lon, delta_time=t0 + np.arange(200) * 0.5) for b in ("gt1l", "gt1r")},
                      sc_orient=[0, 1], sc_orient_time=[t0 - 10, t0 + 50], beam_type_attr=True,
                      ice_conc_v006=ice_conc_v006)
    science = ColocationParams(radius_m="footprint", max_dt_s=900.0, min_quality_level=None)
    granule = read_atl07(atl)
    pairing = pair_granule(granule, read_local_windows(granule, [(l2p, "VIIRS_N20-OSPO-L2P-v2.61")], science), science)
    return pairing, {**science.as_attrs(), "bbox": [-62.8, 81.7, -56.4, 83.0]}
