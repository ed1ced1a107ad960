"""S3 faults on the in-place L2P reads (through the sandbox's fault proxy in front of moto): retried
success or a named failure, and nothing half-written in the output bucket."""
from __future__ import annotations

import pytest

from core.errors import AuthError, ColocationError, NotFoundError, UpstreamError
from core.pipeline import run_task
from sandbox.emulator import s3_error_fault
from tests import faults_fixtures as ff

L2P = "/podaac-ops-cumulus-protected/"


@pytest.fixture(scope="module")
def sb(sandbox_scene, tmp_path_factory):
    return ff.fault_sandbox(sandbox_scene, tmp_path_factory)


@pytest.fixture(autouse=True)
def _reset(sb):
    ff.reset(sb)
    yield
    ff.reset(sb)


def _fails(sb, t, exc_type, match: str, **overrides) -> ColocationError:
    with pytest.raises(exc_type) as info:
        run_task(t, ff.services(sb, **overrides))
    assert match in str(info.value), str(info.value)
    ff.assert_nothing_written(sb, t)
    return info.value


def _l2p_gets(sb):
    return [r for r in sb.state.requests_to("s3api") if r.method == "GET" and r.path.startswith(L2P)]


def test_throttled_gets_are_retried(sb):
    sb.faults.add(L2P, app="s3api", method="GET", times=3, **s3_error_fault("SlowDown"))
    t = ff.task(sb)
    manifest = run_task(t, ff.services(sb))
    ff.assert_one_complete_result(sb, t, manifest)
    assert len(sb.faults.fired) == 3 and manifest["counts"]["matched"] > 0


def test_persistent_throttling_is_a_named_failure(sb):
    sb.faults.add(L2P, app="s3api", method="GET", **s3_error_fault("SlowDown"))
    err = _fails(sb, ff.task(sb), UpstreamError, "")
    assert err.service == "S3"


def test_missing_modis_object(sb):
    sb.faults.add(L2P, app="s3api", **s3_error_fault("NoSuchKey"))
    _fails(sb, ff.task(sb), NotFoundError, "S3 object not found: s3://podaac-ops-cumulus-protected/")


def test_access_denied(sb):
    sb.faults.add(L2P, app="s3api", **s3_error_fault("AccessDenied"))
    err = _fails(sb, ff.task(sb), AuthError, "access denied")
    assert err.service == "S3"


def test_transfer_cut_short_is_a_named_failure(sb):
    sb.faults.add(L2P, app="s3api", method="GET", truncate_to=1000)
    err = _fails(sb, ff.task(sb), UpstreamError, "")
    assert err.service == "S3"


def test_truncated_netcdf_object_is_an_upstream_error(sb):
    """The object itself is short (a bad copy at the DAAC): named, not taken for the user's input."""
    s3 = sb.boto3_client("s3")
    granules = [g for g in sb.scene.granules if g.short_name != "ATL07" and not g.placeholder]
    g = next(g for g in granules if g.file_name.startswith("20190622064501") and "-N-" in g.file_name)
    good = g.path.read_bytes()
    s3.put_object(Bucket=g.bucket, Key=g.key, Body=good[: len(good) // 3])
    try:
        err = _fails(sb, ff.task(sb), UpstreamError, g.title)
        assert err.service == "S3"
    finally:
        s3.put_object(Bucket=g.bucket, Key=g.key, Body=good)
