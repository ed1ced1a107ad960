"""Errors meant for users: each message names the field, file or service at fault; the errors a
Step Functions task raises; how an error shows in a status (one line)."""
from __future__ import annotations


class ColocationError(Exception):
    """Base for every error the service reports to a caller (never a stack trace)."""

    status = 500  # HTTP status an API adapter should map this to


class InputError(ColocationError):
    """Bad request or bad input file; ``field`` names what was wrong."""

    status = 400

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class UnreadableFileError(InputError):
    """A file that cannot be opened as HDF5/netCDF4 (corrupt, truncated or another format).

    For a local file this is the caller's input; for a granule fetched from a DAAC the pipeline
    reports it as an :class:`UpstreamError` instead.
    """


class NotFoundError(ColocationError):
    status = 404


class UpstreamError(ColocationError):
    """A NASA service (CMR, EDL, TEA, DAAC, S3) failed after retries; ``service`` names it."""

    status = 502

    def __init__(self, message: str, service: str):
        super().__init__(f"{service}: {message}")
        self.service = service


class CmrPagingError(UpstreamError):
    """CMR's paging went past a bound: its own ``CMR-Hits``, a token or page seen before, or
    ``settings.cmr_max_granules`` (a broken or hostile CMR would otherwise be followed forever)."""

    def __init__(self, message: str):
        super().__init__(message, service="cmr")


class AuthError(UpstreamError):
    """Earthdata Login or /s3credentials refused us (bad/expired token, unapproved app)."""


class InvalidTokenError(AuthError):
    """The Earthdata token was refused: not an EDL user token (TEA redirects those to the
    login page), revoked, or for another user."""


class TokenExpiredError(InvalidTokenError):
    """Earthdata Login says the token has expired."""


class AuthorisationRequiredError(AuthError):
    """The user must accept an EULA or authorise an application first (TEA's 403 JSON);
    ``resolution_url`` is where."""

    def __init__(self, message: str, service: str, resolution_url: str | None = None):
        super().__init__(message, service=service)
        self.resolution_url = resolution_url


class DisallowedHostError(ColocationError):
    """A link pointed at a host outside the allowlist (SSRF guard)."""

    status = 502


class InsufficientSpaceError(ColocationError):
    """Out of space in the work folder: too little before a download (checked first), or the disk
    filled while downloading, writing products or Summarize's request outputs (ENOSPC). Transient
    (another writer's files, a container's leftovers): the state machine retries it. The message
    names no internal path."""

    status = 507


def is_out_of_space(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) is the disk filling up: ENOSPC or a quota
    (EDQUOT), whichever layer raised it (HDF5 puts the errno in its message, not in ``errno``)."""
    import errno

    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT)
                                         or "No space left on device" in str(exc) or "errno = 28" in str(exc)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def out_of_space(while_doing: str) -> InsufficientSpaceError:
    """The one error for a disk that filled up while ``while_doing`` (no path in it)."""
    return InsufficientSpaceError(f"the work folder ran out of space while {while_doing}; "
                                  "the date is retried (a transient shortage)")


# Errors raised to Step Functions: the Lambda errorType is the class name, which Retry/Catch match.
class InvalidTaskError(Exception):
    """A Map item or state input failed validation: never retried."""


class DateTaskFailed(Exception):
    """run_task reported status "failed" for a date (recorded by the Map's Catch)."""


def one_line(text: object, limit: int = 300) -> str:
    """The first line of an error message, whitespace collapsed and capped: what a status shows."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = " ".join(lines[0].split()) if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
