"""Shared Powertools objects and error shaping for the Lambda adapters (no business logic)."""
from __future__ import annotations

import logging
import os
from functools import cache, lru_cache

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from pydantic import ValidationError

from core.config import Settings
from core.errors import ColocationError, InputError
from core.request import error_fields
from core.results import OutputStore

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "atl07-sst-colocation")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Atl07SstColocation")

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

# core/ logs through stdlib loggers ("core.pipeline.task", ...): give their parent the Powertools
# handler so those records come out as the same structured JSON, with the correlation id.
logging.getLogger("core")
copy_config_to_registered_loggers(source_logger=logger, include={"core"})


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_env()


# Cold start: a bad COLOC_* value fails the function's init with a ConfigError naming the
# variable, before any event (not a task failing later as if the caller's input were wrong).
settings()


def client(service: str):
    """The container's boto3 client for ``service`` (S3: the output bucket's endpoint, SigV4 so
    presigned URLs are regional and honour ExpiresIn). Built once per region and endpoint."""
    cfg = settings()
    return _new_client(service, cfg.aws_region, cfg.s3_endpoint_url if service == "s3" else None)


@cache
def _new_client(service: str, region: str, endpoint_url: str | None):
    import boto3
    from botocore.config import Config

    if service == "s3":
        return boto3.client("s3", region_name=region, endpoint_url=endpoint_url,
                            config=Config(signature_version="s3v4"))
    return boto3.client(service, region_name=region)


client.cache_clear = _new_client.cache_clear  # type: ignore[attr-defined]


def output_store() -> OutputStore:
    """The output bucket of these settings, through the container's S3 client."""
    cfg = settings()
    return OutputStore(client("s3"), cfg.output_bucket, cfg.output_prefix)


def state_machine_arn() -> str:
    arn = os.environ.get("STATE_MACHINE_ARN", "")
    if not arn:
        raise ColocationError("STATE_MACHINE_ARN is not configured")
    return arn


def athena_table() -> tuple[str, str]:
    """The Glue database and table over the request-level Parquet (template.yaml); "" if unset."""
    return os.environ.get("ATHENA_DATABASE", ""), os.environ.get("ATHENA_TABLE", "")


def athena_workgroup() -> str:
    return os.environ.get("ATHENA_WORKGROUP", "")


def error_body(exc: Exception) -> dict:
    """What a caller sees for a failure: a message and field list, never a traceback."""
    if isinstance(exc, ValidationError):
        return {"error": "invalid request", "fields": error_fields(exc)}
    if isinstance(exc, InputError):
        return {"error": "invalid request", "fields": error_fields(exc)}
    if isinstance(exc, ColocationError):
        return {"error": str(exc)[:500], "type": type(exc).__name__}
    return {"error": "internal error", "type": "InternalError"}


def one_line(text: object, limit: int = 300) -> str:
    """The first line of an error message, whitespace collapsed and capped: what a status shows."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = " ".join(lines[0].split()) if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


# Errors raised to Step Functions: the Lambda errorType is the class name, which Retry/Catch match.
class InvalidTaskError(Exception):
    """A Map item or state input failed validation: never retried."""


class DateTaskFailed(Exception):
    """run_task reported status "failed" for a date (recorded by the Map's Catch)."""
