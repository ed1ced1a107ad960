"""Direct invocation and the Step Functions per-date task.

Direct: ``{"bbox": [W,S,E,N], "date": "YYYY-MM-DD"}`` (or ``start``/``end``, optional
parameters) → one manifest per date, at most ``settings.max_direct_dates`` dates.
Step Functions: ``{"request": {...}, "date": "YYYY-MM-DD"}`` → that date's manifest; failures
raise typed exceptions (class name = Lambda errorType) for the Map's Retry/Catch.
"""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from core.errors import ColocationError, InputError
from core.jobs import date_tasks
from core.request import DateTask, error_fields
from handlers.runtime import error_body, logger, metrics, services, settings, tracer


@tracer.capture_method
def run_one(task: DateTask, *, with_outputs: bool = True) -> dict:
    result, seconds = date_tasks.run_date(task, services, with_outputs=with_outputs)
    metrics.add_metric(name="TaskSeconds", unit=MetricUnit.Seconds, value=seconds)
    for name, value in result.counts.items():
        metrics.add_metric(name=f"{name}", unit=MetricUnit.Count, value=value)
    for name, value in result.bytes.items():
        metrics.add_metric(name=f"{name}_bytes", unit=MetricUnit.Bytes, value=value)
    logger.info("date done", extra={"date": result.date, "status": result.status,
                                    "cached": result.cached, "counts": result.counts})
    return result.document()


def _handle_direct(event: Any) -> dict:
    try:
        tasks = date_tasks.direct_tasks(event, settings())
    except (ValidationError, InputError) as exc:
        logger.info("invalid direct event", extra={"fields": error_fields(exc)})
        return error_body(exc)
    logger.set_correlation_id(tasks[0].request_id)
    results = []
    for task in tasks:
        try:
            results.append(run_one(task))
        except Exception as exc:  # noqa: BLE001 - one date's failure must not lose the others' answers
            if isinstance(exc, ColocationError):
                logger.warning("date failed", extra={"date": task.date.isoformat(), "error": type(exc).__name__})
            else:
                logger.exception("date failed", extra={"date": task.date.isoformat()})
            # error_body: the named error's one line (no internal path), or "internal error"
            results.append({"request_id": task.request_id, "date": task.date.isoformat(),
                            "status": "failed", **error_body(exc)})
    # the keys of every date are in this bucket (named: a caller holds keys, not URLs)
    return {"request_id": tasks[0].request_id, "bucket": settings().output_bucket, "dates": results}


def _handle_task(event: dict) -> dict:
    task = date_tasks.item_task(event, settings())
    logger.set_correlation_id(task.request_id)
    logger.append_keys(date=task.date.isoformat())
    # ColocationError subclasses propagate by name (UpstreamError, ...)
    # a Map item's answer: keys and counts that do not grow with the date's granules
    return date_tasks.check_complete(task, run_one(task, with_outputs=False))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict:
    if date_tasks.is_task_item(event):
        return _handle_task(event)
    return _handle_direct(event)
