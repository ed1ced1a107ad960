"""Broken granules as a DAAC might serve them (issue 24): never the caller's error. An L2P whose
``lon`` grid is not ``lat``'s is dropped with its reason and the date completes with the other
granules; an ATL07 whose ``delta_time`` is all fill gives a manifest warning, not a silent empty
date. The broken copies replace the objects in the sandbox's S3 for the test (restored after)."""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests import faults_fixtures as ff
from tests.pipeline_fixtures import run_date

ATL07_FILL = np.finfo(np.float64).max  # the ATL07 data dictionary's float64 _FillValue


@pytest.fixture
def sb(fault_sb):
    return fault_sb


@pytest.fixture
def replaced(sb, tmp_path):
    """``replace(granule, edit)``: the granule's object in S3 becomes a copy edited by ``edit(h5py.File)``."""
    s3 = sb.boto3_client("s3")
    originals = []

    def replace(g, edit) -> None:
        copy = tmp_path / g.file_name
        shutil.copyfile(g.path, copy)
        with h5py.File(copy, "r+") as f:
            edit(f)
        originals.append(g)
        s3.upload_file(str(copy), g.bucket, g.key)  # read in place (moto) ...
        sb.state.files[(g.bucket, g.key)] = copy  # ... and downloaded (the presigned-S3 app)

    yield replace
    for g in originals:
        s3.upload_file(str(g.path), g.bucket, g.key)
        sb.state.files[(g.bucket, g.key)] = Path(g.path)


def _lon_off_grid(f: h5py.File) -> None:
    rows, cols = f["lat"].shape
    del f["lon"]
    f.create_dataset("lon", data=np.zeros((rows, cols - 1), np.float32))


def test_an_l2p_whose_lon_grid_is_not_lats_is_dropped_with_its_reason(sb, replaced):
    first = run_date(ff.task(sb), ff.services(sb, l2p_read="blocks"))
    matched = {n for p in first["products"] for n in p["sst_granules_matched"]}
    assert len(matched) > 1, "the seed case matches several L2P granules"
    broken = sorted(matched)[0]
    g = next(g for g in sb.scene.granules if g.title == broken)
    replaced(g, _lon_off_grid)
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb, l2p_read="blocks"))  # (its DMR++ sidecar describes the original)
    assert manifest["status"] == "complete"
    reasons = {d["granule"]: d["reason"] for d in manifest["inputs"]["sst_dropped"]}
    assert reasons[broken].startswith("unusable L2P granule (upstream)") and "lat/lon" in reasons[broken]
    still = {n for p in manifest["products"] for n in p["sst_granules_matched"]}
    assert broken not in still and still == matched - {broken} and manifest["counts"]["matched"] > 0
    assert any(broken in w for w in manifest["warnings"])
    ff.assert_one_complete_result(sb, t, manifest)


def _no_time(f: h5py.File) -> None:
    for beam in ("gt1l", "gt1r", "gt2l", "gt2r", "gt3l", "gt3r"):
        path = f"{beam}/sea_ice_segments/delta_time"
        if path in f:
            f[path][...] = ATL07_FILL
            f[path].attrs["_FillValue"] = ATL07_FILL


def test_an_atl07_without_usable_time_is_a_manifest_warning(sb, replaced):
    g = next(g for g in sb.scene.granules if g.short_name == "ATL07" and "_20190622055317_" in g.file_name)
    replaced(g, _no_time)
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb))
    assert manifest["status"] == "complete" and manifest["counts"]["segments"] == 0
    warning = [w for w in manifest["warnings"] if g.title in w and "no usable time" in w]
    assert warning and "delta_time is fill" in warning[0], manifest["warnings"]
    assert "the granule has no usable time" in warning[0]
    key = f"{sb.settings.output_prefix}/{t.request_id}/{t.date.isoformat()}/manifest.json"
    assert ff.request_keys(sb, t) == [key]  # no product for a granule without time
    assert not [p for p in Path(sb.settings.download_dir).rglob("*") if p.is_file()]
