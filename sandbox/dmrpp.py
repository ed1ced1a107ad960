"""DMR++ sidecars for the scene's granules, as the DAACs' Cumulus workflows publish them.

PO.DAAC's collection configuration for MODIS_A-JPL-L2P-v2019.0 lists a ``.nc.dmrpp`` file
beside each ``.nc``, in the same (protected) bucket; the real one of a night granule is in
tests/data/realdata/l2p. This writer produces the same document shape from an HDF5 file's own
chunk index (h5py ``get_chunk_info``): dimensions, one element per variable with its DAP4 type,
``Dim`` references, attributes, ``dmrpp:chunks`` with ``compressionType``,
``chunkDimensionSizes`` and one ``dmrpp:chunk offset= nBytes= chunkPositionInArray=`` per stored
chunk. Whether NSIDC publishes them for ATL07 is not confirmed here: the sandbox publishes
sidecars for PO.DAAC granules only unless told otherwise (``Sandbox(dmrpp_daacs=...)``).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import h5py
import numpy as np

SUFFIX = ".dmrpp"
_DAP4_TYPE = {"f4": "Float32", "f8": "Float64", "i1": "Int8", "u1": "Byte", "i2": "Int16", "u2": "UInt16",
              "i4": "Int32", "u4": "UInt32", "i8": "Int64", "u8": "UInt64"}


def _dap4_type(dtype: np.dtype) -> str:
    if dtype.kind in "SUO":
        return "String"
    return _DAP4_TYPE.get(f"{dtype.kind}{dtype.itemsize}", "Opaque")


def _attribute(name: str, value, indent: str) -> str:
    values = np.atleast_1d(value)
    if values.dtype.kind in "SO" or isinstance(value, str):
        kind = "String"
        texts = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values.ravel().tolist()]
    else:
        kind = _dap4_type(values.dtype)
        texts = [repr(v) for v in values.ravel().tolist()]
    body = "".join(f"{indent}    <Value>{escape(t)}</Value>\n" for t in texts)
    return f'{indent}<Attribute name={quoteattr(name)} type="{kind}">\n{body}{indent}</Attribute>\n'


def _compression(ds: h5py.Dataset) -> str:
    parts = []
    if ds.shuffle:
        parts.append("shuffle")
    if ds.compression == "gzip":
        parts.append("deflate")
    if ds.fletcher32:
        parts.append("fletcher32")
    return " ".join(parts)


def _chunks_xml(ds: h5py.Dataset, indent: str) -> str:
    comp = _compression(ds)
    head = f'{indent}<dmrpp:chunks{f" compressionType={quoteattr(comp)}" if comp else ""}>\n'
    if ds.chunks is None:
        offset = ds.id.get_offset()
        if offset is None:
            return ""
        return f'{head}{indent}    <dmrpp:chunk offset="{offset}" nBytes="{ds.id.get_storage_size()}"/>\n{indent}</dmrpp:chunks>\n'
    lines = [head, f"{indent}    <dmrpp:chunkDimensionSizes>{' '.join(str(c) for c in ds.chunks)}</dmrpp:chunkDimensionSizes>\n"]
    for i in range(ds.id.get_num_chunks()):
        info = ds.id.get_chunk_info(i)
        pos = ",".join(str(int(o)) for o in info.chunk_offset)
        lines.append(f'{indent}    <dmrpp:chunk offset="{info.byte_offset}" nBytes="{info.size}" chunkPositionInArray="[{pos}]"/>\n')
    lines.append(f"{indent}</dmrpp:chunks>\n")
    return "".join(lines)


def _group_xml(group: h5py.Group, indent: str) -> str:
    out = []
    prefix = group.name.rstrip("/")
    for name, obj in group.items():
        if isinstance(obj, h5py.Dataset) and obj.attrs.get("CLASS") == b"DIMENSION_SCALE":
            out.append(f'{indent}<Dimension name={quoteattr(name)} size="{obj.shape[0] if obj.shape else 1}"/>\n')
    for name, obj in group.items():
        if isinstance(obj, h5py.Group):
            out.append(f"{indent}<Group name={quoteattr(name)}>\n{_group_xml(obj, indent + '    ')}{indent}</Group>\n")
            continue
        if not isinstance(obj, h5py.Dataset):
            continue
        kind = _dap4_type(obj.dtype)
        out.append(f"{indent}<{kind} name={quoteattr(name)}>\n")
        for axis, size in enumerate(obj.shape):
            scales = obj.dims[axis] if axis < len(obj.dims) else []
            scale = scales[0].name if len(scales) else None
            out.append(f"{indent}    <Dim name={quoteattr(scale)}/>\n" if scale and scale.rsplit("/", 1)[0] == prefix
                       else f'{indent}    <Dim size="{size}"/>\n')
        for key, value in obj.attrs.items():
            if key in ("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Dimid", "_Netcdf4Coordinates"):
                continue
            out.append(_attribute(key, value, indent + "    "))
        out.append(_chunks_xml(obj, indent + "    "))
        out.append(f"{indent}</{kind}>\n")
    for key, value in group.attrs.items():
        out.append(_attribute(key, value, indent))
    return "".join(out)


def dmrpp_document(path: str | os.PathLike) -> bytes:
    """The DMR++ document of an HDF5 / netCDF-4 file."""
    with h5py.File(path, "r") as f:
        body = _group_xml(f, "    ")
    name = quoteattr(Path(path).name)
    return ('<?xml version="1.0" encoding="ISO-8859-1"?>\n'
            '<Dataset xmlns="http://xml.opendap.org/ns/DAP/4.0#" xmlns:dmrpp="http://xml.opendap.org/dap/dmrpp/1.0.0#" '
            f'dapVersion="4.0" dmrVersion="1.0" name={name} dmrpp:href="OPeNDAP_DMRpp_DATA_ACCESS_URL">\n'
            f"{body}</Dataset>\n").encode("iso-8859-1", "replace")


def ensure_sidecar(path: str | os.PathLike) -> Path:
    """``<path>.dmrpp`` beside the file, written once (atomically) and reused while newer."""
    path = Path(path)
    out = path.with_name(path.name + SUFFIX)
    if out.exists() and out.stat().st_mtime >= path.stat().st_mtime:
        return out
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(dmrpp_document(path))
    os.replace(tmp, out)
    return out


__all__ = ["SUFFIX", "dmrpp_document", "ensure_sidecar"]
