"""Every endpoint, collection, limit and default in one settings object.

Production defaults point at the real NASA services; every base URL can be overridden
(environment variables prefixed ``COLOC_``), which is how the offline sandbox and the
tests route the *same* code to loopback emulators. The values are validated when the settings
are built (pydantic-settings), so a bad ``COLOC_*`` value stops a function's cold start with a
:class:`ConfigError` naming the variable. ``settings.replace(**changes)`` is a validated copy.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from core.collections import COLLECTION_SYNTAX, is_collection, s3credentials_endpoints

# Current ATL07 (v007, Earthdata Cloud). The tutorial's v004 on-prem id (C2003771980-NSIDC_ECS)
# is retired but still accepted wherever a collection is given.
ATL07_COLLECTION = "C3564876395-NSIDC_CPRD"
ATL07_RETIRED_COLLECTION = "C2003771980-NSIDC_ECS"
MODIS_L2P_COLLECTION = "C1940473819-POCLOUD"  # MODIS_A-JPL-L2P-v2019.0

# Hosts that may receive the Earthdata Login token (EDL itself, CMR, DAAC data/TEA hosts).
EARTHDATA_HOSTS = (
    "urs.earthdata.nasa.gov",
    "cmr.earthdata.nasa.gov",
    "data.nsidc.earthdatacloud.nasa.gov",
    "n5eil01u.ecs.nsidc.org",
    "archive.podaac.earthdata.nasa.gov",
)
# Hosts we may *fetch* from without credentials: TEA redirects to presigned in-region S3 URLs.
# A leading "*." matches any subdomain.
EXTRA_ALLOWED_HOSTS = (
    "*.s3.us-west-2.amazonaws.com",
    "s3.us-west-2.amazonaws.com",
    "*.s3.amazonaws.com",
)
# Reached only as a redirect target of an Earthdata host: TEA sends a caller outside us-west-2
# to a signed CloudFront URL (never trusted as a link from CMR, never given the EDL token).
CLOUDFRONT_HOSTS = ("*.cloudfront.net",)
# download: stream over HTTPS with EDL (works anywhere); direct: read in place from S3;
# auto: direct when the granule has an s3:// link and we run in the DAAC's region
Atl07Access = Literal["download", "direct", "auto"]
# L2P: s3 = in place with /s3credentials (works only in us-west-2); https = range requests
# on the URL TEA redirects to (anywhere); auto = s3 when AWS_REGION is aws_region
L2pAccess = Literal["s3", "https", "auto"]
ATL07_ACCESS: tuple[str, ...] = get_args(Atl07Access)
L2P_ACCESS: tuple[str, ...] = get_args(L2pAccess)
# How an L2P granule's bytes come over (core.pipeline.sst_granules; measured in bench/README.md, "The right
# read for the file"): chunks = the HDF5 metadata and only the chunks each phase needs, located
# by the granule's .dmrpp sidecar (or h5py's chunk index without one), fetched side by side;
# blocks = s3fs/HTTPS 1 MiB block cache, on demand; whole = the whole object as parallel ranges
L2pRead = Literal["chunks", "blocks", "whole"]
L2P_READ: tuple[str, ...] = get_args(L2pRead)
# The DAAC that owns a provider's buckets hands out its temporary S3 credentials (core.collections).
S3CREDENTIALS_ENDPOINTS = s3credentials_endpoints()


_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("coloc_environ", default=None)


class ConfigError(ValueError):
    """Settings the service cannot run with, naming each COLOC_* variable (or setting) at fault.

    Raised when the settings are built, i.e. at a handler's cold start: the function's init
    fails with this message instead of a task failing later as a user's InputError."""


class _Environment(EnvSettingsSource):
    """The COLOC_* variables of the mapping :meth:`Settings.from_env` reads; none otherwise, so
    ``Settings()`` is the defaults whatever the process environment holds."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = _ENVIRON.get()
        if environ is None:
            return {}
        return parse_env_vars(environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


# COLOC_* values are strings: a tuple is comma-separated, a mapping a JSON object (as before
# pydantic-settings; NoDecode keeps its own JSON decoding of complex fields out of the way).
Hosts = Annotated[tuple[str, ...], NoDecode]
Endpoints = Annotated[dict[str, str], NoDecode]
HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s/]+")]


class Settings(BaseSettings):
    """Validated when built: bad values raise :class:`ConfigError` naming the variable."""

    model_config = SettingsConfigDict(env_prefix="COLOC_", frozen=True, extra="forbid", validate_default=True)

    # --- endpoints -------------------------------------------------------------------------
    cmr_url: HttpUrl = "https://cmr.earthdata.nasa.gov"
    edl_url: HttpUrl = "https://urs.earthdata.nasa.gov"
    earthdata_hosts: Hosts = EARTHDATA_HOSTS
    extra_allowed_hosts: Hosts = EXTRA_ALLOWED_HOSTS
    cloudfront_hosts: Hosts = CLOUDFRONT_HOSTS
    s3credentials_endpoints: Endpoints = Field(default_factory=lambda: dict(S3CREDENTIALS_ENDPOINTS))
    # None: boto3/s3fs default (or AWS_ENDPOINT_URL_S3); the sandbox sets a loopback moto server.
    s3_endpoint_url: HttpUrl | None = None
    aws_region: str = Field("us-west-2", pattern=r"^[a-z0-9-]+$")
    client_id: str = Field("atl07-sst-colocation", min_length=1)

    # --- collections -----------------------------------------------------------------------
    atl07_collection: str = Field(ATL07_COLLECTION, min_length=1)
    sst_collection: str = Field(MODIS_L2P_COLLECTION, min_length=1)

    # --- science defaults ------------------------------------------------------------------
    radius_m: float = Field(1000.0, gt=0)
    max_dt_s: float = Field(3 * 3600.0, ge=0)
    min_quality_level: int = Field(4, ge=0, le=5)  # GHRSST: 4 = acceptable, 5 = best
    # ATL07 segments kept this far outside the requested bbox (0: exactly the box the user asked
    # for); recorded in the products' colocation_bbox_margin_deg
    bbox_margin_deg: float = Field(0.0, ge=0)

    # --- access (ATL07_ACCESS, L2P_ACCESS above) -------------------------------------------
    atl07_access: Atl07Access = "download"
    l2p_access: L2pAccess = "auto"
    l2p_read: L2pRead = "chunks"
    download_dir: str = Field("/tmp", min_length=1)
    # Most bytes this process may keep in download_dir (0: only the disk's free space limits);
    # a Lambda's /tmp is shared by everything in the container.
    download_max_bytes: int = Field(0, ge=0)
    # ATL07 downloads as parallel ranged GETs (core.access.download): one connection tops out near 85 MB/s
    # (AWS S3 performance guidelines: "one concurrent request for each 85-90 MB/s"), and the
    # guidelines suggest 8-16 MB byte ranges; at most 16 at once (the session's pool per host).
    # 1: today's single streamed GET.
    download_parallel: int = Field(8, ge=1, le=16)
    download_part_bytes: int = Field(16 << 20, ge=1 << 20, le=1 << 30)
    s3_block_size: int = Field(1 << 20, gt=0)  # s3fs block cache; the default readahead over-reads massively
    # ranged GETs in flight per object read in place (core.access.rangefile); S3 serves 5,500 GET/s per
    # prefix (AWS S3 performance guidelines), a Lambda's bandwidth is the limit (docs/NETWORK.md)
    s3_parallel: int = Field(16, ge=1, le=64)
    # L2P granules of a date read side by side (each with s3_parallel ranges in flight): 4 keep
    # the network busy; 8 measured slower on 2 cores and ~180 MB more at peak (bench/README.md);
    # 2: each open granule holds ~50 MB of location arrays, and the seed date peaks ~100 MB lower
    # at 2 than at 4 (bench/README.md, "A scientist's study": the 512 MB target)
    l2p_parallel: int = Field(2, ge=1, le=32)
    cmr_page_size: int = Field(2000, ge=1)
    # hard ceiling on the granules one CMR search may list (a date's ATL07 or one SST collection's
    # L2P within ±Δt: tens to a few hundred); past it the search fails as CmrPagingError
    cmr_max_granules: int = Field(5000, ge=1)
    http_timeout_s: float = Field(60.0, gt=0)
    http_retries: int = Field(5, ge=0)
    http_backoff_s: float = Field(0.5, ge=0)
    # Longest Retry-After honoured (urllib3's default is 6 h: a Lambda would sleep past its timeout)
    http_retry_after_max_s: float = Field(60.0, ge=0)
    credentials_refresh_margin_s: float = Field(300.0, ge=0)

    # --- outputs and limits ----------------------------------------------------------------
    output_bucket: str = ""
    output_prefix: str = "colocations"
    # SigV4 presigned URLs live at most 7 days (AWS S3 docs, "Sharing objects with presigned URLs"),
    # but a URL signed with temporary credentials (a Lambda role's) stops working when they expire,
    # whatever its expiry: links are given min(presign_expiry_s, role_session_s) and say so
    presign_expiry_s: int = Field(3600, ge=1, le=7 * 86400)
    # the lifetime the signing credentials can be counted on (an IAM role session: 1 h by default)
    role_session_s: int = Field(3600, ge=60, le=12 * 3600)
    # Job ids are HMAC-SHA256 of the resolved request under this key (core.request), so nobody can
    # compute another user's job id from its parameters; the stack creates the key in Secrets
    # Manager (job_id_secret_name, read at a function's cold start). Empty: unkeyed (a local run).
    job_id_key: SecretStr = SecretStr("")
    job_id_secret_name: str = ""
    # Days after which a date's granules are taken as published (the slowest requested
    # collection's latency): a more recent date is "provisional" and computed again on a later run
    collection_latency_days: int = Field(45, ge=0, le=3660)
    max_direct_dates: int = Field(3, ge=1)  # longer ranges go through the state machine
    max_dates: int = Field(3660, ge=1)  # ten years
    # Pre-flight estimate (core.jobs.estimate, README "How large a request may be"): `colocate run`
    # asks for --yes above estimate_confirm_gb to move; POST /colocations answers 413 above request_max_gb
    estimate_confirm_gb: float = Field(100.0, ge=0)
    request_max_gb: float = Field(5000.0, gt=0)
    colocate_memory_mb: int = Field(2048, ge=128, le=10240)  # ColocateFunction's MemorySize (template.yaml)
    edl_secret_name: str = ""  # Secrets Manager secret holding the EDL token (Lambda)
    # Where the data come from: "synthetic" (set by the offline sandbox, never in a deployment)
    # marks every product, manifest and PNG as such and gives a request another request id, so
    # synthetic results can never pass for (or share a folder with) results made from NASA's data
    data_mode: Literal["real", "synthetic"] = "real"

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return init_settings, _Environment(settings_cls)

    @field_validator("earthdata_hosts", "extra_allowed_hosts", "cloudfront_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("s3credentials_endpoints", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError('must be a JSON object, e.g. {"POCLOUD": "https://…/s3credentials"}') from None
        return value

    @field_validator("atl07_collection", "sst_collection")
    @classmethod
    def _collection_syntax(cls, value: str) -> str:
        if not is_collection(value):
            raise ValueError(f"must be {COLLECTION_SYNTAX}")
        return value

    @field_validator("s3_endpoint_url", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        return value or None

    def __init__(self, **values: Any):
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_problems(exc, _ENVIRON.get() is not None)) from None

    def allowed_hosts(self) -> tuple[str, ...]:
        return self.earthdata_hosts + self.extra_allowed_hosts

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``COLOC_<FIELD>`` variables (upper-case field names) of ``environ``
        (default: the process environment); raises :class:`ConfigError` naming each bad one."""
        import os

        token = _ENVIRON.set(os.environ if environ is None else environ)
        try:
            return cls()
        finally:
            _ENVIRON.reset(token)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated like the environment's values
        (:class:`ConfigError` for an unknown name or a bad value)."""
        return type(self)(**{**self.model_dump(), **changes})

    def to_env(self) -> dict[str, str]:
        """The inverse of :meth:`from_env` (used to hand sandbox settings to subprocesses)."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
                if not value:
                    continue
            if isinstance(value, tuple):
                value = ",".join(value)
            elif isinstance(value, Mapping):
                value = json.dumps(dict(value))
            out[f"COLOC_{name.upper()}"] = str(value)
        return out


def _problems(exc: ValidationError, from_environment: bool) -> str:
    """One line per bad setting, named as the operator sets it (never echoing the value)."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        name = str(err["loc"][0]) if err["loc"] else "settings"
        label = f"COLOC_{name.upper()}" if from_environment else name
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{label}: {message}")
    return "invalid settings: " + "; ".join(lines)
