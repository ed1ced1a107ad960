"""The root group of an open netCDF4/HDF5 file as an *undecoded*, lazily read xarray Dataset.

``xr.open_dataset(engine="h5netcdf")`` spends ~0.1 s of CPU per L2P granule resolving every
variable's dimensions and attributes through h5netcdf (measured on a MODIS L2P granule: 0.06–0.10 s
against 0.017 s here), all of it under h5py's global lock and the GIL, for 8 granules a date. This
reads the same netCDF-4 data model straight from h5py — dimension names from the HDF5 dimension
scales the netCDF-4 library writes (netCDF-4 format spec, "Dimensions"), attributes without the
library's bookkeeping ones — and wraps each variable in xarray's documented lazy backend array
("How to add a new backend": BackendArray + explicit_indexing_adapter), so a slice reads only its
chunks and CF decoding stays xarray's (``xr.decode_cf``).

Datasets without dimension scales (plain HDF5, which h5netcdf refuses unless told ``phony_dims``)
get ``phony_dim_<length>`` names, so arrays on the same grid share their dimensions.
"""
from __future__ import annotations

import logging

import h5py
import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

log = logging.getLogger(__name__)

# written by the netCDF-4 library / HDF5 dimension-scale API, not by the data's producer
# (the set h5netcdf hides, h5netcdf/attrs.py)
LIBRARY_ATTRS = frozenset({"REFERENCE_LIST", "CLASS", "DIMENSION_LIST", "NAME", "_Netcdf4Dimid",
                           "_Netcdf4Coordinates", "_nc3_strict", "_NCProperties"})
# the NAME a netCDF-4 dimension without a coordinate variable carries (netCDF-4 format spec)
PURE_DIMENSION = b"This is a netCDF dimension but not a netCDF variable"
NON_COORD_PREFIX = "_nc4_non_coord_"


class _H5Array(BackendArray):
    """One h5py dataset, read by outer (orthogonal) indexing only when xarray asks for values."""

    def __init__(self, dataset: h5py.Dataset):
        # the file and path, not the dataset: an open HDF5 dataset holds native memory (its chunk
        # cache) for as long as it is open; opening by path per read, as h5netcdf does, does not
        self.file, self.path = dataset.file, dataset.name
        self.shape = dataset.shape
        self.dtype = dataset.dtype

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER_1VECTOR,
                                                  self._read)

    def _read(self, key):
        return np.asarray(self.file[self.path][key])


def _attrs(obj) -> dict:
    out = {}
    for key in obj.attrs:
        if key in LIBRARY_ATTRS:
            continue
        try:
            value = obj.attrs[key]
        except (OSError, TypeError) as exc:  # an HDF5 type h5py cannot map: the attribute only
            log.warning("%s: attribute %s unreadable (%s), skipped", obj.name, key, exc)
            continue
        if isinstance(value, h5py.Empty):  # a null-dataspace attribute: an empty string, mostly
            value = "" if h5py.check_string_dtype(value.dtype) else np.array([], dtype=value.dtype)
        elif isinstance(value, np.ndarray) and value.shape == (1,):
            # one element as a numpy scalar of its own dtype, as h5netcdf gives it: a float32
            # scale_factor must stay float32 or xarray decodes the variable to float64 (CF §8.1)
            value = value[0]
        out[key] = value
    return out


def _is_scale(dataset: h5py.Dataset) -> bool:
    return dataset.attrs.get("CLASS") == b"DIMENSION_SCALE"


def _name(dataset: h5py.Dataset) -> bytes:
    value = dataset.attrs.get("NAME", b"")
    return value.encode() if isinstance(value, str) else bytes(value)


def _dims(dataset: h5py.Dataset, name: str, dim_ids: dict[int, str]) -> tuple[str, ...]:
    """A variable's dimension names: a dimension scale lists them by id (``_Netcdf4Coordinates``,
    for an N-D variable named like its first dimension), any other variable by the scales
    attached to its axes (netCDF-4 format spec, "Dimensions"); plain HDF5 by length."""
    ids = np.atleast_1d(dataset.attrs.get("_Netcdf4Coordinates", []))
    if _is_scale(dataset) and ids.size == dataset.ndim and all(int(i) in dim_ids for i in ids):
        return tuple(dim_ids[int(i)] for i in ids)
    if _is_scale(dataset) and dataset.ndim == 1:
        return (name,)
    dims: list[str] = []
    for axis, proxy in enumerate(dataset.dims):
        dim = proxy[0].name.rsplit("/", 1)[-1] if len(proxy) else f"phony_dim_{dataset.shape[axis]}"
        dims.append(dim if dim not in dims else f"{dim}_{axis}")  # a square grid without scales
    return tuple(dims)


def open_undecoded(h5: h5py.File) -> xr.Dataset:
    """``h5``'s root variables and global attributes, undecoded (raw dtypes, CF attributes kept);
    values are read on access. Closing the Dataset closes ``h5``."""
    datasets = {key: obj for key, obj in h5.items() if isinstance(obj, h5py.Dataset)}
    # groups skipped: GHRSST L2P keeps every variable in the root group (GDS 2.0 §8)
    dim_ids = {int(np.asarray(obj.attrs["_Netcdf4Dimid"]).ravel()[0]): key for key, obj in datasets.items()
               if _is_scale(obj) and "_Netcdf4Dimid" in obj.attrs}
    variables: dict[str, xr.Variable] = {}
    coords: dict[str, xr.Variable] = {}
    for key, obj in datasets.items():
        if _is_scale(obj) and _name(obj).startswith(PURE_DIMENSION):
            continue
        # netCDF-C stores an N-D variable named like a dimension under this prefix
        name = key.removeprefix(NON_COORD_PREFIX)
        dims = _dims(obj, name, dim_ids)
        var = xr.Variable(dims, indexing.LazilyIndexedArray(_H5Array(obj)), _attrs(obj),
                          encoding={"chunksizes": obj.chunks, "dtype": obj.dtype})
        # named like one of its dimensions: a coordinate (an index only when 1-D), as xarray reads it
        (coords if name in dims else variables)[name] = var
    ds = xr.Dataset(variables, coords=coords, attrs=_attrs(h5))
    ds.set_close(h5.close)
    return ds


__all__ = ["open_undecoded"]
