"""The pipeline on the seed case, in the sandbox: real clients, real files, real bucket.

The science check is an independent oracle (tests/raw_oracle.py): it reads the scene's ATL07
files with plain h5py (delta_time + a fixed 18 s GPS-UTC, checked against data_start_utc) and
its L2P files too (raw integers; fill, valid range, scale/offset and units by hand), and
brute-forces the haversine distance to every valid pixel of every granule for a sample of the
raw segments. Expected counts come from the raw files and the scene's manifest.
"""
from __future__ import annotations

import threading

import h5py
import numpy as np
import pytest
import xarray as xr

from core.access.earthdata import StaticToken
from core.jobs.date_plan import plan
from core.pipeline.services import build_services
from core.request import parse_request
from tests.pipeline_fixtures import run_date
from tests.raw_oracle import haversine, in_bbox, is_l2p_file, nearest, pixel_table, read_atl07_raw, read_l2p_raw

SEED = {"bbox": [-62.8, 81.7, -56.4, 83.0], "date": "2019-06-22"}
# segment and pixel times are exact to the microsecond: a leap second (1 s) must show
MAX_DT_ERROR_S = 1e-3


def _services(sb):
    return build_services(sb.settings, token_provider=StaticToken(sb.edl_token), s3_client=sb.boto3_client("s3"))


def _task(sb, **extra):
    return plan(parse_request({**SEED, **extra}, sb.settings))[0]


def _keys(sb, prefix):
    s3 = sb.boto3_client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=sb.settings.output_bucket, Prefix=prefix)
    return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


def _download(sandbox, manifest, out):
    s3 = sandbox.boto3_client("s3")
    files = {}
    for key in manifest["outputs"]:
        path = out / key.rsplit("/", 1)[-1]
        s3.download_file(sandbox.settings.output_bucket, key, str(path))
        files[path.name] = path
    return files


@pytest.fixture(scope="module")
def seed_run(sandbox, tmp_path_factory):
    services = _services(sandbox)
    task = _task(sandbox)
    manifest = run_date(task, services)
    return task, services, manifest, _download(sandbox, manifest, tmp_path_factory.mktemp("seed-outputs"))


def test_seed_case_product_carries_the_per_match_fields(seed_run):
    _, _, manifest, files = seed_run
    nc = sorted(p for name, p in files.items() if name.endswith("_sst.nc"))
    with xr.open_dataset(nc[0]) as ds:
        for name in ("sst_pixel_nj", "sst_pixel_ni", "sst_sses_bias", "sst_sses_standard_deviation", "sst_ice",
                     "sst_n_valid", "sst_n_rejected_quality", "sst_n_out_of_range", "sst_n_ice", "sst_n_outside_dt",
                     "sst_median", "sst_stddev", "sst_radius", "sst_collection", "height_segment_fit_quality_flag",
                     "beam_strength_flag"):
            assert name in ds, name
        assert ds.attrs["platform"] == "ICESat-2, Aqua" and ds.attrs["instrument"] == "ATLAS, MODIS"
        assert list(ds["sst_collection_name"].values) == ["C1940473819-POCLOUD"]
        assert ds["sst_l2p_flags"].attrs["flag_meanings"].split()[:3] == ["microwave", "land", "ice"]
        radius = ds["sst_radius"].values
        assert (radius[np.isfinite(radius)] == 1000.0).all() and np.isfinite(radius).any()
    for product in manifest["products"]:
        assert "sst_warnings" in product


def _day(task):
    lo = np.datetime64(task.date.isoformat(), "ns")
    return lo, lo + np.timedelta64(1, "D")


@pytest.fixture(scope="module")
def raw_atl07(sandbox_scene):
    """Every scene ATL07 granule decoded from the raw HDF5 (times checked against data_start_utc)."""
    return {g.file_name: read_atl07_raw(g.path) for g in sandbox_scene.granules if g.short_name == "ATL07"}


def _expected(raw_atl07, sandbox, task) -> dict:
    """{(granule, beam): ids} of the raw segments a run must report: in the bbox (+ the reader's
    margin, a setting) and inside the task's date."""
    lo, hi = _day(task)
    out = {}
    for name, beams in raw_atl07.items():
        for beam, seg in beams.items():
            keep = in_bbox(seg.lon, seg.lat, task.request.bbox, sandbox.settings.bbox_margin_deg)
            keep &= (seg.time >= lo) & (seg.time <= hi)
            if keep.any():
                out[(name, beam)] = seg.id[keep]
    return out


def _products(files) -> list[dict]:
    """Per trajectory of every product: granule, beam and its obs (ids, lat, lon, time, sst...)."""
    rows = []
    for name, path in sorted(files.items()):
        if not name.endswith("_sst.nc"):  # the products (not their _pixels.nc tables)
            continue
        with xr.open_dataset(path, mask_and_scale=False) as ds:
            sizes = ds["rowSize"].values.astype(int)
            stops = np.cumsum(sizes)
            sources = [str(v) for v in ds["sst_source_name"].values]
            for k, (g, beam) in enumerate(zip(ds["atl07_granule"].values, ds["beam"].values)):
                part = slice(int(stops[k] - sizes[k]), int(stops[k]))
                rows.append({"granule": str(g), "beam": str(beam), "sources": sources, **{
                    v: ds[v].values[part] for v in ("height_segment_id", "lat", "lon", "time", "sst", "sst_distance",
                                                    "sst_dt", "sst_granule", "sst_n_valid", "sst_median",
                                                    "sst_pixel_nj", "sst_pixel_ni", "sst_n_rejected_quality",
                                                    "sst_stddev", "sst_match_flags", "sst_n_excluded_ice",
                                                    "height_segment_fit_quality_flag", "height_segment_height")}})
    return rows


def test_seed_case_products_hold_only_segments_inside_the_requested_bbox(seed_run):
    task, _, manifest, files = seed_run
    w, s, e, n = task.request.bbox  # the seed box does not cross the antimeridian
    assert manifest["parameters"]["bbox_margin_deg"] == 0.0
    for path in sorted(p for name, p in files.items() if name.endswith("_sst.nc")):
        with xr.open_dataset(path) as ds:
            lon, lat = ds["lon"].values, ds["lat"].values
            inside = (lat >= s) & (lat <= n) & (lon >= w) & (lon <= e)
            assert lat.size and inside.all(), f"{path.name}: {(~inside).sum()} segments outside the bbox"
            assert ds.attrs["colocation_bbox_margin_deg"] == 0.0
            assert ds.attrs["colocation_bbox"] == "-62.8,81.7,-56.4,83"


def test_seed_case_manifest(seed_run, sandbox_scene, sandbox, raw_atl07):
    task, _, manifest, files = seed_run
    assert manifest["status"] == "complete"
    counts = manifest["counts"]
    atl07 = [g for g in sandbox_scene.granules if g.short_name == "ATL07"]
    l2p = [g for g in sandbox_scene.granules if g.short_name != "ATL07"]
    expected = _expected(raw_atl07, sandbox, task)
    with_segments = {name for name, _ in expected}
    assert counts["atl07_granules"] == counts["atl07_granules_found"] == len(atl07) and with_segments
    # every L2P granule of the recorded search is a real granule (a data file): none skipped
    assert counts["sst_granules"] == counts["sst_granules_found"] == len(l2p) == sum(is_l2p_file(g.path) for g in l2p)
    assert counts["skipped"] == 0 and manifest["inputs"]["skipped"] == []
    assert counts["segments"] == sum(ids.size for ids in expected.values())
    assert 0 < counts["matched"] < counts["segments"]
    # one netCDF, its pixel table and one PNG per ATL07 granule with segments, every beam with segments read
    assert len([f for f in files if f.endswith("_sst.nc")]) == len([f for f in files if f.endswith(".png")]) \
        == len([f for f in files if f.endswith("_sst_pixels.nc")]) == len(with_segments)
    for product in manifest["products"]:
        assert sorted(product["beams"]) == sorted(b for g, b in expected if g == product["atl07_granule"])
    # L2P read in place: every read granule reports fetched bytes no larger than the object
    for name, report in manifest["bytes"]["sst_per_granule"].items():
        assert 0 < report["bytes_fetched"] <= report["size"], name
    # each L2P granule is read once for the date, or dropped with its reason: beyond ±Δt of
    # every segment (not read at all), or read as far as showing that no pixel is near one
    read = manifest["bytes"]["sst_per_granule"]
    dropped = {d["granule"]: d["reason"] for d in manifest["inputs"]["sst_dropped"]}
    assert counts["sst_granules_dropped"] == len(dropped)
    considered = {t for p in manifest["products"] for t in p.get("sst_granules_considered", [])}
    assert set(read) == considered
    lo, hi = _day(task)
    seg_times = np.concatenate([seg.time[in_bbox(seg.lon, seg.lat, task.request.bbox, sandbox.settings.bbox_margin_deg)
                                         & (seg.time >= lo) & (seg.time <= hi)]
                                for beams in raw_atl07.values() for seg in beams.values()])
    dt = np.timedelta64(int(task.request.max_dt_s), "s")
    for g in l2p:
        title = g.file_name.rsplit(".", 1)[0]
        if title not in read:
            assert dropped[title].startswith("no segment within"), title
            start, end = (np.datetime64(t.replace(tzinfo=None), "ns") for t in (g.start, g.end))
            assert not ((seg_times >= start - dt) & (seg_times <= end + dt)).any(), title
        elif read[title]["window"] is None:
            assert dropped[title] == read[title]["no_window"] and "segment" in dropped[title]
        else:
            assert title not in dropped


def test_seed_case_segments_are_the_raw_files_segments(seed_run, sandbox, raw_atl07):
    """Every obs is a raw segment at its raw position and its raw time (delta_time + 18 s GPS-UTC)."""
    task, _, _, files = seed_run
    expected = _expected(raw_atl07, sandbox, task)
    seen = set()
    for row in _products(files):
        key = (row["granule"], row["beam"])
        seen.add(key)
        raw = raw_atl07[row["granule"]][row["beam"]]
        np.testing.assert_array_equal(np.sort(row["height_segment_id"]), np.sort(expected[key]))
        at = {int(i): j for j, i in enumerate(raw.id)}
        j = np.array([at[int(i)] for i in row["height_segment_id"]])
        np.testing.assert_allclose(row["lat"], raw.lat[j], rtol=0, atol=1e-9)
        np.testing.assert_allclose(row["lon"], raw.lon[j], rtol=0, atol=1e-9)
        off_ms = np.abs((row["time"].astype("datetime64[ns]") - raw.time[j]) / np.timedelta64(1, "us")) / 1e3
        assert off_ms.max() <= MAX_DT_ERROR_S * 1e3, f"{key}: segment times off by up to {off_ms.max()} ms"
    assert seen == set(expected)


@pytest.fixture(scope="module")
def raw_l2p(sandbox_scene):
    """Valid pixels near the bbox of every real L2P granule of the scene, decoded by hand."""
    lat_band = (SEED["bbox"][1] - 0.5, SEED["bbox"][3] + 0.5)
    swaths, names = [], []
    for g in sandbox_scene.granules:
        if g.short_name == "ATL07" or not is_l2p_file(g.path):
            continue
        swaths.append(read_l2p_raw(g.path))
        names.append(g.title)
    tables = {ql: pixel_table(swaths, ql, lat_band) for ql in range(6)}
    tables["no ice"] = pixel_table(swaths, 4, lat_band, exclude_ice=True)
    first = next(g.path for g in sandbox_scene.granules if g.short_name != "ATL07" and is_l2p_file(g.path))
    with h5py.File(first) as f:  # the valid range in Kelvin, from the attributes
        a = f["sea_surface_temperature"].attrs
        scale, offset = float(np.ravel(a["scale_factor"])[0]), float(np.ravel(a["add_offset"])[0])
        valid = tuple(float(np.ravel(a[k])[0]) * scale + offset for k in ("valid_min", "valid_max"))
    return names, tables, valid


@pytest.fixture(scope="module")
def any_quality_run(sandbox):
    """Quality level 0 and up: ice pixels (QL 1-2) count, and many of them hold raw SSTs below
    valid_min (268.15 K) that must stay missing."""
    task = _task(sandbox, min_quality_level=0, radius_m=1500.0)
    manifest = run_date(task, _services(sandbox))
    return task, manifest


@pytest.mark.parametrize("which", ["seed", "any_quality"])
def test_seed_case_matches_brute_force_oracle(which, request, sandbox, raw_atl07, raw_l2p, tmp_path):
    if which == "seed":
        task, _, manifest, files = request.getfixturevalue("seed_run")
    else:
        task, manifest = request.getfixturevalue("any_quality_run")
        files = _download(sandbox, manifest, tmp_path)
    req = task.request
    names, tables, (vmin, vmax) = raw_l2p
    pixels = tables[req.min_quality_level]
    rows = _products(files)
    # every SST in the product is a valid one (CF: outside valid_min/valid_max is missing)
    sst_all = np.concatenate([r["sst"] for r in rows])
    got = sst_all[np.isfinite(sst_all)]
    assert got.size and got.min() >= vmin - 0.005 and got.max() <= vmax + 0.005, (got.min(), got.max())

    # a sample of segments, positions and times from the raw ATL07 files, against every pixel
    rng = np.random.default_rng(7)
    flat = [(r, i) for r in rows for i in range(len(r["sst"]))]
    matched = [k for k, (r, i) in enumerate(flat) if np.isfinite(r["sst"][i])]
    unmatched = [k for k, (r, i) in enumerate(flat) if not np.isfinite(r["sst"][i])]
    sample = np.concatenate([rng.choice(matched, 30, replace=False), rng.choice(unmatched, 15, replace=False),
                             rng.choice(len(flat), 15, replace=False)])
    seg_lat, seg_lon, seg_t = [], [], []
    for k in sample:
        r, i = flat[k]
        raw = raw_atl07[r["granule"]][r["beam"]]
        j = int(np.flatnonzero(raw.id == r["height_segment_id"][i])[0])
        seg_lat.append(raw.lat[j]), seg_lon.append(raw.lon[j]), seg_t.append(raw.time[j])
    idx, dist, dts = nearest(np.array(seg_lat), np.array(seg_lon), np.array(seg_t), pixels,
                             req.radius_m, req.max_dt_s)
    assert (idx >= 0).sum() >= 20, "the sample must hold matches"
    for n, k in enumerate(sample):
        r, i = flat[k]
        where = f"{r['granule']} {r['beam']} segment {r['height_segment_id'][i]}"
        if idx[n] < 0:
            assert np.isnan(r["sst"][i]), f"{where} matched but the oracle finds no valid pixel"
            continue
        j = idx[n]
        assert float(r["sst"][i]) == pytest.approx(pixels.sst[j], abs=1e-3), where
        assert float(r["sst_distance"][i]) == pytest.approx(dist[n], abs=1.0), where
        assert float(r["sst_dt"][i]) == pytest.approx(dts[n], abs=MAX_DT_ERROR_S), where
        assert r["sources"][int(r["sst_granule"][i])] == names[pixels.granule[j]], where
        assert (int(r["sst_pixel_nj"][i]), int(r["sst_pixel_ni"][i])) == (pixels.nj[j], pixels.ni[j]), where
        _assert_match_flags(r, i, pixels.ice[j], raw_atl07[r["granule"]][r["beam"]], where)
    # what was around each sampled segment: every valid pixel (any quality) within radius and Δt
    around = tables[0]
    several = 0
    for n, k in enumerate(sample):
        r, i = flat[k]
        where = f"{r['granule']} {r['beam']} segment {r['height_segment_id'][i]}"
        d = haversine(seg_lat[n], seg_lon[n], around.lat, around.lon)
        dt = (around.t - np.datetime64(seg_t[n], "ns").astype(np.int64)) / 1e9
        near = (d <= req.radius_m) & (np.abs(dt) <= req.max_dt_s)
        ok = near & (around.ql >= req.min_quality_level)
        if idx[n] < 0:  # no match: the counts of every granule read are summed
            assert int(r["sst_n_valid"][i]) == 0, where
            assert int(r["sst_n_rejected_quality"][i]) == int((near & ~ok).sum()), where
            continue
        mine = ok & (around.granule == pixels.granule[idx[n]])  # the matched pixel's granule
        assert int(r["sst_n_valid"][i]) == int(mine.sum()), where
        assert float(r["sst_median"][i]) == pytest.approx(float(np.median(around.sst[mine])), abs=1e-3), where
        if mine.sum() < 2:  # the spread of one pixel is undefined
            assert np.isnan(r["sst_stddev"][i]), where
        else:
            assert float(r["sst_stddev"][i]) == pytest.approx(float(np.std(around.sst[mine])), abs=1e-3), where
        several += int(mine.sum() > 1)
    assert several > 0, "the sample must include segments with several valid pixels around"


def _assert_match_flags(r, i, ice: bool, raw, where: str) -> None:
    """sst_match_flags of a screened match, and the fit flag as the raw file has it (-1 = invalid
    is a flag value, not the fill), from the raw files."""
    j = int(np.flatnonzero(raw.id == r["height_segment_id"][i])[0])
    flags = int(r["sst_match_flags"][i])
    assert flags & 1 == int(ice), f"{where}: ice_flagged"
    assert bool(flags & 2) == (float(r["sst"][i]) < 271.35), f"{where}: below_freezing"
    assert not flags & 4, f"{where}: unscreened"
    assert bool(flags & 8) == bool(np.isnan(raw.height[j])), f"{where}: height_invalid"
    assert int(r["height_segment_fit_quality_flag"][i]) == int(raw.fit[j]), f"{where}: fit flag"


@pytest.fixture(scope="module")
def exclude_ice_run(sandbox):
    task = _task(sandbox, exclude_ice=True)
    return task, run_date(task, _services(sandbox))


def test_exclude_ice_matches_brute_force_oracle(seed_run, exclude_ice_run, sandbox, raw_atl07, raw_l2p, tmp_path):
    """exclude_ice: the segments the seed run matched (all on ice-flagged pixels) against every
    pixel that is not: the match or its absence, and how many pixels were excluded as ice."""
    task, manifest = exclude_ice_run
    assert manifest["parameters"]["exclude_ice"] is True
    req = task.request
    names, tables, _ = raw_l2p
    rows, seed_rows = _products(_download(sandbox, manifest, tmp_path)), _products(seed_run[3])
    flat = [(r, i) for r in rows for i in range(len(r["sst"]))]
    seed_matched = {(r["granule"], r["beam"], int(r["height_segment_id"][i]))
                    for r in seed_rows for i in np.flatnonzero(np.isfinite(r["sst"]))}
    pool = [k for k, (r, i) in enumerate(flat) if (r["granule"], r["beam"], int(r["height_segment_id"][i])) in seed_matched]
    sample = np.random.default_rng(11).choice(pool, 40, replace=False)
    seg = []
    for k in sample:
        r, i = flat[k]
        raw = raw_atl07[r["granule"]][r["beam"]]
        j = int(np.flatnonzero(raw.id == r["height_segment_id"][i])[0])
        seg.append((raw.lat[j], raw.lon[j], raw.time[j]))
    lat, lon, t = (np.array(v) for v in zip(*seg))
    pixels, around = tables["no ice"], tables[4]
    idx, _, _ = nearest(lat, lon, t, pixels, req.radius_m, req.max_dt_s)
    excluded = 0
    for n, k in enumerate(sample):
        r, i = flat[k]
        where = f"{r['granule']} {r['beam']} segment {r['height_segment_id'][i]}"
        d = haversine(lat[n], lon[n], around.lat, around.lon)
        near = (d <= req.radius_m) & (np.abs((around.t - np.datetime64(t[n], "ns").astype(np.int64)) / 1e9)
                                      <= req.max_dt_s)
        if idx[n] < 0:
            assert np.isnan(r["sst"][i]) and int(r["sst_n_valid"][i]) == 0, where
            assert int(r["sst_n_excluded_ice"][i]) == int((near & around.ice).sum()), where
        else:
            assert float(r["sst"][i]) == pytest.approx(pixels.sst[idx[n]], abs=1e-3), where
            assert not int(r["sst_match_flags"][i]) & 1, where
            mine = near & (around.granule == pixels.granule[idx[n]])
            assert int(r["sst_n_excluded_ice"][i]) == int((mine & around.ice).sum()), where
        excluded += int(r["sst_n_excluded_ice"][i])
    assert excluded > 0
    flags = np.concatenate([r["sst_match_flags"] for r in rows])
    assert not (flags[np.isfinite(np.concatenate([r["sst"] for r in rows]))] & 1).any()


def test_seed_case_pixel_table_counts_the_matches(seed_run):
    """Each product's _pixels.nc: one row per matched pixel, its segment counts, heights and flags
    recomputed from the product's own matches."""
    _, _, manifest, files = seed_run
    pixels = 0
    for name in sorted(n for n in files if n.endswith("_sst.nc")):
        with xr.open_dataset(files[name]) as ds, xr.open_dataset(files[name.replace(".nc", "_pixels.nc")]) as px:
            hit = ds["sst_granule"].values >= 0
            sources = np.array([str(s) for s in ds["sst_source_name"].values], dtype=object)
            key = list(zip(sources[ds["sst_granule"].values[hit]], ds["sst_pixel_nj"].values[hit].astype(int),
                           ds["sst_pixel_ni"].values[hit].astype(int)))
            height = ds["height_segment_height"].values[hit]
            flags = ds["sst_match_flags"].values[hit]
            groups: dict = {}
            for k, h, f in zip(key, height, flags):
                groups.setdefault(k, []).append((h, f))
            assert px.sizes["pixel"] == len(groups)
            pixels += len(groups)
            assert int(px["n_segments"].sum()) == int(hit.sum()) == ds.attrs["segments_matched_any_height"]
            assert int(px["n_segments_valid_height"].sum()) == ds.attrs["segments_matched"]
            for p in range(px.sizes["pixel"]):
                k = (str(px["sst_source_name"].values[p]), int(px["sst_pixel_nj"].values[p]),
                     int(px["sst_pixel_ni"].values[p]))
                h = np.array([g[0] for g in groups[k]], np.float64)
                assert int(px["n_segments"].values[p]) == len(h) and \
                    int(px["n_segments_valid_height"].values[p]) == int(np.isfinite(h).sum()), k
                if np.isfinite(h).any():
                    assert float(px["height_median"].values[p]) == pytest.approx(np.nanmedian(h), abs=1e-4), k
                assert np.isnan(px["height_stddev"].values[p]) == (np.isfinite(h).sum() < 2), k
                assert int(px["sst_match_flags"].values[p]) == int(np.bitwise_or.reduce([g[1] for g in groups[k]])) & 7
    assert pixels > 0


def test_rerun_returns_stored_result_without_recomputing(seed_run, sandbox):
    task, services, manifest, _ = seed_run
    before = _keys(sandbox, f"{sandbox.settings.output_prefix}/{task.request_id}/")
    again = run_date(task, services)
    assert again["cached"] is True
    assert again["run_id"] == manifest["run_id"]
    assert _keys(sandbox, f"{sandbox.settings.output_prefix}/{task.request_id}/") == before


def test_concurrent_runs_of_one_date_leave_one_complete_result(sandbox):
    task = _task(sandbox, radius_m=900.0)  # a request of its own
    results, errors = [], []

    def work():
        try:
            results.append(run_date(task, _services(sandbox)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    run_ids = {r["run_id"] for r in results}
    assert len(run_ids) == 1, "both callers must see the one published result"
    keys = _keys(sandbox, f"{sandbox.settings.output_prefix}/{task.request_id}/")
    manifest_key = f"{sandbox.settings.output_prefix}/{task.request_id}/{task.date.isoformat()}/manifest.json"
    assert keys == sorted(results[0]["outputs"] + [manifest_key]), "the losing run's files must be gone"


def test_atl07_read_in_place_gives_the_same_segments_as_the_download(seed_run, sandbox):
    _, _, downloaded_run, _ = seed_run
    settings = sandbox.settings.replace(atl07_access="direct")
    services = build_services(settings, token_provider=StaticToken(sandbox.edl_token),
                              s3_client=sandbox.boto3_client("s3"))
    task = plan(parse_request({**SEED, "radius_m": 999.0}, settings))[0]
    manifest = run_date(task, services)
    assert [p["atl07_access"] for p in manifest["products"]] == ["direct", "direct"]
    assert [p["segments"] for p in manifest["products"]] == [p["segments"] for p in downloaded_run["products"]]
    for product in manifest["products"]:
        # bytes fetched from S3 are counted (the scene's granules are cut to the box, so most
        # of each file is needed; tests/unit/test_atl07.py checks the bbox read on a whole track)
        size = next(g.size_bytes for g in sandbox.scene.granules if g.file_name == product["atl07_granule"])
        assert 0 < product["atl07_bytes"] <= size


def test_several_sst_collections_in_one_request(seed_run, sandbox):
    """MODIS Aqua plus a collection with no granules in the sandbox: the same matches as Aqua
    alone, every match labelled with its collection, both collections searched and recorded."""
    _, _, single, files = seed_run
    services = _services(sandbox)
    collections = ["C1940473819-POCLOUD", "MODIS_T-JPL-L2P-v2019.0"]
    task = _task(sandbox, sst_collections=collections)
    manifest = run_date(task, services)
    assert manifest["parameters"]["sst_collections"] == collections
    assert [p["matched"] for p in manifest["products"]] == [p["matched"] for p in single["products"]]
    for p in manifest["products"]:
        assert p["sst_collections_matched"] == (["C1940473819-POCLOUD"] if p["matched"] else [])
    s3 = sandbox.boto3_client("s3")
    key = next(k for k in manifest["outputs"] if k.endswith(".nc"))
    path = files[key.rsplit("/", 1)[-1]].with_name("multi.nc")
    s3.download_file(sandbox.settings.output_bucket, key, str(path))
    with xr.open_dataset(path) as ds:
        assert list(ds["sst_collection_name"].values) == ["C1940473819-POCLOUD"]
        m = ds["sst_granule"].values >= 0
        assert (ds["sst_collection"].values[m] == 0).all() and (ds["sst_collection"].values[~m] == -1).all()
        assert "GHMDT-2PJ19" in ds.attrs["references"] and "GHMDA-2PJ19" in ds.attrs["references"]
        assert ds.attrs["sst_collections"] == ",".join(collections)
