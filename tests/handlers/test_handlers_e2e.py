"""All three entry points on the seed case in the sandbox, through the real handlers.

* direct: handlers.colocate.handler(events/direct.json)
* API: handlers.api.handler with the proxy events from events/ (POST starts the real state
  machine, GET reads its status and presigned URLs)
* Step Functions: statemachine/colocation.asl.json executed by moto (execute_state_machine),
  its Lambda tasks routed to the real handler modules, across 3 dates where the DAAC fails
  one; re-POSTing the request re-runs only that date (docs/RERUNS.md), inline and distributed.

AWS is the sandbox's moto server; NASA is the loopback Earthdata emulator; the EDL token comes
from Secrets Manager (the production path). Only moto's Lambda *runtime* is replaced (it would
need Docker): an invocation imports the function's Handler and calls it in-process and answers
an exception as the Python runtime does (errorMessage, errorType, stackTrace). Where moto's
executor differs from AWS it is made to answer as AWS: its Distributed Map ResultWriter writes
the result files (sandbox/stepfunctions.py), and the Map's retry waits are recorded and shortened
(sandbox/deployment.py deploys it, as ``python -m sandbox.invoke`` does).
"""
from __future__ import annotations

import copy
import io
import json
import time
from pathlib import Path

import pytest
import requests

from sandbox.lambda_context import LambdaContext

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"

pytestmark = pytest.mark.slow


def load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture()
def lambda_env(sandbox, handler_environment):
    """The environment template.yaml gives the functions, pointed at the sandbox."""
    from sandbox.deployment import lambda_environment

    env = lambda_environment(sandbox)  # the functions read the token from Secrets Manager
    handler_environment({**env, "HOME": str(sandbox.workdir)},  # HOME: no ~/.netrc fallback
                        drop=("EARTHDATA_USERNAME", "EARTHDATA_PASSWORD", "NETRC"))
    return env


@pytest.fixture()
def captured_logs():
    """Every record the Powertools logger and core/ emit, formatted by Powertools (JSON)."""
    import logging

    from handlers.runtime import logger

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
    assert set(out) == {"request_id", "bucket", "dates"} and out["bucket"] == sandbox.settings.output_bucket, out
    (day,) = out["dates"]
    assert day["status"] == "complete" and day["date"] == "2019-06-22"
    assert day["counts"]["atl07_granules"] >= 1 and day["counts"]["matched"] > 0
    s3 = sandbox.boto3_client("s3")
    for key in [day["manifest_key"], *day["outputs"]]:
        assert s3.head_object(Bucket=sandbox.settings.output_bucket, Key=key)["ContentLength"] > 0
    assert any(k.endswith(".nc") for k in day["outputs"])
    # made against the sandbox: the manifest and the product say so (never mistaken for NASA's)
    manifest = json.loads(s3.get_object(Bucket=sandbox.settings.output_bucket, Key=day["manifest_key"])["Body"].read())
    assert manifest["data_mode"] == "synthetic" and manifest["request"]["data_mode"] == "synthetic"
    product = s3.get_object(Bucket=sandbox.settings.output_bucket,
                            Key=next(k for k in day["outputs"] if k.endswith(".nc")))["Body"].read()
    import h5py

    with h5py.File(io.BytesIO(product)) as f:
        assert f.attrs["data_mode"] == "synthetic" and f.attrs["title"].startswith("SYNTHETIC")
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
def state_machine(lambda_env, sandbox, handler_environment):
    """The real definition in moto, executing, with its Lambda tasks routed to our handlers."""
    from sandbox.deployment import deployed_state_machine

    with deployed_state_machine(sandbox) as stack:
        handler_environment({"STATE_MACHINE_ARN": stack.arn})
        yield stack


def _api(event: dict) -> tuple[int, dict]:
    from handlers.api import handler

    resp = handler(event, LambdaContext("ApiFunction"))
    assert "Traceback" not in resp["body"]
    return resp["statusCode"], json.loads(resp["body"])


# --------------------------------------------------------------------------- re-runs (docs/RERUNS.md)
SEED_BBOX = [-62.8, 81.7, -56.4, 83.0]
THREE_DATES = ["2019-06-21", "2019-06-22", "2019-06-23"]
# the DAAC path of the ATL07 granules of 2019-06-22 (the only date of the three with data)
ATL07_OF_THE_22ND = "/nsidc-cumulus-prod-protected/ATLAS/ATL07/007/2019/06/22/"


def _post(body: dict) -> tuple[int, dict]:
    event = copy.deepcopy(load("api_post.json"))
    event["body"] = json.dumps(body)
    return _api(event)


def _get(job: str) -> tuple[int, dict]:
    event = copy.deepcopy(load("api_get.json"))
    event["pathParameters"] = {"job_id": job}
    event["path"] = f"/colocations/{job}"
    return _api(event)


def _wait_job(job: str, timeout_s: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, body = _get(job)
        assert status == 200, body
        if body["status"] != "running":
            return body
        time.sleep(0.5)
    raise AssertionError(f"job {job} still running after {timeout_s} s")


def _colocated_dates(calls: list[tuple[str, dict]]) -> list[str]:
    return sorted(e["date"] for name, e in calls if name == "ColocateFunction")


def _show(step: str, status: int, body: dict) -> None:
    """The status bodies a user sees, for the closing note of the issue (run with -s)."""
    print(f"\n--- {step}: HTTP {status}\n{json.dumps(body, indent=1)}")


@pytest.mark.parametrize("mode", ["inline", "distributed"])
def test_a_failed_date_is_named_and_reposting_runs_only_that_date(state_machine, sandbox, monkeypatch, mode, tmp_path):
    """The issue's done-when: a 3-date job whose middle date fails because the DAAC answers 503
    for its granules ends `failed` naming that date; once the DAAC is back, re-POSTing the same
    request runs only that date and the job ends complete with all three dates' outputs."""
    from core.request import parse_request
    from handlers.runtime import settings

    body = {"bbox": SEED_BBOX, "start": THREE_DATES[0], "end": THREE_DATES[-1], "radius_m": 1000.0}
    for name, value in (("ATHENA_DATABASE", "atl07_sst_colocation"), ("ATHENA_TABLE", "matches"),
                        ("ATHENA_WORKGROUP", "e2e-matches")):  # what template.yaml gives the API
        monkeypatch.setenv(name, value)
    if mode == "distributed":  # the long-range path: the plan goes to S3, a Distributed Map reads it
        monkeypatch.setenv("INLINE_MAX_DATES", "2")
        body["radius_m"] = 999.0  # a job of its own
    job = parse_request(body, settings()).request_id()
    sm, s3, bucket = state_machine, sandbox.boto3_client("s3"), sandbox.settings.output_bucket

    # --- attempt 1: the DAAC answers 503 for every ATL07 granule of 2019-06-22
    outage = sandbox.faults.add(ATL07_OF_THE_22ND, app="nsidc", status=503, body="Service Unavailable")
    try:
        status, started = _post(body)
        _show("POST (new job)", status, started)
        assert status == 202 and started["job_id"] == job and started["attempt"] == 1, started
        status, busy = _post(body)  # asked again while attempt 1 runs
        _show("POST again while attempt 1 runs", status, busy)
        assert status == 409 and busy["status"] == "running" and busy["status_url"] == f"https://abc123defg.execute-api.us-west-2.amazonaws.com/v1/colocations/{job}"
        assert "still running" in busy["error"] and "POST the same request again" in busy["error"]
        status, running = _get(job)
        _show("GET while attempt 1 runs", status, running)
        assert running["status"] == "running" and running["progress"]["dates_total"] == 3
        failed = _wait_job(job)
        _show("GET after attempt 1", 200, failed)
    finally:
        sandbox.faults.remove(outage)
    assert outage.hits > 0
    assert failed["status"] == "failed" and failed["attempt"] == 1 and failed["n_failed"] == 1, failed
    assert [f["date"] for f in failed["failed_dates"]] == ["2019-06-22"]
    dates = {d["date"]: d for d in failed["dates"]}
    assert [dates[d]["status"] for d in THREE_DATES] == ["complete", "failed", "complete"]
    bad = dates["2019-06-22"]
    # the service's one-line message, naming the DAAC's answer, not the Lambda's stack trace
    assert bad["type"] == "UpstreamError" and "503" in bad["error"] and "ATL07" in bad["error"], bad
    assert "\n" not in bad["error"] and 'File "' not in json.dumps(failed) and "stackTrace" not in json.dumps(failed)
    assert "urls" not in bad and {"manifest.json"} <= set(dates["2019-06-21"]["urls"])
    assert failed["rerun"] and failed["attempts"] == [
        {"attempt": 1, "status": "failed", "started": failed["started"], "stopped": failed["stopped"],
         "dates_run": 3, "failed_dates": ["2019-06-22"]}]
    # the Map retried the upstream error (5, 15, 45 s, full jitter) before recording the date
    assert len(sm.waits) == 3 and all(0 <= w <= 45 for w in sm.waits), sm.waits
    assert _colocated_dates(sm.calls) == ["2019-06-21"] + ["2019-06-22"] * 4 + ["2019-06-23"]
    prefix = f"{sandbox.settings.output_prefix}/{job}/2019-06-22/"
    assert not s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount")  # nothing half-written
    # the dates that finished have no ATL07 granule: no request-level file, and nothing staged
    assert failed["request_outputs"] == {"matched": 0} or not failed["request_outputs"].get("netcdf"), failed

    # --- attempt 2: the DAAC is back; the same request again runs only the failed date
    sm.calls.clear()
    status, rerun = _post(body)
    _show("POST again after the failure (DAAC back)", status, rerun)
    assert status == 202 and rerun["attempt"] == 2 and rerun["status"] == "running", rerun
    done = _wait_job(job)
    _show("GET after attempt 2", 200, done)
    assert _colocated_dates(sm.calls) == ["2019-06-22"]
    assert done["status"] == "complete" and done["attempt"] == 2 and done["n_failed"] == 0, done
    assert [a["status"] for a in done["attempts"]] == ["failed", "complete"]
    assert done["attempts"][1]["dates_run"] == 1 and done["attempts"][1]["failed_dates"] == []
    assert "rerun" not in done
    dates = {d["date"]: d for d in done["dates"]}
    assert [dates[d]["status"] for d in THREE_DATES] == ["complete"] * 3
    assert done["counts"]["matched"] > 0
    nc = [u for name, u in dates["2019-06-22"]["urls"].items() if name.endswith("_sst.nc")]
    assert len(nc) == 2  # both ATL07 granules of the day (each with its _sst_pixels.nc)
    data = requests.get(nc[0], timeout=30)
    assert data.status_code == 200 and data.content[:4] == b"\x89HDF"
    _check_request_outputs(done, job, tmp_path, s3, bucket, sandbox.settings.output_prefix)
    for day in THREE_DATES:
        assert s3.head_object(Bucket=bucket, Key=f"{sandbox.settings.output_prefix}/{job}/{day}/manifest.json")
    names = sorted(e["name"] for e in sm.sfn.list_executions(stateMachineArn=sm.arn)["executions"]
                   if e["name"].startswith(job))
    assert names == [job, f"{job}-a2"]
    desc = sm.sfn.describe_execution(executionArn=f"{sm.arn.replace(':stateMachine:', ':execution:')}:{job}-a2")
    assert len(desc["output"]) < 4096  # keys, not data

    # --- a complete job behaves as before: the stored result, no new attempt
    status, again = _post(body)
    _show("POST once the job is complete", status, again)
    assert status == 200 and again["status"] == "complete" and again["attempt"] == 2
    assert len([e for e in sm.sfn.list_executions(stateMachineArn=sm.arn)["executions"]
                if e["name"].startswith(job)]) == 2


def _check_request_outputs(done: dict, job: str, tmp_path: Path, s3, bucket: str, prefix: str) -> None:
    """The status links the request-level netCDF and Parquet; both hold every matched segment of
    the job's per-granule products (downloaded through the presigned links, as a user would)."""
    import duckdb
    import numpy as np
    import xarray as xr

    out = done["request_outputs"]
    assert out["matched"] == done["counts"]["matched"] > 0, out
    nc = tmp_path / out["netcdf"]["name"]
    nc.write_bytes(requests.get(out["netcdf"]["url"], timeout=30).content)
    parquet = out["parquet"]
    assert list(parquet["urls"]) == ["date=2019-06-22"] and parquet["partitions"] == 1
    assert parquet["s3_uri"] == f"s3://{bucket}/{prefix}/{job}/parquet/request_id={job}/"
    assert f"request_id = '{job}'" in parquet["athena"]["query"] and parquet["athena"]["table"] == "matches"
    part = tmp_path / "parquet" / "date=2019-06-22" / "part.parquet"
    part.parent.mkdir(parents=True)
    part.write_bytes(requests.get(parquet["urls"]["date=2019-06-22"], timeout=30).content)
    rows = duckdb.sql(f"SELECT atl07_granule, count(*) FROM read_parquet('{tmp_path}/parquet/**/*.parquet', "
                      "hive_partitioning = true) GROUP BY 1 ORDER BY 1").fetchall()
    with xr.open_dataset(nc) as req:
        assert req.sizes["obs"] == out["matched"] == sum(n for _, n in rows)
        assert req.attrs["request_id"] == job and np.isfinite(req["sst"].values).all()
        per_granule = {g: int(n) for g, n in zip(*np.unique(
            np.repeat(req["atl07_granule"].values, req["rowSize"].values), return_counts=True))}
    # the 05:53 track (the 20:01 one has no MODIS pass within 3 h: README "What make demo shows")
    assert per_granule == dict(rows) and [g[:23] for g, _ in rows] == ["ATL07-01_20190622055317"]
    # only what the run manifest references is under the request's prefix
    staged = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{job}/request/").get("Contents", [])]
    assert len(staged) == 1 and staged[0].endswith(f"{job}_matches.nc"), staged


# --------------------------------------------------------------------------- python -m sandbox.invoke
@pytest.mark.parametrize("name,kind", [("direct.json", "direct"), ("direct_multi_sensor.json", "direct"),
                                       ("sfn_task.json", "direct"), ("api_post.json", "api"),
                                       ("api_get.json", "api"), ("stepfunctions_input.json", "stepfunctions")])
def test_invoke_picks_the_entry_point_of_each_event(name, kind):
    from sandbox.invoke import entry_point

    assert entry_point(load(name), name) == kind


def _drive(kind: str, event, **kw) -> tuple[int, str]:
    from sandbox.invoke import drive

    lines: list[str] = []
    code = drive(kind, event, lines.append, **kw)
    return code, "\n".join(lines)


def test_invoke_api_post_then_gets_until_the_job_is_done(state_machine, sandbox):
    event = load("api_post.json")
    event["body"] = json.dumps({**json.loads(event["body"]), "radius_m": 997.0})  # a job of its own
    code, text = _drive("api", event)
    assert code == 0, text
    heads = [line for line in text.splitlines() if line.startswith(("POST", "GET"))]
    assert heads[0] == "POST /colocations → 202"
    job = json.loads(text.split("\n", 1)[1].split("\nGET", 1)[0])["job_id"]
    assert heads[-1] == f"GET https://abc123defg.execute-api.us-west-2.amazonaws.com/v1/colocations/{job} → 200"
    final = json.loads(text.rsplit(" → 200\n", 1)[1])
    assert final["status"] == "complete" and final["counts"]["atl07_granules"] == 2
    assert {n for n, _ in state_machine.calls} == {"PlanFunction", "ColocateFunction", "SummarizeFunction"}
    assert "Traceback" not in text and sandbox.edl_token not in text


def test_invoke_a_step_functions_execution(state_machine):
    request = {**load("stepfunctions_input.json"), "radius_m": 996.0}
    code, text = _drive("stepfunctions", request, deployment=state_machine)
    assert code == 0, text
    head, body = text.split("\n", 1)
    assert head == "StartExecution → DescribeExecution: SUCCEEDED"
    shown = json.loads(body)
    assert shown["output"]["n_dates"] == 1 and shown["output"]["n_failed"] == 0
    assert shown["output"]["counts"]["atl07_granules"] == 2 and ":execution:" in shown["executionArn"]
    assert shown["executionArn"].rsplit(":", 1)[1].startswith("invoke-")


def test_invoke_direct_shows_the_payload_or_the_runtime_error(lambda_env):
    code, text = _drive("direct", {"bbox": [1, 2, 3], "date": "2019-06-22"})
    head, body = text.split("\n", 1)
    assert code == 0 and head == "ColocateFunction → StatusCode 200"
    assert json.loads(body)["fields"][0]["field"] == "bbox"
    code, text = _drive("direct", {"request": {"bbox": [1, 2, 3]}, "date": "2019-06-22"})  # a bad Map item
    head, body = text.split("\n", 1)
    assert code == 1 and head == "ColocateFunction → FunctionError: Unhandled"
    assert json.loads(body)["errorType"] == "InvalidTaskError"


def test_invoke_refuses_an_unreadable_event_file(tmp_path, capsys):
    from sandbox.invoke import main

    assert main([str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.startswith("invoke: error: cannot read")
