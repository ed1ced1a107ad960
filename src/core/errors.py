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
    """Not enough free space in the download directory (checked before writing)."""

    status = 507


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
