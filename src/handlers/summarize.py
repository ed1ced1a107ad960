"""State machine last step: fold the job's per-date results into one run manifest on S3, and
build the request-level results (one netCDF of every matched segment, Parquet by date for Athena:
core.products.request_outputs, published by core.results.publish_request_products).

Input: {"request_id", "request", "execution", "results": [...]} where results is the inline
Map's array of per-date manifests / failure records of the dates this attempt ran, or the
Distributed Map's ResultWriter details ({"ResultWriterDetails": {"Bucket", "Key"}}), read back
from S3 here. Dates the attempt did not run (published by an earlier attempt, docs/RERUNS.md)
come from their manifests in the bucket.
Output (the execution output GET /colocations/{id} reads): {"request_id", "bucket",
"manifest_key", "execution", "n_dates", "n_run", "n_failed", "counts", "failed_dates" (first
50), "request_outputs" (the netCDF key and counts)}; the output keys of every date and of the
request-level results are in the run manifest on S3.
"""
from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from core.request import ColocationRequest
from core.results import OutputStore, publish_request_products
from handlers.runtime import InvalidTaskError, logger, metrics, one_line, output_store, settings, tracer

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


def _failure(day: str, error: Any, error_type: Any = None) -> dict:
    out = {"date": day, "status": "failed", "error": one_line(error or "failed", 300)}
    if error_type and error_type != error:
        out["type"] = str(error_type)[:100]
    return out


def merge_results(request_id: str, request: dict, ran: list[dict], store: OutputStore) -> list[dict]:
    """One result per date of the request: what this attempt reported, else the bucket.

    The bucket is the source of truth (a date is done iff its manifest exists): dates an earlier
    attempt published were not run again, and a Distributed Map's ResultWriter files may be
    absent or partial (emulators write none).
    """
    by_date = {r.get("date"): r for r in ran if isinstance(r, dict)}
    try:
        dates = [d.isoformat() for d in ColocationRequest.model_validate(request).dates()]
    except ValueError:
        raise InvalidTaskError("summarize needs the run's request to list its dates") from None
    results = []
    for day in dates:
        reported = by_date.get(day) or {}
        if reported.get("status") == "complete":
            results.append(reported)
            continue
        key = store.manifest_key(request_id, day)
        try:
            manifest = store.get_manifest(request_id, day)
        except ValueError:  # unreadable JSON: the date can only be recomputed once it is gone
            results.append(_failure(day, f"the stored result {key} is unreadable; delete it and "
                                         "POST the request again to recompute this date"))
            continue
        if manifest and manifest.get("status") == "complete":
            results.append({"date": day, "status": "complete", "manifest_key": key, "run_id": manifest.get("run_id"),
                            "outputs": manifest.get("outputs") or [], "counts": manifest.get("counts") or {}})
        elif reported:
            results.append(_failure(day, reported.get("error"), reported.get("type")))
        else:
            results.append(_failure(day, "no result for this date"))
    return results


def summarize(request_id: str, request: dict, results: Any, *, store: OutputStore,
              execution: str | None = None) -> dict:
    if isinstance(results, dict) and "ResultWriterDetails" in results:
        results = _distributed_results(results["ResultWriterDetails"], store.s3)
    if not isinstance(results, list):
        raise InvalidTaskError("results must be a list or ResultWriterDetails")
    n_run = sum(1 for r in results if isinstance(r, dict) and r.get("date"))
    dates: list[dict] = []
    counts: dict[str, float] = {}
    output_keys: list[str] = []
    failed: list[dict] = []
    for r in merge_results(request_id, request, results, store):
        entry = {"date": r["date"], "status": r["status"]}
        if r["status"] == "complete":
            outs = r.get("outputs") or []
            keys = [v for v in (outs.values() if isinstance(outs, dict) else outs) if isinstance(v, str)]
            entry["outputs"] = keys
            entry["manifest_key"] = r.get("manifest_key")
            entry["run_id"] = r.get("run_id")
            output_keys += keys
            for k, v in (r.get("counts") or {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    counts[k] = counts.get(k, 0) + v
        else:
            entry.update({k: r[k] for k in ("error", "type") if k in r})
            failed.append({k: entry[k] for k in ("date", "error", "type") if k in entry})
        dates.append(entry)
    key = store.run_manifest_key(request_id)
    try:
        replaced = (store.get_json(key) or {}).get("request_outputs") or {}
    except ValueError:
        replaced = {}
    request_outputs = _request_outputs(store, request_id, request, [d for d in dates if d["status"] == "complete"],
                                       run_id=execution or uuid.uuid4().hex[:12])
    manifest = {
        "request_id": request_id, "request": request, "execution": execution, "dates": dates,
        "n_dates": len(dates), "n_run": n_run, "n_failed": len(failed), "counts": counts,
        "output_keys": sorted(output_keys), "request_outputs": request_outputs,
    }
    # DatesFailed feeds the FailedDatesAlarm (template.yaml): an outage shows without reading logs
    metrics.add_metric(name="DatesFailed", unit=MetricUnit.Count, value=len(failed))
    metrics.add_metric(name="DatesComplete", unit=MetricUnit.Count, value=len(dates) - len(failed))
    # the run manifest is written last: its presence means the attempt finished
    store.put_json(key, manifest)
    if replaced.get("netcdf") and replaced["netcdf"] != request_outputs.get("netcdf"):
        store.delete_keys([replaced["netcdf"]])  # the previous attempt's file, no longer referenced
    # the state output stays small whatever the range: output keys live in the run manifest
    return {"request_id": request_id, "bucket": store.bucket, "manifest_key": key, "execution": execution,
            "n_dates": len(dates), "n_run": n_run, "n_failed": len(failed), "counts": counts,
            "failed_dates": failed[:MAX_LISTED_FAILURES],
            "request_outputs": {k: request_outputs.get(k) for k in ("netcdf", "matched", "error")
                                if k in request_outputs}}


def _request_outputs(store: OutputStore, request_id: str, request: dict, complete: list[dict], *, run_id: str) -> dict:
    """The request-level netCDF and Parquet of the complete dates. A failure here is recorded (the
    per-date results stand; the next attempt builds them again), never a half-written object."""
    if not complete:
        return {"netcdf": None, "partitions": {}, "matched": 0}
    try:
        with tempfile.TemporaryDirectory(prefix="summarize-", dir=settings().download_dir) as workdir:
            return publish_request_products(store, request_id, request, complete, Path(workdir), run_id=run_id)
    except Exception as exc:  # noqa: BLE001 - reported in the run manifest and the job status
        logger.exception("request-level results failed")
        return {"error": one_line(f"request-level results: {type(exc).__name__}: {exc}"), "netcdf": None,
                "partitions": {}}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: Any, context: Any) -> dict:
    if not isinstance(event, dict) or "request_id" not in event or "results" not in event:
        raise InvalidTaskError("summarize needs request_id and results")
    logger.set_correlation_id(str(event["request_id"]))
    execution = event.get("execution")
    return summarize(str(event["request_id"]), event.get("request") or {}, event["results"],
                     store=output_store(), execution=str(execution) if execution else None)
