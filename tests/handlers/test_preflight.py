"""Before any work (issue 23): dates trimmed to the collections' temporal extents from CMR's
collection metadata, the pre-flight estimate, and the API's 202 estimate / 413 refusal — against
the sandbox's CMR emulator (collections.umm_json with TemporalExtents, as CMR answers)."""
from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.jobs.preflight import estimate, usable_dates
from core.request import ColocationRequest
from sandbox.lambda_context import LambdaContext

EVENTS = Path(__file__).resolve().parents[2] / "events"
SEED_BBOX = [-62.8, 81.7, -56.4, 83.0]
TODAY = dt.date(2026, 12, 6)


def resolved(body: dict, settings) -> ColocationRequest:
    return ColocationRequest.model_validate(body).resolve(settings)


def test_dates_before_atl07_are_trimmed_and_said_why(sandbox):
    s = sandbox.settings
    kept, trim = usable_dates(resolved({"bbox": SEED_BBOX, "start": "2018-10-01", "end": "2018-10-20"}, s), s,
                              today=TODAY)
    assert [d.isoformat() for d in kept][:1] == ["2018-10-13"] and len(kept) == 8
    assert (trim.requested, trim.kept, trim.first, trim.last) == (20, 8, "2018-10-13", "2018-10-20")
    assert trim.reasons == [f"12 dates before 2018-10-13: ATL07 ({s.atl07_collection}) has data from 2018-10-13 on"]
    # a range reaching past today never gets here: the request names its end as the error (issue 24)
    with pytest.raises(ValidationError, match="end"):
        resolved({"bbox": SEED_BBOX, "start": "2026-12-01", "end": "2099-12-31"}, s)
    # nothing to trim in ICESat-2's and MODIS Aqua's years
    kept, trim = usable_dates(resolved({"bbox": SEED_BBOX, "date": "2019-06-22"}, s), s, today=TODAY)
    assert len(kept) == 1 and trim.reasons == [] and trim.trimmed == 0


def test_estimate_counts_the_granules_cmr_lists_and_their_bytes(sandbox):
    s = sandbox.settings
    est = estimate(resolved({"bbox": SEED_BBOX, "date": "2019-06-22"}, s), s, today=TODAY)
    # the cut scene: CMR lists its 2 ATL07 and 14 L2P granules for the seed date and box
    atl07 = [g for g in sandbox.scene.granules if g.short_name.startswith("ATL07")]
    l2p = [g for g in sandbox.scene.granules if not g.short_name.startswith("ATL07")]
    assert (est.dates, est.atl07_granules, est.sst_granules) == (1, len(atl07), len(l2p))
    want = sum(g.size_bytes for g in atl07) + 0.5 * sum(g.size_bytes for g in l2p)
    assert est.gb_to_move == pytest.approx(want / 1e9, abs=1e-3)
    assert est.lambda_gb_s == pytest.approx((2.0 + 12.0 * len(atl07)) * s.colocate_memory_mb / 1024)
    assert est.usd and est.usd > 0 and "1 dates" in est.summary()
    doc = est.document()
    assert "kept_dates" not in doc and doc["trim"]["kept"] == 1 and len(json.dumps(doc)) < 2048


@pytest.fixture()
def api(handler_environment, sandbox):
    sfn = sandbox.boto3_client("stepfunctions")
    arn = sfn.create_state_machine(
        name=f"coloc-test-{uuid.uuid4().hex[:8]}-colocation",
        definition=json.dumps({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-west-2",
           "AWS_ENDPOINT_URL": sandbox.moto_url, "COLOC_CMR_URL": sandbox.url("cmr"),
           "COLOC_OUTPUT_BUCKET": "coloc-test-preflight", "STATE_MACHINE_ARN": arn, "POWERTOOLS_TRACE_DISABLED": "1"}

    def call(body: dict, **settings: str) -> tuple[int, dict]:
        from handlers.api import handler

        handler_environment({**env, **settings}, drop=[k for k in ("COLOC_REQUEST_MAX_GB",) if k not in settings])
        event = copy.deepcopy(json.loads((EVENTS / "api_post.json").read_text()))
        event["body"] = json.dumps(body)
        resp = handler(event, LambdaContext("ApiFunction"))
        assert "Traceback" not in resp["body"]
        return resp["statusCode"], json.loads(resp["body"])

    return call


def test_the_api_answers_the_estimate_and_refuses_a_request_above_its_ceiling(api):
    body = {"bbox": SEED_BBOX, "date": "2019-06-22", "radius_m": 1111.0}
    status, out = api(body, COLOC_REQUEST_MAX_GB="0.001")
    assert status == 413, out
    assert "above the limit of 0.001 GB (COLOC_REQUEST_MAX_GB)" in out["error"] and out["limit_gb"] == 0.001
    assert out["estimate"]["gb_to_move"] > 0.001 and out["estimate"]["atl07_granules"] == 2
    status, out = api(body)
    assert status == 202, out
    assert out["estimate"]["dates"] == 1 and out["estimate"]["atl07_granules"] == 2
