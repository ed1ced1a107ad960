"""A read-only file over byte-range requests that keeps what it fetched; h5py reads it as a file.

HDF5 reads an object as many small dependent reads (superblock, object headers, chunk index,
then chunks). Over a network each read that misses costs a round trip (~50 ms first byte from
S3 in-region, docs/NETWORK.md), and h5py serialises every call behind one global lock, so a
miss inside h5py stalls every thread's HDF5 work. :class:`RangeFile` therefore takes byte ranges
known in advance — from the HDF5 chunk index or a DMR++ sidecar (core.access.dmrpp) — in
:meth:`RangeFile.prefetch`, which fetches the missing parts side by side (``fetch_many``: S3 or
HTTPS ranged GETs in parallel, split into parts of at most ``max_part`` bytes so one range does
not ride one connection), and keeps them in memory; h5py's reads are then served from memory.
A read that still misses is fetched on demand, ``readahead`` bytes at least.

Bytes are fetched once per file: a range already held is never requested again
(``bytes_fetched`` / ``fetch_requests`` count what went over the network), and
:meth:`RangeFile.discard` gives memory back once a range has been decoded.
"""
from __future__ import annotations

import bisect
import contextlib
import gc
import io
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

Range = tuple[int, int]  # [start, end)
FetchMany = Callable[[Sequence[Range]], list[bytes]]

DEFAULT_READAHEAD = 64 << 10  # a metadata miss: HDF5 object headers and B-tree nodes are a few KiB
DEFAULT_MAX_PART = 4 << 20  # S3 best practice: 8-16 MB ranged GETs for throughput; smaller parts keep
# the few MB of one variable's chunks on several connections (85 MB/s each, docs/NETWORK.md)
DEFAULT_COALESCE = 8 << 10  # merge ranges this close: one request instead of two first bytes


def merge_ranges(ranges: Iterable[Range], gap: int = 0) -> list[Range]:
    """Sorted, non-overlapping ranges; ranges at most ``gap`` bytes apart become one."""
    out: list[list[int]] = []
    for start, end in sorted((int(a), int(b)) for a, b in ranges if b > a):
        if out and start <= out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(a, b) for a, b in out]


def split_ranges(ranges: Iterable[Range], max_part: int) -> list[Range]:
    """Ranges cut into parts of at most ``max_part`` bytes (same bytes, more requests in flight)."""
    out: list[Range] = []
    for start, end in ranges:
        n = max(1, -(-(end - start) // max_part))
        step = -(-(end - start) // n)
        out.extend((a, min(a + step, end)) for a in range(start, end, step))
    return out


def side_by_side(first: Callable, second: Callable) -> tuple:
    """(first(), second()) run at once: e.g. an object's size and its sidecar in one first byte."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="side-by-side") as pool:
        a, b = pool.submit(first), pool.submit(second)
        return a.result(), b.result()


class _CollectorPause:
    """Python's automatic cyclic garbage collection held off while any thread reads for h5py.

    h5py calls a Python file object with its global lock held, and a read here may wait on other
    threads (s3fs's event loop, the range pool). Were the collector to run in one of them and free
    an unreachable h5py object (one caught in a reference cycle, e.g. by a traceback), that
    object's dealloc would wait for the lock the reader holds: a deadlock. Seen in CI: the fsspec
    loop thread in ``gc_collect_main`` → h5py ``ObjectID.__dealloc__``, the reader waiting on it.
    Collection resumes (if it was on) when the last such read ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers = 0
        self._was_enabled = False

    @contextlib.contextmanager
    def __call__(self):
        with self._lock:
            if self._readers == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._readers += 1
        try:
            yield
        finally:
            with self._lock:
                self._readers -= 1
                if self._readers == 0 and self._was_enabled:
                    gc.enable()


collector_paused = _CollectorPause()


class SeekableReader(io.RawIOBase):
    """The read-only, seekable file interface h5py and xarray need, over ``_read_range(start,
    end)`` of an object of ``size`` bytes (RangeFile, core.access.httpfile's block-cached file)."""

    size: int
    loc: int = 0

    def _read_range(self, start: int, end: int) -> bytes:
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.loc

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.loc, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.loc = base + offset
        return self.loc

    def read(self, size: int | None = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self.loc + size)
        if end <= self.loc:
            return b""
        with collector_paused():  # h5py's reads come here with its lock held
            data = self._read_range(self.loc, end)
        self.loc += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


class RangeFile(SeekableReader):
    """Seekable read-only file of ``size`` bytes whose bytes come from ``fetch_many``."""

    def __init__(self, fetch_many: FetchMany, size: int, *, name: str = "", readahead: int = DEFAULT_READAHEAD,
                 max_part: int = DEFAULT_MAX_PART, coalesce: int = DEFAULT_COALESCE):
        super().__init__()
        self.fetch_many = fetch_many
        self.size = int(size)
        self.name = name
        self.readahead = int(readahead)
        # misses widened to whole aligned blocks of this size (0: not aligned): a paged HDF5 file's
        # pages (core.access.inplace.file_page_size), so a metadata miss costs one page, as HDF5's
        # own page buffer would read it
        self.align = 0
        self.max_part = int(max_part)
        self.coalesce = int(coalesce)
        self.loc = 0
        self.bytes_fetched = 0
        self.fetch_requests = 0
        self._starts: list[int] = []  # sorted starts of the held pieces (non-overlapping)
        self._pieces: dict[int, bytes] = {}
        self._lock = threading.RLock()

    # --- what is held ----------------------------------------------------------------------
    def missing(self, ranges: Iterable[Range]) -> list[Range]:
        """The parts of ``ranges`` not held, merged."""
        want = merge_ranges((max(0, a), min(self.size, b)) for a, b in ranges)
        out = []
        with self._lock:
            for start, end in want:
                pos = start
                i = max(bisect.bisect_right(self._starts, pos) - 1, 0)
                while pos < end and i < len(self._starts):
                    p0 = self._starts[i]
                    p1 = p0 + len(self._pieces[p0])
                    if p1 <= pos:
                        i += 1
                        continue
                    if p0 >= end:
                        break
                    if p0 > pos:
                        out.append((pos, p0))
                    pos = max(pos, p1)
                    i += 1
                if pos < end:
                    out.append((pos, end))
        return out

    def held_bytes(self) -> int:
        with self._lock:
            return sum(len(p) for p in self._pieces.values())

    def _store(self, start: int, data: bytes) -> None:
        # callers only store what missing() returned: never overlaps a held piece
        i = bisect.bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._pieces[start] = data

    # --- fetching ------------------------------------------------------------------------
    def prefetch(self, ranges: Iterable[Range]) -> int:
        """Fetch the parts of ``ranges`` not held yet, side by side; returns the bytes fetched."""
        todo = split_ranges(merge_ranges(self.missing(ranges), self.coalesce), self.max_part)
        if not todo:
            return 0
        # ranges merged across a gap re-fetch nothing held: the gap is at most `coalesce` of
        # bytes not held yet, but may touch held pieces; keep only what is still missing
        todo = [r for part in todo for r in self.missing([part])]
        datas = self.fetch_many(todo)
        got = 0
        with self._lock:
            for (start, end), data in zip(todo, datas, strict=True):
                if len(data) != end - start:
                    raise OSError(f"{self.name}: range {start}-{end - 1} returned {len(data)} bytes")
                self._store(start, data)
                got += len(data)
            self.bytes_fetched += got
            self.fetch_requests += len(todo)
        return got

    def discard(self, ranges: Iterable[Range]) -> None:
        """Forget the held bytes inside ``ranges`` (decoded already); a piece reaching outside
        them keeps its outside parts (ranges fetched together were merged into one piece)."""
        drop = merge_ranges(ranges)
        if not drop:
            return
        with self._lock:
            starts, pieces = [], {}
            for start in self._starts:
                data = self._pieces[start]
                end = start + len(data)
                pos = start
                for a, b in drop[max(bisect.bisect_right(drop, (start, start)) - 1, 0):]:
                    if a >= end:
                        break
                    if b <= pos:
                        continue
                    if a > pos:
                        starts.append(pos)
                        pieces[pos] = data[pos - start: a - start]
                    pos = max(pos, b)
                if pos < end:
                    starts.append(pos)
                    pieces[pos] = data if pos == start else data[pos - start:]
            self._starts, self._pieces = starts, pieces

    def _read_range(self, start: int, end: int) -> bytes:
        misses = self.missing([(start, end)])
        if misses:
            # on demand: at least `readahead` bytes from each miss (whole aligned blocks when
            # `align`), never past the file's end
            if self.align:
                misses = [(a - a % self.align, b + -b % self.align) for a, b in misses]
            self.prefetch([(a, max(b, min(a + self.readahead, self.size))) for a, b in misses])
        with self._lock:
            i = max(bisect.bisect_right(self._starts, start) - 1, 0)
            out = bytearray()
            pos = start
            while pos < end:
                p0 = self._starts[i]
                piece = self._pieces[p0]
                if p0 + len(piece) <= pos:
                    i += 1
                    continue
                if p0 > pos:  # prefetch above left a hole: a fetcher returned short without raising
                    raise OSError(f"{self.name}: bytes {pos}-{p0 - 1} missing after fetching")
                take = piece[pos - p0: end - p0]
                out += take
                pos += len(take)
                i += 1
            return bytes(out)


__all__ = ["RangeFile", "SeekableReader", "merge_ranges", "side_by_side", "split_ranges"]
