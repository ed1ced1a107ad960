"""Parallel ranged downloads (core.access.download with ``parallel > 1``) against the sandbox's real
servers: TEA's redirect resolved once, the other ranges from the presigned S3 (or CloudFront)
URL, faults injected on that host. What the network model's ledger saw shows the ranges in
flight side by side (its accounts, never wall-clock bounds)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from core.access.download import stream_download
from core.errors import InsufficientSpaceError, UpstreamError
from sandbox.services import Sandbox
from tests.sandbox_fixtures import caller_kept_in_place, leftovers

S3_DENIED = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
             "<Message>Request has expired</Message></Error>")


def _parts(size: int, part_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + part_size, size) - 1) for start in range(0, size, part_size)]


def _ranges(requests) -> list[tuple[int, int]]:
    """(first, last) byte of each request's ``Range: bytes=a-b``."""
    out = []
    for r in requests:
        first, _, last = r.headers["Range"].removeprefix("bytes=").partition("-")
        out.append((int(first), int(last)))
    return out


def _file_gets(sb, app: str, bucket: str):
    return [r for r in sb.state.requests_to(app) if bucket in r.path]


def _once_written(n: int, action):
    """An ``on_bytes`` that runs ``action`` once, when ``n`` bytes have been written."""
    state = {"done": False, "bytes": 0}

    def on_bytes(k: int) -> None:
        state["bytes"] += k
        if not state["done"] and state["bytes"] >= n:
            state["done"] = True
            action()

    on_bytes.state = state
    return on_bytes


# --- byte-identical, around part boundaries ----------------------------------------------------
@pytest.mark.parametrize("parts_of", [
    lambda n: n // 3,  # the mini granule is exactly 3 parts of this
    lambda n: n // 3 - 1,  # 4 parts, the last of 3 bytes
    lambda n: n // 3 + 1,  # 3 parts, the last 2 bytes short of a part
    lambda n: n - 1,  # 2 parts, the last of 1 byte
    lambda n: n,  # 1 part: no pool, one request
    lambda n: n + 1,  # asks for more than there is: the server's 206 says how much
    lambda n: 1 << 20,  # not a divisor: 4 parts
], ids=["exact-3", "3-plus-3-bytes", "3-short", "2-last-1-byte", "one-part", "more-than-file", "1MiB"])
def test_parallel_download_is_byte_identical_around_part_boundaries(sb, session, atl07, tmp_path, parts_of):
    g, url, truth = atl07
    part_size = parts_of(len(truth))
    reported = []
    path = stream_download(session, url, tmp_path, parallel=4, part_size=part_size, chunk_size=100_000,
                           on_bytes=reported.append)
    assert path.read_bytes() == truth
    assert leftovers(tmp_path) == [g.file_name]
    assert sum(reported) == len(truth)
    # TEA asked once; every part requested once from the presigned URL, the first through the redirect
    assert len(_file_gets(sb, "nsidc", g.bucket)) == 1
    s3 = _file_gets(sb, "s3", g.bucket)
    want = _parts(len(truth), part_size)
    assert s3[0].headers["Range"] == f"bytes=0-{part_size - 1}"
    assert sorted([(0, want[0][1])] + _ranges(s3[1:])) == want
    assert all("X-Amz-Signature" in r.query and "Authorization" not in r.headers for r in s3)


def test_no_range_goes_over_without_the_catalogue_size_either(sb, session, atl07, tmp_path):
    """A file the catalogue says fits one part takes today's single GET (no Range at all)."""
    g, url, truth = atl07
    path = stream_download(session, url, tmp_path, parallel=8, part_size=len(truth), expected_size=len(truth))
    assert path.read_bytes() == truth
    assert [r.headers.get("Range") for r in _file_gets(sb, "s3", g.bucket)] == [None]


def test_parallel_download_through_cloudfront_outside_the_region(sb, session, atl07, tmp_path):
    """Outside us-west-2 TEA sends the caller to signed CloudFront URLs (here two hops): the
    ranges go to the URL the redirect resolved to, accepted because the redirect vouched for it."""
    g, url, truth = atl07
    with caller_kept_in_place(sb):
        sb.set_in_region(False)
        sb.state.cloudfront_hops = 2
        path = stream_download(session, url, tmp_path, parallel=3, part_size=1 << 20)
    assert path.read_bytes() == truth
    assert len(_file_gets(sb, "nsidc", g.bucket)) == 1 and len(_file_gets(sb, "cloudfront", g.bucket)) == 1
    edge = _file_gets(sb, "cloudfront2", g.bucket)
    assert sorted(_ranges(edge)) == _parts(len(truth), 1 << 20)
    assert _file_gets(sb, "s3", g.bucket) == []


# --- faults ----------------------------------------------------------------------------------
def test_a_range_broken_mid_way_resumes_from_what_it_wrote(sb, session, atl07, tmp_path):
    g, url, truth = atl07
    part_size = len(truth) // 6 + 1
    # the first range (through the redirect) breaks at once; half-way through the file a later one too
    sb.faults.add(f"/{g.bucket}/", app="s3", drop_after=300_000, times=1)
    on_bytes = _once_written(len(truth) // 2,
                             lambda: sb.faults.add(f"/{g.bucket}/", app="s3", drop_after=200_000, times=1))
    path = stream_download(session, url, tmp_path, parallel=2, part_size=part_size, chunk_size=64 * 1024,
                           on_bytes=on_bytes)
    assert path.read_bytes() == truth and on_bytes.state["bytes"] == len(truth)
    parts = _parts(len(truth), part_size)
    starts = {start for start, _ in parts}
    asked = _ranges(_file_gets(sb, "s3", g.bucket))
    resumed = [(a, b) for a, b in asked if a not in starts]
    assert len(asked) == len(parts) + 2 and len(resumed) == 2
    for first, last in resumed:
        # each resume asks for the rest of its own part, from a whole chunk it already wrote
        start, end = next((s, e) for s, e in parts if s < first <= e)
        assert last == end and (first - start) % (64 * 1024) == 0
    assert any(first > parts[0][1] for first, _ in resumed)  # a range other than the first


def test_a_range_that_keeps_breaking_fails_and_leaves_nothing(sb, session, atl07, tmp_path):
    g, url, truth = atl07
    sb.faults.add(f"/{g.bucket}/", app="s3", truncate_to=1000)
    with pytest.raises(UpstreamError, match=r"range \d+-\d+ broke 3 times; got 3000 of \d+ bytes"):
        stream_download(session, url, tmp_path, parallel=4, part_size=1 << 20, max_resumes=2, chunk_size=500)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("in_region", [True, False], ids=["presigned-s3", "cloudfront"])
def test_a_refused_resolved_url_is_resolved_again(sb, session, atl07, tmp_path, in_region):
    """An expired presigned (or signed CloudFront) URL answers 403: TEA is asked once more."""
    g, url, truth = atl07
    edge = "s3" if in_region else "cloudfront"
    with caller_kept_in_place(sb):
        sb.set_in_region(in_region)
        on_bytes = _once_written(1, lambda: sb.faults.add(f"/{g.bucket}/" if in_region else "/", app=edge,
                                                         status=403, body=S3_DENIED,
                                                         content_type="application/xml", times=1))
        path = stream_download(session, url, tmp_path, parallel=2, part_size=len(truth) // 6 + 1,
                               on_bytes=on_bytes)
    assert path.read_bytes() == truth
    assert len(_file_gets(sb, "nsidc", g.bucket)) == 2  # resolved, then once again
    assert sum(1 for _, _, rule in sb.faults.fired) == 1


@pytest.mark.parametrize("parallel", [1, 4], ids=["one-stream", "ranges"])
@pytest.mark.parametrize("in_region", [True, False], ids=["presigned-s3", "cloudfront"])
def test_a_url_refused_at_the_end_of_the_redirect_is_asked_for_again(sb, session, atl07, tmp_path, in_region,
                                                                     parallel):
    """The URL TEA just signed is refused on arrival (it expired on the way: ASF's live 15 s):
    TEA is asked once more, and the download completes."""
    g, url, truth = atl07
    with caller_kept_in_place(sb):
        sb.set_in_region(in_region)
        sb.faults.add(f"/{g.bucket}/" if in_region else "/", app="s3" if in_region else "cloudfront",
                      status=403, body=S3_DENIED, content_type="application/xml", times=1)
        path = stream_download(session, url, tmp_path, parallel=parallel, part_size=len(truth) // 3 + 1)
    assert path.read_bytes() == truth
    assert len(_file_gets(sb, "nsidc", g.bucket)) == 2 and len(sb.faults.fired) == 1


def test_a_resolved_url_refused_again_fails_and_leaves_nothing(sb, session, atl07, tmp_path):
    g, url, truth = atl07
    on_bytes = _once_written(1, lambda: sb.faults.add(f"/{g.bucket}/", app="s3", status=403, body=S3_DENIED,
                                                     content_type="application/xml"))
    with pytest.raises(UpstreamError, match="403"):
        stream_download(session, url, tmp_path, parallel=2, part_size=len(truth) // 6 + 1, on_bytes=on_bytes)
    assert leftovers(tmp_path) == []
    # resolved, resolved again, and that fresh URL refused on arrival asked for once more: not forever
    assert len(_file_gets(sb, "nsidc", g.bucket)) == 3


@pytest.mark.parametrize("broken, gets", [(False, 1), (True, 2)], ids=["whole", "broken-restarts-from-0"])
def test_a_server_without_range_support_gets_one_streamed_get(sb, session, atl07, tmp_path, broken, gets):
    """A 200 to the first Range request: its body is the whole file, taken as today's download
    (whose resume, ignored too, starts again from byte 0)."""
    g, url, truth = atl07
    if broken:
        sb.faults.add(f"/{g.bucket}/", app="s3", ignore_range=True, drop_after=1 << 20, times=1)
    sb.faults.add(f"/{g.bucket}/", app="s3", ignore_range=True)
    path = stream_download(session, url, tmp_path, parallel=4, part_size=1 << 20)
    assert path.read_bytes() == truth
    assert len(_file_gets(sb, "s3", g.bucket)) == gets


def test_full_disk_refused_before_the_other_ranges(sb, session, atl07, tmp_path):
    """Without a catalogue size the first range's Content-Range gives it: refused before writing."""
    g, url, truth = atl07
    small_disk = lambda _path: SimpleNamespace(free=len(truth) // 2)  # noqa: E731
    with pytest.raises(InsufficientSpaceError, match=str(len(truth))):
        stream_download(session, url, tmp_path, parallel=4, part_size=1 << 20, disk_usage=small_disk)
    assert leftovers(tmp_path) == []
    assert len(_file_gets(sb, "s3", g.bucket)) == 1


def test_bad_arguments_are_refused(session, atl07, tmp_path):
    with pytest.raises(ValueError, match="parallel"):
        stream_download(session, atl07[1], tmp_path, parallel=0)


# --- what the network model saw ------------------------------------------------------------------
# first bytes and set-up almost free, a slow connection: the bodies dominate what the model accounts
SLOW_LINKS = "lambda-us-west-2,latency_ms=1,p99_ms=1,connect_ms=1,conn_mbps=5"


@pytest.fixture
def modelled(mini_scene, tmp_path):
    with Sandbox(mini_scene, workdir=tmp_path / "w", network=SLOW_LINKS) as box:
        yield box


def _in_flight(records) -> tuple[int, float]:
    """(most bodies in flight at once, modelled seconds with any body in flight) from the ledger."""
    spans = sorted((r.body_started, r.body_started + r.body_s) for r in records if r.body_started is not None)
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    busy, end = 0.0, float("-inf")
    for a, b in spans:
        busy += max(0.0, b - max(a, end))
        end = max(end, b)
    return most, busy


def test_the_network_model_sees_the_ranges_side_by_side(modelled, tmp_path):
    from core.access.earthdata import EarthdataSession, StaticToken

    g = next(g for g in modelled.scene.granules if g.daac == "nsidc")
    url, size = modelled.links(g)["https"], g.path.stat().st_size
    ledger = modelled.netmodel.ledger
    seen = {}
    for parallel in (1, 4):
        with EarthdataSession(modelled.settings, StaticToken(modelled.edl_token)) as session:
            modelled.netmodel.reset()
            path = stream_download(session, url, tmp_path / str(parallel), parallel=parallel,
                                   part_size=size // 4 + 1)
            assert path.read_bytes() == g.path.read_bytes()
        seen[parallel] = (ledger.snapshot("nsidc"), [r for r in ledger.snapshot("s3") if g.bucket in r.path])
    tea, s3 = seen[1]
    assert len(tea) == 1 and len(s3) == 1 and sum(r.bytes for r in s3) == size
    serial_most, serial_busy = _in_flight(s3)
    tea, s3 = seen[4]
    assert len(tea) == 1  # the redirect resolved once
    assert len(s3) == 4 and sum(r.bytes for r in s3) == size
    assert len({r.connection for r in s3}) == 4 and sum(r.new_connection for r in s3) == 4
    most, busy = _in_flight(s3)
    assert (serial_most, most) == (1, 4)
    # one connection's 5 MB/s cap: four move the file in about a quarter of the modelled time
    assert serial_busy == pytest.approx(size / 5e6, rel=0.05)
    assert busy < 0.5 * serial_busy


@pytest.mark.parametrize("env, field", [
    ({"COLOC_DOWNLOAD_PARALLEL": "0"}, "COLOC_DOWNLOAD_PARALLEL"),
    ({"COLOC_DOWNLOAD_PARALLEL": "17"}, "COLOC_DOWNLOAD_PARALLEL"),  # more than the session's pool per host
    ({"COLOC_DOWNLOAD_PART_BYTES": "65536"}, "COLOC_DOWNLOAD_PART_BYTES"),
])
def test_download_settings_are_bounded(env, field):
    from core.config import ConfigError, Settings

    assert (Settings().download_parallel, Settings().download_part_bytes) == (8, 16 << 20)
    assert Settings.from_env({"COLOC_DOWNLOAD_PARALLEL": "1"}).download_parallel == 1
    with pytest.raises(ConfigError, match=field):
        Settings.from_env(env)
