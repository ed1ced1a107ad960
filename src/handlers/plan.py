"""State machine step 1: validate the request and list the dates this attempt must run
(core.jobs.date_plan: only the dates without a published manifest, docs/RERUNS.md).

Output (small: parameters and keys, never data):
  {"request_id", "request": {...resolved...}, "count": n (the dates that can have data), "done":
  dates already published, "pending": dates to run, "trim": {"requested", "kept", "first", "last",
  "reasons"} (core.jobs.preflight), "mode": "inline", "dates": [...pending...]}
  or, above INLINE_MAX_DATES dates in the request, "mode": "distributed" with the pending dates
  written to S3 and "plan": {"bucket", "key"} for the Distributed Map's ItemReader.
"""
from __future__ import annotations

from typing import Any

from core.jobs.date_plan import make_plan
from handlers.runtime import logger, metrics, output_store, settings, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict:
    result = make_plan(event, settings(), output_store())
    logger.set_correlation_id(result["request_id"])
    logger.info("planned", extra={k: result[k] for k in ("count", "done", "pending", "mode")})
    return result
