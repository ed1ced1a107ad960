"""Streamed downloads through TEA → presigned S3, with faults injected on the S3 host."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from core.access.download import downloaded, stream_download
from core.errors import InsufficientSpaceError, NotFoundError, UpstreamError
from tests.sandbox_fixtures import leftovers

MiB = 1 << 20


def test_download_streams_to_final_name(session, atl07, tmp_path):
    g, url, truth = atl07
    path = stream_download(session, url, tmp_path, expected_size=g.size_bytes, chunk_size=256 * 1024)
    assert path == tmp_path / g.file_name
    assert path.read_bytes() == truth
    assert leftovers(tmp_path) == [g.file_name]


def test_downloaded_context_deletes_after_use(session, atl07, tmp_path):
    g, url, truth = atl07
    with downloaded(session, url, tmp_path) as path:
        assert path.stat().st_size == len(truth)
    assert not path.exists() and leftovers(tmp_path) == []


def test_broken_connection_is_resumed_with_range(sb, session, atl07, tmp_path):
    g, url, truth = atl07
    sb.faults.add("/nsidc-cumulus", app="s3", drop_after=MiB + 5, times=1)
    path = stream_download(session, url, tmp_path, chunk_size=64 * 1024)
    assert path.read_bytes() == truth
    s3 = sb.state.requests_to("s3")
    assert len(s3) == 2
    # resumes at the last whole chunk written (a reset also discards bytes still in flight)
    assert "Range" not in s3[0].headers
    offset = int(s3[1].headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert offset % (64 * 1024) == 0 and offset <= MiB
    assert all("Authorization" not in r.headers for r in s3)


def test_several_truncated_bodies_are_resumed(sb, session, atl07, tmp_path):
    g, url, truth = atl07
    sb.faults.add("/nsidc-cumulus", app="s3", truncate_to=700_000, times=3)
    path = stream_download(session, url, tmp_path, max_resumes=3, chunk_size=100_000)
    assert path.read_bytes() == truth
    ranges = [r.headers.get("Range") for r in sb.state.requests_to("s3")]
    assert ranges == [None, "bytes=700000-", "bytes=1400000-", "bytes=2100000-"]


def test_body_shorter_than_content_length_is_detected(sb, session, atl07, tmp_path):
    g, url, truth = atl07
    sb.faults.add("/nsidc-cumulus", app="s3", truncate_to=1000)
    with pytest.raises(UpstreamError, match=r"broke 3 times; got 3000 of \d+ bytes"):
        stream_download(session, url, tmp_path, max_resumes=2, chunk_size=500)
    assert leftovers(tmp_path) == []  # no partial file left behind


def test_server_ignoring_range_restarts_from_zero(sb, session, atl07, tmp_path):
    g, url, truth = atl07
    sb.faults.add("/nsidc-cumulus", app="s3", drop_after=2 * MiB, times=1)
    sb.faults.add("/nsidc-cumulus", app="s3", ignore_range=True, times=1)
    path = stream_download(session, url, tmp_path)
    assert path.read_bytes() == truth


def test_full_disk_refused_before_downloading(sb, session, atl07, tmp_path):
    g, url, truth = atl07
    small_disk = lambda _path: SimpleNamespace(free=len(truth) // 2)  # noqa: E731
    with pytest.raises(InsufficientSpaceError) as err:
        stream_download(session, url, tmp_path, disk_usage=small_disk)
    msg = str(err.value)
    # the numbers, not the internal path (issue 24: no path in what the user sees)
    assert str(tmp_path) not in msg and "work folder" in msg and str(len(truth)) in msg and str(len(truth) // 2) in msg
    assert leftovers(tmp_path) == []


def test_stale_partial_from_a_killed_run_is_not_reused(session, atl07, tmp_path):
    g, url, truth = atl07
    stale = tmp_path / f".{g.file_name}.killed.part"
    stale.write_bytes(b"\0" * 1000)
    path = stream_download(session, url, tmp_path)
    assert path.read_bytes() == truth
    assert leftovers(tmp_path) == [g.file_name]


@pytest.mark.parametrize("delta", [+1, -1000])
def test_a_catalogue_size_that_disagrees_gives_way_to_the_transfers_own(session, atl07, tmp_path, delta):
    """CMR's size and Content-Length need not agree: the body is verified against the latter."""
    g, url, truth = atl07
    path = stream_download(session, url, tmp_path, expected_size=len(truth) + delta)
    assert path.read_bytes() == truth


def test_a_body_short_of_its_own_content_length_still_fails(sb, session, atl07, tmp_path):
    g, url, truth = atl07
    sb.faults.add(f"/{g.bucket}/", app="s3", truncate_to=1000)  # every try: Content-Length says more
    with pytest.raises(UpstreamError, match="connection broke|expected"):
        stream_download(session, url, tmp_path, expected_size=len(truth) + 1, max_resumes=1)
    assert leftovers(tmp_path) == []


def test_missing_file(sb, session, tmp_path):
    with pytest.raises(NotFoundError):
        stream_download(session, f"{sb.url('nsidc')}/nsidc-cumulus-prod-protected/nope.h5", tmp_path)


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no tmpfs")
def test_real_free_space_is_checked(session, atl07, tmp_path):
    """The default disk_usage is the real one: a normal download passes the check."""
    g, url, truth = atl07
    assert stream_download(session, url, tmp_path).stat().st_size == len(truth)
