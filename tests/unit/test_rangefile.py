"""core.access.rangefile (a file over ranged fetches) and core.access.dmrpp (the byte map from a DMR++ sidecar),
against real files: the published .dmrpp of a real L2P granule and HDF5 files read by h5py."""
from __future__ import annotations

import os
import threading

import h5py
import numpy as np
import pytest

from core.access.dmrpp import DmrppError, chunk_ranges, metadata_ranges, parse_dmrpp
from core.access.rangefile import RangeFile, merge_ranges, split_ranges
from sandbox.dmrpp import dmrpp_document

REAL_DMRPP = "l2p/20200911000001-JPL-L2P_GHRSST-SSTskin-MODIS_A-N-v02.0-fv01.0.nc.dmrpp"


class Recorder:
    """fetch_many over a local file, recording every range asked for."""

    def __init__(self, path):
        self.data = open(path, "rb").read()
        self.calls: list[list[tuple[int, int]]] = []
        self.lock = threading.Lock()

    def __call__(self, ranges):
        with self.lock:
            self.calls.append(list(ranges))
        return [self.data[a:b] for a, b in ranges]

    @property
    def ranges(self):
        return [r for call in self.calls for r in call]


def _l2p_file(tmp_path, chunks=(16, 24)):
    path = tmp_path / "swath.nc"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for name in ("lat", "lon", "sst"):
            f.create_dataset(name, data=rng.normal(size=(64, 96)).astype("f4"), chunks=chunks, compression="gzip")
        f.create_dataset("time", data=np.arange(3, dtype="i4"))
        f.attrs["title"] = "test"
    return path


def test_real_dmrpp_parses_to_the_granule_layout(realdata):
    maps = parse_dmrpp((realdata / REAL_DMRPP).read_bytes())
    lat = maps["/lat"]
    assert lat.shape == (2030, 1354) and lat.chunk_shape == (1015, 677) and lat.compression == "deflate"
    assert len(lat.chunks) == 4 and {c.position for c in lat.chunks} == {(0, 0), (0, 677), (1015, 0), (1015, 677)}
    sst = maps["/sea_surface_temperature"]
    assert sst.shape == (1, 2030, 1354) and sst.chunk_shape == (1, 1015, 677)
    # a window in the lower-left chunk needs exactly that chunk of each variable
    window = (slice(1100, 1200), slice(10, 100))
    assert [c.position for c in lat.chunks_in(window)] == [(1015, 0)]
    assert [c.position for c in sst.chunks_in(window)] == [(0, 1015, 0)]
    # a window across the chunk boundary needs all four
    assert len(lat.chunks_in((slice(1000, 1020), slice(670, 680)))) == 4


def test_not_a_dmrpp_is_refused():
    with pytest.raises(DmrppError):
        parse_dmrpp(b"<html>not it</html>")
    with pytest.raises(DmrppError):
        parse_dmrpp(b"{not xml")


def test_written_sidecar_matches_h5py_chunk_index(tmp_path):
    path = _l2p_file(tmp_path)
    maps = parse_dmrpp(dmrpp_document(path))
    with h5py.File(path) as f:
        for name in ("lat", "lon", "sst"):
            ds = f[name]
            want = sorted((tuple(int(o) for o in ds.id.get_chunk_info(i).chunk_offset), ds.id.get_chunk_info(i).byte_offset,
                           ds.id.get_chunk_info(i).size) for i in range(ds.id.get_num_chunks()))
            got = sorted((c.position, c.offset, c.nbytes) for c in maps[f"/{name}"].chunks)
            assert got == want
        assert maps["/time"].chunks[0].offset == f["time"].id.get_offset()
    # what lies between the chunks is the file's metadata: all of it, nothing of the chunks
    size = os.path.getsize(path)
    meta = metadata_ranges(maps.values(), size)
    chunk_bytes = sum(c.nbytes for v in maps.values() for c in v.chunks)
    assert sum(b - a for a, b in meta) == size - chunk_bytes
    assert meta[0][0] == 0  # the superblock


def test_h5py_reads_through_prefetched_ranges_without_a_miss(tmp_path):
    path = _l2p_file(tmp_path)
    maps = parse_dmrpp(dmrpp_document(path))
    fetch = Recorder(path)
    f = RangeFile(fetch, os.path.getsize(path), readahead=1, coalesce=0)
    window = (slice(18, 30), slice(26, 46))
    f.prefetch(metadata_ranges(maps.values(), f.size) + chunk_ranges(maps["/sst"], window))
    asked = len(fetch.calls)
    with h5py.File(f, "r") as h5:
        got = h5["sst"][18:30, 26:46]
    with h5py.File(path) as h5:
        want = h5["sst"][18:30, 26:46]
    np.testing.assert_array_equal(got, want)
    assert len(fetch.calls) == asked, "h5py had to fetch on demand: the map missed bytes it needed"
    # only the window's chunk of sst came over, not the other variables' chunks
    fetched = f.bytes_fetched
    needed = sum(b - a for a, b in metadata_ranges(maps.values(), f.size)) + sum(
        b - a for a, b in chunk_ranges(maps["/sst"], window))
    assert fetched == needed
    assert len(maps["/sst"].chunks_in(window)) == 1


def test_misses_are_fetched_on_demand_and_never_twice(tmp_path):
    path = _l2p_file(tmp_path)
    fetch = Recorder(path)
    f = RangeFile(fetch, os.path.getsize(path), readahead=4096)
    with h5py.File(f, "r") as h5:
        a = h5["lat"][:]
    first = f.bytes_fetched
    with h5py.File(f, "r") as h5:
        b = h5["lat"][:]
    np.testing.assert_array_equal(a, b)
    assert f.bytes_fetched == first  # everything the second read needed was held
    # no byte was requested twice
    seen = np.zeros(f.size, dtype=np.int32)
    for start, end in fetch.ranges:
        seen[start:end] += 1
    assert seen.max() == 1


def test_aligned_misses_fetch_whole_pages(tmp_path):
    """``align`` (a paged HDF5 file's page size): a miss fetches the whole aligned page(s) it falls
    in, as HDF5's own page buffer would, so the page's other metadata is held after one request."""
    path = _l2p_file(tmp_path)
    fetch = Recorder(path)
    size = os.path.getsize(path)
    f = RangeFile(fetch, size, readahead=1024)
    f.align = 4096
    f.seek(5000)
    assert f.read(10) == fetch.data[5000:5010]
    f.seek(8190)
    assert f.read(4) == fetch.data[8190:8194]  # straddles two pages: the second one only is new
    assert fetch.ranges == [(4096, 8192), (8192, min(12288, size))]


def test_prefetch_splits_large_ranges_and_discard_frees_them(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(os.urandom(1 << 20))
    fetch = Recorder(path)
    f = RangeFile(fetch, 1 << 20, max_part=256 << 10)
    f.prefetch([(0, 1 << 20)])
    assert len(fetch.calls) == 1 and len(fetch.calls[0]) == 4  # one wave, four parts side by side
    assert f.read(10) == fetch.data[:10]
    f.seek((1 << 20) - 5)
    assert f.read() == fetch.data[-5:]
    f.discard([(0, 1 << 20)])
    assert f.held_bytes() == 0 and f.missing([(0, 10)]) == [(0, 10)]


def test_merge_and_split_ranges():
    assert merge_ranges([(10, 20), (0, 5), (18, 30), (40, 41)]) == [(0, 5), (10, 30), (40, 41)]
    assert merge_ranges([(0, 5), (9, 12)], gap=4) == [(0, 12)]
    parts = split_ranges([(0, 10)], 4)
    assert parts[0][0] == 0 and parts[-1][1] == 10 and all(b - a <= 4 for a, b in parts)
    assert sum(b - a for a, b in parts) == 10


def test_short_answer_is_an_error(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 100)

    def short(ranges):
        return [b"x" * (b - a - 1) for a, b in ranges]

    f = RangeFile(short, 100)
    with pytest.raises(OSError, match="returned"):
        f.read(10)


# In a fresh interpreter (a deadlock there cannot take h5py's lock from the rest of the suite): an
# h5py object left in a reference cycle, then h5py reading a RangeFile whose fetches run in another
# thread that allocates enough for the automatic collector to run there.
_COLLECTOR_SCRIPT = r"""
import gc, sys
from concurrent.futures import ThreadPoolExecutor
import h5py, numpy as np
from core.access.rangefile import RangeFile

path = sys.argv[1]
with h5py.File(path, "w") as f:
    f.create_dataset("x", data=np.arange(50_000.0), chunks=(1000,), compression="gzip")
data = open(path, "rb").read()
pool = ThreadPoolExecutor(1)

def fetch_many(ranges):
    def fetch():
        keep = [[] for _ in range(5000)]  # past gen-0's threshold: the collector runs in this thread
        return [data[a:b] for a, b in ranges]
    return pool.submit(fetch).result()

gc.collect()
gc.set_threshold(100)
cycle = [h5py.File(path, "r")]
cycle.append(cycle)  # unreachable once dropped: only the cyclic collector frees it
del cycle
with h5py.File(RangeFile(fetch_many, len(data), readahead=512), "r") as f:
    assert f["x"][:].sum() == np.arange(50_000.0).sum()
print("done")
"""


def test_a_collection_in_a_fetching_thread_cannot_deadlock_h5py(tmp_path):
    """h5py holds its lock while it reads a RangeFile; a collector run in the thread the read
    waits on would free the h5py garbage there and wait for that lock (core.access.rangefile._CollectorPause)."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["src", os.environ.get("PYTHONPATH", "")])}
    try:
        out = subprocess.run([sys.executable, "-c", _COLLECTOR_SCRIPT, str(tmp_path / "x.h5")], env=env,
                             capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("h5py deadlocked: the collector ran in the thread a RangeFile read waited on")
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr[-2000:]
