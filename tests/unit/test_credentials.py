"""/s3credentials: parsing, caching, refresh before expiry, and clear errors (TEA emulator)."""
from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from core.access.credentials import CredentialsCache, S3CredentialsProvider, parse_credentials, parse_expiration
from core.access.earthdata import EarthdataSession, StaticToken
from core.errors import AuthError, UpstreamError


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


def _endpoint(sb, provider="POCLOUD"):
    return sb.settings.s3credentials_endpoints[provider]


def test_fetches_and_caches(sb, session):
    p = S3CredentialsProvider(session, _endpoint(sb))
    a, b = p.get(), p.get()
    assert a is b and p.fetch_count == 1
    issued = sb.state.issued_credentials[-1]
    assert a.key == issued["accessKeyId"] and a.secret == issued["secretAccessKey"]
    assert a.token == issued["sessionToken"]
    assert a.expiration == parse_expiration(issued["expiration"])
    assert len([r for r in sb.state.requests_to("podaac") if r.path == "/s3credentials"]) == 1


def test_refreshes_before_expiry_with_controlled_clock(sb, session):
    sb.state.credentials_ttl_s = 3600
    clock = Clock()
    p = S3CredentialsProvider(session, _endpoint(sb), clock=clock, refresh_margin_s=300)
    first = p.get()
    clock.now = first.expires_at - 301
    assert p.get() is first and p.fetch_count == 1
    clock.now = first.expires_at - 299  # inside the margin: refresh
    second = p.get()
    assert p.fetch_count == 2 and second.key != first.key
    clock.now = second.expires_at - 1  # a long task, one second before expiry
    third = p.get()
    assert p.fetch_count == 3 and third.key not in (first.key, second.key)


def test_concurrent_readers_fetch_once(sb, session):
    p = S3CredentialsProvider(session, _endpoint(sb))
    sb.faults.add("/s3credentials", app="podaac", delay_s=0.3, times=1)
    out = []
    threads = [threading.Thread(target=lambda: out.append(p.get())) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert p.fetch_count == 1 and len({id(c) for c in out}) == 1


@pytest.mark.parametrize(
    "body, match",
    [
        ("", "empty response body"),
        ("{}", "empty or non-object"),
        ("[]", "empty or non-object"),
        ("<html>oops</html>", "not JSON"),
        ('{"accessKeyId": "AK", "secretAccessKey": "SUPERSECRET", "expiration": "2099-01-01 00:00:00+00:00"}', "sessionToken"),
        ('{"accessKeyId": "AK", "secretAccessKey": "SUPERSECRET", "sessionToken": "T", "expiration": "soon"}', "expiration"),
        ('{"accessKeyId": "AK", "secretAccessKey": "SUPERSECRET", "sessionToken": "T", "expiration": "2001-01-01 00:00:00+00:00"}', "already expired"),
    ],
)
def test_malformed_responses_are_named_errors(sb, session, body, match):
    sb.faults.add("/s3credentials", app="podaac", body=body, content_type="application/json")
    p = S3CredentialsProvider(session, _endpoint(sb))
    with pytest.raises(UpstreamError, match=match) as err:
        p.get()
    assert "/s3credentials" in str(err.value) and sb.url("podaac") in str(err.value)
    assert "SUPERSECRET" not in str(err.value)


def test_server_error_after_retries(sb, session):
    sb.faults.add("/s3credentials", app="podaac", status=500)
    with pytest.raises(UpstreamError, match="HTTP 500"):
        S3CredentialsProvider(session, _endpoint(sb)).get()
    assert len(sb.state.requests_to("podaac")) == 1 + sb.settings.http_retries


def test_bad_token_is_auth_error(sb):
    s = EarthdataSession(sb.settings, StaticToken("EDL-expired-XYZZY"))
    with pytest.raises(AuthError) as err:
        S3CredentialsProvider(s, _endpoint(sb)).get()
    assert "XYZZY" not in str(err.value)


def test_sts_style_keys_and_redaction():
    body = {
        "AccessKeyId": "ASIAEXAMPLE",
        "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG",
        "SessionToken": "LONGTOKEN",
        "Expiration": "2099-06-11T02:36:29.000Z",
    }
    creds = parse_credentials(body, "https://archive.podaac.earthdata.nasa.gov/s3credentials", now=time.time())
    assert creds.expiration == datetime(2099, 6, 11, 2, 36, 29, tzinfo=UTC)
    assert creds.as_dict()["secret"] == "wJalrXUtnFEMI/K7MDENG"
    for text in (repr(creds), str(creds), repr(creds.as_dict().keys())):
        assert "wJalrXUtnFEMI" not in text and "LONGTOKEN" not in text
    assert parse_expiration("2021-01-27 00:50:09+00:00") == datetime(2021, 1, 27, 0, 50, 9, tzinfo=UTC)


def test_cache_is_per_endpoint_and_daacs_get_distinct_keys(sb, session):
    cache = CredentialsCache(session)
    podaac = cache.get(_endpoint(sb, "POCLOUD"))
    nsidc = cache.get(_endpoint(sb, "NSIDC_CPRD"))
    assert cache.get(_endpoint(sb, "POCLOUD")) is podaac
    assert podaac.key.startswith("ASIAPODAAC") and nsidc.key.startswith("ASIANSIDC")
    assert cache.provider(_endpoint(sb, "POCLOUD")) is cache.provider(_endpoint(sb, "POCLOUD"))


def test_expiring_credentials_fault_triggers_refresh(sb, session):
    sb.faults.add("/s3credentials", app="podaac", credentials_ttl_s=3, times=1)
    clock = Clock()
    p = S3CredentialsProvider(session, _endpoint(sb), clock=clock, refresh_margin_s=1)
    short = p.get()
    assert short.expires_at - time.time() < 3  # whole seconds, as TEA writes them
    clock.now = short.expires_at - 1 - 0.01  # just before the margin: still the short set
    assert p.get() is short
    clock.now = short.expires_at - 1  # inside the margin of the short-lived set
    fresh = p.get()
    assert fresh.key != short.key and fresh.expires_at - clock.now > 60 and p.fetch_count == 2
