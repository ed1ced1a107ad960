"""The generated seed-case scene against the real files' structure and independent geometry checks."""
from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from sandbox import scene as S

REPO = Path(__file__).resolve().parents[2]
BBOX = (-62.8, 81.7, -56.4, 83.0)
NOTEBOOK_VARS = {  # from the notebook's xarray output of the real 20190622100001 granule
    "time": "int32", "lat": "float32", "lon": "float32", "sea_surface_temperature": "int16",
    "sst_dtime": "int16", "quality_level": "int8", "sses_bias": "int8", "sses_standard_deviation": "int8",
    "l2p_flags": "int16", "chlorophyll_a": "float32", "K_490": "int16", "wind_speed": "int8", "dt_analysis": "int8",
}


@pytest.fixture(scope="module")
def scene():
    cache = os.environ.get("COLOC_SCENE_CACHE") or REPO / ".sandbox-cache"
    return S.build_scene(Path(cache), extent="cut")


def by_name(scene, prefix):
    return next(g for g in scene.granules if g.file_name.startswith(prefix))


def haversine_m(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(lon2 - lon1)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * 6371008.8 * np.arcsin(np.sqrt(a))


def test_scene_contents_and_cache(scene):
    atl07 = [g for g in scene.granules if g.short_name == "ATL07"]
    l2p = [g for g in scene.granules if g.provider == "POCLOUD"]
    assert [g.file_name for g in atl07] == ["ATL07-01_20190622055317_12980301_007_01.h5",
                                          "ATL07-01_20190622200154_13070301_007_01.h5"]
    recorded = [line.split() for line in (REPO / "tests/data/realdata/notebook/08_On-Prem_Cloud.recorded_outputs.txt")
                .read_text().splitlines() if line.startswith("201906") and "MODIS_A" in line]
    assert [g.title for g in l2p] == [r[0] for r in recorded]
    for g in scene.granules:
        assert g.path.is_file() and g.path.stat().st_size == g.size_bytes
        assert g.start.tzinfo is not None and g.start < g.end
        assert g.key.endswith(g.file_name)
        assert g.md5 == hashlib.md5(g.path.read_bytes()).hexdigest()
    for g, (_, listed_mb, _) in zip(l2p, recorded):
        assert g.bucket == "podaac-ops-cumulus-protected" and g.key == f"MODIS_A-JPL-L2P-v2019.0/{g.title}.nc"
        assert 18e6 < g.size_bytes < 32e6  # every one a full granule (the real ones: 19.5-28 MB)
        # the 4 listed at 9.346e-5 MB: the .md5 was their first file entry
        assert g.md5_listed_first == (float(listed_mb) * 2**20 == 98)
        md5, cmr_json = g.siblings
        assert md5["name"] == g.file_name + ".md5" and md5["size_bytes"] == 98 == md5["path"].stat().st_size
        assert md5["path"].read_text() == f"{g.md5}  {g.file_name}\n"
        assert cmr_json["name"] == g.title + ".cmr.json" and json.loads(cmr_json["path"].read_text())["GranuleUR"] == g.title
        assert md5["bucket"] == cmr_json["bucket"] == "podaac-ops-cumulus-public"
    assert sum(g.md5_listed_first for g in l2p) == 4
    assert atl07[0].key == "ATLAS/ATL07/007/2019/06/22/ATL07-01_20190622055317_12980301_007_01.h5"
    assert by_name(scene, "20190622100001").concept_id == "G1956158784-POCLOUD"
    manifest = json.loads((scene.root / "scene.json").read_text())
    assert manifest["extent"] == "cut" and scene.extent == "cut"
    t0 = time.perf_counter()
    again = S.build_scene(scene.root.parent, extent="cut")
    assert time.perf_counter() - t0 < 2 and [g.path for g in again.granules] == [g.path for g in scene.granules]
    # describe_scene (no files) agrees with the built scene on what CMR lists
    described = S.describe_scene(extent="cut")
    for a, b in zip(described.granules, scene.granules):
        assert (a.concept_id, a.start, a.end, a.polygon, a.rectangles, [s["name"] for s in a.siblings]) == \
               (b.concept_id, b.start, b.end, b.polygon, b.rectangles, [s["name"] for s in b.siblings])


def test_atl07_layout_matches_real_file(scene, realdata):
    def layout(f):
        out = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                attrs = set(obj.attrs) - {"DIMENSION_LIST", "REFERENCE_LIST"}
                out[name] = (obj.dtype.str, obj.chunks, obj.compression, obj.compression_opts, obj.shuffle,
                             obj.ndim, frozenset(attrs))
            else:
                out[name] = frozenset(obj.attrs)
        f.visititems(visit)
        return out

    with h5py.File(realdata / "atl07" / "processed_ATL07-01_20190222003738_08490201_003_02.h5") as real, \
            h5py.File(scene.granules[0].path) as ours:
        want, got = layout(real), layout(ours)
        # v006/v007: stats/ice_conc became ice_conc_ssmi + ice_conc_amsr2; dist2land added
        for beam in ("gt1l", "gt1r", "gt2l", "gt3l", "gt3r"):
            old = want.pop(f"{beam}/sea_ice_segments/stats/ice_conc", None)
            if old is not None:
                for new in ("ice_conc_ssmi", "ice_conc_amsr2", "dist2land"):
                    want[f"{beam}/sea_ice_segments/stats/{new}"] = got[f"{beam}/sea_ice_segments/stats/{new}"]
                    assert got[f"{beam}/sea_ice_segments/stats/{new}"][:6] == old[:6]  # dtype, chunks, filters
        assert "gt1l/sea_ice_segments/stats/ice_conc" not in got
        assert set(want) <= set(got)
        assert {k: v for k, v in want.items() if v != got[k]} == {}
        # the real subset lacks gt2r's variables; ours has the full layout for all six beams
        for beam in ("gt1l", "gt1r", "gt2l", "gt2r", "gt3l", "gt3r"):
            donor = "gt1l" if beam.endswith("l") else "gt1r"
            rel = {k[4:]: v for k, v in want.items() if k.startswith(donor + "/")}
            assert {k[4:]: v for k, v in got.items() if k.startswith(beam + "/")} == rel, beam
        assert not set(got) - set(want) - {k for k in got if k.startswith("gt")}
        assert set(ours.attrs) == set(real.attrs) - {"Processing Parameters"}
        for beam in ("gt1l", "gt2r", "gt3l"):
            h = ours[f"{beam}/sea_ice_segments/heights/height_segment_height"]
            assert [d.name for d in h.dims[0].values()] == [f"/{beam}/sea_ice_segments/delta_time"]


def test_atl07_geometry_times_and_flags(scene):
    for g, stamp in zip(scene.granules[:2], ("20190622055317", "20190622200154")):
        with h5py.File(g.path) as f:
            assert f["orbit_info/sc_orient"][0] == 0
            epoch = f["ancillary_data/atlas_sdp_gps_epoch"][0]
            assert epoch == 1198800018.0
            file_start = datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
            beams = {}
            for beam in ("gt1l", "gt1r", "gt2l", "gt2r", "gt3l", "gt3r"):
                grp = f[f"{beam}/sea_ice_segments"]
                dt = grp["delta_time"][:]
                # GPS seconds -> UTC: 18 leap seconds between GPS and UTC in 2019
                utc = datetime(1980, 1, 6, tzinfo=UTC) + timedelta(seconds=float(epoch + dt[0] - 18))
                assert file_start < utc < file_start + timedelta(minutes=40)
                assert np.all(np.diff(dt) > 0)
                lat, lon = grp["latitude"][:], grp["longitude"][:]
                inside = (lat > BBOX[1]) & (lat < BBOX[3]) & (lon > BBOX[0]) & (lon < BBOX[2])
                assert inside.sum() > 1000, beam
                n = dt.size
                # +/-200 km at the full granule's density: ~10 m per strong segment, weak fewer
                assert (28_000 < n < 45_000) if beam.endswith("l") else (8_000 < n < 0.7 * 45_000), (beam, n)
                h = grp["heights/height_segment_height"][:]
                fill = h > 1e38
                q = grp["heights/height_segment_quality"][:]
                fq = grp["heights/height_segment_fit_quality_flag"][:]
                st = grp["heights/height_segment_type"][:]
                assert 0.02 < fill.mean() < 0.2 and np.all(fq[fill] == -1) and np.all(q[fill] == 0)
                assert set(np.unique(fq)) <= set(grp["heights/height_segment_fit_quality_flag"].attrs["flag_values"])
                assert set(np.unique(st)) <= set(range(10)) and np.all(st[~fill & (st == 0)] == 0)
                assert -1.0 < np.median(h[~fill]) < 2.0
                beams[beam] = (dt, lat, lon)
            # pairs 90 m apart, pair centres ~3.3 km apart, at the same time
            for a, b, want in (("gt1l", "gt1r", 90.0), ("gt1l", "gt2l", 3300.0), ("gt2l", "gt3l", 3300.0)):
                ta, la, oa = beams[a]
                tb, lb, ob = beams[b]
                lat_b = np.interp(ta[::500], tb, lb)
                lon_b = np.interp(ta[::500], tb, ob)
                d = haversine_m(la[::500], oa[::500], lat_b, lon_b)
                assert abs(np.median(d) - want) < 0.05 * want + 5, (a, b, np.median(d))
            # near-polar ground speed ~7 km/s
            dt, lat, lon = beams["gt2l"]
            speed = haversine_m(lat[0], lon[0], lat[-1], lon[-1]) / (dt[-1] - dt[0])
            assert 6500 < speed < 7500


def test_l2p_matches_real_encoding(scene, realdata):
    g = by_name(scene, "20190622100001")
    zarr = json.loads((realdata / "l2p" / "20200911000001-JPL-L2P_GHRSST-SSTskin-MODIS_A-N-v02.0-fv01.0.zarr.json").read_text())
    notebook_attrs = (realdata / "notebook" / "MODIS_A_20190622100001_xarray_h5netcdf_attrs_from_notebook_output.txt").read_text()
    with h5py.File(g.path) as f:
        assert {k: str(f[k].dtype) for k in NOTEBOOK_VARS} == NOTEBOOK_VARS
        for name, (dims, _) in S.L2P_DAY_VARS.items():
            ds = f[name]
            z = zarr.get(f"{name}/.zarray")
            if z:  # the real chunking and compression
                assert list(ds.chunks) == z["chunks"] and ds.compression == "gzip"
                assert ds.compression_opts == z["compressor"]["level"] and not ds.shuffle
            if name != "time":
                assert ds.shape == (1, 2030, 1354)[-len(dims):]
            for key in ds.attrs:
                if key in ("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME") or key.startswith("_Netcdf4"):
                    continue
                value = ds.attrs[key]
                assert isinstance(value, np.ndarray) and value.ndim == 1, (name, key)
                assert f"  {key} : = " in notebook_attrs
        conv = f.attrs["Conventions"]
        assert isinstance(conv, np.ndarray) and conv.shape == (1,) and conv[0] == b"CF-1.7, ACDD-1.3"
        assert len([k for k in f.attrs if not k.startswith("_")]) == 49
        assert f.attrs["start_time"][0] == b"20190622T100001Z"
        assert f["sea_surface_temperature"].fillvalue == -32767
    raw = xr.open_dataset(g.path, engine="h5netcdf", decode_cf=False)
    assert int(raw.time.values[0]) == int((datetime(2019, 6, 22, 10, 0, 1, tzinfo=UTC)
                                           - datetime(1981, 1, 1, tzinfo=UTC)).total_seconds())
    ds = xr.open_dataset(g.path, engine="h5netcdf")  # plain CF decoding works without fixes
    assert ds.time.values[0] == np.datetime64("2019-06-22T10:00:01")
    raw.close()
    ds.close()


def test_l2p_content_covers_the_bbox(scene):
    g = by_name(scene, "20190622100001")
    with h5py.File(g.path) as f:
        lat, lon = f["lat"][:], f["lon"][:]
        inside = (lat > BBOX[1]) & (lat < BBOX[3]) & (lon > BBOX[0]) & (lon < BBOX[2])
        rows, cols = np.nonzero(inside)
        assert inside.sum() > 5000
        assert abs(np.median(cols) - 677) < 200  # near nadir
        sst = f["sea_surface_temperature"][0]
        ql = f["quality_level"][0]
        flags = f["l2p_flags"][0]
        dtime = f["sst_dtime"][0]
        kelvin = sst * 0.005 + 273.15
        # cloud and ice pixels carry SSTs with low quality levels, not fill
        assert not (sst[inside] == -32767).any() and (ql[inside] <= 2).mean() > 0.5
        # below valid_min (268.15 K) over ice and cloud, never with an acceptable quality level
        cold = inside & (sst < -1000)
        assert cold.sum() > 0.05 * inside.sum() and np.all(ql[cold] <= 2)
        # melting ice at 271-273 K passing as quality 4: the only "good" pixels in the pack
        good = inside & (ql >= 4)
        assert 0.01 < good[inside].mean() < 0.2
        assert np.all((kelvin[good] >= 271.0) & (kelvin[good] <= 273.3)) and np.all(flags[good] & 4)
        assert set(np.unique(ql)) <= set(range(6))
        # sst_dtime: one value per 10-line scan, rising through the 5-minute granule
        assert np.all(dtime[:10] == dtime[0, 0]) and np.all(np.diff(dtime[::10, 0]) >= 0)
        assert 290 <= dtime.max() <= 300
        # pixel spacing ~1 km at nadir, growing towards the swath edge
        d_nadir = haversine_m(lat[1000, 677], lon[1000, 677], lat[1000, 678], lon[1000, 678])
        d_edge = haversine_m(lat[1000, 0], lon[1000, 0], lat[1000, 1], lon[1000, 1])
        assert 700 < d_nadir < 1300 and d_edge > 2 * d_nadir
        # the ice bit is a coarse mask: one value per 0.25 deg x 1 deg cell, blind to the pixel's
        # own retrieval (open-water quality levels 3-5 occur under it and outside it)
        cell = np.floor(lat / 0.25) * 1000 + np.floor(lon)
        ice = (flags & 4) > 0
        for c in np.unique(cell[::37, ::37])[:200]:
            assert len(np.unique(ice[cell == c])) == 1
        assert ice.any() and (~ice).any()
    # several granules see the bbox
    seen = 0
    for other in scene.granules:
        if other.provider == "POCLOUD":
            with h5py.File(other.path) as f:
                la, lo = f["lat"][::4, ::4], f["lon"][::4, ::4]
                seen += bool(((la > BBOX[1]) & (la < BBOX[3]) & (lo > BBOX[0]) & (lo < BBOX[2])).any())
    assert seen >= 3


def test_l2p_byte_mix_like_the_real_granule(scene, realdata):
    """Share of each field in the file, against the real night granule's chunk sizes (zarr.json)."""
    zarr = json.loads((realdata / "l2p" / "20200911000001-JPL-L2P_GHRSST-SSTskin-MODIS_A-N-v02.0-fv01.0.zarr.json").read_text())
    real = {k.split("/")[0]: sum(c["size"] for c in v.values()) for k, v in zarr.items() if k.endswith(".zchunkstore")}
    real_total = sum(real.values())
    night = by_name(scene, "20190622064501-JPL-L2P_GHRSST-SSTskin-MODIS_A-N")
    with h5py.File(night.path) as f:
        names = set(f) - {"nj", "ni"}  # netCDF-4 dimension scales without values
        assert names == set(real)  # the night layout: 4 um fields, no ocean colour
        ours = {k: f[k].id.get_storage_size() for k in names}
        for name in ("sea_surface_temperature_4um", "quality_level_4um"):
            attrs = json.loads(zarr[f"{name}/.zattrs"]) if isinstance(zarr[f"{name}/.zattrs"], str) else zarr[f"{name}/.zattrs"]
            assert f[name].attrs["comment"][0].decode() == attrs["comment"]
    total = sum(ours.values())
    for name in ("lat", "lon", "sea_surface_temperature", "sea_surface_temperature_4um"):
        assert abs(ours[name] / total - real[name] / real_total) < 0.04, name  # 29 / 35 / 17 / 17 %
    day = by_name(scene, "20190622100001")
    with h5py.File(day.path) as f:
        sizes = {k: f[k].id.get_storage_size() for k in set(f) - {"nj", "ni"}}
    share = {k: v / sum(sizes.values()) for k, v in sizes.items()}
    assert share["lon"] > share["lat"] > share["sea_surface_temperature"] > 0.15 and "sea_surface_temperature_4um" not in f


def test_generation_is_deterministic(scene, tmp_path):
    spec = S.ATL07_SPECS[0]
    S._write_atl07(spec, tmp_path / spec.file_name, "cut")
    with h5py.File(tmp_path / spec.file_name) as a, h5py.File(scene.granules[0].path) as b:
        for v in ("gt1l/sea_ice_segments/latitude", "gt3r/sea_ice_segments/heights/height_segment_height",
                  "gt2l/sea_ice_segments/stats/hist_photon_heights"):
            np.testing.assert_array_equal(a[v][:], b[v][:])
    # byte for byte, in another process than the one that built the scene
    assert hashlib.md5((tmp_path / spec.file_name).read_bytes()).hexdigest() == scene.granules[0].md5
    g = by_name(scene, "20190622100001")
    i = [t for t, _ in S.L2P_RECORDED].index(g.title)
    S._write_l2p(g.title, g.start, g.day_night, tmp_path / g.file_name, 100 + i)
    assert hashlib.md5((tmp_path / g.file_name).read_bytes()).hexdigest() == g.md5
