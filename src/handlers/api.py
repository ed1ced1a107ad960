"""API Gateway (REST, proxy integration): start a colocation job, read its status.

POST /colocations        body = ColocationRequest → 202 {"job_id", "status_url"} (Step Functions);
                         the same request again: 200 with the job when it is complete, 409 while
                         an attempt runs, 202 with a new attempt when the job ended with failed
                         dates (only those dates run again; docs/RERUNS.md)
GET  /colocations/{id}   → status of the latest attempt, the attempts so far, per-date progress
                         and errors, presigned output URLs when done (per date, and the
                         request-level netCDF + Parquet with their Athena table); 404 unknown
Bodies carry parameters only (never credentials); they are size-limited before parsing.
"""
from __future__ import annotations

import json
import re
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from core.access.catalog import check_collections
from core.errors import ColocationError
from core.request import ColocationRequest, fields_from_errors
from core.results import OutputStore
from handlers.runtime import (
    athena_table,
    athena_workgroup,
    client as _client,
    error_body,
    logger,
    metrics,
    one_line,
    output_store as _store,
    settings,
    state_machine_arn,
    tracer,
)

MAX_BODY_BYTES = 4096  # a request is a handful of parameters
JOB_ID = re.compile(r"^r[0-9a-f]{20}$")
MAX_URLS = 200  # beyond this the run manifest (presigned) lists every key
MAX_PARTITION_URLS = 400  # a year of dates' Parquet files; Athena or the run manifest for longer
# Each attempt is an execution of its own: <job_id> first, then <job_id>-a2, -a3, ... A job's
# status reads every attempt (one DescribeExecution each), so their number is bounded.
MAX_ATTEMPTS = 10
FAILED_EXECUTION = {"FAILED", "TIMED_OUT", "ABORTED"}
# an operator may redrive an attempt by hand (console): it is about to run again
RUNNING_EXECUTION = {"RUNNING", "PENDING_REDRIVE"}

app = APIGatewayRestResolver(enable_validation=True)


def _json(status: int, body: dict) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps(body))


def attempt_name(job_id: str, attempt: int) -> str:
    """Execution name of a job's attempt: the job id itself first (as before re-runs existed)."""
    return job_id if attempt == 1 else f"{job_id}-a{attempt}"


def execution_arn(job_id: str, attempt: int = 1) -> str:
    # arn:aws:states:R:A:stateMachine:NAME → arn:aws:states:R:A:execution:NAME:JOB[-aN]
    return state_machine_arn().replace(":stateMachine:", ":execution:", 1) + ":" + attempt_name(job_id, attempt)


def _attempts(sfn, job_id: str) -> list[dict]:
    """DescribeExecution of every attempt of a job, oldest first (empty: unknown job)."""
    found = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            found.append(sfn.describe_execution(executionArn=execution_arn(job_id, attempt)))
        except sfn.exceptions.ExecutionDoesNotExist:
            break
    return found


def _output(desc: dict) -> dict:
    """A finished attempt's Summarize output ({} while running or when the attempt failed whole)."""
    if desc["status"] != "SUCCEEDED" or not desc.get("output"):
        return {}
    try:
        out = json.loads(desc["output"])
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def job_state(desc: dict) -> str:
    """running | complete | failed: an attempt that finished with failed dates has failed too."""
    if desc["status"] in RUNNING_EXECUTION:
        return "running"
    if desc["status"] == "SUCCEEDED" and not _output(desc).get("n_failed", 0):
        return "complete"
    return "failed"


def _execution_error(desc: dict) -> str:
    """Why an attempt failed as a whole, in one line (a Lambda cause's message, not its stack)."""
    error, cause = desc.get("error") or desc["status"], desc.get("cause") or ""
    try:
        parsed = json.loads(cause)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("errorMessage"):
        cause = parsed["errorMessage"]
    return one_line(f"{error}: {cause}" if cause else error)


def _attempt_row(attempt: int, desc: dict) -> dict:
    row: dict[str, Any] = {"attempt": attempt, "status": job_state(desc), "started": desc["startDate"].isoformat()}
    if desc.get("stopDate"):
        row["stopped"] = desc["stopDate"].isoformat()
    out = _output(desc)
    if out:
        row["dates_run"] = out.get("n_run")
        row["failed_dates"] = [f.get("date") for f in out.get("failed_dates", [])]
    elif desc["status"] in FAILED_EXECUTION:
        row["error"] = _execution_error(desc)
    return row


@app.exception_handler(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response:
    return _json(400, {"error": "invalid request", "fields": fields_from_errors(list(exc.errors()), whole="body")})


@app.exception_handler(ColocationError)
def _colocation_error(exc: ColocationError) -> Response:
    # each error class carries its HTTP status (400 input, 404 not found, 502 upstream, ...)
    return _json(exc.status, error_body(exc))


def _status_url(job_id: str) -> str:
    """The absolute URL of the job's status, as the caller reached this API.

    requestContext.path is the path the caller used, stage (``/v1``) or custom-domain base path
    included; a relative ``/colocations/<id>`` would drop it and meet API Gateway's 403.
    """
    ctx = app.current_event.request_context
    called = ctx.path or ""
    prefix = called[: -len(app.current_event.path)] if called.endswith(app.current_event.path) else ""
    if not ctx.domain_name:  # not through API Gateway (a test harness): relative is all we know
        return f"{prefix}/colocations/{job_id}"
    return f"https://{ctx.domain_name}{prefix}/colocations/{job_id}"


# (no @tracer.capture_method here: the wrapper hides the Body annotation from the validator)
@app.post("/colocations")
def start_job(request: Annotated[ColocationRequest, Body(embed=False)]):
    resolved = request.resolve(settings())
    check_collections(resolved, settings())  # 400 naming the field for a collection CMR does not know
    job_id = resolved.request_id()
    logger.set_correlation_id(job_id)
    sfn = _client("stepfunctions")
    status_url = _status_url(job_id)
    attempts = _attempts(sfn, job_id)
    job = {"job_id": job_id, "attempt": len(attempts), "status_url": status_url}
    if attempts:
        state = job_state(attempts[-1])
        if state == "running":
            started = attempts[-1]["startDate"].isoformat()
            return _json(409, {"error": f"job {job_id} is still running (attempt {len(attempts)}, started {started}): "
                                        f"GET {status_url} until it ends, then POST the same request again "
                                        "to re-run the dates that failed", "status": state, **job})
        if state == "complete":  # same parameters → same job: the stored result, not a recomputation
            return _json(200, {**job, "status": state})
        if len(attempts) >= MAX_ATTEMPTS:
            return _json(409, {"error": f"job {job_id} has failed {len(attempts)} times, the most attempts a job "
                                        f"gets; GET {status_url} for each failed date's error", "status": state, **job})
    attempt = len(attempts) + 1
    try:
        # same name and input as a running execution → Step Functions returns that execution
        sfn.start_execution(stateMachineArn=state_machine_arn(), name=attempt_name(job_id, attempt),
                            input=json.dumps(resolved.canonical()))
    except sfn.exceptions.ExecutionAlreadyExists:  # another POST started (and finished) it meanwhile
        return _json(409, {"error": f"attempt {attempt} of job {job_id} was started by another request; "
                                    f"GET {status_url}", **job, "attempt": attempt})
    metrics.add_metric(name="JobsStarted" if attempt == 1 else "JobsRerun", unit=MetricUnit.Count, value=1)
    body = {**job, "status": "running", "attempt": attempt}
    if attempt > 1:
        body["message"] = (f"attempt {attempt}: the dates that failed run again; "
                           "the dates already published are kept")
    return _json(202, body)


@app.get("/colocations/<job_id>")
def job_status(job_id: str):
    if not JOB_ID.match(job_id):
        return _json(404, {"error": "unknown job"})
    attempts = _attempts(_client("stepfunctions"), job_id)
    if not attempts:
        return _json(404, {"error": "unknown job"})
    latest = attempts[-1]
    body: dict[str, Any] = {"job_id": job_id, "status": job_state(latest), "attempt": len(attempts),
                            "started": latest["startDate"].isoformat()}
    if latest.get("stopDate"):
        body["stopped"] = latest["stopDate"].isoformat()
    output = _output(latest)
    if output:
        body.update(_finished(output))
    else:
        body["progress"] = _progress(job_id, latest)
        if latest["status"] in FAILED_EXECUTION:
            body["error"] = _execution_error(latest)
    if body["status"] == "failed" and len(attempts) < MAX_ATTEMPTS:
        body["rerun"] = "POST the same request again to run the failed dates again"
    body["attempts"] = [_attempt_row(i, d) for i, d in enumerate(attempts, start=1)]
    return _json(200, body)


def _progress(job_id: str, desc: dict) -> dict:
    """Dates finished so far, by any attempt (a date is done iff its manifest exists; listing only)."""
    try:
        total = len(ColocationRequest.model_validate(json.loads(desc.get("input") or "{}")).dates())
    except (ValueError, TypeError):
        total = None
    return {"dates_total": total, "dates_done": len(_store().published_dates(job_id))}


def _finished(output: dict) -> dict:
    """The run manifest → per-date status and presigned URLs of its outputs."""
    cfg = settings()
    store = _store()
    run = store.get_json(output["manifest_key"]) if output.get("manifest_key") else None
    out: dict[str, Any] = {"counts": output.get("counts", {}), "n_failed": output.get("n_failed", 0),
                           "failed_dates": output.get("failed_dates", []),
                           "expires_in_s": cfg.presign_expiry_s}
    if run is None:
        return out
    out["run_manifest_url"] = store.presign(output["manifest_key"], cfg.presign_expiry_s)
    n_urls, dates = 1, []
    for entry in run.get("dates", []):
        row = {"date": entry.get("date"), "status": entry.get("status")}
        keys = [k for k in [entry.get("manifest_key"), *entry.get("outputs", [])] if isinstance(k, str)]
        if keys and n_urls + len(keys) <= MAX_URLS:
            row["urls"] = {k.rsplit("/", 1)[-1]: store.presign(k, cfg.presign_expiry_s) for k in keys}
            n_urls += len(keys)
        row.update({k: entry[k] for k in ("error", "type") if entry.get(k)})
        dates.append(row)
    out["dates"] = dates
    out["request_outputs"] = _request_outputs(run.get("request_outputs") or {}, run.get("request_id") or "", store)
    return out


def _request_outputs(recorded: dict, job_id: str, store: OutputStore) -> dict:
    """Presigned links to the request-level netCDF and the Parquet files, and where Athena reads them."""
    expiry = settings().presign_expiry_s
    out: dict[str, Any] = {k: recorded[k] for k in ("matched", "trajectories", "error") if k in recorded}
    if recorded.get("netcdf"):
        key = recorded["netcdf"]
        out["netcdf"] = {"name": key.rsplit("/", 1)[-1], "url": store.presign(key, expiry)}
    partitions = recorded.get("partitions") or {}
    if partitions:
        dates = sorted(partitions)
        parquet: dict[str, Any] = {
            "s3_uri": f"s3://{store.bucket}/{recorded.get('parquet_prefix') or store.parquet_prefix(job_id)}",
            "partitions": len(dates),
            "urls": {f"date={d}": store.presign(partitions[d], expiry) for d in dates[:MAX_PARTITION_URLS]},
        }
        if len(dates) > MAX_PARTITION_URLS:
            parquet["urls_truncated"] = f"first {MAX_PARTITION_URLS} dates; every key is in the run manifest"
        database, table = athena_table()
        if database:
            parquet["athena"] = {"database": database, "table": table, "workgroup": athena_workgroup(),
                                 "query": f'SELECT * FROM "{database}"."{table}" WHERE request_id = \'{job_id}\' '
                                          f"AND \"date\" BETWEEN '{dates[0]}' AND '{dates[-1]}' LIMIT 10"}
        out["parquet"] = parquet
    return out


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: Any) -> dict:
    body = event.get("body") if isinstance(event, dict) else None
    if isinstance(body, str) and len(body.encode("utf-8", "replace")) > MAX_BODY_BYTES:
        return {"statusCode": 413, "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"error": f"body larger than {MAX_BODY_BYTES} bytes"})}
    return app.resolve(event, context)
