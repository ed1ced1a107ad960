"""Results that only their job's id reaches, and results that do not stick before the data exists
(issue 24): keyed job ids (the stack's secret), presigned links no longer than the role session,
a date after today refused by name, a date too recent to be final recomputed by a later run."""
from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from core.config import Settings
from core.jobs.date_plan import make_plan
from core.request import parse_request
from sandbox.lambda_context import LambdaContext
from tests import faults_fixtures as ff
from tests.pipeline_fixtures import run_date

CTX = LambdaContext("ApiFunction", 512, "req-0024", 29_000)
SEED = {"bbox": ff.SEED_BBOX, "date": "2019-06-22"}


@pytest.fixture
def sb(fault_sb):
    return fault_sb


@pytest.fixture
def api(sb, handler_environment):
    """The API function as the stack deploys it, on the sandbox's moto: the job-id key from the
    secret the deployment creates (sandbox.deployment, template.yaml's JobIdKeySecret)."""
    from sandbox.deployment import lambda_environment

    sfn = sb.boto3_client("stepfunctions")
    arn = sfn.create_state_machine(name=f"coloc-{uuid.uuid4().hex[:8]}-colocation",
                                   definition=json.dumps({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}),
                                   roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
    handler_environment({**lambda_environment(sb), "STATE_MACHINE_ARN": arn, "HOME": str(sb.workdir),
                         "COLOC_PRESIGN_EXPIRY_S": str(7 * 86400)})
    from handlers import api as api_handler

    def call(method: str, path: str, body: dict | None = None, job_id: str | None = None) -> tuple[int, dict]:
        event = {"httpMethod": method, "path": path, "resource": path, "headers": {"Content-Type": "application/json"},
                 "body": json.dumps(body) if body is not None else None, "isBase64Encoded": False,
                 "pathParameters": {"job_id": job_id} if job_id else None, "queryStringParameters": None,
                 "requestContext": {"stage": "v1", "path": f"/v1{path}", "httpMethod": method, "requestId": "r-1"}}
        answer = api_handler.handler(event, CTX)
        return answer["statusCode"], json.loads(answer["body"])

    return call


def test_a_job_id_cannot_be_computed_from_the_parameters(sb, api):
    body = {**SEED, "radius_m": ff.unique_radius()}
    status, started = api("POST", "/colocations", body)
    assert status == 202, started
    job_id = started["job_id"]
    # the README's rule without the stack's key: what anyone with the shared API key could compute
    guessed = parse_request(body, Settings()).request_id()
    assert job_id != guessed and len(job_id) == len(guessed)
    # the same request again is the same job (idempotent under the key)
    status, again = api("POST", "/colocations", body)
    assert again["job_id"] == job_id, again
    # a status is read with its own id only: the guessed id is unknown
    assert api("GET", f"/colocations/{guessed}", job_id=guessed)[0] == 404
    status, report = api("GET", f"/colocations/{job_id}", job_id=job_id)
    assert status == 200 and report["job_id"] == job_id
    # nothing under the guessable id in the bucket
    assert ff.keys(sb, f"{sb.settings.output_prefix}/{guessed}/") == []


def test_presigned_links_do_not_outlive_the_role_session(sb, api):
    """COLOC_PRESIGN_EXPIRY_S asks for 7 days; a link signed with the role's temporary credentials
    dies with them (role_session_s, 1 h): the API's links say 3600 s, and they work."""
    import requests

    api("GET", "/colocations/r00000000000000000000", job_id="r00000000000000000000")  # the API's cold start
    from handlers.runtime import output_links

    links = output_links()
    key = f"{sb.settings.output_prefix}/_presign-check/manifest.json"
    sb.boto3_client("s3").put_object(Bucket=sb.settings.output_bucket, Key=key, Body=b"{}")
    url = links.store.presign(key, links.expires_s)
    assert links.expires_s == 3600 and "X-Amz-Expires=3600" in url
    assert requests.get(url, timeout=10).content == b"{}"


def test_a_date_after_today_is_refused_naming_the_field(sb, api, capsys):
    tomorrow = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    status, body = api("POST", "/colocations", {"bbox": ff.SEED_BBOX, "date": tomorrow})
    assert status == 400 and body["fields"][0]["field"] == "date", body
    assert "after today" in body["fields"][0]["message"]
    status, body = api("POST", "/colocations", {"bbox": ff.SEED_BBOX, "start": "2019-06-22", "end": tomorrow})
    assert status == 400 and body["fields"][0]["field"] == "end", body
    from cli.command import main

    code = main(["run", "--bbox", ",".join(map(str, ff.SEED_BBOX)), "--date", tomorrow, "--out", str(sb.workdir)])
    err = capsys.readouterr().err
    assert code == 2 and "--date" in err and "after today" in err and "Traceback" not in err, err


def test_a_date_too_recent_to_be_final_is_provisional_and_recomputed(sb):
    """collection_latency_days covering the seed date (2019) makes it 'too recent': the manifest
    says provisional, a later run computes the date again instead of returning it, and the Plan
    of a re-run includes it; once past the latency, the date is final."""
    t = ff.task(sb)
    recent = ff.services(sb, collection_latency_days=3660)
    first = run_date(t, recent)
    assert first["provisional"] is True
    ff.assert_one_complete_result(sb, t, first)
    store = recent.output
    plan = make_plan(t.request.canonical(), ff.settings_of(sb, collection_latency_days=3660), store)
    assert plan["pending"] == 1 and plan["dates"] == [t.date.isoformat()]
    second = run_date(t, recent)
    assert not second.get("cached") and second["run_id"] != first["run_id"] and second["provisional"] is True
    ff.assert_one_complete_result(sb, t, second)  # the first run's outputs are gone
    final = run_date(t, ff.services(sb))  # past the latency: computed once more, then final
    assert "provisional" not in final and final["run_id"] != second["run_id"]
    ff.assert_one_complete_result(sb, t, final)
    assert run_date(t, ff.services(sb))["cached"] is True
    assert make_plan(t.request.canonical(), sb.settings, store)["pending"] == 0


def test_a_complete_job_with_provisional_dates_runs_again_on_the_next_post():
    """Summarize counts provisional dates (``n_provisional``): such a complete job is not final,
    the next POST starts an attempt (Plan then runs those dates); without them it answers 200."""
    from core.jobs.job_status import _ended_job

    def attempt(output: dict) -> dict:
        return {"status": "SUCCEEDED", "output": json.dumps(output), "startDate": dt.datetime.now(dt.UTC)}

    job = {"job_id": "r" + "0" * 20, "status_url": "/colocations/r" + "0" * 20, "attempt": 1}
    assert _ended_job([attempt({"n_failed": 0, "n_provisional": 2})], job) is None
    final = _ended_job([attempt({"n_failed": 0})], job)
    assert final is not None and final.status == 200 and final.body["status"] == "complete"
