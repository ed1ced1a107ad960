"""Colocation kernel benchmark: core.science.kernel.colocate vs pyresample.kd_tree.resample_nearest.

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


def oracle(seg_lat, seg_lon, seg_t, swath, radius_m, max_dt_s, min_ql, sample):
    """Brute force, independent of core.science.kernel: for each sampled segment, haversine to every
    pixel in its latitude band (exact: great-circle distance >= R * |dlat|), keep pixels with
    finite SST, quality >= min_ql, |dt| <= max_dt_s and distance <= radius_m; the nearest wins.
    Returns (pixel flat index or -1, distance_m, how many such pixels, their median SST) per
    sampled segment."""
    lat = swath.lat.ravel()
    order = np.argsort(lat, kind="stable")
    lat_sorted = lat[order]
    ok_pix = np.isfinite(swath.sst.ravel()) & (swath.quality_level.ravel() >= min_ql)
    t_pix = swath.time.ravel().astype("datetime64[ns]").view(np.int64)
    dlat = np.degrees(radius_m / R) * 1.0001
    idx = np.full(sample.size, -1, np.int64)
    dist = np.full(sample.size, np.nan)
    n_valid = np.zeros(sample.size, np.int64)
    median = np.full(sample.size, np.nan)
    for j, s in enumerate(sample):
        lo, hi = np.searchsorted(lat_sorted, [seg_lat[s] - dlat, seg_lat[s] + dlat])
        cand = order[lo:hi]
        cand = cand[ok_pix[cand] & (np.abs(t_pix[cand] - seg_t[s].astype("datetime64[ns]").view(np.int64))
                                    <= max_dt_s * 1e9)]
        if cand.size == 0:
            continue
        p1, p2 = np.radians(seg_lat[s]), np.radians(swath.lat.ravel()[cand])
        dl = np.radians(swath.lon.ravel()[cand] - seg_lon[s])
        a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
        d = 2 * R * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
        k = int(np.argmin(d))
        if d[k] <= radius_m:
            idx[j], dist[j] = cand[k], d[k]
            n_valid[j] = int((d <= radius_m).sum())
            median[j] = np.median(swath.sst.ravel()[cand[d <= radius_m]].astype(np.float64))
    return idx, dist, n_valid, median


def verify(matches, seg_lat, seg_lon, seg_t, swath, radius_m, max_dt_s, min_ql, n_sample=400, seed=1) -> dict:
    """Compare colocate's matches with the oracle on a random sample (half of it matched segments)."""
    rng = np.random.default_rng(seed)
    matched = np.flatnonzero(matches.matched)
    pool = rng.choice(seg_lat.size, n_sample // 2, replace=False)
    hits = rng.choice(matched, min(n_sample // 2, matched.size), replace=False) if matched.size else pool[:0]
    sample = np.unique(np.concatenate([pool, hits]))
    idx, dist, n_valid, median = oracle(seg_lat, seg_lon, seg_t, swath, radius_m, max_dt_s, min_ql, sample)
    o_hit = idx >= 0
    k_hit = matches.matched[sample]
    same_hit = o_hit == k_hit
    both = o_hit & k_hit
    d_ok = np.abs(matches.distance_m[sample][both] - dist[both]) <= 0.01
    sst_ok = matches.sst[sample][both] == swath.sst.ravel()[idx[both]]
    # the neighbourhood: how many valid pixels were within reach, and their median
    count_ok = matches.n_valid[sample] == n_valid
    median_ok = np.abs(matches.sst_median[sample][both] - median[both]) <= 1e-4
    # equidistant pixels may differ in value; they are not mismatches if the distance agrees
    mismatches = int((~same_hit).sum() + (~d_ok).sum() + (~sst_ok & ~d_ok).sum() + (~count_ok).sum()
                     + (~median_ok).sum())
    return {"checked": int(sample.size), "oracle_matched": int(o_hit.sum()), "mismatches": mismatches,
            "identical": mismatches == 0}


def run_one(method: str, *, repeats: int = 1, check: bool = False, **kw) -> dict:
    """Build the inputs and run one method in *this* process; returns timings and memory.

    The time is the median of ``repeats`` runs; peak memory is that of the first run."""
    # imports outside the timed and the memory-measured region
    if method == "colocate":
        from core.science.kernel import colocate
    else:
        from pyresample import geometry, kd_tree
    radius, max_dt, min_ql = 1000.0, 10800.0, 4
    swath, lat, lon, t = make_inputs(**kw)
    rss_inputs = _status("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    times, cpu, peak = [], [], None
    for _ in range(max(1, repeats)):
        t0, c0 = time.perf_counter(), time.process_time()
        if method == "colocate":
            m = colocate(lat, lon, t, swath, radius_m=radius, max_dt_s=max_dt, min_quality_level=min_ql)
            matched = int(m.matched.sum())
            invalid_won = 0
        elif method == "resample_nearest":
            src = geometry.SwathDefinition(lons=swath.lon, lats=swath.lat)
            dst = geometry.SwathDefinition(lons=lon, lats=lat)
            # the tutorial's call: nearest pixel within the radius, whatever its value or quality
            res = kd_tree.resample_nearest(src, swath.sst, dst, radius_of_influence=radius, fill_value=None,
                                           nprocs=1)
            got = np.ma.filled(res.astype(np.float64), np.nan)
            matched = int(np.isfinite(got).sum())
            invalid_won = None  # filled in after timing: matches whose pixel has quality < min_ql
        else:
            raise ValueError(method)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)  # all threads: what ~1 Lambda vCPU would pay
        if peak is None:
            peak = _status("VmHWM")
    elapsed = float(np.median(times))
    oracle_check = None
    if method == "resample_nearest":  # untimed: how many of its matches are low-quality pixels
        ql = kd_tree.resample_nearest(src, swath.quality_level.astype(np.float32), dst,
                                      radius_of_influence=radius, fill_value=None, nprocs=1)
        invalid_won = int((np.isfinite(got) & (np.ma.filled(ql, 99) < min_ql)).sum())
    elif check:
        oracle_check = verify(m, lat, lon, t, swath, radius, max_dt, min_ql)
    return {
        "method": method,
        "segments": int(lat.size),
        "pixels": int(swath.lat.size),
        "matched": matched,
        "time_s": round(elapsed, 3),
        "times_s": [round(x, 3) for x in times],
        "cpu_s": round(float(np.median(cpu)), 3),
        "inputs_rss_mib": round(rss_inputs / 2**20, 1),
        "peak_rss_mib": round(peak / 2**20, 1),
        "kernel_peak_mib": round((peak - rss_inputs) / 2**20, 1) if reset else None,
        "invalid_won": invalid_won,
        "oracle": oracle_check,
    }


def measure(method: str, *, repeats: int = 1, check: bool = False, **kw) -> dict:
    """Run :func:`run_one` in a fresh interpreter (so its peak RSS is its own)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    cmd = [sys.executable, "-m", "bench.kernel", "--one", method, "--kw", json.dumps(kw),
           "--repeats", str(repeats)] + (["--check"] if check else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(**kw) -> list[dict]:
    return [measure(m, **kw) for m in ("colocate", "resample_nearest")]


SWEEP_N = (10_000, 100_000, 1_410_000)  # 6 beams each; 1.41 M = 6 x 235 k, a full ATL07 granule


def sweep(sizes=SWEEP_N, *, repeats: int = 3, plot: Path | None = REPO / "bench" / "kernel_vs_n.png",
          **kw) -> dict:
    """Both methods at every N (own process each, median of ``repeats``), oracle check, plot."""
    rows = []
    for n in sizes:
        per_beam = max(1, round(n / 6))
        ours = measure("colocate", repeats=repeats, check=True, n_per_beam=per_beam, **kw)
        theirs = measure("resample_nearest", repeats=repeats, n_per_beam=per_beam, **kw)
        rows.append({"n": ours["segments"], "colocate": ours, "resample_nearest": theirs,
                     "speedup": round(theirs["time_s"] / max(ours["time_s"], 1e-9), 2),
                     "speedup_cpu": round(theirs["cpu_s"] / max(ours["cpu_s"], 1e-9), 2)})
    if plot is not None:
        plot_sweep(rows, plot)
    return {
        "rows": rows,
        "speedup_min": min(r["speedup"] for r in rows),
        "oracle_identical": all(r["colocate"]["oracle"]["identical"] for r in rows),
    }


def plot_sweep(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.loglog(n, [r["colocate"]["time_s"] for r in rows], "o-", label="core.science.kernel.colocate (valid pixels, Δt)")
    ax.loglog(n, [r["resample_nearest"]["time_s"] for r in rows], "s--", label="pyresample resample_nearest")
    ax.set_xlabel("ATL07 segments (N)")
    ax.set_ylabel("time (s, median)")
    ax.set_title(f"Nearest SST pixel, {rows[0]['colocate']['pixels'] / 1e6:.2f} M-pixel swath, r = 1 km")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--one", choices=("colocate", "resample_nearest"))
    p.add_argument("--kw", default="{}", help="JSON keyword arguments for make_inputs")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--check", action="store_true", help="verify colocate against the brute-force oracle")
    p.add_argument("--sweep", action="store_true", help="N = 10 k, 100 k, 1.4 M and the plot")
    a = p.parse_args(argv)
    kw = json.loads(a.kw)
    if a.one:
        print(json.dumps(run_one(a.one, repeats=a.repeats, check=a.check, **kw)))
        return 0
    if a.sweep:
        print(json.dumps(sweep(), indent=1))
        return 0
    rows = compare(**kw)
    keys = ("method", "segments", "pixels", "matched", "invalid_won", "time_s", "cpu_s", "inputs_rss_mib", "peak_rss_mib",
            "kernel_peak_mib")
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r[k]) for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
