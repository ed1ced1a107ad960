"""S3 faults on the in-place L2P reads (through the sandbox's fault proxy in front of moto): retried
success or a named failure, and nothing half-written in the output bucket."""
from __future__ import annotations

import json
import threading

import pytest

from core.errors import AuthError, ColocationError, NotFoundError, UpstreamError
from sandbox.emulator import s3_error_fault
from tests import faults_fixtures as ff
from tests.pipeline_fixtures import run_date

L2P = "/podaac-ops-cumulus-protected/"


@pytest.fixture
def sb(fault_sb):
    return fault_sb


def _fails(sb, t, exc_type, match: str, **overrides) -> ColocationError:
    with pytest.raises(exc_type) as info:
        run_date(t, ff.services(sb, **overrides))
    assert match and match in str(info.value), str(info.value)
    ff.assert_nothing_written(sb, t)
    return info.value


def _named_l2p(sb, err) -> None:
    """The failure names the L2P granule it hit (any of the task's candidates)."""
    titles = [g.title for g in sb.scene.granules if g.short_name != "ATL07"]
    assert any(t in str(err) for t in titles), str(err)


def _first_atl07(sb):
    return next(g for g in sb.scene.granules if g.short_name == "ATL07" and "_20190622055317_" in g.file_name)


def _l2p_gets(sb):
    return [r for r in sb.state.requests_to("s3api") if r.method == "GET" and r.path.startswith(L2P)]


def test_throttled_gets_are_retried(sb):
    sb.faults.add(L2P, app="s3api", method="GET", times=3, **s3_error_fault("SlowDown"))
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb))
    ff.assert_one_complete_result(sb, t, manifest)
    assert len(sb.faults.fired) == 3 and manifest["counts"]["matched"] > 0


@pytest.mark.slow  # s3fs and botocore back off for ~40 s before giving up
def test_persistent_throttling_is_a_named_failure(sb):
    sb.faults.add(L2P, app="s3api", method="GET", **s3_error_fault("SlowDown"))
    err = _fails(sb, ff.task(sb), UpstreamError, "SlowDown")
    assert err.service == "S3"
    _named_l2p(sb, err)


def test_missing_modis_object(sb):
    sb.faults.add(L2P, app="s3api", **s3_error_fault("NoSuchKey"))
    _fails(sb, ff.task(sb), NotFoundError, "S3 object not found: s3://podaac-ops-cumulus-protected/")


def test_access_denied(sb):
    sb.faults.add(L2P, app="s3api", **s3_error_fault("AccessDenied"))
    err = _fails(sb, ff.task(sb), AuthError, "access denied")
    assert err.service == "S3"


def test_transfer_cut_short_is_a_named_failure(sb):
    sb.faults.add(L2P, app="s3api", method="GET", truncate_to=1000)
    err = _fails(sb, ff.task(sb), UpstreamError, "received 1000 of")
    assert err.service == "S3"
    _named_l2p(sb, err)


def test_truncated_netcdf_object_is_an_upstream_error(sb):
    """The object itself is short (a bad copy at the DAAC): named, not taken for the user's input."""
    s3 = sb.boto3_client("s3")
    granules = [g for g in sb.scene.granules if g.short_name != "ATL07"]
    g = next(g for g in granules if g.file_name.startswith("20190622064501") and "-N-" in g.file_name)
    good = g.path.read_bytes()
    s3.put_object(Bucket=g.bucket, Key=g.key, Body=good[: len(good) // 3])
    try:
        err = _fails(sb, ff.task(sb), UpstreamError, g.title)
        assert err.service == "S3"
    finally:
        s3.put_object(Bucket=g.bucket, Key=g.key, Body=good)


# --------------------------------------------------------------------------- the output bucket
def _output_client(sb, puts: list | None = None):
    """An S3 client for the output bucket that goes through the fault proxy too."""
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", region_name="us-west-2", endpoint_url=sb.s3_url, aws_access_key_id="testing",
                          aws_secret_access_key="testing", config=Config(retries={"max_attempts": 3}))
    if puts is not None:  # observe (not alter) every PutObject the pipeline makes
        client.meta.events.register("provide-client-params.s3.PutObject",
                                    lambda params, **kw: puts.append(params["Key"]))
    return client


def _services_with_output(sb, client):
    from core.access.earthdata import StaticToken
    from core.pipeline.services import build_services

    return build_services(sb.settings, token_provider=StaticToken(sb.edl_token), s3_client=client)


def test_failure_after_outputs_were_uploaded_removes_them(sb):
    """The second ATL07 granule of the day is gone: the first one's uploaded products must go too."""
    second = next(g for g in sb.scene.granules if g.short_name == "ATL07" and "_20190622200154_" in g.file_name)
    sb.faults.add(f"/{second.bucket}/{second.key}", app="nsidc", status=404, body="Not Found")
    t = ff.task(sb, start=None, end=None, date="2019-06-22")
    puts: list[str] = []
    with pytest.raises(NotFoundError):
        run_date(t, _services_with_output(sb, _output_client(sb, puts)))
    assert any(k.endswith(".nc") for k in puts) and any(k.endswith(".png") for k in puts), puts
    ff.assert_nothing_written(sb, t)


def test_throttled_output_puts_are_retried(sb):
    t = ff.task(sb)
    sb.faults.add(f"/{sb.settings.output_bucket}/", app="s3api", method="PUT", times=2, **s3_error_fault("SlowDown"))
    manifest = run_date(t, _services_with_output(sb, _output_client(sb)))
    ff.assert_one_complete_result(sb, t, manifest)
    assert len(sb.faults.fired) == 2


def test_manifest_write_denied_after_uploads_leaves_nothing(sb):
    t = ff.task(sb)
    manifest_path = f"/{sb.settings.output_bucket}/{sb.settings.output_prefix}/{t.request_id}/{t.date}/manifest.json"
    sb.faults.add(manifest_path, app="s3api", method="PUT", **s3_error_fault("AccessDenied"))
    puts: list[str] = []
    with pytest.raises(UpstreamError) as info:
        run_date(t, _services_with_output(sb, _output_client(sb, puts)))
    assert "output bucket" in info.value.service and "AccessDenied" in str(info.value)
    assert len(puts) >= 3  # netCDF, PNG, then the refused manifest
    ff.assert_nothing_written(sb, t)


def test_manifest_put_whose_answer_is_lost_is_still_ours(sb):
    """The conditional manifest PUT lands but its answer is lost; botocore's retry gets 412.
    The run must recognise its own manifest, not delete the outputs that manifest lists."""
    t = ff.task(sb)
    manifest_path = f"/{sb.settings.output_bucket}/{sb.settings.output_prefix}/{t.request_id}/{t.date}/manifest.json"
    sb.faults.add(manifest_path, app="s3api", method="PUT", drop_after=0, times=1)
    manifest = run_date(t, _services_with_output(sb, _output_client(sb)))
    assert len(sb.faults.fired) == 1
    stored = json.loads(sb.boto3_client("s3").get_object(
        Bucket=sb.settings.output_bucket, Key=manifest_path.split("/", 2)[2])["Body"].read())
    assert stored["run_id"] == manifest["run_id"]
    ff.assert_one_complete_result(sb, t, stored)


@pytest.mark.parametrize("rule, exc_type, service", [
    (s3_error_fault("AccessDenied"), AuthError, "S3"),
    (s3_error_fault("NoSuchKey"), NotFoundError, None),
    ({"method": "GET", "truncate_to": 2048}, UpstreamError, "S3"),
])
def test_atl07_read_in_place_faults_are_named(sb, rule, exc_type, service):
    sb.faults.add("/nsidc-cumulus-prod-protected/", app="s3api", **rule)
    err = _fails(sb, ff.task(sb), exc_type, _first_atl07(sb).file_name, atl07_access="direct")
    assert service is None or err.service == service, err


def test_the_next_granule_is_read_while_a_product_uploads(sb):
    """Products are made in a thread of their own: the first product's upload is held until the
    date's second ATL07 granule is being read. Made one after another, that read would wait for the
    upload: the hold then times out and the order gives it away. An event, not a delay a loaded
    machine can outlast."""
    events: list[tuple[str, str]] = []
    second_read, held = threading.Event(), []
    client = _output_client(sb)

    def hold_the_first_upload(**kwargs):
        if not held:
            held.append(second_read.wait(timeout=60))

    client.meta.events.register("before-call.s3.PutObject", hold_the_first_upload)
    services = _services_with_output(sb, client)

    def progress(event, info):
        events.append((event, info.get("name") or info.get("title")))
        if sum(1 for e in events if e == ("stage", "atl07_read")) == 2:
            second_read.set()

    services.progress = progress
    t = ff.task(sb, start=None, end=None, date="2019-06-22")  # both ATL07 granules of the day
    manifest = run_date(t, services)
    ff.assert_one_complete_result(sb, t, manifest)
    reads = [i for i, e in enumerate(events) if e == ("stage", "atl07_read")]
    first_product = next(i for i, (event, _) in enumerate(events) if event == "granule")
    assert held == [True] and len(reads) == 2 and reads[1] < first_product, (held, events)
