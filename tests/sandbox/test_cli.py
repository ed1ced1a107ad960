"""``colocate files`` end to end on small synthetic granules (and the real files for errors)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from cli.command import main
from core.model import BEAMS
from core.science.l2p import open_l2p
from sandbox.colocate import main as sandbox_colocate
from tests.raw_oracle import nearest, pixel_table, read_atl07_raw, read_l2p_raw
from tests.science_fixtures import delta_time_for, synthetic_swath_file, track_geometry, write_atl07

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def scene(tmp_path):
    """Three L2P granules (two over the track — one in Kelvin, one stored in Celsius, both with
    ice-cold SSTs outside the valid range — and one far away) and an ATL07 granule crossing them."""
    sst, _ = synthetic_swath_file(tmp_path, 82.3, -60.0, rows=50, cols=40, name="A_L2P.nc",
                                  ref_time="2019-06-22T10:00:01", cold_frac=0.25)
    far, _ = synthetic_swath_file(tmp_path, -60.0, 100.0, rows=10, cols=10, name="B_L2P.nc", seed=3)
    celsius, _ = synthetic_swath_file(tmp_path, 82.3, -60.01, rows=50, cols=40, name="C_L2P.nc", seed=5,
                                      ref_time="2019-06-22T10:01:01", cold_frac=0.25, celsius=True)
    beams = {}
    for i, beam in enumerate(BEAMS):
        lat, lon = track_geometry(82.3, -60.0 + 0.01 * i, n=300, length_m=80_000, angle_deg=20, rng=np.random.default_rng(i))
        # every 7th height missing, every 5th fit "invalid" (-1, as v003 writes it)
        beams[beam] = dict(lat=lat, lon=lon, delta_time=delta_time_for("2019-06-22T10:02:00") + np.arange(300) * 0.5,
                           height=np.where(np.arange(300) % 7 == 3, np.nan, np.linspace(0, 1, 300)),
                           fit_quality=np.where(np.arange(300) % 5 == 0, -1, 2))
    atl = write_atl07(tmp_path / "ATL07-01_20190622095000_13070301_006_01.h5", beams)
    return SimpleNamespace(tmp=tmp_path, atl=atl, sst=sst, far=far, celsius=celsius)


def _n_segments(*atl07) -> int:
    """Segments with a valid location and time, counted in the raw files."""
    return sum(b.lat.size for path in atl07 for b in read_atl07_raw(path).values())


def run(argv, capsys, command=main):
    code = command(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("exclude_ice", [False, True])
def test_files_writes_product_and_one_line_summary(scene, capsys, exclude_ice):
    out_nc = scene.tmp / "out" / "result.nc"
    l2p = [scene.sst, scene.far, scene.celsius]
    radius, max_dt, min_ql = 1000.0, 600.0, 3
    code, out, err = run(["files", "--atl07", str(scene.atl), *[a for p in l2p for a in ("--sst", str(p))],
                          "--out", str(out_nc), "--max-dt-s", str(max_dt), "--min-quality-level", str(min_ql),
                          *(["--exclude-ice"] if exclude_ice else [])], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])

    # independent check from the raw files: segments (h5py delta_time + 18 s), pixels (fill,
    # valid range, scale/offset, Celsius by hand), brute force over every pixel of every granule
    raw = read_atl07_raw(scene.atl)
    swaths = [read_l2p_raw(p) for p in l2p]
    pixels = pixel_table(swaths, min_ql, exclude_ice=exclude_ice)
    n_segments = sum(b.lat.size for b in raw.values())
    with xr.open_dataset(out_nc, mask_and_scale=False) as ds:
        assert ds.attrs["featureType"] == "trajectory"
        assert ds.sizes["obs"] == n_segments and ds.sizes["trajectory"] == len(raw)
        beams = np.repeat(ds["beam"].values.astype(str), ds["rowSize"].values.astype(int))
        ids, t = ds["height_segment_id"].values, ds["time"].values.astype("datetime64[ns]")
        got, got_dt = ds["sst"].values, ds["sst_dt"].values
        sources = [str(v) for v in ds["sst_source_name"].values]
        got_src = ds["sst_granule"].values
        flags, fit = ds["sst_match_flags"].values, ds["height_segment_fit_quality_flag"].values
        stddev, n_valid = ds["sst_stddev"].values, ds["sst_n_valid"].values
        n_excluded, attrs = ds["sst_n_excluded_ice"].values, dict(ds.attrs)
    j = np.array([int(np.flatnonzero(raw[b].id == i)[0]) for b, i in zip(beams, ids)])
    lat = np.array([raw[b].lat[k] for b, k in zip(beams, j)])
    lon = np.array([raw[b].lon[k] for b, k in zip(beams, j)])
    seg_t = np.array([raw[b].time[k] for b, k in zip(beams, j)])
    assert np.abs((t - seg_t) / np.timedelta64(1, "us")).max() <= 1000, "segment times off by more than 1 ms"
    idx, dist, dts = nearest(lat, lon, seg_t, pixels, radius, max_dt)
    hit = idx >= 0
    assert summary["segments"] == n_segments and summary["beams"] == len(raw)
    assert summary["matched"] == int(hit.sum()) > 100
    np.testing.assert_allclose(got[hit], pixels.sst[idx[hit]], atol=1e-3)
    np.testing.assert_allclose(got_dt[hit], dts[hit], atol=1e-3)
    assert np.isnan(got[~hit]).all()
    names = [p.name for p in l2p]
    assert [sources[k] for k in got_src[hit]] == [names[g] for g in pixels.granule[idx[hit]]]
    used = set(pixels.granule[idx[hit]].tolist())
    assert used == {0, 2}, "both granules over the track (Kelvin and Celsius) supply matches"
    assert summary["granules"] == {"atl07": 1, "sst": len(l2p), "sst_reaching_segments": len(used),
                                   "sst_matched": len(used)}
    # what each match means, from the raw files: the pixel's ice bit, below freezing, the
    # segment's missing height; the fit flag as written (-1 invalid stays -1); ice exclusion
    height = np.array([raw[b].height[k] for b, k in zip(beams, j)])
    np.testing.assert_array_equal(flags[hit] & 1, pixels.ice[idx[hit]].astype(int))
    np.testing.assert_array_equal((flags[hit] & 2) > 0, got[hit] < 271.35)
    assert not (flags & 4).any()
    np.testing.assert_array_equal((flags & 8) > 0, np.isnan(height))
    np.testing.assert_array_equal(fit, np.array([raw[b].fit[k] for b, k in zip(beams, j)]))
    assert (fit == -1).any() and (flags[hit] & 8).any()
    assert np.isnan(stddev[n_valid == 1]).all() and (n_valid == 1).any()
    assert attrs["segments_matched"] == int((hit & ~np.isnan(height)).sum()) < attrs["segments_matched_any_height"]
    if exclude_ice:
        assert not (flags[hit] & 1).any() and n_excluded.sum() > 0 and attrs["colocation_exclude_ice"] == "true"
    else:
        assert (flags[hit] & 1).any() and not n_excluded.any() and "ice bit is set" in attrs["summary"]
    # the pixel table beside it: one row per matched pixel, its segments counted
    assert summary["pixels"] == str(out_nc.with_name("result_pixels.nc"))
    with xr.open_dataset(summary["pixels"]) as px:
        keys = {(sources[g], int(a), int(b)) for g, a, b in
                zip(got_src[hit], pixels.nj[idx[hit]], pixels.ni[idx[hit]])}
        assert px.sizes["pixel"] == len(keys) and int(px["n_segments"].sum()) == int(hit.sum())
        assert int(px["n_segments_valid_height"].sum()) == attrs["segments_matched"]
        assert {(str(s), int(a), int(b)) for s, a, b in zip(px["sst_source_name"].values, px["sst_pixel_nj"].values,
                                                            px["sst_pixel_ni"].values)} == keys


def test_bbox_restricts_segments(scene, capsys):
    tmp, atl, sst = scene.tmp, scene.atl, scene.sst
    code, out, err = run(["files", "--atl07", str(atl), "--sst", str(sst), "--bbox", "-61,82.25,-59,82.35",
                          "--out", str(tmp / "r.nc")], capsys)
    assert code == 0, err
    assert 0 < json.loads(out)["segments"] < _n_segments(atl)


def test_no_overlap_gives_valid_file_with_zero_matches(scene, capsys):
    tmp, atl, far = scene.tmp, scene.atl, scene.far
    code, out, err = run(["files", "--atl07", str(atl), "--sst", str(far), "--out", str(tmp / "none.nc")], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["matched"] == 0 and summary["segments"] == _n_segments(atl)
    with xr.open_dataset(tmp / "none.nc") as ds:
        assert ds.sizes["obs"] == _n_segments(atl) and np.isnan(ds["sst"].values).all()


def test_png_quicklook(scene, capsys):
    tmp, atl, sst = scene.tmp, scene.atl, scene.sst
    code, out, err = run(["files", "--atl07", str(atl), "--sst", str(sst), "--out", str(tmp / "q.nc"),
                          "--png", str(tmp / "q.png")], capsys)
    assert code == 0, err
    assert (tmp / "q.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case,needle", [
    ("missing", "missing file"),
    ("not_atl07", "is not an ATL07 granule"),
    ("not_l2p", "is not a GHRSST L2P granule"),
    ("not_hdf5", "is not a netCDF4/HDF5 file"),
    ("bad_bbox", "--bbox: must have exactly 4 numbers"),
    ("bbox_order", "--bbox: south must be less than north"),
    ("bad_quality", "--min-quality-level: Input should be less than or equal to 5"),
    ("repeated", "is given twice"),
])
def test_bad_input_one_line_error(scene, capsys, realdata, case, needle):
    tmp, atl, sst = scene.tmp, scene.atl, scene.sst
    junk = tmp / "junk.nc"
    junk.write_text("junk")
    args = {
        "missing": ["--atl07", str(tmp / "nope.h5"), "--sst", str(sst)],
        "not_atl07": ["--atl07", str(sst), "--sst", str(sst)],
        "not_l2p": ["--atl07", str(atl), "--sst", str(realdata / "atl07" / "processed_ATL07-01_20190225115500_09020201_003_02.h5")],
        "not_hdf5": ["--atl07", str(atl), "--sst", str(junk)],
        "bad_bbox": ["--atl07", str(atl), "--sst", str(sst), "--bbox", "1,2,3"],
        "bbox_order": ["--atl07", str(atl), "--sst", str(sst), "--bbox", "-60,83,-59,82"],
        "bad_quality": ["--atl07", str(atl), "--sst", str(sst), "--min-quality-level", "7"],
        "repeated": ["--atl07", str(atl), "--sst", str(sst), "--sst", str(tmp / "." / sst.name)],
    }[case]
    try:
        code = main(["files", *args, "--out", str(tmp / "x.nc")])
    except SystemExit as exc:  # argparse-level errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp / "x.nc").exists()


def test_real_granules_through_console_script(realdata, tmp_path):
    """The installed entry point on the real subsets (they do not overlap: zero matches)."""
    exe = REPO / ".venv" / "bin" / "colocate"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cli.command"]
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}")
    atl07 = [realdata / "atl07" / "processed_ATL07-01_20190222003738_08490201_003_02.h5",
             realdata / "atl07" / "processed_ATL07-01_20190225115500_09020201_003_02.h5"]
    res = subprocess.run([*cmd, "files", "--atl07", str(atl07[0]), "--atl07", str(atl07[1]),
                          "--sst", str(realdata / "l2p" / "SS_MODIS_A-JPL-L2P-v2014.0_cut.nc"),
                          # the subset has no quality_level: only an explicit "none" colocates it
                          "--min-quality-level", "none",
                          "--out", str(tmp_path / "real.nc")], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    raw = [read_atl07_raw(p) for p in atl07]
    assert summary["segments"] == _n_segments(*atl07) and summary["matched"] == 0
    assert summary["granules"]["atl07"] == len(atl07)
    assert summary["beams"] == sum(sum(1 for b in r.values() if b.lat.size) for r in raw)
    with xr.open_dataset(tmp_path / "real.nc") as ds:
        assert ds.attrs["colocation_quality_screening"].startswith("none")
        assert "no quality screening" in ds["sst"].attrs["comment"].lower()
        assert "quality_level" in ds.attrs["reader_warnings"]  # the L2P reader's warning reached the product
        # v003's fit flag: _FillValue -1 is also "invalid", a flag value that stays one
        fit = ds["height_segment_fit_quality_flag"]
        assert fit.attrs["flag_meanings"] == "invalid best high med low poor"
        assert fit.attrs["flag_values"].tolist() == [-1, 1, 2, 3, 4, 5] and (fit.values == -1).any()
        # percent (units "1" in v003) as a fraction; no sc_orient warning where atlas_beam_type said it
        conc = ds["ice_conc"]
        assert conc.attrs["standard_name"] == "sea_ice_area_fraction" and 0.1 < float(conc.max()) <= 1.0
        assert "sc_orient" not in ds.attrs.get("reader_warnings", "")
        # a collection without a profile: named and cited from the file, never "none"/"unknown"
        assert "none" not in ds.attrs["references"].split("GHRSST L2P:")[1]
        assert "unknown" not in [str(c) for c in ds["sst_collection_name"].values]
        assert ds["height_segment_quality"].attrs["flag_meanings"] == "bad_quality good_quality"


def test_product_without_quality_level_is_refused_unless_asked(realdata, tmp_path, capsys):
    l2p = realdata / "l2p" / "SS_MODIS_A-JPL-L2P-v2014.0_uncut.nc"
    with open_l2p(l2p) as g:
        full = g.window(slice(None), slice(None))
    # ATL07 segments laid onto the L2P subset, so the granule reaches them
    i = np.flatnonzero(np.isfinite(full.sst.ravel()))[:300]
    t0 = full.time.ravel()[i]
    beams = {"gt1l": dict(lat=full.lat.ravel()[i], lon=full.lon.ravel()[i],
                          delta_time=(t0 - np.datetime64("2018-01-01T00:00:00", "ns")) / np.timedelta64(1, "s"))}
    path = write_atl07(tmp_path / "ATL07-01_on_l2p.h5", beams)
    code, out, err = run(["files", "--atl07", str(path), "--sst", str(l2p), "--out", str(tmp_path / "r.nc")], capsys)
    assert code != 0 and "min_quality_level" in err and "none" in err and not (tmp_path / "r.nc").exists()
    code, out, err = run(["files", "--atl07", str(path), "--sst", str(l2p), "--min-quality-level", "none",
                          "--out", str(tmp_path / "r.nc")], capsys)
    assert code == 0, err
    assert json.loads(out)["matched"] > 250


@pytest.mark.parametrize("attrs,standard_name,doi", [
    ({"platform": "Terra", "sensor": "MODIS", "id": "MODIS_T-JPL-L2P-v2019.0"},
     "sea_surface_skin_temperature", "10.5067/GHMDT-2PJ19"),
    ({"platform": "Suomi-NPP", "sensor": "VIIRS", "id": "VIIRS_NPP-JPL-L2P-v2016.2"},
     "sea_surface_skin_temperature", "10.5067/GHVRS-2PJ62"),
    ({"platform": "NOAA-20", "sensor": "VIIRS", "id": "VIIRS_N20-OSPO-L2P-v2.61"},
     "sea_surface_subskin_temperature", "10.5067/GHV20-2PO28"),
], ids=["modis-terra", "viirs-npp", "viirs-noaa20"])
def test_other_sensors_are_labelled_from_their_files(tmp_path, capsys, attrs, standard_name, doi):
    sst, _ = synthetic_swath_file(tmp_path, 82.3, -60.0, rows=50, cols=40, name="OTHER_L2P.nc",
                                  global_attrs=attrs, sst_standard_name=standard_name, sses=True, dt_analysis=True)
    lat, lon = track_geometry(82.3, -60.0, n=300, length_m=80_000, angle_deg=20, rng=np.random.default_rng(0))
    atl = write_atl07(tmp_path / "ATL07-01_20190622095000_13070301_006_01.h5", {"gt1l": dict(
        lat=lat, lon=lon, delta_time=delta_time_for("2019-06-22T10:02:00") + np.arange(300) * 0.5)})
    code, out, err = run(["files", "--atl07", str(atl), "--sst", str(sst), "--max-dt-s", "900",
                          "--min-quality-level", "3", "--sst-collection", attrs["id"],
                          "--out", str(tmp_path / "o.nc")], capsys)
    assert code == 0, err
    with xr.open_dataset(tmp_path / "o.nc") as ds:
        assert ds.attrs["platform"] == f"ICESat-2, {attrs['platform']}"
        assert ds.attrs["instrument"] == f"ATLAS, {attrs['sensor']}"
        assert doi in ds.attrs["references"] and "GHMDA" not in ds.attrs["references"]
        assert "Aqua" not in repr(ds.attrs)
        assert ds["sst"].attrs["standard_name"] == standard_name
        assert list(ds["sst_source_platform"].values) == [attrs["platform"]]
        assert list(ds["sst_source_sensor"].values) == [attrs["sensor"]]
        m = ds["sst_granule"].values >= 0
        assert m.sum() > 50 and np.isfinite(ds["sst_sses_bias"].values[m]).all()
        assert "sst_dt_analysis" in ds and np.isfinite(ds["sst_dt_analysis"].values[m]).all()
        assert list(ds["sst_collection_name"].values) == [attrs["id"]] and (ds["sst_collection"].values[m] == 0).all()
        assert (ds["sst_n_valid"].values[m] >= 1).all() and (ds["sst_n_valid"].values[~m] == 0).all()


def test_footprint_radius_from_the_command_line(scene, capsys):
    tmp, atl, sst = scene.tmp, scene.atl, scene.sst
    code, out, err = run(["files", "--atl07", str(atl), "--sst", str(sst), "--radius-m", "footprint",
                          "--max-dt-s", "600", "--min-quality-level", "3", "--out", str(tmp / "fp.nc")], capsys)
    assert code == 0, err
    with xr.open_dataset(tmp / "fp.nc") as ds:
        assert ds.attrs["colocation_radius_m"] == "footprint"
        radius = ds["sst_radius"].values
        near = np.isfinite(radius)
        # the fixture's ~1 km jittered grid: half a cell diagonal, ~0.7 km, varying pixel to pixel
        assert near.any() and 500 < np.median(radius[near]) < 900 and np.ptp(radius[near]) > 10
        m = ds["sst_granule"].values >= 0
        assert (ds["sst_distance"].values[m] <= radius[m] + 1e-3).all()


# --- the service's validators, on the command line -------------------------------------------
SEED_REQUEST = {"bbox": [-62.8, 81.7, -56.4, 83.0], "date": "2019-06-22"}


def _service_accepts(**params) -> bool:
    """What the Lambda/API decide for these parameters (core.request, the service's models)."""
    from pydantic import ValidationError

    from core.config import Settings
    from core.errors import InputError
    from core.request import parse_request

    try:
        parse_request({**SEED_REQUEST, **params}, Settings())
    except (ValidationError, InputError):
        return False
    return True


@pytest.mark.parametrize("option,text,value", [
    ("--max-dt-s", "0", {"max_dt_s": 0.0}),
    ("--max-dt-s", "604800", {"max_dt_s": 604800.0}),
    ("--max-dt-s", "604801", {"max_dt_s": 604801.0}),
    ("--max-dt-s", "-1", {"max_dt_s": -1.0}),
    ("--radius-m", "60000", {"radius_m": 60000.0}),
    ("--radius-m", "50000", {"radius_m": 50000.0}),
    ("--radius-m", "0", {"radius_m": 0.0}),
    ("--radius-m", "footprint", {"radius_m": "footprint"}),
    ("--min-quality-level", "0", {"min_quality_level": 0}),
    ("--min-quality-level", "6", {"min_quality_level": 6}),
    ("--min-quality-level", "none", {"min_quality_level": None}),
    ("--sst-collection", "MODIS_A-JPL-L2P-v2019.0", {"sst_collection": "MODIS_A-JPL-L2P-v2019.0"}),
    ("--sst-collection", "not a collection", {"sst_collection": "not a collection"}),
])
def test_files_accepts_exactly_what_the_service_accepts(scene, capsys, option, text, value):
    tmp, atl, sst = scene.tmp, scene.atl, scene.sst
    out_nc = tmp / "parity.nc"
    code, out, err = run(["files", "--atl07", str(atl), "--sst", str(sst), option, text, "--out", str(out_nc)], capsys)
    accepted = _service_accepts(**value)
    assert (code == 0) == accepted, (option, text, code, err)
    if accepted:
        assert out_nc.exists()
    else:
        assert code == 2 and err.startswith(f"colocate: error: {option}:") and len(err.strip().splitlines()) == 1
        assert not out_nc.exists()


@pytest.mark.parametrize("args,needle", [
    (["--date", "2019-06-22", "--start", "2019-06-22"], "--date: give either date or start and end, not both"),
    (["--start", "2019-06-22"], "--end: required with start"),
    ([], "--date: give a date (YYYY-MM-DD) or a start and end"),
    (["--date", "2019-06-31"], "--date: not a valid calendar date"),
    (["--date", "2019-06-22", "--radius-m", "60000"], "--radius-m: must be greater than 0 and at most 50000 m"),
    (["--date", "2019-06-22", "--max-dt-s", "1e9"], "--max-dt-s: Input should be less than or equal to 604800"),
    (["--start", "2019-06-20", "--end", "2019-06-19"], "--end: must not be before start"),
])
def test_run_refuses_what_the_service_refuses_before_any_work(tmp_path, capsys, args, needle):
    code, out, err = run(["run", "--bbox", "-62.8,81.7,-56.4,83", *args, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and out == "" and err.strip() == f"colocate: error: {needle}", err
    assert not (tmp_path / "o").exists()


def test_run_bbox_is_checked_as_the_service_checks_it(tmp_path, capsys):
    code, out, err = run(["run", "--bbox", "-60,82,-60,83", "--date", "2019-06-22", "--out", str(tmp_path)], capsys)
    assert code == 2 and "--bbox: west and east must differ" in err
    assert not _service_accepts(bbox=[-60, 82, -60, 83])


def test_help_shows_defaults_and_units(capsys):
    for command in ("run", "files"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "in metres, 0 < M <= 50000" in text and "(default: 1000 m)" in text
        assert "in seconds, 0 <= S <= 604800" in text and "(default: 10800 s = 3 h)" in text
        assert "0..5, or 'none'" in text and "(default: 4)" in text


def test_run_without_credentials_says_which_and_stops(tmp_path, capsys, monkeypatch):
    for name in ("EARTHDATA_TOKEN", "EARTHDATA_USERNAME", "EARTHDATA_PASSWORD", "NETRC", "COLOC_EDL_SECRET_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    code, out, err = run(["run", "--bbox", "-62.8,81.7,-56.4,83", "--date", "2019-06-22",
                          "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and out == ""
    assert err.startswith("colocate: error: Earthdata Login: no Earthdata credentials: set EARTHDATA_TOKEN")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


# --- the progress display ----------------------------------------------------------------------
class _Terminal(__import__("io").StringIO):
    def isatty(self):
        return True


def test_progress_shows_dates_granules_and_bytes_on_a_terminal():
    from cli.progress import ProgressReporter

    term = _Terminal()
    with ProgressReporter(3, enabled=True, stream=term) as progress:
        progress("found", {"date": "2019-06-22", "atl07": 2, "sst": 14, "skipped": 0})
        progress("stage", {"name": "atl07_read"})
        progress("bytes", {"n": 5 * 1024 * 1024})
        progress.date_done(True)
        progress.write("2019-06-22: done")
    text = term.getvalue()
    assert "ATL07=2, L2P=14" in text and "1/3" in text and "reading ATL07" in text and "5.00MB" in text
    assert "2019-06-22: done\n" in text


def test_progress_is_off_when_disabled():
    from cli.progress import ProgressReporter

    term = _Terminal()
    with ProgressReporter(3, enabled=False, stream=term) as progress:
        progress("found", {"atl07": 2, "sst": 14, "skipped": 0})
        progress("bytes", {"n": 1000})
        progress.date_done(True)
        progress.write("2019-06-22: done")
    assert term.getvalue() == "2019-06-22: done\n"


# --- python -m sandbox.colocate run: the Lambda's pipeline into a local folder -------------------------
SEED_ARGS = ["run", "--scene", "cut", "--bbox", "-62.8,81.7,-56.4,83", "--date", "2019-06-22", "--radius-m", "1000"]


@pytest.fixture(scope="module")
def sandbox_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("colocate-run")
    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = sandbox_colocate([*SEED_ARGS, "--out", str(out)])
    return out, code, stdout.getvalue(), stderr.getvalue()


@pytest.mark.slow
def test_run_sandbox_writes_the_pipeline_products_and_manifest_locally(sandbox_run):
    out, code, stdout, stderr = sandbox_run
    assert code == 0, stderr
    (line,) = stdout.strip().splitlines()
    summary = json.loads(line)
    (day,) = summary["dates"]
    assert day["status"] == "complete" and summary["sandbox"] is True
    counts = day["counts"]
    assert counts["atl07_granules"] == 2 and counts["sst_granules"] == 14 and counts["skipped"] == 0
    assert 0 < counts["matched"] < counts["segments"]
    # the bucket's layout, in the folder: <prefix>/<request_id>/<date>/manifest.json and the run's outputs
    rid = summary["request_id"]
    manifest_path = out / "colocations" / rid / "2019-06-22" / "manifest.json"
    assert day["manifest"] == str(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["request_id"] == rid and manifest["status"] == "complete"
    assert manifest["bytes"]["sst_per_granule"] and all(
        r["access"] == "https" for r in manifest["bytes"]["sst_per_granule"].values())  # outside us-west-2
    assert sorted(str(out / k) for k in manifest["outputs"]) == sorted(day["products"])
    ncs = [Path(p) for p in day["products"] if p.endswith("_sst.nc")]
    assert len(ncs) == 2
    w, s, e, n = -62.8, 81.7, -56.4, 83.0
    total = 0
    for nc in ncs:
        assert nc.read_bytes()[:4] == b"\x89HDF"
        with xr.open_dataset(nc) as ds:
            lat, lon = ds["lat"].values, ds["lon"].values
            assert ((lat >= s) & (lat <= n) & (lon >= w) & (lon <= e)).all()  # only the box asked for
            assert ds.attrs["colocation_bbox_margin_deg"] == 0.0
            total += ds.sizes["obs"]
    assert total == counts["segments"]
    # the request-level results, as Summarize writes them: every matched segment in one netCDF,
    # and one Parquet row per match in the date's partition
    made = summary["request_outputs"]
    assert made["matched"] == counts["matched"]
    with xr.open_dataset(made["netcdf"]) as merged:
        assert merged.sizes["obs"] == counts["matched"] and merged.attrs["featureType"] == "trajectory"
        assert merged.attrs["title"].startswith("SYNTHETIC")
    parts = sorted(Path(made["parquet"]).rglob("*.parquet"))
    assert [p.parent.name for p in parts] == ["date=2019-06-22"]
    import duckdb

    assert duckdb.sql(f"select count(*) from read_parquet('{parts[0]}')").fetchall()[0][0] == counts["matched"]
    # the pixel-scale table: its own partitions, every match counted once in a pixel
    pixel_parts = sorted(Path(made["pixels"]).rglob("*.parquet"))
    assert [p.parent.name for p in pixel_parts] == ["date=2019-06-22"]
    assert duckdb.sql(f"select sum(n_segments) from read_parquet('{pixel_parts[0]}')").fetchall()[0][0] \
        == counts["matched"]
    # nothing but the published results: no staging files, no other run's folders
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert files == sorted([manifest_path, *map(Path, day["products"]), Path(made["netcdf"]), *parts, *pixel_parts,
                            out / ".colocate-data-mode"])
    assert (out / ".colocate-data-mode").read_text() == "synthetic\n"  # no real run may share the folder
    # stderr is no terminal here: no bar, one line per date
    assert "\r" not in stderr and "2019-06-22: 2 ATL07 granules, 14 L2P granules" in stderr
    assert stderr.startswith("Starting the sandbox")  # said before the ~30 s the sandbox takes to start


@pytest.mark.slow
def test_run_again_keeps_the_finished_date(sandbox_run, capsys):
    out, code, stdout, _ = sandbox_run
    assert code == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    code, again, err = run([*SEED_ARGS, "--out", str(out), "--quiet"], capsys, sandbox_colocate)
    assert code == 0 and err == ""
    day = json.loads(again)["dates"][0]
    assert day["cached"] is True and day["products"] == json.loads(stdout)["dates"][0]["products"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_run_stops_when_dates_keep_failing_alike(tmp_path, capsys, monkeypatch):
    """A service that is down fails every date the same way: after three the run stops."""
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("EARTHDATA_TOKEN", "x.y.z")
    monkeypatch.setenv("COLOC_CMR_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("COLOC_EARTHDATA_HOSTS", f"127.0.0.1:{port}")
    monkeypatch.setenv("COLOC_HTTP_RETRIES", "0")
    import logging

    code, out, err = run(["run", "--bbox", "-62.8,81.7,-56.4,83", "--start", "2019-06-20", "--end", "2019-06-25",
                          "--out", str(tmp_path / "o")], capsys)
    # retry warnings are hidden only while main() runs: the rest of the process still logs them
    assert logging.getLogger("urllib3.connectionpool").getEffectiveLevel() <= logging.WARNING
    lines = err.strip().splitlines()
    assert code == 1 and out == ""
    assert [line.split(":")[0] for line in lines[:3]] == ["2019-06-20", "2019-06-21", "2019-06-22"]
    assert lines[-1].startswith("colocate: error: 3 dates in a row failed with the same error, stopped before "
                                "2019-06-23: cmr:") and len(lines) == 4
    assert "Traceback" not in err and "WARNING" not in err


def test_run_dry_run_prints_the_estimate_and_asks_for_yes_above_the_threshold(sandbox, tmp_path, capsys):
    """Issue 23: --dry-run prints the pre-flight estimate (CMR's counts) and runs nothing; above
    COLOC_ESTIMATE_CONFIRM_GB a run stops before any work unless given --yes."""
    import contextlib

    from cli.command import World
    from core.access.earthdata import StaticToken

    def world(**changes):
        @contextlib.contextmanager
        def open_sandbox(_settings):
            yield sandbox.settings.replace(**changes), StaticToken(sandbox.edl_token)

        return World("sandbox", open_sandbox)

    out = tmp_path / "o"
    args = ["run", "--bbox", "-62.8,81.7,-56.4,83", "--date", "2019-06-22", "--out", str(out)]
    code, stdout, err = run([*args, "--dry-run"], capsys, lambda a: main(a, world=world()))
    assert code == 0, err
    estimate = json.loads(stdout)["estimate"]
    assert (estimate["dates"], estimate["atl07_granules"], estimate["sst_granules"]) == (1, 2, 14)
    assert estimate["gb_to_move"] > 0 and estimate["usd"] > 0 and "estimate: 1 dates, 2 ATL07 and 14 L2P" in err
    assert not out.exists()
    code, stdout, err = run([*args, "--quiet"], capsys, lambda a: main(a, world=world(estimate_confirm_gb=0.001)))
    assert code == 2 and stdout == "" and "COLOC_ESTIMATE_CONFIRM_GB" in err and "--yes" in err, err
    assert not (out / "colocations").exists()
