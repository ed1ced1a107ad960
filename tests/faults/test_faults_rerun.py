"""Re-runs and races: a finished date is served from the bucket without touching any upstream
service, and concurrent runs of one date (even when one of them fails) leave one complete result."""
from __future__ import annotations

import threading

import pytest

from core.errors import NotFoundError
from tests import faults_fixtures as ff
from tests.pipeline_fixtures import run_date


@pytest.fixture
def sb(fault_sb):
    return fault_sb


def test_rerun_of_a_finished_date_contacts_no_upstream_service(sb):
    t = ff.task(sb)
    first = run_date(t, ff.services(sb))
    before = ff.request_keys(sb, t)
    ff.reset(sb)
    # every upstream is down now: only the stored result can answer
    for app in ("cmr", "edl", "nsidc", "podaac", "s3", "s3api"):
        sb.faults.add("/", app=app, status=503)
    again = run_date(t, ff.services(sb))
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
            results.append(run_date(t, ff.services(sb)))
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



KILLABLE_RUN = """
import json, sys
from core.config import Settings
from core.jobs.date_plan import plan
from core.pipeline.task import build_services, run_task
from core.request import parse_request
from handlers.runtime import output_store
settings = Settings.from_env()
task = plan(parse_request(json.loads(sys.argv[1]), settings))[0]
run_task(task, build_services(settings, output=output_store()))
"""


def test_lambda_killed_before_publishing_then_retried(sb):
    """A real process runs the task and is SIGKILLed (a Lambda timeout) while its manifest PUT is
    in flight: its products are uploaded but never published. The retry must publish one complete
    result and remove the dead run's objects. (A dead run's workdir: tests/faults/test_faults_download.py.)"""
    import json
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    t = ff.task(sb)
    body = {**t.request.canonical(), "radius_m": t.request.radius_m}
    date_prefix = f"/{sb.settings.output_bucket}/{sb.settings.output_prefix}/{t.request_id}/{t.date}/"
    # the manifest PUT hangs (then fails), so the kill lands after the uploads, before publishing
    sb.faults.add(date_prefix + "manifest.json", app="s3api", method="PUT", delay_s=15, status=503, times=1)
    src = Path(__file__).resolve().parents[2] / "src"
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE_RUN, json.dumps(body)],
                            env={**os.environ, **sb.env(), "PYTHONPATH": str(src)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any(r.method == "PUT" and r.path.endswith("/manifest.json")
                      for r in sb.state.requests_to("s3api") if r.path.startswith(date_prefix)):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run never reached its manifest"
            time.sleep(0.05)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    dead_outputs = ff.request_keys(sb, t)
    assert dead_outputs and all(k.endswith((".nc", ".png")) for k in dead_outputs), dead_outputs

    manifest = run_date(t, ff.services(sb))
    ff.assert_one_complete_result(sb, t, manifest)
    assert not set(dead_outputs) & set(manifest["outputs"])
