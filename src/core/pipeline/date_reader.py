"""One date's inputs read with the network kept busy, each ATL07 granule handed on as soon as
every L2P window it pairs with is read.

ATL07 granules download one after another in a thread (each as parallel ranged GETs) while this
thread reads the one before (or are read in place). Meanwhile every L2P granule that CMR's ATL07
time extents reach within ±Δt is opened side by side (``settings.l2p_parallel``): its HDF5
metadata and latitude, which need no segment. An L2P granule is located and windowed once every
ATL07 granule that can reach it is read, for the segments of all of them within its ±Δt, so
each L2P granule is read once however many ATL07 granules it pairs with (unless more than
``MAX_WAITING`` ATL07 granules would wait for it: then again for the later ones), and the first ATL07
granule's products are made (in a thread of their own, one granule at a time, in order) while
the next downloads.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.access.cmr import Granule
from core.errors import InputError, one_line
from core.manifest import DroppedGranule
from core.model import Atl07Granule, SstSwath
from core.pipeline.atl07_inputs import Atl07Read, fetch_atl07, read_downloaded, use_direct_access
from core.pipeline.date_context import DateContext, np_utc
from core.pipeline.services import preload
from core.pipeline.sst_granules import open_for_date, read_window, time_candidates
from core.science.atl07 import NO_TIME
from core.science.l2p import L2PGranule
from core.science.pairing import SstWindow, restrict_to_window

# at most this many ATL07 granules' segments wait for their L2P windows (DateReader._advance)
MAX_WAITING = 2
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
    one being made); an L2P granule is closed (file, latitude) once its window is read, and its
    window let go once every ATL07 granule it was read for has been handed on."""

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
        # L2P granules opened ahead of their window (metadata and latitude, ~50 MB each while open),
        # a few at once (_open_ahead), in the order the ATL07 granules reaching them come
        self.to_open = sorted((t for t, reach in self.reach_cmr.items() if reach),
                              key=lambda t: (min(i for i, a in enumerate(atl07) if a.title in self.reach_cmr[t]),
                                             self.by_title[t].start or datetime.min.replace(tzinfo=UTC), t))
        self.live: set[str] = set()  # opened (or opening) and not yet closed
        self.submitted: set[str] = set()
        self.lock = threading.Lock()  # opening and live change in the l2p threads too
        self.opened: set[str] = set()  # every L2P granule opened (its metadata and latitude read)
        self.closed: set[int] = set()  # ids of the L2PGranule objects closed after their last window
        # L2P title -> (the ATL07 granules it was read for, its window; None: no pixel reaches a segment)
        self.windows: dict[str, tuple[frozenset[str], Future[SstSwath | None]]] = {}
        self.swaths: dict[str, SstSwath | None] = {}  # windows of ATL07 granules not yet all handed on
        self.had_window: dict[str, bool] = {}  # L2P title -> whether a window reached a segment
        self.handed: set[str] = set()
        # L2P title -> why the DAAC's file cannot be colocated (a broken upstream granule, e.g. a
        # lon grid unlike lat's): dropped with its reason, never the caller's error
        self.broken: dict[str, str] = {}
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
                    ThreadPoolExecutor(max_workers=self._atl07_workers(),
                                       thread_name_prefix="atl07") as self._fetcher, \
                    ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish") as self._publisher:
                self._open_ahead()
                self._read_all()
        finally:
            self._close_opened()
        return self._dropped()

    def _atl07_workers(self) -> int:
        """Downloads one at a time (the first granule's segments come sooner, the bandwidth is
        shared anyway); reads in place two side by side, as far as _fetch_until asks ahead: each is
        a few waves of small GETs (a paged granule: ~18 MB in 4 waves), whose round trips then
        overlap (issue 26), while a date's memory stays that of two granules (issue 23)."""
        with contextlib.suppress(InputError):  # raised again, for its granule, by fetch_atl07
            if self.atl07 and all(use_direct_access(g, self.ctx.services.settings) for g in self.atl07):
                return 2
        return 1

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
            with self.lock:
                pending: list[Future[Any]] = [*self.fetches, *self.opening.values()]
            for future in pending:
                future.cancel()
            raise

    def _take(self, granule: Granule, atl07_read: Atl07Read) -> None:
        """One more ATL07 granule read: its segments in the date's window, and the L2P granules it reaches."""
        untimed = [w for w in atl07_read.granule.warnings if NO_TIME in w]
        if untimed:  # the reader dropped segments without time: not a silent empty date
            empty = not any(len(b) for b in atl07_read.granule.beams)
            self.ctx.warn(f"{granule.title}: {'; '.join(untimed)}"
                          + (" (the granule has no usable time)" if empty else ""))
        restrict_to_window(atl07_read.granule, np_utc(self.ctx.lo), np_utc(self.ctx.hi))
        self.read_titles.add(granule.title)
        self.waiting.append((granule, atl07_read))
        if any(len(b) for b in atl07_read.granule.beams):
            self.candidates[granule.title] = time_candidates(atl07_read.granule, self.sst, self.ctx.science.max_dt_s)
            for sst in self.candidates[granule.title]:
                self.reaching.setdefault(sst.title, []).append((granule.title, atl07_read.granule))

    def _advance(self, all_read: bool) -> None:
        """Window every L2P granule whose reaching ATL07 granules are all read (or every one with a
        segment waiting, once MAX_WAITING ATL07 granules wait), hand on every ATL07 granule whose
        windows are all asked for, let go of what no granule still needs, and fail now if a product
        failed."""
        # an L2P granule is read once for every ATL07 granule CMR says it reaches, unless that
        # would hold more than MAX_WAITING granules' segments: then it is read again for the rest
        force = all_read or len(self.waiting) >= MAX_WAITING
        for title, pairs in self.reaching.items():
            if pairs and (force or self.reach_cmr[title] <= self.read_titles):
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
        if title in self.windows:  # reached by one more ATL07 granule than CMR's extents said:
            self.windows[title][1].result()  # one read of a granule at a time, then again
        self.submitted.add(title)  # not to be opened ahead any more
        with self.lock:
            opening = self.opening.get(title)
        # (not opened ahead: opened, windowed and closed in one job, so that an L2P granule is open
        # only while it is read; another window of it later opens it again)
        self.windows[title] = names, self._l2p.submit(self._window, title, opening, [g for _, g in pairs])

    def _submit_open(self, title: str) -> None:
        assert self._l2p is not None
        self.submitted.add(title)
        with self.lock:
            self.live.add(title)
            self.opening[title] = self._l2p.submit(self._open, title)

    def _open_ahead(self) -> None:
        """Open the next L2P granules (metadata, latitude) while the network would idle: at most
        half l2p_parallel ahead of their windows (each ~50 MB while open; the windows being read
        hold as many again), never the hundreds a whole-Arctic day finds."""
        budget = max(1, self.ctx.services.settings.l2p_parallel // 2)
        while self.to_open and len(self.live) < budget:  # (self.live shrinks in the l2p threads)
            title = self.to_open.pop(0)
            if title not in self.submitted:
                self._submit_open(title)

    def _open(self, title: str) -> L2PGranule:
        granule = open_for_date(self.by_title[title], self.ctx)
        self.opened.add(title)
        return granule

    def _window(self, title: str, opening: Future[L2PGranule] | None,
                segments: list[Atl07Granule]) -> SstSwath | None:
        granule: L2PGranule | None = None
        try:
            granule = self._open(title) if opening is None else opening.result()
            return read_window(self.by_title[title], granule, segments, self.ctx)
        except InputError as exc:
            self._drop_broken(title, exc)
            return None
        finally:  # its latitude and file are let go now, not when the date ends
            if granule is not None:
                self.closed.add(id(granule))
                with contextlib.suppress(Exception):
                    granule.close()
            with self.lock:  # nothing holds the granule (~50 MB of location arrays) any more
                if opening is not None and self.opening.get(title) is opening:
                    del self.opening[title]
                self.live.discard(title)

    def _drop_broken(self, title: str, exc: InputError) -> None:
        """A DAAC's file that is not a usable L2P granule (the science readers' InputError, e.g. a
        lon grid unlike lat's) is upstream's fault, never the caller's: dropped with the reason."""
        with self.ctx.lock:
            self.broken.setdefault(title, f"unusable L2P granule (upstream): {one_line(exc)}")
        self.ctx.warn(f"{title}: {self.broken[title]}; skipped")

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
        """Let go of the L2P windows handed to every ATL07 granule they were read for (the
        publisher holds what it still needs), and close the granules opened ahead that no segment
        reaches; open the next ones ahead."""
        for title in list(self.windows):
            names, window = self.windows[title]
            if window.done() and names <= self.handed:
                del self.windows[title]
                self.swaths.pop(title, None)
                self.reaching[title] = [p for p in self.reaching[title] if p[0] not in names]
        with self.lock:
            unreached = [t for t in self.live if t not in self.reaching and self.reach_cmr[t] <= self.read_titles]
            for title in unreached:
                job = self.opening[title]  # opened, and no segment of the ATL07 granules CMR matched reaches it
                if job.done():
                    self._close(job)
                    del self.opening[title]
                    self.live.discard(title)
        self._open_ahead()

    def _publish(self, granule: Granule, atl07_read: Atl07Read, windows: list[SstWindow]) -> None:
        if self.failed.is_set():
            return  # an earlier product failed: the date fails with it, nothing more is made
        try:
            self.on_ready(granule, atl07_read, windows)
        except BaseException:
            self.failed.set()
            raise

    def _close_opened(self) -> None:
        with self.lock:
            jobs = list(self.opening.values())
        for job in jobs:  # every granule opened is closed, whatever happened
            self._close(job)

    def _close(self, job: Future[L2PGranule]) -> None:
        if job.done() and not job.cancelled() and job.exception() is None and id(job.result()) not in self.closed:
            self.closed.add(id(job.result()))
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
                reason = (self.broken.get(title) or report.get("no_window")
                          or f"no valid pixel within {self.ctx.science.radius_m} m")
                dropped.append(DroppedGranule(granule=title, reason=reason))
        return dropped
