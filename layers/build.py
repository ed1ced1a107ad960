#!/usr/bin/env python3
"""Build the Lambda layers for the target runtime and check every function's unzipped size.

    python layers/build.py [--arch arm64|x86_64] [--python 3.12] [--skip-install]

Layers (installed with pip for the *Lambda* platform, binary wheels only):
  base     aws-lambda-powertools + pydantic + pydantic-settings (lambda.txt lines) — every function
  science  requirements/lambda.txt  — everything the handlers import at run time
  plot     requirements/plot.txt    — matplotlib for the quicklook PNG, minus what science already has
  parquet  requirements/parquet.txt — fastparquet + cramjam for the request-level Parquet (Summarize)

After pip: duplicates of earlier layers dropped, test suites/sources/stubs stripped, botocore
models trimmed, PRUNE applied (files no code path of ours loads), base + science byte-compiled.

Output: layers/build/<layer>/python/... (what SAM zips as ContentUri) and layers/build/sizes.json.
Exit status 1 if any function (its code + its layers) exceeds Lambda's 250 MB unzipped limit;
a warning above 200 MB (the project's target).
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "layers" / "build"
MB = 1 << 20  # Lambda's "250 MB" is 262,144,000 bytes = 250 MiB; all figures here are MiB
LIMIT_MB = 250.0  # function + all its layers, unzipped
WARN_MB = 200.0

LAMBDA_REQ = ROOT / "requirements" / "lambda.txt"
# Built in this order; each later layer drops distributions an earlier one already ships
# (layers merge into /opt/python, and the limit counts every byte of every layer).
LAYERS = {
    "base": None,  # the BASE_PACKAGES lines of lambda.txt (same pins)
    "science": LAMBDA_REQ,
    "plot": ROOT / "requirements" / "plot.txt",
    "parquet": ROOT / "requirements" / "parquet.txt",
}
# The small functions (API, plan) need only pydantic(-settings) + Powertools; boto3 comes from the Lambda
# runtime for them. The colocate function carries the science and plot stacks; Summarize the
# science stack (xarray/h5netcdf: the request-level netCDF) and the Parquet writer.
BASE_PACKAGES = ("aws-lambda-powertools", "pydantic", "pydantic-settings", "python-dotenv")
# Which layers each function in template.yaml attaches (tests/deploy/test_template.py checks the template).
FUNCTIONS = {
    "ColocateFunction": ("base", "science", "plot"),
    "ApiFunction": ("base",),
    "PlanFunction": ("base",),
    "SummarizeFunction": ("base", "science", "parquet"),
}
# Not imported by anything under src/ at run time (the kernel uses pykdtree directly;
# pyresample is the benchmark's baseline, a dev dependency): 46 MiB of pyresample + pyproj +
# shapely would push the colocate function over the limit. tests/deploy/test_layers.py scans src/ for
# imports of these and runs the import closure of the handlers without them.
# (fontTools stays, pruned to fontTools.agl and its imports: see PRUNE.)
EXCLUDE_DISTS = {"pyresample", "pyproj", "shapely"}
# Byte-compiled for the runtime (+18 MiB science, +5 MiB base). Not plot: +8.8 MiB (after PRUNE)
# would take the colocate function over the 200 MiB target, and matplotlib is imported once per
# container inside a task that runs for minutes, whereas the API's cold start is on a user's
# 29-second clock.
COMPILE_LAYERS = {"base", "science", "parquet"}
# In the Lambda python runtime already (boto3 1.3x); the small functions use that copy.
RUNTIME_DISTS = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
# The science layer must ship its own botocore (aiobotocore pins an exact botocore range; the
# runtime's bundled copy lags). It shadows the runtime's copy, so keep every service the code or
# Powertools may call; the other ~400 service models (27 MB) go.
BOTOCORE_SERVICES = (
    "s3", "secretsmanager", "stepfunctions", "sts", "sso", "sso-oidc", "ssm", "lambda",
    "cloudwatch", "logs", "xray", "appconfigdata", "dynamodb",
)
# Every function ships the same CodeUri (src/): core + handlers.
CODE_DIRS = ("src/core", "src/handlers", "src/cli")

# Lambda python3.12/3.13 run on Amazon Linux 2023 (glibc 2.34): any manylinux tag up to 2_34 works.
# Newer numpy/h5py aarch64 wheels are manylinux_2_28 only, so list them all.
MANYLINUX = ("manylinux_2_34", "manylinux_2_28", "manylinux_2_17", "manylinux2014")

# Not needed at run time. Only whole directories/suffixes nobody imports; never *.so or *.py
# of a package itself (numpy.testing is imported by numpy at import time, so it stays).
# Directory *names* are not enough to know what is imported (botocore.docs is imported by
# botocore.waiter), so only test suites and caches go.
STRIP_DIRS = {"__pycache__", "tests"}
KEEP_DIRS: set[str] = set()  # paths that must survive even if they match (none needed today)
STRIP_SUFFIXES = {".pyc", ".pyo", ".pyi", ".c", ".cpp", ".pyx", ".pxd", ".h", ".md"}

# Parts of the plot layer that rendering a PNG with Agg never loads (globs under python/).
# The quicklook's import closure and the files it opens are recorded with the local venv and
# checked against the built layer; the same pruning applied to a local install renders a real
# quicklook (tests/deploy/test_layers.py). PDF/PS/SVG/GUI output is not supported by this layer.
PRUNE = {
    "plot": (
        # fontTools (19 MiB, mostly Cython builds of font-compiler tools): matplotlib imports
        # only fontTools.agl (dviread, at import time); the rest is for PDF/PS font subsetting.
        "fontTools/**/*",
        # pillow's extensions for WebP, AVIF, ImageFont, ImageCms and Tk, and the vendored libraries
        # only they link (12 MiB). PIL imports each of them lazily or under try/except ImportError;
        # matplotlib writes PNG through PIL._imaging (libz) and renders text with its own FreeType.
        "PIL/_avif.*", "PIL/_webp.*", "PIL/_imagingft.*", "PIL/_imagingcms.*", "PIL/_imagingtk.*",
        "pillow.libs/libavif-*", "pillow.libs/libwebp*", "pillow.libs/libsharpyuv-*",
        "pillow.libs/libfreetype-*", "pillow.libs/libharfbuzz-*", "pillow.libs/libbrotli*",
        "pillow.libs/libpng16-*", "pillow.libs/liblcms2-*",
        # mpl-data for other backends or examples: AFM metrics (PS/PDF core fonts), toolbar
        # icons (GUI backends), sample data, the serif family (not in our rcParams).
        # Kept: DejaVu Sans/Sans Mono/Display, STIX and cm (mathtext's dejavusans fontset looks
        # them up when it starts), Last Resort (font fallback), matplotlibrc, stylelib.
        "matplotlib/mpl-data/fonts/afm/*", "matplotlib/mpl-data/fonts/pdfcorefonts/*",
        "matplotlib/mpl-data/images/*", "matplotlib/mpl-data/sample_data/**/*",
        "matplotlib/mpl-data/fonts/ttf/DejaVuSerif*",
        # Tk and browser backends: no display on Lambda
        "matplotlib/backends/_tkagg.*", "matplotlib/backends/web_backend/**/*",
    ),
    "science": (
        # test-only extension modules (imported by numpy's and multidict's own test suites and
        # conftest.py files only) and the conftest files themselves
        "numpy/_core/_multiarray_tests.*", "numpy/_core/_operand_flag_tests.*",
        "numpy/_core/_rational_tests.*", "numpy/_core/_simd.*", "numpy/_core/_struct_ufunc_tests.*",
        "numpy/_core/_umath_tests.*", "multidict/_testcapi.*", "*/conftest.py",
    ),
}
# Exceptions to PRUNE: fontTools' own import closure of fontTools.agl.
PRUNE_KEEP = {
    "plot": (
        "fontTools/__init__.py", "fontTools/agl.py", "fontTools/misc/__init__.py",
        "fontTools/misc/loggingTools.py", "fontTools/misc/textTools.py",
    ),
}


def _platform_args(arch: str) -> list[str]:
    machine = {"arm64": "aarch64", "x86_64": "x86_64"}[arch]
    args: list[str] = []
    for tag in MANYLINUX:
        args += ["--platform", f"{tag}_{machine}"]
    return args


def pip_install(requirements: Path, target: Path, arch: str, python: str) -> None:
    # -c lambda.txt: the plot layer resolves against the same pins (dateutil, numpy, packaging)
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        *_platform_args(arch), "--python-version", python, "--implementation", "cp",
        "--only-binary=:all:", "--target", str(target), "--upgrade", "-r", str(requirements),
        "-c", str(constraints()),
    ]
    subprocess.run(cmd, check=True)


def constraints(path: Path | None = None) -> Path:
    """lambda.txt without extras (pip refuses extras in a constraints file)."""
    path = path or BUILD / "constraints.txt"
    lines = []
    for line in LAMBDA_REQ.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, rest = line.partition("==")
            lines.append(f"{name.split('[')[0]}=={rest}")
    lines.append("python-dateutil<3")  # botocore's bound; else matplotlib pulls 4.x (+ tzdata)
    path.write_text("\n".join(lines) + "\n")
    return path


def base_requirements() -> Path:
    lines = [
        line for line in LAMBDA_REQ.read_text().splitlines()
        if line.split("[")[0].split("=")[0].strip().lower() in BASE_PACKAGES
    ]
    path = BUILD / "base-requirements.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def trim_botocore(site: Path) -> int:
    data = site / "botocore" / "data"
    if not data.is_dir():
        return 0
    removed = 0
    for entry in data.iterdir():
        if entry.is_dir() and entry.name not in BOTOCORE_SERVICES:
            removed += dir_size(entry)
            shutil.rmtree(entry)
    return removed


def strip(tree: Path) -> int:
    """Delete files Lambda never imports; returns bytes removed."""
    removed = 0
    for path in sorted(tree.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        rel = path.relative_to(tree).as_posix()
        if any(rel == k or rel.startswith(k + "/") for k in KEEP_DIRS):
            continue
        if path.is_dir() and path.name in STRIP_DIRS and not path.is_symlink():
            # tests dirs inside packages only (a *module* named test would be a file)
            removed += dir_size(path)
            shutil.rmtree(path)
        elif path.is_file() and path.suffix in STRIP_SUFFIXES and ".dist-info" not in rel:
            removed += path.stat().st_size
            path.unlink()
    return removed


def prune(site: Path, patterns: tuple[str, ...], keep: tuple[str, ...] = ()) -> int:
    """Delete the files matching ``patterns`` (globs relative to ``site``) except ``keep``."""
    removed = 0
    for pattern in patterns:
        for path in sorted(site.glob(pattern)):
            rel = path.relative_to(site).as_posix()
            if path.is_file() and not any(fnmatch.fnmatchcase(rel, k) for k in keep):
                removed += path.stat().st_size
                path.unlink()
    for path in sorted(site.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return removed


def _top_level_names(site: Path) -> set[str]:
    names: set[str] = set()
    for dist in site.glob("*.dist-info"):
        names.add(dist.name.split("-")[0].lower().replace("_", "-"))
    return names


def drop_duplicates(site: Path, earlier: list[Path], exclude: set[str] = frozenset()) -> list[str]:
    """Remove from ``site`` every distribution an earlier layer ships, or excluded (via RECORD)."""
    have = set(exclude)
    for other in earlier:
        have |= _top_level_names(other)
    dropped = []
    for dist in list(site.glob("*.dist-info")):
        name = dist.name.split("-")[0].lower().replace("_", "-")
        if name not in have:
            continue
        record = dist / "RECORD"
        for line in record.read_text().splitlines() if record.exists() else []:
            rel = line.split(",")[0]
            target = (site / rel).resolve()
            if target.is_file() and site.resolve() in target.parents:
                target.unlink()
        shutil.rmtree(dist, ignore_errors=True)
        dropped.append(name)
    # remove package directories left empty
    for path in sorted(site.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return sorted(dropped)


def shared_with(layer: str, earlier: list[str]) -> list[str]:
    """The earlier layers attached to every function that attaches ``layer``: only what they
    ship may be dropped from it (the plot layer's packages are not there for Summarize)."""
    users = [used for used in FUNCTIONS.values() if layer in used]
    return [e for e in earlier if users and all(e in used for used in users)]


def find_python(version: str) -> str | None:
    """An interpreter of the *target* version, to byte-compile for it (pyc are version-specific)."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    for candidate in (shutil.which(f"python{version}"),
                      *sorted(Path.home().glob(f".pyenv/versions/{version}*/bin/python{version}"))):
        if candidate and subprocess.run([str(candidate), "-c", "pass"], capture_output=True).returncode == 0:
            return str(candidate)
    return None


def byte_compile(site: Path, python: str) -> None:
    # /opt is read-only on Lambda: without shipped .pyc every cold start compiles every imported
    # module again (measured locally: 3.8 s vs 0.6 s to import core.pipeline.task). unchecked-hash:
    # zip round trips change mtimes, and a timestamp-checked pyc would be silently ignored.
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                    str(site)], check=True, stdout=subprocess.DEVNULL)


def dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def code_size() -> int:
    total = 0
    for d in CODE_DIRS:
        for p in (ROOT / d).rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts:
                total += p.stat().st_size
    return total


def measure() -> dict:
    layers = {name: dir_size(BUILD / name) for name in LAYERS if (BUILD / name).exists()}
    code = code_size()
    functions = {}
    for fn, used in FUNCTIONS.items():
        total = code + sum(layers.get(name, 0) for name in used)
        functions[fn] = {
            "layers": list(used),
            "unzipped_mb": round(total / MB, 2),
            "status": "fail" if total / MB > LIMIT_MB else "warn" if total / MB > WARN_MB else "ok",
        }
    return {
        "code_mb": round(code / MB, 3),
        "layers_mb": {k: round(v / MB, 2) for k, v in layers.items()},
        "functions": functions,
        "limit_mb": LIMIT_MB,
        "warn_mb": WARN_MB,
    }


def build(arch: str, python: str, compile_pyc: bool = True) -> dict:
    info: dict = {"arch": arch, "python": python, "stripped_mb": {}, "build_s": {}}
    compiler = find_python(python) if compile_pyc else None
    if compile_pyc and compiler is None:
        print(f"WARNING: no python{python} found: layers ship without .pyc (slower cold starts)",
              file=sys.stderr)
    info["pyc"] = bool(compiler)
    done: list[Path] = []
    for name, req in LAYERS.items():
        t0 = time.monotonic()
        site = BUILD / name / "python"
        shutil.rmtree(BUILD / name, ignore_errors=True)
        site.mkdir(parents=True)
        pip_install(req or base_requirements(), site, arch, python)
        exclude = EXCLUDE_DISTS | (RUNTIME_DISTS if name == "base" else set())
        info.setdefault("dropped", {})[name] = drop_duplicates(site, [BUILD / n / "python" for n in
                                                                      shared_with(name, [d.parent.name for d in done])], exclude)
        shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts: unusable in a layer
        stripped = strip(site) + trim_botocore(site) + prune(site, PRUNE.get(name, ()), PRUNE_KEEP.get(name, ()))
        info["stripped_mb"][name] = round(stripped / MB, 2)
        if compiler and name in COMPILE_LAYERS:
            byte_compile(site, compiler)
        done.append(site)
        info["build_s"][name] = round(time.monotonic() - t0, 1)
    return info


def main(argv: list[str] | None = None) -> int:
    global BUILD, LIMIT_MB
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="arm64", choices=("arm64", "x86_64"))
    ap.add_argument("--python", default="3.12")
    ap.add_argument("--skip-install", action="store_true", help="only measure an existing build")
    ap.add_argument("--out", type=Path, default=BUILD, help="build directory (default layers/build)")
    ap.add_argument("--limit-mb", type=float, default=LIMIT_MB, help="fail above this (MiB)")
    ap.add_argument("--no-pyc", action="store_true", help="do not byte-compile for the runtime")
    args = ap.parse_args(argv)
    BUILD, LIMIT_MB = args.out.resolve(), args.limit_mb

    BUILD.mkdir(parents=True, exist_ok=True)
    sizes_path = BUILD / "sizes.json"
    info = {}
    if args.skip_install:
        if sizes_path.exists():
            info = {k: v for k, v in json.loads(sizes_path.read_text()).items()
                    if k in ("arch", "python", "stripped_mb", "build_s", "dropped", "pyc")}
    else:
        info = build(args.arch, args.python, compile_pyc=not args.no_pyc)
    report = {**info, **measure()}
    sizes_path.write_text(json.dumps(report, indent=2) + "\n")

    worst = 0
    for fn, row in report["functions"].items():
        print(f"{fn:20s} {row['unzipped_mb']:8.1f} MiB  {row['status']}  ({'+'.join(row['layers'])})")
        if row["status"] == "warn":
            print(f"WARNING: {fn} is above {WARN_MB:.0f} MiB unzipped (project target)", file=sys.stderr)
        if row["status"] == "fail":
            print(f"ERROR: {fn} exceeds the {LIMIT_MB:.0f} MiB unzipped limit", file=sys.stderr)
            worst = 1
    return worst


if __name__ == "__main__":
    sys.exit(main())
