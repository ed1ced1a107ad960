"""Earthdata Login: where the token comes from, and an HTTP session that guards it.

The session sends ``Authorization: Bearer <token>`` only to Earthdata hosts
(``settings.earthdata_hosts``) and keeps it across redirects *between* those hosts (plain
``requests`` drops it on every host change, which breaks EDL's redirect chain). It removes it
(and every cookie) before any other hop, e.g. TEA's 303 to a presigned S3 URL (S3 answers 400
to a request with two auth mechanisms), follows the on-prem OAuth redirect with cookies, and
refuses to contact any host outside ``settings.allowed_hosts()`` — including redirect targets —
before the request is sent. A CloudFront host (``settings.cloudfront_hosts``: where TEA sends a
caller outside us-west-2) is accepted only as the target of a redirect from an Earthdata host
(or from such a CloudFront URL, its second hop), and afterwards only for that exact URL: a
CloudFront link handed over by CMR is refused like any other host.

Refusals name what the user must do (core.errors): TEA's 403 JSON (``error_description``,
``resolution_url``: an EULA or an application to authorise) → AuthorisationRequiredError; a
token TEA cannot decode (not a JWT) is answered with a 302 to the EDL login, not a 401, which
ends in InvalidTokenError; EDL's own JSON error for an expired token → TokenExpiredError.
"""
from __future__ import annotations

import base64
import json
import logging
import netrc
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from core.config import Settings
from core.errors import (
    AuthError,
    AuthorisationRequiredError,
    DisallowedHostError,
    InvalidTokenError,
    TokenExpiredError,
    UpstreamError,
)
from core.http import failure_cause, retry_policy

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


def looks_like_jwt(token: str) -> bool:
    """Whether ``token`` has a JWT's shape (three base64url parts, a JSON payload): EDL user
    tokens do, and TEA decodes the bearer token as one before anything else."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        return isinstance(json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))), dict)
    except (ValueError, TypeError):
        return False


def _one_line(text: object, n: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= n else line[: n - 1] + "…"


def error_json(resp: requests.Response) -> dict:
    """TEA's / EDL's JSON error body (``error``, ``error_description``, ``resolution_url``), or {}."""
    length = resp.headers.get("Content-Length", "")
    if (length.isdigit() and int(length) > 16384) or "json" not in resp.headers.get("Content-Type", "").lower():
        return {}
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


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
            raise UpstreamError(f"token API failed after retries ({failure_cause(exc)})",
                                service="Earthdata Login") from None
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
            raise AuthError(_secret_read_error(self._name, exc), service="Secrets Manager") from None
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


def _secret_read_error(name: str, exc: BaseException) -> str:
    """One actionable line for a failed GetSecretValue (never the secret's value)."""
    cause = exc.__cause__ or exc.__context__ or exc
    error = getattr(cause, "response", {}).get("Error", {})
    if error.get("Code") == "ResourceNotFoundException" and "secret value" in error.get("Message", ""):
        # the stack creates the secret empty: the operator sets its value once after deploy
        return (
            f"secret {name!r} has no value yet: put-secret-value first "
            f"(aws secretsmanager put-secret-value --secret-id {name} --secret-string <Earthdata Login token>)"
        )
    code = error.get("Code") or type(exc).__name__
    return f"cannot read secret {name!r} ({code})"


def find_token_provider(settings: Settings, environ: Mapping[str, str] | None = None) -> TokenProvider | None:
    """EARTHDATA_TOKEN, else EARTHDATA_USERNAME/PASSWORD, else a Secrets Manager secret
    (``settings.edl_secret_name``), else a netrc entry for the EDL host (NETRC or ~/.netrc);
    None when none is configured."""
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
    return None


NO_CREDENTIALS = ("no Earthdata credentials: set EARTHDATA_TOKEN, or EARTHDATA_USERNAME and "
                  "EARTHDATA_PASSWORD, or COLOC_EDL_SECRET_NAME, or a netrc entry for the EDL host")


def token_provider_from_env(settings: Settings, environ: Mapping[str, str] | None = None) -> TokenProvider:
    """:func:`find_token_provider`'s provider; AuthError when no credentials are configured."""
    provider = find_token_provider(settings, environ)
    if provider is None:
        raise AuthError(NO_CREDENTIALS, service="Earthdata Login")
    return provider


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
        # CloudFront URLs reached by a redirect from an Earthdata host (exact URLs, newest last)
        self._vouched: OrderedDict[str, None] = OrderedDict()
        self._vouched_lock = threading.Lock()
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

    def is_cloudfront_host(self, url: str) -> bool:
        return host_matches(url, self.settings.cloudfront_hosts)

    def _vouch(self, url: str) -> None:
        with self._vouched_lock:
            self._vouched[url] = None
            self._vouched.move_to_end(url)
            while len(self._vouched) > 1024:
                self._vouched.popitem(last=False)

    def is_vouched(self, url: str) -> bool:
        """Whether ``url`` is a CloudFront URL this session reached by a redirect from an
        Earthdata host (then it may be fetched again, e.g. with Range)."""
        with self._vouched_lock:
            return url in self._vouched

    def check_allowed(self, url: str) -> None:
        if host_matches(url, self.settings.allowed_hosts()):
            return
        if self.is_cloudfront_host(url):
            if self.is_vouched(url):
                return
            raise DisallowedHostError(
                f"refusing to contact {redact_url(url)}: a CloudFront host is accepted only as the "
                "redirect target of an Earthdata host, not as a link")
        raise DisallowedHostError(f"refusing to contact {redact_url(url)}: host is not on the allowlist")

    def _apply_token(self, prepared: requests.PreparedRequest) -> None:
        if not self.is_earthdata_host(prepared.url or ""):
            # EDL/DAAC session cookies are credentials too (and loopback hosts share cookie scope)
            prepared.headers.pop("Authorization", None)
            prepared.headers.pop("Cookie", None)
        elif self.token_provider is not None and "Authorization" not in prepared.headers:
            prepared.headers["Authorization"] = f"Bearer {self.token_provider.token()}"

    # requests calls rebuild_auth for every redirect hop, before sending it.
    def rebuild_auth(self, prepared_request, response):
        source, target = response.request.url, prepared_request.url
        if self.is_cloudfront_host(target) and (
            self.is_earthdata_host(source) or (self.is_cloudfront_host(source) and self.is_vouched(source))
        ):
            self._vouch(target)  # TEA's answer for a caller outside us-west-2 (or its second hop)
        self.check_allowed(target)
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

    def _sent_to_login(self, resp: requests.Response) -> str | None:
        """The host that answered our bearer token with a redirect to EDL's login, if any hop did."""
        login = self.settings.edl_url.rstrip("/") + "/oauth/authorize"
        for hop in resp.history:
            location = hop.headers.get("Location", "")
            sent_to = hop.request.url or ""
            if (location.startswith(login) and "Authorization" in hop.request.headers
                    and not sent_to.startswith(self.settings.edl_url.rstrip("/") + "/")):
                return urlsplit(sent_to).netloc
        return None

    def _token_hint(self) -> str:
        try:
            token = self.token_provider.token() if self.token_provider is not None else ""
        except AuthError:
            return ""
        if not token or looks_like_jwt(token):
            return ""
        return " (the configured token is not a JWT, which EDL user tokens are)"

    def _check_response(self, resp: requests.Response, url: str) -> None:
        where = redact_url(resp.url or url)
        ctype = resp.headers.get("Content-Type", "").lower()
        html = 200 <= resp.status_code < 300 and ctype.startswith("text/html")
        failed = resp.status_code in (401, 403) or html
        if not failed:
            return
        detail = error_json(resp) if resp.status_code in (401, 403) else {}
        refused_by = self._sent_to_login(resp)
        if resp.status_code == 403 and not detail and refused_by is None:
            return  # e.g. S3's AccessDenied: the caller names it
        resp.close()
        new_token = (f"create a new user token at {self.settings.edl_url.rstrip('/')}/user_tokens and set it "
                     "as EARTHDATA_TOKEN (or in the configured secret)")
        description = _one_line(detail.get("error_description") or detail.get("error") or "")
        resolution = str(detail.get("resolution_url") or "")
        said = f" ({description})" if description else ""
        if resp.status_code == 401 and ("expire" in description.lower() or detail.get("error") == "token_expired"):
            raise TokenExpiredError(
                f"HTTP 401 from {where}: Earthdata Login says the token has expired{said}: {new_token}",
                service="Earthdata Login",
            )
        if resolution.startswith(("https://", "http://")) and resp.status_code in (401, 403):
            resolution = _one_line(resolution, 300)
            raise AuthorisationRequiredError(
                f"{where} refused the download: {description or f'HTTP {resp.status_code}'}; accept it at "
                f"{resolution} (logged in as the Earthdata user of the token), then run again",
                service="Earthdata Login", resolution_url=resolution,
            )
        if refused_by is not None:
            # TEA answers a bearer token it cannot decode with its login redirect, not a 401
            raise InvalidTokenError(
                f"{refused_by} did not accept the Earthdata token and redirected to the Earthdata Login "
                f"page{self._token_hint()}; then {where} answered "
                f"{'an HTML page' if html else f'HTTP {resp.status_code}'}{said}: {new_token}",
                service="Earthdata Login",
            )
        if resp.status_code == 401:
            cls = InvalidTokenError if description else AuthError
            raise cls(
                f"HTTP 401 from {where}: the Earthdata token or credentials are missing, expired or invalid"
                f"{said}{self._token_hint()}: {new_token}",
                service="Earthdata Login",
            )
        if html:
            # Nothing this service fetches is HTML: it is EDL's login or approval page.
            raise AuthError(
                f"got an HTML page instead of data from {where}: log in to Earthdata and authorise "
                "the DAAC's application for this user",
                service="Earthdata Login",
            )
        # a 403 with an Earthdata JSON error but no resolution_url
        raise AuthError(f"HTTP 403 from {where}{said}", service="Earthdata Login")
