"""TEA's real refusals and the "outside the region" path through the production pipeline: a named
failure with nothing in the output bucket, or a retried/re-resolved complete result."""
from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from core.errors import AuthError, AuthorisationRequiredError, InvalidTokenError, TokenExpiredError, UpstreamError
from sandbox.emulator import s3_error_fault
from tests import faults_fixtures as ff
from tests.pipeline_fixtures import run_date
from tests.sandbox_fixtures import caller_kept_in_place


@pytest.fixture
def sb(fault_sb):
    with caller_kept_in_place(fault_sb):
        yield fault_sb
    fault_sb.state.accept_eula(fault_sb.edl_username, "nsidc")


def _fails(sb, t, services, exc_type):
    with pytest.raises(exc_type) as info:
        run_date(t, services)
    ff.assert_nothing_written(sb, t)
    return info.value


def _l2p_cloudfront_prefix(sb) -> str:
    """``/s3-<hash>/<bucket>.s3.us-west-2.amazonaws.com`` of the L2P bucket, as TEA hands it out."""
    g = next(g for g in sb.scene.granules if g.daac == "podaac")
    loc = requests.get(sb.links(g)["https"], headers={"Authorization": f"Bearer {sb.edl_token}"},
                       allow_redirects=False, timeout=10).headers["Location"]
    return "/".join(urlsplit(loc).path.split("/")[:3])


# --- refusals ------------------------------------------------------------------------------------
def test_an_eula_not_accepted_fails_the_date_naming_where_to_accept_it(sb):
    sb.state.require_eula(sb.edl_username, "nsidc")
    err = _fails(sb, ff.task(sb), ff.services(sb), AuthorisationRequiredError)
    assert err.resolution_url and err.resolution_url in str(err) and "EULA" in str(err)
    assert "HTTP 403" not in str(err) and sb.edl_token not in str(err)


def test_a_token_that_is_not_a_jwt_fails_the_date_as_an_invalid_token(sb):
    bad = "EDL-not-a-real-token-0123456789"
    err = _fails(sb, ff.task(sb), ff.services(sb, token=bad), InvalidTokenError)
    assert "not a JWT" in str(err) and bad not in str(err)


def test_an_expired_token_fails_the_date_as_expired(sb):
    token = sb.state.new_token(sb.edl_username)
    sb.state.expire_token(token)
    err = _fails(sb, ff.task(sb), ff.services(sb, token=token), TokenExpiredError)
    assert "expired" in str(err) and token not in str(err)


def test_s3_forced_outside_the_region_is_access_denied_by_name(sb):
    sb.set_in_region(False)
    err = _fails(sb, ff.task(sb), ff.services(sb, l2p_access="s3"), AuthError)
    assert err.service == "S3" and "l2p_access" in str(err)


# --- the HTTPS path outside the region -----------------------------------------------------------
def test_a_signed_cloudfront_url_that_expires_mid_read_is_resolved_again(sb):
    """After the first L2P resolve, CloudFront's clock jumps past the URL lifetime: every URL signed
    before the jump is refused, every URL signed after it is good. A clock, not a short lifetime
    slept through, so a loaded machine cannot expire more or fewer URLs than the test means."""
    sb.set_in_region(False)
    prefix = _l2p_cloudfront_prefix(sb)
    services = ff.services(sb)
    jumped = threading.Event()

    def expire_after_resolving(resp, *args, **kwargs):
        if resp.request.headers.get("Range") == "bytes=0-0" and prefix in resp.url and not jumped.is_set():
            jumped.set()
            sb.state.cloudfront_clock = lambda: time.time() + 2 * sb.state.cloudfront_ttl_s

    services.http.hooks["response"].append(expire_after_resolving)
    t = ff.task(sb)
    manifest = run_date(t, services)
    ff.assert_one_complete_result(sb, t, manifest)
    # the granule whose resolve moved the clock, and any resolved beside it, are resolved again
    # once; those resolved after the jump once; none more
    resolves = [r["resolves"] for r in manifest["bytes"]["sst_per_granule"].values()]
    assert jumped.is_set() and max(resolves) == 2 and all(1 <= r <= 2 for r in resolves), resolves


def test_cloudfront_503_on_ranges_is_retried(sb):
    sb.set_in_region(False)
    sb.faults.add(_l2p_cloudfront_prefix(sb), app="cloudfront", status=503, times=2)
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb))
    ff.assert_one_complete_result(sb, t, manifest)
    assert len(sb.faults.fired) == 2 and manifest["counts"]["matched"] > 0


def test_a_range_cut_short_is_a_named_https_failure(sb):
    sb.set_in_region(False)
    sb.faults.add(_l2p_cloudfront_prefix(sb), app="cloudfront", truncate_to=1000)
    err = _fails(sb, ff.task(sb), ff.services(sb), UpstreamError)
    assert err.service.startswith("HTTPS ") and "podaac-ops-cumulus-protected" in err.service
    assert not any(secret in str(err) for secret in ("Signature", "A-userid", "Expires", sb.edl_token))


def test_no_s3_api_call_with_daac_credentials_outside_the_region(sb):
    sb.set_in_region(False)
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb))
    ff.assert_one_complete_result(sb, t, manifest)
    assert not [r for r in sb.state.requests_to("s3api") if r.path.startswith("/podaac-ops-cumulus-protected/")]
    assert {r["access"] for r in manifest["bytes"]["sst_per_granule"].values()} == {"https"}


def test_the_s3_proxy_refuses_daac_credentials_outside_the_region(sb):
    """Sanity check of the emulator: the DAAC's credentials work only in us-west-2."""
    from core.access.credentials import S3CredentialsProvider
    from core.access.earthdata import EarthdataSession, StaticToken
    from core.access.s3access import open_granule, open_s3_filesystem

    g = next(g for g in sb.scene.granules if g.daac == "podaac")
    provider = S3CredentialsProvider(EarthdataSession(sb.settings, StaticToken(sb.edl_token)),
                                     sb.links(g)["s3credentials"])
    fs = open_s3_filesystem(provider, sb.settings)
    with open_granule(fs, sb.links(g)["s3"], sb.settings) as fh:
        assert fh.read(4) == g.path.read_bytes()[:4]
    sb.set_in_region(False)
    fs = open_s3_filesystem(provider, sb.settings)
    with pytest.raises(AuthError):
        open_granule(fs, sb.links(g)["s3"], sb.settings).read(4)
    assert s3_error_fault("AccessDenied")["status"] == 403
