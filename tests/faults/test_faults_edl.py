"""Earthdata Login faults through the production pipeline: AuthError naming EDL, never the token,
and nothing left in the output bucket."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import AuthError
from tests import faults_fixtures as ff
from tests.pipeline_fixtures import run_date

DATA = "/nsidc-cumulus-prod-protected/"  # the ATL07 granule behind NSIDC's TEA


@pytest.fixture
def sb(fault_sb):
    return fault_sb


def _auth_fails(sb, t, services, token: str, match: str) -> AuthError:
    with pytest.raises(AuthError) as info:
        run_date(t, services)
    err = info.value
    assert err.service == "Earthdata Login" and match in str(err), str(err)
    assert token not in str(err) and token not in repr(err.args)
    ff.assert_nothing_written(sb, t)
    return err


def test_wrong_token_is_refused_by_edl_without_echoing_it(sb):
    wrong = "EDL-not-a-real-token-0123456789"
    _auth_fails(sb, ff.task(sb), ff.services(sb, token=wrong), wrong, "401")


def test_expired_token_before_the_task(sb):
    token = sb.state.new_token(sb.edl_username)
    sb.state.revoke_token(token)  # EDL forgets expired tokens: 401 like a wrong one
    _auth_fails(sb, ff.task(sb), ff.services(sb, token=token), token, "expired or invalid")


def test_token_expiring_in_the_middle_of_a_task(sb):
    token = sb.state.new_token(sb.edl_username)
    services = ff.services(sb, token=token)

    def expire_after_search(resp, *args, **kwargs):
        if "/search/granules" in resp.url and resp.status_code == 200:  # the task has begun
            sb.state.revoke_token(token)

    services.http.hooks["response"].append(expire_after_search)
    err = _auth_fails(sb, ff.task(sb), services, token, "401")
    # the next EDL-protected call is the one refused (the ATL07 download through TEA or the L2P
    # credentials, asked for side by side), and nothing was read from S3 without credentials
    assert "/s3credentials" in str(err) or DATA in str(err), str(err)
    assert sb.state.requests_to("s3api") == []


def test_redirect_loop_is_named(sb):
    sb.faults.add(DATA, app="nsidc", redirect_loop=True)
    _auth_fails(sb, ff.task(sb), ff.services(sb), sb.edl_token, "redirect loop")


def test_html_login_page_instead_of_the_file(sb):
    sb.faults.add(DATA, app="nsidc", html_login=True)
    _auth_fails(sb, ff.task(sb), ff.services(sb), sb.edl_token, "HTML page")
    # the login page never became a file under the granule's name
    assert not list(Path(sb.settings.download_dir).rglob("ATL07*"))


def test_html_login_page_instead_of_s3credentials(sb):
    sb.faults.add("/s3credentials", app="podaac", html_login=True)
    _auth_fails(sb, ff.task(sb), ff.services(sb), sb.edl_token, "HTML page")


@pytest.mark.parametrize("rule, match", [
    ({"status": 503}, "HTTP 503"),
    ({"delay_s": 0.6}, "ReadTimeoutError"),
])
def test_edl_token_api_down_is_blamed_on_edl(sb, rule, match):
    """Username/password login: EDL's token API failing must be named as EDL, not as the first
    service the token was being fetched for (CMR)."""
    from core.access.earthdata import PasswordToken
    from core.errors import UpstreamError
    from core.pipeline.services import build_services

    sb.state.add_user("edl-down-user", "edl-down-password")
    sb.faults.add("/api/users/find_or_create_token", app="edl", **rule)
    settings = ff.settings_of(sb, http_timeout_s=0.2, http_retries=1)
    services = build_services(settings, token_provider=PasswordToken(settings, "edl-down-user", "edl-down-password"),
                              s3_client=sb.boto3_client("s3"))
    t = ff.task(sb)
    with pytest.raises(UpstreamError) as info:
        run_date(t, services)
    assert info.value.service == "Earthdata Login" and match in str(info.value), info.value
    assert "edl-down-password" not in str(info.value)
    ff.assert_nothing_written(sb, t)
