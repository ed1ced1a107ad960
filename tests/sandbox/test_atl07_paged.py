"""ATL07 Release 007 as NSIDC publishes it (sandbox.scene): paged granules with 8 MiB pages, whose
metadata the in-place reader (core.science.atl07 over core.access.rangefile) fetches in at most two
ranged GETs, counted by the network model's ledger (sandbox.netmodel), not by the clock."""
from __future__ import annotations

import h5py

from core.access.inplace import file_page_size
from core.science.atl07 import open_atl07_in_place, read_atl07
from sandbox.scene import ATL07_PAGE_BYTES
from tests.sandbox.test_atl07_inplace import SEED_BBOX, _atl07, _fs, assert_same_granule


def _metadata_pages(path) -> set[int]:
    """Pages holding no byte of any dataset's storage: where a paged file keeps its metadata."""
    data: set[int] = set()

    def visit(_, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        plist = obj.id.get_create_plist()
        assert plist.get_layout() != h5py.h5d.COMPACT, obj.name  # Release 007: COMPACT made CONTIGUOUS
        del plist
        spans = []
        if obj.chunks:
            obj.id.chunk_iter(lambda c: spans.append((c.byte_offset, c.byte_offset + c.size)))
        elif obj.id.get_offset() is not None:
            spans.append((obj.id.get_offset(), obj.id.get_offset() + obj.id.get_storage_size()))
        data.update(p for a, b in spans for p in range(a // ATL07_PAGE_BYTES, (b - 1) // ATL07_PAGE_BYTES + 1))

    with h5py.File(path) as f:
        f.visititems(visit)
        pages = -(-f.id.get_filesize() // ATL07_PAGE_BYTES)
    return set(range(pages)) - data - {pages - 1}  # the last page: its free tail, not metadata


def test_v007_granules_are_paged_and_their_metadata_comes_in_two_requests(modelled_sandbox):
    sb = modelled_sandbox
    for g in _atl07(sb):
        with h5py.File(g.path) as f:
            assert file_page_size(f) == ATL07_PAGE_BYTES == 8_388_608
        assert g.size_bytes % ATL07_PAGE_BYTES == 0 and g.path.stat().st_size == g.size_bytes  # repacked
        meta = _metadata_pages(g.path)
        assert meta == {0}, meta  # ~2 MB of metadata: all of it in the first page
        fh, byte_map = open_atl07_in_place(_fs(sb), sb.links(g)["s3"], sb.settings)
        assert byte_map is None
        sb.netmodel.reset()
        with fh:
            got = read_atl07(fh, bbox=SEED_BBOX, margin_deg=sb.settings.bbox_margin_deg)
        assert_same_granule(got, read_atl07(g.path, bbox=SEED_BBOX, margin_deg=sb.settings.bbox_margin_deg))
        gets = [r for r in sb.netmodel.ledger.snapshot("aws") if r.method == "GET" and g.key in r.path]
        assert len(gets) == fh.fetch_requests and all(r.range for r in gets)
        spans = [tuple(int(x) for x in r.range.split("=")[1].split("-")) for r in gets]
        on_metadata = [(a, b) for a, b in spans if {a // ATL07_PAGE_BYTES, b // ATL07_PAGE_BYTES} & meta]
        assert 1 <= len(on_metadata) <= 2, on_metadata
        # ... and they hold the whole metadata page; the rest are the box's chunks, nothing whole
        assert sum(b + 1 - a for a, b in on_metadata) == ATL07_PAGE_BYTES
        assert fh.bytes_fetched < 0.6 * fh.size
