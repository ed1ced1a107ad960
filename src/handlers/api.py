"""API Gateway (REST, proxy integration): start a colocation job, read its status.

POST /colocations        body = ColocationRequest → 202 {"job_id", "status_url"} (Step Functions)
GET  /colocations/{id}   → status, per-date progress, presigned output URLs when done; 404 unknown
Bodies carry parameters only (never credentials); they are size-limited before parsing.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from typing_extensions import Annotated

from core.catalog import check_collections
from core.errors import ColocationError, InputError
from core.request import ColocationRequest, fields_from_errors
from core.results import MANIFEST, OutputStore
from handlers.common import error_body, logger, metrics, settings, state_machine_arn, tracer

MAX_BODY_BYTES = 4096  # a request is a handful of parameters
JOB_ID = re.compile(r"^r[0-9a-f]{20}$")
MAX_URLS = 200  # beyond this the run manifest (presigned) lists every key
STATUS = {"RUNNING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed",
          "TIMED_OUT": "failed", "ABORTED": "failed", "PENDING_REDRIVE": "failed"}

app = APIGatewayRestResolver(enable_validation=True)


@lru_cache(maxsize=None)
def _client(service: str):
    cfg = settings()
    if service == "s3":
        # SigV4 presigned URLs: regional, and ExpiresIn is honoured (max 7 days)
        return boto3.client("s3", region_name=cfg.aws_region, endpoint_url=cfg.s3_endpoint_url,
                            config=Config(signature_version="s3v4"))
    return boto3.client(service, region_name=cfg.aws_region)


def _json(status: int, body: dict) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps(body))


def execution_arn(job_id: str) -> str:
    # arn:aws:states:R:A:stateMachine:NAME → arn:aws:states:R:A:execution:NAME:JOB
    return state_machine_arn().replace(":stateMachine:", ":execution:", 1) + ":" + job_id


@app.exception_handler(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response:
    return _json(400, {"error": "invalid request", "fields": fields_from_errors(exc.errors(), whole="body")})


@app.exception_handler(ColocationError)
def _colocation_error(exc: ColocationError) -> Response:
    return _json(exc.status if isinstance(exc, InputError) else 502, error_body(exc))


# (no @tracer.capture_method here: the wrapper hides the Body annotation from the validator)
@app.post("/colocations")
def start_job(request: Annotated[ColocationRequest, Body(embed=False)]):
    resolved = request.resolve(settings())
    check_collections(resolved, settings())  # 400 naming the field for a collection CMR does not know
    job_id = resolved.request_id()
    logger.set_correlation_id(job_id)
    sfn = _client("stepfunctions")
    status_url = f"/colocations/{job_id}"
    try:
        sfn.start_execution(stateMachineArn=state_machine_arn(), name=job_id,
                            input=json.dumps(resolved.canonical()))
    except sfn.exceptions.ExecutionAlreadyExists:
        # same parameters → same job: report the existing run instead of recomputing
        desc = sfn.describe_execution(executionArn=execution_arn(job_id))
        return _json(200, {"job_id": job_id, "status": STATUS.get(desc["status"], "unknown"),
                           "status_url": status_url})
    metrics.add_metric(name="JobsStarted", unit=MetricUnit.Count, value=1)
    return _json(202, {"job_id": job_id, "status": "running", "status_url": status_url})


@app.get("/colocations/<job_id>")
def job_status(job_id: str):
    if not JOB_ID.match(job_id):
        return _json(404, {"error": "unknown job"})
    sfn = _client("stepfunctions")
    try:
        desc = sfn.describe_execution(executionArn=execution_arn(job_id))
    except sfn.exceptions.ExecutionDoesNotExist:
        return _json(404, {"error": "unknown job"})
    body: dict[str, Any] = {"job_id": job_id, "status": STATUS.get(desc["status"], "unknown"),
                            "started": desc["startDate"].isoformat()}
    if desc.get("stopDate"):
        body["stopped"] = desc["stopDate"].isoformat()
    if desc["status"] == "SUCCEEDED" and desc.get("output"):
        body.update(_finished(json.loads(desc["output"])))
    else:
        body["progress"] = _progress(job_id, desc)
    return _json(200, body)


def _store() -> OutputStore:
    cfg = settings()
    return OutputStore(_client("s3"), cfg.output_bucket, cfg.output_prefix)


def _progress(job_id: str, desc: dict) -> dict:
    """Dates finished so far (a date is done iff its manifest exists; listing only, no reads)."""
    try:
        total = len(ColocationRequest.model_validate(json.loads(desc.get("input") or "{}")).dates())
    except (ValueError, TypeError):
        total = None
    store = _store()
    done = 0
    paginator = store.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=store.bucket, Prefix=f"{store.prefix}/{job_id}/"):
        done += sum(1 for o in page.get("Contents", []) if o["Key"].endswith("/" + MANIFEST))
    return {"dates_total": total, "dates_done": done}


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
    urls: dict[str, str] = {"run_manifest": store.presign(output["manifest_key"], cfg.presign_expiry_s)}
    dates = []
    for entry in run.get("dates", []):
        row = {"date": entry.get("date"), "status": entry.get("status")}
        keys = [k for k in [entry.get("manifest_key"), *entry.get("outputs", [])] if isinstance(k, str)]
        if keys and len(urls) + len(keys) <= MAX_URLS:
            row["urls"] = {k.rsplit("/", 1)[-1]: store.presign(k, cfg.presign_expiry_s) for k in keys}
        if entry.get("error"):
            row["error"] = entry["error"]
        dates.append(row)
    out["dates"] = dates
    out["run_manifest_url"] = urls["run_manifest"]
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
