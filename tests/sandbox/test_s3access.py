"""s3fs against moto's server with TEA credentials: block cache, byte counting, refresh."""
from __future__ import annotations

import time

import aiohttp
import pytest

from core.access.credentials import S3CredentialsProvider
from core.access.earthdata import EarthdataSession, StaticToken
from core.access.s3access import open_granule, open_s3_filesystem, s3_path
from core.errors import InputError, NotFoundError


def _l2p(sb):
    return next(g for g in sb.scene.granules if g.daac == "podaac")


def test_window_read_fetches_a_small_fraction(sb, session):
    g = _l2p(sb)
    provider = S3CredentialsProvider(session, sb.settings.s3credentials_endpoints["POCLOUD"])
    fs = open_s3_filesystem(provider, sb.settings)
    truth = g.path.read_bytes()
    url = sb.links(g)["s3"]
    with open_granule(fs, url, sb.settings) as f:
        assert f.size == len(truth) == g.size_bytes
        for offset, n in ((5_000_000, 1000), (5_000_500, 4000), (123, 77)):
            f.seek(offset)
            assert f.read(n) == truth[offset : offset + n]
        # three small reads in two 1 MiB blocks: two block fetches, nothing else
        assert f.fetch_requests == 2
        assert f.bytes_fetched == 2 * sb.settings.s3_block_size
        assert f.bytes_fetched / f.size < 0.3
    # the tail block is short: counted as fetched, not as requested
    with open_granule(fs, url, sb.settings) as f:
        tail = f.size % sb.settings.s3_block_size
        f.seek(f.size - tail)
        assert f.read() == truth[-tail:]
        assert f.bytes_fetched == tail


class Clock:
    """An injected clock: the provider and botocore both read it, so "near expiry" is a value
    the test sets, not a race against the machine's speed."""

    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_credentials_refresh_mid_task(sb, session):
    """Credentials near expiry are re-fetched by botocore through the provider; reads carry on."""
    g = _l2p(sb)
    clock, margin = Clock(), 300.0
    provider = S3CredentialsProvider(session, sb.settings.s3credentials_endpoints["POCLOUD"], clock=clock,
                                     refresh_margin_s=margin)
    fs = open_s3_filesystem(provider, sb.settings)
    truth = g.path.read_bytes()
    block = sb.settings.s3_block_size

    def read_block(i):
        f.seek(i * block)
        assert f.read(10) == truth[i * block : i * block + 10]

    # the emulator dates each new set from the same clock: valid an hour after *this* clock's now
    sb.state.credentials_clock = clock
    try:
        with open_granule(fs, sb.links(g)["s3"], sb.settings) as f:
            read_block(0)
            first = provider.get()
            assert provider.fetch_count == 1
            clock.now = first.expires_at - margin - 1.0  # botocore asks again (its own 15 min window)
            read_block(2)
            assert provider.fetch_count == 1 and provider.get() is first
            clock.now = first.expires_at - margin + 1.0  # inside the provider's margin
            read_block(3)
            assert provider.fetch_count == 2
            second = provider.get()
            assert second.key != first.key
            clock.now = first.expires_at + 1.0  # the first set has expired outright; reads carry on
            read_block(5)
            assert provider.get().key != first.key and provider.fetch_count >= 2
    finally:
        sb.state.credentials_clock = time.time


def test_tasks_share_botocore_models_but_not_credentials(sb, session):
    """Each task's filesystem signs with its own credentials; botocore's parsed endpoint and S3
    models (~0.09 s of CPU to load) are shared by every filesystem of the process."""
    url = sb.links(_l2p(sb))["s3"]
    providers = [S3CredentialsProvider(session, sb.settings.s3credentials_endpoints["POCLOUD"]) for _ in range(2)]
    systems = [open_s3_filesystem(p, sb.settings) for p in providers]
    for fs in systems:
        assert fs.info(s3_path(url))["size"] > 0
    assert [p.fetch_count for p in providers] == [1, 1]
    assert providers[0].get().key != providers[1].get().key
    loaders = [fs.session.get_component("data_loader") for fs in systems]
    assert loaders[0] is loaders[1]


def test_missing_object_and_bad_url(sb, session):
    provider = S3CredentialsProvider(session, sb.settings.s3credentials_endpoints["POCLOUD"])
    fs = open_s3_filesystem(provider, sb.settings)
    with pytest.raises(NotFoundError, match="no-such.nc"):
        open_granule(fs, "s3://podaac-ops-cumulus-protected/x/no-such.nc", sb.settings)
    with pytest.raises(InputError):
        s3_path("https://example.com/x.nc")
    assert s3_path("s3://b/k/x.nc") == "b/k/x.nc"


@pytest.fixture(scope="module")
def proxied(mini_scene, tmp_path_factory):  # noqa: F811
    """A sandbox whose S3 endpoint is the fault-injecting proxy in front of moto."""
    from sandbox.services import Sandbox

    with Sandbox(mini_scene, workdir=tmp_path_factory.mktemp("proxied"), s3_faults=True) as box:
        yield box


@pytest.fixture
def proxied_fs(proxied):
    proxied.faults.clear()
    session = EarthdataSession(proxied.settings, StaticToken(proxied.edl_token))
    provider = S3CredentialsProvider(session, proxied.settings.s3credentials_endpoints["POCLOUD"])
    yield open_s3_filesystem(provider, proxied.settings)
    proxied.faults.clear()


def test_s3_faults_throttle_is_retried_and_denied_is_named(proxied, proxied_fs):
    from core.errors import AuthError
    from sandbox.emulator import s3_error_fault

    g = _l2p(proxied)
    truth = g.path.read_bytes()
    url = proxied.links(g)["s3"]
    proxied.faults.add(f"/{g.bucket}/", app="s3api", method="GET", times=2, **s3_error_fault("SlowDown"))
    with open_granule(proxied_fs, url, proxied.settings) as f:
        f.seek(2_000_000)
        assert f.read(100) == truth[2_000_000:2_000_100]
    gets = [r for r in proxied.state.requests_to("s3api") if r.method == "GET" and g.key in r.path]
    assert len(gets) == 3  # two throttled, one served
    proxied.faults.add(f"/{g.bucket}/", app="s3api", **s3_error_fault("AccessDenied"))
    proxied_fs.invalidate_cache()
    with pytest.raises(AuthError, match="access denied"):
        open_granule(proxied_fs, url, proxied.settings)


def test_s3_truncated_body_is_not_returned_as_data(proxied, proxied_fs):
    g = _l2p(proxied)
    url = proxied.links(g)["s3"]
    with open_granule(proxied_fs, url, proxied.settings) as f:
        proxied.faults.add(f"/{g.bucket}/", app="s3api", method="GET", truncate_to=1000)
        # s3fs retries, then aiohttp's own length check surfaces: never short data
        with pytest.raises((aiohttp.ClientPayloadError, OSError), match="content length|payload"):
            f.seek(0)
            f.read(5000)


def test_proxy_passes_writes_and_multipart_uploads(proxied, tmp_path):
    import boto3

    s3 = boto3.client(
        "s3", region_name="us-west-2", endpoint_url=proxied.s3_url,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    s3.put_object(Bucket=proxied.settings.output_bucket, Key="t/small.json", Body=b'{"ok": true}')
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (9 << 20))  # above boto3's multipart threshold
    s3.upload_file(str(big), proxied.settings.output_bucket, "t/big.bin")
    assert s3.get_object(Bucket=proxied.settings.output_bucket, Key="t/small.json")["Body"].read() == b'{"ok": true}'
    assert s3.head_object(Bucket=proxied.settings.output_bucket, Key="t/big.bin")["ContentLength"] == 9 << 20
    listed = s3.list_objects_v2(Bucket=proxied.settings.output_bucket, Prefix="t/")["KeyCount"]
    assert listed == 2


def test_rangefile_over_s3_reads_the_dmrpp_sidecar_and_exact_ranges(sandbox):
    """The scene publishes <granule>.dmrpp beside each L2P object (as PO.DAAC does); ranges of
    the granule come back side by side, byte-exact, counted once."""
    from core.access.dmrpp import parse_dmrpp
    from core.access.s3access import open_s3_rangefile, s3_sidecar

    sb = sandbox  # the seed scene: real HDF5 granules with their sidecars
    session = EarthdataSession(sb.settings, StaticToken(sb.edl_token))
    g = _l2p(sb)
    provider = S3CredentialsProvider(session, sb.settings.s3credentials_endpoints["POCLOUD"])
    fs = open_s3_filesystem(provider, sb.settings)
    url = sb.links(g)["s3"]
    maps = parse_dmrpp(s3_sidecar(fs, url))
    truth = g.path.read_bytes()
    f = open_s3_rangefile(fs, url, sb.settings)
    assert f.size == len(truth)
    lat = [c.range for c in maps["/lat"].chunks]
    f.prefetch(lat)
    # contiguous chunks merge, then split into parts of at most max_part bytes, side by side
    assert f.bytes_fetched == sum(b - a for a, b in lat) and f.fetch_requests >= f.size // f.max_part // 4
    for a, b in lat:
        f.seek(a)
        assert f.read(b - a) == truth[a:b]
    assert f.bytes_fetched == sum(b - a for a, b in lat)  # served from memory
    assert s3_sidecar(fs, url + ".nothing") is None
