"""Every endpoint, collection, limit and default in one settings object.

Production defaults point at the real NASA services; every base URL can be overridden
(environment variables prefixed ``COLOC_``), which is how the offline sandbox and the
tests route the *same* code to loopback emulators.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from typing import Mapping

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
L2P_ACCESS = ("s3", "https", "auto")
# The DAAC that owns a provider's buckets hands out its temporary S3 credentials.
S3CREDENTIALS_ENDPOINTS = {
    "POCLOUD": "https://archive.podaac.earthdata.nasa.gov/s3credentials",
    "NSIDC_CPRD": "https://data.nsidc.earthdatacloud.nasa.gov/s3credentials",
}


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    # --- endpoints -------------------------------------------------------------------------
    cmr_url: str = "https://cmr.earthdata.nasa.gov"
    edl_url: str = "https://urs.earthdata.nasa.gov"
    earthdata_hosts: tuple[str, ...] = EARTHDATA_HOSTS
    extra_allowed_hosts: tuple[str, ...] = EXTRA_ALLOWED_HOSTS
    cloudfront_hosts: tuple[str, ...] = CLOUDFRONT_HOSTS
    s3credentials_endpoints: Mapping[str, str] = field(
        default_factory=lambda: dict(S3CREDENTIALS_ENDPOINTS)
    )
    # None: boto3/s3fs default (or AWS_ENDPOINT_URL_S3); the sandbox sets a loopback moto server.
    s3_endpoint_url: str | None = None
    aws_region: str = "us-west-2"
    client_id: str = "atl07-sst-colocation"

    # --- collections -----------------------------------------------------------------------
    atl07_collection: str = ATL07_COLLECTION
    sst_collection: str = MODIS_L2P_COLLECTION

    # --- science defaults ------------------------------------------------------------------
    radius_m: float = 1000.0
    max_dt_s: float = 3 * 3600.0
    min_quality_level: int = 4  # GHRSST: 4 = acceptable, 5 = best
    # ATL07 segments kept this far outside the requested bbox (0: exactly the box the user asked
    # for); recorded in the products' colocation_bbox_margin_deg
    bbox_margin_deg: float = 0.0

    # --- access ----------------------------------------------------------------------------
    # download: stream over HTTPS with EDL (works anywhere); direct: read in place from S3;
    # auto: direct when the granule has an s3:// link and we run in the DAAC's region
    atl07_access: str = "download"
    # L2P: s3 = in place with /s3credentials (works only in us-west-2); https = range requests
    # on the URL TEA redirects to (anywhere); auto = s3 when AWS_REGION is aws_region
    l2p_access: str = "auto"
    download_dir: str = "/tmp"
    # Most bytes this process may keep in download_dir (0: only the disk's free space limits);
    # a Lambda's /tmp is shared by everything in the container.
    download_max_bytes: int = 0
    s3_block_size: int = 1 << 20  # s3fs block cache; the default readahead over-reads massively
    cmr_page_size: int = 2000
    http_timeout_s: float = 60.0
    http_retries: int = 5
    http_backoff_s: float = 0.5
    # Longest Retry-After honoured (urllib3's default is 6 h: a Lambda would sleep past its timeout)
    http_retry_after_max_s: float = 60.0
    credentials_refresh_margin_s: float = 300.0

    # --- outputs and limits ----------------------------------------------------------------
    output_bucket: str = ""
    output_prefix: str = "colocations"
    presign_expiry_s: int = 3600
    max_direct_dates: int = 3  # longer ranges go through the state machine
    max_dates: int = 3660  # ten years
    edl_secret_name: str = ""  # Secrets Manager secret holding the EDL token (Lambda)

    def allowed_hosts(self) -> tuple[str, ...]:
        return self.earthdata_hosts + self.extra_allowed_hosts

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from ``COLOC_<FIELD>`` variables (upper-case field names)."""
        env = os.environ if environ is None else environ
        updates: dict[str, object] = {}
        base = cls()
        for f in fields(cls):
            raw = env.get(f"COLOC_{f.name.upper()}")
            if raw is None:
                continue
            current = getattr(base, f.name)
            if isinstance(current, tuple):
                updates[f.name] = _split(raw)
            elif isinstance(current, Mapping):
                updates[f.name] = dict(json.loads(raw))
            elif isinstance(current, bool):
                updates[f.name] = raw.lower() in ("1", "true", "yes")
            elif isinstance(current, int):
                updates[f.name] = int(raw)
            elif isinstance(current, float):
                updates[f.name] = float(raw)
            else:
                updates[f.name] = raw or None if f.name == "s3_endpoint_url" else raw
        return replace(base, **updates)

    def to_env(self) -> dict[str, str]:
        """The inverse of :meth:`from_env` (used to hand sandbox settings to subprocesses)."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = ",".join(value)
            elif isinstance(value, Mapping):
                value = json.dumps(dict(value))
            out[f"COLOC_{f.name.upper()}"] = str(value)
        return out
