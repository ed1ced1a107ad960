"""One full-size ATL07 download through TEA with the network model on, one stream vs parallel ranges.

    .venv/bin/python -m bench.download [--parallel 1,4,8,16] [--network SPEC]

Not part of ``make bench``: the figures behind bench/README.md's "Parallel ranged downloads".
For each setting: the wall time, and what the model's ledger accounted for (requests, new
connections, the modelled span from the first request to the end of the last body, and the
time with a body in flight).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.common import NETWORK_DEFAULT, REPO


def _modelled(records) -> dict:
    bodies = sorted((r.body_started, r.body_started + r.body_s) for r in records if r.body_started is not None)
    busy, end = 0.0, float("-inf")
    for a, b in bodies:
        busy += max(0.0, b - max(a, end))
        end = max(end, b)
    return {
        "requests": len(records),
        "new_connections": sum(r.new_connection for r in records),
        "bytes": sum(r.bytes for r in records),
        "modelled_span_s": round(max(b for _, b in bodies) - min(r.started for r in records), 3),
        "modelled_body_busy_s": round(busy, 3),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parallel", default="1,4,8,16")
    ap.add_argument("--part-mib", type=int, default=16)
    ap.add_argument("--network", default=NETWORK_DEFAULT)
    args = ap.parse_args(argv)

    from core.access.download import stream_download
    from core.access.earthdata import EarthdataSession, StaticToken
    from sandbox.scene import build_scene
    from sandbox.services import Sandbox

    scene = build_scene(REPO / ".sandbox-cache", extent="full")
    g = next(g for g in scene.granules if g.daac == "nsidc")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Sandbox(scene, workdir=Path(tmp) / "sb", network=args.network) as sb:
        url = sb.links(g)["https"]
        for parallel in (int(p) for p in args.parallel.split(",")):
            with EarthdataSession(sb.settings, StaticToken(sb.edl_token)) as session:
                sb.netmodel.reset()  # a full burst bucket and fresh accounts for each setting
                t0 = time.perf_counter()
                path = stream_download(session, url, Path(tmp) / "dl", expected_size=g.size_bytes,
                                       parallel=parallel, part_size=args.part_mib << 20)
                wall = time.perf_counter() - t0
                size = path.stat().st_size
                path.unlink()
            records = sb.netmodel.ledger.snapshot()
            row = {"parallel": parallel, "bytes": size, "wall_s": round(wall, 3), **_modelled(records)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = rows[0]
    for row in rows:
        print(f"parallel={row['parallel']:>2}: wall {row['wall_s']:.2f} s, modelled {row['modelled_span_s']:.2f} s "
              f"({base['modelled_span_s'] / row['modelled_span_s']:.2f}x), {row['requests']} requests, "
              f"{row['new_connections']} new connections, {row['bytes'] / row['modelled_span_s'] / 1e6:.0f} MB/s")


if __name__ == "__main__":
    main()
