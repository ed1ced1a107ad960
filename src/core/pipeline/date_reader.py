"""One date's inputs read with the network kept busy, each ATL07 granule handed on as soon as
every L2P window it pairs with is read.

ATL07 granules download one after another in a thread (each as parallel ranged GETs) while this
thread reads the one before (or are read in place). Meanwhile every L2P granule that CMR's ATL07
time extents reach within ±Δt is opened side by side (``settings.l2p_parallel``): its HDF5
metadata and latitude, which need no segment. An L2P granule is located and windowed once every
ATL07 granule that can reach it is read, for the segments of all of them within its ±Δt, so
each L2P granule is read once however many ATL07 granules it pairs with, and the first ATL07
granule's products are made (in a thread of their own, one granule at a time, in order) while
the next downloads.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from core.access.cmr import Granule
from core.manifest import DroppedGranule
from core.model import Atl07Granule, SstSwath
from core.pipeline.atl07_inputs import Atl07Read, fetch_atl07, read_downloaded
from core.pipeline.date_context import DateContext, np_utc
from core.pipeline.services import preload
from core.pipeline.sst_granules import open_for_date, read_window, time_candidates
from core.science.l2p import L2PGranule
from core.science.pairing import SstWindow, restrict_to_window

# on_ready(granule, its segments, the windows of the L2P granules within its ±Δt)
OnReady = Callable[[Granule, Atl07Read, list[SstWindow]], None]


def might_reach(sst: Granule, atl07: Granule, max_dt: timedelta) -> bool:
    """By CMR's extents: a superset of the exact test on segment times; no extent, no ruling out."""
    return ((sst.start is None or atl07.end is None or sst.start - max_dt <= atl07.end)
            and (sst.end is None or atl07.start is None or sst.end + max_dt >= atl07.start))


class DateReader:
    """The state of one date's reads, in named fields instead of closures.

    ``read()`` runs three pools: ``fetcher`` downloads ATL07 granules in order, ``l2p`` opens and
    windows L2P granules side by side, ``publisher`` makes each granule's products in order
    (``on_ready``). It returns the L2P granules not colocated and why.

    Memory stays flat in the number of granules (bench/README.md, "A scientist's study"): one
    ATL07 granule downloads while the one before is read (never the whole date ahead); a
    granule's segments are let go once its product is handed on (at most one waits behind the
    one being made); an L2P granule is closed (file, latitude) once its last window is read, and
    its window let go once every ATL07 granule it reaches has been handed on."""

    def __init__(self, atl07: list[Granule], sst: list[Granule], ctx: DateContext, workdir: Path,
                 on_ready: OnReady):
        self.atl07, self.sst, self.ctx, self.workdir, self.on_ready = atl07, sst, ctx, workdir, on_ready
        max_dt = timedelta(seconds=ctx.science.max_dt_s)
        self.reach_cmr = {s.title: {a.title for a in atl07 if might_reach(s, a, max_dt)} for s in sst}
        self.by_title = {g.title: g for g in sst}
        self.read_titles: set[str] = set()  # ATL07 granules read so far
        self.waiting: list[tuple[Granule, Atl07Read]] = []  # read, not yet handed on (in read order)
        self.candidates: dict[str, list[Granule]] = {}  # ATL07 title -> the L2P granules within its ±Δt
        # L2P title -> (ATL07 title, segments) of the granules its next window is read for
        self.reaching: dict[str, list[tuple[str, Atl07Granule]]] = {}
        self.opening: dict[str, Future[L2PGranule]] = {}
        self.opened: set[str] = set()  # every L2P granule opened (its metadata and latitude read)
        self.closed: set[int] = set()  # ids of the L2PGranule objects closed after their last window
        # L2P title -> (the ATL07 granules it was read for, its window; None: no pixel reaches a segment)
        self.windows: dict[str, tuple[frozenset[str], Future[SstSwath | None]]] = {}
        self.final: set[str] = set()  # L2P granules whose window no later ATL07 granule changes
        self.swaths: dict[str, SstSwath | None] = {}  # windows of ATL07 granules not yet all handed on
        self.had_window: dict[str, bool] = {}  # L2P title -> whether a window reached a segment
        self.handed: set[str] = set()
        self.fetches: list[Future[Atl07Read | Path]] = []
        self.published: list[Future[None]] = []
        self.failed = threading.Event()  # a product failed: the date fails, nothing more is made
        self._l2p: ThreadPoolExecutor | None = None
        self._fetcher: ThreadPoolExecutor | None = None
        self._publisher: ThreadPoolExecutor | None = None

    def read(self) -> list[DroppedGranule]:
        preload(self.ctx.services.settings)
        try:
            # products are made in their own thread, one at a time in the order the granules are
            # ready, so that this thread reads the next ATL07 granule (and asks for its L2P
            # windows) as soon as it is downloaded instead of after the previous upload
            with ThreadPoolExecutor(max_workers=self.ctx.services.settings.l2p_parallel,
                                    thread_name_prefix="l2p") as self._l2p, \
                    ThreadPoolExecutor(max_workers=1, thread_name_prefix="atl07") as self._fetcher, \
                    ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish") as self._publisher:
                self.opening.update({t: self._l2p.submit(self._open, t)
                                     for t, reach in self.reach_cmr.items() if reach})
                self._read_all()
        finally:
            self._close_opened()
        return self._dropped()

    def _fetch_until(self, index: int) -> None:
        """Downloads asked for up to granule ``index``: one ahead of the read, not the whole date
        (a date of 16 granules would otherwise hold them all on disk, or in memory read in place)."""
        assert self._fetcher is not None
        while len(self.fetches) <= min(index, len(self.atl07) - 1):
            self.fetches.append(self._fetcher.submit(fetch_atl07, self.atl07[len(self.fetches)], self.ctx,
                                                     self.workdir))

    def _read_all(self) -> None:
        try:
            for i, granule in enumerate(self.atl07):
                self._fetch_until(i + 1)
                got = self.fetches[i].result()
                self._take(granule, read_downloaded(granule, got, self.ctx) if isinstance(got, Path) else got)
                del got
                self._advance(all_read=False)
            self._advance(all_read=True)
            for product in self.published:
                product.result()
        except BaseException:
            self.failed.set()
            pending: list[Future[Any]] = [*self.fetches, *self.opening.values()]
            for future in pending:
                future.cancel()
            raise

    def _take(self, granule: Granule, atl07_read: Atl07Read) -> None:
        """One more ATL07 granule read: its segments in the date's window, and the L2P granules it reaches."""
        restrict_to_window(atl07_read.granule, np_utc(self.ctx.lo), np_utc(self.ctx.hi))
        self.read_titles.add(granule.title)
        self.waiting.append((granule, atl07_read))
        if any(len(b) for b in atl07_read.granule.beams):
            self.candidates[granule.title] = time_candidates(atl07_read.granule, self.sst, self.ctx.science.max_dt_s)
            for sst in self.candidates[granule.title]:
                self.reaching.setdefault(sst.title, []).append((granule.title, atl07_read.granule))

    def _advance(self, all_read: bool) -> None:
        """Window every L2P granule whose reaching ATL07 granules are all read, hand on every ATL07
        granule whose windows are all asked for, let go of what no granule still needs, and fail
        now if a product failed."""
        for title, pairs in self.reaching.items():
            if pairs and (all_read or self.reach_cmr[title] <= self.read_titles):
                self._read_window(title, pairs)
        for granule, atl07_read in list(self.waiting):
            if self._windows_asked(granule.title):
                self._hand_on(granule, atl07_read)
        self._release()
        for product in self.published:  # a product that failed fails the date now, not after the next download
            if product.done() and product.exception() is not None:
                product.result()

    def _read_window(self, title: str, pairs: list[tuple[str, Atl07Granule]]) -> None:
        names = frozenset(a for a, _ in pairs)
        if title in self.windows and self.windows[title][0] == names:
            return
        assert self._l2p is not None
        if title not in self.opening:  # no CMR extent matched, or closed after its last window: opened now
            self.opening[title] = self._l2p.submit(self._open, title)
        if title in self.windows:  # reached by one more ATL07 granule than CMR's extents said:
            self.windows[title][1].result()  # one read of an open granule at a time, then again
            if title in self.final:  # closed after what was to be its last window: opened again
                self.opening[title] = self._l2p.submit(self._open, title)
        # no ATL07 granule still to read can reach it (by CMR's extents): its last window
        final = self.reach_cmr[title] <= self.read_titles
        if final:
            self.final.add(title)
        self.windows[title] = names, self._l2p.submit(self._window, title, self.opening[title],
                                                      [g for _, g in pairs], final)

    def _open(self, title: str) -> L2PGranule:
        granule = open_for_date(self.by_title[title], self.ctx)
        self.opened.add(title)
        return granule

    def _window(self, title: str, opening: Future[L2PGranule], segments: list[Atl07Granule],
                final: bool) -> SstSwath | None:
        granule = opening.result()
        try:
            return read_window(self.by_title[title], granule, segments, self.ctx)
        finally:
            if final:  # its latitude and file are let go now, not when the date ends
                self.closed.add(id(granule))
                with contextlib.suppress(Exception):
                    granule.close()

    def _windows_asked(self, atl07_title: str) -> bool:
        return all(c.title in self.windows and atl07_title in self.windows[c.title][0]
                   for c in self.candidates.get(atl07_title, []))

    def _hand_on(self, granule: Granule, atl07_read: Atl07Read) -> None:
        cands = self.candidates.get(granule.title, [])
        for c in cands:
            self.swaths[c.title] = self.windows[c.title][1].result()
            self.had_window[c.title] = self.had_window.get(c.title, False) or self.swaths[c.title] is not None
        self.handed.add(granule.title)
        self.waiting.remove((granule, atl07_read))
        # the windows as they are now: this thread may re-read one for a later granule meanwhile
        windows = [SstWindow(c.title, self.swaths[c.title], self.ctx.collection_of.get(c.title)) for c in cands]
        assert self._publisher is not None
        if len(self.published) >= 2:  # at most one product waits behind the one being made
            self.published[-2].result()
        self.published.append(self._publisher.submit(self._publish, granule, atl07_read, windows))

    def _release(self) -> None:
        """Let go of the L2P granules whose last window is read and handed to every ATL07 granule
        it reaches (the publisher holds what it still needs)."""
        for title in [t for t in self.final if t in self.windows]:
            names, window = self.windows[title]
            if window.done() and names <= self.handed:
                del self.windows[title]
                self.swaths.pop(title, None)
                self.reaching[title] = []
                self.opening.pop(title, None)  # closed by its last window's read

    def _publish(self, granule: Granule, atl07_read: Atl07Read, windows: list[SstWindow]) -> None:
        if self.failed.is_set():
            return  # an earlier product failed: the date fails with it, nothing more is made
        try:
            self.on_ready(granule, atl07_read, windows)
        except BaseException:
            self.failed.set()
            raise

    def _close_opened(self) -> None:
        for job in self.opening.values():  # every granule opened is closed, whatever happened
            if job.done() and not job.cancelled() and job.exception() is None and id(job.result()) not in self.closed:
                with contextlib.suppress(Exception):
                    job.result().close()

    def _dropped(self) -> list[DroppedGranule]:
        """The L2P granules found but not colocated, and why."""
        dt = f"{self.ctx.science.max_dt_s:g} s"
        dropped = [DroppedGranule(granule=g.title, reason=f"no segment within ±{dt} of its time span ("
                                  + ("only its metadata and latitude read" if g.title in self.opened else "not read")
                                  + ")") for g in self.sst if g.title not in self.reaching]
        for title in self.reaching:
            if not self.had_window.get(title):
                report: dict[str, Any] = self.ctx.sst_report.get(title, {})
                reason = report.get("no_window") or f"no valid pixel within {self.ctx.science.radius_m} m"
                dropped.append(DroppedGranule(granule=title, reason=reason))
        return dropped
