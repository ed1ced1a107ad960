"""EarthdataSession and token providers against the loopback EDL / TEA / on-prem emulators."""
from __future__ import annotations

import time
import uuid

import pytest
import requests
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from flask import Flask

from core.access.earthdata import (
    EarthdataSession,
    PasswordToken,
    SecretsManagerToken,
    StaticToken,
    host_matches,
    token_provider_from_env,
)
from core.config import Settings
from core.errors import AuthError, DisallowedHostError
from sandbox.emulator import ServerThread
from tests.sandbox_fixtures import first_granule

BAD_TOKEN = "EDL-wrong-token-SECRETSECRET"


def test_host_matching_rules():
    pats = ("urs.earthdata.nasa.gov", "127.0.0.1:5000", "*.s3.us-west-2.amazonaws.com")
    assert host_matches("https://urs.earthdata.nasa.gov/oauth/authorize", pats)
    assert host_matches("https://URS.earthdata.nasa.gov:443/x", pats)
    assert not host_matches("http://urs.earthdata.nasa.gov/x", pats)  # never in clear text
    assert not host_matches("https://urs.earthdata.nasa.gov:8443/x", pats)
    assert not host_matches("https://urs.earthdata.nasa.gov.evil.com/x", pats)
    assert not host_matches("https://evilurs.earthdata.nasa.gov/x", pats)
    assert host_matches("http://127.0.0.1:5000/x", pats)
    assert not host_matches("http://127.0.0.1:5001/x", pats)
    assert host_matches("https://bucket.s3.us-west-2.amazonaws.com/k", pats)
    assert not host_matches("https://s3.us-west-2.amazonaws.com.evil.com/k", pats)
    assert not host_matches("file:///etc/passwd", pats)
    assert not host_matches("https://user@/x", pats)


def test_tea_redirect_keeps_token_off_the_presigned_host(sb, session):
    g = first_granule(sb, "nsidc")
    resp = session.get(sb.links(g)["https"])
    assert resp.status_code == 200
    assert resp.content == g.path.read_bytes()
    assert [h.status_code for h in resp.history] == [303]  # TEA: make_redirect(presigned_url, ..., 303)
    tea = sb.state.requests_to("nsidc")
    s3 = sb.state.requests_to("s3")
    assert tea and tea[-1].headers.get("Authorization") == f"Bearer {sb.edl_token}"
    assert s3 and all("Authorization" not in r.headers for r in s3)
    # after an on-prem login the session holds EDL and DAAC cookies: they stay off S3 too
    assert session.get(sb.onprem_url(g)).status_code == 200 and len(session.cookies) >= 2
    session.get(sb.links(g)["https"])
    assert all("Cookie" not in r.headers for r in sb.state.requests_to("s3"))


def test_presigned_host_rejects_a_second_auth_mechanism_like_s3(sb, session):
    """What a leaked header would cost: S3 answers 400 to presigned query + Authorization."""
    g = first_granule(sb, "nsidc")
    presigned = session.get(sb.links(g)["https"], stream=True).url
    assert "X-Amz-Signature" in presigned
    bad = requests.get(presigned, headers={"Authorization": "Bearer x"}, timeout=10)
    assert bad.status_code == 400 and b"Only one auth mechanism" in bad.content


def test_onprem_oauth_flow_keeps_token_across_earthdata_hosts(sb, session):
    g = first_granule(sb, "nsidc")
    resp = session.get(sb.onprem_url(g))
    assert resp.status_code == 200
    assert resp.content == g.path.read_bytes()
    hops = [h.status_code for h in resp.history]
    assert hops == [302, 302, 302]  # file -> EDL authorize -> /OPS/redirect?code -> file
    edl = sb.state.requests_to("edl")
    assert edl[-1].path == "/oauth/authorize"
    assert edl[-1].headers.get("Authorization") == f"Bearer {sb.edl_token}"  # kept across hosts
    last = sb.state.requests_to("onprem")[-1]
    assert "onprem_session=" in last.headers.get("Cookie", "")
    # the session cookie now suffices: no second trip to EDL
    n_edl = len(sb.state.requests_to("edl"))
    assert session.get(sb.onprem_url(g)).status_code == 200
    assert len(sb.state.requests_to("edl")) == n_edl


def test_plain_requests_loses_token_on_the_edl_hop(sb):
    g = first_granule(sb, "nsidc")
    resp = requests.get(sb.onprem_url(g), headers={"Authorization": f"Bearer {sb.edl_token}"}, timeout=10)
    assert resp.status_code == 401  # EDL challenged: requests dropped the header on the host change


def test_bad_token_gives_auth_error_without_the_token(sb):
    s = EarthdataSession(sb.settings, StaticToken(BAD_TOKEN))
    with pytest.raises(AuthError) as err:
        s.get(sb.links(first_granule(sb, "podaac"))["s3credentials"])
    assert "401" in str(err.value)
    assert "SECRETSECRET" not in str(err.value) and "SECRETSECRET" not in repr(err.value)


def test_refuses_non_allowlisted_hosts(sb, session):
    for url in ("https://evil.example.com/file.h5", "http://127.0.0.1:1/file.h5", "ftp://127.0.0.1/x"):
        with pytest.raises(DisallowedHostError):
            session.get(url)


def test_refuses_redirect_to_non_allowlisted_host_before_contacting_it(sb, session):
    hits = []
    app = Flask("outsider")

    @app.get("/<path:p>")
    def grab(p):
        from flask import request

        hits.append(dict(request.headers))
        return "stolen"

    outsider = ServerThread(app, "outsider").start()
    try:
        sb.faults.add("/nsidc-cumulus", app="nsidc", status=302, headers={"Location": f"{outsider.url}/loot"})
        with pytest.raises(DisallowedHostError) as err:
            session.get(sb.links(first_granule(sb, "nsidc"))["https"])
        assert outsider.host in str(err.value)
        assert hits == []
    finally:
        outsider.stop()


def test_html_login_page_instead_of_data(sb, session):
    sb.faults.add("/nsidc-cumulus", app="s3", html_login=True)
    with pytest.raises(AuthError, match="HTML page"):
        session.get(sb.links(first_granule(sb, "nsidc"))["https"])


def test_redirect_loop_is_named(sb, session):
    sb.faults.add("/DP9", app="onprem", redirect_loop=True)
    with pytest.raises(AuthError, match="redirect loop"):
        session.get(sb.onprem_url(first_granule(sb, "nsidc")))


def test_retries_429_with_retry_after_and_503(sb, session):
    url = sb.links(first_granule(sb, "podaac"))["s3credentials"]
    sb.faults.add("/s3credentials", app="podaac", status=429, headers={"Retry-After": "1"}, times=1)
    sb.faults.add("/s3credentials", app="podaac", status=503, times=2)
    t0 = time.monotonic()
    resp = session.get(url)
    assert resp.status_code == 200 and "accessKeyId" in resp.json()
    assert time.monotonic() - t0 >= 0.9  # honoured Retry-After
    assert len(sb.state.requests_to("podaac")) == 4


def test_password_token_exchange(sb):
    provider = PasswordToken(sb.settings, sb.edl_username, sb.edl_password)
    assert provider.token() == sb.edl_token  # find_or_create returns the user's existing token
    assert sb.edl_password not in repr(provider)
    wrong = PasswordToken(sb.settings, sb.edl_username, "not-the-password-XYZ")
    with pytest.raises(AuthError) as err:
        wrong.token()
    assert "XYZ" not in str(err.value)


def test_token_provider_from_env_sources(sb, tmp_path):
    assert token_provider_from_env(sb.settings, {"EARTHDATA_TOKEN": "abc"}).token() == "abc"
    env = {"EARTHDATA_USERNAME": sb.edl_username, "EARTHDATA_PASSWORD": sb.edl_password}
    assert token_provider_from_env(sb.settings, env).token() == sb.edl_token
    netrc = tmp_path / "netrc"
    edl_host = sb.settings.edl_url.split("://", 1)[1]
    netrc.write_text(f"machine {edl_host} login {sb.edl_username} password {sb.edl_password}\n")
    netrc.chmod(0o600)
    no_secret = sb.settings.replace(edl_secret_name="")
    assert token_provider_from_env(no_secret, {"NETRC": str(netrc)}).token() == sb.edl_token
    with pytest.raises(AuthError, match="no Earthdata credentials"):
        token_provider_from_env(no_secret, {"NETRC": str(tmp_path / "missing")})


def test_secrets_manager_token(sb):
    provider = SecretsProvider(boto3_client=sb.boto3_client("secretsmanager"))
    tok = SecretsManagerToken(sb.settings, sb.settings.edl_secret_name, max_age=60, provider=provider)
    assert tok.token() == sb.edl_token
    missing = SecretsManagerToken(sb.settings, "no/such/secret", provider=provider)
    with pytest.raises(AuthError, match=r"cannot read secret 'no/such/secret' \(ResourceNotFoundException\)"):
        missing.token()


def test_secret_created_without_a_value_says_put_secret_value_first(sb):
    # the stack creates the secret empty; the operator's first call must say what to do
    client = sb.boto3_client("secretsmanager")
    name = f"coloc/test/empty-{uuid.uuid4().hex[:8]}"
    client.create_secret(Name=name)
    empty = SecretsManagerToken(sb.settings, name, provider=SecretsProvider(boto3_client=client))
    with pytest.raises(AuthError, match=r"has no value yet: put-secret-value first") as info:
        empty.token()
    assert f"--secret-id {name}" in str(info.value)


def test_production_defaults_allow_only_nasa_and_s3():
    s = EarthdataSession(Settings(), None)
    assert s.is_earthdata_host("https://urs.earthdata.nasa.gov/oauth/authorize")
    assert not s.is_earthdata_host("https://podaac-ops-cumulus-protected.s3.us-west-2.amazonaws.com/x")
    s.check_allowed("https://podaac-ops-cumulus-protected.s3.us-west-2.amazonaws.com/x")
    with pytest.raises(DisallowedHostError):
        s.check_allowed("https://169.254.169.254/latest/meta-data/")


def test_expired_token_mid_session(sb):
    token = sb.state.new_token(sb.edl_username)
    s = EarthdataSession(sb.settings, StaticToken(token))
    url = sb.links(first_granule(sb, "podaac"))["s3credentials"]
    assert s.get(url).status_code == 200
    sb.state.revoke_token(token)  # what EDL does when a token expires
    with pytest.raises(AuthError, match="401") as err:
        s.get(url)
    assert token not in str(err.value)
