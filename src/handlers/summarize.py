"""State machine last step: fold the job's per-date results into one run manifest on S3, and
build the request-level results (one netCDF of every matched segment, Parquet by date for Athena):
core.jobs.run_summary.

Input: {"request_id", "request", "execution", "trim" (Plan's: the dates kept), "results": [...]}
where results is the inline
Map's array of per-date manifests / failure records of the dates this attempt ran, or the
Distributed Map's ResultWriter details ({"ResultWriterDetails": {"Bucket", "Key"}}). Dates the
attempt did not run (published by an earlier attempt, docs/RERUNS.md) come from their manifests
in the bucket.
Output (the execution output GET /colocations/{id} reads): {"request_id", "bucket",
"manifest_key", "execution", "n_dates", "n_run", "n_failed", "counts", "failed_dates" (first
50), "request_outputs" (the netCDF key, counts, and the Parquet's s3:// location)}; the output
keys of every date and of the request-level results are in the run manifest on S3.
"""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from core.errors import InvalidTaskError
from core.jobs.run_summary import summarize
from handlers.runtime import logger, metrics, output_store, settings, tracer


def _date_metrics(complete: int, failed: int) -> None:
    # DatesFailed feeds the FailedDatesAlarm (template.yaml): an outage shows without reading logs
    metrics.add_metric(name="DatesFailed", unit=MetricUnit.Count, value=failed)
    metrics.add_metric(name="DatesComplete", unit=MetricUnit.Count, value=complete)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict:
    if not isinstance(event, dict) or "request_id" not in event or "results" not in event:
        raise InvalidTaskError("summarize needs request_id and results")
    logger.set_correlation_id(str(event["request_id"]))
    execution = event.get("execution")
    return summarize(str(event["request_id"]), event.get("request") or {}, event["results"], store=output_store(),
                     download_dir=settings().download_dir, execution=str(execution) if execution else None,
                     on_dates=_date_metrics, trim=event.get("trim"))
