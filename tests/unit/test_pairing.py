"""core.science.pairing: one ATL07 granule against several L2P sources (and collections), the request
fields that drive it, against the brute-force oracle."""
from __future__ import annotations

import numpy as np
import pytest

from core.config import Settings
from core.errors import InputError
from core.model import BEAMS
from core.products.granule_netcdf import build_dataset
from core.request import ColocationRequest, DateTask, parse_request
from core.science.atl07 import read_atl07
from core.science.l2p import open_l2p
from core.params import ColocationParams
from core.science.pairing import pair_granule, read_local_windows
from tests.science_fixtures import (
    delta_time_for,
    oracle,
    synthetic_swath_file,
    track_geometry,
    write_atl07,
)

SEED = {"bbox": [-62.8, 81.7, -56.4, 83.0], "date": "2019-06-22"}


@pytest.fixture
def scene(tmp_path):
    modis, _ = synthetic_swath_file(tmp_path, 82.3, -60.0, rows=40, cols=30, name="MODIS_A_L2P.nc", seed=1,
                                    global_attrs={"platform": "Aqua", "sensor": "MODIS", "id": "MODIS_A-JPL-L2P-v2019.0"})
    viirs, _ = synthetic_swath_file(tmp_path, 82.305, -60.01, rows=40, cols=30, name="VIIRS_L2P.nc", seed=2,
                                    global_attrs={"platform": "Suomi-NPP", "sensor": "VIIRS",
                                                  "id": "VIIRS_NPP-JPL-L2P-v2016.2"})
    beams = {}
    for i, beam in enumerate(BEAMS[:2]):
        lat, lon = track_geometry(82.3, -60.0 + 0.01 * i, n=200, length_m=50_000, angle_deg=20,
                                  rng=np.random.default_rng(i))
        beams[beam] = dict(lat=lat, lon=lon, delta_time=delta_time_for("2019-06-22T10:02:00") + np.arange(200) * 0.5)
    atl = write_atl07(tmp_path / "ATL07-01_20190622095000_13070301_006_01.h5", beams)
    return atl, modis, viirs


def test_best_match_across_collections_records_its_collection(scene):
    atl, modis, viirs = scene
    params = ColocationParams(radius_m=1000.0, max_dt_s=900.0, min_quality_level=3)
    granule = read_atl07(atl)
    sources = read_local_windows(granule, [(modis, "MODIS_A-JPL-L2P-v2019.0"), (viirs, "VIIRS_NPP-JPL-L2P-v2016.2")],
                                 params)
    pairing = pair_granule(granule, sources, params)
    assert [t.segments.beam for t in pairing.tracks] == ["gt1l", "gt1r"]
    ds = build_dataset(pairing.tracks, pairing.source_info(),
                       {**params.as_attrs(), "sst_collections": [s.collection for s in sources]})
    lat, lon, t = ds["lat"].values, ds["lon"].values, ds["time"].values.astype("datetime64[ns]")
    dists = []
    for path in (modis, viirs):
        with open_l2p(path) as g:
            full = g.window(slice(None), slice(None))
        idx, dist, _ = oracle(lat, lon, t, full, 1000.0, 900.0, 3)
        dists.append(np.where(idx >= 0, dist, np.inf))
    best = np.where(np.isinf(np.minimum(*dists)), -1, np.argmin(np.stack(dists), axis=0))
    np.testing.assert_array_equal(ds["sst_granule"].values, best)
    assert (best == 0).any() and (best == 1).any(), "the fixture must have winners in both collections"
    names = list(ds["sst_collection_name"].values)
    assert names == ["MODIS_A-JPL-L2P-v2019.0", "VIIRS_NPP-JPL-L2P-v2016.2"]
    np.testing.assert_array_equal(ds["sst_collection"].values, best)  # one granule per collection here
    assert ds.attrs["platform"] == "ICESat-2, Aqua, Suomi-NPP" and ds.attrs["instrument"] == "ATLAS, MODIS, VIIRS"
    assert "10.5067/GHMDA-2PJ19" in ds.attrs["references"] and "10.5067/GHVRS-2PJ62" in ds.attrs["references"]


def test_source_without_quality_level_is_refused_unless_screening_is_off(scene, tmp_path):
    atl, _, _ = scene
    path, _ = synthetic_swath_file(tmp_path, 82.3, -60.0, rows=40, cols=30, name="NOQ.nc")
    import h5py
    with h5py.File(path, "r+") as h:
        del h["quality_level"]
    granule = read_atl07(atl)
    with pytest.raises(InputError, match="no quality_level") as err:
        screened = ColocationParams(min_quality_level=4, max_dt_s=900.0)
        pair_granule(granule, read_local_windows(granule, [(path, None)], screened), screened)
    assert err.value.field == "min_quality_level"
    unscreened = ColocationParams(min_quality_level=None, max_dt_s=900.0)
    granule = read_atl07(atl)
    pairing = pair_granule(granule, read_local_windows(granule, [(path, None)], unscreened), unscreened)
    assert pairing.matched > 0 and any("quality_level" in w for w in pairing.warnings)
    ds = build_dataset(pairing.tracks, pairing.source_info(), {"min_quality_level": None}, warnings=pairing.warnings)
    assert ds.attrs["colocation_quality_screening"].startswith("none")
    assert "NO quality screening" in ds["sst"].attrs["comment"] and "quality_level" in ds.attrs["reader_warnings"]
    assert (ds["sst_n_rejected_quality"].values == 0).all()


def test_request_fields_no_screening_footprint_and_several_collections():
    s = Settings()
    r = parse_request({**SEED, "min_quality_level": None, "radius_m": "footprint"}, s)
    assert r.min_quality_level is None and r.no_quality_screening and r.is_resolved
    assert r.colocation_params().min_quality_level is None and r.colocation_params().radius_m == "footprint"
    item = DateTask(r, r.dates()[0]).to_item()  # what the Step Functions Map hands each task
    assert item["request"]["min_quality_level"] is None
    back = DateTask.from_item(item).request.resolve(s)
    assert back.no_quality_screening and back.request_id() == r.request_id()
    assert parse_request(SEED, s).min_quality_level == s.min_quality_level  # left out: the default
    assert parse_request(SEED, s).request_id() != r.request_id()

    several = parse_request({**SEED, "sst_collections": ["C1940473819-POCLOUD", "VIIRS_NPP-JPL-L2P-v2016.2"]}, s)
    assert several.collections == ("C1940473819-POCLOUD", "VIIRS_NPP-JPL-L2P-v2016.2")
    one = parse_request({**SEED, "sst_collections": [s.sst_collection]}, s)
    assert one.collections == (s.sst_collection,) and one.request_id() == parse_request(SEED, s).request_id()
    for bad, field in (({"sst_collections": []}, "sst_collections"), ({"sst_collections": ["not one!"]}, "sst_collections"),
                       ({"sst_collections": ["C1940473819-POCLOUD"], "sst_collection": "C1940473819-POCLOUD"},
                        "sst_collections"),
                       ({"radius_m": "huge"}, "radius_m"), ({"radius_m": "1000"}, "radius_m")):
        with pytest.raises(Exception) as err:
            ColocationRequest.model_validate({**SEED, **bad})
        assert field in str(err.value)


def test_multi_sensor_event_passes_the_api_model_and_the_request_model():
    import json
    from pathlib import Path

    import jsonschema

    from tests.deploy_fixtures import sam_template

    event = json.loads((Path(__file__).resolve().parents[2] / "events" / "direct_multi_sensor.json").read_text())
    model = sam_template()["Resources"]["ColocationApi"]["Properties"]["Models"]["ColocationRequest"]
    jsonschema.Draft4Validator(model).validate(event)  # what API Gateway checks first
    jsonschema.Draft4Validator(model).validate({**SEED, "min_quality_level": None})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(model).validate({**SEED, "radius_m": "far"})
    r = parse_request(event, Settings())
    assert len(r.collections) == 4 and r.colocation_params().radius_m == "footprint"
    task = DateTask.from_item(DateTask(r, r.dates()[0]).to_item())  # the Step Functions item
    assert task.request.collections == r.collections
