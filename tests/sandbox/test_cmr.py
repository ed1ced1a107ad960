"""The real CmrClient against the loopback CMR emulator (sandbox/cmr_app.py) and recorded responses."""
from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
import yaml
from werkzeug.serving import make_server

from core.access.cmr import (
    CmrClient,
    granule_from_umm,
    parse_collection,
    s3_url_from_https,
    select_umm_links,
)
from core.config import Settings
from core.errors import InputError, UpstreamError
from core.model import BBox
from sandbox.cmr_app import create_cmr_app
from sandbox.faults import Faults
from sandbox.scene import L2P_RECORDED, SceneGranule, describe_scene
from tests.cmr_feed import granule_from_feed_entry

SEED_BBOX = BBox(-62.8, 81.7, -56.4, 83.0)
DAY0 = datetime(2019, 6, 22, tzinfo=UTC)
DAY1 = datetime(2019, 6, 22, 23, 59, 59, tzinfo=UTC)
L2P = "C1940473819-POCLOUD"


def fake_links(g) -> dict:
    # TEA serves https://<host>/<bucket>/<key>: one host per DAAC, the bucket right after it
    host = "http://127.0.0.1:9" if g.daac == "nsidc" else "http://127.0.0.2:9"
    return {"https": f"{host}/{g.bucket}/{g.key}", "s3": f"s3://{g.bucket}/{g.key}",
            "s3credentials": f"{host}/s3credentials"}


class Served:
    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture(scope="module")
def seed_scene():
    return describe_scene()


@pytest.fixture(scope="module")
def cmr(seed_scene):
    faults = Faults()
    served = Served(create_cmr_app(seed_scene, fake_links, faults=faults))
    served.faults = faults
    yield served
    served.close()


@pytest.fixture
def settings(cmr):
    return Settings().replace(cmr_url=cmr.url, http_backoff_s=0.01, http_retries=3, http_timeout_s=5)


@pytest.fixture(autouse=True)
def _clear_faults(cmr):
    cmr.faults.clear()
    yield
    cmr.faults.clear()


def client(settings, **kw) -> CmrClient:
    return CmrClient(requests.Session(), settings.replace(**kw))


# --- searches --------------------------------------------------------------------------------


def test_seed_case_finds_all_14_modis_granules_at_their_data_file_size(settings, seed_scene, caplog):
    caplog.set_level(logging.INFO, logger="core.access.cmr")
    c = client(settings)
    got = c.search(L2P, SEED_BBOX, DAY0, DAY1)
    assert [g.title for g in got] == [title for title, _ in L2P_RECORDED]  # the recorded search (cell 35)
    assert not any(g.skip_reason for g in got) and "without a data link" not in caplog.text
    sizes = {g.concept_id: g.size_bytes for g in seed_scene.granules}
    for g in got:
        # the data file's own entry, never the 98-byte .nc.md5 even where it is listed first
        assert g.size_bytes == sizes[g.concept_id] > 1e6, g.title
        assert g.producer_granule_id == g.title + ".nc"
        assert g.https_url.endswith("/podaac-ops-cumulus-protected/MODIS_A-JPL-L2P-v2019.0/" + g.producer_granule_id)
        # with or without a direct-access link in the record, the same S3 location
        assert g.s3_url == "s3://podaac-ops-cumulus-protected/MODIS_A-JPL-L2P-v2019.0/" + g.producer_granule_id
    tutorial = next(g for g in got if g.concept_id == "G1956158784-POCLOUD")
    assert tutorial.title == "20190622100001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0"
    assert tutorial.s3credentials_url == "http://127.0.0.2:9/s3credentials"
    assert tutorial.start == datetime(2019, 6, 22, 10, 0, 1, tzinfo=UTC)
    assert tutorial.bbox and tutorial.collection == L2P and tutorial.provider == "POCLOUD"


def test_emulated_records_list_siblings_in_varying_order(cmr):
    params = {"concept_id": L2P, "bounding_box": str(SEED_BBOX), "page_size": 200,
              "temporal": "2019-06-22T00:00:00Z,2019-06-22T23:59:59Z"}
    items = requests.get(f"{cmr.url}/search/granules.umm_json", params=params).json()["items"]
    orders, first_files, direct = set(), [], 0
    for item in items:
        urls = item["umm"]["RelatedUrls"]
        names = [u["URL"].rsplit("/", 1)[1] for u in urls if u["Type"] in ("GET DATA", "EXTENDED METADATA")]
        title = item["umm"]["GranuleUR"]
        assert sorted(names) == sorted([f"{title}.nc", f"{title}.nc.md5", f"{title}.cmr.json"])
        orders.add(tuple(n.replace(title, "") for n in names))
        files = item["umm"]["DataGranule"]["ArchiveAndDistributionInformation"]
        assert {f["Name"]: f["SizeInBytes"] for f in files}[f"{title}.nc.md5"] == 98
        first_files.append(files[0]["Name"].endswith(".md5"))
        direct += any(u["Type"] == "GET DATA VIA DIRECT ACCESS" for u in urls)
    assert len(orders) > 1 and 0 < direct < len(items)  # siblings in no fixed order; some HTTPS-only
    # the four the tutorial's feed showed at 9.346e-5 MB are the records listing the .md5 first
    assert first_files == [mb < 0.001 for _, mb in L2P_RECORDED]
    feed = requests.get(f"{cmr.url}/search/granules.json", params=params).json()["feed"]["entry"]
    assert [float(e["granule_size"]) for e in feed if float(e["granule_size"]) < 0.001] == [9.34600830078125e-05] * 4


def test_search_after_on_a_full_page_and_not_on_an_empty_one(cmr):
    params = {"concept_id": L2P, "bounding_box": str(SEED_BBOX), "page_size": 200,
              "temporal": "2019-06-22T00:00:00Z,2019-06-22T23:59:59Z"}
    full = requests.get(f"{cmr.url}/search/granules.umm_json", params=params)
    assert full.headers["CMR-Hits"] == "14" and len(full.json()["items"]) == 14
    assert full.headers.get("CMR-Search-After")  # as real CMR: even on a page holding every hit
    empty = requests.get(f"{cmr.url}/search/granules.umm_json", params=params,
                         headers={"CMR-Search-After": full.headers["CMR-Search-After"]})
    assert empty.json()["items"] == [] and "CMR-Search-After" not in empty.headers


def test_granule_without_a_data_link_is_returned_with_a_reason(settings, cmr, seed_scene):
    g = next(g for g in seed_scene.granules if g.concept_id == "G1956158784-POCLOUD")
    fake = {"meta": {"concept-id": g.concept_id, "provider-id": "POCLOUD"},
            "umm": {"GranuleUR": g.title, "RelatedUrls": [
                {"URL": "https://archive.podaac.earthdata.nasa.gov/podaac-ops-cumulus-public/x.nc.md5",
                 "Type": "EXTENDED METADATA"}]}}
    cmr.faults.add("/search/granules.umm_json", body=json.dumps({"hits": 1, "items": [fake]}),
                   content_type="application/json", times=1)
    got = client(settings).search(L2P, SEED_BBOX, DAY0, DAY1)
    assert len(got) == 1 and got[0].skip_reason == "no data link in the CMR record"
    assert got[0].https_url is None and got[0].s3_url is None


def test_atl07_by_short_name_and_version_forms(settings):
    c = client(settings)
    names = {"ATL07-01_20190622055317_12980301_007_01.h5", "ATL07-01_20190622200154_13070301_007_01.h5"}
    for collection in ("ATL07/007", "ATL07.007", "ATL07/007/NSIDC_CPRD", "C3564876395-NSIDC_CPRD",
                       "C2003771980-NSIDC_ECS"):
        got = c.search(collection, SEED_BBOX, DAY0, DAY1)
        assert {g.producer_granule_id for g in got} == names, collection
    g = got[0]
    assert g.polygon and g.polygon[0] == g.polygon[-1]
    assert g.s3_url.startswith("s3://nsidc-cumulus-prod-protected/ATLAS/ATL07/007/2019/06/22/")
    assert g.collection == "C3564876395-NSIDC_CPRD" and g.provider == "NSIDC_CPRD"
    assert c.collection_concept_id("ATL07/007") == "C3564876395-NSIDC_CPRD"
    assert c.collection_concept_id("MODIS_A-JPL-L2P-v2019.0/2019.0") == L2P


def test_paging_past_one_page_with_search_after(settings, cmr):
    seen = []
    c = client(settings, cmr_page_size=3)
    c.session.hooks["response"].append(
        lambda r, *a, **k: seen.append((r.request.headers.get("CMR-Search-After"), r.headers.get("CMR-Search-After"))))
    got = c.search(L2P, SEED_BBOX, DAY0, DAY1)
    assert len(got) == 14 and len({g.concept_id for g in got}) == 14
    assert len(seen) == 5  # ceil(14 / 3)
    assert seen[0][0] is None and all(sent == prev[1] for sent, prev in zip([s[0] for s in seen[1:]], seen))
    assert [g.start for g in got] == sorted(g.start for g in got)


def test_bbox_and_time_filtering(settings):
    c = client(settings)
    # the morning ATL07 pass only
    got = c.search("ATL07/007", SEED_BBOX, DAY0, datetime(2019, 6, 22, 12, tzinfo=UTC))
    assert [g.producer_granule_id for g in got] == ["ATL07-01_20190622055317_12980301_007_01.h5"]
    # a bbox far from both tracks (still in the Arctic): no ATL07, L2P rectangles still match
    far = BBox(100.0, 70.0, 110.0, 72.0)
    assert c.search("ATL07/007", far, DAY0, DAY1) == []
    # southern hemisphere: nothing at all
    assert c.search(L2P, BBox(-60, -70, -50, -60), DAY0, DAY1) == []
    # another day
    assert c.search(L2P, SEED_BBOX, DAY0 + timedelta(days=3), DAY1 + timedelta(days=3)) == []
    # a time window inside one L2P granule
    one = c.search(L2P, SEED_BBOX, datetime(2019, 6, 22, 10, 2, tzinfo=UTC),
                   datetime(2019, 6, 22, 10, 3, tzinfo=UTC))
    assert [g.concept_id for g in one] == ["G1956158784-POCLOUD"]


def _granule(cid: str, lon_w: float, lon_e: float, start: datetime, size: int) -> SceneGranule:
    return SceneGranule(
        concept_id=cid, collection_concept_id="C1-TEST", short_name="TEST", version="1", provider="TEST",
        title=cid, file_name=f"{cid}.nc", path=Path("/nonexistent"), size_bytes=size, start=start,
        end=start + timedelta(minutes=5), polygon=None, bucket="b", key=f"k/{cid}.nc", daac="podaac",
        rectangles=[(lon_w, -10.0, lon_e, 10.0)] if lon_w <= lon_e else
        [(lon_w, -10.0, 180.0, 10.0), (-180.0, -10.0, lon_e, 10.0)],
    )


def test_antimeridian_bbox():
    t = DAY0
    scene = type("S", (), {"granules": [
        _granule("G1-TEST", 175.0, 179.0, t, 5000),      # east of the antimeridian
        _granule("G2-TEST", -179.5, -170.0, t, 5000),    # west of it
        _granule("G3-TEST", 178.0, -178.0, t, 5000),     # straddling it
        _granule("G4-TEST", 0.0, 10.0, t, 5000),         # Greenwich: must not match
        _granule("G5-TEST", 170.0, 172.0, t, 5000),      # west of the bbox
    ]})()
    served = Served(create_cmr_app(scene, fake_links))
    try:
        s = Settings().replace(cmr_url=served.url, http_backoff_s=0.01)
        got = CmrClient(requests.Session(), s).search("C1-TEST", BBox(174.0, -5.0, -175.0, 5.0), t, t + timedelta(hours=1))
        assert sorted(g.concept_id for g in got) == ["G1-TEST", "G2-TEST", "G3-TEST"]
    finally:
        served.close()


def test_zero_results_is_an_empty_list(settings):
    assert client(settings).search("C9999999999-NOBODY", SEED_BBOX, DAY0, DAY1) == []


# --- faults ----------------------------------------------------------------------------------


def test_retry_after_429_honours_retry_after(settings, cmr):
    cmr.faults.add("/search/granules", app="cmr", status=429, headers={"Retry-After": "1"},
                   body='{"errors": ["Too many requests"]}', times=1)
    t0 = time.monotonic()
    got = client(settings).search(L2P, SEED_BBOX, DAY0, DAY1)
    assert len(got) == 14
    assert time.monotonic() - t0 >= 0.9  # waited as told, not the 10 ms backoff
    assert len(cmr.faults.fired) == 1


def test_retry_after_503_burst_and_500(settings, cmr):
    cmr.faults.add("/search/granules", status=503, times=2)
    cmr.faults.add("/search/granules", status=500, times=1)
    got = client(settings, cmr_page_size=5).search(L2P, SEED_BBOX, DAY0, DAY1)
    assert len(got) == 14
    assert len(cmr.faults.fired) == 3


def test_persistent_503_raises_upstream_error(settings, cmr):
    cmr.faults.add("/search/granules", status=503, body='{"errors": ["service unavailable"]}',
                   content_type="application/json")
    with pytest.raises(UpstreamError) as err:
        client(settings).search(L2P, SEED_BBOX, DAY0, DAY1)
    assert err.value.service == "cmr" and "503" in str(err.value) and "service unavailable" in str(err.value)
    assert len(cmr.faults.fired) == settings.http_retries + 1


def test_malformed_page_raises_clear_error(settings, cmr):
    # the first page is fine, the second is cut short
    state = {"n": 0}
    c = client(settings, cmr_page_size=4)

    def inject(r, *a, **k):
        state["n"] += 1
        if state["n"] == 1:
            cmr.faults.add("/search/granules.umm_json", body='{"hits": 14, "items": [{"meta": ',
                           content_type="application/json", times=1)

    c.session.hooks["response"].append(inject)
    with pytest.raises(UpstreamError) as err:
        c.search(L2P, SEED_BBOX, DAY0, DAY1)
    assert "page 2" in str(err.value) and "not JSON" in str(err.value)
    cmr.faults.add("/search/granules.umm_json", body='{"hits": 1, "items": [{"umm": {}}]}',
                   content_type="application/json", times=1)
    with pytest.raises(UpstreamError, match="malformed granule in page 1"):
        client(settings).search(L2P, SEED_BBOX, DAY0, DAY1)
    cmr.faults.add("/search/granules.umm_json", body='{"feed": {}}', content_type="application/json", times=1)
    with pytest.raises(UpstreamError, match="no 'items' list"):
        client(settings).search(L2P, SEED_BBOX, DAY0, DAY1)


def test_client_id_header_and_page_size_limit(settings, cmr):
    sent = []
    c = client(settings, cmr_page_size=5000)
    c.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
    c.search(L2P, SEED_BBOX, DAY0, DAY1)
    assert sent[0].headers["Client-Id"] == settings.client_id
    assert "page_size=2000" in sent[0].url
    r = requests.get(f"{cmr.url}/search/granules.umm_json", params={"concept_id": L2P, "page_size": 2001})
    assert r.status_code == 400 and "page_size" in r.json()["errors"][0]
    assert r.headers["CMR-Request-Id"]


def test_json_feed_matches_umm(cmr, settings):
    params = {"concept_id": L2P, "bounding_box": str(SEED_BBOX), "temporal": "2019-06-22T00:00:00Z,2019-06-22T23:59:59Z",
              "page_size": 200}
    feed = requests.get(f"{cmr.url}/search/granules.json", params=params, headers={"Accept": "application/json"})
    assert feed.headers["CMR-Hits"] == "14"
    entries = feed.json()["feed"]["entry"]
    # the tutorial read links[0] as the s3:// link and granules[9] as the 10:00:01 granule
    assert entries[9]["links"][0]["href"].startswith("s3://podaac-ops-cumulus-protected/")
    assert entries[9]["title"] == "20190622100001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0"
    umm = requests.get(f"{cmr.url}/search/granules.umm_json", params=params).json()["items"]
    for e, u in zip(entries, umm):
        a, b = granule_from_feed_entry(e, settings), granule_from_umm(u, settings)
        assert (a.concept_id, a.https_url, a.s3credentials_url) == (b.concept_id, b.https_url, b.s3credentials_url)
        # the feed's granule_size is the first listed file's: the tutorial's "9.3e-5 MB" granules
        assert a.size_bytes == (98 if u["umm"]["DataGranule"]["ArchiveAndDistributionInformation"][0]["Name"]
                                .endswith(".md5") else b.size_bytes)


# --- collection parsing ----------------------------------------------------------------------


def test_parse_collection():
    assert parse_collection("ATL07.007").params() == {"short_name": "ATL07", "version": "007"}
    assert parse_collection("ATL07/007").params() == {"short_name": "ATL07", "version": "007"}
    assert parse_collection("MODIS_A-JPL-L2P-v2019.0").params() == {"short_name": "MODIS_A-JPL-L2P-v2019.0"}
    assert parse_collection("C1940473819-POCLOUD").params() == {"collection_concept_id": "C1940473819-POCLOUD"}
    assert parse_collection("C2003771980-NSIDC_ECS").concept_id == "C3564876395-NSIDC_CPRD"
    with pytest.raises(InputError):
        parse_collection("  ")


# --- recorded real responses -----------------------------------------------------------------


def test_recorded_umm_links(realdata):
    s = Settings()
    items = json.loads((realdata / "cmr" / "sample_granules_1.json").read_text())["items"]
    g = granule_from_umm(items[0], s)
    assert g.https_url.endswith("/podaac-uat-cumulus-protected/MODIS_T-JPL-L2P-v2019.0/"
                                "20000227202006-JPL-L2P_GHRSST-SSTskin-MODIS_T-D-v02.0-fv01.0.nc")
    assert g.s3credentials_url == "https://archive.podaac.uat.earthdata.nasa.gov/s3credentials"
    # HTTPS-only cloud record: the S3 location is the path after the TEA host
    assert g.s3_url == ("s3://podaac-uat-cumulus-protected/MODIS_T-JPL-L2P-v2019.0/"
                        "20000227202006-JPL-L2P_GHRSST-SSTskin-MODIS_T-D-v02.0-fv01.0.nc")
    assert g.size_bytes == round(20.032519340515137 * 2**20)
    assert g.bbox and g.bbox[0].west == 134.98 and g.start.tzinfo is not None
    for name in ("atl03_umm.json", "atl06_umm.json", "atl08_umm.json"):
        for item in json.loads((realdata / "cmr" / name).read_text())["items"]:
            g = granule_from_umm(item, s)
            assert g.https_url.startswith("https://n5eil01u.ecs.nsidc.org/") and g.https_url.endswith(".h5")
            assert g.producer_granule_id == g.https_url.rsplit("/", 1)[1]
            assert g.s3_url is None and g.s3credentials_url is None  # NSIDC_ECS: not in settings
            assert g.size_bytes and g.size_bytes > 1024


def test_recorded_feed_links(realdata):
    s = Settings()
    for name in ("atl03.json", "atl06.json", "atl08.json"):
        for entry in json.loads((realdata / "cmr" / name).read_text())["feed"]["entry"]:
            g = granule_from_feed_entry(entry, s)
            assert g.https_url.endswith(entry["producer_granule_id"])
            assert "BRWS" not in g.https_url and g.polygon and g.start < g.end


def test_recorded_cassette_links_and_no_results(realdata):
    s = Settings()
    cassette = yaml.safe_load((realdata / "cmr" / "TestResults.test_data_links.yaml").read_text())
    bodies = [json.loads(i["response"]["body"]["string"]) for i in cassette["interactions"]
              if "granules.umm_json" in i["request"]["uri"]]
    items = [it for b in bodies for it in b["items"]]
    assert items
    g = granule_from_umm(items[0], s)
    assert g.https_url == ("https://archive.podaac.earthdata.nasa.gov/podaac-ops-cumulus-protected/"
                           "SEA_SURFACE_HEIGHT_ALT_GRIDS_L4_2SATS_5DAY_6THDEG_V_JPL2205/ssh_grids_v2205_2020010212.nc")
    assert g.s3_url == ("s3://podaac-ops-cumulus-protected/SEA_SURFACE_HEIGHT_ALT_GRIDS_L4_2SATS_5DAY_6THDEG_V_JPL2205/"
                        "ssh_grids_v2205_2020010212.nc")
    assert g.s3credentials_url == "https://archive.podaac.earthdata.nasa.gov/s3credentials"
    assert g.size_bytes == 9695609  # SizeInBytes of the .nc, not of the .md5 sidecar
    links = select_umm_links(items[0]["umm"]["RelatedUrls"])
    assert "opendap" not in (links["https"] or "")
    none = yaml.safe_load((realdata / "cmr" / "TestResults.test_no_results.yaml").read_text())
    for i in none["interactions"]:
        if "granules.umm_json" in i["request"]["uri"]:
            assert json.loads(i["response"]["body"]["string"])["items"] == []


def test_retry_after_read_timeout(settings, cmr, caplog):
    caplog.set_level(logging.WARNING, logger="urllib3")
    cmr.faults.add("/search/granules", delay_s=1.5, times=1)
    got = client(settings, http_timeout_s=0.5).search(L2P, SEED_BBOX, DAY0, DAY1)
    assert len(got) == 14 and len(cmr.faults.fired) == 1  # the slow try timed out, the retry answered
    assert "Read timed out" in caplog.text


def test_s3credentials_falls_back_to_the_daac_endpoint(realdata):
    cassette = yaml.safe_load((realdata / "cmr" / "TestResults.test_data_links.yaml").read_text())
    item = next(it for i in cassette["interactions"] if "granules.umm_json" in i["request"]["uri"]
                for it in json.loads(i["response"]["body"]["string"])["items"])
    item["umm"]["RelatedUrls"] = [u for u in item["umm"]["RelatedUrls"] if u["Type"] != "VIEW RELATED INFORMATION"]
    s = Settings().replace(s3credentials_endpoints={"POCLOUD": "http://127.0.0.1:1/podaac/s3credentials"})
    assert granule_from_umm(item, s).s3credentials_url == "http://127.0.0.1:1/podaac/s3credentials"


# --- every recorded real record (tests/data/realdata/cmr/recorded/) --------------------------

RECORDED = Path(__file__).resolve().parents[1] / "data" / "realdata" / "cmr" / "recorded"


def _recorded_pages():
    """(source, kind, headers, body) of every recorded CMR granule page: cassettes and JSON files."""
    for path in sorted(RECORDED.glob("*.yaml")):
        for i in yaml.safe_load(path.read_text())["interactions"]:
            uri = i["request"]["uri"]
            if "/search/granules." not in uri:
                continue
            kind = "umm" if "granules.umm_json" in uri else "feed"
            body = i["response"]["body"]["string"]
            yield path.name, kind, i["response"]["headers"], json.loads(body) if body else {}
    for path in sorted(RECORDED.glob("*.json")):
        body = json.loads(path.read_text())
        if "meta" in body:  # one item
            yield path.name, "umm", {}, {"items": [body]}
        else:
            yield path.name, "umm" if "items" in body else "feed", {}, body


def test_every_recorded_record_parses_to_its_data_file():
    s = Settings()
    counts = {"umm": 0, "feed": 0}
    for source, kind, _, body in _recorded_pages():
        if kind == "umm":
            for item in body.get("items") or []:
                g = granule_from_umm(item, s)
                counts["umm"] += 1
                files = {f.get("Name"): f for f in item["umm"].get("DataGranule", {}).get(
                    "ArchiveAndDistributionInformation") or []}
                url = g.https_url or g.s3_url
                assert g.skip_reason is None and url, (source, g.concept_id)
                # never a sibling (.md5, .cmr.json, .dmrpp, .iso.xml, .rc.xml, .log, .met.json, browse)
                assert not url.lower().endswith((".md5", ".json", ".xml", ".dmrpp", ".log", ".jpg", ".png"))
                if g.producer_granule_id in files:  # the size is the data file's own entry
                    assert g.size_bytes == files[g.producer_granule_id].get("SizeInBytes",
                                                                         g.size_bytes), (source, g.concept_id)
                if g.s3_url and g.https_url and urlparse(g.https_url).path.count("/") > 2 and \
                        not any(u.get("Type") == "GET DATA VIA DIRECT ACCESS" for u in item["umm"]["RelatedUrls"]):
                    assert g.s3_url == s3_url_from_https(g.https_url)  # derived for HTTPS-only records
        else:
            for entry in body.get("feed", {}).get("entry") or []:
                g = granule_from_feed_entry(entry, s)
                counts["feed"] += 1
                assert g.https_url or g.s3_url, (source, g.concept_id)
    assert counts["umm"] > 240 and counts["feed"] > 160


def test_recorded_l2p_item_size_and_s3_location():
    item = json.loads((RECORDED / "modis_a_l2p_G1966151265-POCLOUD_umm.json").read_text())
    g = granule_from_umm(item, Settings())
    name = "20020704002506-JPL-L2P_GHRSST-SSTskin-MODIS_A-N-v02.0-fv01.0.nc"
    assert g.producer_granule_id == name and g.size_bytes == 27777098  # not the .md5's 98 bytes
    assert g.https_url == f"https://archive.podaac.earthdata.nasa.gov/podaac-ops-cumulus-protected/MODIS_A-JPL-L2P-v2019.0/{name}"
    assert g.s3_url == f"s3://podaac-ops-cumulus-protected/MODIS_A-JPL-L2P-v2019.0/{name}"  # no direct link in it
    # the same record with its files listed the other way round
    item["umm"]["DataGranule"]["ArchiveAndDistributionInformation"].reverse()
    item["umm"]["RelatedUrls"].reverse()
    again = granule_from_umm(item, Settings())
    assert (again.size_bytes, again.https_url, again.s3_url) == (g.size_bytes, g.https_url, g.s3_url)


def test_recorded_swot_records_pick_the_zip_among_many_siblings():
    cassette = yaml.safe_load((RECORDED / "TestGranuleClass.test_revision_date.yaml").read_text())
    items = [it for i in cassette["interactions"] if i["response"]["body"]["string"]
             for it in json.loads(i["response"]["body"]["string"]).get("items") or []]
    assert len(items) == 62
    for item in items:
        g = granule_from_umm(item, Settings())
        assert g.https_url.endswith(".zip") and g.s3_url.startswith("s3://") and g.s3_url.endswith(".zip")
        assert g.producer_granule_id.endswith(".zip") and g.size_bytes > 1000


def test_recorded_paging_headers_match_the_emulator():
    """Real CMR sends CMR-Search-After on every non-empty page (even one holding all hits) and
    omits it on an empty page; the emulator does the same (test above)."""
    seen = set()
    for source, _, headers, body in _recorded_pages():
        if not headers:
            continue
        n = len(body.get("items") or body.get("feed", {}).get("entry") or [])
        has = bool(headers.get("CMR-Search-After"))
        assert has == (n > 0), (source, n)
        seen.add((n > 0, int(headers["CMR-Hits"][0]) == n))
    assert (True, True) in seen and (False, False) in seen  # a full page with it, an empty one without
