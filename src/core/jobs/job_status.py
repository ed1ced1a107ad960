"""A job's attempts and status: whether a POST starts an attempt, what a GET reports.

Each attempt is a Step Functions execution (docs/RERUNS.md); the Step Functions client, the
state machine's ARN and the output bucket are handed in by the caller (handlers.api).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from core.errors import one_line
from core.manifest import RunManifest
from core.request import ColocationRequest
from core.results import OutputStore

JOB_ID = re.compile(r"^r[0-9a-f]{20}$")
MAX_URLS = 200  # beyond this the run manifest (presigned) lists every key
MAX_PARTITION_URLS = 400  # a year of dates' Parquet files; Athena or the run manifest for longer
# Each attempt is an execution of its own: <job_id> first, then <job_id>-a2, -a3, ... A job's
# status reads every attempt (one DescribeExecution each), so their number is bounded.
MAX_ATTEMPTS = 10
FAILED_EXECUTION = {"FAILED", "TIMED_OUT", "ABORTED"}
# an operator may redrive an attempt by hand (console): it is about to run again
RUNNING_EXECUTION = {"RUNNING", "PENDING_REDRIVE"}


class Answer(NamedTuple):
    """An HTTP status and its JSON body."""

    status: int
    body: dict


@dataclass(frozen=True)
class OutputLinks:
    """Where a finished job's outputs are linked from: the bucket, the presigned URLs' lifetime,
    and the Glue database, table and workgroup Athena queries them with ("" if unset)."""

    store: OutputStore
    expires_s: int
    athena_database: str = ""
    athena_table: str = ""
    athena_workgroup: str = ""


def attempt_name(job_id: str, attempt: int) -> str:
    """Execution name of a job's attempt: the job id itself first (as before re-runs existed)."""
    return job_id if attempt == 1 else f"{job_id}-a{attempt}"


def execution_arn(state_machine_arn: str, job_id: str, attempt: int = 1) -> str:
    # arn:aws:states:R:A:stateMachine:NAME → arn:aws:states:R:A:execution:NAME:JOB[-aN]
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + attempt_name(job_id, attempt)


def describe_attempts(sfn, state_machine_arn: str, job_id: str) -> list[dict]:
    """DescribeExecution of every attempt of a job, oldest first (empty: unknown job)."""
    found = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            found.append(sfn.describe_execution(executionArn=execution_arn(state_machine_arn, job_id, attempt)))
        except sfn.exceptions.ExecutionDoesNotExist:
            break
    return found


def attempt_output(desc: dict) -> dict:
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
    if desc["status"] == "SUCCEEDED" and not attempt_output(desc).get("n_failed", 0):
        return "complete"
    return "failed"


def execution_error(desc: dict) -> str:
    """Why an attempt failed as a whole, in one line (a Lambda cause's message, not its stack)."""
    error, cause = desc.get("error") or desc["status"], desc.get("cause") or ""
    try:
        parsed = json.loads(cause)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("errorMessage"):
        cause = parsed["errorMessage"]
    return one_line(f"{error}: {cause}" if cause else error)


def attempt_row(attempt: int, desc: dict) -> dict:
    row: dict[str, Any] = {"attempt": attempt, "status": job_state(desc), "started": desc["startDate"].isoformat()}
    if desc.get("stopDate"):
        row["stopped"] = desc["stopDate"].isoformat()
    out = attempt_output(desc)
    if out:
        row["dates_run"] = out.get("n_run")
        row["failed_dates"] = [f.get("date") for f in out.get("failed_dates", [])]
    elif desc["status"] in FAILED_EXECUTION:
        row["error"] = execution_error(desc)
    return row


def start_job(request: ColocationRequest, sfn, state_machine_arn: str, status_url: str) -> Answer:
    """POST of a (resolved) request: the stored job (200), a new attempt (202) or why not (409)."""
    job_id = request.request_id()
    attempts = describe_attempts(sfn, state_machine_arn, job_id)
    job = {"job_id": job_id, "attempt": len(attempts), "status_url": status_url}
    if attempts:
        ended = _ended_job(attempts, job)
        if ended is not None:
            return ended
    attempt = len(attempts) + 1
    try:
        # same name and input as a running execution → Step Functions returns that execution
        sfn.start_execution(stateMachineArn=state_machine_arn, name=attempt_name(job_id, attempt),
                            input=json.dumps(request.canonical()))
    except sfn.exceptions.ExecutionAlreadyExists:  # another POST started (and finished) it meanwhile
        return Answer(409, {"error": f"attempt {attempt} of job {job_id} was started by another request; "
                                     f"GET {status_url}", **job, "attempt": attempt})
    body = {**job, "status": "running", "attempt": attempt}
    if attempt > 1:
        body["message"] = (f"attempt {attempt}: the dates that failed run again; "
                           "the dates already published are kept")
    return Answer(202, body)


def _ended_job(attempts: list[dict], job: dict) -> Answer | None:
    """The answer to a POST of a job with attempts, unless it is to run again (None)."""
    job_id, status_url = job["job_id"], job["status_url"]
    state = job_state(attempts[-1])
    if state == "running":
        started = attempts[-1]["startDate"].isoformat()
        return Answer(409, {"error": f"job {job_id} is still running (attempt {len(attempts)}, started {started}): "
                                     f"GET {status_url} until it ends, then POST the same request again "
                                     "to re-run the dates that failed", "status": state, **job})
    if state == "complete" and not attempt_output(attempts[-1]).get("n_provisional"):
        # same parameters → same job: the stored result, not a recomputation
        return Answer(200, {**job, "status": state})
    if state == "complete":  # dates too recent to be final: another attempt computes them again
        return None if len(attempts) < MAX_ATTEMPTS else Answer(200, {**job, "status": state})
    if len(attempts) >= MAX_ATTEMPTS:
        return Answer(409, {"error": f"job {job_id} has failed {len(attempts)} times, the most attempts a job "
                                     f"gets; GET {status_url} for each failed date's error", "status": state, **job})
    return None


def job_report(job_id: str, sfn, state_machine_arn: str, links: OutputLinks) -> dict | None:
    """GET of a job: its latest attempt, per-date results and links, every attempt (None: unknown)."""
    attempts = describe_attempts(sfn, state_machine_arn, job_id)
    if not attempts:
        return None
    latest = attempts[-1]
    body: dict[str, Any] = {"job_id": job_id, "status": job_state(latest), "attempt": len(attempts),
                            "started": latest["startDate"].isoformat()}
    if latest.get("stopDate"):
        body["stopped"] = latest["stopDate"].isoformat()
    output = attempt_output(latest)
    if output:
        body.update(finished(output, links))
    else:
        body["progress"] = progress(job_id, latest, links.store)
        if latest["status"] in FAILED_EXECUTION:
            body["error"] = execution_error(latest)
    if body["status"] == "failed" and len(attempts) < MAX_ATTEMPTS:
        body["rerun"] = "POST the same request again to run the failed dates again"
    body["attempts"] = [attempt_row(i, d) for i, d in enumerate(attempts, start=1)]
    return body


def progress(job_id: str, desc: dict, store: OutputStore) -> dict:
    """Dates finished so far, by any attempt (a date is done iff its manifest exists; listing only)."""
    try:
        total = len(ColocationRequest.model_validate(json.loads(desc.get("input") or "{}")).dates())
    except (ValueError, TypeError):
        total = None
    return {"dates_total": total, "dates_done": len(store.published_dates(job_id))}


def finished(output: dict, links: OutputLinks) -> dict:
    """The run manifest → per-date status and presigned URLs of its outputs."""
    store, expiry = links.store, links.expires_s
    document = store.get_json(output["manifest_key"]) if output.get("manifest_key") else None
    out: dict[str, Any] = {"counts": output.get("counts", {}), "n_failed": output.get("n_failed", 0),
                           "failed_dates": output.get("failed_dates", []), "expires_in_s": expiry}
    if output.get("trim"):  # Plan's: dates asked for, kept (those that can have data), and why
        out["trim"] = output["trim"]
    if document is None:
        return out
    run = RunManifest.model_validate(document)
    out["run_manifest_url"] = store.presign(output["manifest_key"], expiry)
    n_urls, dates = 1, []
    for entry in run.dates:
        row: dict[str, Any] = {"date": entry.date, "status": entry.status}
        keys = [k for k in [entry.manifest_key, *entry.outputs] if k is not None]
        if keys and n_urls + len(keys) <= MAX_URLS:
            row["urls"] = {k.rsplit("/", 1)[-1]: store.presign(k, expiry) for k in keys}
            n_urls += len(keys)
        row.update({k: v for k, v in (("error", entry.error), ("type", entry.type)) if v})
        dates.append(row)
    out["dates"] = dates
    out["request_outputs"] = request_outputs(run.request_outputs, run.request_id, links)
    return out


def request_outputs(recorded: dict, job_id: str, links: OutputLinks) -> dict:
    """Presigned links to the request-level netCDF and the Parquet files, and where Athena reads them."""
    store, expiry = links.store, links.expires_s
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
        database, table = links.athena_database, links.athena_table
        if database:
            parquet["athena"] = {"database": database, "table": table, "workgroup": links.athena_workgroup,
                                 "query": f'SELECT * FROM "{database}"."{table}" WHERE request_id = \'{job_id}\' '
                                          f"AND \"date\" BETWEEN DATE '{dates[0]}' AND DATE '{dates[-1]}' LIMIT 10"}
        out["parquet"] = parquet
    return out
