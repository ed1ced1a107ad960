"""The colocate function's dates: a direct event's tasks, a Map item's task, one date run.

Nothing here imports the pipeline before a date runs: validating an event stays light.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from core.access.catalog import check_collections
from core.config import Settings
from core.errors import DateTaskFailed, InputError, InvalidTaskError
from core.request import DateTask, error_fields, parse_request

if TYPE_CHECKING:
    from core.manifest import DateResult
    from core.pipeline.services import Services


def is_task_item(event: Any) -> bool:
    return isinstance(event, dict) and "request" in event and "date" in event


def direct_tasks(event: Any, settings: Settings) -> list[DateTask]:
    """Validate a direct event into its date tasks (raises ValidationError / InputError)."""
    request = parse_request(event, settings)
    dates = request.dates()
    if len(dates) > settings.max_direct_dates:
        raise InputError(
            f"end: the range covers {len(dates)} days; direct invocation handles at most "
            f"{settings.max_direct_dates} — start the state machine (POST /colocations) for longer ranges",
            "end",
        )
    check_collections(request, settings)  # CMR answers an unknown collection with zero hits, not an error
    return [DateTask(request, d) for d in dates]


def item_task(event: Any, settings: Settings | None = None) -> DateTask:
    """A Map item's task; a bad item is a bug in the plan step: fail this item, never retry it.
    ``settings`` give the request its job-id key (the key never travels in the item)."""
    try:
        task = DateTask.from_item(event)
    except (ValidationError, InputError) as exc:
        raise InvalidTaskError(str(error_fields(exc))[:500]) from None
    return task if settings is None else DateTask(task.request.with_job_key(settings), task.date)


def run_date(task: DateTask, services: Callable[[], Services],
             clock: Callable[[], float] = time.monotonic, *, with_outputs: bool = True) -> tuple[DateResult, float]:
    """Run one date (or find it published): what travels back to the caller / the Map (keys and
    numbers only, the manifest is on S3; a Map item's without the product keys, which grow with
    the date's granules), and the seconds it took from the services on (a cold start's pipeline
    import is not the date's)."""
    from core.pipeline.task import run_task  # heavy imports stay off the validation path

    t0 = clock()
    built = services()
    manifest = run_task(task, built)
    seconds = clock() - t0
    return manifest.result(built.output.manifest_key(task.request_id, task.date.isoformat()),
                           with_outputs=with_outputs), seconds


def check_complete(task: DateTask, result: dict) -> dict:
    """A Map item's result; a failed date raises for the Map's Catch to record."""
    if result.get("status") == "failed":
        raise DateTaskFailed(f"{task.date.isoformat()}: {result.get('error', 'failed')}"[:500])
    return result
