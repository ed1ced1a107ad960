"""Summarize: fold an attempt's per-date results into the job's run manifest, and build the
request-level results (core.products.request_outputs, published by
core.results.publish_request_products).

The results are the inline Map's array of per-date results / failure records of the dates this
attempt ran, or the Distributed Map's ResultWriter details, read back from S3 here. Dates the
attempt did not run (published by an earlier attempt, docs/RERUNS.md) come from their manifests
in the bucket.
"""
from __future__ import annotations

import json
import logging
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import InvalidTaskError, is_out_of_space, one_line, out_of_space
from core.manifest import DateManifest, RunDate, RunManifest
from core.request import ColocationRequest
from core.results import OutputStore, publish_request_products

log = logging.getLogger(__name__)

MAX_LISTED_FAILURES = 50


def distributed_results(details: dict, s3) -> list[dict]:
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


def _kept(dates: list[str], trim: dict | None) -> list[str]:
    """The dates Plan kept (``trim``: core.jobs.preflight.DateTrim's document); all without one."""
    if not isinstance(trim, dict) or "kept" not in trim:
        return dates
    first, last = trim.get("first"), trim.get("last")
    return [] if not first or not last else [d for d in dates if first <= d <= last]


def merge_results(request_id: str, request: dict, ran: list[dict], store: OutputStore,
                  trim: dict | None = None) -> list[dict]:
    """One result per date of the request: what this attempt reported, else the bucket.

    The bucket is the source of truth (a date is done iff its manifest exists): dates an earlier
    attempt published were not run again, and a Distributed Map's ResultWriter files may be
    absent or partial (emulators write none).
    """
    by_date = {r.get("date"): r for r in ran if isinstance(r, dict)}
    try:
        dates = _kept([d.isoformat() for d in ColocationRequest.model_validate(request).dates()], trim)
    except ValueError:
        raise InvalidTaskError("summarize needs the run's request to list its dates") from None
    results = []
    for day in dates:
        reported = by_date.get(day) or {}
        if reported.get("status") == "complete" and reported.get("outputs"):
            results.append(reported)
            continue
        # a Map item's result carries no product keys (they grow with the date's granules): the
        # date's manifest lists them
        key = store.manifest_key(request_id, day)
        try:
            manifest = DateManifest.load(store, request_id, day)
        except ValueError:  # unreadable JSON: the date can only be recomputed once it is gone
            results.append(_failure(day, f"the stored result {key} is unreadable; delete it and "
                                         "POST the request again to recompute this date"))
            continue
        if manifest is not None:  # a manifest is published for a complete date only
            results.append({"date": day, "status": "complete", "manifest_key": key, "run_id": manifest.run_id,
                            "outputs": manifest.outputs, "counts": manifest.counts.model_dump(exclude_unset=True)})
        elif reported:
            results.append(_failure(day, reported.get("error"), reported.get("type")))
        else:
            results.append(_failure(day, "no result for this date"))
    return results


def _run_date(result: dict) -> RunDate:
    """A merged result as the run manifest lists it (a complete date's output keys, or why it failed)."""
    if result["status"] != "complete":
        return RunDate(date=result["date"], status=result["status"],
                       **{k: result[k] for k in ("error", "type") if k in result})
    # (a stored manifest's outputs by kind are made a list by DateManifest)
    keys = [v for v in result.get("outputs") or [] if isinstance(v, str)]
    date = RunDate(date=result["date"], status="complete", outputs=keys, manifest_key=result.get("manifest_key"),
                   run_id=result.get("run_id"))
    if result.get("provisional"):
        date.provisional = True  # computed again by a later attempt (docs/RERUNS.md)
    return date


def _add_counts(total: dict[str, float], counts: dict) -> None:
    for k, v in counts.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            total[k] = total.get(k, 0) + v


def summarize(request_id: str, request: dict, results: Any, *, store: OutputStore, download_dir: str,
              execution: str | None = None, on_dates: Callable[[int, int], None] | None = None,
              trim: dict | None = None) -> dict:
    """Write the attempt's run manifest; returns the Step Functions output (small whatever the
    range). ``on_dates(complete, failed)`` hears the dates' outcome before the manifest is written."""
    if isinstance(results, dict) and "ResultWriterDetails" in results:
        results = distributed_results(results["ResultWriterDetails"], store.s3)
    if not isinstance(results, list):
        raise InvalidTaskError("results must be a list or ResultWriterDetails")
    n_run = sum(1 for r in results if isinstance(r, dict) and r.get("date"))
    dates: list[RunDate] = []
    counts: dict[str, float] = {}
    for r in merge_results(request_id, request, results, store, trim):
        dates.append(_run_date(r))
        if r["status"] == "complete":
            _add_counts(counts, r.get("counts") or {})
    failed = [d.model_dump(include={"date", "error", "type"}, exclude_unset=True) for d in dates
              if d.status != "complete"]
    key = store.run_manifest_key(request_id)
    try:
        replaced = (store.get_json(key) or {}).get("request_outputs") or {}
    except ValueError:
        replaced = {}
    complete = [d.document() for d in dates if d.status == "complete"]
    request_outputs = _request_outputs(store, request_id, request, complete, download_dir=download_dir,
                                       run_id=execution or uuid.uuid4().hex[:12])
    manifest = RunManifest(request_id=request_id, request=request, execution=execution, dates=dates,
                           n_dates=len(dates), n_run=n_run, n_failed=len(failed), counts=counts,
                           output_keys=sorted(k for d in dates for k in d.outputs), request_outputs=request_outputs,
                           trim=trim if isinstance(trim, dict) else {})
    if on_dates is not None:
        on_dates(len(dates) - len(failed), len(failed))
    # the run manifest is written last: its presence means the attempt finished
    store.put_json(key, manifest.document())
    if replaced.get("netcdf") and replaced["netcdf"] != request_outputs.get("netcdf"):
        store.delete_keys([replaced["netcdf"]])  # the previous attempt's file, no longer referenced
    # the state output stays small whatever the range: output keys live in the run manifest
    outputs = {k: request_outputs.get(k) for k in ("netcdf", "matched", "error") if k in request_outputs}
    if request_outputs.get("partitions"):  # where Athena's table (and any Parquet reader) finds the rows
        outputs["parquet"] = f"s3://{store.bucket}/{request_outputs['parquet_prefix']}"
    return {"request_id": request_id, "bucket": store.bucket, "manifest_key": key, "execution": execution,
            "n_dates": len(dates), "n_run": n_run, "n_failed": len(failed), "counts": counts,
            "n_provisional": sum(1 for d in dates if d.provisional),
            **({"trim": trim} if isinstance(trim, dict) else {}),
            "failed_dates": failed[:MAX_LISTED_FAILURES], "request_outputs": outputs}


def _request_outputs(store: OutputStore, request_id: str, request: dict, complete: list[dict], *,
                     download_dir: str, run_id: str) -> dict:
    """The request-level netCDF and Parquet of the complete dates. A failure here is recorded (the
    per-date results stand; the next attempt builds them again), never a half-written object."""
    if not complete:
        return {"netcdf": None, "partitions": {}, "matched": 0}
    try:
        with tempfile.TemporaryDirectory(prefix="summarize-", dir=download_dir) as workdir:
            return publish_request_products(store, request_id, request, complete, Path(workdir), run_id=run_id)
    except Exception as exc:  # noqa: BLE001 - reported in the run manifest and the job status
        if is_out_of_space(exc):  # transient: Summarize fails by this name and the state machine retries it
            raise out_of_space("building the request-level results") from None
        log.exception("request-level results failed")
        return {"error": one_line(f"request-level results: {type(exc).__name__}: {exc}"), "netcdf": None,
                "partitions": {}}
