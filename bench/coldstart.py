"""Cold start: import time of each handler module in a fresh interpreter, and function sizes.

Import time is ``time.perf_counter()`` around ``import handlers.<name>`` in a new interpreter
(bytecode caches warm, as in a Lambda image; interpreter start-up itself excluded), median of
``repeats``. Sizes are read from ``layers/build/sizes.json`` written by ``layers/build.py``
(per function: code + its layers, unzipped); the bench does not rebuild the layers (that
downloads Lambda wheels) unless ``--rebuild-layers`` is given.

    .venv/bin/python -m bench.coldstart
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from bench.common import REPO, child_env, emit, median, peak_rss_mb, run_child

HANDLERS_DIR = REPO / "src" / "handlers"
SIZES = REPO / "layers" / "build" / "sizes.json"


# what a handler imports lazily on its first real call (paid by the first invocation, not init)
LAZY = {"colocate": ["core.pipeline.task"]}


def handler_modules() -> list[str]:
    """Handler modules, plus "<name>+lazy" for those that import the pipeline on first call."""
    names = sorted(p.stem for p in HANDLERS_DIR.glob("*.py") if p.stem not in ("__init__", "runtime"))
    return names + [f"{n}+lazy" for n in names if n in LAZY]


def child_import(name: str) -> dict:
    import time

    modules = [f"handlers.{name.split('+')[0]}"] + (LAZY.get(name.split("+")[0], []) if "+" in name else [])
    t0 = time.perf_counter()
    for module in modules:
        __import__(module)
    elapsed = time.perf_counter() - t0
    return {"modules": modules, "import_s": round(elapsed, 4), "peak_rss_mb": peak_rss_mb()}


def import_times(repeats: int = 5) -> dict:
    env = child_env({"COLOC_OUTPUT_BUCKET": "bench-bucket", "AWS_DEFAULT_REGION": "us-west-2"})
    # one untimed import first so every measured run finds the bytecode cache written
    for name in handler_modules():
        run_child("bench.coldstart", ["--child", name], env=env)
    out = {}
    for name in handler_modules():
        runs = [run_child("bench.coldstart", ["--child", name], env=env) for _ in range(repeats)]
        out[name] = {"median_s": round(median(r["import_s"] for r in runs), 4),
                     "runs_s": [r["import_s"] for r in runs],
                     "peak_rss_mb": median(r["peak_rss_mb"] for r in runs)}
    return out


def function_sizes(rebuild: bool = False) -> dict:
    if rebuild:
        subprocess.run([sys.executable, str(REPO / "layers" / "build.py")], check=True, cwd=REPO)
    if not SIZES.exists():
        return {"available": False, "rebuilt": rebuild, "functions": {}}
    data = json.loads(SIZES.read_text())
    funcs = {name: {"unzipped_mb": f["unzipped_mb"], "layers": f.get("layers", []), "status": f.get("status")}
             for name, f in data.get("functions", {}).items()}
    return {"available": True, "rebuilt": rebuild, "source": str(SIZES.relative_to(REPO)),
            "arch": data.get("arch"), "python": data.get("python"), "layers_mb": data.get("layers_mb", {}),
            "code_mb": data.get("code_mb"), "functions": funcs}


def measure(repeats: int = 5, rebuild_layers: bool = False) -> dict:
    imports = import_times(repeats)
    sizes = function_sizes(rebuild_layers)
    return {
        "imports": imports,
        "cold_import_s_max": max(v["median_s"] for v in imports.values()) if imports else None,
        "sizes": sizes,
        "function_size_mb_max": max((f["unzipped_mb"] for f in sizes["functions"].values()), default=None),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--child")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rebuild-layers", action="store_true")
    a = p.parse_args(argv)
    if a.child:
        emit(child_import(a.child))
        return 0
    print(json.dumps(measure(a.repeats, a.rebuild_layers), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
