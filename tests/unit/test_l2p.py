"""GHRSST L2P reader: real MODIS subsets, PO.DAAC-style byte-array attributes, windows, errors."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import InputError
from core.science.kernel import haversine_m
from core.science.l2p import find_window, normalise_attr, open_l2p, read_l2p
from tests.science_fixtures import (
    REAL_L2P_SUBSETS,
    CountingReader,
    synthetic_swath_file,
    write_atl07,
    write_l2p,
    write_like_real_granule,
)


@pytest.mark.parametrize("name", REAL_L2P_SUBSETS)
def test_real_modis_subset_reads_without_quality_level(realdata, name):
    path = realdata / "l2p" / name
    with open_l2p(path) as g:
        assert g.quality_var is None and g.dtime_var == "sst_dtime"
        assert any("quality_level" in w for w in g.warnings)
        sw = g.window(slice(None), slice(None))
    assert sw.quality_level is None and sw.granule == name
    assert sw.attrs["title"] == "MODIS Aqua L2P SST"
    assert not (sw.lat == -999).any() and not (sw.lon == -999).any()
    assert np.isnan(sw.lat).any()  # the -999 fill became invalid, not a location
    ok = np.isfinite(sw.sst)
    assert ok.sum() > 1000
    assert 268.0 <= np.nanmin(sw.sst) and np.nanmax(sw.sst) <= 323.2  # valid range in kelvin
    # per-pixel time = time + sst_dtime, independently from h5py raw values
    import h5py
    with h5py.File(path) as h:
        ref = np.datetime64("1981-01-01T00:00:00", "ns") + np.timedelta64(int(h["time"][0]), "s")
        raw = h["sst_dtime"][0]
        raw_sst = h["sea_surface_temperature"][0]
    expect = ref + raw.astype(np.int64).astype("timedelta64[s]")
    good = raw != -32768
    np.testing.assert_array_equal(sw.time[good], expect[good])
    assert np.isnat(sw.time[~good]).all()
    assert str(ref) == "2019-08-05T06:55:01.000000000"
    sst_expect = raw_sst * np.float32(0.005) + np.float32(273.15)
    np.testing.assert_allclose(sw.sst[ok], sst_expect[ok], atol=1e-3)


def test_cut_and_uncut_subsets_agree(realdata):
    with open_l2p(realdata / "l2p" / REAL_L2P_SUBSETS[0]) as cut, \
            open_l2p(realdata / "l2p" / REAL_L2P_SUBSETS[1]) as uncut:
        a = cut.window(slice(None), slice(None))
        b = uncut.window(slice(None), slice(None))
    # the cut file is a column subset of the uncut one: find the offset from the coordinates
    col = next(c for c in range(b.shape[1] - a.shape[1] + 1)
               if np.array_equal(a.lat, b.lat[:, c:c + a.shape[1]], equal_nan=True))
    np.testing.assert_array_equal(a.sst, b.sst[:, col:col + a.shape[1]])


def test_byte_array_attributes_are_normalised(tmp_path):
    path, truth = synthetic_swath_file(tmp_path, 82.3, -60.0, dtime_scale=0.25)
    # stored the PO.DAAC way (older h5netcdf/xarray handed these through and broke decoding)
    import h5py
    with h5py.File(path) as h:
        assert h["time"].attrs["units"].shape == (1,) and h["time"].attrs["units"].dtype.kind == "S"
        assert h["sea_surface_temperature"].attrs["scale_factor"].shape == (1,)
    with open_l2p(path) as g:
        assert g.ds.attrs["title"] == "Synthetic L2P SST"
        assert g.ds["time"].attrs["units"] == "seconds since 1981-01-01 00:00:00"
        assert g.ds.attrs["file_quality_level"] == 3
        sw = g.window(slice(None), slice(None))
    assert sw.attrs["Conventions"] == "CF-1.7, ACDD-1.3"
    ok = np.isfinite(truth["sst"])
    np.testing.assert_allclose(sw.sst[ok], truth["sst"][ok], atol=0.003)
    assert np.isnan(sw.sst[~ok]).all()
    ref = np.datetime64("2019-06-22T10:00:01", "ns")
    dtime = np.round(truth["dtime"] / 0.25) * 0.25  # own scale factor honoured
    np.testing.assert_array_equal(sw.time, ref + (dtime * 1e9).astype("timedelta64[ns]"))
    np.testing.assert_array_equal(sw.quality_level, truth["quality"])
    np.testing.assert_array_equal(sw.l2p_flags, truth["flags"])
    assert np.isnan(sw.lat[0, 0]) and np.isnan(sw.lon[0, 0])


def test_normalise_attr_shapes():
    assert normalise_attr(np.array([b"abc"])) == "abc"
    assert normalise_attr(np.array([0.005], np.float32)) == pytest.approx(0.005)
    assert normalise_attr(np.bytes_(b"x")) == "x"
    assert normalise_attr(np.array([b"a", b"b"])) == ["a", "b"]
    np.testing.assert_array_equal(normalise_attr(np.array([1, 2, 3])), [1, 2, 3])


def test_file_object_source_and_name(tmp_path):
    path, truth = synthetic_swath_file(tmp_path, -65.0, 170.0)
    with open(path, "rb") as fh:
        sw = read_l2p(fh, lat=truth["lat"][5:7, 5], lon=truth["lon"][5:7, 5], radius_m=1000, name="given.nc")
    assert sw is not None and sw.granule == "given.nc"
    with open(path, "rb") as fh:
        with open_l2p(fh) as g:
            assert g.name == path.name


def test_window_contains_every_pixel_within_radius(tmp_path):
    path, truth = synthetic_swath_file(tmp_path, 70.0, 179.9, rows=60, cols=40)
    qlat, qlon = truth["lat"][30:33, 20], truth["lon"][30:33, 20]
    win = find_window(truth["lat"], truth["lon"], qlat, qlon, 3000.0, margin_pixels=0)
    assert win is not None
    rows, cols = win
    d = np.min([haversine_m(lo, la, truth["lon"], truth["lat"]) for la, lo in zip(qlat, qlon)], axis=0)
    within = np.argwhere(np.nan_to_num(d, nan=np.inf) <= 3000.0)
    assert within[:, 0].min() >= rows.start and within[:, 0].max() < rows.stop
    assert within[:, 1].min() >= cols.start and within[:, 1].max() < cols.stop
    assert (rows.stop - rows.start) < 20 and (cols.stop - cols.start) < 20
    assert find_window(truth["lat"], truth["lon"], [10.0], [10.0], 1000.0) is None


@pytest.mark.parametrize("lat0,lon0", [(82.3, -60.0), (70.0, 180.0), (89.8, 10.0), (-66.0, -179.9)])
def test_window_on_a_many_block_grid_holds_every_pixel_within_radius(lat0, lon0):
    # a grid of many 16 x 16 blocks, float32 like a decoded file, with a gap of missing
    # locations; query points near one corner: the window is small and misses no close pixel
    from tests.science_fixtures import swath_geometry, track_geometry

    rng = np.random.default_rng(2)
    lat, lon = (a.astype(np.float32) for a in swath_geometry(lat0, lon0, rows=170, cols=130, rng=rng))
    lat[60:70, :] = np.nan
    qlat, qlon = track_geometry(float(lat[40, 30]), float(lon[40, 30]), n=50, length_m=20000.0, angle_deg=20.0,
                                rng=rng)
    rows, cols = find_window(lat, lon, qlat, qlon, 1500.0, margin_pixels=0)
    d = np.min([haversine_m(lo, la, lon, lat) for la, lo in zip(qlat, qlon)], axis=0)
    within = np.argwhere(np.nan_to_num(d, nan=np.inf) <= 1500.0)
    assert within.size
    assert within[:, 0].min() >= rows.start and within[:, 0].max() < rows.stop
    assert within[:, 1].min() >= cols.start and within[:, 1].max() < cols.stop
    assert (rows.stop - rows.start) < 40 and (cols.stop - cols.start) < 40


def test_window_reads_a_fraction_of_the_bytes(tmp_path):
    path, truth = synthetic_swath_file(tmp_path, 82.3, -60.0, rows=400, cols=300, chunks=(50, 50))
    full = CountingReader(path)
    with open_l2p(full) as g:
        geo_bytes = full.bytes_read  # lat/lon are read whole
        g.window(slice(None), slice(None))
    full_window = full.bytes_read - geo_bytes
    part = CountingReader(path)
    with open_l2p(part) as g:
        geo_part = part.bytes_read
        sw = g.window(*find_window(g.lat, g.lon, truth["lat"][200:203, 150], truth["lon"][200:203, 150], 1000))
    assert sw.shape[0] < 20
    assert part.bytes_read - geo_part < 0.15 * full_window, (part.bytes_read - geo_part, full_window)
    # the noise variables (chlorophyll-like) are never read, even for the whole window
    assert full.bytes_read < 0.75 * path.stat().st_size


def test_no_overlap_returns_none(tmp_path):
    path, _ = synthetic_swath_file(tmp_path, 82.3, -60.0)
    assert read_l2p(path, lat=[-40.0], lon=[100.0], radius_m=1000) is None


def test_other_product_layout_is_tolerated(tmp_path):
    # VIIRS/AVHRR-like: latitude/longitude names, other dimension names, no time dimension
    rng = np.random.default_rng(2)
    lat = 60 + rng.random((20, 15))
    lon = -30 + rng.random((20, 15))
    sst = 280 + rng.random((20, 15))
    path = write_l2p(tmp_path / "viirs_like.nc", lat, lon, sst, np.zeros((20, 15)), lat_name="latitude",
                     lon_name="longitude", dims=("ny", "nx"), with_time_dim=False, quality=np.full((20, 15), 5),
                     byte_attrs=False)
    with open_l2p(path) as g:
        sw = g.window(slice(2, 5), slice(3, 9))
    assert sw.shape == (3, 6)
    np.testing.assert_allclose(sw.sst, sst[2:5, 3:9], atol=0.003)
    assert (sw.quality_level == 5).all()


def test_not_l2p_raises_input_error(tmp_path, realdata):
    text = tmp_path / "notes.nc"
    text.write_text("not a netCDF file")
    with pytest.raises(InputError, match="not a netCDF4/HDF5"):
        open_l2p(text)
    with pytest.raises(InputError, match="not found"):
        open_l2p(tmp_path / "missing.nc")
    atl = write_atl07(tmp_path / "atl07.h5", {"gt1l": {"lat": [80.0], "lon": [0.0], "delta_time": [1.0]}})
    with pytest.raises(InputError, match="not a GHRSST L2P"):
        open_l2p(atl)
    with pytest.raises(InputError, match="not a GHRSST L2P"):
        open_l2p(realdata / "atl07" / "processed_ATL07-01_20190222003738_08490201_003_02.h5")


def test_normalise_attrs_on_variables_coordinates_and_globals():
    import xarray as xr

    from core.science.l2p import normalise_attrs

    ds = xr.Dataset(
        {"sst": (("time", "nj"), np.zeros((1, 2), np.int16), {"units": np.array([b"kelvin"]),
                                                              "scale_factor": np.array([0.005])})},
        coords={"time": ("time", [1], {"units": np.array([b"seconds since 1981-01-01 00:00:00"])})},
        attrs={"title": np.array([b"MODIS"]), "file_quality_level": np.array([3])},
    )
    out = normalise_attrs(ds)
    assert out["sst"].attrs == {"units": "kelvin", "scale_factor": 0.005}
    assert out["time"].attrs["units"] == "seconds since 1981-01-01 00:00:00"
    assert out.attrs == {"title": "MODIS", "file_quality_level": 3}
    assert isinstance(ds.attrs["title"], np.ndarray)  # the input is left alone
    assert xr.decode_cf(out)["time"].values[0] == np.datetime64("1981-01-01T00:00:01")


def test_layout_of_the_full_podaac_granule(tmp_path, realdata):
    rng = np.random.default_rng(9)
    zarr_json = realdata / "l2p" / "20200911000001-JPL-L2P_GHRSST-SSTskin-MODIS_A-N-v02.0-fv01.0.zarr.json"
    path = tmp_path / "20200911000001-JPL-L2P_GHRSST-SSTskin-MODIS_A-N-v02.0-fv01.0.nc"
    raw = write_like_real_granule(path, zarr_json, 40, 30, rng)
    with open_l2p(path) as g:
        assert (g.sst_var, g.dtime_var, g.quality_var, g.flags_var) == (
            "sea_surface_temperature", "sst_dtime", "quality_level", "l2p_flags")
        assert g.warnings == []
        sw = g.window(slice(None), slice(None))
    assert sw.attrs["title"] == "MODIS Aqua L2P SST" and sw.attrs["file_quality_level"] == 3
    assert np.isnan(sw.lat[:2, :3]).all() and np.isfinite(sw.lat[2:]).all()
    r = raw["sea_surface_temperature"][0]
    ok = r != -32767
    np.testing.assert_allclose(sw.sst[ok], r[ok] * 0.005 + 273.15, atol=2e-3)
    assert np.isnan(sw.sst[~ok]).all()
    q = raw["quality_level"][0]
    np.testing.assert_array_equal(sw.quality_level, np.where(q == -128, -1, q))
    np.testing.assert_array_equal(sw.l2p_flags, raw["l2p_flags"][0])
    d = raw["sst_dtime"][0]
    ref = np.datetime64("2020-09-11T00:00:01", "ns")
    np.testing.assert_array_equal(sw.time[d != -32768], ref + d[d != -32768].astype("timedelta64[s]"))
    # SSES and dt_analysis decoded by hand from the raw bytes (scale/offset of the real granule)
    for name, scale, offset in (("sses_bias", 0.1574803144, 0.0), ("sses_standard_deviation", 0.07874015719, 10.0),
                                ("dt_analysis", 0.1000000015, 0.0)):
        b = raw[name][0].astype(np.float64)
        ok = b != -128
        np.testing.assert_allclose(getattr(sw, name)[ok], b[ok] * scale + offset, atol=1e-4, err_msg=name)
        assert np.isnan(getattr(sw, name)[~ok]).all()
    # SST present but outside valid_min/valid_max (-1000..10000 raw = 268.15..323.15 K) is flagged
    r = raw["sea_surface_temperature"][0]
    np.testing.assert_array_equal(sw.sst_out_of_range, (r != -32767) & ((r < -1000) | (r > 10000)))
    # the ice bit and the flag tables come from the file
    assert sw.ice_mask == 4
    assert sw.variable_attrs["l2p_flags"]["flag_meanings"] == "microwave land ice lake river"
    assert sw.variable_attrs["quality_level"]["flag_meanings"].startswith("no_data bad_data")
    assert sw.attrs["platform"] == "Aqua" and sw.attrs["sensor"] == "MODIS"


@pytest.mark.parametrize("units,ok", [("seconds", True), ("s", True), ("minutes", True), ("fortnights", False),
                                      ("days since 1981-01-01", False)])
def test_unknown_sst_dtime_units_are_an_error(tmp_path, units, ok):
    path, _ = synthetic_swath_file(tmp_path, 80.0, 0.0, rows=6, cols=5, dtime_units=units)
    with open_l2p(path) as g:
        if ok:
            sw = g.window(slice(None), slice(None))
            assert not np.isnat(sw.time).all()
        else:
            with pytest.raises(InputError, match="sst_dtime has units"):
                g.window(slice(None), slice(None))


def test_ice_bit_from_meanings_without_masks(tmp_path):
    # the fixture writes GDS 2.0 meanings without flag_masks: bit 2 is ice
    path, data = synthetic_swath_file(tmp_path, 80.0, 0.0, rows=6, cols=5)
    with open_l2p(path) as g:
        sw = g.window(slice(None), slice(None))
    assert sw.ice_mask == 4
    np.testing.assert_array_equal(sw.ice(), (data["flags"] & 4) != 0)


def test_longitude_is_read_only_where_latitude_can_reach_the_points(tmp_path):
    # a 400-km swath (latitude grows along rows) in 2 x 2 storage chunks; the points sit in the
    # southern half, so the northern longitude chunks need never be read — and the result must
    # be exactly the unpruned one
    path, truth = synthetic_swath_file(tmp_path, 70.0, 20.0, rows=400, cols=300, chunks=(200, 150))
    q_lat, q_lon = truth["lat"][20:40, 150], truth["lon"][20:40, 150]
    whole = CountingReader(path)
    with open_l2p(whole) as g:
        expected = g.window(*find_window(g.lat, g.lon, q_lat, q_lon, 1000))
    pruned = CountingReader(path)
    got = read_l2p(pruned, lat=q_lat, lon=q_lon, radius_m=1000)
    assert (got.rows, got.cols) == (expected.rows, expected.cols)
    for name in ("sst", "lat", "lon", "quality_level", "l2p_flags"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    np.testing.assert_array_equal(got.time, expected.time)
    assert pruned.bytes_read < whole.bytes_read - 0.8 * _lon_chunk_bytes(path, rows=slice(200, 400))


def test_a_granule_outside_the_latitude_band_costs_only_its_latitude(tmp_path):
    path, _ = synthetic_swath_file(tmp_path, 70.0, 20.0, rows=200, cols=150, chunks=(100, 75))
    reader = CountingReader(path)
    assert read_l2p(reader, lat=[10.0, 11.0], lon=[20.0, 20.0], radius_m=1000) is None
    assert reader.bytes_read < path.stat().st_size - _lon_chunk_bytes(path, rows=slice(0, 200))


def _lon_chunk_bytes(path, rows: slice) -> int:
    """Stored (compressed) bytes of the lon chunks starting in ``rows``."""
    import h5py

    with h5py.File(path, "r") as f:
        lon = f["lon"].id
        infos = [lon.get_chunk_info(i) for i in range(lon.get_num_chunks())]
        return sum(i.size for i in infos if rows.start <= i.chunk_offset[0] < rows.stop)


def test_a_window_releases_the_coordinates_and_a_second_locate_reads_them_again(tmp_path):
    """Issue 26: once a window is decoded the open granule holds no latitude/longitude (an open
    granule kept ~45 MB until the date's end); a granule reached again locates and reads the same."""
    path, truth = synthetic_swath_file(tmp_path, 70.0, 20.0, rows=400, cols=300, chunks=(200, 150))
    q_lat, q_lon = truth["lat"][20:40, 150], truth["lon"][20:40, 150]
    with open_l2p(CountingReader(path)) as g:
        first = g.window(*g.locate(q_lat, q_lon, 1000))
        assert g._lat is None and g._lon is None and g._view is None
        again = g.window(*g.locate(q_lat, q_lon, 1000))
        assert g._lat is None
    assert (again.rows, again.cols) == (first.rows, first.cols)
    for name in ("sst", "lat", "lon", "quality_level", "l2p_flags", "time"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
