"""At scale: a long request (365 dates by default) through the Distributed Map path, in the sandbox.

The real definition (statemachine/colocation.asl.json) runs in moto (sandbox.deployment): Plan
writes the date plan to S3, ``DatesDistributed`` reads it (ItemReader), runs one ColocateFunction
per date as a child execution and writes the results to S3 (ResultWriter), Summarize reads them.
Per-date work is as in the scene: every date is a real ``handlers.colocate`` run. The dates with
data in the scene (2019-06-22) run in a fresh interpreter each (a cold Lambda: their own time and
peak RSS); the other dates search CMR, find no ATL07 granule and publish an empty manifest, in
this process (a warm Lambda container) — so a 365-date request takes minutes on 2 cores.

Measured (``measure``):

- **Orchestration overhead per date**: every Lambda invocation is timed inside the runner (the
  time the state machine waited on the function). With the Map at concurrency C,
  ``overhead/date = (min(C, N) · map_span − Σ colocate task time) / N``: the slot-seconds of the
  Map phase spent outside a task, per date. At C = 1 this is the plain ``(wall − Σ task) / N`` of
  the Map phase (``--concurrency 1``). ``fixed_overhead_s`` is the rest of the wall time outside
  Plan and Summarize (ItemReader, Map Run start, ResultWriter, state transitions).
- **Largest state payload**: UTF-8 bytes of every ``input``/``output`` in the parent execution's
  history (moto's GetExecutionHistory), and of every Lambda event and answer (the child
  executions' input and output: moto keeps no history for them), against 256 KiB.
- **Plan and result objects**: sizes of the S3 plan (ItemReader) and the ResultWriter files.
- **Requests**: per sandbox server (CMR, TEA ``/s3credentials``, S3 by bucket and kind).
- **Cost** (``cost_markdown``): Lambda GB-s at the template's memory sizes, Lambda requests,
  Step Functions Standard transitions (parent and child executions), S3 requests, for the
  request as run and for the upper bound where every date has data.

    .venv/bin/python -m bench.scale [--dates 365] [--concurrency C] [--network SPEC] [--out bench/scale.md]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import parse_qs

from bench.common import REPO, child_env, run_child
from bench.fanout import LAMBDA_GB_S_USD, LAMBDA_REQUEST_USD

SEED_BBOX = [-62.8, 81.7, -56.4, 83.0]
YEAR_START = date(2019, 1, 1)
PAYLOAD_LIMIT_BYTES = 256 * 1024  # Step Functions' state payload quota (input/output of a state)
# us-west-2 list prices (AWS pricing pages): Step Functions Standard per state transition; S3
# Standard requests (PUT, COPY, POST, LIST per 1,000; GET and others per 1,000)
SFN_TRANSITION_USD = 0.025 / 1000
S3_WRITE_USD = 0.005 / 1000
S3_READ_USD = 0.0004 / 1000
DEFINITION = REPO / "statemachine" / "colocation.asl.json"


def definition_concurrency() -> dict[str, int]:
    """MaxConcurrency of each Map of the definition."""
    states = json.loads(DEFINITION.read_text())["States"]
    return {name: s["MaxConcurrency"] for name, s in states.items() if s.get("Type") == "Map"}


def memory_mb(logical: str) -> int:
    """A function's MemorySize in template.yaml (else the Globals value)."""
    text = (REPO / "template.yaml").read_text()
    block = re.search(rf"\n  {logical}:\n(.*?)(?=\n  \w)", text, re.S)
    m = re.search(r"MemorySize:\s*(\d+)", block.group(1) if block else "") or re.search(r"MemorySize:\s*(\d+)", text)
    return int(m.group(1))


def date_range(n: int, start: date | None, data_dates: list[date]) -> tuple[date, date]:
    """N dates: from ``start``, else the year 2019 for 365, else centred on the scene's data date."""
    if start is None:
        start = YEAR_START if n >= 365 or not data_dates else data_dates[0] - timedelta(days=n // 2)
    return start, start + timedelta(days=n - 1)


# --- measuring --------------------------------------------------------------------------------
class S3Requests:
    """WSGI middleware in front of the S3 proxy: requests by (bucket, kind), kind one of GET, HEAD,
    PUT, DELETE, POST, LIST (what S3 prices separately)."""

    def __init__(self, app):
        self.app, self.counts, self.lock = app, Counter(), threading.Lock()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "").lstrip("/")
        bucket, _, key = path.partition("/")
        method = environ.get("REQUEST_METHOD", "")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        kind = "LIST" if method == "GET" and not key and ("list-type" in query or "prefix" in query) else method
        with self.lock:
            self.counts[(bucket, kind)] += 1
        return self.app(environ, start_response)


class MeasuredRunner:
    """Runner for sandbox.deployment: every invocation timed (inside the runner, i.e. what the
    state machine waited on) and its event and answer measured in bytes. ColocateFunction calls
    for ``cold_dates`` run in a fresh interpreter (``bench.fanout --child``: a cold Lambda with
    its own import time and peak RSS); the rest in this process (a warm container)."""

    def __init__(self, cold_dates: set[str], env: dict[str, str]):
        self.cold_dates, self.env = cold_dates, env
        self.calls: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, logical: str, handler: str, event: dict) -> tuple[str, bool]:
        from sandbox.deployment import call_handler

        day = event.get("date") if logical == "ColocateFunction" else None
        t0 = time.perf_counter()
        extra: dict = {"cold": False}
        if day in self.cold_dates:
            out = run_child("bench.fanout", ["--child", "colocate", json.dumps(event)], env=self.env)
            is_error = bool(out["error"])
            payload = json.dumps({"errorType": out["error"], "errorMessage": out.get("message", "")} if is_error
                                 else out["result"])
            extra = {"cold": True, "import_s": out["import_s"], "run_s": out["run_s"],
                     "peak_rss_mb": out["peak_rss_mb"]}
        else:
            payload, is_error = call_handler(logical, handler, event)
        t1 = time.perf_counter()
        result = {} if is_error else json.loads(payload)
        record = {"function": logical, "date": day, "t0": t0, "t1": t1, "s": t1 - t0, "error": is_error,
                  "in_bytes": len(json.dumps(event).encode()), "out_bytes": len(payload.encode()),
                  "atl07_granules": (result.get("counts") or {}).get("atl07_granules") if day else None, **extra}
        with self.lock:
            self.calls.append(record)
        return payload, is_error


def _history(sfn, arn: str) -> list[dict]:
    events, token = [], None
    while True:
        page = sfn.get_execution_history(executionArn=arn, maxResults=1000, **({"nextToken": token} if token else {}))
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


def state_payloads(events: list[dict]) -> list[dict]:
    """Every input/output a state of the execution received or produced, in bytes."""
    rows, state = [], None
    for ev in events:
        for key, details in ev.items():
            if not (key.endswith("EventDetails") and isinstance(details, dict)):
                continue
            state = details.get("name", state)
            for field in ("input", "output"):
                if isinstance(details.get(field), str):
                    rows.append({"event": ev["type"], "state": state, "field": field,
                                 "bytes": len(details[field].encode())})
    return rows


@contextlib.contextmanager
def _environ(values: dict[str, str], drop: tuple[str, ...] = ()) -> Iterator[None]:
    saved = dict(os.environ)
    for k in drop:
        os.environ.pop(k, None)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_request(sb, n_dates: int, *, start: date | None = None, concurrency: int | None = None,
                cold_dates: set[str] | None = None, s3_counter: S3Requests | None = None,
                timeout_s: float = 1800.0, bbox: list[float] | None = None) -> dict:
    """One N-date request through the Distributed Map path of the real definition in ``sb``'s
    moto; the raw measurements (see the module docstring)."""
    from core.jobs.date_plan import INLINE_MAX_DATES
    from sandbox.deployment import deployed_state_machine, lambda_environment

    scene_dates = sorted({g.start.date() for g in sb.scene.granules if g.short_name.startswith("ATL07")})
    first, last = date_range(n_dates, start, scene_dates)
    request = {"bbox": bbox or SEED_BBOX, "start": first.isoformat(), "end": last.isoformat(), "radius_m": 1000.0}
    data_dates = {d.isoformat() for d in scene_dates if first <= d <= last}
    prefix = f"bench-scale-{uuid.uuid4().hex[:8]}"
    env = {**lambda_environment(sb), "COLOC_OUTPUT_PREFIX": prefix, "HOME": str(sb.workdir)}
    # a short request would take the inline Map: the plan step is told to go distributed
    forced = n_dates <= INLINE_MAX_DATES
    if forced:
        env["INLINE_MAX_DATES"] = "0"
    runner = MeasuredRunner(data_dates if cold_dates is None else cold_dates, child_env(env))
    maps = definition_concurrency()
    used = concurrency if concurrency is not None else maps["DatesDistributed"]
    with _environ(env, drop=("EARTHDATA_TOKEN", "EARTHDATA_USERNAME", "EARTHDATA_PASSWORD", "NETRC")):
        from handlers import runtime  # here: a first import's cold start reads this environment

        runtime.reset()
        try:
            with deployed_state_machine(sb, runner=runner, output_prefix=prefix, fast_retries=False,
                                        max_concurrency=concurrency) as stack:
                t0 = time.perf_counter()
                desc = stack.run(request, timeout_s=timeout_s, poll_s=0.5)
                t_end = time.perf_counter()
                events = _history(stack.sfn, desc["executionArn"])
                waits = list(stack.waits)
        finally:
            runtime.reset()
    s3 = sb.boto3_client("s3")
    objects = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sb.settings.output_bucket,
                                                                          Prefix=prefix + "/")
               for o in page.get("Contents", [])]
    return {"request": request, "n_dates": n_dates, "forced_distributed": forced, "data_dates": sorted(data_dates),
            "concurrency": used, "definition_concurrency": maps, "status": desc["status"],
            "output": json.loads(desc.get("output") or "{}"), "wall_s": t_end - t0, "t0": t0, "t_end": t_end,
            "calls": runner.calls, "events": events, "retry_waits_s": waits, "prefix": prefix,
            "objects": [{"key": o["Key"][len(prefix) + 1:], "size": o["Size"]} for o in objects],
            "s3_requests": dict(s3_counter.counts) if s3_counter else None}


def slot_gaps(tasks: list[dict], slots: int) -> float:
    """Mean time from a task's end to the start of the next task in its Map slot.

    A Map worker runs its items one after another, so every start but the first ``slots`` follows
    the end of an earlier task of the same worker, and every end but each worker's last (the
    ``slots`` latest ends) precedes one: Σ gaps = Σ later starts − Σ earlier ends, whichever
    worker ran what. At one slot this is (span − Σ task) / (N − 1)."""
    starts = sorted(t["t0"] for t in tasks)
    ends = sorted(t["t1"] for t in tasks)
    k = min(slots, len(tasks))
    if len(tasks) <= k:
        return 0.0
    return (sum(starts[k:]) - sum(ends[:-k])) / (len(tasks) - k)


def summarize_run(raw: dict) -> dict:
    """The figures of one run (JSON-safe; the raw calls and events are left out)."""
    calls, n = raw["calls"], raw["n_dates"]
    colocate = [c for c in calls if c["function"] == "ColocateFunction"]
    plan_s = sum(c["s"] for c in calls if c["function"] == "PlanFunction")
    summarize_s = sum(c["s"] for c in calls if c["function"] == "SummarizeFunction")
    task_s = sum(c["s"] for c in colocate)
    span = (max(c["t1"] for c in colocate) - min(c["t0"] for c in colocate)) if colocate else 0.0
    slots = max(1, min(raw["concurrency"] or n, n))
    payloads = state_payloads(raw["events"])
    items = [{"state": f"{c['function']} ({c['date']})" if c["date"] else c["function"], "field": field,
              "bytes": c[f"{field[:-3]}_bytes"]} for c in calls for field in ("input", "output")]
    largest = max(payloads + items, key=lambda r: r["bytes"])
    cold = [c for c in colocate if c["cold"]]
    warm = [c for c in colocate if not c["cold"] and not c["error"]]
    objects = raw["objects"]
    plan_objs = [o for o in objects if o["key"].startswith("_plans/")]
    result_objs = [o for o in objects if o["key"].startswith("_map-results/")]
    by_date: Counter = Counter(c["date"] for c in colocate)
    return {
        "request": raw["request"], "dates": n, "forced_distributed": raw["forced_distributed"],
        "status": raw["status"], "n_failed": raw["output"].get("n_failed"),
        "n_dates_summarized": raw["output"].get("n_dates"),
        "data_dates": raw["data_dates"], "concurrency": raw["concurrency"],
        "definition_concurrency": raw["definition_concurrency"],
        "wall_s": round(raw["wall_s"], 2), "map_span_s": round(span, 2),
        "plan_s": round(plan_s, 3), "summarize_s": round(summarize_s, 2),
        "colocate_task_s_total": round(task_s, 2),
        "overhead_per_date_s": round(slot_gaps(colocate, slots), 4) if colocate else None,
        "slot_occupancy": round(task_s / (slots * span), 3) if span else None,
        "fixed_overhead_s": round(raw["wall_s"] - span - plan_s - summarize_s, 2),
        "wall_minus_tasks_per_date_s": round((raw["wall_s"] - plan_s - summarize_s - task_s) / n, 4),
        "empty_date_task_s_mean": round(sum(c["s"] for c in warm) / len(warm), 4) if warm else None,
        "data_dates_measured": [{k: c.get(k) for k in ("date", "s", "import_s", "run_s", "peak_rss_mb",
                                                       "atl07_granules", "error")} for c in cold],
        "lambda_invocations": Counter(c["function"] for c in calls),
        "retried_dates": sorted(d for d, k in by_date.items() if k > 1), "retry_waits_s": raw["retry_waits_s"],
        "failed_invocations": sum(1 for c in calls if c["error"]),
        "largest_payload": largest, "payload_limit_bytes": PAYLOAD_LIMIT_BYTES,
        "largest_payload_fraction": round(largest["bytes"] / PAYLOAD_LIMIT_BYTES, 4),
        "largest_item_input_bytes": max((c["in_bytes"] for c in colocate), default=0),
        "largest_item_output_bytes": max((c["out_bytes"] for c in colocate), default=0),
        "largest_parent_state": max(payloads, key=lambda r: r["bytes"]) if payloads else None,
        "parent_events": len(raw["events"]),
        "parent_transitions": sum(1 for e in raw["events"] if e["type"].endswith("StateEntered")),
        "plan_object_bytes": sum(o["size"] for o in plan_objs),
        "result_objects": result_objs,
        "output_objects": len(objects) - len(plan_objs) - len(result_objs),
        "s3_requests": {f"{b}:{k}": v for (b, k), v in sorted((raw["s3_requests"] or {}).items())},
    }


def measure(n_dates: int = 365, *, concurrency: int | None = None, network: str | None = None,
            workdir: Path | None = None, start: date | None = None) -> dict:
    """The bench step: the counted sandbox on the full-size scene, one N-date request."""
    from bench.e2e import CountedSandbox

    # as bench.common.child_env gives every child: 365 warm invocations' INFO lines and EMF
    # metric blobs on stdout would cost more time than the orchestration being measured
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="coloc-scale-") as tmp:
            return measure(n_dates, concurrency=concurrency, network=network, workdir=Path(tmp), start=start)
    with CountedSandbox(workdir / "sandbox", network) as csb:
        s3_counter = S3Requests(csb.sandbox.servers["s3api"].app)
        csb.sandbox.servers["s3api"].app = s3_counter
        csb.reset()
        raw = run_request(csb.sandbox, n_dates, start=start, concurrency=concurrency, s3_counter=s3_counter)
        totals = dict(csb.totals)
        out = summarize_run(raw)
        out["network"] = csb.network.label
        out["server_requests"] = {f"{name}:{m}": totals[(name, m, "requests")] for name in csb.sandbox.servers
                                  for m in ("GET", "POST", "PUT", "HEAD", "DELETE") if (name, m, "requests") in totals}
        out["bucket"] = csb.sandbox.settings.output_bucket
    out["memory_mb"] = {f: memory_mb(f) for f in ("PlanFunction", "ColocateFunction", "SummarizeFunction")}
    return out


# --- cost ---------------------------------------------------------------------------------------
def cost_lines(f: dict, n: int = 365) -> dict:
    """The cost of an n-date request from one run's per-date figures: as run (its dates with and
    without data, scaled to n) and the upper bound where every date has data."""
    mem = {k: v / 1024 for k, v in f["memory_mb"].items()}
    data = [d for d in f["data_dates_measured"] if not d.get("error")]
    n_data = min(n, len(data))  # the scene's dates with data (the range always holds them)
    data_s = sum(d["import_s"] + d["run_s"] for d in data) / len(data) if data else 0.0
    init_s = data[0]["import_s"] if data else 0.0  # a cold container's init: the handler import
    empty_s = f["empty_date_task_s_mean"] or 0.0
    n_empty = n - n_data
    cold_inits = min(f["concurrency"] or n, n_empty)
    per_date = lambda key: (f["s3_requests"] or {}).get(f"{f['bucket']}:{key}", 0) / f["dates"]  # noqa: E731
    reads = (per_date("GET") + per_date("HEAD")) * n + 1  # + the ItemReader's GET of the plan
    writes = (per_date("PUT") + per_date("POST") + per_date("LIST")) * n + len(f["result_objects"])
    child_transitions = n  # RunDate per child; a retry or a recorded failure adds transitions
    transitions = f["parent_transitions"] + child_transitions
    gb_s_data, gb_s_empty = n_data * data_s * mem["ColocateFunction"], (
        n_empty * empty_s + cold_inits * init_s) * mem["ColocateFunction"]
    gb_s_steps = f["plan_s"] * mem["PlanFunction"] + f["summarize_s"] * mem["SummarizeFunction"]
    requests = n + 2
    rows = {
        "n": n, "n_data": n_data, "n_empty": n_empty, "data_s": data_s, "empty_s": empty_s, "init_s": init_s,
        "cold_inits": cold_inits, "gb_s_data": gb_s_data, "gb_s_empty": gb_s_empty, "gb_s_steps": gb_s_steps,
        "lambda_requests": requests, "transitions": transitions, "child_transitions": child_transitions,
        "s3_reads": reads, "s3_writes": writes,
    }
    rows["usd"] = {
        "lambda_gb_s": (gb_s_data + gb_s_empty + gb_s_steps) * LAMBDA_GB_S_USD,
        "lambda_requests": requests * LAMBDA_REQUEST_USD,
        "step_functions": transitions * SFN_TRANSITION_USD,
        "s3": reads * S3_READ_USD + writes * S3_WRITE_USD,
    }
    rows["usd_total"] = sum(rows["usd"].values())
    every = n * data_s * mem["ColocateFunction"] + gb_s_steps
    rows["upper_bound_gb_s"] = every
    rows["upper_bound_usd"] = (every * LAMBDA_GB_S_USD + rows["usd"]["lambda_requests"] + rows["usd"]["step_functions"]
                               + rows["usd"]["s3"])
    return rows


def cost_markdown(f: dict, n: int = 365) -> str:
    c = cost_lines(f, n)
    u = c["usd"]
    big = f["largest_payload"]
    parent = f["largest_parent_state"] or {}
    results = sum(o["size"] for o in f["result_objects"] if "SUCCEEDED" in o["key"])
    scaled = "" if f["dates"] == n else f" (measured on {f['dates']} dates, per-date figures scaled to {n})"
    data = f["data_dates_measured"]
    req = f["server_requests"]
    cmr_per_date = req.get("cmr:GET", 0) / f["dates"]
    daac_gets = sum(v for k, v in (f["s3_requests"] or {}).items() if not k.startswith(f["bucket"] + ":"))
    return f"""### A {n}-date request through the Distributed Map (`bench/scale.py`)

{f['request']['start']}..{f['request']['end']}, seed bbox, the real definition executed by moto
(`DatesDistributed`: plan on S3 → one child execution per date → ResultWriter files → Summarize),
MaxConcurrency {f['concurrency']}, network model {f['network'].split(':')[0]}. Every date is a real
ColocateFunction run: {', '.join(d['date'] for d in data) or 'no date'} has data in the scene
({', '.join(f"{d['atl07_granules']} ATL07 granules, {d['import_s'] + d['run_s']:.1f} s cold, peak {d['peak_rss_mb']:.0f} MB" for d in data)}),
each other date searches CMR, finds no ATL07 granule and publishes an empty manifest
({f['empty_date_task_s_mean']:.2f} s on average, warm, {f['concurrency']} at once on 2 shared cores).

| figure | measured |
|---|---|
| execution wall time | {f['wall_s']:.0f} s ({f['status']}, {f['n_dates_summarized']} dates summarized, {f['n_failed']} failed) |
| orchestration overhead per date (task end → next task start in its Map slot, mean) | {f['overhead_per_date_s'] * 1000:.0f} ms |
| fixed overhead (wall − Map phase − Plan − Summarize) | {f['fixed_overhead_s']:.2f} s |
| Map slots busy in a task | {f['slot_occupancy'] * 100:.0f} % |
| largest state payload | {big['bytes']:,} B = {f['largest_payload_fraction'] * 100:.2f} % of 256 KiB ({big['state']} {big['field']}) |
| largest parent-execution state | {parent.get('bytes', 0):,} B ({parent.get('state')} {parent.get('field')}) |
| largest item input / output | {f['largest_item_input_bytes']:,} B / {f['largest_item_output_bytes']:,} B |
| plan object (ItemReader) | {f['plan_object_bytes']:,} B |
| ResultWriter result files | {results:,} B in {sum(1 for o in f['result_objects'] if 'SUCCEEDED' in o['key'])} file(s) + manifest |
| parent execution history | {f['parent_events']} events, {f['parent_transitions']} state transitions |
| CMR searches per date | {cmr_per_date:.1f} |
| DAAC S3 requests (L2P reads, all dates) | {daac_gets} |

Cost of the {n} dates{scaled}, us-west-2 list prices:

| item | quantity | USD |
|---|---|---|
| ColocateFunction, dates with data ({c['n_data']} × {c['data_s']:.1f} s at {f['memory_mb']['ColocateFunction']} MB) | {c['gb_s_data']:.1f} GB-s | {c['gb_s_data'] * LAMBDA_GB_S_USD:.5f} |
| ColocateFunction, dates without data ({c['n_empty']} × {c['empty_s']:.2f} s + {c['cold_inits']} cold inits × {c['init_s']:.2f} s) | {c['gb_s_empty']:.1f} GB-s | {c['gb_s_empty'] * LAMBDA_GB_S_USD:.5f} |
| Plan + Summarize | {c['gb_s_steps']:.1f} GB-s | {c['gb_s_steps'] * LAMBDA_GB_S_USD:.5f} |
| Lambda requests | {c['lambda_requests']} | {u['lambda_requests']:.5f} |
| Step Functions Standard transitions: parent {f['parent_transitions']} + child executions {c['child_transitions']} | {c['transitions']} | {u['step_functions']:.5f} |
| S3 requests on the output bucket: GET/HEAD (incl. the ItemReader's) | {c['s3_reads']:.0f} | {c['s3_reads'] * S3_READ_USD:.5f} |
| S3 requests on the output bucket: PUT/LIST (incl. ResultWriter files) | {c['s3_writes']:.0f} | {c['s3_writes'] * S3_WRITE_USD:.5f} |
| **total** | | **{c['usd_total']:.4f}** |
| upper bound: every date with data | {c['upper_bound_gb_s']:.0f} GB-s | {c['upper_bound_usd']:.4f} |

Prices: Lambda arm64 ${LAMBDA_GB_S_USD}/GB-s and $0.20 per million requests; Step Functions
Standard $0.025 per 1,000 state transitions (a Distributed Map's STANDARD child executions are
billed by their transitions like any execution; RunDate is one per child on success, a retry or a
recorded failure adds more); S3 Standard $0.005 per 1,000 PUT/LIST, $0.0004 per 1,000 GET.
The L2P reads are GETs on the DAAC's bucket (not billed to this account); egress is nil in-region.
Warm dates are timed inside this process under contention (an over-estimate of their Lambda time).
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dates", type=int, default=365, help="dates in the request (default 365)")
    p.add_argument("--start", type=date.fromisoformat, default=None,
                   help="first date (default 2019-01-01 for 365 dates, else centred on the scene's data date)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="the Maps' MaxConcurrency for this run (default: the definition's)")
    p.add_argument("--network", default=None, help="off | lambda-us-west-2 | key=value,... (default as bench.run)")
    p.add_argument("--out", default=None, help="write the cost table here (e.g. bench/scale.md)")
    p.add_argument("--json", default=None, help="write the figures here as JSON")
    a = p.parse_args(argv)
    f = measure(a.dates, concurrency=a.concurrency, network=a.network, start=a.start)
    print(json.dumps(f, indent=1, default=str))
    text = cost_markdown(f)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    if a.json:
        Path(a.json).write_text(json.dumps(f, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
