"""API Gateway (REST, proxy integration): start a colocation job, read its status (core.jobs.job_status).

POST /colocations        body = ColocationRequest → 202 {"job_id", "status_url", "estimate"} (Step
                         Functions; core.jobs.preflight's estimate); 413 above COLOC_REQUEST_MAX_GB to move;
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
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from core.access.catalog import check_collections
from core.errors import ColocationError
from core.jobs import job_status, preflight
from core.request import ColocationRequest, fields_from_errors
from handlers.runtime import client, error_body, logger, metrics, output_links, settings, state_machine_arn, tracer

MAX_BODY_BYTES = 4096  # a request is a handful of parameters

app = APIGatewayRestResolver(enable_validation=True)


def _json(status: int, body: dict) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps(body))


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
    estimate = preflight.estimate(resolved, settings())  # dates, granules, GB to move, cost (README)
    if estimate.exceeds(settings().request_max_gb):
        return _json(413, preflight.refusal(estimate, settings().request_max_gb))
    answer = job_status.start_job(resolved, client("stepfunctions"), state_machine_arn(), _status_url(job_id))
    if answer.status == 202:
        answer.body["estimate"] = estimate.document()
        metrics.add_metric(name="JobsStarted" if answer.body["attempt"] == 1 else "JobsRerun",
                           unit=MetricUnit.Count, value=1)
    return _json(answer.status, answer.body)


@app.get("/colocations/<job_id>")
def get_job(job_id: str):
    if not job_status.JOB_ID.match(job_id):
        return _json(404, {"error": "unknown job"})
    body = job_status.job_report(job_id, client("stepfunctions"), state_machine_arn(), output_links())
    return _json(200, body) if body is not None else _json(404, {"error": "unknown job"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: Any) -> dict:
    body = event.get("body") if isinstance(event, dict) else None
    if isinstance(body, str) and len(body.encode("utf-8", "replace")) > MAX_BODY_BYTES:
        return {"statusCode": 413, "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"error": f"body larger than {MAX_BODY_BYTES} bytes"})}
    return app.resolve(event, context)
