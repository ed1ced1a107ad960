"""/s3credentials faults through the production pipeline: retried, a named UpstreamError (never an
empty dict handed to s3fs), or refreshed mid-task; nothing half-written in the output bucket."""
from __future__ import annotations

import re
import time

import pytest

from core.access.credentials import CredentialsCache
from core.errors import UpstreamError
from tests import faults_fixtures as ff
from tests.pipeline_fixtures import run_date

CREDS = "/s3credentials"


@pytest.fixture
def sb(fault_sb):
    return fault_sb


def _fails(sb, t, match: str, **overrides) -> UpstreamError:
    with pytest.raises(UpstreamError) as info:
        run_date(t, ff.services(sb, **overrides))
    assert "/s3credentials" in info.value.service and match in str(info.value), str(info.value)
    assert sb.state.requests_to("s3api") == [], "S3 was read without valid credentials"
    ff.assert_nothing_written(sb, t)
    return info.value


def test_500_burst_is_retried(sb):
    sb.faults.add(CREDS, app="podaac", status=500, times=2)
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb))
    ff.assert_one_complete_result(sb, t, manifest)
    assert len(sb.faults.fired) == 2


def test_persistent_500_is_named(sb):
    sb.faults.add(CREDS, app="podaac", status=500)
    _fails(sb, ff.task(sb), "HTTP 500")


@pytest.mark.parametrize("body, content_type, match", [
    ("", "application/json", "empty response body"),
    ("{}", "application/json", "empty or non-object"),
    ("[]", "application/json", "empty or non-object"),
    ('{"accessKeyId": "ASIAX", "secretAccessKey": "s"}', "application/json", "lacks sessionToken"),
    ('{"accessKeyId": "ASIAX", "secretAccessKey": "s", "sessionToken": "t", "expiration": "soon"}',
     "application/json", "expiration"),
    ("accessKeyId=ASIAX", "text/plain", "not JSON"),
])
def test_empty_or_malformed_body_is_never_an_empty_credential_set(sb, body, content_type, match):
    sb.faults.add(CREDS, app="podaac", body=body, content_type=content_type)
    err = _fails(sb, ff.task(sb), match)
    assert "secretAccessKey\": \"s" not in str(err)


def _key_ids(sb) -> list[str]:
    """The access key id each S3 read through the proxy was signed with, in order."""
    out = []
    for r in sb.state.requests_to("s3api"):
        m = re.search(r"Credential=([A-Z0-9]+)/", r.headers.get("Authorization", ""))
        out.append(m.group(1) if m else "")
    return out


def test_credentials_expiring_in_the_middle_of_a_task_are_refreshed(sb):
    """The task's clock (and the DAAC's, which dates each set it issues) jumps past the first
    set's hour once the task's S3 reads have begun: the reads after it are signed with a new set.
    A clock, not a short lifetime slept through: a loaded machine cannot expire the set early."""
    def clock() -> float:
        return time.time() + (7200.0 if len(sb.state.requests_to("s3api")) > 2 else 0.0)

    services = ff.services(sb)
    services.credentials = CredentialsCache(services.http, clock=clock,
                                            refresh_margin_s=services.settings.credentials_refresh_margin_s)
    sb.state.credentials_clock = clock
    issued_before = len(sb.state.issued_credentials)
    t = ff.task(sb)
    try:
        manifest = run_date(t, services)
    finally:
        sb.state.credentials_clock = time.time
    ff.assert_one_complete_result(sb, t, manifest)
    issued = [c for c in sb.state.issued_credentials[issued_before:] if c["daac"] == "podaac"]
    assert len(issued) == 2, "the expired set was not refreshed, or refreshed more than once"
    used = _key_ids(sb)
    assert used[0] == issued[0]["accessKeyId"], "the first reads used the first set"
    assert used[-1] == issued[1]["accessKeyId"], "reads after expiry still used the expired set"
    assert set(used) <= {c["accessKeyId"] for c in issued}
    assert len(sb.state.requests_to("podaac")) == len(issued)  # fetched only when needed


def test_the_s3_proxy_refuses_expired_or_forged_daac_credentials(sb):
    """The check that makes the refresh test meaningful: like S3 (and unlike bare moto), the
    sandbox refuses a request signed with an expired set or a wrong session token."""
    import boto3
    from botocore.exceptions import ClientError

    g = next(g for g in sb.scene.granules if g.daac == "podaac")

    def get(creds, token=None):
        s3 = boto3.client("s3", region_name="us-west-2", endpoint_url=sb.s3_url,
                          aws_access_key_id=creds["accessKeyId"], aws_secret_access_key=creds["secretAccessKey"],
                          aws_session_token=token or creds["sessionToken"])
        return s3.get_object(Bucket=g.bucket, Key=g.key, Range="bytes=0-15")["Body"].read()

    fresh = sb.state.issue_credentials("podaac")
    assert len(get(fresh)) == 16
    with pytest.raises(ClientError, match="InvalidToken"):
        get(fresh, token="forged-session-token")
    short = sb.state.issue_credentials("podaac", ttl_s=1)
    time.sleep(1.1)
    with pytest.raises(ClientError, match="ExpiredToken"):
        get(short)
