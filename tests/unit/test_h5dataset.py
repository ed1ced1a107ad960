"""core.science.h5dataset against h5netcdf (the reader xarray uses for netCDF-4) as the oracle: same
variables, dimensions, attributes, chunking and values, on real and realistic files."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import xarray as xr

from core.science.h5dataset import open_undecoded
from core.science.l2p import normalise_attr, open_l2p
from tests.science_fixtures import REAL_L2P_SUBSETS, synthetic_swath_file, write_like_real_granule


def _same_attrs(ours: dict, theirs: dict) -> None:
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        a, b = normalise_attr(ours[key]), normalise_attr(value)
        # the type matters: xarray picks the decoded dtype from scale_factor's (float32 stays float32)
        assert type(a) is type(b) and getattr(a, "dtype", None) == getattr(b, "dtype", None), key
        if isinstance(b, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=key)
        else:
            assert a == b, key


def _assert_like_h5netcdf(path) -> None:
    oracle = xr.open_dataset(path, engine="h5netcdf", decode_cf=False, mask_and_scale=False,
                             decode_times=False, cache=False)
    with oracle, open_undecoded(h5py.File(path, "r")) as ours:
        assert sorted(ours.variables) == sorted(oracle.variables)
        assert sorted(ours.coords) == sorted(oracle.coords)
        _same_attrs(ours.attrs, oracle.attrs)
        for name, var in oracle.variables.items():
            mine = ours[name]
            assert mine.dims == var.dims and mine.dtype == var.dtype, name
            _same_attrs(mine.attrs, var.attrs)
            assert mine.encoding.get("chunksizes") == var.encoding.get("chunksizes"), name
            np.testing.assert_array_equal(mine.values, var.values, err_msg=name)
            if mine.ndim >= 2:  # a lazy window reads the same values as the whole array
                window = {mine.dims[-2]: slice(3, 9), mine.dims[-1]: slice(2, 7)}
                np.testing.assert_array_equal(mine.isel(window).values, var.isel(window).values)


@pytest.mark.parametrize("name", REAL_L2P_SUBSETS)
def test_real_modis_files_read_as_h5netcdf_reads_them(realdata, name):
    _assert_like_h5netcdf(realdata / "l2p" / name)


def test_the_full_podaac_layout_reads_as_h5netcdf_reads_it(tmp_path, realdata):
    zarr_json = realdata / "l2p" / "20200911000001-JPL-L2P_GHRSST-SSTskin-MODIS_A-N-v02.0-fv01.0.zarr.json"
    path = tmp_path / "granule.nc"
    write_like_real_granule(path, zarr_json, 40, 30, np.random.default_rng(3))
    _assert_like_h5netcdf(path)


def test_a_synthetic_swath_reads_as_h5netcdf_reads_it(tmp_path):
    path, _ = synthetic_swath_file(tmp_path, -70.0, 179.9)
    _assert_like_h5netcdf(path)


@pytest.mark.parametrize("writer", ["h5netcdf", "netCDF4"])
def test_a_2d_variable_named_like_its_dimension_reads_as_h5netcdf_reads_it(tmp_path, writer):
    """h5netcdf stores it as an N-D dimension scale whose dimensions are listed by id; netCDF-C,
    when the dimension is not its first, as ``_nc4_non_coord_<name>``. Either way: the same name,
    dimensions and values."""
    path = tmp_path / f"{writer}.nc"
    lat = np.arange(12, dtype=np.float32).reshape(4, 3) + 80
    dims = ("lat", "x") if writer == "h5netcdf" else ("x", "lat")
    if writer == "h5netcdf":
        import h5netcdf

        with h5netcdf.File(path, "w") as f:
            f.dimensions = {"lat": 4, "x": 3}
            f.create_variable("lat", ("lat", "x"), np.float32)[:] = lat
            f.create_variable("sst", ("lat", "x"), np.int16)[:] = 5
    else:
        netCDF4 = pytest.importorskip("netCDF4")
        with netCDF4.Dataset(path, "w") as f:
            f.createDimension("lat", 4)
            f.createDimension("x", 3)
            f.createVariable("lat", np.float32, dims)[:] = lat.T
            f.createVariable("sst", np.int16, ("lat", "x"))[:] = 5
    _assert_like_h5netcdf(path)
    with open_undecoded(h5py.File(path, "r")) as ds:
        assert ds["lat"].dims == dims
        np.testing.assert_array_equal(ds["lat"].values, lat if writer == "h5netcdf" else lat.T)


def test_plain_hdf5_gets_shared_phony_dimensions(tmp_path):
    """No dimension scales (plain HDF5): arrays on one grid share dimensions by length, and an
    empty attribute reads as an empty string."""
    path = tmp_path / "plain.h5"
    lat = np.linspace(80, 81, 12, dtype=np.float32).reshape(4, 3)
    with h5py.File(path, "w") as f:
        f["lat"] = lat
        f["lon"] = lat - 140
        f.create_dataset("sea_surface_temperature", data=np.full((1, 4, 3), 7, np.int16), chunks=(1, 2, 3))
        f["square"] = np.zeros((3, 3))
        f["lat"].attrs["comment"] = h5py.Empty("S1")
    with open_undecoded(h5py.File(path, "r")) as ds:
        assert ds["lat"].dims == ds["lon"].dims == ("phony_dim_4", "phony_dim_3")
        assert ds["sea_surface_temperature"].dims == ("phony_dim_1", "phony_dim_4", "phony_dim_3")
        assert ds["sea_surface_temperature"].encoding["chunksizes"] == (1, 2, 3)
        assert ds["square"].dims == ("phony_dim_3", "phony_dim_3_1")
        assert ds["lat"].attrs["comment"] == ""
    with open_l2p(path) as granule:  # readable as a swath: lat/lon/SST share the grid
        assert granule.dims == ("phony_dim_4", "phony_dim_3")
        np.testing.assert_array_equal(granule.window(slice(None), slice(None)).lat, lat)


def test_closing_the_dataset_closes_the_file(tmp_path):
    path, _ = synthetic_swath_file(tmp_path, 82.0, -60.0)
    h5 = h5py.File(path, "r")
    open_undecoded(h5).close()
    assert not h5.id.valid
