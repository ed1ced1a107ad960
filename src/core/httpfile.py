"""Read a DAAC object in place over HTTPS with Earthdata Login (outside us-west-2).

The DAAC's temporary S3 credentials work only in us-west-2; anywhere else the same object is
reachable through TEA, which answers with a 303 to a presigned S3 or (outside the region) a
signed CloudFront URL. :func:`open_https_granule` resolves that redirect **once** per granule
(one 1-byte ``Range`` GET through the EarthdataSession: token and allowlist as for any
download), then reads with ``Range`` requests on the resolved URL through fsspec's
``BlockCache`` with the block size and block count of the S3 path (core.s3access), so HDF5
fetches the same blocks — the same bytes — either way. A resolved URL that stops working
(signed CloudFront URLs can be short-lived: ASF's last 15 s) is resolved again, at most
``max_resolves`` times per file.
"""
from __future__ import annotations

import io
import logging

import requests
from fsspec.caching import BlockCache

from core.config import Settings
from core.download import CONTENT_RANGE, IDENTITY, first_range
from core.earthdata import redact_url
from core.errors import NotFoundError, UpstreamError
from core.http import failure_cause
from core.s3access import MAX_CACHED_BLOCKS  # the S3 path's cache: the same blocks either way

log = logging.getLogger(__name__)


def _service(url: str) -> str:
    return f"HTTPS {redact_url(url)}"


def resolve(session: requests.Session, url: str) -> tuple[str, int]:
    """(the URL TEA redirects ``url`` to, the object's size) from a 1-byte ``Range`` GET."""
    try:
        resp, size = first_range(session, url, 1)
    except requests.RequestException as exc:
        raise UpstreamError(f"resolving failed after retries ({failure_cause(exc)})", service=_service(url)) from None
    try:
        if resp.status_code == 404:
            raise NotFoundError(f"not found: {redact_url(url)}")
        if size is not None:
            return resp.url, size
        raise UpstreamError(f"HTTP {resp.status_code} without a byte range to a Range request",
                            service=_service(url))
    finally:
        resp.close()


class HttpsGranuleFile(io.RawIOBase):
    """A read-only, seekable file over HTTPS ``Range`` requests with a block cache.

    Like core.s3access's files: ``size``, ``bytes_fetched`` and ``fetch_requests`` (block
    fetches), plus ``resolves`` (TEA redirects resolved) and ``resolved_host``."""

    def __init__(self, session: requests.Session, url: str, settings: Settings, *, max_resolves: int = 3):
        super().__init__()
        self.session = session
        self.url = url
        self.max_resolves = max_resolves
        self._resolved, self.size = resolve(session, url)
        self.resolves = 1
        self.bytes_fetched = 0
        self.fetch_requests = 0
        self.loc = 0
        self.cache = BlockCache(settings.s3_block_size, self._fetch, self.size, maxblocks=MAX_CACHED_BLOCKS)

    @property
    def resolved_host(self) -> str:
        return redact_url(self._resolved).split("/")[2]

    def _fetch(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        while True:
            try:
                resp = self.session.get(self._resolved, headers={**IDENTITY, "Range": f"bytes={start}-{end - 1}"})
                data = resp.content  # a body cut short raises here
            except requests.RequestException as exc:
                # never requests' own message: it repeats the signed URL with its query
                raise UpstreamError(f"range {start}-{end - 1} failed after retries ({failure_cause(exc)})",
                                    service=_service(self.url)) from None
            if resp.status_code in (401, 403) and self.resolves < self.max_resolves:
                # the signed URL expired (or was refused): ask TEA for a new one
                log.info("resolved URL of %s refused (HTTP %d); resolving again", redact_url(self.url),
                         resp.status_code)
                self._resolved, size = resolve(self.session, self.url)
                self.resolves += 1
                if size != self.size:
                    raise UpstreamError(f"object changed size from {self.size} to {size} while reading",
                                        service=_service(self.url))
                continue
            break
        match = CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
        if resp.status_code != 206 or not match or int(match.group(1)) != start or len(data) != end - start:
            raise UpstreamError(
                f"range {start}-{end - 1} answered HTTP {resp.status_code} with {len(data)} bytes"
                f" ({resp.headers.get('Content-Range', 'no Content-Range')})", service=_service(self.url))
        self.bytes_fetched += len(data)
        self.fetch_requests += 1
        return data

    # --- io.RawIOBase ----------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.loc

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.loc, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.loc = base + offset
        return self.loc

    def read(self, size: int = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self.loc + size)
        data = self.cache._fetch(self.loc, end) if end > self.loc else b""
        self.loc += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_https_granule(session: requests.Session, url: str, settings: Settings) -> HttpsGranuleFile:
    return HttpsGranuleFile(session, url, settings)
