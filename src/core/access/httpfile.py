"""Read a DAAC object in place over HTTPS with Earthdata Login (outside us-west-2).

The DAAC's temporary S3 credentials work only in us-west-2; anywhere else the same object is
reachable through TEA, which answers with a 303 to a presigned S3 or (outside the region) a
signed CloudFront URL. :func:`open_https_granule` resolves that redirect **once** per granule
(one 1-byte ``Range`` GET through the EarthdataSession: token and allowlist as for any
download), then reads with ``Range`` requests on the resolved URL through fsspec's
``BlockCache`` with the block size and block count of the S3 path (core.access.s3access), so HDF5
fetches the same blocks — the same bytes — either way. A resolved URL that stops working
(signed CloudFront URLs can be short-lived: ASF's last 15 s) is resolved again, at most
``max_resolves`` times per file.

:class:`HttpsRangeFile` reads the same object as a core.access.rangefile.RangeFile: ranges known in
advance fetched side by side in a bounded thread pool, on the same resolved URL.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import requests
from fsspec.caching import BlockCache

from core.access.download import IDENTITY, TeaUrl, content_range, resolve
from core.access.earthdata import redact_url
from core.access.rangefile import RangeFile, SeekableReader
from core.access.s3access import MAX_CACHED_BLOCKS  # the S3 path's cache: the same blocks either way
from core.config import Settings
from core.errors import UpstreamError
from core.http import failure_cause

log = logging.getLogger(__name__)


def _service(url: str) -> str:
    return f"HTTPS {redact_url(url)}"


class HttpsRanges:
    """Ranged GETs of one object through TEA: the redirect resolved once
    (:func:`core.access.download.resolve`), then ``Range`` requests on the resolved URL, resolved again
    (:class:`core.access.download.TeaUrl`, at most ``max_resolves`` times in all) when it is refused with
    401/403 — a signed CloudFront URL can expire mid-read.

    The one place of the range/resolve logic: :class:`HttpsGranuleFile` (block cache) and
    :class:`HttpsRangeFile` (core.access.rangefile) both fetch through it."""

    def __init__(self, session: requests.Session, url: str, settings: Settings, *, max_resolves: int = 3):
        self.session = session
        self.url = url
        self.parallel = settings.s3_parallel
        resolved, self.size = resolve(session, url, _service(url))
        self.tea = TeaUrl(session, url, resolved, self.size, max_resolves=max_resolves, service=_service(url))

    @property
    def resolves(self) -> int:
        return self.tea.resolves

    @property
    def resolved_host(self) -> str:
        return self.tea.host

    def fetch(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object."""
        end = min(end, self.size)
        while True:
            url = self.tea.resolved
            try:
                resp = self.session.get(url, headers={**IDENTITY, "Range": f"bytes={start}-{end - 1}"})
                data = resp.content  # a body cut short raises here
            except requests.RequestException as exc:
                # never requests' own message: it repeats the signed URL with its query
                raise UpstreamError(f"range {start}-{end - 1} failed after retries ({failure_cause(exc)})",
                                    service=_service(self.url)) from None
            if resp.status_code in (401, 403) and self.tea.resolve_again(url, resp.status_code):
                continue
            break
        rng = content_range(resp)
        if rng is None or rng[0] != start or len(data) != end - start:
            raise UpstreamError(
                f"range {start}-{end - 1} answered HTTP {resp.status_code} with {len(data)} bytes"
                f" ({resp.headers.get('Content-Range', 'no Content-Range')})", service=_service(self.url))
        return data

    def fetch_many(self, ranges) -> list[bytes]:
        """``fetch_many`` for core.access.rangefile: the ranges side by side, at most ``s3_parallel`` in
        flight (the EarthdataSession's connection pool holds 16 per host)."""
        ranges = list(ranges)
        if len(ranges) <= 1:
            return [self.fetch(a, b) for a, b in ranges]
        with ThreadPoolExecutor(max_workers=min(self.parallel, len(ranges)),
                                thread_name_prefix="https-range") as pool:
            return list(pool.map(lambda r: self.fetch(*r), ranges))


class _ThroughTea:
    """What a file over :class:`HttpsRanges` reports: TEA redirects resolved, the host read from."""

    ranges: HttpsRanges

    @property
    def resolves(self) -> int:
        return self.ranges.resolves

    @property
    def resolved_host(self) -> str:
        return self.ranges.resolved_host


class HttpsGranuleFile(_ThroughTea, SeekableReader):
    """A read-only, seekable file over HTTPS ``Range`` requests with a block cache.

    Like core.access.s3access's files: ``size``, ``bytes_fetched`` and ``fetch_requests`` (block
    fetches), plus ``resolves`` (TEA redirects resolved) and ``resolved_host``."""

    def __init__(self, session: requests.Session, url: str, settings: Settings, *, max_resolves: int = 3):
        super().__init__()
        self.ranges = HttpsRanges(session, url, settings, max_resolves=max_resolves)
        self.url = url
        self.size = self.ranges.size
        self.bytes_fetched = 0
        self.fetch_requests = 0
        self.loc = 0
        self.cache = BlockCache(settings.s3_block_size, self._fetch, self.size, maxblocks=MAX_CACHED_BLOCKS)

    def _fetch(self, start: int, end: int) -> bytes:
        data = self.ranges.fetch(start, end)
        self.bytes_fetched += len(data)
        self.fetch_requests += 1
        return data

    def _read_range(self, start: int, end: int) -> bytes:
        return self.cache._fetch(start, end)


def open_https_granule(session: requests.Session, url: str, settings: Settings) -> HttpsGranuleFile:
    return HttpsGranuleFile(session, url, settings)


class HttpsRangeFile(_ThroughTea, RangeFile):
    """A core.access.rangefile.RangeFile over :class:`HttpsRanges` (``resolves``, ``resolved_host``)."""

    def __init__(self, ranges: HttpsRanges, **kwargs):
        super().__init__(ranges.fetch_many, ranges.size, name=redact_url(ranges.url).rsplit("/", 1)[-1], **kwargs)
        self.ranges = ranges


def https_sidecar(session: requests.Session, url: str, suffix: str = ".dmrpp") -> bytes | None:
    """The small object published beside ``url`` (its DMR++), through TEA; None when there is none
    (404, or refused: a sidecar is only ever a hint)."""
    sidecar = url + suffix
    try:
        resp = session.get(sidecar, headers=IDENTITY)
    except requests.RequestException as exc:
        log.info("no sidecar %s (%s)", redact_url(sidecar), failure_cause(exc))
        return None
    if resp.status_code != 200:
        log.info("no sidecar %s (HTTP %d)", redact_url(sidecar), resp.status_code)
        return None
    return resp.content
