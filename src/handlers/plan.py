"""State machine step 1: validate the request and list the dates this attempt must run.

Output (small: parameters and keys, never data):
  {"request_id", "request": {...resolved...}, "count": n (all dates), "done": dates already
  published, "pending": dates to run, "mode": "inline", "dates": [...pending...]}
  or, above INLINE_MAX_DATES dates in the request, "mode": "distributed" with the pending dates
  written to S3 and "plan": {"bucket", "key"} for the Distributed Map's ItemReader.

A date is done iff its manifest is in the output bucket (core.results), so a second attempt of
a job (docs/RERUNS.md) runs only the dates the earlier attempts did not publish. The mode
depends on the size of the request, not on what is left of it: every attempt of a job takes
the same path through the state machine.
"""
from __future__ import annotations

import json
import os
from typing import Any

from pydantic import ValidationError

from core.errors import InputError
from core.request import ColocationRequest, error_fields
from core.results import OutputStore
from handlers.runtime import InvalidTaskError, logger, metrics, output_store, settings, tracer

# An inline Map's history grows ~6 events per date (25,000 max per execution) and its result
# array travels in the state payload (256 KiB): long ranges go through the Distributed Map.
INLINE_MAX_DATES = 60


def inline_max_dates() -> int:
    return int(os.environ.get("INLINE_MAX_DATES", INLINE_MAX_DATES))


def make_plan(event: Any, *, store: OutputStore | None = None) -> dict:
    cfg = settings()
    try:
        request = ColocationRequest.model_validate(event).resolve(cfg)
    except (ValidationError, InputError) as exc:
        raise InvalidTaskError(json.dumps(error_fields(exc))[:1000]) from None
    request_id = request.request_id()
    dates = [d.isoformat() for d in request.dates()]
    store = store or output_store()
    done = store.published_dates(request_id)
    pending = [d for d in dates if d not in done]
    out: dict[str, Any] = {"request_id": request_id, "request": request.canonical(), "count": len(dates),
                           "done": len(dates) - len(pending), "pending": len(pending)}
    if len(dates) <= inline_max_dates():
        out.update(mode="inline", dates=pending)
        return out
    key = store.plan_key(request_id)
    # a JSON array of date strings: the Distributed Map's ItemReader turns each into one item
    store.s3.put_object(Bucket=store.bucket, Key=key, Body=json.dumps(pending).encode(),
                        ContentType="application/json")
    out.update(mode="distributed", plan={"bucket": store.bucket, "key": key})
    return out


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict:
    result = make_plan(event)
    logger.set_correlation_id(result["request_id"])
    logger.info("planned", extra={k: result[k] for k in ("count", "done", "pending", "mode")})
    return result
