"""The CMR emulator driven by python-cmr, a client nobody here wrote: what it sends is applied
or refused in CMR's error shape (``{"errors": [...]}``, 400), never ignored with every granule."""
from __future__ import annotations

import pytest
import requests
from cmr import CollectionQuery, GranuleQuery

from sandbox.cmr_app import create_cmr_app
from sandbox.scene import L2P_RECORDED, describe_scene
from tests.sandbox.test_cmr import L2P, Served, fake_links

ATL07 = "C3564876395-NSIDC_CPRD"
TUTORIAL = "20190622100001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0"


@pytest.fixture(scope="module")
def cmr():
    served = Served(create_cmr_app(describe_scene(), fake_links))
    yield served
    served.close()


def granules(cmr) -> GranuleQuery:
    return GranuleQuery(mode=f"{cmr.url}/search/").collection_concept_id(L2P).bounding_box(-62.8, 81.7, -56.4, 83.0) \
        .temporal("2019-06-22T00:00:00Z", "2019-06-22T23:59:59Z")


def titles(entries) -> list[str]:
    return [e["title"] for e in entries]


def test_python_cmr_searches_are_applied(cmr):
    seed = [title for title, _ in L2P_RECORDED]
    assert granules(cmr).hits() == len(seed)
    assert titles(granules(cmr).get_all()) == seed  # paging with CMR-Search-After, as python-cmr pages
    assert titles(granules(cmr).granule_ur(TUTORIAL).get()) == [TUTORIAL]
    assert titles(granules(cmr).readable_granule_name("*100001-JPL*").get()) == [TUTORIAL]
    assert titles(granules(cmr).readable_granule_name(TUTORIAL + ".nc").get()) == [TUTORIAL]
    day = titles(granules(cmr).day_night_flag("day").get())
    night = titles(granules(cmr).day_night_flag("night").get())
    assert day and night and sorted(day + night) == sorted(seed)
    assert titles(granules(cmr).sort_key("start_date").get()) == seed
    assert titles(granules(cmr).downloadable(True).online_only(True).get()) == seed
    inside = GranuleQuery(mode=f"{cmr.url}/search/").collection_concept_id(L2P).point(-60.0, 82.5) \
        .temporal("2019-06-22T00:00:00Z", "2019-06-22T23:59:59Z").get()
    far = GranuleQuery(mode=f"{cmr.url}/search/").collection_concept_id(L2P).point(100.0, -60.0) \
        .temporal("2019-06-22T00:00:00Z", "2019-06-22T23:59:59Z").get()
    assert set(titles(inside)) <= set(seed) and inside and not far
    assert titles(CollectionQuery(mode=f"{cmr.url}/search/").short_name("ATL07").version("007").get()) == [
        "ATLAS/ICESat-2 L3A Sea Ice Height V007"]
    umm = CollectionQuery(mode=f"{cmr.url}/search/").concept_id(ATL07).format("umm_json").get()
    assert '"ShortName": "ATL07"' in umm[0]


@pytest.mark.parametrize(("query", "message"), [
    (lambda q: q.params.update(foo="bar") or q, "Parameter [foo] was not recognized."),
    (lambda q: q.polygon([(-62, 81), (-56, 81), (-56, 83), (-62, 83), (-62, 81)]), "polygon"),
    (lambda q: q.cloud_cover(0, 50), "cloud_cover"),
    (lambda q: q.platform("Aqua"), "platform"),
    (lambda q: q.sort_key("-start_date"), "sort_key [-start_date]"),
    (lambda q: q.orbit_number(1234), "orbit_number"),
])
def test_what_python_cmr_sends_and_the_emulator_does_not_apply_is_refused(cmr, query, message):
    with pytest.raises(requests.HTTPError) as err:
        query(granules(cmr)).get()
    assert err.value.response.status_code == 400
    errors = err.value.response.json()["errors"]
    assert len(errors) == 1 and message in errors[0]


@pytest.mark.parametrize(("params", "message"), [
    ({"concept_id": L2P, "foo": "bar"}, "Parameter [foo] was not recognized."),
    ({"concept_id": L2P, "sort_key": "size"}, "The sort key [size] is not a valid field for sorting granules."),
    ({"concept_id": L2P, "day_night_flag": "dusk"}, "day_night_flag [dusk]"),
    ({"concept_id": L2P, "page_size": 2001}, "page_size"),
    ({"concept_id": L2P, "downloadable": "maybe"}, "downloadable"),
])
def test_what_cmr_refuses_is_refused_in_cmr_error_shape(cmr, params, message):
    r = requests.get(f"{cmr.url}/search/granules.json", params=params, timeout=10)
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/json")
    assert message in r.json()["errors"][0]


def test_formats_the_emulator_does_not_serve_answer_in_cmr_error_shape(cmr):
    r = requests.get(f"{cmr.url}/search/granules.stac", params={"concept_id": L2P}, timeout=10)
    assert r.status_code == 400 and "granules.stac" in r.json()["errors"][0]
    r = requests.get(f"{cmr.url}/search/collections.umm_json", params={"short_name": "ATL07"}, timeout=10)
    assert r.status_code == 200 and {i["umm"]["Version"] for i in r.json()["items"]} == {"007", "004"}
