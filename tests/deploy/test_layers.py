"""Layers as built for Lambda (layers/build.py): sizes under the limit, right platform, and the
stripping never removes anything the handlers import."""
from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_PY = ROOT / "layers" / "build.py"
BUILD = ROOT / "layers" / "build"
SIZES = BUILD / "sizes.json"
EM_AARCH64, EM_X86_64 = 183, 62

spec = importlib.util.spec_from_file_location("layers_build", BUILD_PY)
layer_build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(layer_build)



@pytest.fixture
def built_layers():
    # a missing build is a failure, not a skip: `make test` builds the layers before the tests
    assert SIZES.exists(), "no layer build in layers/build: run `make layers` (`make test` does it first)"


def needs_build(test):
    """The test reads layers/build. Slow: the fast suite (`make test-fast`) builds no layers."""
    return pytest.mark.slow(pytest.mark.usefixtures("built_layers")(test))


def run_build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BUILD_PY), *args], capture_output=True, text=True)


@needs_build
def test_every_function_fits_lambda_limit():
    out = run_build("--skip-install")
    assert out.returncode == 0, out.stdout + out.stderr
    sizes = json.loads(SIZES.read_text())
    for fn, row in sizes["functions"].items():
        assert row["unzipped_mb"] <= 250.0, (fn, row)
        print(f"{fn}: {row['unzipped_mb']} MiB ({'+'.join(row['layers'])})")
    # the measurement is real: it matches an independent walk of the directories
    walked = sum(p.stat().st_size for p in (BUILD / "science").rglob("*") if p.is_file() and not p.is_symlink())
    assert abs(sizes["layers_mb"]["science"] - walked / 2**20) < 0.05


@needs_build
def test_size_check_fails_above_the_limit():
    out = run_build("--skip-install", "--limit-mb", "100")
    assert out.returncode == 1 and "ColocateFunction exceeds" in out.stderr
    run_build("--skip-install")  # leave sizes.json with the real limit


def _elf_machine(path: Path) -> int | None:
    with open(path, "rb") as fh:
        head = fh.read(20)
    if head[:4] != b"\x7fELF":
        return None
    return int.from_bytes(head[18:20], "little")


@needs_build
def test_binaries_are_for_the_lambda_platform():
    arch = json.loads(SIZES.read_text())["arch"]
    want = EM_AARCH64 if arch == "arm64" else EM_X86_64
    shared = [p for p in BUILD.rglob("*.so*") if p.is_file()]
    assert len(shared) > 50
    wrong = [str(p) for p in shared if _elf_machine(p) not in (None, want)]
    assert not wrong, wrong[:5]
    # CPython extensions are for the Lambda runtime's Python, not the build machine's
    tags = {p.name.split(".")[-2] for p in shared if ".cpython-" in p.name}
    assert all(t.startswith("cpython-312") for t in tags), tags


@needs_build
def test_layers_have_no_duplicates_and_no_test_suites():
    owners: dict[str, str] = {}
    for layer in layer_build.LAYERS:
        for dist in (BUILD / layer / "python").glob("*.dist-info"):
            name = dist.name.split("-")[0].lower()
            assert name not in owners, f"{name} in {owners.get(name)} and {layer}"
            owners[name] = layer
    assert {"numpy", "h5py", "pykdtree", "xarray", "botocore", "aiobotocore"} <= {k for k, v in owners.items() if v == "science"}
    assert owners["matplotlib"] == "plot" and owners["pydantic"] == "base"
    assert owners["fastparquet"] == "parquet" and owners["cramjam"] == "parquet"
    assert not (set(layer_build.EXCLUDE_DISTS) & set(owners))
    # byte code only where build.py compiles it, for the runtime's Python, never mtime-checked
    sizes = json.loads(SIZES.read_text())
    for layer in layer_build.LAYERS:
        pycs = list((BUILD / layer).rglob("*.pyc"))
        if sizes.get("pyc") and layer in layer_build.COMPILE_LAYERS:
            assert pycs and all(p.name.endswith(".cpython-312.pyc") for p in pycs), layer
            for pyc in pycs[:200]:
                flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
                assert flags == 0b01, (pyc, flags)  # hash-based, unchecked (zip changes mtimes)
        else:
            assert not pycs, layer
    assert not [p for p in BUILD.rglob("tests") if p.is_dir() and "numpy" not in p.parts]
    assert not list(BUILD.rglob("*.pyi"))


@needs_build
def test_trimmed_botocore_still_has_every_service_we_call(tmp_path):
    """The science layer's botocore (pure Python) shadows the runtime's: it must load our clients."""
    code = (
        "import botocore, boto3, json, sys\n"
        "assert botocore.__file__.startswith(sys.argv[1]), botocore.__file__\n"
        f"names = {list(layer_build.BOTOCORE_SERVICES)!r}\n"
        "s = boto3.session.Session(region_name='us-west-2', aws_access_key_id='a', aws_secret_access_key='b')\n"
        "for n in names: s.client(n)\n"
        "avail = s.get_available_services()\n"
        "print(json.dumps({'botocore': botocore.__version__, 'services': len(avail), 'ec2': 'ec2' in avail}))\n"
    )
    site = str(BUILD / "science" / "python")
    out = subprocess.run([sys.executable, "-c", code, site], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": site})
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout)
    pins = dict(line.split("==") for line in (ROOT / "requirements" / "lambda.txt").read_text().splitlines()
                if line.startswith("botocore=="))
    assert info["botocore"] == pins["botocore"] and not info["ec2"]


EXCLUDED_MODULES = {"pyresample", "pyproj", "shapely"}


def test_excluded_distributions_are_not_imported_by_src():
    """Static: no module under src/ imports what the layers leave out."""
    import ast

    assert layer_build.EXCLUDE_DISTS == EXCLUDED_MODULES  # keep this test in step with build.py
    offenders = []
    for path in (ROOT / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in EXCLUDED_MODULES]
    assert not offenders, offenders


# What the colocate function loads at run time, recorded with the local interpreter: every
# Lambda code path imported, a product written and re-opened, quicklooks rendered with Agg (with and
# without a swath, plus a mathtext title), then every module file in sys.modules and every file
# opened (audit hook: fonts, matplotlibrc, dist-info METADATA). Run twice with the same
# MPLCONFIGDIR so the second run records a warm font cache (the first scans every font file).
CLOSURE_SCRIPT = r"""
import json, os, sys
opened = set()
def _audit(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        opened.add(os.fsdecode(args[0]))
sys.addaudithook(_audit)
from datetime import datetime, timezone
import handlers.colocate, handlers.api, handlers.plan, handlers.summarize
import core.pipeline.task, core.science.kernel, core.science.l2p, core.science.atl07, core.products.granule_netcdf, core.products.quicklook
import xarray as xr
from core.products.granule_netcdf import build_dataset, write_netcdf
from core.products.quicklook import render_quicklook
from tests.product_fixtures import PARAMS, seed_scene
out = sys.argv[1]
tracks, swaths = seed_scene(n=300)
ds = build_dataset(tracks, [s.granule for s in swaths], PARAMS, now=datetime(2026, 1, 1, tzinfo=timezone.utc))
write_netcdf(ds, os.path.join(out, "p.nc"))
with xr.open_dataset(os.path.join(out, "p.nc")) as back:
    render_quicklook(back, os.path.join(out, "q.png"), swaths)
render_quicklook(ds, os.path.join(out, "q2.png"))
from core.products.request_outputs import write_request_products  # Summarize's request-level results
with xr.open_dataset(os.path.join(out, "p.nc")) as back:
    write_request_products([("2019-06-22", [back])], os.path.join(out, "r.nc"), os.path.join(out, "pq"),
                           request_id="rtest")
from matplotlib.figure import Figure
fig = Figure(); ax = fig.subplots(); ax.scatter([1, 2], [3, 4], c=[5, 6])
ax.set_title("SST $\\Delta t$ (°C)"); fig.colorbar(ax.collections[0], ax=ax)
fig.savefig(os.path.join(out, "m.png"), dpi=50)
record = {
    "modules": sorted(n for n in sys.modules if not n.startswith("tests")),
    "files": sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())} - {""}),
    "opened": sorted(p for p in opened if os.path.isfile(p)),  # the audit event comes before the open
}
with open(os.path.join(out, "closure.json"), "w") as fh:
    json.dump(record, fh)
"""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def record_closure(out: Path, pythonpath: str, python: list[str] | None = None, env: dict | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    script = out / "closure.py"
    script.write_text(CLOSURE_SCRIPT)
    env = {**(env if env is not None else os.environ), "PYTHONPATH": pythonpath,
           "MPLCONFIGDIR": str(out / "mplconfig"), "POWERTOOLS_TRACE_DISABLED": "1"}
    for _ in range(2):  # the second run starts with a warm font cache
        run = subprocess.run([*(python or [sys.executable]), str(script), str(out)], capture_output=True,
                             text=True, env=env)
        assert run.returncode == 0, run.stderr[-3000:]
    for png in ("q.png", "q2.png", "m.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    return {**json.loads((out / "closure.json").read_text()), "output": run.stdout + run.stderr}


@pytest.fixture(scope="module")
def closure(tmp_path_factory) -> dict:
    return record_closure(tmp_path_factory.mktemp("closure"), f"{ROOT / 'src'}:{ROOT}")


def test_run_time_import_closure_needs_no_excluded_distribution(closure):
    """Dynamic: importing every Lambda code path and rendering Agg PNGs loads none of them."""
    bad = sorted({m.split(".")[0] for m in closure["modules"]} & EXCLUDED_MODULES)
    assert not bad, bad


def _site_relative(path: str) -> str | None:
    marker = "site-packages/"
    return path.split(marker, 1)[1] if marker in path else None


NEEDED = {  # files each function's closure must load from its layers (the check covers them)
    "ColocateFunction": ("fontTools/agl.py", "PIL/PngImagePlugin.py", "PIL/_imaging.", "matplotlib/backends/backend_agg.py",
                         "matplotlib/mpl-data/matplotlibrc", "matplotlib/mpl-data/fonts/ttf/DejaVuSans.ttf",
                         "numpy/_core/_multiarray_umath.", "pandas/__init__.py"),
    "SummarizeFunction": ("fastparquet/writer.py", "cramjam/", "h5netcdf/__init__.py", "xarray/__init__.py",
                          "pandas/__init__.py"),
}


@needs_build
@pytest.mark.parametrize("function", sorted(NEEDED))
def test_layers_hold_every_file_the_run_time_closure_loads(closure, function):
    """Stripping and PRUNE never remove a module or data file the function loads.

    Every module file and opened file of the local closure that belongs to a top-level package
    or distribution the function's layers ship must be in one of them: .py and data files by
    path, extension modules by name (cpython-311-x86_64 locally, cpython-312-aarch64 in the layer).
    """
    sites = [BUILD / layer / "python" for layer in layer_build.FUNCTIONS[function]]
    shipped_tops = {p.name for site in sites for p in site.iterdir()}
    checked, missing = 0, []
    for path in sorted(set(closure["files"]) | set(closure["opened"])):
        rel = _site_relative(path)
        if rel is None or rel.split("/")[0] not in shipped_tops or "__pycache__" in rel:
            continue  # stdlib, src/, or a local-only distribution (e.g. netCDF4, pytest)
        checked += 1
        if rel.endswith(".so"):
            stem = rel.split(".")[0]
            if not any(list(site.glob(f"{stem}.cpython-312*.so")) or list(site.glob(f"{stem}.abi3.so"))
                       for site in sites):
                missing.append(rel)
        elif not any((site / rel).is_file() for site in sites):
            missing.append(rel)
    assert not missing, missing
    for needed in NEEDED[function]:
        assert any(needed in (_site_relative(p) or "") for p in closure["files"] + closure["opened"]), needed
    assert checked > 500


@needs_build
def test_pruned_files_are_gone():
    for layer, patterns in layer_build.PRUNE.items():
        site = BUILD / layer / "python"
        for pattern in patterns:
            left = [p for p in site.glob(pattern) if p.is_file()
                    and not any(fnmatch.fnmatchcase(p.relative_to(site).as_posix(), k)
                                for k in layer_build.PRUNE_KEEP.get(layer, ()))]
            assert not left, (layer, pattern, left[:3])
    assert sorted(p.relative_to(BUILD / "plot" / "python").as_posix()
                  for p in (BUILD / "plot" / "python" / "fontTools").rglob("*.py")) == sorted(layer_build.PRUNE_KEEP["plot"])


@pytest.mark.slow
def test_pruned_plot_layer_renders_quicklooks(tmp_path):
    """The plot layer's pruning applied to an install for *this* interpreter renders real PNGs.

    The shipped layer is cp312/aarch64 and cannot load here; the same requirements, pins, strip and
    PRUNE applied to a local install can. The font cache is built from the pruned mpl-data (fresh
    MPLCONFIGDIR) and no font lookup may fall back (matplotlib logs "findfont: ... not found").
    """
    site = tmp_path / "plot"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          "--only-binary=:all:", "--target", str(site), "-r", str(layer_build.LAYERS["plot"]),
                          "-c", str(layer_build.constraints(tmp_path / "constraints.txt"))],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    # what the science layer provides (numpy, dateutil...) comes from the venv, as on Lambda
    layer_build.drop_duplicates(site, [], {"numpy", "packaging", "python-dateutil", "six"})
    layer_build.strip(site)
    removed = layer_build.prune(site, layer_build.PRUNE["plot"], layer_build.PRUNE_KEEP["plot"])
    assert removed > 25 * 2**20
    venv_site = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "numpy").is_dir())
    env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-west-2", "HOME": str(tmp_path)}
    rec = record_closure(tmp_path / "out", f"{ROOT / 'src'}:{ROOT}:{site}:{venv_site}", [sys.executable, "-S"], env)
    for top in ("matplotlib", "PIL", "fontTools", "kiwisolver"):
        origin = [f for f in rec["files"] if f"/{top}/" in f]
        assert origin and all(f.startswith(str(site)) for f in origin), (top, origin[:2])
    assert "findfont" not in rec["output"], rec["output"][-2000:]


@needs_build
def test_every_needed_shared_library_is_shipped():
    """Each extension's DT_NEEDED libraries are in a layer or are system libraries (readelf)."""
    import shutil as _shutil

    if not _shutil.which("readelf"):
        pytest.skip("readelf not installed")
    shipped = {p.name for p in BUILD.rglob("*.so*") if p.is_file()}
    system = ("libc.so", "libm.so", "libpthread.so", "libdl.so", "librt.so", "libz.so", "ld-linux",
              "libstdc++.so", "libgcc_s.so", "libutil.so", "libexpat.so")
    missing = []
    for so in BUILD.rglob("*.so*"):
        if not so.is_file() or _elf_machine(so) is None:
            continue
        out = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "(NEEDED)" in line:
                lib = line.split("[", 1)[1].rstrip("]")
                if lib not in shipped and not lib.startswith(system):
                    missing.append(f"{so.relative_to(BUILD)} needs {lib}")
    assert not missing, missing[:10]


@pytest.mark.slow
def test_small_functions_run_on_the_base_layer_and_runtime_boto3(tmp_path):
    """Api/Plan attach only the base layer: their import closure must fit it. Summarize also has
    the science and Parquet layers, but its import stays as light (the request-level results
    import xarray/fastparquet when they are built), so a quick job's cold start is not slowed.

    Builds the base layer's requirements for *this* interpreter (the shipped one is arm64/cp312)
    plus what the Lambda runtime provides (boto3), then imports the handlers with no site-packages.
    """
    reqs = tmp_path / "reqs.txt"
    lines = [l for l in (ROOT / "requirements" / "lambda.txt").read_text().splitlines()
             if l.split("[")[0].split("=")[0].strip().lower() in layer_build.BASE_PACKAGES + ("boto3", "botocore")]
    reqs.write_text("\n".join(lines) + "\n")
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--only-binary=:all:",
                          "--target", str(site), "-r", str(reqs)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    code = (
        "import sys, json\n"
        "import handlers.api, handlers.plan, handlers.summarize\n"
        "heavy = [m for m in ('numpy', 'xarray', 'h5py', 'pandas', 'matplotlib', 's3fs', 'pyresample') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from core.jobs.date_tasks import direct_tasks\n"
        "from handlers.runtime import settings\n"
        "print(json.dumps([t.date.isoformat() for t in direct_tasks({'bbox': [0, 80, 1, 81], 'date': '2019-06-22'}, settings())]))\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": f"{ROOT / 'src'}:{site}",
           "AWS_DEFAULT_REGION": "us-west-2", "POWERTOOLS_TRACE_DISABLED": "1"}
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["2019-06-22"]


@pytest.mark.slow
def test_build_from_scratch(tmp_path):
    """The whole build (pip downloads allowed) into a fresh directory, timed."""
    t0 = time.monotonic()
    out = run_build("--out", str(tmp_path / "build"))
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    sizes = json.loads((tmp_path / "build" / "sizes.json").read_text())
    print(f"layer build: {elapsed:.0f} s; {json.dumps(sizes['functions'])}")
    assert max(r["unzipped_mb"] for r in sizes["functions"].values()) <= 250.0
