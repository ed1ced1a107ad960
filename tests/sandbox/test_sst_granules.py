"""core.pipeline.sst_granules and core.science.l2p's phased read over the seed scene's L2P granules in the sandbox:
in place on S3 and over HTTPS through TEA, read as exact chunks (with the published .dmrpp
sidecar, or h5py's chunk index without one), as 1 MiB blocks, or whole — the same swath each way,
and in chunk mode exactly the bytes each phase needs."""
from __future__ import annotations

import time

import h5py
import numpy as np
import pytest

from bench.floor import l2p_chunk_floor
from core.access.cmr import Granule
from core.access.credentials import S3CredentialsProvider
from core.access.dmrpp import chunk_ranges, metadata_ranges, parse_dmrpp
from core.access.earthdata import EarthdataSession, StaticToken
from core.access.rangefile import RangeFile, merge_ranges
from core.access.s3access import open_s3_filesystem, s3_fetch_many, s3_object_size, s3_sidecar
from core.pipeline.sst_granules import open_sst_granule
from core.science.l2p import latitude_band, open_l2p, read_l2p
from sandbox.services import Sandbox

WINDOW_VARS = ("lon", "sea_surface_temperature", "sst_dtime", "quality_level", "l2p_flags", "sses_bias",
               "sses_standard_deviation", "dt_analysis", "time")
SWATH_ARRAYS = ("lat", "lon", "sst", "time", "quality_level", "l2p_flags", "sses_bias", "sses_standard_deviation",
                "dt_analysis", "sst_out_of_range")


def _query(path, rows=slice(1100, 1160), col=300):
    """Points along a short track inside one granule: its own pixel locations, nudged."""
    with h5py.File(path) as f:
        lat, lon = f["lat"][rows, col].astype(float), f["lon"][rows, col].astype(float)
    return lat + 0.001, lon + 0.002


def _granule(sb, g) -> Granule:
    ln = sb.links(g)
    return Granule(concept_id=g.concept_id, title=g.file_name, producer_granule_id=g.file_name,
                   size_bytes=g.size_bytes, start=None, end=None, polygon=None, https_url=ln["https"],
                   s3_url=ln["s3"], s3credentials_url=ln["s3credentials"], provider=g.provider)


def _l2p(sb):
    return sorted((g for g in sb.scene.granules if g.daac == "podaac"), key=lambda g: g.file_name)[0]


def _open(sb, g, access, mode, session):
    settings = sb.settings.replace(l2p_read=mode)
    return open_sst_granule(_granule(sb, g), access, session=session, settings=settings,
                            s3_filesystem=lambda ep: open_s3_filesystem(S3CredentialsProvider(session, ep), settings))


def _assert_same(a, b):
    assert (a.rows, a.cols, a.granule, a.attrs, a.ice_mask) == (b.rows, b.cols, b.granule, b.attrs, b.ice_mask)
    for name in SWATH_ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.fixture(scope="module")
def session(sandbox):
    s = EarthdataSession(sandbox.settings, StaticToken(sandbox.edl_token))
    yield s
    s.close()


def _ranges_bytes(ranges):
    return sum(b - a for a, b in merge_ranges(ranges))


@pytest.mark.parametrize("access", ["s3", "https"])
def test_chunk_read_fetches_metadata_latitude_in_band_longitude_and_window_chunks(sandbox, session, access):
    g = _l2p(sandbox)
    qlat, qlon = _query(g.path)
    granule = _open(sandbox, g, access, "chunks", session)
    with granule:
        maps = dict(granule.byte_map)  # the parsed sidecar
        opened = granule.bytes_fetched
        win = granule.locate(qlat, qlon, 1000)
        assert win is not None
        located = granule.bytes_fetched
        swath = granule.window(*win)
        fetched, size = granule.bytes_fetched, granule.size
        assert granule.sidecar_bytes > 0 and granule.fetch_requests > 3
        if access == "https":
            assert granule.resolves == 1 and granule.resolved_host
    window = (win[0], win[1])
    small = [v for v in maps.values() if len(v.shape) <= 1]
    meta = metadata_ranges(maps.values(), size)
    lat = chunk_ranges(maps["/lat"])
    # the longitude chunks holding a latitude in the points' latitude band, from the local copy
    south, north = latitude_band(qlat, 1000)
    with h5py.File(g.path) as h5:
        all_lat = h5["lat"][:]
    lon_map = maps["/lon"]
    band_lon = [c.range for c in lon_map.chunks
                if ((all_lat[c.position[0]:c.position[0] + lon_map.chunk_shape[0],
                             c.position[1]:c.position[1] + lon_map.chunk_shape[1]] >= south)
                    & (all_lat[c.position[0]:c.position[0] + lon_map.chunk_shape[0],
                               c.position[1]:c.position[1] + lon_map.chunk_shape[1]] <= north)).any()]
    assert band_lon
    # the window's chunks of every variable read for it but longitude (in memory already)
    window_chunks = [r for v in WINDOW_VARS[1:] if f"/{v}" in maps for r in chunk_ranges(maps[f"/{v}"], window)]
    wave1 = meta + lat + [r for v in small for r in chunk_ranges(v)]
    # the same waves asked of a file over the local copy: RangeFile merges ranges closer than
    # `coalesce` (one request for two), so a few KiB between chunks come along
    data = g.path.read_bytes()
    sim = RangeFile(lambda rs: [data[a:b] for a, b in rs], size, coalesce=granule.file.coalesce)
    waves = []
    for wave, drop in ((wave1, lat), (band_lon, band_lon), (window_chunks, [])):
        waves.append(sim.prefetch(wave))
        sim.discard(drop)
    assert [opened - granule.sidecar_bytes, located - opened, fetched - located] == waves
    coalesced = sim.bytes_fetched - _ranges_bytes(wave1 + band_lon + window_chunks)
    assert 0 <= coalesced < 3 * len(merge_ranges(wave1 + window_chunks)) * granule.file.coalesce
    # against the floor (latitude + the window's chunks): over it by metadata, the sidecar, the
    # in-band longitude outside the window and what coalescing brought along
    floor = l2p_chunk_floor(g.path, [win[0].start, win[0].stop, win[1].start, win[1].stop])
    lon_outside_window = _ranges_bytes(band_lon) - _ranges_bytes(chunk_ranges(maps["/lon"], window))
    assert fetched == (floor["floor_bytes"] + floor["metadata_bytes"] + granule.sidecar_bytes + lon_outside_window
                       + coalesced)
    _assert_same(swath, read_l2p(g.path, lat=qlat, lon=qlon, radius_m=1000, name=g.file_name))


def test_three_modes_and_both_accesses_give_the_local_swath(sandbox, session):
    g = _l2p(sandbox)
    qlat, qlon = _query(g.path, rows=slice(990, 1040), col=670)  # across the chunk corner
    want = read_l2p(g.path, lat=qlat, lon=qlon, radius_m=1000, name=g.file_name)
    assert want is not None
    fetched = {}
    for access in ("s3", "https"):
        for mode in ("chunks", "blocks", "whole"):
            with _open(sandbox, g, access, mode, session) as granule:
                win = granule.locate(qlat, qlon, 1000)
                _assert_same(granule.window(*win), want)
                fetched[access, mode] = granule.bytes_fetched
                if mode == "whole":
                    assert granule.bytes_fetched == granule.size
    assert fetched["s3", "chunks"] == fetched["https", "chunks"]
    assert fetched["s3", "chunks"] < fetched["s3", "blocks"] < fetched["s3", "whole"]


class Recorder:
    """Records every wave of ranges a RangeFile asks its (real S3) fetcher for."""

    def __init__(self, fetch_many):
        self.fetch_many = fetch_many
        self.calls = []

    def __call__(self, ranges):
        self.calls.append(list(ranges))
        return self.fetch_many(ranges)


def _s3_rangefile(sb, g, session):
    url = sb.links(g)["s3"]
    fs = open_s3_filesystem(S3CredentialsProvider(session, sb.links(g)["s3credentials"]), sb.settings)
    rec = Recorder(s3_fetch_many(fs, url, sb.settings))
    return RangeFile(rec, s3_object_size(fs, url, sb.settings), name=g.file_name), rec, s3_sidecar(fs, url)


def test_with_a_sidecar_h5py_never_waits_on_the_network(sandbox, session):
    """One wave per phase (open, locate, window), none from inside h5py — also when the granule
    is asked again: its coordinates, given back after each window, come again in waves of their own."""
    g = _l2p(sandbox)
    f, rec, sidecar = _s3_rangefile(sandbox, g, session)
    with open_l2p(f, g.file_name, byte_map=parse_dmrpp(sidecar)) as granule:
        assert len(rec.calls) == 1
        qlat, qlon = _query(g.path)
        win = granule.locate(qlat, qlon, 1000)
        assert len(rec.calls) == 2
        first = granule.window(*win)
        assert len(rec.calls) == 3
        # again, the same points: the same swath; the coordinates were given back once the window
        # was read (a window holds only its rows, issue 26), so they come again, in waves of their own
        before = len(rec.calls)
        again = granule.window(*granule.locate(qlat, qlon, 1000))
        assert len(rec.calls) - before == 3  # latitude, longitude where it reaches, the window
        _assert_same(again, first)
        # decoded latitude/longitude bytes were given back
        lat_lon = chunk_ranges(granule.byte_map["/lat"]) + chunk_ranges(granule.byte_map["/lon"])
        assert f.missing(lat_lon) == merge_ranges(lat_lon)
        # points elsewhere in the granule: one wave for their longitude, one for their window
        qlat2, qlon2 = _query(g.path, rows=slice(100, 140), col=1000)
        before = len(rec.calls)
        second = granule.window(*granule.locate(qlat2, qlon2, 1000))
        print("SECOND", len(rec.calls) - before)
        _assert_same(second, read_l2p(g.path, lat=qlat2, lon=qlon2, radius_m=1000, name=g.file_name))
    # no byte came over twice
    seen = np.zeros(f.size, dtype=np.int8)
    for a, b in (r for call in rec.calls for r in call):
        seen[a:b] += 1
    assert seen.max() == 3  # no byte twice within one of the three asks


def test_no_window_says_why(sandbox, session):
    g = _l2p(sandbox)
    f, _, sidecar = _s3_rangefile(sandbox, g, session)
    with open_l2p(f, g.file_name, byte_map=parse_dmrpp(sidecar)) as granule:
        before = f.bytes_fetched
        assert granule.locate(np.array([-10.0, -10.5]), np.array([20.0, 20.0]), 1000) is None
        assert "latitude band" in granule.no_window_reason and f.bytes_fetched == before  # no longitude read
        qlat, qlon = _query(g.path)
        assert granule.locate(qlat[:1], qlon[:1] + 180.0, 1000) is None  # in the band, across the pole
        assert granule.no_window_reason == "no valid pixel within 1000 m of any segment"


@pytest.fixture(scope="module")
def no_sidecar_sandbox(sandbox_scene, tmp_path_factory):
    with Sandbox(sandbox_scene, workdir=tmp_path_factory.mktemp("no-dmrpp"), dmrpp_daacs=()) as sb:
        yield sb


def test_without_a_sidecar_the_hdf5_chunk_index_gives_the_same(sandbox, no_sidecar_sandbox, session):
    """Over HTTPS from a sandbox publishing no .dmrpp (moto's S3 objects are process-global, so
    the S3 fallback is read below through the same RangeFile without a byte map)."""
    sb = no_sidecar_sandbox
    s = EarthdataSession(sb.settings, StaticToken(sb.edl_token))
    g = _l2p(sb)
    qlat, qlon = _query(g.path)
    with _open(sb, g, "https", "chunks", s) as granule:
        assert granule.sidecar_bytes == 0
        swath = granule.window(*granule.locate(qlat, qlon, 1000))
        without = granule.bytes_fetched
    s.close()
    f, rec, _ = _s3_rangefile(sandbox, _l2p(sandbox), session)
    with open_l2p(f, g.file_name) as granule:
        s3_swath = granule.window(*granule.locate(qlat, qlon, 1000))
        assert f.bytes_fetched == without
    with _open(sandbox, _l2p(sandbox), "s3", "chunks", session) as granule:
        with_sidecar = granule.window(*granule.locate(qlat, qlon, 1000))
        exact = granule.bytes_fetched - granule.sidecar_bytes
    _assert_same(swath, with_sidecar)
    _assert_same(s3_swath, with_sidecar)
    # metadata now comes over as h5py asks (read-ahead included): a little more, never the granule
    assert exact * 0.9 < without < 1.5 * exact


def test_outside_the_region_an_expired_signed_url_is_resolved_again_mid_read(sandbox, session):
    """Chunks over HTTPS from outside us-west-2: TEA hands out a signed CloudFront URL; when it
    expires between waves, the ranges of the next wave are refused (403), resolved once again and
    read — the same swath, one more resolve."""
    g = _l2p(sandbox)
    qlat, qlon = _query(g.path)
    want = read_l2p(g.path, lat=qlat, lon=qlon, radius_m=1000, name=g.file_name)
    state = sandbox.state
    clock, in_region = state.cloudfront_clock, state.caller_in_region
    sandbox.set_in_region(False)
    try:
        with _open(sandbox, g, "https", "chunks", session) as granule:
            assert granule.resolved_host == sandbox.url("cloudfront").split("/")[2] and granule.resolves == 1
            # the first URL expires between waves: CloudFront's clock moves past its lifetime
            # (no sleep through a short one, which a loaded machine overruns during the open)
            state.cloudfront_clock = lambda: time.time() + 2 * state.cloudfront_ttl_s
            _assert_same(granule.window(*granule.locate(qlat, qlon, 1000)), want)
            assert granule.resolves == 2
    finally:
        state.cloudfront_clock = clock
        sandbox.set_in_region(in_region)
