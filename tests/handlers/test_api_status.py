"""The API answers a ColocationError with the HTTP status its class declares (core.errors)."""
from __future__ import annotations

import json

import pytest

from core.errors import (
    AuthError,
    ColocationError,
    DisallowedHostError,
    InputError,
    InsufficientSpaceError,
    NotFoundError,
    UpstreamError,
)


@pytest.mark.parametrize("exc, status", [
    (InputError("bbox: bad", "bbox"), 400),
    (NotFoundError("S3 object not found: s3://b/k"), 404),
    (UpstreamError("timed out", service="cmr"), 502),
    (AuthError("refused", service="edl"), 502),
    (DisallowedHostError("not allowed"), 502),
    (InsufficientSpaceError("full"), 507),
    (ColocationError("STATE_MACHINE_ARN is not configured"), 500),
])
def test_each_error_class_keeps_its_status(exc, status):
    from handlers import api

    response = api._colocation_error(exc)
    assert response.status_code == status == exc.status
    body = json.loads(response.body)
    assert "Traceback" not in response.body and (body.get("fields") or body["error"])
