"""Before any work: which dates of a request can have data, and what the request will move and cost.

``usable_dates`` trims a request's dates to the collections' temporal extents, read from CMR's
collection metadata (UMM-C ``TemporalExtents``, core.access.catalog.collection_extent): a date
needs ATL07 (13 October 2018 on) and at least one requested SST collection, and no date after
today (UTC) has data yet. ``estimate`` adds what CMR lists for the kept range (granule counts and
sizes, one search per collection) and the rough Lambda cost at the configured memory (README,
"How large a request may be"). No numpy, no requests: the API and Plan functions call it.

The estimate's formula (constants measured in the sandbox, bench/README.md):

    GB to move   = ATL07 granules × their mean size (each downloaded whole)
                 + L2P granules × their mean size × L2P_FETCHED_FRACTION (read in place: windows only)
    Lambda s     = dates × S_PER_DATE + ATL07 granules × S_PER_ATL07_GRANULE
    GB-s         = Lambda s × ColocateFunction memory (settings.colocate_memory_mb) / 1024
    USD          = GB-s × LAMBDA_GB_S_USD + (dates + 2) × LAMBDA_REQUEST_USD
                 + dates × TRANSITIONS_PER_DATE × SFN_TRANSITION_USD
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from core.access.catalog import TemporalExtent, collection_extent, count_granules
from core.config import Settings
from core.request import ColocationRequest

log = logging.getLogger(__name__)

# bench/README.md ("A scientist's study"): a date without data ≈ 2 s cold; a date with data
# ≈ 12 s per ATL07 granule in Lambda's network (the seed date: 25 s for 2 granules, model on)
S_PER_DATE = 2.0
S_PER_ATL07_GRANULE = 12.0
# share of an L2P granule found that is fetched: 8 of the seed's 14 read, ≤ 0.77 of each
L2P_FETCHED_FRACTION = 0.5
LAMBDA_GB_S_USD = 0.0000133334  # arm64, us-west-2, first tier (AWS Lambda pricing)
LAMBDA_REQUEST_USD = 0.20 / 1e6
SFN_TRANSITION_USD = 0.025 / 1000  # Step Functions Standard, per state transition
TRANSITIONS_PER_DATE = 6  # a Distributed Map child: start, RunDate, end (+ retries)


@dataclass
class DateTrim:
    """The dates a request asked for and the ones kept (those that can have data), and why."""

    requested: int
    kept: int
    first: str | None  # the first and last kept date (None: none kept)
    last: str | None
    reasons: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def trimmed(self) -> int:
        return self.requested - self.kept


def _bounds(request: ColocationRequest, settings: Settings, http) -> tuple[list[TemporalExtent | None], ...]:
    assert request.atl07_collection is not None  # resolved
    atl07 = collection_extent(request.atl07_collection, settings, http=http)
    sst = [collection_extent(c, settings, http=http) for c in request.collections]
    return [atl07], sst


def usable_dates(request: ColocationRequest, settings: Settings, *, http=None,
                 today: dt.date | None = None) -> tuple[list[dt.date], DateTrim]:
    """The request's dates that can have data, and what was trimmed and why. A collection whose
    extent CMR does not give trims nothing (the date's own search will tell)."""
    dates = request.dates()
    (atl07,), sst = _bounds(request, settings, http)
    today = today or dt.datetime.now(dt.UTC).date()
    limits: list[tuple[dt.date | None, dt.date | None, str]] = [(None, today, "after today (UTC): no data yet")]
    if atl07 is not None:
        limits.append((_day(atl07.start), _day(atl07.end), f"ATL07 ({atl07.collection}) {_span(atl07)}"))
    if sst and all(e is not None for e in sst):
        known = [e for e in sst if e is not None]
        starts = [_day(e.start) for e in known]
        ends = [_day(e.end) for e in known]
        lo = None if None in starts else min(d for d in starts if d)
        hi = None if None in ends else max(d for d in ends if d)
        names = ", ".join(f"{e.collection} {_span(e)}" for e in known)
        limits.append((lo, hi, f"SST ({names})"))
    kept = [d for d in dates if all((lo is None or d >= lo) and (hi is None or d <= hi) for lo, hi, _ in limits)]
    reasons = []
    for lo, hi, why in limits:
        before = sum(1 for d in dates if lo is not None and d < lo)
        after = sum(1 for d in dates if hi is not None and d > hi)
        if before:
            reasons.append(f"{before} dates before {lo}: {why}")
        if after:
            reasons.append(f"{after} dates after {hi}: {why}")
    trim = DateTrim(len(dates), len(kept), kept[0].isoformat() if kept else None,
                    kept[-1].isoformat() if kept else None, reasons)
    return kept, trim


def _day(t: dt.datetime | None) -> dt.date | None:
    return None if t is None else t.astimezone(dt.UTC).date()


def _span(e: TemporalExtent) -> str:
    start = _day(e.start)
    end = _day(e.end)
    return f"has data from {start or 'its start'}" + (f" to {end}" if end else " on")


@dataclass
class Estimate:
    """What a request will move and cost (README, "How large a request may be")."""

    dates: int
    atl07_granules: int | None
    sst_granules: int | None
    gb_to_move: float | None
    lambda_gb_s: float | None
    usd: float | None
    memory_mb: int
    trim: DateTrim
    notes: list[str] = field(default_factory=list)
    kept_dates: list[dt.date] = field(default_factory=list, repr=False)  # not in the document

    def document(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("kept_dates")
        out["trim"] = self.trim.document()
        return out

    def exceeds(self, gb: float) -> bool:
        return self.gb_to_move is not None and self.gb_to_move > gb

    def summary(self) -> str:
        """One line a user reads before a run."""
        def num(v: float | int | None, fmt: str) -> str:
            return "unknown" if v is None else format(v, fmt)

        text = (f"{self.dates} dates, {num(self.atl07_granules, ',')} ATL07 and {num(self.sst_granules, ',')} "
                f"L2P granules, ≈ {num(self.gb_to_move, ',.1f')} GB to move, ≈ {num(self.lambda_gb_s, ',.0f')} "
                f"Lambda GB-s at {self.memory_mb} MB ≈ ${num(self.usd, ',.2f')}")
        if self.trim.trimmed:
            text += f"; {self.trim.trimmed} of {self.trim.requested} dates trimmed ({'; '.join(self.trim.reasons)})"
        return text


def estimate(request: ColocationRequest, settings: Settings, *, http=None,
             today: dt.date | None = None) -> Estimate:
    """The pre-flight estimate of a resolved request: one CMR collection search per collection
    (extents) and one granule search per collection over the kept dates."""
    kept, trim = usable_dates(request, settings, http=http, today=today)
    est = Estimate(dates=len(kept), atl07_granules=0, sst_granules=0, gb_to_move=0.0, lambda_gb_s=0.0, usd=0.0,
                   memory_mb=settings.colocate_memory_mb, trim=trim, kept_dates=kept)
    if not kept:
        return est
    start, end = request.window(kept[0])[0], request.window(kept[-1])[1]
    assert request.atl07_collection is not None
    box = (request.bbox[0], request.bbox[1], request.bbox[2], request.bbox[3])
    atl07 = count_granules(request.atl07_collection, box, start, end, settings, http=http)
    sst = [count_granules(c, box, start, end, settings, http=http) for c in request.collections]
    if atl07 is None or any(s is None for s in sst):
        est.atl07_granules = est.sst_granules = None
        est.gb_to_move = est.lambda_gb_s = est.usd = None
        est.notes.append("CMR could not be asked: granule counts unknown")
        return est
    est.atl07_granules = atl07.hits
    est.sst_granules = sum(s.hits for s in sst if s)
    moved = atl07.hits * atl07.mean_bytes + sum(s.hits * s.mean_bytes for s in sst if s) * L2P_FETCHED_FRACTION
    est.gb_to_move = round(moved / 1e9, 3)
    seconds = len(kept) * S_PER_DATE + atl07.hits * S_PER_ATL07_GRANULE
    est.lambda_gb_s = round(seconds * settings.colocate_memory_mb / 1024, 1)
    est.usd = round(est.lambda_gb_s * LAMBDA_GB_S_USD + (len(kept) + 2) * LAMBDA_REQUEST_USD
                    + len(kept) * TRANSITIONS_PER_DATE * SFN_TRANSITION_USD, 4)
    return est


def refusal(est: Estimate, limit_gb: float) -> dict[str, Any]:
    """The API's 413 body: the limit, the estimate, and what to do."""
    return {"error": f"request too large: ≈ {est.gb_to_move:,.1f} GB to move, above the limit of {limit_gb:,g} GB "
                     "(COLOC_REQUEST_MAX_GB); split it into smaller boxes or shorter ranges",
            "limit_gb": limit_gb, "estimate": est.document()}
