"""``make smoke``: the seed case against the real NASA services, through ``colocate run``.

For a user with Earthdata Login credentials (``EARTHDATA_TOKEN``, or ``EARTHDATA_USERNAME`` and
``EARTHDATA_PASSWORD``, or a ``~/.netrc`` entry for urs.earthdata.nasa.gov); without them it
says so and exits 0. It runs the tutorial's seed case (bbox -62.8,81.7,-56.4,83, 2019-06-22,
radius 1000 m) exactly as a user would, then checks what a correct run must find: 2 ATL07
granules, 14 L2P granules, matches, and each product in the output folder, which it leaves there.
``--sandbox`` makes the same run and the same checks against the offline sandbox.

Exit codes: 0 passed (or skipped: no credentials), 1 a check failed or the run failed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

SEED_ARGS = ["--bbox", "-62.8,81.7,-56.4,83", "--date", "2019-06-22", "--radius-m", "1000"]
EXPECTED_ATL07 = 2  # the two passes over the box that day (05:53 and 20:01 UTC)
# MODIS Aqua L2P granules over the box starting that day (the tutorial's search; the pipeline
# also searches ±max_dt_s around the day, so its manifest may list a few more)
EXPECTED_L2P = 14
REPO = Path(__file__).resolve().parents[1]


def missing_credentials(environ: Mapping[str, str] | None = None) -> str | None:
    """Why the real run cannot start (no credentials configured), or None."""
    from core.access.earthdata import NO_CREDENTIALS, find_token_provider
    from core.config import Settings

    env = os.environ if environ is None else environ
    return NO_CREDENTIALS if find_token_provider(Settings.from_env(env), env) is None else None


def l2p_of_the_day(manifest: dict, day: str = "20190622") -> list[str]:
    """The L2P granules of the manifest that start on ``day`` (GDS 2.0 names begin with the
    start time, YYYYMMDDHHMMSS), read or skipped."""
    inputs = manifest.get("inputs") or {}
    skipped = [s.get("granule", "") for s in inputs.get("skipped", []) if isinstance(s, dict)]
    return [t for t in [*inputs.get("sst", []), *skipped] if t.startswith(day)]


def check(summary: dict) -> list[str]:
    """What is wrong with a ``colocate run`` summary of the seed case (empty: nothing)."""
    dates = summary.get("dates") or []
    if len(dates) != 1:
        return [f"expected one date, got {len(dates)}"]
    day = dates[0]
    if day.get("status") != "complete":
        return [f"2019-06-22 {day.get('status')}: {day.get('error')}"]
    c = day["counts"]
    problems = []
    if c["atl07_granules"] != EXPECTED_ATL07:
        problems.append(f"expected {EXPECTED_ATL07} ATL07 granules, found {c['atl07_granules']}")
    manifest_path = Path(day.get("manifest", ""))
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    l2p = l2p_of_the_day(manifest)
    if len(l2p) != EXPECTED_L2P:
        problems.append(f"expected {EXPECTED_L2P} L2P granules starting on 2019-06-22, found {len(l2p)}")
    if not 0 < c["matched"] <= c["segments"]:
        problems.append(f"expected matches among the segments, got {c['matched']} of {c['segments']}")
    products = [Path(p) for p in day.get("products", [])]
    # the products (each has its pixel table, <product>_pixels.nc, beside it)
    netcdf = [p for p in products if p.suffix == ".nc" and not p.name.endswith("_pixels.nc")]
    if len(netcdf) != c["atl07_granules"]:
        problems.append(f"expected one netCDF per ATL07 granule, found {len(netcdf)}")
    for path in [manifest_path, *products]:
        if not path.is_file() or path.stat().st_size == 0:
            problems.append(f"missing output {path}")
        elif path.suffix == ".nc" and path.read_bytes()[:4] != b"\x89HDF":
            problems.append(f"not a netCDF-4 file: {path}")
    return problems


def _colocate() -> list[str]:
    exe = Path(sys.executable).with_name("colocate")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cli.command"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="smoke-output", help="where the products stay (default: smoke-output)")
    parser.add_argument("--sandbox", action="store_true", help="against the offline sandbox instead")
    parser.add_argument("--sandbox-scene", choices=("full", "cut"), default="full",
                        help="with --sandbox: which seed scene (python -m sandbox.colocate --scene)")
    args = parser.parse_args(argv)
    if not args.sandbox:
        why = missing_credentials()
        if why is not None:
            print(f"smoke: skipped: {why}. The smoke test runs the seed case against the "
                  "real NASA services and needs an Earthdata Login account.")
            return 0
    where = "the offline sandbox" if args.sandbox else "the real NASA services"
    print(f"smoke: colocate run {' '.join(SEED_ARGS)} against {where} → {args.out}", flush=True)
    if args.sandbox:  # the same command through the sandbox's entry point
        cmd = [sys.executable, "-m", "sandbox.colocate", "run", "--scene", args.sandbox_scene]
    else:
        cmd = [*_colocate(), "run"]
    cmd += [*SEED_ARGS, "--out", args.out]
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", os.pathsep.join([str(REPO / "src"), str(REPO)]))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)  # progress and errors: stderr
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        print(f"smoke: FAILED: colocate run exited {proc.returncode} (its error is above)")
        return 1
    problems = check(json.loads(lines[-1]))
    if problems:
        print("smoke: FAILED: " + "; ".join(problems))
        return 1
    day = json.loads(lines[-1])["dates"][0]
    c = day["counts"]
    searched = c["sst_granules"] + c.get("skipped", 0)
    print(f"smoke: OK: {c['atl07_granules']} ATL07 granules, {EXPECTED_L2P} L2P granules on the day ({searched} "
          f"within ±max_dt_s), {c['segments']} segments, {c['matched']} matched; products in "
          f"{Path(args.out).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
