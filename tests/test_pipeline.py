"""The pipeline on the seed case, in the sandbox: real clients, real files, real bucket.

The science check is an independent oracle: it reads the scene's L2P files with plain h5py
(raw integers, scale/offset by hand), and brute-forces the haversine distance to every valid
pixel of every L2P granule for a sample of segments.
"""
from __future__ import annotations

import threading

import h5py
import numpy as np
import pytest
import xarray as xr

from core.earthdata import StaticToken
from core.pipeline import build_services, plan, run_task
from core.request import parse_request

SEED = {"bbox": [-62.8, 81.7, -56.4, 83.0], "date": "2019-06-22"}
EARTH_RADIUS_M = 6371008.8


def _services(sb):
    return build_services(sb.settings, token_provider=StaticToken(sb.edl_token), s3_client=sb.boto3_client("s3"))


def _task(sb, **extra):
    return plan(parse_request({**SEED, **extra}, sb.settings))[0]


def _keys(sb, prefix):
    s3 = sb.boto3_client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=sb.settings.output_bucket, Prefix=prefix)
    return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


@pytest.fixture(scope="module")
def seed_run(sandbox, tmp_path_factory):
    services = _services(sandbox)
    task = _task(sandbox)
    manifest = run_task(task, services)
    out = tmp_path_factory.mktemp("seed-outputs")
    s3 = sandbox.boto3_client("s3")
    files = {}
    for key in manifest["outputs"]:
        path = out / key.rsplit("/", 1)[-1]
        s3.download_file(sandbox.settings.output_bucket, key, str(path))
        files[path.name] = path
    return task, services, manifest, files


def test_seed_case_product_carries_the_per_match_fields(seed_run):
    _, _, manifest, files = seed_run
    nc = sorted(p for name, p in files.items() if name.endswith(".nc"))
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


def test_seed_case_products_hold_only_segments_inside_the_requested_bbox(seed_run):
    task, _, manifest, files = seed_run
    w, s, e, n = task.request.bbox  # the seed box does not cross the antimeridian
    assert manifest["parameters"]["bbox_margin_deg"] == 0.0
    for path in sorted(p for name, p in files.items() if name.endswith(".nc")):
        with xr.open_dataset(path) as ds:
            lon, lat = ds["lon"].values, ds["lat"].values
            inside = (lat >= s) & (lat <= n) & (lon >= w) & (lon <= e)
            assert lat.size and inside.all(), f"{path.name}: {(~inside).sum()} segments outside the bbox"
            assert ds.attrs["colocation_bbox_margin_deg"] == 0.0
            assert ds.attrs["colocation_bbox"] == "-62.8,81.7,-56.4,83"


def test_seed_case_manifest(seed_run, sandbox_scene):
    task, _, manifest, files = seed_run
    assert manifest["status"] == "complete"
    counts = manifest["counts"]
    atl07 = [g for g in sandbox_scene.granules if g.short_name == "ATL07"]
    l2p = [g for g in sandbox_scene.granules if g.short_name != "ATL07"]
    assert counts["atl07_granules"] == counts["atl07_granules_found"] == len(atl07) == 2
    # every L2P granule of the recorded search is a full granule: none skipped
    assert counts["sst_granules"] == counts["sst_granules_found"] == len(l2p) == 14
    assert counts["skipped"] == 0 and manifest["inputs"]["skipped"] == []
    assert 0 < counts["matched"] < counts["segments"]
    # one netCDF and one PNG per ATL07 granule with segments, all six beams read
    assert len([f for f in files if f.endswith(".nc")]) == len([f for f in files if f.endswith(".png")]) == 2
    for product in manifest["products"]:
        assert sorted(product["beams"]) == ["gt1l", "gt1r", "gt2l", "gt2r", "gt3l", "gt3r"]
    # L2P read in place: every read granule reports fetched bytes no larger than the object
    for name, report in manifest["bytes"]["sst_per_granule"].items():
        assert 0 < report["bytes_fetched"] <= report["size"], name


def _read_l2p_oracle(path):
    """Valid pixels of one L2P file, decoded by hand from the raw HDF5 (independent of core.l2p)."""
    with h5py.File(path, "r") as f:
        def attr(var, name, default=None):
            value = f[var].attrs.get(name, default)
            return np.asarray(value).ravel()[0] if value is not None else default

        lat = f["lat"][:].astype(np.float64)
        lon = f["lon"][:].astype(np.float64)
        raw = f["sea_surface_temperature"][0].astype(np.float64)
        sst = raw * attr("sea_surface_temperature", "scale_factor", 1.0) + attr(
            "sea_surface_temperature", "add_offset", 0.0)
        sst[raw == attr("sea_surface_temperature", "_FillValue")] = np.nan
        draw = f["sst_dtime"][0].astype(np.float64)
        dtime = draw * attr("sst_dtime", "scale_factor", 1.0) + attr("sst_dtime", "add_offset", 0.0)
        dtime[draw == attr("sst_dtime", "_FillValue")] = np.nan
        # CF valid range, applied to the raw integers: outside it an SST is not valid
        in_range = (raw >= attr("sea_surface_temperature", "valid_min", -np.inf)) & (
            raw <= attr("sea_surface_temperature", "valid_max", np.inf))
        sst[~in_range] = np.nan
        t0 = float(f["time"][0])  # seconds since 1981-01-01
        ql = f["quality_level"][0].astype(np.int16)
    epoch = np.datetime64("1981-01-01T00:00:00", "s").astype("datetime64[ns]").astype(np.int64) / 1e9
    seconds = epoch + t0 + dtime  # UTC seconds since 1970
    ok = (np.abs(lat) <= 90) & (np.abs(lon) <= 180) & np.isfinite(sst) & np.isfinite(seconds)
    nj, ni = np.nonzero(ok)
    return lat[ok], lon[ok], sst[ok], seconds[ok], ql[ok], nj, ni


def _haversine(lon1, lat1, lon2, lat2):
    lon1, lat1, lon2, lat2 = map(np.radians, (lon1, lat1, lon2, lat2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def test_seed_case_matches_brute_force_oracle(seed_run, sandbox_scene):
    task, _, manifest, files = seed_run
    req = task.request
    nc = [p for name, p in files.items() if name.endswith(".nc")]
    obs = {}
    names = ("lat", "lon", "time", "sst", "sst_distance", "sst_dt", "sst_n_valid", "sst_median",
             "sst_pixel_nj", "sst_pixel_ni", "sst_n_rejected_quality")
    for p in nc:
        with xr.open_dataset(p) as one:
            for name in names:
                obs.setdefault(name, []).append(one[name].values)
            source = np.asarray(one["sst_source_name"].values)[np.clip(one["sst_granule"].values, 0, None)]
            obs.setdefault("source", []).append(np.where(one["sst_granule"].values >= 0, source, ""))
    ds = {name: np.concatenate(parts) for name, parts in obs.items()}
    rng = np.random.default_rng(7)
    matched = np.flatnonzero(np.isfinite(ds["sst"]))
    unmatched = np.flatnonzero(~np.isfinite(ds["sst"]))
    sample = np.concatenate([rng.choice(matched, 25, replace=False), rng.choice(unmatched, 15, replace=False)])
    seg_lat, seg_lon = ds["lat"][sample], ds["lon"][sample]
    seg_t = ds["time"][sample].astype("datetime64[ns]").astype(np.int64) / 1e9

    # candidate pixels near the sample, over every L2P granule of the scene
    pix = {}
    for g in sandbox_scene.granules:
        if g.short_name == "ATL07":
            continue
        lat, lon, sst, sec, ql, nj, ni = _read_l2p_oracle(g.path)
        near = (lat > seg_lat.min() - 0.2) & (lat < seg_lat.max() + 0.2)
        pix[g.title] = tuple(a[near] for a in (lat, lon, sst, sec, ql, nj, ni))

    checked_counts = 0
    for i in range(len(sample)):
        # per granule: the valid pixels within radius and Δt, and the nearest of them
        best = None
        rejected = 0
        for title, (lat, lon, sst, sec, ql, nj, ni) in pix.items():
            d = _haversine(seg_lon[i], seg_lat[i], lon, lat)
            near = (d <= req.radius_m) & (np.abs(sec - seg_t[i]) <= req.max_dt_s)
            ok = near & (ql >= req.min_quality_level)
            rejected += int((near & ~ok).sum())
            if ok.any():
                j = np.flatnonzero(ok)[np.argmin(d[ok])]
                if best is None or d[j] < best[1]:
                    best = (title, d[j], j, ok, sst, sec, nj, ni)
        got_sst = float(ds["sst"][sample[i]])
        if best is None:
            assert np.isnan(got_sst), f"segment {sample[i]} matched but the oracle finds no valid pixel"
            assert ds["sst_n_valid"][sample[i]] == 0
            # nothing matched: the rejected pixels of every granule read are summed
            assert ds["sst_n_rejected_quality"][sample[i]] == rejected
            continue
        title, dist, j, ok, sst, sec, nj, ni = best
        assert got_sst == pytest.approx(sst[j], abs=1e-3), f"segment {sample[i]}"
        assert float(ds["sst_distance"][sample[i]]) == pytest.approx(dist, abs=1.0)
        assert float(ds["sst_dt"][sample[i]]) == pytest.approx(sec[j] - seg_t[i], abs=1.0)
        # the neighbourhood of the matched pixel's granule, and the pixel's place in its swath
        assert ds["source"][sample[i]] == title
        assert (ds["sst_pixel_nj"][sample[i]], ds["sst_pixel_ni"][sample[i]]) == (nj[j], ni[j])
        assert ds["sst_n_valid"][sample[i]] == ok.sum()
        assert float(ds["sst_median"][sample[i]]) == pytest.approx(float(np.median(sst[ok])), abs=1e-3)
        checked_counts += int(ok.sum() > 1)
    assert checked_counts > 0, "the sample must include segments with several valid pixels around"


def test_rerun_returns_stored_result_without_recomputing(seed_run, sandbox):
    task, services, manifest, _ = seed_run
    before = _keys(sandbox, f"{sandbox.settings.output_prefix}/{task.request_id}/")
    again = run_task(task, services)
    assert again["cached"] is True
    assert again["run_id"] == manifest["run_id"]
    assert _keys(sandbox, f"{sandbox.settings.output_prefix}/{task.request_id}/") == before


def test_concurrent_runs_of_one_date_leave_one_complete_result(sandbox):
    task = _task(sandbox, radius_m=900.0)  # a request of its own
    results, errors = [], []

    def work():
        try:
            results.append(run_task(task, _services(sandbox)))
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
    manifest = run_task(task, services)
    assert [p["atl07_access"] for p in manifest["products"]] == ["direct", "direct"]
    assert [p["segments"] for p in manifest["products"]] == [p["segments"] for p in downloaded_run["products"]]
    for product in manifest["products"]:
        # bytes fetched from S3 are counted (the scene's granules are cut to the box, so most
        # of each file is needed; tests/test_atl07.py checks the bbox read on a whole track)
        size = next(g.size_bytes for g in sandbox.scene.granules if g.file_name == product["atl07_granule"])
        assert 0 < product["atl07_bytes"] <= size


def test_several_sst_collections_in_one_request(seed_run, sandbox):
    """MODIS Aqua plus a collection with no granules in the sandbox: the same matches as Aqua
    alone, every match labelled with its collection, both collections searched and recorded."""
    _, _, single, files = seed_run
    services = _services(sandbox)
    collections = ["C1940473819-POCLOUD", "MODIS_T-JPL-L2P-v2019.0"]
    task = _task(sandbox, sst_collections=collections)
    manifest = run_task(task, services)
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
