"""Long requests through the Distributed Map: the documented MaxConcurrency, and state payloads
that stay small however many dates a request has (bench/scale.py measures them at 365 dates)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import scale

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"


def documented_concurrency() -> int:
    """The value docs/ARCHITECTURE.md ("How many dates at once") chose."""
    m = re.search(r"chosen: `MaxConcurrency` = \*\*(\d+)\*\*", ARCHITECTURE.read_text())
    assert m, "docs/ARCHITECTURE.md no longer states the chosen MaxConcurrency"
    return int(m.group(1))


def test_both_maps_run_the_documented_number_of_dates_at_once():
    maps = scale.definition_concurrency()
    assert set(maps) == {"DatesInline", "DatesDistributed"}
    assert set(maps.values()) == {documented_concurrency()}, maps


def test_the_rate_table_is_computed_at_the_chosen_value():
    """The table's request rates are per-date counts × the chosen concurrency: a changed choice
    without a recomputed table fails here."""
    text = ARCHITECTURE.read_text()
    section = text.split("## How many dates at once", 1)[1].split("\n## ", 1)[0]
    c = documented_concurrency()
    assert f"at {c} dates at once" in section
    assert "5,500" in section and "1,000" in section and "429" in section


def test_slot_gaps_is_the_mean_time_a_map_slot_waits_between_tasks():
    one = [{"t0": 0.0, "t1": 1.0}, {"t0": 1.5, "t1": 2.5}, {"t0": 3.0, "t1": 4.0}]
    assert scale.slot_gaps(one, 1) == pytest.approx(0.5)
    # two workers: A runs [0, 2] then [2.1, 3] (gap 0.1), B runs [0, 1] then [1.3, 2] (gap 0.3)
    two = [{"t0": 0.0, "t1": 2.0}, {"t0": 2.1, "t1": 3.0}, {"t0": 0.0, "t1": 1.0}, {"t0": 1.3, "t1": 2.0}]
    assert scale.slot_gaps(two, 2) == pytest.approx(0.2)
    assert scale.slot_gaps(two[:2], 10) == 0.0  # every task started at once: no slot waited


def test_state_payloads_reads_every_input_and_output_of_the_history():
    events = [
        {"type": "ExecutionStarted", "executionStartedEventDetails": {"input": "{}"}},
        {"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "Plan", "input": '{"a": 1}'}},
        {"type": "TaskSucceeded", "taskSucceededEventDetails": {"output": "x" * 300}},
        {"type": "MapStateExited", "stateExitedEventDetails": {"name": "DatesDistributed", "output": "é" * 10}},
    ]
    rows = scale.state_payloads(events)
    assert [(r["state"], r["field"], r["bytes"]) for r in rows] == [
        (None, "input", 2), ("Plan", "input", 8), ("Plan", "output", 300), ("DatesDistributed", "output", 20)]


@pytest.mark.slow
def test_forty_dates_through_the_distributed_map_keep_every_payload_small(sandbox):
    """40 dates (2019-06-02..07-11, 2019-06-22 with data) through DatesDistributed in moto, every
    date a real handler run: every state's and every child's input and output stays far under
    Step Functions' 256 KiB, and the run's plan and result files hold all 40 dates."""
    raw = scale.run_request(sandbox, 40, cold_dates=set())
    f = scale.summarize_run({**raw, "s3_requests": {}})
    assert f["status"] == "SUCCEEDED" and f["forced_distributed"]
    assert f["n_dates_summarized"] == 40 and f["n_failed"] == 0, raw["output"]
    assert any(e["type"] == "MapRunStarted" for e in raw["events"])  # the Distributed Map ran
    days = sorted(c["date"] for c in raw["calls"] if c["function"] == "ColocateFunction")
    assert len(days) == len(set(days)) == 40 and "2019-06-22" in days
    with_data = [c for c in raw["calls"] if c["date"] == "2019-06-22"]
    assert with_data[0]["atl07_granules"] >= 1  # the largest child answer is measured, not skipped
    assert f["largest_item_output_bytes"] == with_data[0]["out_bytes"]
    # far under the quota: a 32nd of it, however many dates (payloads carry keys, never data)
    assert f["largest_payload"]["bytes"] < scale.PAYLOAD_LIMIT_BYTES / 32, f["largest_payload"]
    assert f["largest_parent_state"]["bytes"] < scale.PAYLOAD_LIMIT_BYTES / 32
    s3 = sandbox.boto3_client("s3")
    bucket, prefix = sandbox.settings.output_bucket, raw["prefix"]
    plan = next(o for o in raw["objects"] if o["key"].startswith("_plans/"))
    assert len(json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/{plan['key']}")["Body"].read())) == 40
    rows = [r for o in raw["objects"] if "/SUCCEEDED_" in o["key"]
            for r in json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/{o['key']}")["Body"].read())]
    assert sorted(json.loads(r["Output"])["date"] for r in rows) == days


def test_cost_lines_add_up_from_the_per_date_figures():
    f = {"memory_mb": {"PlanFunction": 512, "ColocateFunction": 2048, "SummarizeFunction": 2048},
         "data_dates_measured": [{"date": "2019-06-22", "import_s": 1.0, "run_s": 29.0, "error": False}],
         "dates": 10, "empty_date_task_s_mean": 0.5, "concurrency": 4, "plan_s": 0.2, "summarize_s": 3.0,
         "s3_requests": {"out:GET": 10, "out:HEAD": 0, "out:PUT": 20, "out:LIST": 10, "daac:GET": 99},
         "bucket": "out", "result_objects": [{"key": "_map-results/x/SUCCEEDED_0.json", "size": 9}] * 2,
         "parent_transitions": 5}
    c = scale.cost_lines(f, 100)
    assert (c["n_data"], c["n_empty"], c["cold_inits"]) == (1, 99, 4)
    assert c["gb_s_data"] == pytest.approx(30.0 * 2)
    assert c["gb_s_empty"] == pytest.approx((99 * 0.5 + 4 * 1.0) * 2)
    assert c["gb_s_steps"] == pytest.approx(0.2 * 0.5 + 3.0 * 2)
    assert c["transitions"] == 5 + 100 and c["lambda_requests"] == 102
    # per-date S3 counts scale with the dates; the DAAC's bucket is not ours to pay for
    assert c["s3_reads"] == pytest.approx(1 * 100 + 1) and c["s3_writes"] == pytest.approx(3 * 100 + 2)
    assert c["usd_total"] == pytest.approx(sum(c["usd"].values()))
    assert c["upper_bound_gb_s"] == pytest.approx(100 * 30.0 * 2 + c["gb_s_steps"])
    assert "| **total** |" in scale.cost_markdown({**f, **_figures()}, 100)


def _figures() -> dict:
    """The rest of what summarize_run gives cost_markdown (values of no consequence here)."""
    return {"request": {"start": "2019-06-17", "end": "2019-06-26"}, "concurrency": 4, "network": "off",
            "data_dates_measured": [{"date": "2019-06-22", "import_s": 1.0, "run_s": 29.0, "error": False,
                                     "atl07_granules": 2, "peak_rss_mb": 400.0}],
            "wall_s": 10.0, "status": "SUCCEEDED", "n_dates_summarized": 10, "n_failed": 0,
            "overhead_per_date_s": 0.05, "fixed_overhead_s": 0.5, "slot_occupancy": 0.9,
            "largest_payload": {"bytes": 1000, "state": "x", "field": "output"}, "largest_payload_fraction": 0.004,
            "largest_parent_state": {"bytes": 700, "state": "DatesDistributed", "field": "output"},
            "largest_item_input_bytes": 294, "largest_item_output_bytes": 1000, "plan_object_bytes": 140,
            "parent_events": 22, "server_requests": {"cmr:GET": 20}}
