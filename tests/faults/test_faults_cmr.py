"""CMR faults through the production pipeline: each ends in a retried success or UpstreamError("cmr"),
and a failed date leaves nothing in the output bucket."""
from __future__ import annotations

import time

import pytest

from core.errors import UpstreamError
from tests import faults_fixtures as ff
from tests.pipeline_fixtures import run_date

SEARCH = "/search/granules.umm_json"


@pytest.fixture
def sb(fault_sb):
    return fault_sb


def _fails_cleanly(sb, t, services, match: str) -> UpstreamError:
    with pytest.raises(UpstreamError) as info:
        run_date(t, services)
    assert info.value.service == "cmr" and match in str(info.value), str(info.value)
    ff.assert_nothing_written(sb, t)
    return info.value


def test_429_with_retry_after_is_waited_out_and_the_date_completes(sb):
    sb.faults.add(SEARCH, app="cmr", status=429, headers={"Retry-After": "1"},
                  body='{"errors": ["Too many requests"]}', content_type="application/json", times=1)
    t = ff.task(sb)
    t0 = time.monotonic()
    manifest = run_date(t, ff.services(sb))
    assert time.monotonic() - t0 >= 0.9  # honoured Retry-After, not the 50 ms backoff
    assert len(sb.faults.fired) == 1
    ff.assert_one_complete_result(sb, t, manifest)


def test_500_and_503_bursts_are_retried(sb):
    sb.faults.add(SEARCH, app="cmr", status=503, times=2)
    sb.faults.add(SEARCH, app="cmr", status=500, times=2)
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb, cmr_page_size=1))  # paged: bursts land on several pages
    assert len(sb.faults.fired) == 4
    assert manifest["counts"]["atl07_granules"] == 1 and manifest["counts"]["sst_granules"] >= 1
    ff.assert_one_complete_result(sb, t, manifest)


def test_persistent_503_is_a_named_upstream_error(sb):
    sb.faults.add(SEARCH, app="cmr", status=503, body='{"errors": ["service unavailable"]}',
                  content_type="application/json")
    err = _fails_cleanly(sb, ff.task(sb), ff.services(sb), "503")
    assert "service unavailable" in str(err)
    assert len(sb.faults.fired) == sb.settings.http_retries + 1


def test_slow_cmr_is_retried_after_a_read_timeout(sb):
    sb.faults.add(SEARCH, app="cmr", delay_s=1.2, times=1)
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb, http_timeout_s=0.4))
    ff.assert_one_complete_result(sb, t, manifest)


def test_cmr_that_never_answers_in_time_fails_cleanly(sb):
    sb.faults.add(SEARCH, app="cmr", delay_s=0.6)
    _fails_cleanly(sb, ff.task(sb), ff.services(sb, http_timeout_s=0.2, http_retries=2),
                  "failed after retries: ReadTimeoutError")


def test_malformed_page_in_the_middle_of_paging(sb):
    services = ff.services(sb, cmr_page_size=1)
    pages = []

    def cut_the_next_page(resp, *args, **kwargs):
        if SEARCH in resp.url:
            pages.append(resp.url)
            # ATL07: one page; L2P page 1 is good, L2P page 2 arrives cut short
            if len(pages) == 2:
                sb.faults.add(SEARCH, app="cmr", body='{"hits": 3, "items": [{"meta": ',
                              content_type="application/json", times=1)

    services.http.hooks["response"].append(cut_the_next_page)
    err = _fails_cleanly(sb, ff.task(sb), services, "page 2")
    assert "not JSON" in str(err)


@pytest.mark.parametrize("body, match", [
    ('{"hits": 1, "items": [{"umm": {}}]}', "malformed granule in page 1"),
    ('{"feed": {}}', "no 'items' list"),
    ("<html>CMR is down for maintenance</html>", "not JSON"),
])
def test_malformed_first_page(sb, body, match):
    sb.faults.add(SEARCH, app="cmr", body=body, content_type="application/json", times=1)
    _fails_cleanly(sb, ff.task(sb), ff.services(sb), match)


def test_zero_results_publish_an_empty_complete_date(sb):
    # the Southern Ocean on the seed day: CMR finds nothing; the date is done, with no products
    t = ff.task(sb, bbox=[10.0, -70.0, 20.0, -65.0])
    manifest = run_date(t, ff.services(sb))
    assert manifest["status"] == "complete" and manifest["counts"]["atl07_granules"] == 0
    assert manifest["outputs"] == [] and manifest["products"] == []
    assert ff.request_keys(sb, t) == [f"{sb.settings.output_prefix}/{t.request_id}/{t.date.isoformat()}/manifest.json"]
    # no data was fetched for an empty date
    assert {r.app for r in sb.state.requests} == {"cmr"}


def test_a_huge_retry_after_does_not_stall_the_task(sb):
    """A 429 asking for an hour must not put the Lambda to sleep past its timeout: waits are
    capped (settings.http_retry_after_max_s), then the service is named."""
    import threading

    sb.faults.add(SEARCH, app="cmr", status=429, headers={"Retry-After": "3600"})
    t = ff.task(sb)
    outcome = []

    def work():
        try:
            run_date(t, ff.services(sb, http_retry_after_max_s=0.2, http_retries=2))
        except Exception as exc:  # reported below
            outcome.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    t0 = time.monotonic()
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "run_task slept on Retry-After: 3600"
    assert time.monotonic() - t0 < 10
    assert isinstance(outcome[0], UpstreamError) and outcome[0].service == "cmr" and "429" in str(outcome[0])
    ff.assert_nothing_written(sb, t)


def test_a_record_without_a_data_link_is_skipped_with_its_reason(sb):
    """CMR lists a granule whose record has no data link (only siblings): the date completes, the
    manifest names the granule and why it was not read."""
    import json

    from sandbox.cmr_app import umm_item

    atl07 = [g for g in sb.scene.granules if g.short_name == "ATL07"]
    stripped = umm_item(atl07[1], sb.links(atl07[1]))
    stripped["umm"]["RelatedUrls"] = [u for u in stripped["umm"]["RelatedUrls"]
                                      if u["Type"] not in ("GET DATA", "GET DATA VIA DIRECT ACCESS")]
    page = {"hits": 2, "took": 1, "items": [umm_item(atl07[0], sb.links(atl07[0])), stripped]}
    sb.faults.add(SEARCH, app="cmr", body=json.dumps(page), content_type="application/json", times=1)
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb))
    assert manifest["status"] == "complete"
    assert manifest["counts"]["atl07_granules_found"] == 2 and manifest["counts"]["atl07_granules"] == 1
    assert manifest["inputs"]["skipped"] == [{"granule": atl07[1].title, "collection": t.request.atl07_collection,
                                              "reason": "no data link in the CMR record"}]
    assert manifest["counts"]["skipped"] == 1 and manifest["counts"]["matched"] > 0
    ff.assert_one_complete_result(sb, t, manifest)
