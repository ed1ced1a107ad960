"""A CMR that answers as a broken or hostile server would (issue 24): names that try to leave the
work folder, paging without end, a granule listed twice. Each test drives the production
``run_task`` against the sandbox, then reads the output bucket and the files around the work
folder independently of what the code reports."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.errors import CmrPagingError
from sandbox.cmr_app import umm_item
from tests import faults_fixtures as ff
from tests.pipeline_fixtures import run_date

SEARCH = "/search/granules.umm_json"


@pytest.fixture
def sb(fault_sb):
    return fault_sb


def _atl07(sb) -> list:
    return sorted((g for g in sb.scene.granules if g.short_name == "ATL07"), key=lambda g: g.start)


def _item(sb, g, producer_granule_id: str | None = None) -> dict:
    item = umm_item(g, sb.links(g))
    if producer_granule_id is not None:
        item["umm"]["DataGranule"]["Identifiers"] = [
            {"Identifier": producer_granule_id, "IdentifierType": "ProducerGranuleId"}]
    return item


def _page(sb, items: list[dict], hits: int, token: str | None = None, times: int = 1) -> None:
    """The next ATL07 search page CMR answers (the L2P searches reach the emulator)."""
    headers = {"CMR-Hits": str(hits)}
    if token:
        headers["CMR-Search-After"] = token
    sb.faults.add(SEARCH, app="cmr", body=json.dumps({"hits": hits, "took": 1, "items": items}),
                  content_type="application/json", headers=headers, times=times)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and mtime (what a stray write would change)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out[str(path)] = (st.st_size, st.st_mtime_ns)
    return out


def _download_dir_empty(sb) -> None:
    left = [p for p in Path(sb.settings.download_dir).rglob("*") if p.is_file()]
    assert left == [], f"files left in the work folder: {left}"


def test_a_producer_granule_id_that_climbs_out_of_the_work_folder_stays_inside(sb, tmp_path):
    """ProducerGranuleId = an absolute path with '..' to a file outside the work folder: the
    download lands inside the work folder under the name's basename; the victim is untouched."""
    victim = tmp_path / "victim.h5"
    victim.write_bytes(b"precious, not a granule")
    before = victim.stat()
    hostile = "/../../.." + str(victim)  # absolute, with '..': joined as is, it names the victim
    g0 = _atl07(sb)[0]
    _page(sb, [_item(sb, g0, hostile)], hits=1)
    around = Path(sb.settings.download_dir).parent
    snapshot = {k: v for k, v in _tree(around).items() if not k.startswith(sb.settings.download_dir)}
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb))
    # the victim still holds its bytes, and nothing beside the work folder changed
    assert victim.read_bytes() == b"precious, not a granule" and victim.stat().st_mtime_ns == before.st_mtime_ns
    assert {k: v for k, v in _tree(around).items() if not k.startswith(sb.settings.download_dir)} == snapshot
    _download_dir_empty(sb)
    # read from the bucket: one complete result, its product named after the basename only
    ff.assert_one_complete_result(sb, t, manifest)
    assert manifest["counts"]["matched"] > 0
    run_prefix = f"{sb.settings.output_prefix}/{t.request_id}/{t.date.isoformat()}/{manifest['run_id']}/"
    assert sorted(k for k in ff.request_keys(sb, t) if not k.endswith("manifest.json")) == [
        run_prefix + "victim_sst.nc", run_prefix + "victim_sst.png", run_prefix + "victim_sst_pixels.nc"]


# (every kind of unsafe name: tests/unit/test_safe_basename.py; two through the whole date here)
@pytest.mark.parametrize("name, why", [
    ("..", "directory reference"),
    ("a" * 300 + ".h5", "longer than 200 bytes"),
])
def test_a_name_that_cannot_be_made_safe_skips_the_granule_with_its_reason(sb, name, why):
    g0, g1 = _atl07(sb)
    _page(sb, [_item(sb, g0), _item(sb, g1, name)], hits=2)
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb))
    assert manifest["status"] == "complete" and manifest["counts"]["matched"] > 0
    skipped = manifest["inputs"]["skipped"]
    assert [s["granule"] for s in skipped] == [g1.title] and why in skipped[0]["reason"], skipped
    assert skipped[0]["reason"].startswith("unsafe file name in the CMR record")
    assert manifest["counts"]["atl07_granules_found"] == 2 and manifest["counts"]["atl07_granules"] == 1
    ff.assert_one_complete_result(sb, t, manifest)
    _download_dir_empty(sb)


def test_a_granule_listed_on_two_pages_is_processed_once(sb):
    g0, g1 = _atl07(sb)
    _page(sb, [_item(sb, g0)], hits=2, token='["nsidc_cprd", 1, "A"]')  # a short first page
    _page(sb, [_item(sb, g0), _item(sb, g1)], hits=2)  # g0 again (revised between pages)
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb))
    assert manifest["inputs"]["atl07"] == [g0.title, g1.title]
    assert [p["atl07_granule"] for p in manifest["products"]] == [g0.title, g1.title]
    downloads = [r for r in sb.state.requests_to("nsidc") if g0.file_name in r.path]
    assert len(downloads) == 1, "the granule listed twice was fetched twice"
    ff.assert_one_complete_result(sb, t, manifest)
    _download_dir_empty(sb)


def _fails_as_paging(sb, match: str, **overrides) -> CmrPagingError:
    t = ff.task(sb)
    with pytest.raises(CmrPagingError) as info:
        run_date(t, ff.services(sb, **overrides))
    assert info.value.service == "cmr" and match in str(info.value), str(info.value)
    ff.assert_nothing_written(sb, t)
    _download_dir_empty(sb)
    return info.value


def test_a_cmr_claiming_100000_hits_is_refused_at_the_ceiling(sb):
    g0 = _atl07(sb)[0]
    _page(sb, [_item(sb, g0)], hits=100_000, token='["x", 1, "fresh"]', times=None)
    _fails_as_paging(sb, "more than the 5000 granules")
    assert len([r for r in sb.state.requests if r.app == "cmr" and r.path == SEARCH]) == 1


def test_fresh_tokens_on_every_page_stop_at_the_pages_the_hits_need(sb):
    """A fresh CMR-Search-After on every page, each page a granule not seen yet (by concept id):
    no more pages than CMR-Hits needs (+1), then a named error."""
    g0 = _atl07(sb)[0]
    for i in range(20):  # one granule a page where two fit: 5 hits never add up
        item = _item(sb, g0, f"ATL07-01_2019062205{i:04d}_12980301_007_01.h5")
        item["meta"]["concept-id"] = f"G{9000 + i}-NSIDC_CPRD"
        _page(sb, [item], hits=5, token=f'["x", {i}, "fresh-{i}"]')
    _fails_as_paging(sb, "4 pages for 5 hits of 2 per page", cmr_page_size=2)
    assert len([r for r in sb.state.requests if r.app == "cmr" and r.path == SEARCH]) == 4


def test_the_same_data_file_under_two_concept_ids_is_read_once(sb):
    g0 = _atl07(sb)[0]
    twin = _item(sb, g0)
    twin["meta"]["concept-id"] = "G9999-NSIDC_CPRD"
    _page(sb, [_item(sb, g0), twin], hits=2)
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb))
    assert manifest["inputs"]["atl07"] == [g0.title]
    ff.assert_one_complete_result(sb, t, manifest)
    _download_dir_empty(sb)


def test_an_alternating_token_is_a_named_error(sb):
    g0, g1 = _atl07(sb)
    _page(sb, [_item(sb, g0)], hits=4, token="A")
    _page(sb, [_item(sb, g1)], hits=4, token="B")
    item = _item(sb, g1, "ATL07-01_20190622999999_13070301_007_01.h5")
    item["meta"]["concept-id"] = "G9999-NSIDC_CPRD"
    _page(sb, [item], hits=4, token="A")  # A again: a loop, though not identical consecutive tokens
    _fails_as_paging(sb, "repeated a token", cmr_page_size=1)


def test_the_same_page_served_again_is_a_named_error(sb):
    g0 = _atl07(sb)[0]
    _page(sb, [_item(sb, g0)], hits=4, token="A")
    _page(sb, [_item(sb, g0)], hits=4, token="B")
    _fails_as_paging(sb, "same page", cmr_page_size=1)
