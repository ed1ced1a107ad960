"""The byte map of an HDF5 granule from its DMR++ sidecar (``<granule>.dmrpp``).

NASA's DAACs publish a DMR++ document beside each cloud granule for OPeNDAP (Hyrax); PO.DAAC
does so for its L2P collections (one sits in tests/data/realdata/l2p). It lists, for every
variable, its shape, chunk shape and the byte offset and size of every stored chunk
(``<dmrpp:chunk offset= nBytes= chunkPositionInArray=>``; DMR++ spec:
https://docs.opendap.org/index.php/DMR%2B%2B). One small GET of it tells a reader which byte
ranges of the granule hold what, before the granule is touched: the HDF5 metadata is what lies
between the chunks, so metadata and the chunks a read needs can be fetched side by side instead
of one round trip per HDF5 object header.

The map is only ever a hint for what to fetch: the granule itself is still decoded by h5py from
the bytes fetched, and a byte the map missed is fetched when h5py asks for it.
"""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DAP4 = "{http://xml.opendap.org/ns/DAP/4.0#}"
DMRPP = "{http://xml.opendap.org/dap/dmrpp/1.0.0#}"
# DAP4 atomic types a variable element can have (Opaque/String/Structure carry no chunks we read)
DAP4_TYPES = {"Byte", "Char", "Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
              "Float32", "Float64", "String", "Opaque"}

Range = tuple[int, int]  # [start, end) byte offsets in the granule
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    position: tuple[int, ...]  # element offsets of the chunk's first element (chunkPositionInArray)
    offset: int  # byte offset in the granule
    nbytes: int

    @property
    def range(self) -> Range:
        return self.offset, self.offset + self.nbytes


@dataclass(frozen=True)
class VariableMap:
    path: str  # "/lat", "/gt1l/sea_ice_segments/latitude"
    dtype: str  # the DAP4 type name
    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]  # the whole shape for contiguous storage
    chunks: tuple[Chunk, ...]
    compression: str  # e.g. "deflate", "shuffle deflate", "" (none)

    def chunks_in(self, window: Sequence[slice] | None = None) -> list[Chunk]:
        """The chunks holding any element of ``window`` (slices over the trailing dimensions;
        None: every chunk)."""
        if window is None:
            return list(self.chunks)
        lead = len(self.shape) - len(window)
        out = []
        for c in self.chunks:
            for axis, want in enumerate(window, start=lead):
                start, stop, _ = want.indices(self.shape[axis])
                c0 = c.position[axis] if axis < len(c.position) else 0
                if not (c0 < stop and c0 + self.chunk_shape[axis] > start):
                    break
            else:
                out.append(c)
        return out


class DmrppError(ValueError):
    """The document is not a DMR++ this parser understands."""


def parse_dmrpp(document: bytes | str) -> dict[str, VariableMap]:
    """Every chunked or contiguous variable of a DMR++ document, by its full path."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise DmrppError(f"not an XML document: {exc}") from None
    if root.tag != f"{DAP4}Dataset":
        raise DmrppError(f"not a DAP4 Dataset document (root {root.tag!r})")
    out: dict[str, VariableMap] = {}
    _walk(root, "", {}, out)
    return out


def _dimension_sizes(group: ET.Element, prefix: str, known: dict[str, int]) -> dict[str, int]:
    sizes = dict(known)
    for dim in group.findall(f"{DAP4}Dimension"):
        name, size = dim.get("name"), dim.get("size")
        if name and size is not None:
            sizes[f"{prefix}/{name}"] = int(size)
    return sizes


def _walk(group: ET.Element, prefix: str, known: dict[str, int], out: dict[str, VariableMap]) -> None:
    sizes = _dimension_sizes(group, prefix, known)
    for child in group:
        tag = child.tag.removeprefix(DAP4)
        name = child.get("name", "")
        if tag == "Group":
            _walk(child, f"{prefix}/{name}", sizes, out)
        elif tag in DAP4_TYPES:
            var = _variable(child, f"{prefix}/{name}", tag, sizes)
            if var is not None:
                out[var.path] = var


def _variable(elem: ET.Element, path: str, dtype: str, sizes: dict[str, int]) -> VariableMap | None:
    chunks_elem = elem.find(f"{DMRPP}chunks")
    if chunks_elem is None:
        return None  # compact storage or no data: nothing to fetch by range
    shape = []
    for dim in elem.findall(f"{DAP4}Dim"):
        size, dim_name = dim.get("size"), dim.get("name", "")
        if size is not None:
            shape.append(int(size))
        elif dim_name in sizes:
            shape.append(sizes[dim_name])
        else:
            raise DmrppError(f"{path}: dimension {dim.get('name')!r} is not declared")
    dims_elem = chunks_elem.find(f"{DMRPP}chunkDimensionSizes")
    text = dims_elem.text if dims_elem is not None else None
    chunk_shape = tuple(int(v) for v in text.split()) if text else tuple(shape)
    chunks = []
    for c in chunks_elem.findall(f"{DMRPP}chunk"):
        pos = c.get("chunkPositionInArray")
        position = tuple(int(v) for v in pos.strip("[]").split(",")) if pos else (0,) * len(shape)
        chunks.append(Chunk(position, int(c.get("offset", 0)), int(c.get("nBytes", 0))))
    return VariableMap(path, dtype, tuple(shape), chunk_shape, tuple(chunks), chunks_elem.get("compressionType", ""))


def parse_sidecar(document: bytes | None, name: str) -> dict[str, VariableMap] | None:
    """A granule's published sidecar parsed, or None when there is none or it cannot be used
    (the reader then locates bytes from the granule's own HDF5 chunk index)."""
    if not document:
        return None
    try:
        return parse_dmrpp(document)
    except DmrppError as exc:
        log.warning("%s: its .dmrpp sidecar is unusable (%s); locating chunks from the HDF5 index", name, exc)
        return None


def metadata_ranges(variables: Iterable[VariableMap], size: int) -> list[Range]:
    """What lies between the listed chunks in a granule of ``size`` bytes: the superblock, object
    headers, attribute heaps and chunk indexes h5py reads to open the file and its variables."""
    taken = sorted(c.range for v in variables for c in v.chunks if c.nbytes > 0)
    gaps, pos = [], 0
    for start, end in taken:
        if start > pos:
            gaps.append((pos, start))
        pos = max(pos, end)
    if size > pos:
        gaps.append((pos, size))
    return gaps


def chunk_ranges(variable: VariableMap, window: Sequence[slice] | None = None) -> list[Range]:
    return [c.range for c in variable.chunks_in(window) if c.nbytes > 0]


__all__ = ["Chunk", "DmrppError", "VariableMap", "chunk_ranges", "metadata_ranges", "parse_dmrpp", "parse_sidecar"]
