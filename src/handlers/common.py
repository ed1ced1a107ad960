"""Shared Powertools objects and error shaping for the Lambda adapters (no business logic)."""
from __future__ import annotations

import logging
import os
from functools import lru_cache

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from pydantic import ValidationError

from core.config import Settings
from core.errors import ColocationError, InputError
from core.request import error_fields

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "atl07-sst-colocation")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Atl07SstColocation")

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

# core/ logs through stdlib loggers ("core.pipeline", ...): give their parent the Powertools
# handler so those records come out as the same structured JSON, with the correlation id.
logging.getLogger("core")
copy_config_to_registered_loggers(source_logger=logger, include={"core"})


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_env()


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
