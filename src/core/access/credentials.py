"""Temporary S3 credentials from a DAAC's TEA ``/s3credentials`` endpoint.

Cached per endpoint and refreshed ``refresh_margin_s`` before they expire (they last one hour),
behind a lock so concurrent readers trigger one fetch. A malformed or empty answer is an error
naming the endpoint — never an empty dict handed on to s3fs.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import requests

from core.access.earthdata import redact_url
from core.errors import AuthError, UpstreamError

log = logging.getLogger(__name__)

# TEA (camelCase) and STS/Harmony (PascalCase) spellings.
_KEYS = {
    "key": ("accessKeyId", "AccessKeyId"),
    "secret": ("secretAccessKey", "SecretAccessKey"),
    "token": ("sessionToken", "SessionToken"),
    "expiration": ("expiration", "Expiration"),
}


@dataclass(frozen=True, repr=False)
class S3Credentials:
    key: str
    secret: str
    token: str
    expiration: datetime  # timezone-aware UTC
    endpoint: str

    @property
    def expires_at(self) -> float:
        return self.expiration.timestamp()

    def as_dict(self) -> dict:
        """``key``/``secret``/``token``/``expiration`` (the s3fs keyword names + expiry)."""
        return {"key": self.key, "secret": self.secret, "token": self.token, "expiration": self.expiration}

    def __repr__(self) -> str:
        return (f"S3Credentials(endpoint={self.endpoint!r}, expiration={self.expiration.isoformat()}, "
                "secrets=<redacted>)")

    __str__ = __repr__


def parse_expiration(value: str) -> datetime:
    """``2021-01-27 00:50:09+00:00`` (TEA) or ``2021-06-11T02:36:29.000Z`` (STS)."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_credentials(body: object, endpoint: str, *, now: float) -> S3Credentials:
    service = f"/s3credentials ({redact_url(endpoint)})"
    if not isinstance(body, dict) or not body:
        raise UpstreamError("empty or non-object credentials response", service=service)
    values: dict[str, str] = {}
    missing = []
    for name, spellings in _KEYS.items():
        value = next((body[s] for s in spellings if s in body), None)
        if not isinstance(value, str) or not value.strip():
            missing.append(spellings[0])
        else:
            values[name] = value.strip()
    if missing:
        # names only: the response may hold a valid secret next to the missing field
        raise UpstreamError(f"credentials response lacks {', '.join(missing)}", service=service)
    try:
        expiration = parse_expiration(values["expiration"])
    except ValueError:
        raise UpstreamError("credentials response has an unreadable expiration", service=service) from None
    if expiration.timestamp() <= now:
        raise UpstreamError(f"credentials already expired at {expiration.isoformat()}", service=service)
    return S3Credentials(values["key"], values["secret"], values["token"], expiration, endpoint)


class S3CredentialsProvider:
    """Credentials of one ``/s3credentials`` endpoint, fetched lazily and refreshed early."""

    def __init__(
        self,
        session: requests.Session,
        endpoint_url: str,
        *,
        clock: Callable[[], float] = time.time,
        refresh_margin_s: float = 300.0,
    ):
        self.session = session
        self.endpoint_url = endpoint_url
        self.clock = clock
        self.refresh_margin_s = refresh_margin_s
        self.fetch_count = 0
        self._current: S3Credentials | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3CredentialsProvider(endpoint={self.endpoint_url!r})"

    def needs_refresh(self) -> bool:
        current = self._current
        return current is None or self.clock() >= current.expires_at - self.refresh_margin_s

    def get(self) -> S3Credentials:
        if not self.needs_refresh():
            return self._current  # type: ignore[return-value]
        with self._lock:
            if self.needs_refresh():  # another thread may have refreshed while we waited
                self._current = self._fetch()
            return self._current  # type: ignore[return-value]

    def invalidate(self) -> None:
        """Forget the cached credentials (e.g. after S3 answered ExpiredToken)."""
        with self._lock:
            self._current = None

    def _fetch(self) -> S3Credentials:
        service = f"/s3credentials ({redact_url(self.endpoint_url)})"
        try:
            resp = self.session.get(self.endpoint_url)
        except requests.RequestException as exc:
            raise UpstreamError(f"request failed ({type(exc).__name__})", service=service) from None
        if resp.status_code in (401, 403):
            raise AuthError(f"HTTP {resp.status_code}: the Earthdata token was refused", service=service)
        if resp.status_code != 200:
            raise UpstreamError(f"HTTP {resp.status_code}", service=service)
        if not resp.content.strip():
            raise UpstreamError("empty response body", service=service)
        try:
            body = resp.json()
        except ValueError:
            raise UpstreamError("response is not JSON", service=service) from None
        creds = parse_credentials(body, self.endpoint_url, now=self.clock())
        self.fetch_count += 1
        log.info("fetched S3 credentials from %s, valid until %s", redact_url(self.endpoint_url), creds.expiration)
        return creds


class CredentialsCache:
    """One :class:`S3CredentialsProvider` per endpoint, shared by a task's readers."""

    def __init__(
        self,
        session: requests.Session,
        *,
        clock: Callable[[], float] = time.time,
        refresh_margin_s: float = 300.0,
    ):
        self.session = session
        self.clock = clock
        self.refresh_margin_s = refresh_margin_s
        self._providers: dict[str, S3CredentialsProvider] = {}
        self._lock = threading.Lock()

    def provider(self, endpoint_url: str) -> S3CredentialsProvider:
        with self._lock:
            if endpoint_url not in self._providers:
                self._providers[endpoint_url] = S3CredentialsProvider(
                    self.session, endpoint_url, clock=self.clock, refresh_margin_s=self.refresh_margin_s
                )
            return self._providers[endpoint_url]

    def get(self, endpoint_url: str) -> S3Credentials:
        return self.provider(endpoint_url).get()

    def __repr__(self) -> str:
        return f"CredentialsCache(endpoints={sorted(self._providers)!r})"
