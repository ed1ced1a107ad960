"""A network model for the sandbox: every response the code under test receives pays Lambda's prices.

The sandbox runs on loopback, where a request costs microseconds and bytes cost nothing. With a
model on, every sandbox server (moto's S3/Secrets Manager/Step Functions front end, CMR, EDL,
TEA, the presigned-S3 host, the on-prem host, the S3 fault proxy) is served by a keep-alive WSGI
server (waitress: the werkzeug dev server closes every connection, so pooling could not show)
behind :class:`ShapedApp`, which, per request:

1. charges one extra round trip (``connect_ms``) on the first request of a new TCP connection
   (TLS set-up; a pooled connection pays it once);
2. sleeps a first-byte delay drawn from a lognormal with median ``latency_ms`` and 99th
   percentile ``latency_p99_ms``;
3. releases the body in slices on a schedule: each connection with a body in flight gets an
   equal share of the aggregate (``peak_mbps`` while a token bucket ``burst_mb`` deep still has
   tokens, else ``aggregate_mbps``, the rate it refills at), at most ``conn_mbps``. The schedule
   is virtual: a slice is never released before its time, and a producer that falls behind
   (a busy machine) catches up instead of losing time, so what the ledger accounts does not
   depend on the machine's load.

Every delay it imposes is written to its :class:`Ledger`, so tests prove the model by what it
accounts for, not by wall-clock bounds. Figures and sources: docs/NETWORK.md.

    COLOC_SANDBOX_NETWORK=off | lambda-us-west-2 | "lambda-us-west-2,latency_ms=30,seed=7"

Off means no model object and no wrapper at all: the servers are exactly those without a model.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from statistics import NormalDist

ENV_VAR = "COLOC_SANDBOX_NETWORK"
MB = 1e6
SLICE = 128 * 1024  # bytes released per scheduling step (1.5 ms at 85 MB/s)
_Z99 = NormalDist().inv_cdf(0.99)

logging.getLogger("waitress").setLevel(logging.ERROR)  # "task queue depth" chatter under load


class NetworkConfigError(ValueError):
    """A network spec that cannot be read; the message names the field."""


@dataclass(frozen=True)
class NetworkConfig:
    """The figures of one modelled network (defaults: Lambda in us-west-2, see docs/NETWORK.md)."""

    name: str = "lambda-us-west-2"
    latency_ms: float = 50.0  # median first-byte delay per request
    latency_p99_ms: float = 200.0  # its 99th percentile (lognormal tail)
    connect_ms: float = 50.0  # one extra round trip per new connection (TLS set-up)
    conn_mbps: float = 85.0  # MB/s per connection (one S3 GET)
    aggregate_mbps: float = 75.0  # MB/s for all connections together, sustained
    burst_mb: float = 262.5  # MB the aggregate may move above the sustained rate first
    peak_mbps: float = 337.5  # MB/s ceiling during the burst (2.7 Gbit/s)
    seed: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "seed"):
                continue
            if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                raise NetworkConfigError(f"{f.name} must be a number >= 0, got {value!r}")
        for rate in ("conn_mbps", "aggregate_mbps", "peak_mbps"):
            if getattr(self, rate) <= 0:
                raise NetworkConfigError(f"{rate} must be > 0")
        if self.latency_p99_ms < self.latency_ms:
            raise NetworkConfigError("latency_p99_ms must be >= latency_ms")
        if self.peak_mbps < self.aggregate_mbps:
            raise NetworkConfigError("peak_mbps must be >= aggregate_mbps")

    @property
    def latency_sigma(self) -> float:
        """Sigma of the lognormal whose median and 99th percentile are the configured ones."""
        if self.latency_ms == 0:
            return 0.0
        return math.log(self.latency_p99_ms / self.latency_ms) / _Z99

    def describe(self) -> str:
        return (f"{self.name}: first byte median {self.latency_ms:g} ms / p99 {self.latency_p99_ms:g} ms, "
                f"+{self.connect_ms:g} ms per new connection, {self.conn_mbps:g} MB/s per connection, "
                f"{self.aggregate_mbps:g} MB/s aggregate after a {self.burst_mb:g} MB burst "
                f"(peak {self.peak_mbps:g} MB/s), seed {self.seed}")

    @classmethod
    def parse(cls, spec: str | NetworkConfig | None) -> NetworkConfig | None:
        """``off``/empty → None; a preset name; or ``[preset,]key=value,...`` over the preset."""
        if spec is None or isinstance(spec, NetworkConfig):
            return spec
        parts = [p.strip() for p in str(spec).split(",") if p.strip()]
        if not parts or parts == ["off"]:
            return None
        base = PRESETS["lambda-us-west-2"]
        if "=" not in parts[0]:
            if parts[0] not in PRESETS:
                raise NetworkConfigError(
                    f"{ENV_VAR}: unknown network {parts[0]!r} (off, {', '.join(PRESETS)} or key=value,...)")
            base, parts = PRESETS[parts[0]], parts[1:]
        fields = {f.name for f in dataclasses.fields(cls)} | {"p99_ms"}
        changes: dict = {}
        for part in parts:
            key, sep, raw = part.partition("=")
            key = key.strip()
            if not sep or key not in fields or key == "name":
                raise NetworkConfigError(f"{ENV_VAR}: unknown setting {key!r} (known: {', '.join(sorted(fields))})")
            try:
                value = int(raw) if key == "seed" else float(raw)
            except ValueError:
                raise NetworkConfigError(f"{ENV_VAR}: {key} must be a number, got {raw!r}") from None
            changes["latency_p99_ms" if key == "p99_ms" else key] = value
        if changes:
            changes["name"] = "custom"
        return dataclasses.replace(base, **changes)

    @classmethod
    def from_env(cls, default: str = "off") -> NetworkConfig | None:
        return cls.parse(os.environ.get(ENV_VAR, default))


PRESETS = {"lambda-us-west-2": NetworkConfig()}


# --- the ledger ----------------------------------------------------------------------------------
@dataclass
class RequestRecord:
    """What the model charged one request (seconds; ``body_s`` is the modelled body duration)."""

    app: str
    method: str
    path: str
    connection: int  # serial of the TCP connection it arrived on
    new_connection: bool
    connect_s: float
    first_byte_s: float
    started: float  # time.monotonic() when the request reached the model
    bytes: int = 0
    wait_s: float = 0.0  # time the bandwidth caps actually held the body back (real sleeps)
    body_started: float | None = None  # monotonic release time of the first body slice
    body_s: float = 0.0  # the modelled body duration: first slice's release → end of the last one
    slices: list[tuple[float, int]] = field(default_factory=list)  # (release time, bytes) per slice
    done: bool = False
    range: str = ""  # the request's Range header ("bytes=a-b"), if any


class Ledger:
    """Thread-safe list of every request the model saw, with totals."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self.records.append(record)

    def clear(self) -> None:
        with self._lock:
            self.records.clear()

    def snapshot(self, app: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [dataclasses.replace(r, slices=list(r.slices)) for r in self.records if app is None or r.app == app]

    def summary(self) -> dict:
        """Totals overall and per app: requests, new connections, seconds of each kind, bytes."""
        def totals(rows: list[RequestRecord]) -> dict:
            return {
                "requests": len(rows),
                "new_connections": sum(r.new_connection for r in rows),
                "connect_s": round(sum(r.connect_s for r in rows), 3),
                "first_byte_s": round(sum(r.first_byte_s for r in rows), 3),
                "bandwidth_wait_s": round(sum(r.wait_s for r in rows), 3),
                "body_s": round(sum(r.body_s for r in rows), 3),
                "bytes": sum(r.bytes for r in rows),
            }

        rows = self.snapshot()
        out = totals(rows)
        out["by_app"] = {app: totals([r for r in rows if r.app == app]) for app in sorted({r.app for r in rows})}
        return out


# --- the model -------------------------------------------------------------------------------------
@dataclass
class _Connection:
    serial: int
    requests: int = 0
    next_free: float = 0.0  # monotonic time from which this connection may send again


class NetworkModel:
    """One client's network: shared aggregate bucket, per-connection state, a ledger, a seeded RNG."""

    def __init__(self, config: NetworkConfig, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.ledger = Ledger()
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._connections: weakref.WeakKeyDictionary[object, _Connection] = weakref.WeakKeyDictionary()
        self._by_address: dict[tuple, _Connection] = {}
        self._serial = 0
        self._active = 0  # connections with a body in flight
        self.reset()

    def reset(self) -> None:
        """Fresh ledger, full burst, the RNG back at its seed (connections stay as they are)."""
        with self._lock:
            self._rng = random.Random(self.config.seed)
            self._tokens = self.config.burst_mb * MB  # the burst bucket, full
            self._refilled = self._clock()
        self.ledger.clear()

    # -- draws ------------------------------------------------------------------------------------
    def first_byte_s(self) -> float:
        cfg = self.config
        with self._lock:
            if cfg.latency_ms == 0:
                return 0.0
            return self._rng.lognormvariate(math.log(cfg.latency_ms / 1e3), cfg.latency_sigma)

    # -- connections --------------------------------------------------------------------------------
    def connection(self, environ: dict) -> tuple[_Connection, bool]:
        """The state of the TCP connection a request came on, and whether this is its first request.

        waitress hands each connection's channel to the app as the owner of
        ``waitress.client_disconnected``; werkzeug gives the socket; else the peer address."""
        owner = getattr(environ.get("waitress.client_disconnected"), "__self__", None)
        owner = owner if owner is not None else environ.get("werkzeug.socket")
        with self._lock:
            if owner is not None:
                conn = self._connections.get(owner)
            else:
                owner = (environ.get("REMOTE_ADDR"), environ.get("REMOTE_PORT"), environ.get("SERVER_PORT"))
                conn = self._by_address.get(owner)
            new = conn is None
            if new:
                self._serial += 1
                conn = _Connection(self._serial)
                if isinstance(owner, tuple):
                    self._by_address[owner] = conn
                else:
                    self._connections[owner] = conn
            conn.requests += 1
        return conn, new

    # -- bandwidth ----------------------------------------------------------------------------------
    def body_started(self, conn: _Connection) -> None:
        with self._lock:
            self._active += 1
            conn.next_free = max(conn.next_free, self._clock())

    def body_ended(self) -> None:
        with self._lock:
            self._active -= 1

    def reserve(self, conn: _Connection, n: int) -> tuple[float, float]:
        """Book ``n`` bytes on ``conn``: (its release time, when the connection is free again).

        The connection's share: min(conn_mbps, aggregate / connections in flight), where the
        aggregate is peak_mbps while the burst bucket (refilling at aggregate_mbps, up to
        burst_mb) has tokens, else aggregate_mbps. Times follow the connection's own schedule."""
        cfg = self.config
        with self._lock:
            now = self._clock()
            self._tokens = min(cfg.burst_mb * MB, self._tokens + (now - self._refilled) * cfg.aggregate_mbps * MB)
            self._refilled = now
            aggregate = cfg.peak_mbps if self._tokens > 0 else cfg.aggregate_mbps
            rate = min(cfg.conn_mbps, aggregate / max(1, self._active)) * MB
            self._tokens -= n
            release = conn.next_free
            conn.next_free = release + n / rate
            return release, conn.next_free

    def wait_until(self, t: float) -> float:
        delay = t - self._clock()
        if delay > 0:
            self._sleep(delay)
            return delay
        return 0.0

    # -- serving ------------------------------------------------------------------------------------
    def wrap(self, app, name: str) -> ShapedApp:
        return ShapedApp(app, self, name)

    def server(self, app, name: str) -> KeepAliveServer:
        """A keep-alive server on 127.0.0.1 (dynamic port) serving ``app`` through this model."""
        return KeepAliveServer(self.wrap(app, name), name)


class ShapedApp:
    """WSGI middleware applying a :class:`NetworkModel` to every response of ``app``."""

    def __init__(self, app, model: NetworkModel, name: str):
        self.app, self.model, self.name = app, model, name

    def __call__(self, environ, start_response):
        model = self.model
        conn, new = model.connection(environ)
        record = RequestRecord(
            self.name, environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""), conn.serial, new,
            connect_s=model.config.connect_ms / 1e3 if new else 0.0, first_byte_s=model.first_byte_s(),
            started=model._clock(), range=environ.get("HTTP_RANGE", ""),
        )
        model.ledger.add(record)
        model._sleep(record.connect_s + record.first_byte_s)
        # moto reads the undecoded path from RAW_URI (werkzeug's name); waitress calls it REQUEST_URI
        if "RAW_URI" not in environ and "REQUEST_URI" in environ:
            environ["RAW_URI"] = environ["REQUEST_URI"]
        return self._paced(self.app(environ, start_response), conn, record)

    def _paced(self, body: Iterable[bytes], conn: _Connection, record: RequestRecord) -> Iterator[bytes]:
        model = self.model
        try:
            for chunk in body:
                view = memoryview(chunk)
                for i in range(0, len(view), SLICE):
                    piece = view[i:i + SLICE]
                    if record.body_started is None:
                        model.body_started(conn)
                    release, free_at = model.reserve(conn, len(piece))
                    if record.body_started is None:
                        record.body_started = release
                    record.wait_s += model.wait_until(release)
                    record.bytes += len(piece)
                    record.slices.append((release, len(piece)))
                    record.body_s = free_at - record.body_started
                    yield bytes(piece)
        finally:
            if record.body_started is not None:
                model.body_ended()
            record.done = True
            if hasattr(body, "close"):
                body.close()


# --- a keep-alive server -----------------------------------------------------------------------------
class KeepAliveServer:
    """waitress on 127.0.0.1 with a dynamic port, in a thread; the interface of emulator.ServerThread."""

    def __init__(self, app, name: str, *, threads: int = 16):
        from waitress.server import create_server

        self.name = name
        # ident "": no Server header of waitress's own; forwarded-for headers passed on untouched
        self._server = create_server(app, host="127.0.0.1", port=0, threads=threads, ident="",
                                     clear_untrusted_proxy_headers=False, channel_timeout=120)
        self.port = int(self._server.effective_port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"sandbox-{name}", daemon=True)

    @property
    def app(self):
        return self._server.application

    @app.setter
    def app(self, value) -> None:
        self._server.application = value

    def _loop(self) -> None:
        server = self._server
        while not self._stopping.is_set():
            server.asyncore.loop(timeout=0.5, map=server._map, use_poll=True, count=1)
        for channel in list(server._map.values()):  # the listener, the trigger and open connections
            try:
                channel.close()
            except OSError:  # pragma: no cover - already gone
                pass
        server.task_dispatcher.shutdown(timeout=2)

    def start(self) -> KeepAliveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        try:
            self._server.pull_trigger()
        except OSError:  # pragma: no cover
            pass
        self._thread.join(timeout=5)


@dataclass(frozen=True)
class NetworkChoice:
    """What a command line asked for: the config (None = off) and a label for its banner."""

    config: NetworkConfig | None

    @property
    def label(self) -> str:
        return "off (loopback: no latency, no bandwidth limit)" if self.config is None else self.config.describe()


def choose(cli_value: str | None, default: str) -> NetworkChoice:
    """``--network`` if given, else $COLOC_SANDBOX_NETWORK, else ``default``."""
    if cli_value is not None:
        return NetworkChoice(NetworkConfig.parse(cli_value))
    return NetworkChoice(NetworkConfig.parse(os.environ.get(ENV_VAR) or default))
