"""A request → the dates it runs as (one task per UTC date)."""
from __future__ import annotations

from core.request import ColocationRequest, DateTask


def plan(request: ColocationRequest) -> list[DateTask]:
    """One task per UTC date the (resolved) request touches."""
    if not request.is_resolved:
        raise ValueError("plan() needs a resolved request (ColocationRequest.resolve(settings))")
    return [DateTask(request, day) for day in request.dates()]
