"""A work folder that fills up (issue 24): after the space check (another writer), while writing
products, in Summarize; each time one named, retryable InsufficientSpaceError with no internal
path, nothing in the output bucket, nothing left on the disk but the other writer's file, and a
multi-date direct call still answers for the dates that finished.

The disk is a real small tmpfs mounted for the test (root, as in the dev container; skipped
where mounting is not allowed): the kernel's own ENOSPC, nothing patched."""
from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from core.errors import InsufficientSpaceError
from tests import faults_fixtures as ff
from tests.pipeline_fixtures import run_date

FILE = "/nsidc-cumulus-prod-protected/"
ASL = Path(__file__).resolve().parents[2] / "statemachine" / "colocation.asl.json"


@pytest.fixture
def sb(fault_sb):
    return fault_sb


@pytest.fixture
def small_disk(tmp_path):
    """``mount(size_bytes) -> Path``: a tmpfs of that size; unmounted afterwards."""
    mounts: list[Path] = []

    def mount(size: int) -> Path:
        where = tmp_path / f"disk{len(mounts)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, check=False)
        if done.returncode:
            pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(where)
        return where

    yield mount
    for where in mounts:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _atl07(sb):
    return next(g for g in sb.scene.granules if g.short_name == "ATL07" and "_20190622055317_" in g.file_name)


def _only(disk: Path, *expected: str) -> None:
    left = sorted(str(p.relative_to(disk)) for p in disk.rglob("*") if p.is_file())
    assert left == sorted(expected), f"left on the disk: {left}"


def _no_path(err: BaseException, *paths: Path) -> None:
    text = str(err)
    assert "/tmp" not in text and all(str(p) not in text for p in paths), text
    assert "Errno" not in text, text


def test_space_taken_by_another_writer_after_the_check_is_a_named_error(sb, small_disk):
    size = _atl07(sb).path.stat().st_size
    disk = small_disk(size + (24 << 20))  # passes the check (size + 16 MiB margin)
    sb.faults.add(FILE, app="s3", delay_s=1.5, times=1)  # the first byte is late ...

    def other_writer():  # ... and meanwhile another process fills the disk
        deadline = time.monotonic() + 60
        while not any(r.path.startswith(FILE) for r in sb.state.requests_to("s3")):
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        with open(disk / "other-writer.bin", "wb") as out:
            out.write(b"\0" * (size - (4 << 20)))

    writer = threading.Thread(target=other_writer, daemon=True)
    writer.start()
    t = ff.task(sb)
    with pytest.raises(InsufficientSpaceError) as info:
        run_date(t, ff.services(sb, download_dir=str(disk), download_parallel=1))
    writer.join(10)
    assert "ran out of space" in str(info.value)
    _no_path(info.value, disk)
    ff.assert_nothing_written(sb, t)
    _only(disk, "other-writer.bin")  # the partial download and the run's folder are gone


def test_a_disk_full_while_writing_products_is_the_same_named_error(sb, small_disk):
    disk = small_disk(96 << 10)  # ATL07 read in place: only the products need the disk
    t = ff.task(sb)
    with pytest.raises(InsufficientSpaceError) as info:
        run_date(t, ff.services(sb, download_dir=str(disk), atl07_access="direct"))
    _no_path(info.value, disk)
    ff.assert_nothing_written(sb, t)
    _only(disk)


def test_the_state_machine_retries_it_like_an_upstream_error():
    definition = json.loads(ASL.read_text())
    maps = [s for s in definition["States"].values() if s["Type"] == "Map"]
    for state in [m["ItemProcessor"]["States"]["RunDate"] for m in maps] + [definition["States"]["Summarize"]]:
        retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        assert "InsufficientSpaceError" in retried


def test_a_multi_date_direct_call_answers_for_the_dates_that_finished(sb, small_disk, handler_environment):
    from handlers import colocate
    from sandbox.lambda_context import LambdaContext

    disk = small_disk(96 << 10)
    handler_environment({**sb.env(), "COLOC_DOWNLOAD_DIR": str(disk), "COLOC_ATL07_ACCESS": "direct",
                         "HOME": str(sb.workdir)})
    event = {"bbox": ff.SEED_BBOX, "start": "2019-06-21T00:00:00Z", "end": "2019-06-23T23:59:59Z",
             "max_dt_s": 3000.0, "radius_m": ff.unique_radius()}
    answer = colocate.handler(event, LambdaContext("ColocateFunction"))
    by_date = {d["date"]: d for d in answer["dates"]}
    assert sorted(by_date) == ["2019-06-21", "2019-06-22", "2019-06-23"]
    assert by_date["2019-06-22"]["status"] == "failed" and by_date["2019-06-22"]["type"] == "InsufficientSpaceError"
    _no_path(by_date["2019-06-22"]["error"], disk)
    assert by_date["2019-06-21"]["status"] == by_date["2019-06-23"]["status"] == "complete"
    # read from the bucket: the two finished dates' manifests, nothing of the failed one
    prefix = f"{sb.settings.output_prefix}/{answer['request_id']}/"
    assert ff.keys(sb, prefix) == [f"{prefix}2019-06-21/manifest.json", f"{prefix}2019-06-23/manifest.json"]
    _only(disk)


def test_summarize_out_of_space_is_raised_by_name_for_the_retry(sb, small_disk):
    """Summarize downloads each product to build the request-level results: a full disk there is
    the same named error (the state machine retries Summarize), not a recorded OSError with a path."""
    from core.jobs.run_summary import summarize

    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb))  # a complete date with products
    disk = small_disk(64 << 10)
    store = ff.services(sb).output
    before = ff.request_keys(sb, t)
    result = {**manifest, "manifest_key": store.manifest_key(t.request_id, t.date.isoformat())}
    with pytest.raises(InsufficientSpaceError) as info:
        summarize(t.request_id, t.request.canonical(), [result], store=store, download_dir=str(disk))
    _no_path(info.value, disk)
    assert ff.request_keys(sb, t) == before  # no run manifest, no partial Parquet or netCDF
    _only(disk)
