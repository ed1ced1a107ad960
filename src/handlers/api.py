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
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from typing_extensions import Annotated

from core.errors import ColocationError, InputError
from core.request import ColocationRequest, error_fields
from handlers.common import error_body, logger, metrics, settings, state_machine_arn, tracer

MAX_BODY_BYTES = 4096  # a request is a handful of parameters
JOB_ID = re.compile(r"^r[0-9a-f]{20}$")
STATUS = {"RUNNING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed",
          "TIMED_OUT": "failed", "ABORTED": "failed", "PENDING_REDRIVE": "failed"}

app = APIGatewayRestResolver(enable_validation=True)


@lru_cache(maxsize=None)
def _client(service: str):
    cfg = settings()
    endpoint = cfg.s3_endpoint_url if service == "s3" else None
    return boto3.client(service, region_name=cfg.aws_region, endpoint_url=endpoint)


def _json(status: int, body: dict) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps(body))


def execution_arn(job_id: str) -> str:
    # arn:aws:states:R:A:stateMachine:NAME → arn:aws:states:R:A:execution:NAME:JOB
    return state_machine_arn().replace(":stateMachine:", ":execution:", 1) + ":" + job_id


@app.exception_handler(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response:
    fields = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if not isinstance(p, int) and p != "body"]
        ctx = err.get("ctx") or {}
        field = ".".join(loc) if loc else str(ctx.get("field") or "body")
        msg = str(ctx.get("detail") or err.get("msg") or "invalid value")
        msg = msg.removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field (not allowed)"
        if err.get("type") in ("json_invalid", "model_attributes_type", "dict_type"):
            field, msg = "body", "the body must be a JSON object"
        fields.append({"field": field, "message": msg[:300]})
    return _json(400, {"error": "invalid request", "fields": fields or
                       [{"field": "body", "message": "invalid request"}]})


@app.exception_handler(ColocationError)
def _colocation_error(exc: ColocationError) -> Response:
    return _json(exc.status if isinstance(exc, InputError) else 502, error_body(exc))


@app.post("/colocations")
@tracer.capture_method
def start_job(request: Annotated[ColocationRequest, Body(embed=False)]) -> Response:
    resolved = request.resolve(settings())
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
@tracer.capture_method
def job_status(job_id: str) -> Response:
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
    return _json(200, body)


def _finished(output: dict) -> dict:
    """Summarize's output → per-date progress and presigned URLs of every output key."""
    cfg = settings()
    s3 = _client("s3")
    bucket = output.get("bucket") or cfg.output_bucket
    out: dict[str, Any] = {"counts": output.get("counts", {}), "failed_dates": output.get("failed_dates", [])}
    urls: dict[str, str] = {}
    for key in [output.get("manifest_key"), *output.get("output_keys", [])]:
        if isinstance(key, str) and key:
            urls[key] = s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=cfg.presign_expiry_s)
    out["urls"] = urls
    out["expires_in_s"] = cfg.presign_expiry_s
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
