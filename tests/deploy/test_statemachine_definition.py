"""The ASL checker (tools/check_asl.py) on our definitions, and on broken ones it must catch."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import check_asl  # noqa: E402

DEFINITION = ROOT / "statemachine" / "colocation.asl.json"
TEMPLATE = ROOT / "template.yaml"


def defn() -> dict:
    return json.loads(DEFINITION.read_text())


def test_our_definitions_and_template_are_clean():
    files = sorted((ROOT / "statemachine").glob("*.asl.json"))
    assert files
    assert check_asl.check_all(files, TEMPLATE) == []


def test_cli_exit_status():
    ok = subprocess.run([sys.executable, str(ROOT / "tools" / "check_asl.py")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_definition_shape_the_service_relies_on():
    d = defn()
    states = d["States"]
    assert d["StartAt"] == "Plan"
    inline, dist = states["DatesInline"], states["DatesDistributed"]
    assert inline["ItemProcessor"]["ProcessorConfig"]["Mode"] == "INLINE"
    assert 1 <= inline["MaxConcurrency"] <= 40
    assert dist["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert dist["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    for m in (inline, dist):
        run = m["ItemProcessor"]["States"]["RunDate"]
        retried = {e for r in run["Retry"] for e in r["ErrorEquals"]}
        assert {"Lambda.ServiceException", "Lambda.TooManyRequestsException", "UpstreamError"} <= retried
        assert all(r["BackoffRate"] > 1 and r["MaxAttempts"] >= 2 for r in run["Retry"])
        # one bad date is caught and recorded, it does not sink the run; every way out of the
        # failure branch is a Pass that records the date as failed (executed in moto below)
        assert run["Catch"][0]["ErrorEquals"] == ["States.ALL"]
        failure = failure_branch(m)
        ends = [st for st in failure.values() if st.get("End")]
        assert ends and all(st["Type"] == "Pass" and st["Parameters"]["status"] == "failed"
                            and {"date.$", "error.$", "type.$"} <= set(st["Parameters"]) for st in ends)
        assert m["Next"] == "Summarize"
        # items carry parameters only
        assert m["ItemSelector"] == {"request.$": "$.request", "date.$": "$$.Map.Item.Value"}
    # both Maps record a failure the same way
    assert failure_branch(inline) == failure_branch(dist)
    # a later attempt with nothing left to run goes straight to Summarize, which learns the attempt
    nothing = next(c for c in states["ChooseMode"]["Choices"] if c.get("Variable") == "$.pending")
    assert nothing["NumericEquals"] == 0 and states[nothing["Next"]]["Next"] == "Summarize"
    assert states["Summarize"]["Parameters"]["Payload"]["execution.$"] == "$$.Execution.Name"


def failure_branch(map_state: dict) -> dict:
    """The states a date's caught error goes through (everything of the processor but RunDate)."""
    states = map_state["ItemProcessor"]["States"]
    return {name: st for name, st in states.items() if name != "RunDate"}


def mutate(fn) -> list[str]:
    d = defn()
    fn(d)
    return check_asl.check_machine(d)


def _inline(d):
    return d["States"]["DatesInline"]


@pytest.mark.parametrize(
    "name,fn,expect",
    [
        ("missing StartAt", lambda d: d.update(StartAt="Nope"), "StartAt"),
        ("dangling Next", lambda d: d["States"]["Plan"].update(Next="Nowhere"), "Nowhere"),
        ("dangling Default", lambda d: d["States"]["ChooseMode"].update(Default="Gone"), "Gone"),
        ("dangling Choice", lambda d: d["States"]["ChooseMode"]["Choices"][0].update(Next="Lost"), "Lost"),
        ("dangling Catch", lambda d: d["States"]["Plan"]["Catch"][0].update(Next="Void"), "Void"),
        ("unreachable", lambda d: d["States"].update(Orphan={"Type": "Succeed"}), "unreachable"),
        ("no terminal", lambda d: d["States"].update(Done={"Type": "Pass", "Next": "Done"}), "terminal"),
        ("Next and End", lambda d: d["States"]["Plan"].update(End=True), "exactly one of Next or End"),
        ("neither Next nor End", lambda d: d["States"]["Summarize"].pop("Next"), "exactly one of Next or End"),
        ("Succeed with Next", lambda d: d["States"]["Done"].update(Next="Plan"), "terminal"),
        ("Retry without ErrorEquals", lambda d: d["States"]["Plan"]["Retry"][0].pop("ErrorEquals"), "ErrorEquals"),
        ("Retry bad number", lambda d: d["States"]["Plan"]["Retry"][0].update(MaxAttempts="3"), "MaxAttempts"),
        ("Retry typo", lambda d: d["States"]["Plan"]["Retry"][0].update(BackofRate=2), "unknown Retry"),
        ("States.ALL not last", lambda d: d["States"]["Plan"]["Catch"].append(
            {"ErrorEquals": ["X"], "Next": "PlanFailed"}), "States.ALL"),
        ("Catch without Next", lambda d: d["States"]["Plan"]["Catch"][0].pop("Next"), "Next"),
        ("Retry on Pass", lambda d: d["States"]["Done"].update(Type="Pass", End=True, Retry=[]), "Retry"),
        ("unknown type", lambda d: d["States"]["Plan"].update(Type="Lambda"), "unknown Type"),
        ("choice operator missing", lambda d: d["States"]["ChooseMode"]["Choices"][-1].pop("StringEquals"),
         "comparison operator"),
        ("inline map broken inside", lambda d: _inline(d)["ItemProcessor"]["States"]["RunDate"]["Catch"][0].update(
            Next="Missing"), "Missing"),
        ("inline map unreachable inside", lambda d: _inline(d)["ItemProcessor"]["States"].update(
            Extra={"Type": "Succeed"}), "Extra: unreachable"),
        ("inline map no processor", lambda d: _inline(d).pop("ItemProcessor"), "ItemProcessor"),
        ("inline map concurrency", lambda d: _inline(d).update(MaxConcurrency=500), "MaxConcurrency"),
        ("inline map with reader", lambda d: _inline(d).update(ItemReader={"Resource": "x"}), "Distributed"),
        ("distributed without type", lambda d: d["States"]["DatesDistributed"]["ItemProcessor"][
            "ProcessorConfig"].pop("ExecutionType"), "ExecutionType"),
        ("distributed without reader", lambda d: d["States"]["DatesDistributed"].pop("ItemReader"), "ItemReader"),
        ("empty States", lambda d: d.update(States={}), "non-empty"),
    ],
)
def test_checker_catches_broken_definitions(name, fn, expect):
    problems = mutate(fn)
    assert problems, name
    assert any(expect in p for p in problems), (name, problems)


def test_checker_catches_substitution_mismatches(tmp_path):
    text = DEFINITION.read_text()
    subs = {"PlanFunctionArn", "ColocateFunctionArn", "SummarizeFunctionArn", "OutputBucket", "OutputPrefix"}
    path = tmp_path / "x.asl.json"
    path.write_text(text)
    assert check_asl.check_file(path, subs) == []
    assert any("${OutputBucket}" in p for p in check_asl.check_file(path, subs - {"OutputBucket"}))
    assert any("Unused" in p or "never used" in p for p in check_asl.check_file(path, subs | {"Unused"}))
    path.write_text(text.replace("${PlanFunctionArn}", "${PlanFunctionArm}"))
    problems = check_asl.check_file(path, subs)
    assert any("PlanFunctionArm" in p for p in problems) and any("PlanFunctionArn" in p for p in problems)
    path.write_text(text[:-10])
    assert "not valid JSON" in check_asl.check_file(path, subs)[0]


def test_checker_reads_the_template_substitutions():
    machines = check_asl.template_state_machines(TEMPLATE)
    assert list(machines) == ["ColocationStateMachine"]
    uri, subs = machines["ColocationStateMachine"]
    assert uri == DEFINITION.resolve()
    assert subs == check_asl.substitutions_used(DEFINITION.read_text())


def test_cli_fails_on_a_broken_file(tmp_path):
    d = defn()
    d["States"]["Plan"]["Next"] = "Nowhere"
    bad = tmp_path / "bad.asl.json"
    bad.write_text(json.dumps(d))
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "check_asl.py"), "--no-template", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "Nowhere" in out.stdout


# ------------------------------------------------------------------ the failure branch, executed
LAMBDA_CAUSE = json.dumps({"errorMessage": "download https://daac/ATL07.h5: HTTP 503", "errorType": "UpstreamError",
                           "requestId": "0000", "stackTrace": ['  File "/var/task/core/access/download.py", line 64\n']})


@pytest.mark.parametrize(
    "error,recorded",
    [
        # a Lambda function's error: Cause is JSON with the message and the stack; keep the message
        ({"Error": "UpstreamError", "Cause": LAMBDA_CAUSE},
         {"error": "download https://daac/ATL07.h5: HTTP 503", "type": "UpstreamError"}),
        # Lambda.Unknown (e.g. the runtime died): Cause is prose, not JSON
        ({"Error": "Lambda.Unknown", "Cause": "The cause could not be determined because Lambda did not return"},
         {"error": "Lambda.Unknown", "type": "Lambda.Unknown"}),
        ({"Error": "States.Timeout"}, {"error": "States.Timeout", "type": "States.Timeout"}),  # no Cause at all
        ({"Error": "Runtime.ExitError", "Cause": json.dumps({"errorType": "Runtime.ExitError"})},
         {"error": "Runtime.ExitError", "type": "Runtime.ExitError"}),  # JSON without a message
        ({"Error": "X", "Cause": json.dumps({"errorMessage": 42})}, {"error": "X", "type": "X"}),
    ],
)
def test_the_failure_branch_records_a_one_line_message_whatever_the_cause(mini_sandbox, error, recorded):
    """The definition's own failure states, executed by moto's Step Functions interpreter."""
    import requests

    branch = failure_branch(defn()["States"]["DatesInline"])
    machine = {"StartAt": defn()["States"]["DatesInline"]["ItemProcessor"]["States"]["RunDate"]["Catch"][0]["Next"],
               "States": branch}
    sfn = mini_sandbox.boto3_client("stepfunctions")
    config = f"{mini_sandbox.moto_url}/moto-api/config"
    requests.post(config, json={"stepfunctions": {"execute_state_machine": True}}, timeout=10)
    try:
        arn = sfn.create_state_machine(name=f"failure-branch-{uuid.uuid4().hex[:8]}", definition=json.dumps(machine),
                                       roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
        run = sfn.start_execution(stateMachineArn=arn, input=json.dumps(
            {"request": {"bbox": [0, 0, 1, 1]}, "date": "2019-06-22", "error": error}))["executionArn"]
        deadline = time.monotonic() + 60
        while (desc := sfn.describe_execution(executionArn=run))["status"] == "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        requests.post(config, json={"stepfunctions": {"execute_state_machine": False}}, timeout=10)
    assert desc["status"] == "SUCCEEDED", desc
    assert json.loads(desc["output"]) == {"date": "2019-06-22", "status": "failed", **recorded}
