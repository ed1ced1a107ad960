"""Direct invocation and the Step Functions per-date task.

Direct: ``{"bbox": [W,S,E,N], "date": "YYYY-MM-DD"}`` (or ``start``/``end``, optional
parameters) → one manifest per date, at most ``settings.max_direct_dates`` dates.
Step Functions: ``{"request": {...}, "date": "YYYY-MM-DD"}`` → that date's manifest; failures
raise typed exceptions (class name = Lambda errorType) for the Map's Retry/Catch.
"""
from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from core.access.catalog import check_collections
from core.errors import ColocationError, InputError
from core.request import DateTask, error_fields, parse_request
from handlers.runtime import (
    DateTaskFailed,
    InvalidTaskError,
    error_body,
    logger,
    metrics,
    output_store,
    settings,
    tracer,
)

_services = None


def _get_services():
    # built once per container: HTTP session, credentials cache and S3 clients are reused
    global _services
    if _services is None:
        from core.pipeline.services import build_services  # heavy imports stay off the validation path

        _services = build_services(settings(), output=output_store())
    return _services


def is_task_item(event: Any) -> bool:
    return isinstance(event, dict) and "request" in event and "date" in event


def direct_tasks(event: Any) -> list[DateTask]:
    """Validate a direct event into its date tasks (raises ValidationError / InputError)."""
    cfg = settings()
    request = parse_request(event, cfg)
    dates = request.dates()
    if len(dates) > cfg.max_direct_dates:
        raise InputError(
            f"end: the range covers {len(dates)} days; direct invocation handles at most "
            f"{cfg.max_direct_dates} — start the state machine (POST /colocations) for longer ranges",
            "end",
        )
    check_collections(request, cfg)  # CMR answers an unknown collection with zero hits, not an error
    return [DateTask(request, d) for d in dates]


@tracer.capture_method
def run_one(task: DateTask) -> dict:
    from core.pipeline import task as pipeline

    t0 = time.monotonic()
    services = _get_services()
    manifest = pipeline.run_task(task, services)
    metrics.add_metric(name="TaskSeconds", unit=MetricUnit.Seconds, value=time.monotonic() - t0)
    # what travels back to the caller / the Map: keys and numbers only (the manifest is on S3)
    result = manifest.result(services.output.manifest_key(task.request_id, task.date.isoformat()))
    for name, value in result.counts.items():
        metrics.add_metric(name=f"{name}", unit=MetricUnit.Count, value=value)
    for name, value in result.bytes.items():
        metrics.add_metric(name=f"{name}_bytes", unit=MetricUnit.Bytes, value=value)
    logger.info("date done", extra={"date": result.date, "status": result.status,
                                    "cached": result.cached, "counts": result.counts})
    return result.document()


def _handle_direct(event: Any) -> dict:
    try:
        tasks = direct_tasks(event)
    except (ValidationError, InputError) as exc:
        logger.info("invalid direct event", extra={"fields": error_fields(exc)})
        return error_body(exc)
    logger.set_correlation_id(tasks[0].request_id)
    results = []
    for task in tasks:
        try:
            results.append(run_one(task))
        except ColocationError as exc:
            logger.warning("date failed", extra={"date": task.date.isoformat(), "error": type(exc).__name__})
            results.append({"request_id": task.request_id, "date": task.date.isoformat(),
                            "status": "failed", **error_body(exc)})
    return {"request_id": tasks[0].request_id, "dates": results}


def _handle_task(event: dict) -> dict:
    try:
        task = DateTask.from_item(event)
    except (ValidationError, InputError) as exc:
        # a bad item is a bug in the plan step: fail this item, never retry it
        raise InvalidTaskError(str(error_fields(exc))[:500]) from None
    logger.set_correlation_id(task.request_id)
    logger.append_keys(date=task.date.isoformat())
    manifest = run_one(task)  # ColocationError subclasses propagate by name (UpstreamError, ...)
    if manifest.get("status") == "failed":
        raise DateTaskFailed(f"{task.date.isoformat()}: {manifest.get('error', 'failed')}"[:500])
    return manifest


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict:
    if is_task_item(event):
        return _handle_task(event)
    return _handle_direct(event)
