"""Plan: a request's dates, and the dates an attempt of its job must still run.

Dates no collection can have data for (before ATL07's first, after today, outside every SST
collection's extent: core.jobs.preflight) are trimmed, and the plan says how many and why
(``trim``, which Summarize and the job status carry on). A date is done iff its manifest is in
the output bucket (core.results), so a second attempt of
a job (docs/RERUNS.md) runs only the dates the earlier attempts did not publish. The mode
depends on the size of the request, not on what is left of it: every attempt of a job takes
the same path through the state machine.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

from pydantic import ValidationError

from core.config import Settings
from core.errors import InputError, InvalidTaskError
from core.jobs.preflight import usable_dates
from core.request import ColocationRequest, DateTask, error_fields, is_provisional
from core.results import OutputStore

# An inline Map's history grows ~6 events per date (25,000 max per execution) and its result
# array travels in the state payload (256 KiB): long ranges go through the Distributed Map.
INLINE_MAX_DATES = 60


def inline_max_dates() -> int:
    return int(os.environ.get("INLINE_MAX_DATES", INLINE_MAX_DATES))


def plan(request: ColocationRequest) -> list[DateTask]:
    """One task per UTC date the (resolved) request touches."""
    if not request.is_resolved:
        raise ValueError("plan() needs a resolved request (ColocationRequest.resolve(settings))")
    return [DateTask(request, day) for day in request.dates()]


def make_plan(event: Any, settings: Settings, store: OutputStore) -> dict:
    """The Plan step's output: the resolved request, its counts, and the pending dates inline or
    written to the bucket for the Distributed Map's ItemReader."""
    try:
        request = ColocationRequest.model_validate(event).resolve(settings)
    except (ValidationError, InputError) as exc:
        raise InvalidTaskError(json.dumps(error_fields(exc))[:1000]) from None
    request_id = request.request_id()
    # only the dates that can have data: the collections' temporal extents (CMR) and today
    kept, trim = usable_dates(request, settings)
    dates = [d.isoformat() for d in kept]
    done = store.published_dates(request_id)
    # a date too recent for its result to be final (is_provisional) runs again on every attempt
    pending = [d for d in dates if d not in done or is_provisional(dt.date.fromisoformat(d), settings)]
    out: dict[str, Any] = {"request_id": request_id, "request": request.canonical(), "count": len(dates),
                           "done": len(dates) - len(pending), "pending": len(pending), "trim": trim.document()}
    if len(dates) <= inline_max_dates():
        out.update(mode="inline", dates=pending)
        return out
    out.update(mode="distributed", plan={"bucket": store.bucket, "key": store.put_plan(request_id, pending)})
    return out
