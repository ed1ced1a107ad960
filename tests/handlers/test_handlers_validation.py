"""Handlers on their validation and routing paths, fed the ready events from events/.

AWS is moto (in-process); the handlers run unmodified. The end-to-end runs through the pipeline
are in tests/handlers/test_handlers_e2e.py.
"""
from __future__ import annotations

import copy
import json
import math
import time
import uuid
from datetime import UTC
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from core.config import Settings
from core.request import DateTask, parse_request
from sandbox.lambda_context import LambdaContext

EVENTS = Path(__file__).resolve().parents[2] / "events"
BUCKET = "coloc-test-output"


def load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


CTX = LambdaContext("test-fn", 512, "req-0001", 30_000)


@pytest.fixture()
def aws(handler_environment, mini_sandbox):
    # the session sandbox's moto server: an in-process mock_aws would reset moto's
    # process-global state under every other sandbox of the test session
    handler_environment({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                         "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-west-2",
                         "AWS_ENDPOINT_URL": mini_sandbox.moto_url,
                         # Plan and POST ask CMR (collection extents, the estimate): the sandbox's, never the internet
                         "COLOC_CMR_URL": mini_sandbox.url("cmr"),
                         "COLOC_OUTPUT_BUCKET": BUCKET, "POWERTOOLS_TRACE_DISABLED": "1",
                         "POWERTOOLS_DEV": "0"}, drop=("COLOC_S3_ENDPOINT_URL",))
    s3 = mini_sandbox.boto3_client("s3")
    try:
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    sfn = mini_sandbox.boto3_client("stepfunctions")
    arn = sfn.create_state_machine(
        name=f"coloc-test-{uuid.uuid4().hex[:8]}-colocation",
        definition=json.dumps({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    handler_environment({"STATE_MACHINE_ARN": arn})
    return {"s3": s3, "sfn": sfn, "arn": arn}


def assert_clean(body: str) -> None:
    assert "Traceback" not in body and 'File "' not in body


# --------------------------------------------------------------------------- events
def test_events_agree_on_the_seed_job():
    seed = parse_request(load("direct.json"), Settings())
    assert seed.bbox == (-62.8, 81.7, -56.4, 83.0) and [d.isoformat() for d in seed.dates()] == ["2019-06-22"]
    task = DateTask.from_item(load("sfn_task.json"))
    post_body = json.loads(load("api_post.json")["body"])
    get_id = load("api_get.json")["pathParameters"]["job_id"]
    assert parse_request(load("stepfunctions_input.json"), Settings()).request_id() == seed.request_id()
    assert parse_request(post_body, Settings()).request_id() == seed.request_id()
    # regenerate events/api_get.json if the defaults in Settings change
    assert task.request_id == get_id == seed.request_id()


def test_api_events_have_the_rest_proxy_shape():
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

    for name, method in (("api_post.json", "POST"), ("api_get.json", "GET")):
        event = APIGatewayProxyEvent(load(name))
        assert event.http_method == method and event.request_context.stage == "v1"
        assert event.resource.startswith("/colocations")
        text = json.dumps(load(name)).lower()
        for secret_word in ("password", "token", "authorization", "aws_secret"):
            assert secret_word not in text


# --------------------------------------------------------------------------- direct
def test_direct_event_plans_one_task(aws):
    from core.jobs.date_tasks import direct_tasks
    from handlers.runtime import settings

    tasks = direct_tasks(load("direct.json"), settings())
    assert [t.date.isoformat() for t in tasks] == ["2019-06-22"]
    assert tasks[0].request.is_resolved


BAD_DIRECT = [
    ({"bbox": [-62.8, 81.7, -56.4], "date": "2019-06-22"}, "bbox"),
    ({"bbox": [-62.8, 83, -56.4, 81.7], "date": "2019-06-22"}, "bbox"),
    ({"bbox": [-62.8, 81.7, -56.4, math.nan], "date": "2019-06-22"}, "bbox"),
    ({"bbox": [-62.8, 81.7, -56.4, 83], "date": "June 22"}, "date"),
    ({"bbox": [-62.8, 81.7, -56.4, 83], "start": "2019-06-22", "end": "2019-06-21"}, "end"),
    ({"bbox": [-62.8, 81.7, -56.4, 83], "date": "2019-06-22", "radius_m": -1}, "radius_m"),
    ({"bbox": [-62.8, 81.7, -56.4, 83], "date": "2019-06-22", "max_dt_s": 1e9}, "max_dt_s"),
    ({"bbox": [-62.8, 81.7, -56.4, 83], "date": "2019-06-22", "min_quality_level": 9}, "min_quality_level"),
    ({"bbox": [-62.8, 81.7, -56.4, 83], "date": "2019-06-22", "sst_collection": "??"}, "sst_collection"),
    ({"bbox": [-62.8, 81.7, -56.4, 83], "date": "2019-06-22", "password": "x"}, "password"),
    # longer than settings.max_direct_dates: refused with a pointer to the state machine
    ({"bbox": [-62.8, 81.7, -56.4, 83], "start": "2019-06-01", "end": "2019-06-30"}, "end"),
]


@pytest.mark.parametrize("event,field", BAD_DIRECT)
def test_direct_handler_rejects_bad_events_by_field(aws, event, field):
    from handlers.colocate import handler

    out = handler(event, CTX)
    assert out["error"] == "invalid request"
    assert field in [f["field"] for f in out["fields"]], out
    assert_clean(json.dumps(out))


def test_direct_handler_points_long_ranges_at_the_state_machine(aws):
    from handlers.colocate import handler

    out = handler(BAD_DIRECT[-1][0], CTX)
    assert "state machine" in out["fields"][0]["message"]


def test_task_item_errors_raise_a_named_exception(aws):
    from core.errors import InvalidTaskError
    from handlers.colocate import handler

    item = load("sfn_task.json")
    for bad in ({**item, "date": "2019-06-23"}, {**item, "date": "nope"},
                {"request": {**item["request"], "bbox": [1, 2]}, "date": item["date"]}):
        with pytest.raises(InvalidTaskError):
            handler(bad, CTX)


# --------------------------------------------------------------------------- API
def call_api(event: dict) -> tuple[int, dict]:
    from handlers.api import handler

    resp = handler(event, CTX)
    assert_clean(resp["body"])
    return resp["statusCode"], json.loads(resp["body"])


def post(body) -> dict:
    event = copy.deepcopy(load("api_post.json"))
    event["body"] = body if isinstance(body, str) or body is None else json.dumps(body)
    return event


def test_api_post_starts_one_execution_per_job(aws):
    status, body = call_api(load("api_post.json"))
    assert status == 202, body
    job = body["job_id"]
    assert job == load("api_get.json")["pathParameters"]["job_id"]
    assert body["status_url"] == f"https://abc123defg.execute-api.us-west-2.amazonaws.com/v1/colocations/{job}"
    executions = aws["sfn"].list_executions(stateMachineArn=aws["arn"])["executions"]
    assert [e["name"] for e in executions] == [job]
    started = json.loads(aws["sfn"].describe_execution(executionArn=executions[0]["executionArn"])["input"])
    assert started["date"] == "2019-06-22" and started["radius_m"] == 1000.0 and started["bbox"][0] == -62.8
    # same parameters again while it runs: the same job, not a second run, and a clear 409
    status, again = call_api(load("api_post.json"))
    assert status == 409 and again["job_id"] == job and again["status"] == "running", again
    assert again["status_url"] == body["status_url"] and "still running (attempt 1" in again["error"]
    assert len(aws["sfn"].list_executions(stateMachineArn=aws["arn"])["executions"]) == 1


def test_api_post_that_loses_the_race_for_an_attempt_says_so(aws):
    # Another POST of the same job starts this attempt (and it ends) between this POST's look-up
    # of the attempts and its StartExecution: Step Functions refuses a closed execution's name
    # with ExecutionAlreadyExists, and the API must answer 409, not start a second run.
    from core.jobs.job_status import execution_arn
    from handlers.runtime import client as runtime_client

    client = runtime_client("stepfunctions")

    def the_other_request_wins(params, **_):
        aws["sfn"].start_execution(stateMachineArn=params["stateMachineArn"], name=params["name"],
                                   input=params["input"])
        aws["sfn"].stop_execution(executionArn=execution_arn(params["stateMachineArn"], params["name"]))

    client.meta.events.register("provide-client-params.sfn.StartExecution", the_other_request_wins)
    try:
        event = load("api_post.json")
        event["body"] = json.dumps({"bbox": [-62.8, 81.7, -56.4, 83.0], "date": "2019-06-20"})
        status, body = call_api(event)
    finally:
        client.meta.events.unregister("provide-client-params.sfn.StartExecution", the_other_request_wins)
    assert status == 409, body
    assert "was started by another request" in body["error"] and body["attempt"] == 1
    executions = aws["sfn"].list_executions(stateMachineArn=aws["arn"])["executions"]
    assert [e["name"] for e in executions] == [body["job_id"]]  # the other request's, and no second


def test_status_url_is_absolute_with_the_stage_or_base_path(aws):
    # following a relative /colocations/<id> would drop the stage (/v1) and meet API Gateway's 403
    event = load("api_post.json")
    event["body"] = json.dumps({"bbox": [-62.8, 81.7, -56.4, 83.0], "date": "2019-06-21"})
    event["requestContext"].update(domainName="coloc.example.org", path="/sea-ice/colocations")
    status, body = call_api(event)
    assert status == 202, body
    assert body["status_url"] == f"https://coloc.example.org/sea-ice/colocations/{body['job_id']}"


def test_api_get_reports_a_running_job_and_404s(aws):
    call_api(load("api_post.json"))
    status, body = call_api(load("api_get.json"))
    assert status == 200 and body["status"] == "running", body
    assert body["progress"] == {"dates_total": 1, "dates_done": 0}
    for job in ("r" + "0" * 20, "not-a-job", "..%2F..%2Fetc"):
        event = copy.deepcopy(load("api_get.json"))
        event["pathParameters"] = {"job_id": job}
        event["path"] = f"/colocations/{job}"
        status, body = call_api(event)
        assert status == 404, (job, body)


@pytest.mark.parametrize(
    "body,field",
    [
        ({"bbox": [1, 2, 3], "date": "2019-06-22"}, "bbox"),
        ({"bbox": [-62.8, 83, -56.4, 81.7], "date": "2019-06-22"}, "bbox"),
        ('{"bbox": [-62.8, 81.7, -56.4, NaN], "date": "2019-06-22"}', "bbox"),
        ({"bbox": ["a", 81.7, -56.4, 83], "date": "2019-06-22"}, "bbox"),
        ({"bbox": [-62.8, 81.7, -56.4, 83], "date": "2019-13-01"}, "date"),
        ({"bbox": [-62.8, 81.7, -56.4, 83], "start": "2019-06-22T00:00:00Z"}, "end"),
        ({"bbox": [-62.8, 81.7, -56.4, 83], "start": "2019-06-22", "end": "2019-06-01"}, "end"),
        ({"bbox": [-62.8, 81.7, -56.4, 83], "start": "1990-01-01", "end": "2030-01-01"}, "end"),
        ({"bbox": [-62.8, 81.7, -56.4, 83], "date": "2019-06-22", "radius_m": 0}, "radius_m"),
        ({"bbox": [-62.8, 81.7, -56.4, 83], "date": "2019-06-22", "min_quality_level": -1}, "min_quality_level"),
        ({"bbox": [-62.8, 81.7, -56.4, 83], "date": "2019-06-22", "atl07_collection": "ATL07"}, "atl07_collection"),
        ({"bbox": [-62.8, 81.7, -56.4, 83], "date": "2019-06-22", "edl_token": "abc"}, "edl_token"),
        ("{not json", "body"),
        ("[1, 2, 3]", "body"),
        (None, "body"),
    ],
)
def test_api_post_400s_name_the_field(aws, body, field):
    status, out = call_api(post(body))
    assert status == 400, out
    assert field in [f["field"] for f in out["fields"]], out
    assert not aws["sfn"].list_executions(stateMachineArn=aws["arn"])["executions"]


def test_api_post_names_every_bad_field_at_once(aws):
    """Field errors and the date/start/end choice together: one 400 naming them all, each once."""
    status, out = call_api(post({"bbox": [-56.4, 81.7, -62.8, 83], "date": "2019-06-22", "start": "2019-06-22",
                                 "radius_m": -5, "foo": 1}))
    assert status == 400, out
    fields = {f["field"]: f["message"] for f in out["fields"]}
    assert set(fields) == {"bbox", "date", "radius_m", "foo"}, out
    assert "west first (-62.8,81.7,-56.4,83)" in fields["bbox"] and fields["radius_m"].startswith("must be")


def test_api_rejects_oversized_bodies_before_parsing(aws):
    big = {"bbox": [-62.8, 81.7, -56.4, 83], "date": "2019-06-22", "pad": "x" * 10_000}
    status, out = call_api(post(big))
    assert status == 413 and "body" in out["error"]


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.text(max_size=200),
    st.dictionaries(st.sampled_from(["bbox", "date", "start", "end", "radius_m", "max_dt_s",
                                     "min_quality_level", "sst_collection", "x"]),
                    st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=30),
                              st.lists(st.floats(-200, 200), max_size=5)), max_size=6).map(json.dumps),
))
def test_fuzz_api_post_never_500s(aws, body):
    status, out = call_api(post(body))
    assert status in (200, 202, 400, 413), (status, out)
    if status == 400:
        assert out["fields"] and all(f["field"] and f["message"] for f in out["fields"])


# --------------------------------------------------------------------------- plan / summarize
def test_plan_inline_for_the_seed_and_distributed_for_long_ranges(aws):
    from core.jobs.date_plan import INLINE_MAX_DATES
    from handlers.plan import handler

    out = handler(load("stepfunctions_input.json"), CTX)
    assert out["mode"] == "inline" and out["dates"] == ["2019-06-22"] and out["count"] == 1
    assert out["pending"] == 1 and out["done"] == 0
    assert out["request_id"] == load("api_get.json")["pathParameters"]["job_id"]
    assert len(json.dumps(out)) < 2048

    long = {"bbox": [-62.8, 81.7, -56.4, 83], "start": "2019-01-01", "end": "2020-12-31"}
    out = handler(long, CTX)
    assert out["mode"] == "distributed" and out["count"] == 731 > INLINE_MAX_DATES
    assert "dates" not in out and len(json.dumps(out)) < 2048
    plan = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=out["plan"]["key"])["Body"].read())
    assert plan[0] == "2019-01-01" and plan[-1] == "2020-12-31" and len(plan) == 731


def test_plan_of_a_later_attempt_lists_only_the_unpublished_dates(aws):
    """A re-run (docs/RERUNS.md): dates whose manifest is in the bucket are not planned again,
    and the mode stays the one the request's size chose, so every attempt takes the same path."""
    from handlers.plan import handler
    from handlers.runtime import settings

    s3 = aws["s3"]
    prefix = settings().output_prefix
    for body, total in (({"bbox": [-62.8, 81.7, -56.4, 83], "start": "2019-06-21", "end": "2019-06-23",
                          "radius_m": 1234.0}, 3),
                        ({"bbox": [-62.8, 81.7, -56.4, 83], "start": "2019-01-01", "end": "2019-12-31",
                          "radius_m": 1234.0}, 365)):
        job = parse_request(body, settings()).request_id()
        first = handler(body, CTX)
        assert first["pending"] == total and first["done"] == 0
        for day in ("2019-06-21", "2019-06-23"):
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{job}/{day}/manifest.json", Body=b"{}")
        # an output file or a run manifest is not a published date
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{job}/2019-06-22/run1/a.nc", Body=b"x")
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{job}/run-manifest.json", Body=b"{}")
        again = handler(body, CTX)
        assert again["count"] == total and again["done"] == 2 and again["pending"] == total - 2
        assert again["mode"] == first["mode"]
        if again["mode"] == "inline":
            assert again["dates"] == ["2019-06-22"]
        else:
            plan = json.loads(s3.get_object(Bucket=BUCKET, Key=again["plan"]["key"])["Body"].read())
            assert len(plan) == 363 and "2019-06-21" not in plan and "2019-06-23" not in plan
            assert "2019-06-22" in plan


def test_plan_rejects_bad_input_with_a_named_error(aws):
    from core.errors import InvalidTaskError
    from handlers.plan import handler

    with pytest.raises(InvalidTaskError) as info:
        handler({"bbox": [0, 0, 1]}, CTX)
    assert "bbox" in str(info.value)


def _date_result(date, n):
    return {"request_id": "r1", "date": date, "status": "complete", "manifest_key": f"c/r1/{date}/manifest.json",
            "outputs": [f"c/r1/{date}/run/a.nc", f"c/r1/{date}/run/a.png"], "counts": {"matched": n, "segments": 2 * n}}


def test_summarize_records_failures_and_writes_the_run_manifest(aws):
    from core.jobs.job_status import finished
    from handlers.runtime import output_links
    from handlers.summarize import handler

    results = [_date_result("2019-06-21", 5),
               {"date": "2019-06-22", "status": "failed", "type": "UpstreamError",
                "error": "download https://x/ATL07.h5: HTTP 503 after retries\n  File \"/var/task/core/x.py\""},
               _date_result("2019-06-23", 7)]
    request = {"bbox": [0, 0, 1, 1], "start": "2019-06-21", "end": "2019-06-23"}
    out = handler({"request_id": "r1", "request": request, "results": results, "execution": "r1"}, CTX)
    assert out["n_dates"] == 3 and out["n_failed"] == 1 and out["n_run"] == 3 and out["execution"] == "r1"
    # one line a user can act on, and the error class for programs
    assert out["failed_dates"] == [{"date": "2019-06-22", "type": "UpstreamError",
                                    "error": "download https://x/ATL07.h5: HTTP 503 after retries"}]
    assert out["counts"] == {"matched": 12, "segments": 24}
    run = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=out["manifest_key"])["Body"].read())
    assert [d["status"] for d in run["dates"]] == ["complete", "failed", "complete"]
    assert len(run["output_keys"]) == 4
    # what GET /colocations/{id} makes of it: presigned URLs per date, the failure named
    done = finished(out, output_links())
    assert done["dates"][1] == {"date": "2019-06-22", "status": "failed", "type": "UpstreamError",
                                "error": "download https://x/ATL07.h5: HTTP 503 after retries"}
    urls = done["dates"][0]["urls"]
    assert set(urls) == {"manifest.json", "a.nc", "a.png"}
    assert all("X-Amz-Expires=3600" in u and "X-Amz-Signature=" in u for u in urls.values())


def test_summarize_distributed_map_uses_the_bucket_and_the_result_writer(aws):
    """A Distributed Map hands over ResultWriter details: the date manifests in the bucket decide
    what completed; the FAILED result files name the error where AWS wrote them."""
    from handlers.summarize import handler

    s3 = aws["s3"]
    request = {"bbox": [0, 80, 1, 81], "start": "2019-06-21", "end": "2019-06-23"}
    s3.put_object(Bucket=BUCKET, Key="colocations/r2/2019-06-21/manifest.json", Body=json.dumps(
        {"date": "2019-06-21", "status": "complete", "outputs": ["colocations/r2/2019-06-21/x/a.nc"],
         "counts": {"matched": 3}}))
    s3.put_object(Bucket=BUCKET, Key="colocations/r2/2019-06-23/manifest.json", Body=b"{corrupt")
    bad = [{"Input": json.dumps({"date": "2019-06-22", "request": request}), "Error": "States.Timeout",
            "Status": "FAILED"}]
    s3.put_object(Bucket=BUCKET, Key="res/FAILED_0.json", Body=json.dumps(bad))
    s3.put_object(Bucket=BUCKET, Key="res/manifest.json", Body=json.dumps(
        {"DestinationBucket": BUCKET, "ResultFiles": {"SUCCEEDED": [], "FAILED": [{"Key": "res/FAILED_0.json"}]}}))
    out = handler({"request_id": "r2", "request": request, "results": {
        "MapRunArn": "arn:x", "ResultWriterDetails": {"Bucket": BUCKET, "Key": "res/manifest.json"}}}, CTX)
    assert out["n_dates"] == 3 and out["counts"] == {"matched": 3}
    assert out["failed_dates"][0] == {"date": "2019-06-22", "error": "States.Timeout"}
    assert out["failed_dates"][1]["date"] == "2019-06-23"
    assert "colocations/r2/2019-06-23/manifest.json is unreadable" in out["failed_dates"][1]["error"]
    assert len(out["failed_dates"]) == 2
    run = json.loads(s3.get_object(Bucket=BUCKET, Key=out["manifest_key"])["Body"].read())
    assert run["output_keys"] == ["colocations/r2/2019-06-21/x/a.nc"]


def test_summarize_of_a_later_attempt_takes_the_other_dates_from_the_bucket(aws):
    """Attempt 2 ran only the date attempt 1 failed: the dates it did not run come from their
    manifests, so the run manifest covers the whole job again."""
    from handlers.summarize import handler

    s3 = aws["s3"]
    request = {"bbox": [0, 80, 1, 81], "start": "2019-06-21", "end": "2019-06-23"}
    for day, n in (("2019-06-21", 4), ("2019-06-23", 6)):
        s3.put_object(Bucket=BUCKET, Key=f"colocations/r3/{day}/manifest.json", Body=json.dumps(
            {"date": day, "status": "complete", "outputs": [f"colocations/r3/{day}/x/a.nc"], "counts": {"matched": n}}))
    ran = [{**_date_result("2019-06-22", 5), "manifest_key": "colocations/r3/2019-06-22/manifest.json",
            "outputs": ["colocations/r3/2019-06-22/y/a.nc"]}]
    out = handler({"request_id": "r3", "request": request, "results": ran, "execution": "r3-a2"}, CTX)
    assert (out["n_dates"], out["n_run"], out["n_failed"]) == (3, 1, 0) and out["execution"] == "r3-a2"
    assert out["counts"] == {"matched": 15, "segments": 10}
    run = json.loads(s3.get_object(Bucket=BUCKET, Key=out["manifest_key"])["Body"].read())
    assert [d["status"] for d in run["dates"]] == ["complete"] * 3
    assert run["output_keys"] == [f"colocations/r3/{d}/{r}/a.nc" for d, r in
                                  (("2019-06-21", "x"), ("2019-06-22", "y"), ("2019-06-23", "x"))]
    # nothing ran (every date published): still one result per date
    out = handler({"request_id": "r3", "request": request, "results": [], "execution": "r3-a3"}, CTX)
    assert (out["n_dates"], out["n_run"], out["n_failed"]) == (3, 0, 1)
    assert out["failed_dates"] == [{"date": "2019-06-22", "error": "no result for this date"}]


def test_an_attempt_that_failed_as_a_whole_is_named_and_rerun_up_to_the_limit(aws, monkeypatch, mini_sandbox):
    """An execution that fails outright (here a Fail state with a Lambda-style cause): the status
    names the error in one line, a POST starts the next attempt, and the attempts are bounded."""
    import requests

    from core.jobs import job_status

    cause = json.dumps({"errorMessage": "output bucket s3://x: AccessDenied\nsecond line", "errorType": "UpstreamError",
                        "stackTrace": ['  File "/var/task/handlers/summarize.py", line 9, in handler\n']})
    machine = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "UpstreamError", "Cause": cause}}}
    config = f"{mini_sandbox.moto_url}/moto-api/config"
    # (moto keeps executing state machines in a backend of their own: create it once switched)
    requests.post(config, json={"stepfunctions": {"execute_state_machine": True}}, timeout=10)
    arn = aws["sfn"].create_state_machine(name=f"coloc-fail-{uuid.uuid4().hex[:8]}", definition=json.dumps(machine),
                                          roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    monkeypatch.setattr(job_status, "MAX_ATTEMPTS", 2)

    def finished() -> dict:
        for _ in range(200):
            status, body = call_api(load("api_get.json"))
            if body["status"] != "running":
                return body
            time.sleep(0.05)
        raise AssertionError("still running")

    try:
        status, first = call_api(load("api_post.json"))
        assert status == 202 and first["attempt"] == 1
        body = finished()
        assert body["status"] == "failed" and body["error"] == "UpstreamError: output bucket s3://x: AccessDenied"
        assert body["progress"] == {"dates_total": 1, "dates_done": 0} and body["rerun"]
        assert body["attempts"][0]["error"] == body["error"] and "stackTrace" not in json.dumps(body)
        status, second = call_api(load("api_post.json"))
        assert status == 202 and second["attempt"] == 2 and "run again" in second["message"]
        body = finished()
        assert body["attempt"] == 2 and [a["status"] for a in body["attempts"]] == ["failed", "failed"]
        assert "rerun" not in body  # no attempt left
        status, refused = call_api(load("api_post.json"))
        assert status == 409 and "has failed 2 times" in refused["error"], refused
        names = [e["name"] for e in aws["sfn"].list_executions(stateMachineArn=arn)["executions"]]
        assert sorted(names) == sorted([first["job_id"], f"{first['job_id']}-a2"])
    finally:
        requests.post(config, json={"stepfunctions": {"execute_state_machine": False}}, timeout=10)


def test_summarize_publishes_the_request_level_results_and_replaces_the_previous_attempts(aws, tmp_path):
    """Two attempts over the same published date: each references its own netCDF (the earlier one
    is deleted once the new run manifest is up), the date's Parquet file is written once; a product
    that cannot be read is reported in the run manifest, with nothing staged."""
    from datetime import datetime

    from core.products.granule_netcdf import build_dataset, write_netcdf
    from handlers.summarize import handler
    from tests.product_fixtures import PARAMS, seed_scene

    s3 = aws["s3"]
    tracks, swaths = seed_scene(n=800)
    nc = write_netcdf(build_dataset(tracks, [s.granule for s in swaths], PARAMS, request_id="r4",
                                    now=datetime(2026, 1, 1, tzinfo=UTC)), tmp_path / "a_sst.nc")
    key = "colocations/r4/2019-06-22/run1/a_sst.nc"
    s3.upload_file(str(nc), BUCKET, key)
    s3.put_object(Bucket=BUCKET, Key="colocations/r4/2019-06-22/manifest.json", Body=json.dumps(
        {"date": "2019-06-22", "run_id": "run1", "status": "complete", "outputs": [key], "counts": {"matched": 1}}))
    request = {"bbox": [0, 80, 1, 81], "date": "2019-06-22"}

    def attempt(execution):
        out = handler({"request_id": "r4", "request": request, "results": [], "execution": execution}, CTX)
        run = json.loads(s3.get_object(Bucket=BUCKET, Key=out["manifest_key"])["Body"].read())
        return out, run["request_outputs"]

    out, first = attempt("r4")
    assert first["netcdf"] == "colocations/r4/request/r4/r4_matches.nc" and out["request_outputs"]["netcdf"] == first["netcdf"]
    assert first["partitions"] == {"2019-06-22": "colocations/r4/parquet/request_id=r4/date=2019-06-22/part-run1.parquet"}
    assert first["matched"] > 0
    # the execution output names the bucket and where the Parquet is (Athena's table location)
    assert out["bucket"] == BUCKET and out["request_outputs"]["parquet"] == (
        f"s3://{BUCKET}/colocations/r4/parquet/request_id=r4/")
    head = s3.head_object(Bucket=BUCKET, Key=first["partitions"]["2019-06-22"])
    _, second = attempt("r4-a2")
    assert second["netcdf"] == "colocations/r4/request/r4-a2/r4_matches.nc"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="colocations/r4/")["Contents"]}
    assert first["netcdf"] not in keys and second["netcdf"] in keys  # only the referenced file is left
    assert s3.head_object(Bucket=BUCKET, Key=first["partitions"]["2019-06-22"])["ETag"] == head["ETag"]
    # the product is gone: the per-date results stand, the request-level ones say why they are missing
    s3.delete_object(Bucket=BUCKET, Key=key)
    out, third = attempt("r4-a3")
    assert third["netcdf"] is None and "404" in third["error"] and "\n" not in third["error"], third
    assert out["n_failed"] == 0 and out["request_outputs"]["error"] == third["error"]
    staged = s3.list_objects_v2(Bucket=BUCKET, Prefix="colocations/r4/request/").get("Contents", [])
    assert staged == []  # nothing half-written, and the replaced file (no longer referenced) removed
