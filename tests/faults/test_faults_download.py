"""ATL07 download faults through the production pipeline: resumed, or a named failure before or
after the bytes, never a half-written result; a killed run's leftovers are neither reused nor kept."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

from core.errors import InsufficientSpaceError, UpstreamError
from core.pipeline.workdir import WORKDIR_LOCK
from tests import faults_fixtures as ff
from tests.pipeline_fixtures import run_date

SRC = Path(__file__).resolve().parents[2] / "src"
FILE = "/nsidc-cumulus-prod-protected/"  # served by the presigned-S3 app after TEA's 303


@pytest.fixture
def sb(fault_sb):
    return fault_sb


def _atl07(sb):
    return next(g for g in sb.scene.granules if g.short_name == "ATL07" and "_20190622055317_" in g.file_name)


def _file_gets(sb):
    return [r for r in sb.state.requests_to("s3") if r.path.startswith(FILE)]


def _no_partials(download_dir) -> None:
    left = [p for p in Path(download_dir).rglob("*") if p.is_file()]
    assert left == [], f"download directory not cleaned up: {left}"


def test_connection_dropped_mid_file_is_resumed_with_range(sb):
    sb.faults.add(FILE, app="s3", drop_after=3 << 20, times=1)
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb, download_parallel=1))  # one streamed GET
    ff.assert_one_complete_result(sb, t, manifest)
    assert manifest["bytes"]["atl07_downloaded"] == _atl07(sb).path.stat().st_size
    gets = _file_gets(sb)
    # a reset connection may lose what the kernel had buffered: the resume asks from what was kept
    assert len(gets) == 2 and gets[1].headers.get("Range", "").startswith("bytes=")
    _no_partials(sb.settings.download_dir)


def test_body_shorter_than_content_length_is_resumed(sb):
    sb.faults.add(FILE, app="s3", truncate_to=1 << 20, times=2)
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb, download_parallel=1))  # one streamed GET
    ff.assert_one_complete_result(sb, t, manifest)
    assert manifest["bytes"]["atl07_downloaded"] == _atl07(sb).path.stat().st_size
    gets = _file_gets(sb)
    assert len(gets) == 3 and "Range" not in gets[0].headers
    offsets = [int(g.headers["Range"][len("bytes="):].rstrip("-")) for g in gets[1:]]
    assert offsets == [1 << 20, 2 << 20]  # resumed from the bytes kept, not from zero


def test_ranges_dropped_mid_file_are_resumed_within_their_range(sb):
    """The default: parallel ranged GETs from the URL TEA resolved to once; a range whose
    connection drops asks for the rest of itself, from what it kept."""
    g = _atl07(sb)
    size, part = g.path.stat().st_size, sb.settings.download_part_bytes
    assert size > 2 * part, "the scene's ATL07 should span several parts"
    sb.faults.add(FILE, app="s3", drop_after=3 << 20, times=1)  # the first range, through the redirect
    t = ff.task(sb)
    manifest = run_date(t, ff.services(sb))
    ff.assert_one_complete_result(sb, t, manifest)
    assert manifest["bytes"]["atl07_downloaded"] == size
    assert len([r for r in sb.state.requests_to("nsidc") if r.path.startswith(FILE)]) == 1
    ranges = [g.headers["Range"] for g in _file_gets(sb)]
    parts = [f"bytes={start}-{min(start + part, size) - 1}" for start in range(0, size, part)]
    assert ranges[0] == parts[0] and len(ranges) == len(parts) + 1
    resumed = list(ranges)
    for each in parts:
        resumed.remove(each)
    # a reset may lose what the kernel had buffered: the resume asks from the whole chunks kept
    first, last = (int(x) for x in resumed[0].removeprefix("bytes=").split("-"))
    assert first <= 3 << 20 and first % (1 << 20) == 0 and last == part - 1
    _no_partials(sb.settings.download_dir)


@pytest.mark.parametrize("parallel", [1, 8])
def test_a_server_that_always_cuts_the_body_short_fails_by_name(sb, parallel):
    sb.faults.add(FILE, app="s3", truncate_to=256 << 10)
    t = ff.task(sb)
    with pytest.raises(UpstreamError, match="broke 6 times") as info:
        run_date(t, ff.services(sb, download_parallel=parallel))
    assert info.value.service.startswith("download ")
    ff.assert_nothing_written(sb, t)
    _no_partials(sb.settings.download_dir)


def test_corrupt_hdf5_is_an_upstream_error_naming_the_granule(sb):
    g = _atl07(sb)
    corrupt = bytearray(g.path.read_bytes())
    corrupt[:4096] = b"\0" * 4096  # superblock gone, size unchanged: passes every length check
    sb.faults.add(FILE, app="s3", body=bytes(corrupt), content_type="application/octet-stream")
    t = ff.task(sb)
    with pytest.raises(UpstreamError) as info:
        run_date(t, ff.services(sb))
    assert g.file_name.rsplit(".", 1)[0] in str(info.value) and "HDF5" in str(info.value)
    ff.assert_nothing_written(sb, t)
    _no_partials(sb.settings.download_dir)


def test_tmp_too_small_fails_before_downloading(sb):
    size = _atl07(sb).path.stat().st_size
    t = ff.task(sb)
    with pytest.raises(InsufficientSpaceError, match="not enough free space"):
        run_date(t, ff.services(sb, download_max_bytes=size // 2))
    ff.assert_nothing_written(sb, t)
    assert _file_gets(sb) == [], "the file was fetched although it could not fit"
    _no_partials(sb.settings.download_dir)


def test_killed_run_then_retry_publishes_one_complete_result(sb, tmp_path):
    """A Lambda killed mid-task leaves a partial download in /tmp and uploaded-but-unpublished
    outputs under its run id; the retry must neither reuse nor keep either."""
    g = _atl07(sb)
    t = ff.task(sb)
    settings = ff.settings_of(sb, download_dir=str(tmp_path / "tmp"))
    store = ff.services(sb, download_dir=settings.download_dir).output
    # what the killed run left: a workdir with a partial (garbage) download ...
    dead = Path(settings.download_dir) / "coloc-killed0"
    dead.mkdir(parents=True)
    (dead / WORKDIR_LOCK).touch()  # its lock file, released when the process died
    stale = dead / f".{g.file_name}.abc123.part"
    stale.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\xff" * (2 << 20))
    # ... and an uploaded output whose manifest was never written
    orphan = store.output_key(t.request_id, t.date.isoformat(), "killedrun0", f"{g.file_name[:-3]}_sst.nc")
    store.put_json(orphan, {"half": "written"})

    manifest = run_date(t, ff.services(sb, download_dir=settings.download_dir, download_parallel=1))
    assert manifest.get("cached") is not True and manifest["run_id"] != "killedrun0"
    ff.assert_one_complete_result(sb, t, manifest)  # the orphan is gone too
    assert not dead.exists(), "the killed run's partial download was left behind"
    # the partial file was not resumed from: the whole file was fetched from byte 0
    gets = _file_gets(sb)
    assert len(gets) == 1 and "Range" not in gets[0].headers
    assert manifest["bytes"]["atl07_downloaded"] == g.path.stat().st_size
    # and the published netCDF is a real product
    nc = next(k for k in manifest["outputs"] if k.endswith(".nc"))
    local = tmp_path / "out.nc"
    sb.boto3_client("s3").download_file(sb.settings.output_bucket, nc, str(local))
    with h5py.File(local, "r") as f:
        assert f["lat"].shape[0] == manifest["counts"]["segments"]
    again = run_date(t, ff.services(sb, download_dir=settings.download_dir))
    assert again["cached"] is True and again["run_id"] == manifest["run_id"]
    assert json.dumps(again["outputs"]) == json.dumps(manifest["outputs"])


def test_only_dead_runs_workdirs_are_swept(tmp_path):
    """A workdir is swept only once its run's process is gone (SIGKILL, like a Lambda timeout),
    never while the run lives, in this process or another."""
    import os
    import signal
    import subprocess
    import sys

    from core.pipeline.workdir import remove_stale_workdirs, workdir

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom core.pipeline.workdir import workdir\n"
         "with workdir(__import__('pathlib').Path(sys.argv[1])) as d:\n"
         "    (d / '.ATL07.h5.x.part').write_bytes(b'1' * 1000)\n    print(d, flush=True)\n    time.sleep(60)\n",
         str(tmp_path)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        other = Path(holder.stdout.readline().strip())
        with workdir(tmp_path) as mine:
            remove_stale_workdirs(tmp_path)
            assert other.is_dir() and mine.is_dir(), "a live run's workdir was swept"
            holder.send_signal(signal.SIGKILL)
            holder.wait(10)
            remove_stale_workdirs(tmp_path)
            assert not other.exists(), "the killed run's workdir survived"
            assert mine.is_dir()
        assert not mine.exists()
    finally:
        holder.kill()
        holder.wait(10)


def test_a_data_host_that_never_answers_in_time_is_named(sb):
    sb.faults.add(FILE, app="nsidc", delay_s=0.6)
    t = ff.task(sb)
    with pytest.raises(UpstreamError) as info:
        run_date(t, ff.services(sb, http_timeout_s=0.2, http_retries=1))
    assert "download" in info.value.service or "Earthdata" in info.value.service, info.value
    ff.assert_nothing_written(sb, t)


def test_s3credentials_that_never_answer_in_time_are_named(sb):
    sb.faults.add("/s3credentials", app="podaac", delay_s=0.6)
    t = ff.task(sb)
    with pytest.raises(UpstreamError) as info:
        run_date(t, ff.services(sb, http_timeout_s=0.2, http_retries=1))
    assert "/s3credentials" in info.value.service, info.value
    ff.assert_nothing_written(sb, t)
