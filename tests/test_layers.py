"""Layers as built for Lambda (layers/build.py): sizes under the limit, right platform, and the
stripping never removes anything the handlers import."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_PY = ROOT / "layers" / "build.py"
BUILD = ROOT / "layers" / "build"
SIZES = BUILD / "sizes.json"
EM_AARCH64, EM_X86_64 = 183, 62

spec = importlib.util.spec_from_file_location("layers_build", BUILD_PY)
layer_build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(layer_build)

needs_build = pytest.mark.skipif(not SIZES.exists(), reason="no layer build: run `make layers` (layers/build.py)")


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


def test_run_time_import_closure_needs_no_excluded_distribution(tmp_path):
    """Dynamic: importing every Lambda code path and rendering an Agg PNG loads none of them."""
    code = (
        "import sys\n"
        "import handlers.colocate, handlers.api, handlers.plan, handlers.summarize\n"
        "import core.pipeline, core.colocate, core.l2p, core.atl07, core.product, core.quicklook\n"
        "import matplotlib; matplotlib.use('Agg')\n"
        "from matplotlib.figure import Figure\n"
        "fig = Figure(); ax = fig.subplots(); ax.scatter([1, 2], [3, 4], c=[5, 6]); ax.set_title('SST $\\\\Delta t$')\n"
        "fig.savefig(sys.argv[1], dpi=50)\n"
        f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(EXCLUDED_MODULES)!r}))\n"
        "assert not bad, bad\n"
    )
    png = tmp_path / "x.png"
    out = subprocess.run([sys.executable, "-c", code, str(png)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
    """Api/Plan/Summarize attach only the base layer: their import closure must fit it.

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
        "from handlers.colocate import direct_tasks\n"
        "print(json.dumps([t.date.isoformat() for t in direct_tasks({'bbox': [0, 80, 1, 81], 'date': '2019-06-22'})]))\n"
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
