"""A scientist's study (issue 23): memory flat in the granules of a date, and a season's dates
through the Distributed Map.

**Granules per date.** One date (2019-06-22, the seed box) with K = 1, 2, 4, 8, 16 real-size
ATL07 granules. The scene has two (246 and 243 MB); CMR's emulator lists them **under several
names** (K copies cycling over the two, each a granule of its own: its own title, concept id,
object key and revision ``_rr`` in the file name, the same bytes), so every copy is really
downloaded through TEA and read. K = 2 is the seed date itself (``task_peak_rss_mb``). Each K
runs ``handlers.colocate`` in a fresh interpreter (``bench.fanout --child``) against a sandbox of
its own with the network model on: its peak RSS (VmHWM, read by the child) and wall time are its
own. ``rss_growth_16_granules`` = peak at the largest K / peak at K = 1.

**A season.** The whole Arctic (``ARCTIC_BBOX``) for 30 dates around the scene's date, through
the real ASL's Distributed Map in moto (``bench.scale.run_request``), the data date with 8 ATL07
granules (names as above) run in a cold child (its peak RSS), the other dates in this process:
wall, per-invocation peak RSS, the largest state payload, and cost per date (formula in
:func:`season_cost`). Then a 10-year global request (2016-12-01..2026-11-30): the real Plan
handler trims it to the dates ATL07 can have (CMR's collection extents) and writes its plan; the
largest of its output, a Map item's input and the season's payloads over 256 KiB is
``max_state_payload_fraction`` (on the distributed path no other payload depends on the dates).

    PYTHONPATH=src:. .venv/bin/python -m bench.study [--quick] [--network SPEC]

``--quick``: K = 1, 2, 16 (minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

from bench.common import run_child
from bench.fanout import LAMBDA_GB_S_USD, LAMBDA_REQUEST_USD, colocate_memory_mb

SEED_BBOX = [-62.8, 81.7, -56.4, 83.0]
ARCTIC_BBOX = [-180.0, 60.0, 180.0, 90.0]
KS = (1, 2, 4, 8, 16)
KS_QUICK = (1, 2, 16)
SEASON_DATES = 30
SEASON_K = 8
TEN_YEARS = ("2016-12-01", "2026-11-30")
SFN_TRANSITION_USD = 0.025 / 1000


def named_copies(scene, k: int):
    """The scene with its ATL07 granules listed K times (cycling over the originals), each copy
    under names of its own (title, concept id, key, the file name's revision) and the same file."""
    atl07 = [g for g in scene.granules if g.short_name.startswith("ATL07")]
    others = [g for g in scene.granules if not g.short_name.startswith("ATL07")]
    copies = []
    for i in range(k):
        g = atl07[i % len(atl07)]
        rev = i // len(atl07) + 1
        name = g.file_name if rev == 1 else g.file_name.replace("_01.h5", f"_{rev:02d}.h5")
        head, _, provider = g.concept_id.partition("-")
        copies.append(dataclasses.replace(g, concept_id=g.concept_id if rev == 1 else f"{head}{rev:02d}-{provider}",
                                          title=name, file_name=name, key=g.key.rsplit("/", 1)[0] + "/" + name))
    return dataclasses.replace(scene, granules=copies + others)


def one_date(scene, k: int, workdir: Path, network: str | None) -> dict:
    """The seed date with K ATL07 granules, in a cold child: peak RSS and wall."""
    from bench.e2e import CountedSandbox

    with CountedSandbox(workdir / f"k{k}", network, scene=named_copies(scene, k)) as csb:
        # the ColocateFunction's environment (template.yaml) where it matters for memory
        env = csb.env(COLOC_OUTPUT_PREFIX=f"bench-study-{uuid.uuid4().hex[:8]}", MALLOC_ARENA_MAX="2")
        event = {"bbox": SEED_BBOX, "date": scene.date.isoformat()}
        out = run_child("bench.fanout", ["--child", "colocate", json.dumps(event)], env=env, timeout=1800)
    day = ((out.get("result") or {}).get("dates") or [{}])[0]
    counts = day.get("counts") or {}
    return {"k": k, "status": day.get("status"), "error": out.get("error") or day.get("error"),
            "atl07_granules": counts.get("atl07_granules"), "segments": counts.get("segments"),
            "matched": counts.get("matched"), "peak_rss_mb": out["peak_rss_mb"],
            "run_s": out["run_s"], "import_s": out["import_s"]}


def season_cost(f: dict, memory_mb: int) -> dict:
    """Cost per date of the season, from its measured invocations:

        GB-s/date = (Σ colocate seconds (cold import + run for the data dates) / dates) × memory / 1024
        USD/date  = GB-s/date × LAMBDA_GB_S_USD + LAMBDA_REQUEST_USD
                    + (parent transitions / dates + 4 child transitions) × SFN_TRANSITION_USD
    (arm64 us-west-2 list prices; the data date's seconds scale with its granules, so a season where
    every date has data costs the data date's GB-s per date: ``usd_per_data_date``)."""
    n = f["dates"]
    data = f["data_dates_measured"]
    data_s = sum((d.get("import_s") or 0) + (d.get("run_s") or 0) for d in data)
    empty_s = (f.get("empty_date_task_s_mean") or 0.0) * (n - len(data))
    gb_s_date = (data_s + empty_s) / n * memory_mb / 1024
    sfn = (f["parent_transitions"] / n + 4) * SFN_TRANSITION_USD
    per_data = (data_s / len(data) if data else 0.0) * memory_mb / 1024
    return {"gb_s_per_date": round(gb_s_date, 2),
            "usd_per_date": round(gb_s_date * LAMBDA_GB_S_USD + LAMBDA_REQUEST_USD + sfn, 6),
            "gb_s_per_data_date": round(per_data, 2),
            "usd_per_data_date": round(per_data * LAMBDA_GB_S_USD + LAMBDA_REQUEST_USD + sfn, 6),
            "memory_mb": memory_mb}


def _through_map(scene, n_dates: int, bbox: list[float], workdir: Path, network: str | None, *,
                 start: date | None = None) -> dict:
    from bench import scale
    from bench.e2e import CountedSandbox

    with CountedSandbox(workdir, network, scene=scene) as csb:
        raw = scale.run_request(csb.sandbox, n_dates, start=start, bbox=bbox, timeout_s=3600.0)
        f = scale.summarize_run({**raw, "s3_requests": {}})
    f["peak_rss_mb_per_invocation"] = {c["date"]: c["peak_rss_mb"] for c in raw["calls"] if c.get("cold")}
    return f


def season(scene, workdir: Path, network: str | None) -> dict:
    """30 dates of the whole Arctic through the Distributed Map, the data date with SEASON_K granules."""
    from bench import scale

    start = date.fromordinal(scene.date.toordinal() - SEASON_DATES // 2)
    f = _through_map(named_copies(scene, SEASON_K), SEASON_DATES, ARCTIC_BBOX, workdir / "season", network,
                     start=start)
    keep = ("dates", "status", "n_failed", "n_dates_summarized", "wall_s", "map_span_s", "plan_s", "summarize_s",
            "data_dates_measured", "empty_date_task_s_mean", "largest_payload", "largest_payload_fraction",
            "largest_item_output_bytes", "largest_parent_state", "parent_transitions",
            "peak_rss_mb_per_invocation", "overhead_per_date_s")
    out = {k: f.get(k) for k in keep}
    out["cost"] = season_cost(f, colocate_memory_mb())
    out["payload_limit_bytes"] = scale.PAYLOAD_LIMIT_BYTES
    return out


def ten_years(scene, workdir: Path) -> dict:
    """A 10-year global request's Plan step, the real handler in the sandbox: what it trims (CMR's
    collection extents), its output (the parent state's input from then on), the S3 plan the
    Distributed Map reads, and a Map item's input. (A Map item's answer and the other states'
    payloads do not depend on the number of dates on the distributed path: the season measures
    them through the ASL. Running all ~3,000 kept dates through moto's Distributed Map stalled
    the sandbox on this machine.)"""
    from bench import scale
    from sandbox.deployment import call_handler, lambda_environment
    from sandbox.services import Sandbox

    first, last = TEN_YEARS
    request = {"bbox": [-180.0, -90.0, 180.0, 90.0], "start": first, "end": last, "radius_m": 1000.0}
    with Sandbox(scene, workdir=workdir / "ten-years") as sb:
        env = {**lambda_environment(sb), "COLOC_OUTPUT_PREFIX": f"bench-ten-{uuid.uuid4().hex[:8]}",
               "HOME": str(sb.workdir)}
        with scale._environ(env, drop=("EARTHDATA_TOKEN", "EARTHDATA_USERNAME", "EARTHDATA_PASSWORD", "NETRC")):
            from handlers import runtime

            runtime.reset()
            try:
                payload, is_error = call_handler("PlanFunction", "handlers.plan.handler", request)
            finally:
                runtime.reset()
        assert not is_error, payload
        plan = json.loads(payload)
        s3 = sb.boto3_client("s3")
        body = s3.get_object(Bucket=plan["plan"]["bucket"], Key=plan["plan"]["key"])["Body"].read()
    dates = json.loads(body)
    item = {"request": plan["request"], "date": dates[-1]}
    return {"request": request, "mode": plan["mode"], "trim": plan["trim"], "planned_dates": len(dates),
            "plan_output_bytes": len(payload.encode()), "plan_object_bytes": len(body),
            "item_input_bytes": len(json.dumps(item).encode())}


def measure(quick: bool = False, network: str | None = None, workdir: Path | None = None) -> dict:
    from sandbox.scene import build_scene
    from sandbox.services import scene_cache

    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="coloc-study-") as tmp:
            return measure(quick, network, Path(tmp))
    scene = build_scene(scene_cache())  # COLOC_SCENE_CACHE, else the checkout's .sandbox-cache
    t0 = time.perf_counter()
    per_k = [one_date(scene, k, workdir, network) for k in (KS_QUICK if quick else KS)]
    first, last = per_k[0], per_k[-1]
    seed = next(r for r in per_k if r["k"] == 2)
    out = {"per_k": per_k, "rss_growth": round(last["peak_rss_mb"] / first["peak_rss_mb"], 3),
           "rss_growth_k": [first["k"], last["k"]], "seed_date_peak_rss_mb": seed["peak_rss_mb"],
           "granules_named": "the scene's 2 real-size ATL07 granules listed K times by CMR under names of their own"}
    out["season"] = season(scene, workdir, network)
    ten = out["ten_years"] = ten_years(scene, workdir)
    largest = max(out["season"]["largest_payload"]["bytes"], ten["plan_output_bytes"], ten["item_input_bytes"])
    out["max_state_payload_bytes"] = largest
    out["max_state_payload_fraction"] = round(largest / out["season"]["payload_limit_bytes"], 4)
    out["max_state_payload_from"] = ("the largest of the season's payloads through the ASL and the 10-year "
                                     "request's Plan output and Map item input")
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def result_keys(r: dict) -> dict:
    """The study's keys of bench/results.json (targets in bench/run.py)."""
    return {"rss_growth_16_granules": r["rss_growth"], "max_state_payload_fraction": r["max_state_payload_fraction"],
            "season_cost_per_date_usd": r["season"]["cost"]["usd_per_date"]}


def update_results(r: dict, path: Path) -> None:
    """Run alone (``--results``): its keys and ``details.study`` into an existing results.json;
    ``task_peak_rss_mb`` becomes the study's seed date (the file's e2e and fan-out figures may be
    of older code; ``make bench`` takes the largest of the three)."""
    results = json.loads(path.read_text())
    results.update(result_keys(r))
    results["task_peak_rss_mb"] = r["seed_date_peak_rss_mb"]
    results.setdefault("details", {})["study"] = r
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")


def markdown(r: dict) -> str:
    lines = ["| K ATL07 granules | status | segments | peak RSS MB | run s |", "|---|---|---|---|---|"]
    lines += [f"| {p['k']} | {p['status']} | {p['segments']} | {p['peak_rss_mb']:.0f} | {p['run_s']:.1f} |"
              for p in r["per_k"]]
    s = r["season"]
    lines.append(f"\nrss growth K={r['rss_growth_k'][1]}/K={r['rss_growth_k'][0]}: {r['rss_growth']}; "
                 f"season ({s['dates']} dates): wall {s['wall_s']} s, largest payload "
                 f"{s['largest_payload']['bytes']} B ({s['largest_payload_fraction']:.4f}), "
                 f"peak RSS {s['peak_rss_mb_per_invocation']}, cost {s['cost']}")
    t = r["ten_years"]
    lines.append(f"ten years: trim {t['trim']}, plan output {t['plan_output_bytes']} B, item input "
                 f"{t['item_input_bytes']} B; largest payload {r['max_state_payload_bytes']} B "
                 f"({r['max_state_payload_fraction']:.4f} of 256 KiB)")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--network", default=None)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--results", default=None, help="update this results.json's study keys (bench/results.json)")
    a = p.parse_args(argv)
    r = measure(a.quick, a.network)
    if a.out:
        Path(a.out).write_text(json.dumps(r, indent=1, default=str) + "\n")
    if a.results:
        update_results(r, Path(a.results))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
