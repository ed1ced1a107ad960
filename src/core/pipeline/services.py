"""The clients a date's task works with, built once per process and handed in, and the choices
that depend on where the process runs (in the DAACs' region or not)."""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import requests

from core.access.credentials import CredentialsCache
from core.access.s3access import open_s3_filesystem
from core.config import Settings
from core.results import OutputStore, ResultStore


@dataclass
class Services:
    """The clients a task needs, built once per process and handed in (tests: sandbox-backed)."""

    settings: Settings
    http: requests.Session  # an EarthdataSession: token, host allowlist, retries
    credentials: CredentialsCache
    output: ResultStore  # the bucket (OutputStore) or a local folder (LocalOutputStore)
    clock: Callable[[], float] = time.time
    # progress(event, info) as the task goes (``colocate run``'s progress bar); None in Lambda.
    # Events: "found" {date, atl07, sst, skipped}, "stage" {name}, "bytes" {n},
    # "granule" {title, segments, matched}
    progress: Callable[[str, dict], None] | None = None
    _filesystems: dict = field(default_factory=dict, repr=False)
    _filesystems_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _endpoint_locks: dict = field(default_factory=dict, repr=False)

    def report(self, event: str, **info) -> None:
        if self.progress is not None:
            self.progress(event, info)

    def s3_filesystem(self, endpoint: str):
        """One s3fs filesystem per /s3credentials endpoint (credentials refresh themselves); the
        granules read side by side share it (one credentials request, one botocore client). One
        lock per endpoint: NSIDC's and PO.DAAC's credentials are fetched side by side (issue 26)."""
        with self._filesystems_lock:
            lock = self._endpoint_locks.setdefault(endpoint, threading.Lock())
        with lock:
            if endpoint not in self._filesystems:
                provider = self.credentials.provider(endpoint)
                self._filesystems[endpoint] = open_s3_filesystem(provider, self.settings)
            return self._filesystems[endpoint]


# At DEBUG these print signed requests: DAAC session tokens (x-amz-security-token), signatures,
# and presigned query strings (TEA's own X-Amz-Security-Token). Never below INFO, whatever the
# root level: secrets must not reach the logs even when someone turns on DEBUG.
SECRET_BEARING_LOGGERS = ("botocore.auth", "botocore.endpoint", "botocore.hooks", "botocore.parsers",
                          "aiobotocore.endpoint", "urllib3.connectionpool")


def quiet_secret_bearing_loggers() -> None:
    for name in SECRET_BEARING_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:
            logger.setLevel(logging.INFO)


MALLOC_ARENAS = 2


def limit_malloc_arenas() -> None:
    """At most MALLOC_ARENAS glibc malloc arenas in this process (``mallopt(M_ARENA_MAX)``, glibc
    mallopt(3); the same as the MALLOC_ARENA_MAX environment variable, set after start). A date's
    ~10 reader threads otherwise get an arena each (up to 8 per core), and each keeps the memory its
    thread freed: measured on the seed case, peak RSS 748 -> 668 MB with no change in wall time
    (issue 26). Nothing happens where the C library is not glibc."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError, TypeError):
        # the process's own symbols (no ldconfig subprocess at cold start): glibc's mallopt
        ctypes.CDLL(None).mallopt(-8, MALLOC_ARENAS)  # M_ARENA_MAX (malloc.h)


def build_services(settings: Settings, *, token_provider=None, s3_client=None,
                   output: ResultStore | None = None) -> Services:
    """Production wiring: EDL token from the environment / netrc / Secrets Manager. The output
    store is handed in (handlers.runtime builds the bucket's; ``colocate run`` a folder's), or
    the S3 client of the output bucket."""
    if output is None:
        if s3_client is None:
            raise TypeError("build_services needs output= or s3_client= (see handlers.runtime.output_store)")
        output = OutputStore(s3_client, settings.output_bucket, settings.output_prefix)

    quiet_secret_bearing_loggers()
    limit_malloc_arenas()

    from core.access.earthdata import EarthdataSession, token_provider_from_env

    http = EarthdataSession(settings, token_provider or token_provider_from_env(settings))
    return Services(
        settings=settings,
        http=http,
        credentials=CredentialsCache(http, refresh_margin_s=settings.credentials_refresh_margin_s),
        output=output,
    )


def in_daac_region(settings: Settings) -> bool:
    """Whether this process runs in the DAACs' region (their S3 credentials work only there).
    Lambda tells its region in AWS_REGION; no EC2 metadata lookup (it fails in Lambda)."""
    return os.environ.get("AWS_REGION") == settings.aws_region


def l2p_access(settings: Settings) -> str:
    """``s3`` or ``https``: how L2P granules are read (``auto``: s3 in the DAACs' region)."""
    mode = settings.l2p_access  # one of config.L2P_ACCESS: Settings refuses anything else
    if mode == "auto":
        return "s3" if in_daac_region(settings) else "https"
    return mode


class StageTimer:
    """Seconds per stage. Stages of one date overlap (downloads, L2P reads side by side): a
    stage's figure is the sum over its threads, and the stages add up to more than ``total``."""

    def __init__(self, clock: Callable[[], float], on_stage: Callable[..., None] | None = None):
        self.clock = clock
        self.on_stage = on_stage
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.on_stage is not None:
            self.on_stage("stage", name=name)
        t0 = self.clock()
        try:
            yield
        finally:
            with self._lock:
                self.seconds[name] = round(self.seconds.get(name, 0.0) + self.clock() - t0, 3)


def preload(settings: Settings) -> None:
    """Import what later stages need in a background thread while the task waits on the
    network: the quicklook's plotting stack (matplotlib, ~0.4 s of CPU; core.products.quicklook.preload)
    and, for reads in place, s3fs/aiobotocore (~0.3 s; imported lazily by core.access.s3access)."""
    def load():
        with contextlib.suppress(ImportError):
            if l2p_access(settings) == "s3" or settings.atl07_access != "download":
                import s3fs  # noqa: F401
            from core.products.quicklook import preload

            preload()

    threading.Thread(target=load, name="preload", daemon=True).start()
