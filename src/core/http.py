"""The one retry policy for every HTTP call to NASA services (CMR, EDL, TEA, DAAC hosts)."""
from __future__ import annotations

from urllib3.util.retry import Retry

from core.config import Settings

RETRY_STATUSES = (429, 500, 502, 503, 504)


def retry_policy(settings: Settings, methods: tuple[str, ...] = ("GET", "HEAD")) -> Retry:
    """Exponential backoff on 429 (honouring Retry-After), 5xx, connection errors and read
    timeouts. The last response is handed back rather than raised, so callers can name the
    service that failed."""
    return Retry(
        total=settings.http_retries,
        connect=settings.http_retries,
        read=settings.http_retries,
        status=settings.http_retries,
        backoff_factor=settings.http_backoff_s,
        backoff_max=30,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset(methods),
        respect_retry_after_header=True,
        # a 429 asking for hours gets a shorter wait; urllib3 annotates an int but only compares it (min), so
        # a fractional cap works as such (the fault tests use 0.2 s)
        retry_after_max=settings.http_retry_after_max_s,  # type: ignore[arg-type]
        raise_on_status=False,
        raise_on_redirect=False,
    )


def failure_cause(exc: BaseException) -> str:
    """What finally failed behind a requests error raised after the retries (urllib3's last
    error, e.g. ReadTimeoutError), rather than requests' generic ConnectionError."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return type(reason).__name__ if isinstance(reason, Exception) else type(exc).__name__
