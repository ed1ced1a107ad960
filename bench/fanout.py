"""Fan-out: a 7-date request (2019-06-19..25) through the state machine's three Lambda steps.

The real state machine runs in moto (sandbox.deployment), its Lambda tasks in fresh interpreters
(a cold Lambda each: ``handlers.plan`` on the request, ``handlers.colocate`` once per Map item
``{"request", "date"}``, ``handlers.summarize`` on the results), so each date's time and peak
RSS are its own; without moto's executor the same handlers are called in order.

Per date: task wall time (inside the handler call) and peak RSS → GB-seconds at the
function's configured memory (template.yaml) and at the smallest memory that holds the peak.
Only 2019-06-22 has data in the seed scene; the other dates find no ATL07 granule.

    .venv/bin/python -m bench.fanout [--direct]
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import uuid
from pathlib import Path

from bench.common import REPO, emit, peak_rss_mb, run_child

REQUEST = {"bbox": [-62.8, 81.7, -56.4, 83.0], "start": "2019-06-19", "end": "2019-06-25", "radius_m": 1000.0}
LAMBDA_GB_S_USD = 0.0000133334  # arm64, us-west-2, first tier (per GB-second)
LAMBDA_REQUEST_USD = 0.20 / 1e6


def child_handler(name: str, event_json: str) -> dict:
    import logging

    logging.basicConfig(level=logging.WARNING)
    from sandbox.lambda_context import LambdaContext

    t_import = time.perf_counter()
    module = __import__(f"handlers.{name}", fromlist=["handler"])
    import_s = time.perf_counter() - t_import
    event = json.loads(event_json)
    t0 = time.perf_counter()
    try:
        result, error = module.handler(event, LambdaContext()), None
    except Exception as exc:  # the errorType Step Functions would see
        result, error, message = None, type(exc).__name__, str(exc)[:500]
    else:
        message = ""
    return {"handler": name, "import_s": round(import_s, 3), "run_s": round(time.perf_counter() - t0, 3),
            "peak_rss_mb": peak_rss_mb(), "result": result, "error": error, "message": message}


def colocate_memory_mb() -> int:
    """ColocateFunction's MemorySize from template.yaml (falls back to the Globals value)."""
    text = (REPO / "template.yaml").read_text()
    block = re.search(r"\n  ColocateFunction:\n(.*?)(?=\n  \w)", text, re.S)
    m = re.search(r"MemorySize:\s*(\d+)", block.group(1) if block else "") or re.search(r"MemorySize:\s*(\d+)", text)
    return int(m.group(1)) if m else 3008


FUNCTIONS = {"PlanFunction": "plan", "ColocateFunction": "colocate", "SummarizeFunction": "summarize"}


class _ColdLambda:
    """A runner for sandbox.deployment (moto's Lambda runtime needs Docker): every invocation
    runs the function's handler in a fresh interpreter with the sandbox environment and records
    its import time, run time and peak RSS."""

    def __init__(self, env: dict):
        self.env = env
        self.calls: list[dict] = []
        self._lock = __import__("threading").Lock()

    def __call__(self, logical: str, handler: str, event: dict) -> tuple[str, bool]:
        name = FUNCTIONS[logical]
        out = run_child("bench.fanout", ["--child", name, json.dumps(event)], env=self.env)
        with self._lock:
            self.calls.append({"handler": name, "event": event, **out})
        if out["error"]:
            return json.dumps({"errorType": out["error"], "errorMessage": out.get("message", "")}), True
        return json.dumps(out["result"]), False


def _run_state_machine(csb, env: dict, timeout_s: float = 600.0) -> tuple[dict, list[dict], float]:
    """The real definition, executed by moto (sandbox.deployment), Lambda tasks in cold processes."""
    from sandbox.deployment import deployed_state_machine

    cold = _ColdLambda(env)
    # the Map's retry waits as AWS waits them: this measures time
    with deployed_state_machine(csb.sandbox, runner=cold, output_prefix=env["COLOC_OUTPUT_PREFIX"],
                                fast_retries=False) as stack:
        t0 = time.perf_counter()
        desc = stack.run(REQUEST, timeout_s=timeout_s)
        wall = time.perf_counter() - t0
    return desc, cold.calls, wall


def _run_handlers_directly(env: dict) -> tuple[dict, list[dict], float]:
    """Fallback without moto's executor: the same three handlers and payloads, in order."""
    calls = []
    call = lambda name, event: calls.append({"handler": name, "event": event, **run_child(  # noqa: E731
        "bench.fanout", ["--child", name, json.dumps(event)], env=env)}) or calls[-1]
    t0 = time.perf_counter()
    plan = call("plan", REQUEST)
    items = [{"request": plan["result"]["request"], "date": d} for d in plan["result"]["dates"]]
    tasks = [call("colocate", item) for item in items]
    results = [t["result"] or {"date": i["date"], "status": "failed", "error": t["error"]} for t, i in zip(tasks, items)]
    summary = call("summarize", {"request_id": plan["result"]["request_id"], "request": plan["result"]["request"],
                                 "results": results})
    return {"status": "SUCCEEDED" if not summary["error"] else "FAILED"}, calls, time.perf_counter() - t0


def measure(workdir: Path | None = None, *, use_state_machine: bool = True, network: str | None = None) -> dict:
    from bench.e2e import CountedSandbox

    if workdir is None:  # sandbox files go away afterwards
        import tempfile

        with tempfile.TemporaryDirectory(prefix="coloc-fanout-") as tmp:
            return measure(Path(tmp), use_state_machine=use_state_machine, network=network)
    driver, note = "moto Step Functions", None
    with CountedSandbox(workdir / "sandbox", network) as csb:
        network_label = csb.network.label
        env = csb.env(COLOC_OUTPUT_PREFIX=f"bench-fanout-{uuid.uuid4().hex[:8]}")
        try:
            if not use_state_machine:
                raise RuntimeError("state machine not requested")
            desc, calls, wall = _run_state_machine(csb, env)
        except Exception as exc:  # e.g. a moto without the executor
            note = f"state machine not run ({type(exc).__name__}: {str(exc)[:200]}); handlers called in order"
            driver = "handlers called directly"
            desc, calls, wall = _run_handlers_directly(env)
        s3_bytes = csb.counted()["s3_get_bytes"]
        # the Map ran the dates at once on 2 shared cores; for per-date cost, each date again,
        # alone, cold, into a fresh prefix (a stored manifest would make it a no-op)
        items = sorted((c["event"] for c in calls if c["handler"] == "colocate"), key=lambda e: e.get("date", ""))
        alone_env = {**env, "COLOC_OUTPUT_PREFIX": f"bench-alone-{uuid.uuid4().hex[:8]}"}
        alone = [{"handler": "colocate", "event": item,
                  **run_child("bench.fanout", ["--child", "colocate", json.dumps(item)], env=alone_env)}
                 for item in items]
        under_fanout = {c["event"].get("date"): c for c in calls if c["handler"] == "colocate"}

    memory_mb = colocate_memory_mb()
    per_date = []
    for t in alone:
        crowd = under_fanout.get(t["event"].get("date"), {})
        res = t["result"] or {}
        # Lambda bills init + handler time; init ≈ the handler module import measured here
        billed_s = t["import_s"] + t["run_s"]
        fit_mb = max(128, int(math.ceil(t["peak_rss_mb"] * 1.25 / 64.0)) * 64)  # 25 % headroom
        per_date.append({
            "date": t["event"].get("date"), "status": res.get("status", "failed"), "error": t["error"],
            "atl07_granules": (res.get("counts") or {}).get("atl07_granules"),
            "segments": (res.get("counts") or {}).get("segments"),
            "sst_granules": (res.get("counts") or {}).get("sst_granules"),
            "matched": (res.get("counts") or {}).get("matched"),
            "import_s": t["import_s"], "run_s": t["run_s"], "peak_rss_mb": t["peak_rss_mb"],
            "gb_s_configured": round(billed_s * memory_mb / 1024, 2),
            "fit_memory_mb": fit_mb, "gb_s_fit": round(billed_s * fit_mb / 1024, 2),
            "in_fanout_s": round(crowd.get("import_s", 0) + crowd.get("run_s", 0), 2) if crowd else None,
            "in_fanout_peak_rss_mb": crowd.get("peak_rss_mb"),
        })
    others = [c for c in calls if c["handler"] != "colocate"]
    overhead_gb_s = sum((c["import_s"] + c["run_s"]) * 512 / 1024 for c in others)
    total_gb_s = sum(d["gb_s_configured"] for d in per_date) + overhead_gb_s
    step_s = lambda name: max((c["process_wall_s"] for c in calls if c["handler"] == name), default=0.0)  # noqa
    output = json.loads(desc.get("output") or "{}") if isinstance(desc.get("output"), str) else {}
    return {
        "driver": driver,
        "note": note,
        "execution_status": desc.get("status"),
        "execution_output": {k: output.get(k) for k in ("n_dates", "n_failed", "manifest_key") if k in output},
        "dates": len(per_date),
        "wall_s": round(wall, 2),
        # in AWS the Map runs the dates at once (MaxConcurrency 10 >= 7): plan + slowest date + summarize
        "projected_parallel_wall_s": round(step_s("plan") + max(t["process_wall_s"] for t in alone)
                                           + step_s("summarize"), 2),
        "colocate_memory_mb": memory_mb,
        "per_date": per_date,
        "gb_s_total_configured": round(total_gb_s, 2),
        "usd_per_request_configured": round(total_gb_s * LAMBDA_GB_S_USD + len(calls) * LAMBDA_REQUEST_USD, 6),
        "s3_get_bytes": s3_bytes,
        "lambda_invocations": len(calls),
        "network": network_label,
    }


def cost_markdown(f: dict, e2e: dict | None = None) -> str:
    rows = "\n".join(
        f"| {d['date']} | {d['status']} | {d['atl07_granules'] if d['atl07_granules'] is not None else '-'} | "
        f"{d['segments'] if d['segments'] is not None else '-'} | {d['import_s'] + d['run_s']:.1f} | "
        f"{d['peak_rss_mb']:.0f} | {d['gb_s_configured']:.1f} | {d['fit_memory_mb']} | {d['gb_s_fit']:.1f} |"
        for d in f["per_date"])
    data_day = max(f["per_date"], key=lambda d: d["gb_s_configured"])
    with_data = [d for d in f["per_date"] if d.get("atl07_granules")]
    data_note = (", ".join(f"{d['date']} ({d['atl07_granules']} ATL07 granules, {d.get('sst_granules', '?')} L2P "
                           f"granules found)" for d in with_data) or "no date")
    return f"""### Cost (measured in the sandbox by `make bench`)

A 7-date request (2019-06-19..25, seed bbox) runs Plan → one ColocateFunction per date →
Summarize. Each row is that date's colocate call in a cold process of its own, run alone:
time = init (handler import) + handler run; memory = peak RSS. Dates with data in the
sandbox scene: {data_note}; the other dates find no ATL07 granule and return early.
GB-s at the configured {f['colocate_memory_mb']} MB, and at the smallest 64 MB step holding
peak RSS + 25 %.

| date | status | ATL07 | segments | s | peak RSS MB | GB-s @ {f['colocate_memory_mb']} MB | fit MB | GB-s @ fit |
|---|---|---|---|---|---|---|---|---|
{rows}

- Whole request: {f['gb_s_total_configured']:.1f} GB-s ≈ ${f['usd_per_request_configured']:.5f} on arm64 Lambda
  (${LAMBDA_GB_S_USD}/GB-s + $0.20 per million requests; Step Functions transitions, S3
  requests and egress not included).
- A day with data ≈ {data_day['gb_s_configured']:.1f} GB-s (≈ ${data_day['gb_s_configured'] * LAMBDA_GB_S_USD:.5f});
  a day without ATL07 granules ≈ {min(d['gb_s_configured'] for d in f['per_date']):.1f} GB-s.
- Wall time of the whole execution ({f['driver']}): {f['wall_s']:.0f} s here, all 7 dates at
  once on a shared 2-core machine; with one Lambda per date ≈ {f['projected_parallel_wall_s']:.0f} s
  (plan + slowest date + summarize, each cold).
- Network: {f.get('network', 'not recorded')} (docs/NETWORK.md).
- Sandbox times are single-core figures from a shared machine; Lambda CPU scales with memory
  (≈ {f['colocate_memory_mb'] / 1769:.1f} vCPU at {f['colocate_memory_mb']} MB), so a smaller
  memory size is cheaper per second but slower.
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--child", nargs=2, metavar=("HANDLER", "EVENT_JSON"))
    p.add_argument("--direct", action="store_true", help="call the handlers directly, not via moto")
    a = p.parse_args(argv)
    if a.child:
        emit(child_handler(*a.child))
        return 0
    f = measure(use_state_machine=not a.direct)
    print(json.dumps({k: v for k, v in f.items()}, indent=1))
    print(cost_markdown(f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
