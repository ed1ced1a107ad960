"""Re-runs and races: a finished date is served from the bucket without touching any upstream
service, and concurrent runs of one date (even when one of them fails) leave one complete result."""
from __future__ import annotations

import threading

import pytest

from core.errors import NotFoundError
from core.pipeline import run_task
from tests import faults_fixtures as ff


@pytest.fixture(scope="module")
def sb(sandbox_scene, tmp_path_factory):
    return ff.fault_sandbox(sandbox_scene, tmp_path_factory)


@pytest.fixture(autouse=True)
def _reset(sb):
    ff.reset(sb)
    yield
    ff.reset(sb)


def test_rerun_of_a_finished_date_contacts_no_upstream_service(sb):
    t = ff.task(sb)
    first = run_task(t, ff.services(sb))
    before = ff.request_keys(sb, t)
    ff.reset(sb)
    # every upstream is down now: only the stored result can answer
    for app in ("cmr", "edl", "nsidc", "podaac", "s3", "s3api"):
        sb.faults.add("/", app=app, status=503)
    again = run_task(t, ff.services(sb))
    assert again["cached"] is True and again["run_id"] == first["run_id"]
    assert again["outputs"] == first["outputs"] and again["counts"] == first["counts"]
    assert sb.state.requests == [], "a finished date was recomputed"
    assert ff.request_keys(sb, t) == before


def test_concurrent_runs_where_one_fails_leave_one_complete_result(sb):
    t = ff.task(sb)
    # the first ATL07 download of the two runs gets a 404 (not retried); the other run carries on
    sb.faults.add("/nsidc-cumulus-prod-protected/", app="nsidc", status=404, body="Not Found", times=1)
    results, errors = [], []

    def work():
        try:
            results.append(run_task(t, ff.services(sb)))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert len(results) == 1 and len(errors) == 1, (results, errors)
    assert isinstance(errors[0], NotFoundError)
    ff.assert_one_complete_result(sb, t, results[0])

