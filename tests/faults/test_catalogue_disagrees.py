"""When CMR and the data disagree: sizes (the transfer's own Content-Length wins, CMR's is a
manifest warning) and collections that do not exist (CMR answers 200 with zero hits; the
service answers a validation error naming the field)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import requests

from core.access import catalog
from core.access.earthdata import StaticToken
from core.jobs.date_plan import plan
from core.pipeline.services import build_services
from core.request import parse_request
from sandbox.lambda_context import LambdaContext
from sandbox.services import Sandbox
from tests import faults_fixtures as ff
from tests.pipeline_fixtures import run_date

ROOT = Path(__file__).resolve().parents[2]
ATL07_EXTRA, L2P_SHORT = 4096, 7  # CMR's sizes in this scene are off by these many bytes


@pytest.fixture(scope="module")
def wrong_sizes_sb(sandbox_scene, tmp_path_factory):
    """The seed scene with CMR listing wrong sizes (files and S3 objects unchanged)."""
    granules = [dataclasses.replace(g, size_bytes=g.size_bytes + (ATL07_EXTRA if g.short_name == "ATL07" else -L2P_SHORT))
                for g in sandbox_scene.granules]
    with Sandbox(dataclasses.replace(sandbox_scene, granules=granules),
                 workdir=tmp_path_factory.mktemp("wrong-sizes")) as sb:
        yield sb


@pytest.mark.parametrize("in_region", [True, False], ids=["s3", "https"])
def test_sizes_that_disagree_with_cmr_are_warnings_not_failures(wrong_sizes_sb, in_region):
    sb = wrong_sizes_sb
    sb.set_in_region(in_region)
    try:
        settings = sb.settings.replace(output_prefix=f"sizes-{in_region}")
        services = build_services(settings, token_provider=StaticToken(sb.edl_token),
                                  s3_client=sb.boto3_client("s3"))
        task = plan(parse_request({**ff.FAST, "radius_m": 1000.0}, settings))[0]
        manifest = run_date(task, services)
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


# --- unknown collections ------------------------------------------------------------------------
UNKNOWN = "C0000000000-NOPE"
SEED_DAY = {"bbox": [-62.8, 81.7, -56.4, 83.0], "date": "2019-06-22"}


def _zero_hits_record(realdata) -> tuple[int, dict, dict]:
    import yaml

    cassette = yaml.safe_load((realdata / "cmr/recorded/TestMultipleQueries.test_zero_hits_query.yaml").read_text())
    resp = cassette["interactions"][0]["response"]
    return resp["status"]["code"], resp["headers"], json.loads(resp["body"]["string"])


def test_cmr_answers_an_unknown_collection_with_zero_hits_like_the_record(sb, realdata):
    status, headers, body = _zero_hits_record(realdata)
    assert status == 200 and headers["CMR-Hits"] == ["0"] and body["feed"]["entry"] == []
    cmr = sb.url("cmr")
    feed = requests.get(f"{cmr}/search/granules.json", params={"collection_concept_id": UNKNOWN}, timeout=10)
    assert feed.status_code == 200 and feed.headers["CMR-Hits"] == "0" and feed.json()["feed"]["entry"] == []
    umm = requests.get(f"{cmr}/search/granules.umm_json", params={"collection_concept_id": UNKNOWN}, timeout=10)
    assert umm.status_code == 200 and umm.json()["hits"] == 0
    coll = requests.get(f"{cmr}/search/collections.json", params={"concept_id": UNKNOWN}, timeout=10)
    assert coll.status_code == 200 and coll.json()["feed"]["entry"] == []


@pytest.fixture
def handler_env(sb, handler_environment):
    """The handlers pointed at the sandbox's CMR; AWS on a closed port (nothing may start)."""
    handler_environment({**sb.env(), "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "COLOC_HTTP_RETRIES": "0",
                         "STATE_MACHINE_ARN": "arn:aws:states:us-west-2:123456789012:stateMachine:coloc",
                         "POWERTOOLS_TRACE_DISABLED": "1"})
    catalog._known.clear()
    return sb


@pytest.mark.parametrize("field", ["sst_collection", "atl07_collection"])
def test_a_direct_event_naming_an_unknown_collection_is_a_validation_error(handler_env, field):
    from handlers.colocate import handler

    sb = handler_env
    out = handler({**SEED_DAY, field: UNKNOWN}, LambdaContext("coloc-test", 512, "unknown-coll", 30_000))
    assert out["error"] == "invalid request" and [f["field"] for f in out["fields"]] == [field], out
    assert UNKNOWN in out["fields"][0]["message"]
    searches = sb.state.requests_to("cmr")
    assert [r.path for r in searches] == ["/search/collections.json"]  # one search, no granule search
    assert sb.state.requests_to("nsidc") == sb.state.requests_to("podaac") == []


def test_the_api_answers_400_naming_the_field(handler_env):
    from handlers.api import handler

    event = json.loads((ROOT / "events" / "api_post.json").read_text())
    event["body"] = json.dumps({**SEED_DAY, "sst_collection": UNKNOWN})
    resp = handler(event, LambdaContext("coloc-test", 512, "unknown-coll-api", 30_000))
    body = json.loads(resp["body"])
    assert resp["statusCode"] == 400 and body["error"] == "invalid request"
    assert [f["field"] for f in body["fields"]] == ["sst_collection"]


def test_a_known_collection_is_asked_about_once_and_defaults_never(sb):
    settings = sb.settings
    catalog._known.clear()
    sb.state.requests.clear()
    req = parse_request({**SEED_DAY, "sst_collection": "MODIS_A-JPL-L2P-v2019.0"}, settings)
    catalog.check_collections(req, settings)
    catalog.check_collections(req, settings)  # cached
    catalog.check_collections(parse_request(SEED_DAY, settings), settings)  # defaults: not asked
    assert [r.path for r in sb.state.requests_to("cmr")] == ["/search/collections.json"]


def test_when_cmr_cannot_be_asked_the_check_gives_way_to_the_search(sb):
    settings = sb.settings.replace(cmr_url="http://127.0.0.1:9", http_retries=0)
    catalog._known.clear()
    assert catalog.collection_exists(UNKNOWN, settings) is None
    catalog.check_collections(parse_request({**SEED_DAY, "sst_collection": UNKNOWN}, settings), settings)
