"""Bad input through every entry point: 400 (API) or a validation error (direct event, Step
Functions item, plan step) naming the field — never a stack trace, never an upstream call.

The cases live in tests/fuzz_corpus/bad_inputs.json (append what the fuzzers below find); the
API is driven through its real resolver with proxy events built from events/api_post.json.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings as hsettings, strategies as st

from sandbox.lambda_context import LambdaContext

ROOT = Path(__file__).resolve().parents[2]
CORPUS = json.loads((ROOT / "tests" / "fuzz_corpus" / "bad_inputs.json").read_text())["cases"]
API_POST = json.loads((ROOT / "events" / "api_post.json").read_text())
SEED = {"bbox": [-62.8, 81.7, -56.4, 83.0], "date": "2019-06-22"}
FIELDS = {"bbox", "date", "start", "end", "radius_m", "max_dt_s", "min_quality_level", "atl07_collection",
          "sst_collection", "request", "body"}
WHOLE = {"request", "body"}  # "the request itself" (not an object, unparseable)


def _decode(value):
    """{"$float": "nan"} → float("nan"), recursively."""
    if isinstance(value, dict):
        if set(value) == {"$float"}:
            return float(value["$float"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


@pytest.fixture
def env(handler_environment, tmp_path):
    """Handler environment with no credentials and every AWS/NASA endpoint on a closed port:
    a validation path that wrongly went upstream fails loudly instead of reaching anything."""
    dead = "http://127.0.0.1:9"
    handler_environment({
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_ENDPOINT_URL": dead, "COLOC_CMR_URL": dead, "COLOC_EDL_URL": dead, "COLOC_S3_ENDPOINT_URL": dead,
        "COLOC_OUTPUT_BUCKET": "coloc-bad-input", "COLOC_EDL_SECRET_NAME": "", "COLOC_HTTP_RETRIES": "0",
        "STATE_MACHINE_ARN": "arn:aws:states:us-west-2:123456789012:stateMachine:coloc-colocation",
        "POWERTOOLS_TRACE_DISABLED": "1", "HOME": str(tmp_path), "NETRC": str(tmp_path / "none"),
    }, drop=("EARTHDATA_TOKEN", "EARTHDATA_USERNAME", "EARTHDATA_PASSWORD"))


def _no_trace(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text and "pydantic_core" not in text, text


def api_post(body) -> tuple[int, dict]:
    from handlers.api import handler

    event = copy.deepcopy(API_POST)
    event["body"] = body if isinstance(body, str) else json.dumps(body)  # NaN/inf → NaN/Infinity literals
    resp = handler(event, LambdaContext("coloc-test", 512, "bad-input-0001", 30_000))
    _no_trace(resp["body"])
    return resp["statusCode"], json.loads(resp["body"])


def direct(event) -> dict:
    from handlers.colocate import handler

    out = handler(event, LambdaContext("coloc-test", 512, "bad-input-0001", 30_000))
    _no_trace(json.dumps(out, default=str))
    return out


def _fields(errors: list[dict]) -> set[str]:
    assert errors and all(e["field"] and e["message"] for e in errors), errors
    return {e["field"] for e in errors}


def _named(case: dict, fields: set[str]) -> bool:
    return case["field"] in fields or (case["field"] in WHOLE and fields & WHOLE)


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_api_answers_400_naming_the_field(env, case):
    status, body = api_post(_decode(case["event"]))
    assert status == 400, body
    assert body["error"] == "invalid request" and _named(case, _fields(body["fields"])), body


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_direct_event_is_a_validation_error_naming_the_field(env, case):
    out = direct(_decode(case["event"]))
    assert out.get("error") == "invalid request", out
    assert _named(case, _fields(out["fields"])), out


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_step_functions_item_and_plan_step_refuse_by_name(env, case):
    from core.errors import InvalidTaskError
    from handlers.colocate import handler as task_handler
    from handlers.plan import handler as plan_handler

    event = _decode(case["event"])
    for call in (lambda: task_handler({"request": event, "date": "2019-06-22"}, LambdaContext("coloc-test", 512, "bad-input-0001", 30_000)),
                 lambda: plan_handler(event, LambdaContext("coloc-test", 512, "bad-input-0001", 30_000))):
        with pytest.raises(InvalidTaskError) as info:
            call()
        text = str(info.value)
        _no_trace(text)
        assert case["field"] in text or case["field"] in WHOLE, text


def test_a_range_too_long_for_direct_invocation_points_at_the_state_machine(env):
    out = direct({"bbox": SEED["bbox"], "start": "2019-06-01", "end": "2019-06-04"})
    assert out["error"] == "invalid request" and _fields(out["fields"]) == {"end"}
    assert "state machine" in out["fields"][0]["message"]


def test_oversized_api_body_is_refused_before_parsing(env):
    from handlers.api import handler

    event = copy.deepcopy(API_POST)
    event["body"] = json.dumps({**SEED, "bbox": [0.0] * 100_000})
    resp = handler(event, LambdaContext("coloc-test", 512, "bad-input-0001", 30_000))
    assert resp["statusCode"] == 413 and "larger than" in json.loads(resp["body"])["error"]


def test_oversized_direct_event_is_refused_cheaply(env):
    import time

    t0 = time.perf_counter()
    out = direct({**SEED, "bbox": [0.0] * 1_000_000, "sst_collection": "x" * 1_000_000})
    assert time.perf_counter() - t0 < 2.0
    assert {"bbox", "sst_collection"} <= _fields(out["fields"])
    assert len(json.dumps(out)) < 4000, "the error echoes the oversized input"


# --------------------------------------------------------------------------- fuzzing
special = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324, 180.0000001, -90.0])
number = st.one_of(st.floats(-400, 400), st.integers(-400, 400), special)
scalar = st.one_of(st.none(), st.booleans(), number, st.text(max_size=25),
                   st.sampled_from(["NaN", "inf", "-Infinity", "2019-06-22", "2019-06-22T25:00:00Z", "P1D", ""]))
event_like = st.fixed_dictionaries(
    {},
    optional={
        "bbox": st.one_of(st.lists(number, min_size=0, max_size=6), scalar),
        "date": scalar, "start": scalar, "end": scalar,
        "radius_m": scalar, "max_dt_s": scalar, "min_quality_level": scalar,
        "sst_collection": scalar, "atl07_collection": scalar,
        "extra": scalar,
    },
)


def _check_direct(event) -> None:
    out = direct(event)
    if "error" in out:
        assert out["error"] == "invalid request", out
        keys = {str(k)[:64] for k in event} if isinstance(event, dict) else set()
        assert _fields(out["fields"]) <= FIELDS | keys, out
    else:  # valid: it got as far as the (unconfigured) credentials, and said so per date
        assert out["dates"] and all(d["status"] == "failed" and d["type"] == "AuthError" for d in out["dates"]), out


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_like)
def test_fuzz_direct_events(env, event):
    _check_direct(event)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_like)
@example(SEED)  # the valid path runs on every run, not only when the fuzzer happens upon it
@example({**SEED, "radius_m": 500.0, "min_quality_level": 0})
@example({"bbox": SEED["bbox"], "start": "2019-06-22T00:00:00Z", "end": "2019-06-22T23:59:59Z"})
def test_fuzz_step_functions_items(env, event):
    """An item is refused as invalid exactly when the same request is refused as a direct event;
    a valid item reaches the pipeline and fails by name (the guard environment has no
    credentials) — it never returns, never crashes."""
    from core.errors import AuthError, InvalidTaskError
    from handlers.colocate import handler

    out = direct(event)
    valid = "error" not in out
    date = out["dates"][0]["date"] if valid else "2019-06-22"
    with pytest.raises(Exception) as info:
        handler({"request": event, "date": date}, LambdaContext("coloc-test", 512, "bad-input-0001", 30_000))
    _no_trace(str(info.value))
    if valid:
        assert type(info.value) is AuthError and "no Earthdata credentials" in str(info.value), repr(info.value)
    else:
        assert type(info.value) is InvalidTaskError, repr(info.value)


def test_the_guard_environment_lets_a_valid_event_through_to_a_named_failure(env):
    # proves the fixture: a valid event is not refused by validation, and with no credentials
    # configured the date fails by name instead of reaching any service
    out = direct(SEED)
    assert out["dates"][0]["status"] == "failed" and out["dates"][0]["type"] == "AuthError", out
