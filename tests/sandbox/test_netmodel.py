"""The sandbox's network model (sandbox/netmodel.py), proven by the delays its ledger accounts for.

Real clients (boto3, requests through the production EarthdataSession) against real sandbox
servers; timing figures come from the model's ledger, never from wall-clock bounds (the only
wall-clock check is a lower bound: the accounted delays were really waited out).
"""
from __future__ import annotations

import math
import threading
import time
from contextlib import ExitStack
from statistics import median

import boto3
import numpy as np
import pytest
from botocore.config import Config

from sandbox.emulator import ServerThread
from sandbox.netmodel import (
    MB,
    KeepAliveServer,
    NetworkConfig,
    NetworkConfigError,
    NetworkModel,
    ShapedApp,
)
from sandbox.services import Sandbox

LAMBDA = NetworkConfig.parse("lambda-us-west-2")
MIB = 2**20


def _s3(url: str):
    return boto3.client("s3", region_name="us-west-2", endpoint_url=url, aws_access_key_id="testing",
                        aws_secret_access_key="testing",
                        config=Config(retries={"max_attempts": 1}, max_pool_connections=10))


@pytest.fixture
def net_sandbox(mini_scene, tmp_path):
    """``net_sandbox(spec)``: a fresh mini-scene Sandbox behind the network ``spec``."""
    with ExitStack() as stack:
        def start(spec: str) -> Sandbox:
            return stack.enter_context(Sandbox(mini_scene, workdir=tmp_path / "w", network=spec))

        yield start


def _put(sb: Sandbox, size: int, key: str = "netmodel/blob") -> tuple[str, str]:
    bucket = sb.scene.granules[1].bucket
    sb.boto3_client("s3").put_object(Bucket=bucket, Key=key, Body=np.random.default_rng(size).bytes(size))
    return bucket, key


# --- configuration ---------------------------------------------------------------------------------
def test_off_installs_no_model_and_no_wrapper(mini_sandbox):
    assert mini_sandbox.netmodel is None
    assert mini_sandbox.aws_url == mini_sandbox.moto_url
    assert all(type(s) is ServerThread and not isinstance(s._server.app, ShapedApp)
               for s in mini_sandbox.servers.values())
    assert NetworkConfig.parse("off") is None and NetworkConfig.parse("") is None and NetworkConfig.parse(None) is None


def test_presets_and_custom_specs():
    assert LAMBDA == NetworkConfig() and LAMBDA.name == "lambda-us-west-2"
    custom = NetworkConfig.parse("latency_ms=30, p99_ms=90,conn_mbps=40,seed=7")
    assert (custom.name, custom.latency_ms, custom.latency_p99_ms, custom.conn_mbps, custom.seed) == \
           ("custom", 30.0, 90.0, 40.0, 7)
    assert custom.aggregate_mbps == LAMBDA.aggregate_mbps  # the rest from the preset
    assert NetworkConfig.parse("lambda-us-west-2,burst_mb=0").burst_mb == 0.0


@pytest.mark.parametrize("spec, field", [
    ("lan", "lan"), ("latency_ms=fast", "latency_ms"), ("bandwidth=10", "bandwidth"),
    ("conn_mbps=0", "conn_mbps"), ("latency_ms=300", "latency_p99_ms"), ("connect_ms=-1", "connect_ms"),
])
def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(NetworkConfigError, match=field):
        NetworkConfig.parse(spec)


def test_sandbox_takes_the_model_from_the_environment(mini_scene, tmp_path, monkeypatch):
    monkeypatch.setenv("COLOC_SANDBOX_NETWORK", "lambda-us-west-2,seed=3")
    box = Sandbox(mini_scene, workdir=tmp_path)  # not started: the constructor reads the env
    assert box.netmodel is not None and box.netmodel.config.seed == 3
    assert Sandbox(mini_scene, workdir=tmp_path, network="off").netmodel is None  # argument wins


def test_command_lines_choose_flag_then_environment_then_their_default(monkeypatch):
    from sandbox.netmodel import choose

    assert choose(None, "lambda-us-west-2").config == LAMBDA  # the demo's and the bench's default
    assert choose(None, "off").config is None  # python -m sandbox.services
    monkeypatch.setenv("COLOC_SANDBOX_NETWORK", "off")
    assert choose(None, "lambda-us-west-2").config is None
    assert choose("seed=4", "off").config.seed == 4
    assert "off" in choose("off", "off").label and "85 MB/s" in choose("lambda-us-west-2,seed=1", "off").label


def test_first_byte_delays_are_lognormal_with_the_configured_median_and_p99():
    model = NetworkModel(LAMBDA)
    draws = np.array([model.first_byte_s() for _ in range(20000)]) * 1e3
    assert median(draws) == pytest.approx(LAMBDA.latency_ms, rel=0.05)
    assert np.percentile(draws, 99) == pytest.approx(LAMBDA.latency_p99_ms, rel=0.10)
    assert draws.min() > 0


def test_draws_are_deterministic_with_a_seed():
    a, b, c = (NetworkModel(NetworkConfig.parse(f"seed={s}")) for s in (1, 1, 2))
    first = [a.first_byte_s() for _ in range(50)]
    assert first == [b.first_byte_s() for _ in range(50)]
    assert first != [c.first_byte_s() for _ in range(50)]
    a.reset()  # back at the seed
    assert [a.first_byte_s() for _ in range(50)] == first


def test_aggregate_bucket_bursts_then_holds_the_sustained_rate():
    """The token bucket alone, on a simulated clock: burst_mb above the sustained rate at up to
    peak_mbps, then aggregate_mbps; after an idle spell the burst is back."""
    cfg = NetworkConfig(conn_mbps=1000.0, aggregate_mbps=75.0, burst_mb=10.0, peak_mbps=300.0)
    now = [0.0]
    model = NetworkModel(cfg, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    conn, _ = model.connection({"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "1"})

    def move(total: int, step: int = 100_000) -> float:
        """One body of ``total`` bytes: its modelled duration (the simulated clock follows it)."""
        model.body_started(conn)
        begin = conn.next_free
        for _ in range(total // step):
            release, free = model.reserve(conn, step)
            model.wait_until(release)
        model.body_ended()
        now[0] = max(now[0], free)
        return free - begin

    # at peak until the bucket is empty: burst_mb / (1 - aggregate/peak) = 13.3 MB in 44 ms
    assert move(12_000_000) == pytest.approx(12 / 300, rel=0.02)
    # then the sustained rate: 200 MB in all take (200 - burst) / aggregate seconds
    assert 12 / 300 + move(188_000_000) == pytest.approx((200 - cfg.burst_mb) / cfg.aggregate_mbps, rel=0.02)
    assert move(75_000_000) == pytest.approx(1.0, rel=0.02)
    now[0] += cfg.burst_mb / cfg.aggregate_mbps + 1.0  # idle: the bucket refills
    assert move(12_000_000) == pytest.approx(12 / 300, rel=0.02)


# --- over HTTP, against the sandbox's servers -------------------------------------------------------
def test_every_server_is_modelled_and_the_tea_path_pays_each_hop(net_sandbox):
    """TEA's redirect and the presigned GET it points at each cost a first byte, each on a new
    connection of its own host; a second TEA request reuses TEA's pooled connection."""
    from core.access.earthdata import EarthdataSession, StaticToken

    sb = net_sandbox("lambda-us-west-2")
    assert all(isinstance(s, KeepAliveServer) and isinstance(s.app, ShapedApp) for s in sb.servers.values())
    assert {"aws", "cmr", "edl", "nsidc", "podaac"} <= set(sb.servers)
    g = sb.scene.granules[0]
    sb.netmodel.reset()
    with EarthdataSession(sb.settings, StaticToken(sb.edl_token)) as session:
        body = session.get(sb.links(g)["https"]).content
        session.get(sb.links(g)["s3credentials"]).json()
    rows = sb.netmodel.ledger.snapshot()
    assert len(body) == g.path.stat().st_size
    assert rows[0].app == "nsidc" and rows[0].new_connection and rows[0].bytes < 10_000  # the redirect
    (data,) = [r for r in rows if r.bytes == len(body)]
    assert data.app != "nsidc" and data.new_connection  # another host: its own set-up
    assert data.body_s == pytest.approx(len(body) / (LAMBDA.conn_mbps * MB), rel=0.2)
    assert rows[-1].app == "nsidc" and not rows[-1].new_connection  # /s3credentials: pooled
    assert all(r.first_byte_s > 0 for r in rows)


def test_a_16_mb_get_takes_size_over_bandwidth_plus_latency(net_sandbox):
    sb = net_sandbox("lambda-us-west-2")
    size = 16 * MIB
    bucket, key = _put(sb, size)
    s3 = _s3(sb.aws_url)
    sb.netmodel.reset()
    t0 = time.monotonic()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    wall = time.monotonic() - t0
    (r,) = sb.netmodel.ledger.snapshot("aws")
    assert r.bytes == len(body) == size
    assert r.new_connection and r.connect_s == LAMBDA.connect_ms / 1e3
    assert r.first_byte_s == NetworkModel(LAMBDA).first_byte_s()  # the seed's first draw
    transfer = size / (LAMBDA.conn_mbps * MB)
    expected = transfer + r.first_byte_s + r.connect_s
    accounted = r.connect_s + r.first_byte_s + r.body_s
    assert accounted == pytest.approx(expected, rel=0.2)
    assert r.body_s >= transfer * 0.999  # never faster than the connection's cap
    assert wall >= accounted - 0.005  # and the client really waited it out


def test_100_sequential_small_gets_on_one_pooled_connection_cost_100_latencies(net_sandbox):
    sb = net_sandbox("lambda-us-west-2")
    bucket, key = _put(sb, 64 * 1024)
    s3 = _s3(sb.aws_url)
    sb.netmodel.reset()
    for _ in range(100):
        assert len(s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-4095")["Body"].read()) == 4096
    rows = sb.netmodel.ledger.snapshot("aws")
    assert len(rows) == 100
    assert rows[0].new_connection and sum(r.new_connection for r in rows) == 1  # pooled: one set-up
    assert len({r.connection for r in rows}) == 1
    replay = NetworkModel(LAMBDA)
    assert [r.first_byte_s for r in rows] == [replay.first_byte_s() for _ in range(100)]
    mean_latency = LAMBDA.latency_ms / 1e3 * math.exp(LAMBDA.latency_sigma ** 2 / 2)
    accounted = sum(r.connect_s + r.first_byte_s + r.body_s for r in rows)
    assert accounted == pytest.approx(100 * mean_latency + LAMBDA.connect_ms / 1e3, rel=0.2)
    assert sum(r.body_s for r in rows) < 0.01  # 400 kB: bandwidth is not what these cost


def test_8_parallel_connections_share_the_aggregate_cap(net_sandbox):
    # fixed first byte and no burst, so the shares are the aggregate's alone
    sb = net_sandbox("latency_ms=20,p99_ms=20,connect_ms=0,burst_mb=0")
    cfg = sb.netmodel.config
    size = 16 * MIB
    bucket, key = _put(sb, size)
    clients = [_s3(sb.aws_url) for _ in range(8)]
    for c in clients:  # one warm connection each
        c.head_object(Bucket=bucket, Key=key)

    def run_eight() -> list:
        sb.netmodel.reset()
        gate = threading.Barrier(8)
        sizes = [0] * 8

        def get(i: int) -> None:
            gate.wait()
            sizes[i] = len(clients[i].get_object(Bucket=bucket, Key=key)["Body"].read())

        threads = [threading.Thread(target=get, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sizes == [size] * 8
        return sb.netmodel.ledger.snapshot("aws")

    for _ in range(3):  # a starved machine can start the eight far apart; the shares need them together
        rows = run_eight()
        lo, hi = max(r.body_started for r in rows), min(r.body_started + r.body_s for r in rows)
        if hi - lo > 0.5:
            break
    assert hi - lo > 0.5, "the eight transfers hardly overlapped, three times"
    assert len(rows) == 8 and len({r.connection for r in rows}) == 8 and not any(r.new_connection for r in rows)
    cap = cfg.aggregate_mbps * MB
    span = max(r.body_started + r.body_s for r in rows) - min(r.body_started for r in rows)
    assert sum(r.bytes for r in rows) / span <= cap * 1.02  # together, start to end: the aggregate cap
    # while all eight were in flight, from the slices' schedule
    moved = [sum(n for t, n in r.slices if lo <= t < hi) for r in rows]
    assert sum(moved) / (hi - lo) <= cap * 1.02  # the sum of their rates stays under the cap
    assert sum(moved) / (hi - lo) >= cap * 0.9  # and they use it
    for m in moved:  # each about an eighth
        assert m / (hi - lo) == pytest.approx(cap / 8, rel=0.2)
