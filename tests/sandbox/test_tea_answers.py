"""TEA's and EDL's real answers (tests/data/realdata/cmr/recorded/README.md, from
asfadmin/thin-egress-app ``src/thin_egress_app/app.py`` and rain-api-core ``edl.py``): the
emulator gives them, and the production EarthdataSession turns each into data or a named error.

* a data GET → 303 to a presigned in-region S3 URL; outside us-west-2 → 303 to a signed
  CloudFront URL, sometimes through a second CloudFront hop;
* an EULA not accepted → 403 JSON ``error_description`` + ``resolution_url``;
* a bearer token that is not a JWT → 302 to the EDL login (not a 401);
* an expired token → EDL's own status and JSON error.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from core.access.earthdata import EarthdataSession, StaticToken, looks_like_jwt
from core.errors import (
    AuthorisationRequiredError,
    DisallowedHostError,
    InvalidTokenError,
    TokenExpiredError,
)
from tests.sandbox_fixtures import caller_kept_in_place, first_granule

RECORDED = "cmr/recorded/README.md"
CLOUDFRONT_PATH = re.compile(r"^/s3-[0-9a-f]+/(?P<bucket>[a-z0-9-]+)\.s3\.us-west-2\.amazonaws\.com/(?P<key>.+)$")


@pytest.fixture
def where(sb):
    with caller_kept_in_place(sb):
        yield sb


def _raw(url: str, token: str | None, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(url, headers=headers, allow_redirects=False, timeout=10, **kw)


def test_the_records_say_what_the_emulator_does(realdata):
    """The facts this module checks are the recorded ones (not the emulator's own invention)."""
    text = (realdata / RECORDED).read_text()
    for fact in ("**303**", "cloudfront.net/s3-", "A-userid=", "Expires=", "Signature=", "second CloudFront hop",
                 "**403 JSON**", "error_description", "resolution_url", "302 to Earthdata Login",
                 "EDL's own status and JSON body"):
        assert fact in text, fact


# --- 1. 303 to presigned in-region S3 -----------------------------------------------------------
def test_tea_answers_a_data_get_with_303_to_a_presigned_in_region_url(sb):
    g = first_granule(sb)
    resp = _raw(sb.links(g)["https"], sb.edl_token)
    assert resp.status_code == 303
    target = urlsplit(resp.headers["Location"])
    assert f"{target.hostname}:{target.port}" == sb.servers["s3"].host
    assert target.path == f"/{g.bucket}/{g.key}"
    assert {"X-Amz-Signature", "X-Amz-Expires", "A-userid"} <= set(parse_qs(target.query))
    assert "private, max-age=" in resp.headers["Cache-Control"]  # TEA's redirheaders


# --- 2. CloudFront outside the region -----------------------------------------------------------
def test_outside_the_region_tea_redirects_to_a_signed_cloudfront_url(where):
    sb = where
    sb.set_in_region(False)
    g = first_granule(sb, "podaac")
    resp = _raw(sb.links(g)["https"], sb.edl_token)
    assert resp.status_code == 303
    target = urlsplit(resp.headers["Location"])
    assert f"{target.hostname}:{target.port}" == sb.servers["cloudfront"].host
    m = CLOUDFRONT_PATH.match(target.path)
    assert m and m["bucket"] == g.bucket and m["key"] == g.key
    query = parse_qs(target.query)
    assert query["A-userid"] == [sb.edl_username] and {"Expires", "Signature"} <= set(query)
    cf = resp.headers["Location"]
    assert requests.get(cf, headers={"Range": "bytes=0-99"}, timeout=10).content == g.path.read_bytes()[:100]
    # signed for GET only; a second auth mechanism or a forged signature is refused
    assert requests.head(cf, timeout=10).status_code == 403
    assert requests.get(cf, headers={"Authorization": "Bearer x"}, timeout=10).status_code == 400
    assert requests.get(cf.replace("Signature=", "Signature=0"), timeout=10).status_code == 403


def test_outside_the_region_the_session_follows_cloudfront_without_the_token_or_cookies(where):
    sb = where
    session = EarthdataSession(sb.settings, StaticToken(sb.edl_token))
    g = first_granule(sb)
    assert session.get(sb.onprem_url(g)).status_code == 200 and len(session.cookies) >= 2  # cookies in the jar
    sb.set_in_region(False)
    for hops in (1, 2):
        sb.state.cloudfront_hops = hops
        sb.state.requests.clear()
        resp = session.get(sb.links(g)["https"])
        assert resp.status_code == 200 and resp.content == g.path.read_bytes()
        assert [h.status_code for h in resp.history] == [303, 307][:hops]
        seen = sb.state.requests_to("cloudfront") + sb.state.requests_to("cloudfront2")
        assert len(seen) == hops
        assert all("Authorization" not in r.headers and "Cookie" not in r.headers for r in seen)
    assert sb.state.requests_to("nsidc")[-1].headers["Authorization"] == f"Bearer {sb.edl_token}"


def test_a_cloudfront_link_from_cmr_is_refused_before_contacting_it(where, session):
    sb = where
    sb.set_in_region(False)
    cf = _raw(sb.links(first_granule(sb))["https"], sb.edl_token).headers["Location"]  # a valid signed URL
    sb.state.requests.clear()
    fresh = EarthdataSession(sb.settings, StaticToken(sb.edl_token))
    with pytest.raises(DisallowedHostError, match="only as the redirect target of an Earthdata host"):
        fresh.get(cf)
    assert sb.state.requests_to("cloudfront") == []


def test_a_cloudfront_redirect_from_a_host_that_is_not_earthdata_is_refused(where, session):
    """The presigned S3 host is allowed, but it is no Earthdata host: its redirect to CloudFront
    (a compromised or misconfigured hop) is not followed."""
    sb = where
    g = first_granule(sb)
    sb.set_in_region(False)
    cf = _raw(sb.links(g)["https"], sb.edl_token).headers["Location"]
    sb.set_in_region(True)
    sb.faults.add(f"/{g.bucket}/", app="s3", status=302, headers={"Location": cf})
    sb.state.requests.clear()
    with pytest.raises(DisallowedHostError):
        session.get(sb.links(g)["https"])
    assert sb.state.requests_to("cloudfront") == []


# --- 3. 403 JSON, non-JWT bearer, expired token -------------------------------------------------
def test_eula_not_accepted_is_one_line_naming_what_to_accept_and_where(sb, session):
    g = first_granule(sb, "podaac")
    sb.state.require_eula(sb.edl_username, "podaac")
    try:
        raw = _raw(sb.links(g)["s3credentials"], sb.edl_token)
        assert raw.status_code == 403
        body = raw.json()  # rain-api-core's sample keys, plus TEA's status_code
        assert set(body) == {"status_code", "error_description", "resolution_url"}
        with pytest.raises(AuthorisationRequiredError) as info:
            session.get(sb.links(g)["s3credentials"])
        msg = str(info.value)
        assert "\n" not in msg and "HTTP 403" not in msg
        assert body["error_description"] in msg and body["resolution_url"] in msg
        assert info.value.resolution_url == body["resolution_url"]
        assert sb.edl_token not in msg
        sb.state.accept_eula(sb.edl_username, "podaac")
        assert session.get(sb.links(g)["s3credentials"]).status_code == 200
    finally:
        sb.state.accept_eula(sb.edl_username, "podaac")


def test_a_token_that_is_not_a_jwt_gets_the_login_redirect_and_a_named_error(sb):
    bad = "not-a-jwt-SECRETSECRET"
    raw = _raw(sb.links(first_granule(sb))["https"], bad)
    assert raw.status_code == 302  # TEA: jwt.decode fails → do_auth_and_return, not a 401
    assert raw.headers["Location"].startswith(sb.url("edl") + "/oauth/authorize?")
    session = EarthdataSession(sb.settings, StaticToken(bad))
    with pytest.raises(InvalidTokenError) as info:
        session.get(sb.links(first_granule(sb))["https"])
    msg = str(info.value)
    assert "not a JWT" in msg and "/user_tokens" in msg and "SECRETSECRET" not in msg
    assert looks_like_jwt(sb.edl_token) and not looks_like_jwt(bad)


def test_an_expired_token_gets_edls_own_error_and_a_named_error(sb):
    token = sb.state.new_token(sb.edl_username)
    sb.state.expire_token(token)
    url = sb.links(first_granule(sb, "podaac"))["s3credentials"]
    raw = _raw(url, token)
    assert raw.status_code == 401 and "expired" in raw.json()["error_description"]
    with pytest.raises(TokenExpiredError) as info:
        EarthdataSession(sb.settings, StaticToken(token)).get(url)
    assert "expired" in str(info.value) and "/user_tokens" in str(info.value) and token not in str(info.value)


def test_a_revoked_token_is_an_invalid_token_error(sb):
    token = sb.state.new_token(sb.edl_username)
    sb.state.revoke_token(token)
    with pytest.raises(InvalidTokenError, match="401") as info:
        EarthdataSession(sb.settings, StaticToken(token)).get(sb.links(first_granule(sb, "podaac"))["s3credentials"])
    assert not isinstance(info.value, TokenExpiredError) and token not in str(info.value)


def test_an_expired_token_on_the_on_prem_oauth_path_is_named_too(sb):
    """The on-prem host ignores bearer tokens and sends us to EDL, which refuses the expired one."""
    token = sb.state.new_token(sb.edl_username)
    sb.state.expire_token(token)
    with pytest.raises(TokenExpiredError):
        EarthdataSession(sb.settings, StaticToken(token)).get(sb.onprem_url(first_granule(sb)))
