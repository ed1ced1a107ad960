"""The right read for an L2P file (issue 13): chunk-exact ranges, the 1 MiB block cache, or the
whole object, measured in the modelled network.

The seed case's 8 candidate L2P granules (full-size scene), each opened once and asked for the
windows of the seed bbox's segments of the ATL07 granules within 3 h of it (locate + window per
ATL07 granule, as the pipeline does with one open granule per date; in the seed case that is one
track per L2P granule), read with each ``l2p_read`` mode, one granule
at a time and all 8 side by side in a thread pool. Each measurement runs in a fresh interpreter
(bench.common) against one sandbox with the network model on; the network ledger of each run
gives first-byte and transfer seconds.

    .venv/bin/python -m bench.l2p_read [--access s3|https] [--out results.json]

Reported per run: wall seconds, bytes and requests the granules fetched, the ledger's figures,
and for "chunks" the bytes over the exact chunk floor split into metadata, sidecar, longitude
of in-band chunks outside the windows, and what RangeFile's coalescing brought along.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import numpy as np

from bench.common import REPO, child_env, emit, peak_rss_mb, run_child

SEED_BBOX = (-62.8, 81.7, -56.4, 83.0)
# the seed case's candidate granules (its manifest's sst_per_granule, bench/results.json)
CANDIDATES = (
    "20190622032501-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0.nc",
    "20190622050001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0.nc",
    "20190622050501-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0.nc",
    "20190622064001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0.nc",
    "20190622064501-JPL-L2P_GHRSST-SSTskin-MODIS_A-N-v02.0-fv01.0.nc",
    "20190622064501-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0.nc",
    "20190622082001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0.nc",
    "20190622181001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0.nc",
)
MODES = ("chunks", "blocks", "whole")
RADIUS_M = 1000.0
MAX_DT_S = 3 * 3600  # the seed case's max time difference (the service's default)


def segments(scene, out: Path) -> Path:
    """The seed bbox's ATL07 segments of each ATL07 granule (lat, lon), saved for the children."""
    from core.model import BBox
    from core.science.atl07 import read_atl07

    arrays = {}
    for g in scene.granules:
        if g.daac == "nsidc":
            granule = read_atl07(g.path, bbox=BBox(*SEED_BBOX))
            arrays[f"{g.file_name}:lat"] = np.concatenate([b.lat for b in granule.beams])
            arrays[f"{g.file_name}:lon"] = np.concatenate([b.lon for b in granule.beams])
            times = np.concatenate([b.time for b in granule.beams]).astype("datetime64[s]").astype(np.int64)
            arrays[f"{g.file_name}:time"] = np.array([times.min(), times.max()])
    np.savez(out, **arrays)
    return out


# --- child --------------------------------------------------------------------------------------
def _read_one(g, segs: dict, access: str, services, settings) -> dict:
    from core.pipeline.sst_granules import open_sst_granule

    t0 = time.perf_counter()
    windows = []
    with open_sst_granule(g, access, session=services.http, s3_filesystem=services.s3_filesystem,
                          settings=settings) as granule:
        for lat, lon in segs:
            win = granule.locate(lat, lon, RADIUS_M)
            if win is not None:
                granule.window(*win)
                windows.append([win[0].start, win[0].stop, win[1].start, win[1].stop])
        out = {"wall_s": round(time.perf_counter() - t0, 3), "size": granule.size,
               "bytes_fetched": granule.bytes_fetched, "requests": granule.fetch_requests,
               "sidecar_bytes": granule.sidecar_bytes, "windows": windows}
        if granule.byte_map:  # longitude decoded for in-band chunks, against the windows' own
            lon = granule.byte_map.get(f"/{granule.lon_name}")
            read = {c for c in lon.chunks if (c.position[-2], c.position[-1]) in granule._lon_read}
            in_windows = {c for w in windows for c in lon.chunks_in((slice(w[0], w[1]), slice(w[2], w[3])))}
            out["lon_read_bytes"] = sum(c.nbytes for c in read)
            out["lon_outside_windows_bytes"] = sum(c.nbytes for c in read - in_windows)
    return out


def child(args: argparse.Namespace) -> dict:
    from core.access.cmr import Granule
    from core.access.earthdata import StaticToken
    from core.config import Settings
    from core.pipeline.services import build_services
    from core.results import LocalOutputStore

    spec = json.loads(Path(args.spec).read_text())
    settings = Settings.from_env().replace(l2p_read=args.mode)
    services = build_services(settings, token_provider=StaticToken(os.environ["EARTHDATA_TOKEN"]),
                              output=LocalOutputStore(Path(tempfile.mkdtemp())))
    data = np.load(spec["segments"])
    tracks = sorted({k.split(":")[0] for k in data.files})
    granules = [Granule(concept_id=g["title"], title=g["title"], producer_granule_id=g["title"],
                        size_bytes=g["size"], start=None, end=None, polygon=None, https_url=g["https"],
                        s3_url=g["s3"], s3credentials_url=g["s3credentials"], provider="POCLOUD")
                for g in spec["granules"]]
    def segs(g):
        """The tracks within max_dt (3 h) of the L2P granule's start, as the pipeline pairs them."""
        start = np.datetime64(datetime.strptime(g.title[:14], "%Y%m%d%H%M%S"), "s").astype(np.int64)
        return [(data[f"{n}:lat"], data[f"{n}:lon"]) for n in tracks
                if data[f"{n}:time"][0] - MAX_DT_S <= start <= data[f"{n}:time"][1] + MAX_DT_S]

    t0 = time.perf_counter()
    if args.parallel > 1:
        with ThreadPoolExecutor(args.parallel) as pool:
            per = list(pool.map(lambda g: _read_one(g, segs(g), args.access, services, settings), granules))
    else:
        per = [_read_one(g, segs(g), args.access, services, settings) for g in granules]
    return {"wall_s": round(time.perf_counter() - t0, 3), "peak_rss_mb": peak_rss_mb(),
            "per_granule": dict(zip((g.title for g in granules), per, strict=True))}


# --- parent -------------------------------------------------------------------------------------
def union_floor(path: Path, windows: list[list[int]]) -> dict:
    """bench.floor's chunk floor for several windows of one granule: latitude + the union of the
    windows' chunks of each variable read for a window."""
    import h5py

    from bench.floor import _chunks, _intersects, _window_variables

    with h5py.File(path, "r") as f:
        names = {k for k, v in f.items() if isinstance(v, h5py.Dataset)}
        lat, window_vars = _window_variables(names)
        total = sum(n for name in names for _, n in _chunks(f[name]))
        floor = sum(n for _, n in _chunks(f[lat]))
        if windows:
            for name in window_vars:
                ds = f[name]
                shape = ds.chunks or ds.shape
                floor += sum(n for off, n in _chunks(ds)
                             if ds.ndim < 2 or any(_intersects(off, shape, ((w[0], w[1]), (w[2], w[3])))
                                                   for w in windows))
    return {"floor_bytes": floor, "metadata_bytes": path.stat().st_size - total}


def measure(access: str, workdir: Path) -> dict:
    from sandbox.scene import build_scene
    from sandbox.services import Sandbox

    scene = build_scene(REPO / ".sandbox-cache", extent="full")
    seg_file = segments(scene, workdir / "segments.npz")
    by_name = {g.file_name: g for g in scene.granules}
    runs = {}
    with Sandbox(scene, workdir=workdir / "sandbox", network="lambda-us-west-2") as sb:
        spec = {"segments": str(seg_file),
                "granules": [{"title": n, "size": by_name[n].size_bytes, **sb.links(by_name[n])} for n in CANDIDATES]}
        spec_file = workdir / "spec.json"
        spec_file.write_text(json.dumps(spec))
        env = child_env(sb.env())
        for mode in MODES:
            for parallel in (1, 8):
                sb.netmodel.reset()
                result = run_child("bench.l2p_read", ["--child", "--mode", mode, "--parallel", str(parallel),
                                                      "--access", access, "--spec", str(spec_file)], env=env,
                                   timeout=1200)
                result["network"] = sb.netmodel.ledger.summary()
                runs[f"{mode}/{parallel}"] = result
                print(f"{mode} x{parallel}: {result['wall_s']} s", file=sys.stderr)
    floors = {}
    for name in CANDIDATES:
        windows = runs["chunks/1"]["per_granule"][name]["windows"]
        floors[name] = union_floor(by_name[name].path, windows)
    return {"access": access, "runs": runs, "floors": floors, "table": table(runs, floors)}


def table(runs: dict, floors: dict) -> dict:
    floor = sum(f["floor_bytes"] for f in floors.values())
    out = {"floor_bytes": floor, "metadata_bytes": sum(f["metadata_bytes"] for f in floors.values())}
    for key, run in runs.items():
        per = run["per_granule"].values()
        fetched = sum(p["bytes_fetched"] for p in per)
        net = run["network"]
        row = {"wall_s": run["wall_s"], "bytes": fetched, "requests": sum(p["requests"] for p in per),
               "ratio_to_floor": round(fetched / floor, 4), "ledger_requests": net["requests"],
               "first_byte_s": net["first_byte_s"], "body_s": net["body_s"],
               "bandwidth_wait_s": net["bandwidth_wait_s"], "peak_rss_mb": run["peak_rss_mb"]}
        if key.startswith("chunks"):
            sidecar = sum(p["sidecar_bytes"] for p in per)
            lon_out = sum(p.get("lon_outside_windows_bytes", 0) for p in per)
            over = fetched - floor
            row["over_floor"] = {"total": over, "metadata": out["metadata_bytes"], "sidecar": sidecar,
                                 "lon_in_band_outside_windows": lon_out,
                                 "coalesced_and_other": over - out["metadata_bytes"] - sidecar - lon_out}
        out[key] = row
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", action="store_true")
    p.add_argument("--mode", choices=MODES)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--access", choices=("s3", "https"), default="s3")
    p.add_argument("--spec")
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.child:
        emit(child(args))
        return 0
    with tempfile.TemporaryDirectory(prefix="l2p-read-") as tmp:
        result = measure(args.access, Path(tmp))
    text = json.dumps(result, indent=1, default=str)
    if args.out:
        Path(args.out).write_text(text)
    print(json.dumps(result["table"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
