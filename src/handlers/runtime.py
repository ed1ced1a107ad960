"""Process-wide state of the Lambda adapters (no business logic): Powertools objects, the settings
validated at cold start, boto3 clients and the pipeline's services built once per container,
the error body, the Athena environment; ``reset()`` forgets it all (tests change the environment)."""
from __future__ import annotations

import logging
import os
from functools import cache, lru_cache
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from pydantic import ValidationError

from core.config import Settings
from core.errors import ColocationError, InputError
from core.request import error_fields
from core.results import OutputStore

if TYPE_CHECKING:
    from core.jobs.job_status import OutputLinks
    from core.pipeline.services import Services

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
    return with_job_id_key(Settings.from_env())


def with_job_id_key(cfg: Settings) -> Settings:
    """The settings with the stack's job-id key read from Secrets Manager (template.yaml's
    JobIdKeySecret, named by COLOC_JOB_ID_SECRET_NAME), once per container; never logged."""
    if not cfg.job_id_secret_name or cfg.job_id_key.get_secret_value():
        return cfg
    import boto3

    from core.config import ConfigError

    try:  # (at cold start, before this module's client cache exists)
        key = boto3.client("secretsmanager", region_name=cfg.aws_region).get_secret_value(
            SecretId=cfg.job_id_secret_name)["SecretString"]
    except Exception as exc:  # noqa: BLE001 - the function cannot name its jobs without it
        raise ConfigError(f"COLOC_JOB_ID_SECRET_NAME: the job-id key cannot be read ({type(exc).__name__})") from None
    if not key:
        raise ConfigError("COLOC_JOB_ID_SECRET_NAME: the job-id key is empty")
    return cfg.replace(job_id_key=key)


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


def output_store() -> OutputStore:
    """The output bucket of these settings, through the container's S3 client."""
    cfg = settings()
    return OutputStore(client("s3"), cfg.output_bucket, cfg.output_prefix)


@lru_cache(maxsize=1)
def services() -> Services:
    """The pipeline's services, built on a container's first date: HTTP session, credentials
    cache and S3 clients are reused by every later date."""
    from core.pipeline.services import build_services  # heavy imports stay off the validation path

    return build_services(settings(), output=output_store())


def reset() -> None:
    """Forget the settings, clients and services (tests change the environment between calls)."""
    settings.cache_clear()
    _new_client.cache_clear()
    services.cache_clear()
    # Powertools keeps one SecretsProvider (with its boto3 client, bound to the endpoint of its
    # first use) per process: a later sandbox's secrets would be read from the first one's moto
    from aws_lambda_powertools.utilities.parameters import base

    base.DEFAULT_PROVIDERS.clear()


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


def output_links() -> OutputLinks:
    """Where GET /colocations/{id} links a job's outputs from: the bucket, the URLs' lifetime, Athena."""
    from core.jobs.job_status import OutputLinks  # the API's use case: not on the other functions' cold start

    database, table = athena_table()
    cfg = settings()
    # a URL signed with the role's temporary credentials dies with them (AWS S3 user guide,
    # "Sharing objects with presigned URLs"): never promise more than the role session
    expires = min(cfg.presign_expiry_s, cfg.role_session_s)
    return OutputLinks(output_store(), expires, database, table, athena_workgroup())


def error_body(exc: Exception) -> dict:
    """What a caller sees for a failure: a message and field list, never a traceback."""
    if isinstance(exc, ValidationError):
        return {"error": "invalid request", "fields": error_fields(exc)}
    if isinstance(exc, InputError):
        return {"error": "invalid request", "fields": error_fields(exc)}
    if isinstance(exc, ColocationError):
        return {"error": str(exc)[:500], "type": type(exc).__name__}
    return {"error": "internal error", "type": "InternalError"}
