"""ATL07 read in place (``atl07_access=direct``): the seed day's two full-size granules, three ways.

* ``blockcache`` — today's way: s3fs with its 1 MiB block cache (core.access.s3access.open_granule),
  h5py reading through it, one GET per block missed, one after another;
* ``rangefile`` — core.access.rangefile.RangeFile, no sidecar: h5py reads the metadata on demand
  (``readahead`` bytes per miss), the data chunks come in waves (core.science.atl07 / core.access.inplace);
* ``sidecar`` — the same with the granule's DMR++ published beside it: all metadata and every
  beam's locations in one wave before h5py opens the file, the bbox rows' chunks in a second.

Each run is a fresh interpreter with its own sandbox over the full scene's two ATL07 granules
behind the network model (``lambda-us-west-2``, reset before the reads: full burst, RNG at its
seed); it reads both granules one after the other, or side by side in two threads (``--threads``),
and reports wall time, bytes and requests the reader counted and what the model's ledger accounted
(S3 requests, first-byte seconds). Every read is checked against the local file's.

    .venv/bin/python -m bench.atl07_direct [--repeats 1] [--readahead 65536,1048576] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from bench.common import NETWORK_DEFAULT, REPO, emit, median, peak_rss_mb, run_child

SEED_BBOX = (-62.8, 81.7, -56.4, 83.0)


def _same(a, b) -> bool:
    import numpy as np

    return [x.beam for x in a.beams] == [x.beam for x in b.beams] and all(
        np.array_equal(x.time, y.time) and np.array_equal(x.lat, y.lat)
        and np.array_equal(x.height, y.height, equal_nan=True)
        for x, y in zip(a.beams, b.beams, strict=True))


def network_path_s(records) -> float:
    """Seconds in which at least one S3 request was in the model's hands (set-up, first byte or
    body): the part of the wall time the modelled network accounts for, whatever the machine's
    load did to the rest (this machine is shared; Lambda's CPU is not)."""
    spans = sorted((r.started, max(r.started + r.connect_s + r.first_byte_s,
                                   (r.body_started or r.started) + r.body_s)) for r in records)
    total, end = 0.0, float("-inf")
    for a, b in spans:
        if b > end:
            total += b - max(a, end)
            end = b
    return round(total, 3)


def modelled_s(calls: list[list[int]], parallel: int) -> float:
    """The seconds the reader's fetches cost at the model's median figures, whatever this shared
    machine's load: each call (a wave side by side, or one miss) in turn; within one, requests
    on ``parallel`` connections, each the median first byte plus its bytes at one connection's
    rate, and all of them no faster than the sustained aggregate rate."""
    from sandbox.netmodel import MB, NetworkConfig

    cfg = NetworkConfig()
    total = 0.0
    for sizes in calls:
        slots = [0.0] * min(parallel, len(sizes))
        for n in sorted(sizes, reverse=True):
            i = slots.index(min(slots))
            slots[i] += cfg.latency_ms / 1e3 + n / (cfg.conn_mbps * MB)
        total += max(max(slots), sum(sizes) / (cfg.aggregate_mbps * MB))
    return round(total, 3)


def child(way: str, threads: bool, readahead: int | None, parallel: int | None, workdir: Path,
          layout: str = "v007", chunk: int | None = None) -> dict:
    from core.access.credentials import S3CredentialsProvider
    from core.access.earthdata import EarthdataSession, StaticToken
    from core.access.s3access import open_granule, open_s3_filesystem
    from core.model import BBox
    from core.science.atl07 import open_atl07_in_place, read_atl07
    from sandbox.scene import build_scene
    from sandbox.services import Sandbox

    from sandbox.scene import ATL07_CHUNK

    scene = build_scene(REPO / ".sandbox-cache", extent="full", atl07_layout=layout, atl07_chunk=chunk or ATL07_CHUNK)
    atl07 = sorted((g for g in scene.granules if g.daac == "nsidc"), key=lambda g: g.file_name)
    bbox = BBox(*SEED_BBOX)
    daacs = ("podaac", "nsidc") if way == "sidecar" else ("podaac",)
    with Sandbox(SimpleNamespace(granules=atl07), workdir=workdir, network=NETWORK_DEFAULT, dmrpp_daacs=daacs) as sb:
        settings = sb.settings if parallel is None else sb.settings.replace(s3_parallel=parallel)
        session = EarthdataSession(settings, StaticToken(sb.edl_token))
        provider = S3CredentialsProvider(session, settings.s3credentials_endpoints["NSIDC_CPRD"])
        fs = open_s3_filesystem(provider, settings)
        fs.info(f"{atl07[0].bucket}/{atl07[0].key}")  # credentials and a pooled connection, as in a task
        local = {g.file_name: read_atl07(g.path, bbox=bbox, margin_deg=settings.bbox_margin_deg) for g in atl07}
        per: dict[str, dict] = {}

        def read(g) -> None:
            t0 = time.perf_counter()
            url = sb.links(g)["s3"]
            calls: list[list[int]] = []
            if way == "blockcache":
                fh, byte_map = open_granule(fs, url, settings), None
                fetcher = fh.cache.fetcher

                def fetch_block(start, end):
                    calls.append([end - start])
                    return fetcher(start, end)

                fh.cache.fetcher = fetch_block
            else:
                fh, byte_map = open_atl07_in_place(fs, url, settings)
                if readahead is not None:
                    fh.readahead = readahead
                fetch_many = fh.fetch_many

                def logged(ranges):
                    calls.append([b - a for a, b in ranges])
                    return fetch_many(ranges)

                fh.fetch_many = logged
            with fh:
                got = read_atl07(fh, bbox=bbox, margin_deg=settings.bbox_margin_deg, byte_map=byte_map)
            per[g.file_name] = {"wall_s": round(time.perf_counter() - t0, 3), "bytes": int(fh.bytes_fetched),
                                "requests": int(fh.fetch_requests), "sidecar": byte_map is not None,
                                "fetch_calls": len(calls), "modelled_s": modelled_s(calls, settings.s3_parallel),
                                "identical": _same(got, local[g.file_name])}

        sb.netmodel.reset()
        t0 = time.perf_counter()
        if threads:
            workers = [threading.Thread(target=read, args=(g,)) for g in atl07]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        else:
            for g in atl07:
                read(g)
        wall = time.perf_counter() - t0
        s3 = sb.netmodel.ledger.summary()["by_app"].get("aws", {})
        s3["network_path_s"] = network_path_s(sb.netmodel.ledger.snapshot("aws"))
    return {"way": way, "layout": layout, "chunk": chunk or ATL07_CHUNK, "threads": threads, "readahead": readahead,
            "parallel": settings.s3_parallel, "file_bytes": sum(g.size_bytes for g in atl07),
            "wall_s": round(wall, 3), "granules": per, "bytes": sum(p["bytes"] for p in per.values()),
            "requests": sum(p["requests"] for p in per.values()), "s3_ledger": s3,
            "modelled_s": round(sum(p["modelled_s"] for p in per.values()), 3),
            "identical": all(p["identical"] for p in per.values()), "peak_rss_mb": peak_rss_mb()}


LAYOUTS = (("v006", 10_000), ("v007", 10_000), ("v007", 100_000))


def layouts() -> list[dict]:
    """The two granules read in place, both side by side, from each scene layout (issue 26): the
    v006 twin, Release 007 paged with 10,000-segment chunks (v006's) and with 100,000 (ATL03
    v007's photon-rate chunks). One fresh interpreter each; the scene variants are built on first use."""
    out = []
    for layout, chunk in LAYOUTS:
        r = run_child("bench.atl07_direct", ["--child", "rangefile", "--threads", "--layout", layout,
                                             "--chunk", str(chunk)], timeout=1800)
        out.append({k: r[k] for k in ("layout", "chunk", "wall_s", "bytes", "requests", "file_bytes", "modelled_s",
                                      "identical")} | {"network_path_s": r["s3_ledger"].get("network_path_s"),
                                                       "s3_requests": r["s3_ledger"].get("requests")})
        print(f"  atl07 in place, {layout} chunks {chunk}: {r['wall_s']:.2f} s, {r['bytes'] / 1e6:.1f} MB of "
              f"{r['file_bytes'] / 1e6:.0f} MB in {r['requests']} requests", file=sys.stderr, flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=("blockcache", "rangefile", "sidecar"))
    ap.add_argument("--threads", action="store_true")
    ap.add_argument("--readahead", default="", help="child: bytes; parent: comma-separated list for 'rangefile'")
    ap.add_argument("--parallel", type=int, default=None, help="settings.s3_parallel (default: the setting's)")
    ap.add_argument("--workdir", default="")
    ap.add_argument("--layout", default="v007", help="child: the scene's ATL07 layout (v007 paged, v006)")
    ap.add_argument("--chunk", type=int, default=None, help="child: the scene's segment-rate chunk size")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    if args.child:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="atl07-direct-") as tmp:
            emit(child(args.child, args.threads, int(args.readahead) if args.readahead else None, args.parallel,
                       Path(args.workdir or tmp), args.layout, args.chunk))
        return 0

    runs = [("blockcache", None), ("sidecar", None), ("rangefile", None)]
    runs += [("rangefile", int(r)) for r in args.readahead.split(",") if r]
    results = []
    for threads in (False, True):
        for way, readahead in runs:
            reps = []
            for _ in range(args.repeats):
                extra = ["--threads"] if threads else []
                extra += ["--readahead", str(readahead)] if readahead else []
                extra += ["--parallel", str(args.parallel)] if args.parallel else []
                reps.append(run_child("bench.atl07_direct", ["--child", way, *extra], timeout=1800))
            best = dict(reps[0])
            best["wall_s"] = median(r["wall_s"] for r in reps)
            best["repeats"] = [r["wall_s"] for r in reps]
            results.append(best)
            s3 = best["s3_ledger"]
            print(f"{way:10s} ra={best['readahead'] or 'default'!s:>8} threads={threads!s:5} "
                  f"wall {best['wall_s']:6.2f} s  bytes {best['bytes'] / 1e6:7.1f} MB  "
                  f"requests {best['requests']:4d}  modelled {best['modelled_s']:5.2f} s  "
                  f"S3 ledger: {s3.get('requests')} req, first byte {s3.get('first_byte_s')} s, "
                  f"network path {s3.get('network_path_s')} s  identical={best['identical']}",
                  file=sys.stderr, flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
