"""All three entry points on the seed case in the sandbox, through the real handlers.

* direct: handlers.colocate.handler(events/direct.json)
* API: handlers.api.handler with the proxy events from events/ (POST starts the real state
  machine, GET reads its status and presigned URLs)
* Step Functions: statemachine/colocation.asl.json executed by moto (execute_state_machine),
  its Lambda tasks routed to the real handler modules, across 3 dates where one fails and is
  recorded while the others succeed.

AWS is the sandbox's moto server; NASA is the loopback Earthdata emulator; the EDL token comes
from Secrets Manager (the production path). Only moto's Lambda *runtime* is replaced (it would
need Docker): an invocation imports the function's Handler and calls it in-process.
"""
from __future__ import annotations

import copy
import importlib
import io
import json
import time
import zipfile
from pathlib import Path

import pytest
import requests

from sandbox.lambda_context import LambdaContext

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
DEFINITION = ROOT / "statemachine" / "colocation.asl.json"
FUNCTIONS = {"PlanFunction": "handlers.plan.handler", "ColocateFunction": "handlers.colocate.handler",
             "SummarizeFunction": "handlers.summarize.handler"}

pytestmark = pytest.mark.slow


def load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def _reset_handler_caches():
    from handlers import api, colocate, common

    common.settings.cache_clear()
    api._client.cache_clear()
    colocate._services = None


@pytest.fixture()
def lambda_env(sandbox, monkeypatch):
    """The environment template.yaml gives the functions, pointed at the sandbox."""
    env = sandbox.env()
    env.pop("EARTHDATA_TOKEN")  # the functions read the token from Secrets Manager
    env.update(POWERTOOLS_TRACE_DISABLED="1", POWERTOOLS_SERVICE_NAME="atl07-sst-colocation",
               POWERTOOLS_METRICS_NAMESPACE="Atl07SstColocation", LOG_LEVEL="INFO")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("EARTHDATA_USERNAME", "EARTHDATA_PASSWORD", "NETRC"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(sandbox.workdir))  # no ~/.netrc fallback
    _reset_handler_caches()
    yield env
    _reset_handler_caches()


@pytest.fixture()
def captured_logs():
    """Every record the Powertools logger and core/ emit, formatted by Powertools (JSON)."""
    import io
    import logging

    from handlers.common import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    targets = [logging.getLogger(logger.name), logging.getLogger("core")]
    for t in targets:
        t.addHandler(handler)
    yield stream
    for t in targets:
        t.removeHandler(handler)


def test_direct_invocation_seed_case(lambda_env, sandbox, captured_logs):
    from handlers.colocate import handler

    out = handler(load("direct.json"), LambdaContext("ColocateFunction"))
    assert set(out) == {"request_id", "dates"}, out
    (day,) = out["dates"]
    assert day["status"] == "complete" and day["date"] == "2019-06-22"
    assert day["counts"]["atl07_granules"] >= 1 and day["counts"]["matched"] > 0
    s3 = sandbox.boto3_client("s3")
    for key in [day["manifest_key"], *day["outputs"]]:
        assert s3.head_object(Bucket=sandbox.settings.output_bucket, Key=key)["ContentLength"] > 0
    assert any(k.endswith(".nc") for k in day["outputs"])
    # a second call finds the stored result
    again = handler(load("direct.json"), LambdaContext("ColocateFunction"))["dates"][0]
    assert again["cached"] is True and again["outputs"] == day["outputs"]
    # the EDL token read from Secrets Manager never reaches the logs or the answer
    logs = captured_logs.getvalue()
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(r.get("message") == "date done" and r.get("correlation_id") == out["request_id"] for r in records)
    assert any(r.get("location", "").startswith("run_task") or "core" in r.get("name", "") or
               r.get("message", "").startswith("skipping") for r in records)  # core's stdlib records too
    assert sandbox.edl_token not in logs and sandbox.edl_token not in json.dumps(out)


# --------------------------------------------------------------------------- state machine
@pytest.fixture()
def state_machine(lambda_env, sandbox, monkeypatch):
    """The real definition in moto, executing, with its Lambda tasks routed to our handlers."""
    from moto.awslambda.models import LambdaFunction

    def run_handler(self, event):
        module, func = self.handler.rsplit(".", 1)
        fn = getattr(importlib.import_module(module), func)
        try:
            result = fn(event if isinstance(event, dict) else json.loads(event),
                        LambdaContext(self.function_name))
            return json.dumps(result), False, ""
        except Exception as exc:  # what the Lambda runtime reports: type and message, no frames
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)[:1000]}), True, ""

    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", run_handler)
    port = sandbox.moto_url.rsplit(":", 1)[1]
    monkeypatch.setenv("MOTO_PORT", port)  # moto's executor calls Lambda through its own server
    requests.post(f"{sandbox.moto_url}/moto-api/config",
                  json={"stepfunctions": {"execute_state_machine": True}}, timeout=10)

    iam = sandbox.boto3_client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
         "Action": "sts:AssumeRole"}]})
    try:
        role = iam.create_role(RoleName="coloc-e2e", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        role = iam.get_role(RoleName="coloc-e2e")["Role"]["Arn"]
    lam = sandbox.boto3_client("lambda")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("placeholder.py", "# code runs in-process from src/\n")
    arns = {}
    for logical, handler in FUNCTIONS.items():
        name = f"e2e-{logical}"
        try:
            arns[logical] = lam.create_function(
                FunctionName=name, Runtime="python3.12", Role=role, Handler=handler,
                Code={"ZipFile": zipped.getvalue()}, Timeout=900)["FunctionArn"]
        except lam.exceptions.ResourceConflictException:
            arns[logical] = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    text = DEFINITION.read_text()
    subs = {"PlanFunctionArn": arns["PlanFunction"], "ColocateFunctionArn": arns["ColocateFunction"],
            "SummarizeFunctionArn": arns["SummarizeFunction"],
            "OutputBucket": sandbox.settings.output_bucket, "OutputPrefix": sandbox.settings.output_prefix}
    for k, v in subs.items():
        text = text.replace("${%s}" % k, v)
    sfn = sandbox.boto3_client("stepfunctions")
    name = f"e2e-colocation-{time.time_ns()}"
    arn = sfn.create_state_machine(name=name, definition=text, roleArn=role)["stateMachineArn"]
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    _reset_handler_caches()
    yield sfn, arn
    requests.post(f"{sandbox.moto_url}/moto-api/config",
                  json={"stepfunctions": {"execute_state_machine": False}}, timeout=10)


def _wait(sfn, execution_arn: str, timeout_s: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        desc = sfn.describe_execution(executionArn=execution_arn)
        if desc["status"] != "RUNNING":
            return desc
        time.sleep(0.5)
    raise AssertionError(f"execution still running after {timeout_s} s")


def _api(event: dict) -> tuple[int, dict]:
    from handlers.api import handler

    resp = handler(event, LambdaContext("ApiFunction"))
    assert "Traceback" not in resp["body"]
    return resp["statusCode"], json.loads(resp["body"])


@pytest.mark.parametrize("mode", ["inline", "distributed"])
def test_api_and_state_machine_three_dates_one_failing(state_machine, sandbox, monkeypatch, mode):
    sfn, arn = state_machine
    body = {"bbox": [-62.8, 81.7, -56.4, 83.0], "start": "2019-06-21", "end": "2019-06-23", "radius_m": 1000.0}
    from core.request import parse_request
    from handlers.common import settings

    if mode == "distributed":  # the long-range path: the plan goes to S3, a Distributed Map reads it
        monkeypatch.setenv("INLINE_MAX_DATES", "2")
        body["radius_m"] = 999.0  # a job of its own
    request = parse_request(body, settings())
    job = request.request_id()
    # 2019-06-23 fails: a corrupt stored manifest (run_task cannot read it) - not retried,
    # caught by the Map, recorded; the other two dates must still complete.
    s3 = sandbox.boto3_client("s3")
    s3.put_object(Bucket=sandbox.settings.output_bucket,
                  Key=f"{sandbox.settings.output_prefix}/{job}/2019-06-23/manifest.json", Body=b"{corrupt")

    post = copy.deepcopy(load("api_post.json"))
    post["body"] = json.dumps(body)
    t0 = time.monotonic()
    status, started = _api(post)
    assert status == 202 and started["job_id"] == job, started

    desc = _wait(sfn, f"{arn.replace(':stateMachine:', ':execution:')}:{job}")
    elapsed = time.monotonic() - t0
    assert desc["status"] == "SUCCEEDED", desc
    out = json.loads(desc["output"])
    assert out["n_dates"] == 3 and out["n_failed"] == 1
    assert [f["date"] for f in out["failed_dates"]] == ["2019-06-23"]
    if mode == "inline":  # the Map result carries the Lambda error name
        assert out["failed_dates"][0]["error"] == "JSONDecodeError"
    assert len(desc["output"]) < 4096  # keys, not data

    run = json.loads(s3.get_object(Bucket=sandbox.settings.output_bucket, Key=out["manifest_key"])["Body"].read())
    by_date = {d["date"]: d for d in run["dates"]}
    assert [by_date[d]["status"] for d in ("2019-06-21", "2019-06-22", "2019-06-23")] == ["complete", "complete", "failed"]
    assert run["counts"]["matched"] > 0 and by_date["2019-06-22"]["outputs"]

    # GET through the API: succeeded, per-date status, presigned URLs that work
    get = copy.deepcopy(load("api_get.json"))
    get["pathParameters"] = {"job_id": job}
    get["path"] = f"/colocations/{job}"
    status, report = _api(get)
    assert status == 200 and report["status"] == "succeeded", report
    dates = {d["date"]: d for d in report["dates"]}
    assert dates["2019-06-23"]["status"] == "failed" and dates["2019-06-23"]["error"]
    nc = [u for name, u in dates["2019-06-22"]["urls"].items() if name.endswith(".nc")]
    assert nc
    data = requests.get(nc[0], timeout=30)
    assert data.status_code == 200 and data.content[:4] == b"\x89HDF"
    print(f"3-date state machine run ({mode}): {elapsed:.1f} s")
