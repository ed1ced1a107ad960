"""Reading an HDF5 granule in place (S3) as a few waves of side-by-side ranged GETs.

h5py reads a granule as a chain of small dependent reads (superblock, object headers, chunk
index, chunks) and serialises every call behind one global lock: over S3 each read that misses
costs a first byte (~50 ms, docs/NETWORK.md) while every thread's HDF5 work waits. A reader
therefore asks, before each step, which byte ranges the step will read — from the granule's
DMR++ sidecar (core.access.dmrpp) when the DAAC publishes one, else from HDF5's own chunk index — and
has the core.access.rangefile.RangeFile fetch them side by side, outside h5py; h5py then decodes from
memory. The ranges are only hints: a byte they miss is still fetched when h5py asks for it.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import h5py

from core.access.dmrpp import Range, VariableMap, chunk_ranges, parse_sidecar
from core.access.rangefile import RangeFile, side_by_side

log = logging.getLogger(__name__)

ByteMap = Mapping[str, VariableMap]

# A paged HDF5 file (file space strategy PAGE) keeps its metadata in metadata pages, with a small
# file's ~2 MB of it all in the first page. ICESat-2 Release 007 is written so, with 8 MiB pages
# (NSIDC, nsidc/cloud-optimized-icesat2 paper.qmd "Mission implementation"; real v007 ATL03 sizes
# are whole multiples of 8,388,608 B; NSIDC UWG 2025: "ATL products use 8MB-size pages"). Before
# the file's page size can be read (it sits in the superblock extension), the first GET takes this
# many bytes: on a paged granule, all its metadata in one request.
PAGE_HINT = 8 << 20


def file_page_size(h5: h5py.File) -> int | None:
    """The page size of a paged HDF5 file (file space strategy PAGE), else None. Read from the
    file creation properties (the superblock version is no sign of paging); the property list is
    released at once (held past the file's close, it crashed interpreters at exit in h5py 3.14-3.16)."""
    plist = h5.id.get_create_plist()
    try:
        paged = plist.get_file_space_strategy()[0] == h5py.h5f.FSPACE_STRATEGY_PAGE
        return int(plist.get_file_space_page_size()) if paged else None
    finally:
        del plist


def dataset_ranges(h5: h5py.File | None, path: str, rows: Sequence[slice] | None,
                   byte_map: ByteMap | None) -> list[Range]:
    """The byte ranges of the stored chunks of dataset ``path`` holding any of ``rows`` (slices
    along the first axis; None: every chunk). From ``byte_map`` if given (no read of the file),
    else from the file's chunk index (h5py reads its metadata). Nothing for a compact, empty or
    absent dataset."""
    if byte_map is not None:
        var = byte_map.get("/" + path.strip("/"))
        if var is None:
            return []
        if rows is None or not var.shape:
            return chunk_ranges(var)
        rest = (slice(None),) * (len(var.shape) - 1)
        return [r for run in rows for r in chunk_ranges(var, (run, *rest))]
    ds = h5.get(path) if h5 is not None else None
    if not isinstance(ds, h5py.Dataset):
        return []
    return _h5_chunk_ranges(ds, rows)


def _h5_chunk_ranges(ds: h5py.Dataset, rows: Sequence[slice] | None) -> list[Range]:
    if ds.chunks is None:  # contiguous (or compact: no offset, it lives in the object header)
        offset = ds.id.get_offset()
        return [] if offset is None else [(offset, offset + ds.id.get_storage_size())]
    height = ds.chunks[0]
    out: list[Range] = []

    def take(info) -> None:
        if info.byte_offset is None or not info.size:
            return  # never written: HDF5 fills it, nothing to fetch
        first = info.chunk_offset[0]
        if rows is None or any(first < run.stop and first + height > run.start for run in rows):
            out.append((info.byte_offset, info.byte_offset + info.size))

    if hasattr(ds.id, "chunk_iter"):  # HDF5 >= 1.14: one pass over the index
        ds.id.chunk_iter(take)
    else:
        for i in range(ds.id.get_num_chunks()):
            take(ds.id.get_chunk_info(i))
    return out


@dataclass(frozen=True)
class InPlace:
    """A granule opened in place: its RangeFile, the byte map from the ``.dmrpp`` published beside
    it (None where there is none, it was not asked for, or it cannot be read: the granule is then
    read from its own chunk index) and the sidecar's size (its bytes count as fetched)."""

    file: RangeFile
    byte_map: ByteMap | None
    sidecar_bytes: int


def open_in_place(fs, s3_url: str, settings, *, sidecar: bool = True) -> InPlace:
    """``s3_url`` as a RangeFile, with its ``.dmrpp`` sidecar when ``sidecar``."""
    from core.access.s3access import open_s3_rangefile, s3_object_size, s3_sidecar

    # the object's size (HEAD) and its sidecar (GET) side by side: one first byte, not two
    size, document = side_by_side(lambda: s3_object_size(fs, s3_url, settings),
                                  lambda: s3_sidecar(fs, s3_url) if sidecar else None)
    return _placed(open_s3_rangefile(fs, s3_url, settings, size=size), document)


def open_https_in_place(session, url: str, settings, *, sidecar: bool = True) -> InPlace:
    """``url`` (through TEA) as a RangeFile, with its ``.dmrpp`` sidecar when ``sidecar``."""
    from core.access.httpfile import HttpsRangeFile, HttpsRanges, https_sidecar

    # TEA's redirect resolved and the sidecar fetched side by side
    ranges, document = side_by_side(lambda: HttpsRanges(session, url, settings),
                                    lambda: https_sidecar(session, url) if sidecar else None)
    return _placed(HttpsRangeFile(ranges), document)


def _placed(file: RangeFile, document: bytes | None) -> InPlace:
    return InPlace(file, parse_sidecar(document, file.name), len(document) if document else 0)


__all__ = ["PAGE_HINT", "ByteMap", "InPlace", "dataset_ranges", "file_page_size", "open_https_in_place",
           "open_in_place"]
