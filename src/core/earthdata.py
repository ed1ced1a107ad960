"""Earthdata Login: where the token comes from, and an HTTP session that guards it.

The session sends ``Authorization: Bearer <token>`` only to Earthdata hosts
(``settings.earthdata_hosts``) and keeps it across redirects *between* those hosts (plain
``requests`` drops it on every host change, which breaks EDL's redirect chain). It removes it
before any other hop, e.g. TEA's 307 to a presigned S3 URL (S3 answers 400 to a request with
two auth mechanisms), follows the on-prem OAuth redirect with cookies, and refuses to contact
any host outside ``settings.allowed_hosts()`` — including redirect targets — before the
request is sent.
"""
from __future__ import annotations

import logging
import netrc
import os
import threading
from pathlib import Path
from typing import Mapping, Protocol
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from core.config import Settings
from core.errors import AuthError, DisallowedHostError, UpstreamError
from core.http import retry_policy

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}


# --- host matching ---------------------------------------------------------------------------
def host_matches(url: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """Whether ``url``'s host is covered by one of ``patterns``.

    ``"host:port"`` (the loopback sandbox) matches that exact host and port; a bare hostname
    matches only HTTPS on its default port; ``"*.example.com"`` any subdomain of example.com.
    """
    # urllib3's parser, not urlsplit: the host judged must be the one requests connects to
    # (for "https://evil.com\\@urs.earthdata.nasa.gov/" urlsplit says urs..., urllib3 evil.com)
    try:
        parts = parse_url(url)
    except LocationParseError:
        return False
    scheme = (parts.scheme or "").lower()
    hostname = (parts.host or "").lower()
    if not hostname or scheme not in _DEFAULT_PORTS:
        return False
    port = parts.port or _DEFAULT_PORTS[scheme]
    for pattern in patterns:
        pattern = pattern.strip().lower()
        if not pattern:
            continue
        if ":" in pattern:
            host, _, pport = pattern.rpartition(":")
            if hostname == host and str(port) == pport:
                return True
            continue
        if scheme != "https" or port != 443:
            continue
        if pattern.startswith("*."):
            if hostname.endswith(pattern[1:]):
                return True
        elif hostname == pattern:
            return True
    return False


def redact_url(url: str) -> str:
    """scheme://host/path without the query (codes, signatures) for messages and logs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


# --- token providers -------------------------------------------------------------------------
class TokenProvider(Protocol):
    def token(self) -> str: ...


class StaticToken:
    """A bearer token given directly (``EARTHDATA_TOKEN``)."""

    def __init__(self, token: str):
        if not token:
            raise AuthError("empty Earthdata token", service="Earthdata Login")
        self._token = token

    def token(self) -> str:
        return self._token

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"


class PasswordToken:
    """Username/password exchanged once for a bearer token via the EDL token API."""

    def __init__(self, settings: Settings, username: str, password: str, *, session: requests.Session | None = None):
        self._settings = settings
        self._username = username
        self._password = password
        self._session = session
        self._token: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PasswordToken(username={self._username!r}, password=<redacted>)"

    def token(self) -> str:
        with self._lock:
            if self._token is None:
                self._token = self._exchange()
            return self._token

    def _exchange(self) -> str:
        url = self._settings.edl_url.rstrip("/") + "/api/users/find_or_create_token"
        # A bare session: the allowlist still applies, but there is no token to attach yet.
        session = self._session or EarthdataSession(self._settings, None)
        try:
            resp = session.post(url, auth=(self._username, self._password), timeout=self._settings.http_timeout_s)
        except requests.RequestException as exc:
            # otherwise the caller that needed the token (CMR, a DAAC) would be blamed
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            cause = type(reason).__name__ if isinstance(reason, Exception) else type(exc).__name__
            raise UpstreamError(f"token API failed after retries ({cause})", service="Earthdata Login") from None
        if resp.status_code == 401:
            raise AuthError(
                f"Earthdata Login rejected the username/password for user {self._username!r}",
                service="Earthdata Login",
            )
        if resp.status_code != 200:
            raise UpstreamError(f"token API answered HTTP {resp.status_code}", service="Earthdata Login")
        try:
            token = resp.json()["access_token"]
        except (ValueError, KeyError, TypeError):
            raise UpstreamError("token API answered without an access_token", service="Earthdata Login") from None
        if not isinstance(token, str) or not token:
            raise UpstreamError("token API answered with an empty access_token", service="Earthdata Login")
        return token


class SecretsManagerToken:
    """The token (or username/password) from a Secrets Manager secret, cached ``max_age`` s.

    The secret is either the bare token, or JSON with ``token`` (or ``EARTHDATA_TOKEN``), or
    JSON with ``username`` and ``password``.
    """

    def __init__(self, settings: Settings, secret_name: str, *, max_age: int = 300, provider=None):
        self._settings = settings
        self._name = secret_name
        self._max_age = max_age
        self._provider = provider  # a powertools SecretsProvider (tests pass one bound to moto)
        self._password_tokens: dict[tuple[str, str], PasswordToken] = {}

    def __repr__(self) -> str:
        return f"SecretsManagerToken(secret_name={self._name!r})"

    def token(self) -> str:
        import json

        from aws_lambda_powertools.utilities import parameters

        try:
            if self._provider is not None:
                raw = self._provider.get(self._name, max_age=self._max_age)
            else:
                raw = parameters.get_secret(self._name, max_age=self._max_age)
        except Exception as exc:  # GetParameterError wraps the boto error
            raise AuthError(f"cannot read secret {self._name!r} ({type(exc).__name__})", service="Secrets Manager") from None
        if isinstance(raw, bytes):
            raw = raw.decode()
        raw = (raw or "").strip()
        if raw.startswith("{"):
            try:
                data = json.loads(raw)
            except ValueError:
                raise AuthError(f"secret {self._name!r} is not valid JSON", service="Secrets Manager") from None
            token = data.get("token") or data.get("EARTHDATA_TOKEN")
            if token:
                return str(token)
            if data.get("username") and data.get("password"):
                key = (data["username"], data["password"])
                if key not in self._password_tokens:
                    self._password_tokens = {key: PasswordToken(self._settings, *key)}
                return self._password_tokens[key].token()
            raise AuthError(
                f"secret {self._name!r} has neither 'token' nor 'username'/'password'", service="Secrets Manager"
            )
        if not raw:
            raise AuthError(f"secret {self._name!r} is empty", service="Secrets Manager")
        return raw


def token_provider_from_env(settings: Settings, environ: Mapping[str, str] | None = None) -> TokenProvider:
    """EARTHDATA_TOKEN, else EARTHDATA_USERNAME/PASSWORD, else a Secrets Manager secret
    (``settings.edl_secret_name``), else a netrc entry for the EDL host (NETRC or ~/.netrc)."""
    env = os.environ if environ is None else environ
    if env.get("EARTHDATA_TOKEN"):
        return StaticToken(env["EARTHDATA_TOKEN"])
    if env.get("EARTHDATA_USERNAME") and env.get("EARTHDATA_PASSWORD"):
        return PasswordToken(settings, env["EARTHDATA_USERNAME"], env["EARTHDATA_PASSWORD"])
    if settings.edl_secret_name:
        return SecretsManagerToken(settings, settings.edl_secret_name)
    netrc_path = Path(env.get("NETRC") or Path(env.get("HOME", "~")).expanduser() / ".netrc")
    if netrc_path.is_file():
        creds = netrc_credentials(netrc_path, settings)
        if creds is not None:
            return PasswordToken(settings, *creds)
    raise AuthError(
        "no Earthdata credentials: set EARTHDATA_TOKEN, or EARTHDATA_USERNAME and "
        "EARTHDATA_PASSWORD, or COLOC_EDL_SECRET_NAME, or a netrc entry for the EDL host",
        service="Earthdata Login",
    )


def netrc_credentials(path: Path, settings: Settings) -> tuple[str, str] | None:
    """(login, password) for the EDL host (``host:port`` first, then hostname)."""
    parts = urlsplit(settings.edl_url)
    try:
        entries = netrc.netrc(str(path))
    except (netrc.NetrcParseError, OSError) as exc:
        raise AuthError(f"cannot parse netrc file {path} ({type(exc).__name__})", service="Earthdata Login") from None
    for machine in (parts.netloc, parts.hostname or ""):
        found = entries.authenticators(machine)
        if found and found[0] and found[2]:
            return found[0], found[2]
    return None


# --- the session -------------------------------------------------------------------------------
class EarthdataSession(requests.Session):
    """``requests.Session`` that attaches the EDL token only where it belongs.

    Raises :class:`DisallowedHostError` before contacting a host off the allowlist,
    :class:`AuthError` on 401, an HTML login page instead of data, or a redirect loop.
    """

    def __init__(self, settings: Settings, token_provider: TokenProvider | None, *, max_redirects: int = 10):
        super().__init__()
        self.settings = settings
        self.token_provider = token_provider
        self.max_redirects = max_redirects
        # No ~/.netrc Basic auth or proxies picked up behind our back: credentials are explicit.
        self.trust_env = False
        retry = retry_policy(settings, ("GET", "HEAD", "POST"))
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=16)
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self.headers["User-Agent"] = f"{settings.client_id} (python-requests)"

    def __repr__(self) -> str:
        return f"EarthdataSession(edl={self.settings.edl_url!r})"

    def is_earthdata_host(self, url: str) -> bool:
        return host_matches(url, self.settings.earthdata_hosts)

    def check_allowed(self, url: str) -> None:
        if not host_matches(url, self.settings.allowed_hosts()):
            raise DisallowedHostError(f"refusing to contact {redact_url(url)}: host is not on the allowlist")

    def _apply_token(self, prepared: requests.PreparedRequest) -> None:
        if not self.is_earthdata_host(prepared.url):
            # EDL/DAAC session cookies are credentials too (and loopback hosts share cookie scope)
            prepared.headers.pop("Authorization", None)
            prepared.headers.pop("Cookie", None)
        elif self.token_provider is not None and "Authorization" not in prepared.headers:
            prepared.headers["Authorization"] = f"Bearer {self.token_provider.token()}"

    # requests calls rebuild_auth for every redirect hop, before sending it.
    def rebuild_auth(self, prepared_request, response):
        self.check_allowed(prepared_request.url)
        if not (self.is_earthdata_host(prepared_request.url) and self.is_earthdata_host(response.request.url)):
            prepared_request.headers.pop("Authorization", None)
        self._apply_token(prepared_request)

    def send(self, request, **kwargs):
        self.check_allowed(request.url)  # covers every hop, however the request was built
        return super().send(request, **kwargs)

    def prepare_request(self, request):
        prepared = super().prepare_request(request)
        self._apply_token(prepared)
        return prepared

    def request(self, method, url, *args, **kwargs):
        self.check_allowed(url)
        kwargs.setdefault("timeout", self.settings.http_timeout_s)
        try:
            resp = super().request(method, url, *args, **kwargs)
        except requests.TooManyRedirects:
            raise AuthError(
                f"redirect loop fetching {redact_url(url)} (more than {self.max_redirects} redirects; "
                "cookies refused or the Earthdata application is not authorised)",
                service="Earthdata Login",
            ) from None
        self._check_response(resp, url)
        return resp

    def _check_response(self, resp: requests.Response, url: str) -> None:
        where = redact_url(resp.url or url)
        if resp.status_code == 401:
            resp.close()
            raise AuthError(
                f"HTTP 401 from {where}: the Earthdata token or credentials are missing, expired or invalid",
                service="Earthdata Login",
            )
        ctype = resp.headers.get("Content-Type", "").lower()
        if 200 <= resp.status_code < 300 and ctype.startswith("text/html"):
            # Nothing this service fetches is HTML: it is EDL's login or approval page.
            resp.close()
            raise AuthError(
                f"got an HTML page instead of data from {where}: log in to Earthdata and authorise "
                "the DAAC's application for this user",
                service="Earthdata Login",
            )
