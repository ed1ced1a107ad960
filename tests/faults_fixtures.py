"""Helpers shared by the fault-injection suites (tests/test_faults_*.py, tests/handlers/test_security.py).

One sandbox per process over the real seed scene, with the S3 fault proxy in front of moto
(``s3_faults=True``): every fault test drives the production ``run_task`` through real clients
and then lists the output bucket. Tasks are kept cheap by a narrow time window around the first
ATL07 granule (05:53 UTC) and a short Δt, and each test gets a request of its own (distinct
``radius_m``), so cached results of one test never satisfy another.
"""
from __future__ import annotations

import atexit
import itertools
import threading

import pytest

from core.access.earthdata import StaticToken
from core.jobs.date_plan import plan
from core.pipeline.task import build_services
from core.request import parse_request

SEED_BBOX = [-62.8, 81.7, -56.4, 83.0]
# first ATL07 granule of the seed day; SST granules within 20 min of its segments
FAST = {"bbox": SEED_BBOX, "start": "2019-06-22T05:00:00Z", "end": "2019-06-22T06:59:59Z", "max_dt_s": 3000.0}

_lock = threading.Lock()
_shared: dict = {}
_radius = itertools.count(0)


def fault_sandbox(scene, tmp_path_factory):
    """The process-wide fault sandbox (started on first use, stopped at exit)."""
    from sandbox.services import Sandbox

    with _lock:
        if "sb" not in _shared:
            sb = Sandbox(scene, workdir=tmp_path_factory.mktemp("fault-sandbox"), s3_faults=True)
            sb.start()
            atexit.register(sb.stop)
            _shared["sb"] = sb
        return _shared["sb"]


def reset(sb) -> None:
    sb.faults.clear()
    sb.state.requests.clear()
    _ensure_seeded(sb)


def _ensure_seeded(sb) -> None:
    """moto's backends are process-global: an in-process ``mock_aws`` in another test module
    resets them, wiping this session's buckets. Seed again if that happened."""
    sb.ensure_seeded()


def unique_radius() -> float:
    """A radius no other fault test uses: a request (and request id) of its own."""
    return 1500.0 + 7.0 * next(_radius)


def settings_of(sb, **overrides):
    return sb.settings.replace(**overrides) if overrides else sb.settings


def services(sb, token: str | None = None, **overrides):
    return build_services(settings_of(sb, **overrides), token_provider=StaticToken(token or sb.edl_token),
                          s3_client=sb.boto3_client("s3"))


def task(sb, **extra):
    body = {**FAST, "radius_m": unique_radius(), **extra}
    return plan(parse_request(body, sb.settings))[0]


def keys(sb, prefix: str) -> list[str]:
    s3 = sb.boto3_client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=sb.settings.output_bucket, Prefix=prefix)
    return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


def request_keys(sb, t) -> list[str]:
    return keys(sb, f"{sb.settings.output_prefix}/{t.request_id}/")


def assert_nothing_written(sb, t) -> None:
    left = request_keys(sb, t)
    assert left == [], f"a failed run left objects in the output bucket: {left}"


def assert_one_complete_result(sb, t, manifest: dict) -> None:
    """The date's manifest plus exactly the outputs it lists, nothing else under the request."""
    manifest_key = f"{sb.settings.output_prefix}/{t.request_id}/{t.date.isoformat()}/manifest.json"
    assert manifest["status"] == "complete"
    assert manifest["outputs"], "a complete result lists its outputs"
    assert request_keys(sb, t) == sorted(manifest["outputs"] + [manifest_key])


@pytest.fixture
def fault_sb(sandbox_scene, tmp_path_factory):
    """The process-wide fault sandbox, its faults and request log cleared around each test."""
    sb = fault_sandbox(sandbox_scene, tmp_path_factory)
    reset(sb)
    yield sb
    reset(sb)
