"""When CMR and the data disagree: sizes (the transfer's own Content-Length wins, CMR's is a
manifest warning) and collections that do not exist (CMR answers 200 with zero hits; the
service answers a validation error naming the field)."""
from __future__ import annotations

import dataclasses

import pytest

from core.earthdata import StaticToken
from core.pipeline import build_services, plan, run_task
from core.request import parse_request
from sandbox.services import Sandbox
from tests import faults_fixtures as ff

ATL07_EXTRA, L2P_SHORT = 4096, 7  # CMR's sizes in this scene are off by these many bytes


@pytest.fixture(scope="module")
def wrong_sizes_sb(sandbox_scene, tmp_path_factory):
    """The seed scene with CMR listing wrong sizes (files and S3 objects unchanged)."""
    granules = [dataclasses.replace(g, size_bytes=g.size_bytes + (ATL07_EXTRA if g.short_name == "ATL07" else
                                                                   0 if g.placeholder else -L2P_SHORT))
                for g in sandbox_scene.granules]
    with Sandbox(dataclasses.replace(sandbox_scene, granules=granules),
                 workdir=tmp_path_factory.mktemp("wrong-sizes")) as sb:
        yield sb


@pytest.mark.parametrize("in_region", [True, False], ids=["s3", "https"])
def test_sizes_that_disagree_with_cmr_are_warnings_not_failures(wrong_sizes_sb, in_region):
    sb = wrong_sizes_sb
    sb.set_in_region(in_region)
    try:
        settings = dataclasses.replace(sb.settings, output_prefix=f"sizes-{in_region}")
        services = build_services(settings, token_provider=StaticToken(sb.edl_token),
                                  s3_client=sb.boto3_client("s3"))
        task = plan(parse_request({**ff.FAST, "radius_m": 1000.0}, settings))[0]
        manifest = run_task(task, services)
    finally:
        sb.set_in_region(True)
    assert manifest["status"] == "complete" and manifest["counts"]["matched"] > 0
    warnings = manifest["warnings"]
    atl07 = [w for w in warnings if w.startswith("ATL07")]
    l2p = [w for w in warnings if not w.startswith("ATL07")]
    assert atl07 and all("CMR lists" in w and "the server's size was used" in w for w in warnings)
    assert len(l2p) == len(manifest["bytes"]["sst_per_granule"]) > 0  # every L2P granule read
    for product in manifest["products"]:
        if product["segments"]:
            assert any("CMR lists" in w for w in product["warnings"])
    # the bytes were verified against the transfer's own size, which is the file's
    real = {g.title: g.path.stat().st_size for g in sb.scene.granules}
    for title, report in manifest["bytes"]["sst_per_granule"].items():
        assert report["size"] == real[title]
        want = f"{title}: CMR lists {real[title] - L2P_SHORT} bytes, the server sent {real[title]} "
        assert any(w.startswith(want) for w in warnings), (want, warnings)
