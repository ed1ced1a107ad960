"""State machine last step: fold the Map's per-date results into one run manifest on S3.

Input: {"request_id", "request", "results": [...]} where results is the inline Map's array of
per-date manifests / failure records, or the Distributed Map's ResultWriter details
({"ResultWriterDetails": {"Bucket", "Key"}}), read back from S3 here.
Output (the execution output GET /colocations/{id} reads): {"request_id", "bucket",
"manifest_key", "n_dates", "n_failed", "counts", "failed_dates" (first 50)}; the output keys of
every date are in the run manifest on S3.
"""
from __future__ import annotations

import json
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit

from core.request import ColocationRequest
from core.results import OutputStore

from handlers.common import InvalidTaskError, logger, metrics, settings, tracer

MAX_LISTED_FAILURES = 50


def _distributed_results(details: dict, s3) -> list[dict]:
    """Read a Distributed Map's ResultWriter output (manifest.json + SUCCEEDED/FAILED files)."""
    body = s3.get_object(Bucket=details["Bucket"], Key=details["Key"])["Body"].read()
    manifest = json.loads(body)
    results: list[dict] = []
    for status, files in (manifest.get("ResultFiles") or {}).items():
        for f in files:
            rows = json.loads(s3.get_object(Bucket=details["Bucket"], Key=f["Key"])["Body"].read())
            for row in rows:
                if status == "SUCCEEDED":
                    results.append(json.loads(row.get("Output") or "{}"))
                else:
                    item = json.loads(row.get("Input") or "{}")
                    results.append({"date": item.get("date"), "status": "failed",
                                    "error": row.get("Error") or status})
    return results


def _bucket_results(request_id: str, request: dict, store: OutputStore, known: list[dict]) -> list[dict]:
    """Per-date results from the date manifests in the bucket (the source of truth).

    Used for the Distributed Map: its ResultWriter files may be absent or partial (and
    emulators write none), but a date is done iff its manifest exists.
    """
    by_date = {r.get("date"): r for r in known if isinstance(r, dict)}
    try:
        dates = [d.isoformat() for d in ColocationRequest.model_validate(request).dates()]
    except ValueError:
        raise InvalidTaskError("summarize needs the run's request to list its dates") from None
    results = []
    for day in dates:
        try:
            manifest = store.get_manifest(request_id, day)
        except ValueError:  # unreadable JSON
            manifest = None
        if manifest and manifest.get("status") == "complete":
            results.append({"date": day, "status": "complete",
                            "manifest_key": store.manifest_key(request_id, day),
                            "outputs": manifest.get("outputs") or [], "counts": manifest.get("counts") or {}})
        else:
            prior = by_date.get(day) or {}
            error = prior.get("error") if prior.get("status") == "failed" else None
            results.append({"date": day, "status": "failed", "error": error or "no result for this date"})
    return results


def summarize(request_id: str, request: dict, results: Any, *, s3) -> dict:
    cfg = settings()
    if isinstance(results, dict) and "ResultWriterDetails" in results:
        known = _distributed_results(results["ResultWriterDetails"], s3)
        results = _bucket_results(request_id, request, OutputStore(s3, cfg.output_bucket, cfg.output_prefix), known)
    if not isinstance(results, list):
        raise InvalidTaskError("results must be a list or ResultWriterDetails")
    dates: list[dict] = []
    counts: dict[str, float] = {}
    output_keys: list[str] = []
    failed: list[dict] = []
    for r in results:
        r = r if isinstance(r, dict) else {}
        status = r.get("status", "failed")
        entry = {"date": r.get("date"), "status": status}
        if status == "complete":
            outs = r.get("outputs") or []
            keys = [v for v in (outs.values() if isinstance(outs, dict) else outs) if isinstance(v, str)]
            entry["outputs"] = keys
            entry["manifest_key"] = r.get("manifest_key")
            output_keys += keys
            for k, v in (r.get("counts") or {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    counts[k] = counts.get(k, 0) + v
        else:
            entry["error"] = str(r.get("error", "failed"))[:200]
            failed.append({"date": entry["date"], "error": entry["error"]})
        dates.append(entry)
    dates.sort(key=lambda e: str(e["date"]))
    store = OutputStore(s3, cfg.output_bucket, cfg.output_prefix)
    key = store.run_manifest_key(request_id)
    manifest = {
        "request_id": request_id, "request": request, "dates": dates,
        "n_dates": len(dates), "n_failed": len(failed), "counts": counts,
    }
    # the run manifest is written last: its presence means the run finished
    metrics.add_metric(name="DatesFailed", unit=MetricUnit.Count, value=len(failed))
    metrics.add_metric(name="DatesComplete", unit=MetricUnit.Count, value=len(dates) - len(failed))
    manifest["output_keys"] = sorted(output_keys)
    store.put_json(key, manifest)
    # the state output stays small whatever the range: output keys live in the run manifest
    return {"request_id": request_id, "bucket": cfg.output_bucket, "manifest_key": key,
            "n_dates": len(dates), "n_failed": len(failed), "counts": counts,
            "failed_dates": failed[:MAX_LISTED_FAILURES]}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict:
    if not isinstance(event, dict) or "request_id" not in event or "results" not in event:
        raise InvalidTaskError("summarize needs request_id and results")
    logger.set_correlation_id(str(event["request_id"]))
    cfg = settings()
    s3 = boto3.client("s3", region_name=cfg.aws_region, endpoint_url=cfg.s3_endpoint_url)
    return summarize(str(event["request_id"]), event.get("request") or {}, event["results"], s3=s3)
