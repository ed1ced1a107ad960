"""`make bench`: every benchmark, bench/results.json, bench/kernel_vs_n.png, bench/cost.md and a
table of targets on stdout (also written into bench/README.md between the table markers).

    .venv/bin/python -m bench.run [--quick] [--repeats N] [--network SPEC] [--no-network-off] [--no-fanout]

``--quick`` (one repeat each, small kernel sizes) is for trying the machinery, not for numbers.
The end-to-end and fan-out runs go through the sandbox's network model, ``lambda-us-west-2``
unless ``--network`` or $COLOC_SANDBOX_NETWORK say otherwise (docs/NETWORK.md); the targets are
judged on those runs. The end-to-end part then runs again with the model off (loopback), for the
same ratios without the network (``details.end_to_end_network_off``; ``--no-network-off`` skips it).
``--repeats`` sets the end-to-end repeats (default 3; every kind of run alternates within a
repeat, so fewer repeats keep the ratios side by side).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import atl07_direct, coldstart, e2e, fanout, kernel, l2p_bytes, scale, study
from bench.common import REPO

BENCH = REPO / "bench"
RESULTS = BENCH / "results.json"
README = BENCH / "README.md"
TABLE_START, TABLE_END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"

# Issue 13's targets (they replace the older ones where they overlap: 3x -> 4x end to end,
# 1.5 s -> 1.0 s cold import; L2P bytes / chunk floor replaces "S3 bytes / granule size <= 0.5",
# which stays as a figure). Judged on the runs with the network model on.
TARGETS = {
    # key: (label, comparison, limit, unit); limit None = a figure shown without a verdict
    "end_to_end_speedup": ("seed case vs the tutorial's way, all its granules (speed-up)", ">=", 4.0, "x"),
    "speedup_same_granules": ("seed case vs the tutorial's way on the same granules", ">=", 3.0, "x"),
    # issue 26 (Release 007 paged): in place >= 10x and within 1.5x of its own floor; the L2P
    # bytes judged against the information floor (the chunk-floor ratio stays as a figure);
    # peak RSS <= half the tutorial's
    "speedup_direct_atl07": ("seed case with atl07_access=direct vs the tutorial's way", ">=", 10.0, "x"),
    "direct_floor_ratio": ("atl07_access=direct wall time / its own floor", "<=", 1.5, ""),
    "floor_ratio": ("service wall time / its own floor", "<=", 1.3, ""),
    "l2p_bytes_over_information_floor": ("L2P bytes fetched / information floor (lat + lon in the band + window)",
                                         "<=", 1.05, ""),
    "l2p_bytes_over_floor": ("L2P bytes fetched / exact chunk floor (lat + window chunks; figure only)", "<=",
                             None, ""),
    "peak_rss_ratio": ("peak RSS of one date, service / tutorial's way", "<=", 0.5, ""),
    # issue 23: 512 MB for the seed date (was 1000 MB, issue 13); max of e2e, fan-out and the study's K = 2
    "task_peak_rss_mb": ("one date's peak RSS (max of e2e, fan-out, study)", "<=", 512.0, " MB"),
    "cold_import_s": ("handler cold import incl. lazy pipeline import (max, median of 5)", "<=", 1.0, " s"),
    "function_size_mb": ("ColocateFunction unzipped (code + layers)", "<=", 200.0, " MB"),
    "kernel_speedup_min": ("kernel: resample_nearest time / ours (min over N)", ">=", 1.0, "x"),
    "s3_bytes_fraction": ("S3 bytes per MODIS granule / its size (max; figure only)", "<=", None, ""),
    # issue 23 (bench/study.py)
    "rss_growth_16_granules": ("one date's peak RSS, 16 ATL07 granules / 1", "<=", 1.15, ""),
    "max_state_payload_fraction": ("largest state payload / 256 KiB, 10-year global request", "<=", 0.10, ""),
    "season_cost_per_date_usd": ("whole-Arctic season, cost per date (figure only)", "<=", None, " USD"),
}


def passed(key: str, value) -> bool | None:
    _, op, limit, _ = TARGETS[key]
    if value is None or limit is None:
        return None
    return value >= limit if op == ">=" else value <= limit


def _fmt(x: float) -> str:
    if 0 < abs(x) < 0.01:  # e.g. a cost per date in USD: two significant digits, not 0.00
        return f"{x:.2g}"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.2f}"


def table(results: dict) -> str:
    lines = ["| target | goal | measured | result |", "|---|---|---|---|"]
    for key, (label, op, limit, unit) in TARGETS.items():
        value = results.get(key)
        ok = passed(key, value)
        if key == "kernel_speedup_min" and not results["details"]["kernel"].get("oracle_identical", False):
            ok = False  # speed without identical matches does not count
        goal = "-" if limit is None else f"{op} {_fmt(limit)}{unit}"
        shown = "n/a" if value is None else f"{_fmt(value)}{unit}"
        verdict = ("info" if limit is None else "n/a") if ok is None else "PASS" if ok else "FAIL"
        lines.append(f"| {label} | {goal} | {shown} | {verdict} |")
    k = results["details"]["kernel"]
    lines.append(f"| kernel matches = brute-force oracle (sampled, every N) | identical | "
                 f"{'identical' if k.get('oracle_identical') else 'MISMATCH'} | "
                 f"{'PASS' if k.get('oracle_identical') else 'FAIL'} |")
    return "\n".join(lines)


def update_readme(text: str) -> None:
    """The table between the markers of bench/README.md and of the project's README.md, so both
    always show the latest run."""
    for readme in (README, REPO / "README.md"):
        if not readme.exists():
            continue
        doc = readme.read_text()
        if TABLE_START in doc and TABLE_END in doc:
            head, rest = doc.split(TABLE_START, 1)
            _, tail = rest.split(TABLE_END, 1)
            readme.write_text(f"{head}{TABLE_START}\n{text}\n{TABLE_END}{tail}")


def run(quick: bool = False, network: str | None = None, *, repeats: int | None = None,
        network_off: bool = True, fan_out: bool = True, scale_run: bool = True, study_run: bool = True) -> dict:
    t_start = time.perf_counter()
    timings = {}
    repeats = repeats or (1 if quick else 3)

    def step(name, fn, *a, **kw):
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        out = fn(*a, **kw)
        timings[name] = round(time.perf_counter() - t0, 1)
        print(f"[bench] {name} done in {timings[name]} s", file=sys.stderr, flush=True)
        return out

    from sandbox.scene import build_scene

    step("scene", build_scene, REPO / ".sandbox-cache")
    end_to_end = step("end_to_end", e2e.measure, repeats, network=network)
    # the same runs on loopback, for what the network model changes (not judged against targets)
    off = step("end_to_end_network_off", e2e.measure, repeats, network="off") if network_off else None
    k = step("kernel", kernel.sweep, (10_000, 100_000) if quick else kernel.SWEEP_N, repeats=1 if quick else 3,
             plot=None if quick else BENCH / "kernel_vs_n.png")  # --quick leaves the committed outputs alone
    cold = step("cold_start", coldstart.measure, 1 if quick else 5)
    fan = step("fan_out", fanout.measure, network=network) if fan_out else None
    l2p = step("l2p_bytes", l2p_bytes.measure)
    # issue 26: ATL07 in place from the v006 twin and Release 007 paged, both chunk sizes
    layouts = step("atl07_layouts", atl07_direct.layouts)
    # issue 13 "at scale": a long request through the Distributed Map (bench/scale.py, scale.md)
    at_scale = step("scale", scale.measure, 40 if quick else 365, network=network) if scale_run else None
    # issue 23: K ATL07 granules a date, a whole-Arctic season, a 10-year global request (bench/study.py)
    studied = step("study", study.measure, quick, network) if study_run else None

    s = end_to_end["summary"]
    data_dates = [d for d in (fan or {}).get("per_date", []) if d["status"] == "complete"]
    colocate_size = cold["sizes"]["functions"].get("ColocateFunction", {}).get("unzipped_mb")
    results = {
        "end_to_end_speedup": s["speedup"],
        "speedup_same_granules": s["speedup_same_granules"],
        "speedup_direct_atl07": s["speedup_direct_atl07"],
        "direct_floor_ratio": s["service_direct_floor_ratio"],
        "floor_ratio": s["floor_ratio"],
        "l2p_bytes_over_information_floor": s["l2p_bytes_over_information_floor"],
        "l2p_bytes_over_floor": s["l2p_bytes_over_floor"],
        "peak_rss_ratio": s["peak_rss_ratio"],
        "s3_bytes_fraction": s["s3_bytes_fraction_max"],
        "kernel_speedup_min": k["speedup_min"],
        "task_peak_rss_mb": max([d["peak_rss_mb"] for d in data_dates] + [s["service_peak_rss_mb"]]
                                + ([studied["seed_date_peak_rss_mb"]] if studied else [])),
        **(study.result_keys(studied) if studied else {}),
        "cold_import_s": cold["cold_import_s_max"],
        "function_size_mb": colocate_size,
        "details": {
            "generated": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": __import__("os").cpu_count()},
            "quick": quick,
            "repeats": repeats,
            "network": end_to_end["summary"].get("network"),
            "end_to_end": end_to_end,
            "end_to_end_network_off": off,
            "kernel": k,
            "cold_start": cold,
            "fan_out": fan,
            "l2p_bytes": l2p,
            "atl07_layouts": layouts,
            "scale": at_scale,
            "study": studied,
            "bench_step_s": timings,
        },
    }
    results["details"]["bench_step_s"]["total"] = round(time.perf_counter() - t_start, 1)
    return results


def side_by_side(results: dict) -> str:
    """The end-to-end figures with the model on and off, one column each."""
    d = results["details"]
    cols = [("model on", d["end_to_end"]["summary"])]
    if d.get("end_to_end_network_off"):
        cols.append(("model off (loopback)", d["end_to_end_network_off"]["summary"]))
    rows = [
        ("service, default (download ATL07)", lambda s: f"{s['service_work_s']:.2f} s"),
        ("service, atl07_access=direct", lambda s: f"{s['service_direct_work_s']:.2f} s"),
        ("tutorial's way, all granules", lambda s: f"{s['baseline_work_s']:.2f} s"),
        ("tutorial's way, the service's granules", lambda s: f"{s['baseline_same_granules_work_s']:.2f} s"),
        ("speed-up, all granules", lambda s: f"{s['speedup']:.2f}x"),
        ("speed-up, same granules", lambda s: f"{s['speedup_same_granules']:.2f}x"),
        ("speed-up, atl07_access=direct", lambda s: f"{s['speedup_direct_atl07']:.2f}x"),
        ("floor of the service run", lambda s: f"{s['floor']['floor_s']:.2f} s"),
        ("service / floor", lambda s: f"{s['floor_ratio']:.2f}"),
        ("service direct / its floor", lambda s: f"{s['service_direct_floor_ratio']:.2f}"),
        ("L2P bytes / chunk floor", lambda s: f"{s['l2p_bytes_over_floor']:.3f}"),
        ("L2P bytes / information floor", lambda s: f"{s['l2p_bytes_over_information_floor']:.3f}"),
        ("peak RSS service / tutorial", lambda s: f"{s['peak_rss_ratio']:.2f} "
                                                  f"({s['service_peak_rss_mb']:.0f} / {s['baseline_peak_rss_mb']:.0f} MB)"),
        ("service stages (median, s)", lambda s: ", ".join(f"{k} {v:.2f}" for k, v in s["service_stage_s"].items())),
    ]
    lines = ["| end to end | " + " | ".join(c for c, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(fn(s) for _, s in cols) + " |" for label, fn in rows]
    return "\n".join(lines)


def floor_breakdown(summary: dict, network: dict | None) -> str:
    f = summary["floor"]
    rate = ("loopback: no network term" if network is None else
            f"{network['peak_mbps']:g} MB/s for the first {network['peak_mbps'] * network['burst_mb'] / (network['peak_mbps'] - network['aggregate_mbps']):.0f} MB, "
            f"then {network['aggregate_mbps']:g} MB/s")
    return (f"floor = {f['floor_s']:.2f} s = transfer {f['transfer_s']:.2f} s "
            f"({f['bytes'] / 1e6:.1f} MB: ATL07 {f['atl07_bytes'] / 1e6:.1f} MB + L2P chunk floor "
            f"{f['l2p_floor_bytes'] / 1e6:.1f} MB; {rate}) + round trips {f['round_trips_s']:.2f} s "
            f"({f['sequential_requests']:.0f} sequential requests, {f['new_connections']:.0f} new connections) "
            f"+ colocation CPU {f['cpu_s']:.2f} s; L2P fetched {f['l2p_fetched'] / 1e6:.1f} MB "
            f"(HDF5 metadata outside the floor: {f['l2p_metadata_bytes'] / 1e6:.2f} MB)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--network", default=None, help="off | lambda-us-west-2 | key=value,... "
                   "(default: $COLOC_SANDBOX_NETWORK, else lambda-us-west-2)")
    p.add_argument("--repeats", type=int, default=None, help="end-to-end repeats (default 3; --quick 1)")
    p.add_argument("--no-network-off", action="store_true", help="skip the end-to-end runs on loopback")
    p.add_argument("--no-fanout", action="store_true", help="skip the 7-date fan-out (and bench/cost.md)")
    p.add_argument("--no-scale", action="store_true", help="skip the 365-date Distributed Map run (and bench/scale.md)")
    p.add_argument("--no-study", action="store_true", help="skip the study (K granules a date, season, 10 years)")
    a = p.parse_args(argv)
    results = run(a.quick, a.network, repeats=a.repeats, network_off=not a.no_network_off, fan_out=not a.no_fanout,
                  scale_run=not a.no_scale, study_run=not a.no_study)
    Path(a.out).write_text(json.dumps(results, indent=1, default=str) + "\n")
    text = table(results)
    if not a.quick:
        if results["details"]["fan_out"]:
            (BENCH / "cost.md").write_text(fanout.cost_markdown(results["details"]["fan_out"]))
        if results["details"]["scale"]:
            (BENCH / "scale.md").write_text(scale.cost_markdown(results["details"]["scale"]))
        update_readme(text)
    s = results["details"]["end_to_end"]["summary"]
    print(text)
    print()
    print(side_by_side(results))
    net = results["details"]["network"]
    print(f"\n{floor_breakdown(s, net)}")
    off = results["details"].get("end_to_end_network_off")
    if off:
        print(f"model off: {floor_breakdown(off['summary'], None)}")
    for r in results["details"].get("atl07_layouts") or []:
        print(f"ATL07 in place, {r['layout']} with {r['chunk']}-segment chunks: {r['wall_s']:.2f} s, "
              f"{r['bytes'] / 1e6:.1f} MB of {r['file_bytes'] / 1e6:.0f} MB, {r['requests']} requests")
    print(f"network model: {net['label'] if net else 'off (loopback)'}")
    print(f"bench took {results['details']['bench_step_s']['total']:.0f} s; results in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
