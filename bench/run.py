"""`make bench`: every benchmark, bench/results.json, bench/kernel_vs_n.png, bench/cost.md and a
table of targets on stdout (also written into bench/README.md between the table markers).

    .venv/bin/python -m bench.run [--quick] [--network SPEC]

``--quick`` (one repeat each, small kernel sizes) is for trying the machinery, not for numbers.
The end-to-end and fan-out runs go through the sandbox's network model, ``lambda-us-west-2``
unless ``--network`` or $COLOC_SANDBOX_NETWORK say otherwise (docs/NETWORK.md).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import coldstart, e2e, fanout, kernel, l2p_bytes
from bench.common import REPO

BENCH = REPO / "bench"
RESULTS = BENCH / "results.json"
README = BENCH / "README.md"
TABLE_START, TABLE_END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"

TARGETS = {
    # key: (label, comparison, limit, unit)
    "end_to_end_speedup": ("end to end vs tutorial baseline (speed-up, median of 3)", ">=", 3.0, "x"),
    "peak_rss_ratio": ("end to end peak RSS, service / baseline", "<=", 1 / 3, ""),
    "s3_bytes_fraction": ("S3 bytes per MODIS granule / its size (max)", "<=", 0.5, ""),
    "kernel_speedup_min": ("kernel: resample_nearest time / ours (min over N)", ">=", 1.0, "x"),
    "task_peak_rss_mb": ("one date's task peak RSS", "<=", 1000.0, " MB"),
    "cold_import_s": ("handler cold import incl. lazy pipeline import (max, median of 5)", "<=", 1.5, " s"),
    "function_size_mb": ("function + layers unzipped (max)", "<=", 200.0, " MB"),
}


def passed(key: str, value) -> bool | None:
    if value is None:
        return None
    _, op, limit, _ = TARGETS[key]
    return value >= limit if op == ">=" else value <= limit


def _fmt(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.2f}"


def table(results: dict) -> str:
    lines = ["| target | goal | measured | result |", "|---|---|---|---|"]
    for key, (label, op, limit, unit) in TARGETS.items():
        value = results.get(key)
        ok = passed(key, value)
        if key == "kernel_speedup_min" and not results["details"]["kernel"].get("oracle_identical", False):
            ok = False  # speed without identical matches does not count
        goal = f"{op} {_fmt(limit)}{unit}" if key != "peak_rss_ratio" else "<= 1/3"
        shown = "n/a" if value is None else f"{_fmt(value)}{unit}"
        lines.append(f"| {label} | {goal} | {shown} | {'n/a' if ok is None else 'PASS' if ok else 'FAIL'} |")
    k = results["details"]["kernel"]
    lines.append(f"| kernel matches = brute-force oracle (sampled, every N) | identical | "
                 f"{'identical' if k.get('oracle_identical') else 'MISMATCH'} | "
                 f"{'PASS' if k.get('oracle_identical') else 'FAIL'} |")
    return "\n".join(lines)


def update_readme(text: str) -> None:
    if not README.exists():
        return
    doc = README.read_text()
    if TABLE_START in doc and TABLE_END in doc:
        head, rest = doc.split(TABLE_START, 1)
        _, tail = rest.split(TABLE_END, 1)
        README.write_text(f"{head}{TABLE_START}\n{text}\n{TABLE_END}{tail}")


def run(quick: bool = False, network: str | None = None) -> dict:
    t_start = time.perf_counter()
    timings = {}

    def step(name, fn, *a, **kw):
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        out = fn(*a, **kw)
        timings[name] = round(time.perf_counter() - t0, 1)
        print(f"[bench] {name} done in {timings[name]} s", file=sys.stderr, flush=True)
        return out

    from sandbox.scene import build_scene

    step("scene", build_scene, REPO / ".sandbox-cache")
    end_to_end = step("end_to_end", e2e.measure, 1 if quick else 3, network=network)
    k = step("kernel", kernel.sweep, (10_000, 100_000) if quick else kernel.SWEEP_N, repeats=1 if quick else 3,
             plot=None if quick else BENCH / "kernel_vs_n.png")  # --quick leaves the committed outputs alone
    cold = step("cold_start", coldstart.measure, 1 if quick else 5)
    fan = step("fan_out", fanout.measure, network=network)
    l2p = step("l2p_bytes", l2p_bytes.measure)

    s = end_to_end["summary"]
    data_dates = [d for d in fan["per_date"] if d["status"] == "complete"]
    results = {
        "end_to_end_speedup": s["speedup"],
        "peak_rss_ratio": s["peak_rss_ratio"],
        "s3_bytes_fraction": s["s3_bytes_fraction_max"],
        "kernel_speedup_min": k["speedup_min"],
        "task_peak_rss_mb": max([d["peak_rss_mb"] for d in data_dates] + [s["service_peak_rss_mb"]]),
        "cold_import_s": cold["cold_import_s_max"],
        "function_size_mb": cold["function_size_mb_max"],
        "details": {
            "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": __import__("os").cpu_count()},
            "quick": quick,
            "network": end_to_end["summary"].get("network"),
            "end_to_end": end_to_end,
            "kernel": k,
            "cold_start": cold,
            "fan_out": fan,
            "l2p_bytes": l2p,
            "bench_step_s": timings,
        },
    }
    results["details"]["bench_step_s"]["total"] = round(time.perf_counter() - t_start, 1)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--network", default=None, help="off | lambda-us-west-2 | key=value,... "
                   "(default: $COLOC_SANDBOX_NETWORK, else lambda-us-west-2)")
    a = p.parse_args(argv)
    results = run(a.quick, a.network)
    Path(a.out).write_text(json.dumps(results, indent=1, default=str) + "\n")
    text = table(results)
    if not a.quick:
        (BENCH / "cost.md").write_text(fanout.cost_markdown(results["details"]["fan_out"]))
        update_readme(text)
    s = results["details"]["end_to_end"]["summary"]
    print(text)
    print(f"\nend to end (median of runs): service {s['service_work_s']:.1f} s / {s['service_peak_rss_mb']:.0f} MB, "
          f"baseline {s['baseline_work_s']:.1f} s / {s['baseline_peak_rss_mb']:.0f} MB; "
          f"S3 bytes service {s['service_s3_bytes'] / 1e6:.0f} MB vs baseline {s['baseline_s3_bytes'] / 1e6:.0f} MB")
    net = results["details"]["network"]
    print(f"network model: {net['label'] if net else 'off (loopback)'}")
    print(f"bench took {results['details']['bench_step_s']['total']:.0f} s; results in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
