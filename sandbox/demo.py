"""`make demo`: the tutorial's seed case end to end in the offline sandbox.

Builds (or reuses) the seed scene, starts the sandbox, invokes the *Lambda handler* with
``events/direct.json`` exactly as Lambda would, copies the outputs from the output bucket to
``--out`` and prints a summary. Nothing here is special-cased for the demo: the handler reads
its settings from the environment the sandbox provides.

The sandbox models Lambda's network in us-west-2 by default (``--network``, else
$COLOC_SANDBOX_NETWORK, else ``lambda-us-west-2``; docs/NETWORK.md), so the times it prints are
modelled Lambda times, with the delays the model accounted for; ``--network off`` gives loopback.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

from sandbox.lambda_context import LambdaContext

REPO = Path(__file__).resolve().parents[1]


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def network_lines(network, ledger_summary: dict | None, wall_s: float) -> list[str]:
    """The time line, labelled by the world it was measured in, and the model's accounting."""
    if network.config is None:
        return [f"wall time {wall_s:.1f} s on loopback (no network model: not a Lambda time)"]
    n = ledger_summary
    lines = [
        f"modelled Lambda time {wall_s:.1f} s (sandbox network model {network.label})",
        f"  the model accounted for {n['requests']} requests on {n['new_connections']} new connections, "
        f"{_mb(n['bytes'])}: connection set-up {n['connect_s']:.2f} s, first byte {n['first_byte_s']:.2f} s, "
        f"transfer {n['body_s']:.2f} s (summed over requests, which may overlap)",
    ]
    for app, a in n["by_app"].items():
        lines.append(f"    {app:7s} {a['requests']:4d} requests, {a['new_connections']:3d} new connections, "
                     f"{_mb(a['bytes']):>9s}, set-up {a['connect_s']:.2f} s, first byte {a['first_byte_s']:.2f} s, "
                     f"transfer {a['body_s']:.2f} s")
    return lines


def summarize(result: dict, wall_s: float, peak_rss_mb: float) -> str:
    lines = [f"request {result.get('request_id')}"]
    for day in result.get("dates", []):
        if day.get("status") != "complete":
            lines.append(f"  {day.get('date')}: FAILED {day.get('error')}")
            continue
        counts, inputs = day["counts"], day["inputs"]
        lines.append(
            f"  {day['date']}: ATL07 granules {counts['atl07_granules_found']} found, "
            f"L2P granules {counts['sst_granules_found']} found, {counts['skipped']} skipped"
        )
        for skip in inputs["skipped"]:
            lines.append(f"      skipped {skip['collection']} {skip['granule']}: {skip['reason']}")
        for p in day["products"]:
            lines.append(
                f"    {p['atl07_granule']}: {p['segments']} segments in bbox, {p['matched']} matched "
                f"({p.get('atl07_access', '?')}, {_mb(p.get('atl07_bytes', 0))})"
            )
        lines.append("    L2P bytes read in place (fetched / object size):")
        for name, r in sorted(day["bytes"]["sst_per_granule"].items()):
            lines.append(
                f"      {name}: {_mb(r['bytes_fetched'])} / {_mb(r['size'])} = {100 * r['fraction']:.1f} %"
            )
        lines.append(f"    segments {counts['segments']}, matched {counts['matched']}; ATL07 downloaded "
                     f"{_mb(day['bytes']['atl07_downloaded'])}, L2P read in place {_mb(day['bytes']['sst_fetched'])}")
    lines.append(f"peak RSS {peak_rss_mb:.0f} MB")
    return "\n".join(lines)


def request_outputs(result: dict, out: Path) -> list[str]:
    """The request-level netCDF and Parquet of the complete dates, from the products in ``out``
    (as Summarize builds them in the service: core.products.request_outputs), and how to read them."""
    import xarray as xr

    from core.products.request_outputs import NETCDF_NAME, write_request_products

    request_id = str(result.get("request_id"))
    complete = [d for d in result.get("dates", []) if d.get("status") == "complete"]
    if not complete:
        return []

    def products(day: dict):
        for p in day.get("products", []):
            nc = p.get("outputs", {}).get("netcdf")
            if nc:
                with xr.open_dataset(out / Path(nc).name, engine="h5netcdf") as ds:
                    yield ds

    netcdf = out / NETCDF_NAME.format(request_id=request_id)
    parquet = out / "parquet"
    made = write_request_products(((d["date"], products(d)) for d in complete), netcdf,
                                  parquet / f"request_id={request_id}", request_id=request_id,
                                  request=complete[0].get("request"))
    # the product to show as a table: the first one with matches (the 05:53 track's in the seed case)
    product = next((out / Path(p["outputs"]["netcdf"]).name for d in complete for p in d.get("products", [])
                    if p.get("matched") and p.get("outputs", {}).get("netcdf")), None)
    first, last = complete[0]["date"], complete[-1]["date"]
    return [
        f"request-level results: {made.matched} matched segments (SYNTHETIC: made from the sandbox's scene)",
        f"  {netcdf.name}: every matched segment, CF trajectories (xarray.open_dataset)",
        "  parquet/: the same rows, one per segment, Hive-partitioned request_id=/date= (the Athena table's layout)",
        "query them:",
        f"  DuckDB:  duckdb.sql(\"SELECT date, count(*), avg(sst) FROM read_parquet('{out}/parquet/**/*.parquet', "
        "hive_partitioning = true) GROUP BY date\").show()",
        f"  pandas:  pandas.read_parquet('{out}/parquet')   (units and descriptions: .attrs['columns'])",
        *([f"  a product, one row per segment: from core.products.request_outputs import segments_frame; "
           f"segments_frame(xarray.open_dataset('{product}'))"] if product else []),
        f"  deployed, Athena: SELECT * FROM \"atl07_sst_colocation\".\"matches\" WHERE request_id = '<job id>' "
        f"AND \"date\" BETWEEN DATE '{first}' AND DATE '{last}'",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-output", help="local folder for the outputs")
    parser.add_argument("--event", default=str(REPO / "events" / "direct.json"))
    parser.add_argument("--cache", default=str(REPO / ".sandbox-cache"), help="scene cache folder")
    parser.add_argument("--network", default=None, help="off | lambda-us-west-2 | key=value,... "
                        "(default: $COLOC_SANDBOX_NETWORK, else lambda-us-west-2)")
    parser.add_argument("--scene", choices=("full", "cut"), default="full",
                        help="the real-size seed scene, or its ATL07 tracks cut to ±200 km (the tests' one)")
    args = parser.parse_args(argv)

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

    from sandbox.netmodel import choose
    from sandbox.scene import build_scene
    from sandbox.services import Sandbox

    network = choose(args.network, "lambda-us-west-2")

    t_scene = time.monotonic()
    print("Starting the sandbox: building or loading the synthetic seed scene…", flush=True)
    scene = build_scene(Path(args.cache), extent=args.scene)
    print(f"scene ready in {time.monotonic() - t_scene:.1f} s ({len(scene.granules)} granules)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"network: {network.label}", flush=True)
    with Sandbox(scene, workdir=Path(args.cache) / "run", network=network.config or "off") as sb:
        os.environ.update(sb.env())
        from handlers.colocate import handler  # reads settings from the sandbox environment

        event = json.loads(Path(args.event).read_text())
        if sb.netmodel is not None:
            sb.netmodel.reset()  # account the handler's traffic only
        t0 = time.monotonic()
        result = handler(event, LambdaContext())
        wall = time.monotonic() - t0
        ledger = sb.netmodel.ledger.summary() if sb.netmodel is not None else None
        if "error" in result:
            print(json.dumps(result, indent=2))
            return 1
        s3 = sb.boto3_client("s3")
        manifests = []  # the handler returns a compact summary; the full manifest is in the bucket
        for day in result.get("dates", []):
            if day.get("status") != "complete":
                manifests.append(day)
                continue
            for key in day.get("outputs", []):
                s3.download_file(sb.settings.output_bucket, key, str(out / Path(key).name))
            manifest_path = out / f"manifest_{day['date']}.json"
            s3.download_file(sb.settings.output_bucket, day["manifest_key"], str(manifest_path))
            manifests.append(json.loads(manifest_path.read_text()))
        result = {**result, "dates": manifests}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(summarize(result, wall, peak))
    print("\n".join(network_lines(network, ledger, wall)))
    request_lines = request_outputs(result, out)
    print(f"outputs in {out.resolve()}:")
    for path in sorted(out.rglob("*")):
        if path.is_file():
            print(f"  {path.relative_to(out)} ({path.stat().st_size / 1e3:.0f} kB)")
    print("\n".join(request_lines))
    return 0 if all(d.get("status") == "complete" for d in result.get("dates", [])) else 1


if __name__ == "__main__":
    sys.exit(main())
