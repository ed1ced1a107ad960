"""Colocation kernel against an independent brute-force haversine oracle."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core.model import FLAGS_FILL, QL_FILL, Matches, SstSwath
from core.science.kernel import (
    FOOTPRINT,
    best_of,
    colocate,
    colocate_swaths,
    footprint_radius_m,
    lonlat_to_xyz,
    reachable_blocks,
)
from core.science.l2p import read_l2p
from tests.raw_oracle import read_l2p_raw
from tests.science_fixtures import (
    footprint_oracle,
    haversine,
    neighbourhood_oracle,
    oracle,
    rotate_to,
    swath_geometry,
    track_geometry,
)

T0 = np.datetime64("2019-06-22T10:00:00", "ns")
MAX_DT_ERROR_S = 1e-3  # times are exact to the ns here: a leap second (1 s) must show


def make_swath(lat0, lon0, rows=40, cols=30, seed=0, with_quality=True, fill_frac=0.2, dt_spread_s=600):
    rng = np.random.default_rng(seed)
    lat, lon = swath_geometry(lat0, lon0, rows, cols, rng=rng)
    sst = (271 + 10 * rng.random((rows, cols))).astype(np.float32)
    sst[rng.random((rows, cols)) < fill_frac] = np.nan
    time = T0 + (rng.random((rows, cols)) * dt_spread_s * 1e9).astype("timedelta64[ns]")
    time[rng.random((rows, cols)) < 0.03] = np.datetime64("NaT")
    lat[rng.random((rows, cols)) < 0.03] = np.nan
    ql = rng.integers(0, 6, (rows, cols)).astype(np.int8) if with_quality else None
    flags = rng.integers(0, 32, (rows, cols)).astype(np.int16)
    # some SSTs were present but outside valid_min/valid_max (the reader made them NaN)
    out_of_range = np.isnan(sst) & (rng.random((rows, cols)) < 0.5)
    return SstSwath(granule=f"g{seed}", lat=lat, lon=lon, sst=sst, time=time, quality_level=ql, l2p_flags=flags,
                    sst_out_of_range=out_of_range, ice_mask=4, rows=slice(7, 7 + rows), cols=slice(3, 3 + cols),
                    sses_bias=(sst - 271.0) / 10.0, sses_standard_deviation=np.full(sst.shape, 0.4, np.float32))


def make_track(lat0, lon0, n=300, seed=1, angle=30.0, length_m=40000.0):
    rng = np.random.default_rng(seed)
    lat, lon = track_geometry(lat0, lon0, n=n, length_m=length_m, angle_deg=angle, rng=rng)
    time = T0 + (rng.random(n) * 600e9).astype("timedelta64[ns]")
    return lat, lon, time


def assert_agrees(seg_lat, seg_lon, seg_time, swath, m: Matches, radius, max_dt, min_ql):
    idx, dist, dt = oracle(seg_lat, seg_lon, seg_time, swath, radius, max_dt, min_ql)
    np.testing.assert_array_equal(m.matched, idx >= 0)
    hit = idx >= 0
    assert np.all(np.abs(m.distance_m[hit] - dist[hit]) <= 1.0)
    assert np.all(np.abs(m.dt_s[hit] - dt[hit]) <= MAX_DT_ERROR_S)
    # same pixel (or an exactly equidistant one): identify the kernel's pixel by its values
    np.testing.assert_array_equal(m.sst[hit], swath.sst.ravel()[idx[hit]])
    if swath.quality_level is not None:
        np.testing.assert_array_equal(m.quality_level[hit], swath.quality_level.ravel()[idx[hit]])
        assert np.all(m.quality_level[hit] >= min_ql)
    np.testing.assert_array_equal(m.l2p_flags[hit], swath.l2p_flags.ravel()[idx[hit]])
    assert np.all(np.abs(m.dt_s[hit]) <= max_dt)
    assert np.all(m.distance_m[hit] <= radius + 1e-3)
    assert np.all(np.isnan(m.sst[~hit])) and np.all(m.granule_index[~hit] == -1)
    return hit.sum()


CENTRES = [
    pytest.param(82.3, -60.0, id="arctic-seed"),
    pytest.param(70.0, 180.0, id="antimeridian"),
    pytest.param(-66.0, -179.9, id="antimeridian-south"),
    pytest.param(89.9, 45.0, id="near-north-pole"),
    pytest.param(-89.95, 0.0, id="near-south-pole"),
    pytest.param(0.0, 10.0, id="equator"),
]


@pytest.mark.parametrize("lat0,lon0", CENTRES)
@pytest.mark.parametrize("radius,max_dt,min_ql", [(1000.0, 10800.0, 4), (1500.0, 120.0, 2), (600.0, 30.0, 0)])
def test_matches_oracle(lat0, lon0, radius, max_dt, min_ql):
    swath = make_swath(lat0, lon0, seed=int(abs(lat0 * 10 + lon0)))
    lat, lon, t = make_track(lat0, lon0)
    m = colocate(lat, lon, t, swath, radius_m=radius, max_dt_s=max_dt, min_quality_level=min_ql, granule_index=3)
    n = assert_agrees(lat, lon, t, swath, m, radius, max_dt, min_ql)
    assert n > 0, "the fixture must produce matches"
    assert np.all(m.granule_index[m.matched] == 3)


def test_track_crosses_antimeridian_and_matches_both_sides():
    swath = make_swath(75.0, 180.0, rows=20, cols=60, fill_frac=0.0)
    lat, lon, t = make_track(75.0, 180.0, angle=90.0)  # due east across 180°
    assert (lon > 0).any() and (lon < 0).any()
    m = colocate(lat, lon, t, swath, radius_m=1000, max_dt_s=3600, min_quality_level=0)
    assert_agrees(lat, lon, t, swath, m, 1000, 3600, 0)
    assert m.matched[lon > 0].any() and m.matched[lon < 0].any()


def test_track_over_the_pole():
    swath = make_swath(90.0, 0.0, rows=50, cols=50, fill_frac=0.0, seed=4)
    lat, lon, t = make_track(90.0, 0.0, n=400, angle=10.0)
    assert lat.max() > 89.99
    m = colocate(lat, lon, t, swath, radius_m=1000, max_dt_s=3600, min_quality_level=0)
    assert_agrees(lat, lon, t, swath, m, 1000, 3600, 0)
    assert m.matched.mean() > 0.9


def test_invalid_and_low_quality_nearest_pixels_never_win():
    # one segment; three pixels due north at 100 m (fill SST), 200 m (quality 2), 700 m (valid)
    plat, plon = rotate_to(80.0, -60.0, np.array([100.0, 200.0, 700.0, 900.0]), np.zeros(4))
    sw = SstSwath(granule="g", lat=plat[None, :], lon=plon[None, :],
                  sst=np.array([[np.nan, 275.0, 276.0, 277.0]], np.float32),
                  time=np.full((1, 4), T0), quality_level=np.array([[5, 2, 4, 5]], np.int8),
                  l2p_flags=np.zeros((1, 4), np.int16))
    m = colocate([80.0], [-60.0], [T0], sw, radius_m=1000, max_dt_s=60, min_quality_level=4)
    assert m.sst[0] == np.float32(276.0) and m.quality_level[0] == 4
    assert abs(m.distance_m[0] - 700.0) < 0.5
    # pyresample's resample_nearest (the tutorial's call) returns the fill of the nearest pixel
    from pyresample import geometry, kd_tree
    src = geometry.SwathDefinition(lons=plon[None, :], lats=plat[None, :])
    dst = geometry.SwathDefinition(lons=np.array([-60.0]), lats=np.array([80.0]))
    tut = kd_tree.resample_nearest(src, sw.sst, dst, radius_of_influence=1000, fill_value=None)
    assert np.ma.is_masked(tut[0]) or not np.isfinite(tut[0])


def test_dt_bound_widens_search_past_many_near_pixels():
    # 40 near pixels just outside Δt, one farther pixel inside it: needs k > 1 and widening
    rng = np.random.default_rng(7)
    north = np.r_[rng.uniform(10, 300, 40), 800.0]
    plat, plon = rotate_to(-70.0, 120.0, north, rng.uniform(-50, 50, 41))
    time = np.full(41, T0 + np.timedelta64(601, "s"))
    time[-1] = T0 - np.timedelta64(599, "s")
    sw = SstSwath(granule="g", lat=plat[None, :], lon=plon[None, :], sst=np.full((1, 41), 280.0, np.float32),
                  time=time[None, :], quality_level=np.full((1, 41), 5, np.int8), l2p_flags=np.zeros((1, 41), np.int16))
    m = colocate([-70.0], [120.0], [T0], sw, radius_m=1000, max_dt_s=600, min_quality_level=4)
    assert m.matched[0] and m.dt_s[0] == pytest.approx(-599.0)
    m2 = colocate([-70.0], [120.0], [T0], sw, radius_m=1000, max_dt_s=598, min_quality_level=4)
    assert not m2.matched[0]


def test_no_overlap_gives_zero_matches_not_an_error():
    swath = make_swath(82.0, -60.0)
    lat, lon, t = make_track(-40.0, 100.0)
    m = colocate(lat, lon, t, swath, radius_m=1000, max_dt_s=10800, min_quality_level=4)
    assert len(m) == len(lat) and not m.matched.any()
    assert np.all(m.quality_level == QL_FILL) and np.all(m.l2p_flags == FLAGS_FILL)
    empty = colocate([], [], np.array([], "datetime64[ns]"), swath, radius_m=1000, max_dt_s=1, min_quality_level=4)
    assert len(empty) == 0


def test_time_outside_window_gives_zero_matches():
    swath = make_swath(82.0, -60.0)
    lat, lon, t = make_track(82.0, -60.0)
    m = colocate(lat, lon, t + np.timedelta64(5, "h"), swath, radius_m=1000, max_dt_s=10800, min_quality_level=0)
    assert not m.matched.any()


def test_swath_without_quality_level_filters_on_validity_only():
    swath = make_swath(82.0, -60.0, with_quality=False, seed=11)
    lat, lon, t = make_track(82.0, -60.0)
    m = colocate(lat, lon, t, swath, radius_m=1000, max_dt_s=10800, min_quality_level=4)
    assert assert_agrees(lat, lon, t, swath, m, 1000, 10800, 4) > 0
    assert np.all(m.quality_level[m.matched] == QL_FILL)


def test_best_of_nearest_wins_then_smaller_dt():
    a, b = Matches.empty(4), Matches.empty(4)
    a.distance_m[:] = [100, 200, 300, np.nan]
    b.distance_m[:] = [150, 150, 300, 50]
    a.dt_s[:] = [10, 10, 100, np.nan]
    b.dt_s[:] = [1, 1, -50, 5]
    a.sst[:] = 1
    b.sst[:] = 2
    a.granule_index[:] = [0, 0, 0, -1]
    b.granule_index[:] = [1, 1, 1, 1]
    m = best_of(a, b)
    np.testing.assert_array_equal(m.granule_index, [0, 1, 1, 1])
    np.testing.assert_array_equal(m.sst, [1, 2, 2, 2])
    assert best_of(b, a).granule_index.tolist() == [0, 1, 1, 1]
    none = best_of(Matches.empty(4), Matches.empty(4))
    assert not none.matched.any()


def test_several_granules_match_the_merged_oracle():
    lat, lon, t = make_track(82.3, -60.0, n=300)
    s1 = make_swath(82.3, -60.0, seed=21)
    s2 = make_swath(82.31, -60.02, seed=22)
    m = colocate_swaths(lat, lon, t, [s1, None, s2], radius_m=1000, max_dt_s=10800, min_quality_level=3)
    i1, d1, _ = oracle(lat, lon, t, s1, 1000, 10800, 3)
    i2, d2, _ = oracle(lat, lon, t, s2, 1000, 10800, 3)
    d1 = np.where(i1 >= 0, d1, np.inf)
    d2 = np.where(i2 >= 0, d2, np.inf)
    expect = np.where(np.isinf(np.minimum(d1, d2)), -1, np.where(d2 < d1, 2, 0))
    np.testing.assert_array_equal(m.granule_index, expect)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lat0=st.floats(-89.99, 89.99),
    lon0=st.floats(-180.0, 180.0),
    seed=st.integers(0, 10_000),
    radius=st.floats(300.0, 3000.0),
    max_dt=st.floats(1.0, 900.0),
    min_ql=st.integers(0, 5),
)
def test_property_agrees_with_oracle(lat0, lon0, seed, radius, max_dt, min_ql):
    swath = make_swath(lat0, lon0, rows=12, cols=10, seed=seed)
    lat, lon, t = make_track(lat0, lon0, n=40, seed=seed + 1, angle=seed % 180, length_m=15000)
    m = colocate(lat, lon, t, swath, radius_m=radius, max_dt_s=max_dt, min_quality_level=min_ql)
    assert_agrees(lat, lon, t, swath, m, radius, max_dt, min_ql)


@pytest.mark.parametrize("name", ["SS_MODIS_A-JPL-L2P-v2014.0_cut.nc", "SS_MODIS_A-JPL-L2P-v2014.0_uncut.nc"])
def test_real_subset_agrees_with_oracle(realdata, name):
    path = realdata / "l2p" / name
    full = read_l2p_raw(path)  # the oracle's pixels, decoded by hand from the raw file
    rng = np.random.default_rng(3)
    valid = np.flatnonzero(np.isfinite(full.sst.ravel()))
    pick = rng.choice(valid, 150, replace=False)
    # segments scattered up to ~1.5 km from real pixels, times around the pixels' times
    north, east = rng.normal(0, 700, 150), rng.normal(0, 700, 150)
    lat = full.lat.ravel()[pick] + np.degrees(north / 6371008.8)
    lon = full.lon.ravel()[pick] + np.degrees(east / 6371008.8) / np.cos(np.radians(full.lat.ravel()[pick]))
    t = full.time.ravel()[pick] + (rng.normal(0, 90, 150) * 1e9).astype("timedelta64[ns]")
    swath = read_l2p(path, lat=lat, lon=lon, radius_m=1000)
    assert swath is not None and swath.shape[0] * swath.shape[1] < full.lat.size
    m = colocate(lat, lon, t, swath, radius_m=1000, max_dt_s=120, min_quality_level=4)
    # the oracle runs over the whole granule, the kernel over the window: same answers
    idx, dist, dt = oracle(lat, lon, t, full, 1000, 120, 4)
    np.testing.assert_array_equal(m.matched, idx >= 0)
    hit = idx >= 0
    assert hit.sum() > 50
    assert np.all(np.abs(m.distance_m[hit] - dist[hit]) <= 1.0)
    assert np.all(np.abs(m.dt_s[hit] - dt[hit]) <= MAX_DT_ERROR_S)
    np.testing.assert_allclose(m.sst[hit], full.sst.ravel()[idx[hit]], rtol=0, atol=1e-3)
    assert np.all(np.abs(haversine(lat[hit], lon[hit], full.lat.ravel()[idx[hit]], full.lon.ravel()[idx[hit]])
                         - m.distance_m[hit]) <= 1.0)


def assert_neighbourhood_agrees(lat, lon, t, swath, m: Matches, radius, max_dt, min_ql, exclude_ice=False):
    """Counts, median, std and the radius used, against brute force over every pixel."""
    want = neighbourhood_oracle(lat, lon, t, swath, radius, max_dt, min_ql, ice_mask=swath.ice_mask,
                                out_of_range=swath.sst_out_of_range, exclude_ice=exclude_ice)
    for name in Matches.COUNTS:
        np.testing.assert_array_equal(getattr(m, name), want[name], err_msg=name)
    np.testing.assert_array_equal(m.matched, want["n_valid"] > 0)  # a match iff a valid pixel was near
    np.testing.assert_allclose(m.sst_median, want["median"], atol=1e-4)
    np.testing.assert_allclose(m.sst_std, want["std"], atol=1e-4)
    np.testing.assert_allclose(m.radius_m, want["radius"], rtol=1e-5)
    return want


@pytest.mark.parametrize("lat0,lon0", CENTRES[:2])
def test_exclude_ice_makes_ice_flagged_pixels_ineligible(lat0, lon0):
    """exclude_ice: no match is an ice-flagged pixel, the excluded ones are counted, and the rest
    (counts, nearest, median, std with NaN below two pixels) agrees with brute force."""
    swath = make_swath(lat0, lon0, seed=int(abs(lat0 * 7 + lon0)) + 5)
    lat, lon, t = make_track(lat0, lon0)
    kept = colocate(lat, lon, t, swath, radius_m=1500.0, max_dt_s=10800.0, min_quality_level=3)
    m = colocate(lat, lon, t, swath, radius_m=1500.0, max_dt_s=10800.0, min_quality_level=3, exclude_ice=True)
    want = assert_neighbourhood_agrees(lat, lon, t, swath, m, 1500.0, 10800.0, 3, exclude_ice=True)
    assert (want["n_excluded_ice"] > 0).any() and (kept.ice[kept.matched] == 1).any()
    assert not (m.ice[m.matched] == 1).any()
    np.testing.assert_array_equal(m.n_valid + m.n_excluded_ice, kept.n_valid)
    assert np.isnan(m.sst_std[m.n_valid == 1]).all() and (m.n_valid == 1).any()


@pytest.mark.parametrize("max_dt", [300.0, 10800.0])  # 3 h: every fill pixel is within Δt of every segment
@pytest.mark.parametrize("lat0,lon0", CENTRES)
def test_neighbourhood_counts_and_median_match_brute_force(lat0, lon0, max_dt):
    swath = make_swath(lat0, lon0, seed=int(abs(lat0 * 7 + lon0)) + 5)
    lat, lon, t = make_track(lat0, lon0)
    m = colocate(lat, lon, t, swath, radius_m=1500.0, max_dt_s=max_dt, min_quality_level=3)
    want = assert_neighbourhood_agrees(lat, lon, t, swath, m, 1500.0, max_dt, 3)
    assert (want["n_valid"] > 1).any() and (want["n_rejected_quality"] > 0).any()
    assert (want["n_out_of_range"] > 0).any() and (want["n_ice"] > 0).any()
    # the matched pixel's own values and position in the full swath
    idx, _, _ = oracle(lat, lon, t, swath, 1500.0, max_dt, 3)
    hit = idx >= 0
    r, c = np.unravel_index(idx[hit], swath.shape)
    np.testing.assert_array_equal(m.pixel_nj[hit], r + 7)
    np.testing.assert_array_equal(m.pixel_ni[hit], c + 3)
    np.testing.assert_array_equal(m.sses_bias[hit], swath.sses_bias.ravel()[idx[hit]])
    np.testing.assert_array_equal(m.ice[hit], (swath.l2p_flags.ravel()[idx[hit]] & 4) != 0)
    assert (m.pixel_nj[~hit] == -1).all() and (m.ice[~hit] == -1).all() and np.isnan(m.sses_bias[~hit]).all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lat0=st.floats(-89.9, 89.9), lon0=st.floats(-180.0, 180.0), seed=st.integers(0, 10_000),
       radius=st.floats(300.0, 3000.0), max_dt=st.floats(1.0, 900.0), min_ql=st.integers(0, 5))
def test_property_neighbourhood_agrees_with_brute_force(lat0, lon0, seed, radius, max_dt, min_ql):
    swath = make_swath(lat0, lon0, rows=12, cols=10, seed=seed)
    lat, lon, t = make_track(lat0, lon0, n=40, seed=seed + 1, angle=seed % 180, length_m=15000)
    m = colocate(lat, lon, t, swath, radius_m=radius, max_dt_s=max_dt, min_quality_level=min_ql)
    assert_neighbourhood_agrees(lat, lon, t, swath, m, radius, max_dt, min_ql)


def test_footprint_radius_follows_the_swath_grid():
    # pixels 1 km along track, widening from 1 km at nadir to 4.8 km across-scan at the edges
    cols = 41
    across = 1000.0 + 3800.0 * (np.abs(np.arange(cols) - 20) / 20.0) ** 2
    east = np.cumsum(across) - np.cumsum(across)[20]
    north = np.arange(30)[:, None] * 1000.0 + np.zeros(cols)
    lat, lon = rotate_to(82.0, -60.0, north, np.broadcast_to(east, north.shape))
    fp = footprint_radius_m(lat, lon)
    np.testing.assert_allclose(fp, footprint_oracle(lat, lon), rtol=1e-9)
    assert fp[15, 20] == pytest.approx(0.5 * np.hypot(1000.0, 1000.0), rel=0.02)
    assert fp[15, 0] > 2000.0  # the scan edge: a 1000 m radius would miss pixels a segment lies in


@pytest.mark.parametrize("lat0,lon0", CENTRES[:4])
def test_footprint_mode_matches_brute_force(lat0, lon0):
    swath = make_swath(lat0, lon0, seed=17, fill_frac=0.4)
    lat, lon, t = make_track(lat0, lon0)
    m = colocate(lat, lon, t, swath, radius_m=FOOTPRINT, max_dt_s=600.0, min_quality_level=2)
    want = assert_neighbourhood_agrees(lat, lon, t, swath, m, "footprint", 600.0, 2)
    assert np.isfinite(want["radius"]).any() and m.matched.any()
    for i in np.flatnonzero(np.isfinite(want["radius"]))[::7]:  # the nearest valid pixel inside its own radius
        idx, dist, _ = oracle(lat[i:i + 1], lon[i:i + 1], t[i:i + 1], swath, want["radius"][i], 600.0, 2)
        assert m.matched[i] == (idx[0] >= 0)
        if idx[0] >= 0:
            assert abs(m.distance_m[i] - dist[0]) <= 1.0 and m.distance_m[i] <= m.radius_m[i] + 1e-3


def test_best_of_sums_counts_where_nothing_matched():
    a, b = Matches.empty(2), Matches.empty(2)
    a.n_rejected_quality[:] = [3, 1]
    b.n_ice[:] = [2, 5]
    b.granule_index[1], b.distance_m[1], b.n_valid[1] = 1, 10.0, 1
    m = best_of(a, b)
    assert m.n_rejected_quality.tolist() == [3, 0] and m.n_ice.tolist() == [2, 5]
    assert m.n_valid.tolist() == [0, 1]


def test_exact_tie_in_distance_goes_to_the_smaller_dt():
    # MODIS bow-tie overlap: two pixels at one location, both valid; the one nearer in time wins
    plat, plon = rotate_to(81.0, -58.0, np.array([400.0, 400.0, 900.0]), np.array([30.0, 30.0, 0.0]))
    for dts in ([-300, 100, 5], [100, -300, 5]):
        time = T0 + np.array(dts, "timedelta64[s]").astype("timedelta64[ns]")
        sw = SstSwath(granule="g", lat=plat[None, :], lon=plon[None, :],
                      sst=np.array([[271.0, 272.0, 273.0]], np.float32), time=time[None, :],
                      quality_level=np.full((1, 3), 5, np.int8), l2p_flags=np.zeros((1, 3), np.int16))
        m = colocate([81.0], [-58.0], [T0], sw, radius_m=1000, max_dt_s=600, min_quality_level=4)
        assert m.dt_s[0] == pytest.approx(100.0) and m.n_valid[0] == 3
        idx, _, dt = oracle([81.0], [-58.0], np.array([T0]), sw, 1000, 600, 4)
        assert dt[0] == pytest.approx(100.0) and m.sst[0] == sw.sst.ravel()[idx[0]]


@pytest.mark.parametrize("radius", [1000.0, FOOTPRINT])
@pytest.mark.parametrize("lat0,lon0", CENTRES[:4])
def test_large_swath_shuffled_segments_match_brute_force(lat0, lon0, radius):
    # a swath of many grid blocks (some without any location) of which the track reaches a few,
    # segments in random order (no runs of neighbours) and some far off the swath
    swath = make_swath(lat0, lon0, rows=90, cols=70, seed=31, fill_frac=0.3)
    swath.lat[40:60, 0:30] = np.nan
    lat, lon, t = make_track(lat0, lon0, n=400, length_m=30000.0, angle=75.0)
    far_lat, far_lon = rotate_to(lat0, lon0, np.full(20, 200e3), np.linspace(-5e3, 5e3, 20))
    lat, lon, t = np.r_[lat, far_lat], np.r_[lon, far_lon], np.r_[t, t[:20]]
    order = np.random.default_rng(5).permutation(lat.size)
    lat, lon, t = lat[order], lon[order], t[order]
    m = colocate(lat, lon, t, swath, radius_m=radius, max_dt_s=400.0, min_quality_level=3)
    want = assert_neighbourhood_agrees(lat, lon, t, swath, m, "footprint" if radius == FOOTPRINT else radius,
                                       400.0, 3)
    assert (want["n_valid"] > 0).sum() > 50 and (want["n_outside_dt"] > 0).any()
    if radius != FOOTPRINT:
        assert_agrees(lat, lon, t, swath, m, radius, 400.0, 3)
    else:
        hit = m.matched
        assert np.all(m.distance_m[hit] <= m.radius_m[hit] + 1e-3)


@pytest.mark.parametrize("lat0,lon0", CENTRES)
def test_reachable_blocks_keep_every_pixel_within_reach(lat0, lon0):
    # brute force over every pixel and centre: pruning by blocks may keep too much, never too little
    rng = np.random.default_rng(int(abs(lat0 + lon0)))
    lat, lon = swath_geometry(lat0, lon0, rows=75, cols=53, rng=rng)  # 5 x 4 blocks, one not full
    lat[rng.random(lat.shape) < 0.1] = np.nan
    # a cluster inside, and points just off the swath's corners (where a block's box is loosest)
    north = np.r_[rng.uniform(12e3, 28e3, 25), -39.2e3, -39.2e3, 38.2e3, 38.2e3]
    east = np.r_[rng.uniform(2e3, 18e3, 25), -28.2e3, 27.2e3, -28.2e3, 27.2e3]
    c_lat, c_lon = rotate_to(lat0, lon0, north, east)
    centres = lonlat_to_xyz(c_lon, c_lat)
    reach = 3000.0
    keep = reachable_blocks(lat, lon, centres, reach)
    pix = lonlat_to_xyz(lon, lat).reshape(lat.shape + (3,))
    d = np.sqrt(((pix[:, :, None, :] - centres[None, None]) ** 2).sum(axis=-1)).min(axis=-1)
    within = np.nan_to_num(d, nan=np.inf) <= reach
    assert within.any() and not keep[within & ~keep].any()
    assert np.all(keep[within])
    assert keep.mean() < 0.6, "blocks far from every centre are dropped"
