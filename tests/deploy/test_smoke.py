"""``make smoke`` (tools/smoke.py): its credential check, and its checks, run against the sandbox
(the real services are out of reach here)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tools import smoke

NO_CREDENTIALS = ("EARTHDATA_TOKEN", "EARTHDATA_USERNAME", "EARTHDATA_PASSWORD", "NETRC", "COLOC_EDL_SECRET_NAME")


@pytest.fixture
def bare_home(tmp_path, monkeypatch):
    for name in NO_CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_without_credentials_it_is_skipped_with_a_clear_message(bare_home, capsys):
    assert smoke.main(["--out", str(bare_home / "out")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("smoke: skipped: no Earthdata credentials: set EARTHDATA_TOKEN")
    assert "Earthdata Login account" in out and not (bare_home / "out").exists()


@pytest.mark.parametrize("how", ["token", "password", "netrc"])
def test_each_kind_of_credentials_counts(bare_home, monkeypatch, how):
    if how == "token":
        monkeypatch.setenv("EARTHDATA_TOKEN", "x.y.z")
    elif how == "password":
        monkeypatch.setenv("EARTHDATA_USERNAME", "someone")
        monkeypatch.setenv("EARTHDATA_PASSWORD", "secret")
    else:
        (bare_home / ".netrc").write_text("machine urs.earthdata.nasa.gov login someone password secret\n")
        (bare_home / ".netrc").chmod(0o600)
    assert smoke.missing_credentials() is None


def test_a_netrc_for_another_host_is_no_credentials(bare_home):
    (bare_home / ".netrc").write_text("machine example.org login someone password secret\n")
    (bare_home / ".netrc").chmod(0o600)
    assert "no Earthdata credentials" in smoke.missing_credentials()


@pytest.fixture(scope="module")
def sandbox_smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = smoke.main(["--sandbox", "--sandbox-scene", "cut", "--out", str(out)])
    return out, code, stdout.getvalue()


@pytest.mark.slow
def test_the_smoke_run_passes_against_the_sandbox_and_leaves_the_products(sandbox_smoke):
    out, code, text = sandbox_smoke
    assert code == 0, text
    assert text.splitlines()[-1].startswith("smoke: OK: 2 ATL07 granules, 14 L2P granules on the day")
    ncs = sorted(out.rglob("*_sst.nc"))
    assert len(ncs) == 2 and all(p.read_bytes()[:4] == b"\x89HDF" for p in ncs)


def _summary(out: Path) -> dict:
    manifest = next(out.rglob("manifest.json"))
    m = json.loads(manifest.read_text())
    return {"dates": [{"date": m["date"], "status": "complete", "counts": m["counts"], "manifest": str(manifest),
                       "products": [str(out / k) for k in m["outputs"]]}]}


@pytest.mark.slow
def test_the_checks_catch_a_wrong_run(sandbox_smoke, tmp_path):
    out, code, _ = sandbox_smoke
    good = _summary(out)
    assert smoke.check(good) == []
    one_granule = copy.deepcopy(good)
    one_granule["dates"][0]["counts"]["atl07_granules"] = 1
    assert "expected 2 ATL07 granules, found 1" in smoke.check(one_granule)
    # a manifest missing L2P granules of the day
    manifest = json.loads(Path(good["dates"][0]["manifest"]).read_text())
    manifest["inputs"]["sst"] = manifest["inputs"]["sst"][1:]
    short = tmp_path / "manifest.json"
    short.write_text(json.dumps(manifest))
    fewer = copy.deepcopy(good)
    fewer["dates"][0]["manifest"] = str(short)
    assert "expected 14 L2P granules starting on 2019-06-22, found 13" in smoke.check(fewer)
    nothing = copy.deepcopy(good)
    nothing["dates"][0]["counts"]["matched"] = 0
    assert any("expected matches" in p for p in smoke.check(nothing))
    gone = copy.deepcopy(good)
    gone["dates"][0]["products"][0] = str(tmp_path / "missing_sst.nc")
    assert any(p.startswith("missing output") for p in smoke.check(gone))
    failed = {"dates": [{"date": "2019-06-22", "status": "failed", "error": "CMR: HTTP 503"}]}
    assert smoke.check(failed) == ["2019-06-22 failed: CMR: HTTP 503"]
