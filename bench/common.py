"""Helpers shared by the benchmarks: child processes, peak memory, medians.

Every measured thing runs in its own interpreter (``python -m bench.<module> --child ...``) so its
peak RSS (VmHWM, read by the child itself at the end) is its own and nothing is warm.
The child prints one JSON object as its last stdout line.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# benchmarks answer "how long in Lambda?": the sandbox models its network unless told otherwise
NETWORK_DEFAULT = "lambda-us-west-2"


def proc_status(key: str) -> int:
    """A /proc/self/status figure in bytes (VmHWM = peak RSS, VmRSS = current)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    if key == "VmHWM":  # not Linux: ru_maxrss (KiB on Linux, bytes on macOS)
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return 0


def peak_rss_mb() -> float:
    return round(proc_status("VmHWM") / 1e6, 1)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    env.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    env.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    env.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    env.setdefault("MPLBACKEND", "Agg")
    if extra:
        env.update(extra)
    return env


def run_child(module: str, args: list[str], *, env: dict[str, str] | None = None, timeout: float = 600) -> dict:
    """Run ``python -m module args`` in a fresh interpreter; its last stdout line is JSON.

    Adds ``process_wall_s`` (interpreter start to exit, as seen from here)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env or child_env(),
                         cwd=REPO, timeout=timeout)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(wall, 3)
    return result


def emit(result: dict) -> None:
    """Child side: the result as the last stdout line."""
    sys.stdout.flush()
    print(json.dumps(result, default=str))


def median(values) -> float:
    return float(statistics.median(values))
