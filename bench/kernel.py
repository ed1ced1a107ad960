"""Colocation kernel benchmark: core.colocate.colocate vs pyresample.kd_tree.resample_nearest.

Inputs: a full-size synthetic MODIS L2P swath (2030 × 1354, ~1 km, cloud gaps, random quality
levels, per-scan-line times) and ~1.4 M ATL07 segments (6 beams × 235 k) crossing it.
Each method runs in its own process so peak RSS is its own; the peak is reset
(/proc/self/clear_refs) after the inputs are built, so "kernel_peak_mib" is the kernel's own
high-water mark above the inputs.

    .venv/bin/python -m bench.kernel                 # both methods, table on stdout
    .venv/bin/python -m bench.kernel --one colocate  # one method, JSON (used by the parent)

Call :func:`compare` (or :func:`measure`) from other benchmarks.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
T0 = np.datetime64("2019-06-22T10:00:01", "ns")
R = 6371008.8


def _rotate(lat0, lon0, north_m, east_m):
    la, lo = north_m / R, east_m / R
    x, y, z = np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)
    p, q = np.radians(lat0), np.radians(lon0)
    x, z = x * np.cos(p) - z * np.sin(p), x * np.sin(p) + z * np.cos(p)
    x, y = x * np.cos(q) - y * np.sin(q), x * np.sin(q) + y * np.cos(q)
    return np.degrees(np.arcsin(np.clip(z, -1, 1))), np.degrees(np.arctan2(y, x))


def make_inputs(rows=2030, cols=1354, n_per_beam=235_000, beams=6, lat0=80.0, lon0=-60.0, seed=0):
    """(swath, seg_lat, seg_lon, seg_time): a swath centred on (lat0, lon0) and beams across it."""
    from core.model import SstSwath

    rng = np.random.default_rng(seed)
    r = (np.arange(rows, dtype=np.float64) - rows / 2)[:, None] * 1000.0
    c = (np.arange(cols, dtype=np.float64) - cols / 2)[None, :] * 1000.0
    # pixels grow towards the scan edges like MODIS (bow-tie ignored)
    east = np.sign(c) * np.abs(c) * (1 + (np.abs(c) / 677e3) ** 2)
    lat, lon = _rotate(lat0, lon0, np.broadcast_to(r, (rows, cols)), np.broadcast_to(east, (rows, cols)))
    lat, lon = lat.astype(np.float32).astype(np.float64), lon.astype(np.float32).astype(np.float64)
    sst = (271.5 + 8 * rng.random((rows, cols))).astype(np.float32)
    sst[rng.random((rows, cols)) < 0.35] = np.nan  # clouds / fill
    time = T0 + (np.repeat((np.arange(rows) * 0.148)[:, None], cols, axis=1) * 1e9).astype("timedelta64[ns]")
    ql = rng.integers(0, 6, (rows, cols)).astype(np.int8)
    flags = rng.integers(0, 32, (rows, cols)).astype(np.int16)
    swath = SstSwath(granule="synthetic", lat=lat, lon=lon, sst=sst, time=time, quality_level=ql, l2p_flags=flags)

    seg_lat, seg_lon, seg_t = [], [], []
    half = rows * 1000.0 / 2
    for b in range(beams):
        s = np.linspace(-half * 1.05, half * 1.05, n_per_beam)  # ~9 m spacing along track
        offset = (b // 2 - 1) * 3300.0 + (b % 2) * 90.0  # 3 pairs 3.3 km apart, 90 m within a pair
        a = np.radians(12.0)
        north, e = s * np.cos(a) - offset * np.sin(a), s * np.sin(a) + offset * np.cos(a)
        la, lo = _rotate(lat0, lon0, north, e)
        seg_lat.append(la)
        seg_lon.append(lo)
        seg_t.append(T0 + np.timedelta64(120, "s") + ((s - s[0]) / 7000.0 * 1e9).astype("timedelta64[ns]"))
    return swath, np.concatenate(seg_lat), np.concatenate(seg_lon), np.concatenate(seg_t)


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def run_one(method: str, **kw) -> dict:
    """Build the inputs and run one method in *this* process; returns timings and memory."""
    radius, max_dt, min_ql = 1000.0, 10800.0, 4
    swath, lat, lon, t = make_inputs(**kw)
    rss_inputs = _status("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    t0 = time.perf_counter()
    if method == "colocate":
        from core.colocate import colocate

        m = colocate(lat, lon, t, swath, radius_m=radius, max_dt_s=max_dt, min_quality_level=min_ql)
        matched = int(m.matched.sum())
        invalid_won = 0
    elif method == "resample_nearest":
        from pyresample import geometry, kd_tree

        src = geometry.SwathDefinition(lons=swath.lon, lats=swath.lat)
        dst = geometry.SwathDefinition(lons=lon, lats=lat)
        # the tutorial's call: nearest pixel within the radius, whatever its value or quality
        res = kd_tree.resample_nearest(src, swath.sst, dst, radius_of_influence=radius, fill_value=None, nprocs=1)
        got = np.ma.filled(res.astype(np.float64), np.nan)
        matched = int(np.isfinite(got).sum())
        invalid_won = None  # filled in after timing: matches whose pixel has quality < min_ql
    else:
        raise ValueError(method)
    elapsed = time.perf_counter() - t0
    peak = _status("VmHWM")
    if method == "resample_nearest":  # untimed: how many of its matches are low-quality pixels
        ql = kd_tree.resample_nearest(src, swath.quality_level.astype(np.float32), dst,
                                      radius_of_influence=radius, fill_value=None, nprocs=1)
        invalid_won = int((np.isfinite(got) & (np.ma.filled(ql, 99) < min_ql)).sum())
    return {
        "method": method,
        "segments": int(lat.size),
        "pixels": int(swath.lat.size),
        "matched": matched,
        "time_s": round(elapsed, 2),
        "inputs_rss_mib": round(rss_inputs / 2**20, 1),
        "peak_rss_mib": round(peak / 2**20, 1),
        "kernel_peak_mib": round((peak - rss_inputs) / 2**20, 1) if reset else None,
        "invalid_won": invalid_won,
    }


def measure(method: str, **kw) -> dict:
    """Run :func:`run_one` in a fresh interpreter (so its peak RSS is its own)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    cmd = [sys.executable, "-m", "bench.kernel", "--one", method, "--kw", json.dumps(kw)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(**kw) -> list[dict]:
    return [measure(m, **kw) for m in ("colocate", "resample_nearest")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--one", choices=("colocate", "resample_nearest"))
    p.add_argument("--kw", default="{}", help="JSON keyword arguments for make_inputs")
    a = p.parse_args(argv)
    kw = json.loads(a.kw)
    if a.one:
        print(json.dumps(run_one(a.one, **kw)))
        return 0
    rows = compare(**kw)
    keys = ("method", "segments", "pixels", "matched", "invalid_won", "time_s", "inputs_rss_mib", "peak_rss_mib",
            "kernel_peak_mib")
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r[k]) for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
