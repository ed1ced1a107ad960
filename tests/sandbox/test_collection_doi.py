"""Citations for any collection (issue 25): a collection without a profile is cited by the DOI of
its UMM-C record (CMR's collection search, one cached ask that also gives the temporal extent),
else by the L2P file's own global attributes — against the sandbox's CMR emulator."""
from __future__ import annotations

import pytest

from core.access import catalog
from core.model import SstSource
from core.pipeline.task import _cmr_dois
from core.products.granule_netcdf import build_dataset
from sandbox import cmr_app
from tests.product_fixtures import PARAMS, seed_scene

# collections no profile knows, added to the emulator for these tests only (made-up ids)
CITED = "C0000000025-TESTPROV"
UNCITED = "C0000000026-TESTPROV"
FILE_ATTRS = {"id": "TEST_SST-L2P-v1.0", "title": "A test L2P data set", "references": "a test reference"}


@pytest.fixture()
def unprofiled(mini_sandbox, monkeypatch):
    for cid, doi in ((CITED, "10.5067/TEST-SST25"), (UNCITED, None)):
        monkeypatch.setitem(cmr_app.COLLECTIONS, cid, dict(
            short_name=f"TEST_SST_{cid[1:11]}", version_id="1.0", data_center="TESTPROV",
            dataset_id="A test L2P data set", **({"doi": doi} if doi else {})))
    monkeypatch.setattr(catalog, "_records", {})  # the per-process cache: ask this CMR afresh
    return mini_sandbox.settings


def _product(collection: str, params: dict):
    tracks, swaths = seed_scene()
    infos = [SstSource(s.granule, collection, dict(FILE_ATTRS)) for s in swaths]
    return build_dataset(tracks, infos, params, request_id="req-25")


def test_an_unprofiled_collection_is_cited_by_the_doi_cmr_gives(unprofiled):
    record = catalog.collection_record(CITED, unprofiled)
    assert record is not None and record.doi == "10.5067/TEST-SST25" and record.extent is None
    params = {**PARAMS, "sst_collection": CITED, "sst_collections": [CITED],
              **_cmr_dois([CITED, "MODIS_A-JPL-L2P-v2019.0"], unprofiled)}
    assert params["sst_dois"] == {CITED: "10.5067/TEST-SST25"}  # a profiled collection is not asked
    ds = _product(CITED, params)
    assert f"{CITED} https://doi.org/10.5067/TEST-SST25" in ds.attrs["references"]
    assert list(ds["sst_collection_citation"].values) == [f"{CITED} https://doi.org/10.5067/TEST-SST25"]


def test_without_a_doi_in_cmr_the_files_own_attributes_cite_it(unprofiled):
    record = catalog.collection_record(UNCITED, unprofiled)
    assert record is not None and record.doi is None  # UMM-C DOI: MissingReason
    params = {**PARAMS, "sst_collection": UNCITED, "sst_collections": [UNCITED], **_cmr_dois([UNCITED], unprofiled)}
    assert "sst_dois" not in params
    ds = _product(UNCITED, params)
    citation = str(ds["sst_collection_citation"].values[0])
    assert citation.startswith(f"{UNCITED}: A test L2P data set") and "a test reference" in citation
    assert "none" not in ds.attrs["references"] and citation in ds.attrs["references"]


def test_cmr_down_costs_only_the_doi(unprofiled):
    down = unprofiled.model_copy(update={"cmr_url": "http://127.0.0.1:9", "http_retries": 0})
    assert catalog.collection_record(CITED, down) is None and _cmr_dois([CITED], down) == {}


def test_the_emulator_gives_the_real_dois_and_one_ask_serves_extent_and_doi(unprofiled, mini_sandbox):
    def asks() -> int:
        return sum(r.path == "/search/collections.umm_json" for r in mini_sandbox.state.requests_to("cmr"))

    before = asks()
    assert catalog.collection_doi("MODIS_A-JPL-L2P-v2019.0/2019.0", unprofiled) == "10.5067/GHMDA-2PJ19"
    assert catalog.collection_doi("ATL07/007", unprofiled) == "10.5067/ATLAS/ATL07.007"
    extent = catalog.collection_extent("ATL07/007", unprofiled)
    assert extent is not None and extent.start is not None and extent.start.year == 2018
    assert asks() - before == 2
