"""End to end in the sandbox: the service's ``run_task`` vs the tutorial's way, seed case.

The sandbox's network model is on (``lambda-us-west-2`` unless ``--network`` or
$COLOC_SANDBOX_NETWORK say otherwise; docs/NETWORK.md): every byte either way of doing the work
receives pays Lambda's first-byte latency, connection set-up and bandwidth caps, and each run
records what the model accounted for (``network``). The model is reset before each run (full
burst, RNG at its seed), as for a fresh invocation.

The parent starts one sandbox and wraps every emulator / S3 server in a WSGI byte counter, so
bytes sent over HTTP (ATL07 downloads via the TEA redirect) and from S3 (GETs through the S3
proxy in front of moto) are counted on the server side, independently of the code measured.
Each run is a fresh interpreter (its own peak RSS); service and baseline runs alternate.
Service runs use a fresh output prefix each time, so no run finds a stored manifest.

Baseline = the tutorial, scaled to the same pairing the service does: for every ATL07 granule,
``requests.get(url).content`` of the whole file (through an Earthdata session, which the
tutorial got from .netrc), h5py read of lat/lon/time/height of all six beams; for every
readable L2P granule, ``s3fs.S3FileSystem(key, secret, token).open()`` with s3fs's
default caching, ``xr.open_dataset(f, decode_cf=False)`` + the tutorial's ``fix_attributes`` +
``xr.decode_cf``, then ``pyresample.kd_tree.resample_nearest`` over the full swath (radius
1000 m) for each ATL07 granule with its six beams concatenated (one call per pair, which is
kinder to the baseline than the tutorial's one call per beam).

A third kind of run, ``service_direct``, is the service with ``atl07_access=direct`` (ATL07 read
in place from S3 instead of downloaded). Each service run gets its floor (bench/floor.py): the
least wall time the modelled network and the run's own colocation CPU allow, and the exact
chunk floor of the L2P bytes for the windows its manifest records.

    .venv/bin/python -m bench.e2e [--repeats 3] [--network SPEC]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

from bench import floor
from bench.common import NETWORK_DEFAULT, REPO, child_env, emit, median, peak_rss_mb, proc_status, run_child

SEED = {"bbox": [-62.8, 81.7, -56.4, 83.0], "date": "2019-06-22", "radius_m": 1000.0}
BEAMS = ("gt1l", "gt1r", "gt2l", "gt2r", "gt3l", "gt3r")


# --- server-side byte counting ---------------------------------------------------------------
class ByteCounter:
    """WSGI middleware: bytes of every response body, by (server, method)."""

    def __init__(self, app, name: str, totals: dict, lock: threading.Lock):
        self.app, self.name, self.totals, self.lock = app, name, totals, lock

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "")
        path = environ.get("PATH_INFO", "")
        body = self.app(environ, start_response)
        try:
            for chunk in body:
                with self.lock:
                    self.totals[(self.name, method)] += len(chunk)
                    if method == "GET":
                        self.totals[("path", self.name, path)] += len(chunk)
                yield chunk
        finally:
            with self.lock:
                self.totals[(self.name, method, "requests")] += 1
            if hasattr(body, "close"):
                body.close()


class CountedSandbox:
    """The seed sandbox with the S3 proxy on (so S3 GETs pass a counter), counters everywhere and
    the network model (``network``: a spec, None = $COLOC_SANDBOX_NETWORK or the bench default)."""

    def __init__(self, workdir: Path, network: str | None = None, scene=None):
        from sandbox.netmodel import choose
        from sandbox.scene import build_scene
        from sandbox.services import Sandbox

        self.scene = scene or build_scene(REPO / ".sandbox-cache")
        self.network = choose(network, NETWORK_DEFAULT)
        self.sandbox = Sandbox(self.scene, workdir=workdir, s3_faults=True, network=self.network.config or "off")
        self.totals: dict = defaultdict(int)
        self.lock = threading.Lock()

    def __enter__(self):
        sb = self.sandbox.__enter__()
        for name, server in sb.servers.items():
            server.app = ByteCounter(server.app, name, self.totals, self.lock)
        return self

    def __exit__(self, *exc):
        self.sandbox.__exit__(*exc)

    def reset(self) -> None:
        with self.lock:
            self.totals.clear()
        if self.sandbox.netmodel is not None:
            self.sandbox.netmodel.reset()

    def network_summary(self) -> dict | None:
        """What the network model accounted for since the last reset (None when off)."""
        model = self.sandbox.netmodel
        return None if model is None else model.ledger.summary()

    def counted(self) -> dict:
        with self.lock:
            t = dict(self.totals)
        s3 = t.get(("s3api", "GET"), 0)
        s3_requests = t.get(("s3api", "GET", "requests"), 0)
        # ATL07 over HTTPS: the TEA endpoint redirects to a presigned URL served by the "s3" app
        http = sum(v for k, v in t.items() if len(k) == 2 and k[0] in ("s3", "nsidc", "onprem", "podaac"))
        # per S3 object (path-style /bucket/key), for the fraction of each granule actually served
        sizes = {f"/{g.bucket}/{g.key}": Path(g.path).stat().st_size for g in self.scene.granules}
        per_object = {p.rsplit("/", 1)[-1]: {"served": n, "size": sizes[p], "fraction": round(n / sizes[p], 4)}
                      for (kind, app, p), n in ((k, v) for k, v in t.items() if len(k) == 3 and k[0] == "path")
                      if app == "s3api" and p in sizes}
        # DMR++ sidecars read beside the granules (core.access.dmrpp): part of what an L2P read fetched
        sidecars = {p.rsplit("/", 1)[-1]: n for (kind, app, p), n in ((k, v) for k, v in t.items() if len(k) == 3
                                                                       and k[0] == "path") if p.endswith(".dmrpp")}
        return {"s3_get_bytes": s3, "s3_get_requests": s3_requests, "http_bytes": http, "s3_per_object": per_object,
                "s3_sidecar_bytes": sidecars,
                "network": self.network_summary()}

    def env(self, **extra) -> dict:
        return child_env({**self.sandbox.env(), **extra})


def _cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return round(r.ru_utime + r.ru_stime, 3)


# --- children ---------------------------------------------------------------------------------
def _quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING)


def child_service() -> dict:
    _quiet_logs()
    import boto3

    from core.access.earthdata import StaticToken
    from core.config import Settings
    from core.jobs.date_plan import plan
    from core.pipeline.services import build_services
    from core.pipeline.task import run_task
    from core.request import parse_request

    settings = Settings.from_env()
    s3 = boto3.client("s3", region_name=settings.aws_region, endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    import_rss = proc_status("VmRSS") / 1e6
    t0 = time.perf_counter()
    services = build_services(settings, token_provider=StaticToken(os.environ["EARTHDATA_TOKEN"]), s3_client=s3)
    request = parse_request(dict(SEED), settings)
    manifest = run_task(plan(request)[0], services).document()
    work = time.perf_counter() - t0
    assert not manifest.get("cached"), "found a stored manifest: the output prefix was not fresh"
    per = manifest["bytes"]["sst_per_granule"]
    return {
        "work_s": round(work, 3),
        "peak_rss_mb": peak_rss_mb(),
        "import_rss_mb": round(import_rss, 1),
        "cpu_s": _cpu_s(),
        "segments": manifest["counts"]["segments"],
        "matched": manifest["counts"]["matched"],
        "sst_granules": manifest["counts"]["sst_granules"],
        "atl07_granules": manifest["counts"]["atl07_granules"],
        "reported_sst_bytes": manifest["bytes"]["sst_fetched"],
        "reported_atl07_bytes": manifest["bytes"]["atl07_downloaded"],
        "sst_per_granule": {k: {"size": v["size"], "fetched": v["bytes_fetched"], "fraction": v["fraction"],
                                "window": v.get("window")} for k, v in per.items()},
        "timings_s": manifest["timings_s"],
    }


def fix_attributes(da):
    """The tutorial's attribute fix: 1-element arrays → scalars / str (scalars left alone)."""
    import numpy as np

    for attr, value in da.attrs.items():
        if np.ndim(value) == 0:
            continue
        if isinstance(value[0], bytes):
            da.attrs[attr] = value[0].decode("utf-8")
        else:
            da.attrs[attr] = value[0]


def child_baseline() -> dict:
    _quiet_logs()
    import h5py
    import numpy as np
    import pyresample
    import s3fs
    import xarray as xr

    from core.access.cmr import CmrClient
    from core.access.earthdata import EarthdataSession, StaticToken
    from core.config import Settings
    from core.request import parse_request

    settings = Settings.from_env()
    import_rss = proc_status("VmRSS") / 1e6
    t0 = time.perf_counter()
    # link discovery (the tutorial's CMR calls); the client only lists granules and links
    session = EarthdataSession(settings, StaticToken(os.environ["EARTHDATA_TOKEN"]))
    request = parse_request(dict(SEED), settings)
    lo, hi = request.window(request.dates()[0])
    cmr = CmrClient(session, settings)
    atl07_granules = cmr.search(request.atl07_collection, request.bounding_box, lo, hi)
    sst_granules = [g for g in cmr.search(request.sst_collection, request.bounding_box, lo, hi) if not g.skip_reason]
    only = [t for t in os.environ.get("BENCH_ONLY_GRANULES", "").split(",") if t]
    if only:  # the "same granules as the service" variant
        sst_granules = [g for g in sst_granules if g.title in only]

    workdir = Path(os.environ["BENCH_WORKDIR"])
    workdir.mkdir(parents=True, exist_ok=True)
    http_bytes = 0
    tracks = []
    for g in atl07_granules:
        r = session.get(g.https_url)  # the tutorial: requests.get(url), whole file in memory
        r.raise_for_status()
        content = r.content
        http_bytes += len(content)
        outfile = workdir / g.title
        with open(outfile, "wb") as f:
            f.write(content)
        lat, lon, sst_seg = [], [], []
        with h5py.File(outfile, "r") as h5:
            for beam in BEAMS:
                if f"{beam}/sea_ice_segments" not in h5:
                    continue
                seg = h5[f"{beam}/sea_ice_segments"]
                lat.append(seg["latitude"][:])
                lon.append(seg["longitude"][:])
                seg["delta_time"][:]
                sst_seg.append(seg["heights/height_segment_height"][:])
        del content, r
        tracks.append((g.title, np.concatenate(lat), np.concatenate(lon)))

    s3_fetched = 0
    sizes = {}
    matched = 0
    pairs = 0
    for g in sst_granules:
        creds = session.get(g.s3credentials_url).json()
        fs = s3fs.S3FileSystem(key=creds["accessKeyId"], secret=creds["secretAccessKey"], token=creds["sessionToken"],
                               client_kwargs={"endpoint_url": settings.s3_endpoint_url,
                                              "region_name": settings.aws_region},
                               skip_instance_cache=True)
        with fs.open(g.s3_url, mode="rb") as f:  # s3fs defaults: readahead cache, 50 MiB blocks
            fetch = f.cache.fetcher
            counted = {"n": 0}

            def counting(start, end, fetch=fetch, counted=counted):
                data = fetch(start, end)
                counted["n"] += len(data)
                return data

            f.cache.fetcher = counting
            ds = xr.open_dataset(f, decode_cf=False)
            for var in ds.variables:
                fix_attributes(ds[var])
            fix_attributes(ds)
            ds = xr.decode_cf(ds)
            modis = pyresample.SwathDefinition(lons=ds.lon.values, lats=ds.lat.values)
            sst = ds.sea_surface_temperature.values[0]
            for _, lat, lon in tracks:
                is2 = pyresample.SwathDefinition(lons=lon, lats=lat)
                res = pyresample.kd_tree.resample_nearest(modis, sst, is2, radius_of_influence=1000,
                                                          fill_value=np.nan)
                matched += int(np.isfinite(res).sum())
                pairs += 1
            ds.close()
            s3_fetched += counted["n"]
            sizes[g.title] = f.size
    work = time.perf_counter() - t0
    return {
        "work_s": round(work, 3),
        "peak_rss_mb": peak_rss_mb(),
        "import_rss_mb": round(import_rss, 1),
        "cpu_s": _cpu_s(),
        "segments": int(sum(t[1].size for t in tracks)),
        "pairs": pairs,
        "matched_any_pixel": matched,
        "sst_granules": len(sst_granules),
        "atl07_granules": len(atl07_granules),
        "reported_sst_bytes": s3_fetched,
        "reported_atl07_bytes": http_bytes,
        "sst_sizes": sizes,
    }


# --- parent -------------------------------------------------------------------------------------
def segment_bands(scene, max_dt_s: float = 3 * 3600.0) -> dict[str, tuple[float, float] | None]:
    """Per L2P granule of the scene, the latitude band of the ATL07 segments in the seed box within
    ±Δt of its time span, ± the radius (core.science.l2p.latitude_band): where any reader must look
    at longitude to find the window (the information floor's term)."""
    import numpy as np

    from core.model import BBox
    from core.science.atl07 import read_atl07
    from core.science.l2p import latitude_band

    times, lats = [], []
    for g in scene.granules:
        if g.daac == "nsidc":
            for beam in read_atl07(g.path, bbox=BBox(*SEED["bbox"]), margin_deg=0.0).beams:
                times.append(beam.time)
                lats.append(beam.lat)
    t, lat = np.concatenate(times), np.concatenate(lats)
    dt = np.timedelta64(int(max_dt_s), "s")
    out = {}
    for g in scene.granules:
        if g.daac == "podaac":
            lo, hi = np.datetime64(g.start.replace(tzinfo=None)) - dt, np.datetime64(g.end.replace(tzinfo=None)) + dt
            near = (t >= lo) & (t <= hi)
            out[g.title] = latitude_band(lat[near], SEED["radius_m"]) if near.any() else None
    return out


def run_floor(run: dict, l2p_files: dict[str, Path], config, bands: dict | None = None) -> dict:
    """The floor of one service run (bench/floor.py): its L2P chunk floor for the windows its
    manifest records, the ATL07 bytes its access mode must move, its own colocation CPU."""
    per_granule = {}
    fetched = 0
    served = {name.rsplit(".nc", 1)[0]: o["served"] for name, o in run["s3_per_object"].items() if name.endswith(".nc")}
    for title, g in run["sst_per_granule"].items():
        cf = floor.l2p_chunk_floor(l2p_files[title], g.get("window"))
        # the server's count of the object's bytes (HTTPS reads are counted by the service), and
        # of its DMR++ sidecar if the reader used one
        got = served.get(title, g["fetched"]) + run.get("s3_sidecar_bytes", {}).get(f"{title}.nc.dmrpp", 0)
        fetched += got
        per_granule[title] = {"fetched": got, "floor_bytes": cf["floor_bytes"], "window": cf["window"],
                              "over_floor": round(got / max(cf["floor_bytes"], 1), 3),
                              "metadata_bytes": cf["metadata_bytes"], "per_variable": cf["per_variable"]}
    l2p_floor = sum(p["floor_bytes"] for p in per_granule.values())
    # issue 26: longitude counted wherever latitude reaches the segments' band
    info = {t: floor.l2p_information_floor(l2p_files[t], g.get("window"), (bands or {}).get(t) or (90.0, -90.0))
            ["floor_bytes"] for t, g in run["sst_per_granule"].items()}
    # a download moves the whole ATL07 file; read in place, what the reader fetched (not a floor)
    atl07 = run["reported_atl07_bytes"]
    chain = floor.CHAIN if run.get("atl07_access") != "direct" else floor.CHAIN_DIRECT
    f = floor.wall_floor(atl07 + l2p_floor, run["timings_s"].get("colocate", 0.0), config, chain)
    return {**f.as_dict(), "atl07_bytes": atl07, "l2p_floor_bytes": l2p_floor, "l2p_fetched": fetched,
            "l2p_information_floor_bytes": sum(info.values()),
            "l2p_metadata_bytes": sum(p["metadata_bytes"] for p in per_granule.values()),
            "per_granule": per_granule}


def measure(repeats: int = 3, workdir: Path | None = None, network: str | None = None) -> dict:
    if workdir is None:  # downloads and sandbox files go away afterwards
        import tempfile

        with tempfile.TemporaryDirectory(prefix="coloc-bench-") as tmp:
            return measure(repeats, Path(tmp), network)
    runs = {"service": [], "service_direct": [], "baseline": [], "baseline_same_granules": []}
    with CountedSandbox(workdir / "sandbox", network) as csb:
        config = csb.network.config
        l2p_files = {g.title: Path(g.path) for g in csb.scene.granules if g.daac == "podaac"}
        bands = segment_bands(csb.scene)
        print(f"  e2e network: {csb.network.label}", file=sys.stderr)
        for i in range(repeats):
            for kind in runs:
                csb.reset()
                env = csb.env(COLOC_OUTPUT_PREFIX=f"bench-{uuid.uuid4().hex[:8]}",
                              BENCH_WORKDIR=str(workdir / f"{kind}-{i}"))
                if kind == "service_direct":
                    env["COLOC_ATL07_ACCESS"] = "direct"
                if kind == "baseline_same_granules":
                    env["BENCH_ONLY_GRANULES"] = ",".join(runs["service"][-1]["sst_per_granule"])
                r = run_child("bench.e2e", ["--child", kind.split("_")[0]], env=env)
                r.update(csb.counted())
                r["atl07_access"] = "direct" if kind == "service_direct" else "download"
                if kind.startswith("service"):
                    r["floor"] = run_floor(r, l2p_files, config, bands)
                runs[kind].append(r)
                extra = (f", floor {r['floor']['floor_s']:.2f} s, L2P {r['floor']['l2p_fetched'] / 1e6:.1f} MB "
                         f"/ floor {r['floor']['l2p_floor_bytes'] / 1e6:.1f} MB" if "floor" in r else "")
                print(f"  e2e {kind} run {i + 1}/{repeats}: {r['work_s']:.2f} s, {r['peak_rss_mb']:.0f} MB, "
                      f"S3 {r['s3_get_bytes'] / 1e6:.1f} MB, HTTP {r['http_bytes'] / 1e6:.1f} MB{extra}",
                      file=sys.stderr)
                # the raw runs so far, so a summary can be redone without re-running (summarize())
                RUNS_SAVED.parent.mkdir(parents=True, exist_ok=True)
                RUNS_SAVED.with_suffix(f".{'off' if config is None else 'on'}.json").write_text(
                    json.dumps({"runs": runs, "config": None if config is None else dataclasses.asdict(config),
                                "label": csb.network.label}, default=str))
    return summarize(runs, config, csb.network.label)


RUNS_SAVED = REPO / ".sandbox-cache" / "bench-e2e-runs"


def summarize(runs: dict, config, label: str) -> dict:
    """Medians, ratios and the floor of the runs of one network setting."""
    s, b, same, direct = runs["service"], runs["baseline"], runs["baseline_same_granules"], runs["service_direct"]
    med = lambda rows, k: median([r[k] for r in rows])  # noqa: E731
    # fraction of each L2P object served by S3 (server side), max over the service's runs
    fractions: dict[str, float] = {}
    for r in s:
        for name, o in r["s3_per_object"].items():
            if ".nc" in name:
                fractions[name] = max(fractions.get(name, 0.0), o["fraction"])
    summary = {
        "service_work_s": med(s, "work_s"),
        "baseline_work_s": med(b, "work_s"),
        "service_process_wall_s": med(s, "process_wall_s"),
        "baseline_process_wall_s": med(b, "process_wall_s"),
        "service_cpu_s": med(s, "cpu_s"),
        "baseline_cpu_s": med(b, "cpu_s"),
        "service_peak_rss_mb": med(s, "peak_rss_mb"),
        "baseline_peak_rss_mb": med(b, "peak_rss_mb"),
        "service_import_rss_mb": med(s, "import_rss_mb"),
        "baseline_import_rss_mb": med(b, "import_rss_mb"),
        "service_s3_bytes": med(s, "s3_get_bytes"),
        "baseline_s3_bytes": med(b, "s3_get_bytes"),
        "service_http_bytes": med(s, "http_bytes"),
        "baseline_http_bytes": med(b, "http_bytes"),
        "s3_fraction_per_granule": fractions,
        "s3_fraction_reported_by_service": {k: v["fraction"] for k, v in s[-1]["sst_per_granule"].items()},
    }
    summary["baseline_same_granules_work_s"] = med(same, "work_s")
    summary["baseline_same_granules_peak_rss_mb"] = med(same, "peak_rss_mb")
    summary["baseline_same_granules_count"] = same[-1]["sst_granules"]
    summary["service_stage_s"] = {k: median([r["timings_s"].get(k, 0.0) for r in s]) for k in s[-1]["timings_s"]}
    summary["service_direct_work_s"] = med(direct, "work_s")
    summary["service_direct_peak_rss_mb"] = med(direct, "peak_rss_mb")
    summary["service_direct_s3_bytes"] = med(direct, "s3_get_bytes")
    summary["service_direct_stage_s"] = {k: median([r["timings_s"].get(k, 0.0) for r in direct])
                                         for k in direct[-1]["timings_s"]}
    summary["speedup"] = round(summary["baseline_work_s"] / summary["service_work_s"], 2)
    summary["speedup_same_granules"] = round(summary["baseline_same_granules_work_s"] / summary["service_work_s"], 2)
    summary["speedup_direct_atl07"] = round(summary["baseline_work_s"] / summary["service_direct_work_s"], 2)
    # the floor of the default service run (median over runs of each term) and how far above it the run is
    summary["floor"] = {k: median([r["floor"][k] for r in s]) for k in s[-1]["floor"] if k != "per_granule"}
    summary["floor"]["per_granule"] = s[-1]["floor"]["per_granule"]
    summary["floor_ratio"] = round(median([r["work_s"] / r["floor"]["floor_s"] for r in s]), 2)
    summary["l2p_bytes_over_floor"] = round(median([r["floor"]["l2p_fetched"] / r["floor"]["l2p_floor_bytes"]
                                                    for r in s]), 3)
    summary["l2p_bytes_over_information_floor"] = round(median(
        [r["floor"]["l2p_fetched"] / r["floor"]["l2p_information_floor_bytes"] for r in s]), 3)
    summary["service_direct_floor_ratio"] = round(median([r["work_s"] / r["floor"]["floor_s"] for r in direct]), 2)
    summary["speedup_process_wall"] = round(summary["baseline_process_wall_s"] / summary["service_process_wall_s"], 2)
    summary["speedup_cpu"] = round(summary["baseline_cpu_s"] / summary["service_cpu_s"], 2)
    summary["peak_rss_ratio"] = round(summary["service_peak_rss_mb"] / summary["baseline_peak_rss_mb"], 3)
    summary["peak_rss_above_imports_ratio"] = round(
        (summary["service_peak_rss_mb"] - summary["service_import_rss_mb"])
        / (summary["baseline_peak_rss_mb"] - summary["baseline_import_rss_mb"]), 3)
    summary["s3_bytes_fraction_max"] = max(fractions.values()) if fractions else None
    if config is not None and not isinstance(config, dict):
        config = dataclasses.asdict(config)
    summary["network"] = None if config is None else {**config, "label": label}
    if config is not None:  # what the model charged each way, median over runs
        summary["network_accounted"] = {
            kind: {k: median([r["network"][k] for r in rows]) for k in
                   ("requests", "new_connections", "connect_s", "first_byte_s", "bandwidth_wait_s", "bytes")}
            for kind, rows in runs.items()}
        keys = ("requests", "new_connections", "first_byte_s", "body_s", "bytes")
        summary["network_by_app"] = {  # where the model's time went, per server, median over runs
            kind: {app: {k: median([r["network"]["by_app"].get(app, {}).get(k, 0) for r in rows]) for k in keys}
                   for app in rows[-1]["network"]["by_app"]}
            for kind, rows in runs.items() if kind.startswith("service")}
    return {"summary": summary, "runs": runs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--child", choices=("service", "baseline"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--network", default=None, help=f"network model (default: $COLOC_SANDBOX_NETWORK or {NETWORK_DEFAULT})")
    a = p.parse_args(argv)
    if a.child:
        emit(child_service() if a.child == "service" else child_baseline())
        return 0
    print(json.dumps(measure(a.repeats, network=a.network)["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
