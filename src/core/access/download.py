"""Streamed HTTPS downloads to local disk (Lambda: /tmp) that never hold a file in memory.

* free space is checked against ``Content-Length`` (or ``expected_size``) before writing;
* the body is verified against the transfer's own ``Content-Length``: the catalogue's
  ``expected_size`` (CMR) only sizes the first space check and may disagree;
* bytes go to a unique hidden ``.part`` name and are renamed only once the size is verified,
  so a file under its final name is always complete;
* a broken connection resumes with ``Range`` (at most ``max_resumes`` times) from the last
  whole chunk written (urllib3 discards the chunk being read when the connection breaks);
  a 206 must carry the matching ``Content-Range``, a 200 (``Range`` ignored) means restart;
* partial files are never reused across runs: a killed earlier run's ``.part`` files for the
  same name are deleted at the start (we cannot prove they came from the same URL and
  version), and a new download always starts at byte 0.

With ``parallel > 1`` a file larger than one part is fetched as parallel ranged GETs (one TCP
connection tops out near 85 MB/s; AWS's S3 performance guidelines: "one concurrent request for
each 85-90 MB/s", 8-16 MB byte ranges). The first ``Range`` GET goes through the session (token,
allowlist, TEA's redirect) and resolves the redirect once: its 206 gives the size, its final URL
the presigned S3 (or signed CloudFront) URL that the other ranges are fetched from, by a bounded
thread pool, each written with ``os.pwrite`` at its offset into the same ``.part`` file (one
chunk per worker in memory). A range that breaks resumes from its own last whole chunk; a 403
from the resolved URL (expired) resolves it again, once. A server that ignores ``Range`` (200) or
gives no size gets the single streamed GET above.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

import requests

from core.access.earthdata import redact_url
from core.atomic import UnsafeNameError, safe_basename
from core.errors import InputError, InsufficientSpaceError, NotFoundError, UpstreamError
from core.http import failure_cause

log = logging.getLogger(__name__)

# A little headroom so a full /tmp does not break whatever else the process writes.
SPACE_MARGIN_BYTES = 16 << 20
_BROKEN = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)
# Byte offsets and Content-Length must refer to the stored bytes, not a gzip transfer encoding.
IDENTITY = {"Accept-Encoding": "identity"}
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
DEFAULT_PART_BYTES = 16 << 20


def file_name_from_url(url: str) -> str:
    """The URL's last path segment as a safe basename (core.atomic.safe_basename)."""
    try:
        return safe_basename(unquote(urlsplit(url).path.rsplit("/", 1)[-1]))
    except UnsafeNameError as exc:
        raise InputError(f"cannot derive a file name from {redact_url(url)}: {exc}", field="url") from None


def _local_name(url: str, file_name: str | None) -> str:
    """The name a download is written under: a remote ``file_name`` (CMR's) only as a safe basename."""
    if not file_name:
        return file_name_from_url(url)
    try:
        return safe_basename(file_name)
    except UnsafeNameError as exc:
        raise UpstreamError(f"unsafe file name for {redact_url(url)}: {exc}", service="cmr") from None


def _service(url: str) -> str:
    return f"download {redact_url(url)}"


def _content_length(resp: requests.Response) -> int | None:
    value = resp.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


class _DiskUsage(Protocol):
    """What ``shutil.disk_usage`` returns, as far as a download needs it."""

    @property
    def free(self) -> int: ...


def _check_status(resp: requests.Response, url: str) -> None:
    if resp.status_code == 404:
        raise NotFoundError(f"not found: {redact_url(url)}")
    if resp.status_code not in (200, 206):
        raise UpstreamError(f"HTTP {resp.status_code}", service=_service(url))


def _remove_stale_parts(dest_dir: Path, name: str) -> None:
    for stale in dest_dir.glob(f".{glob_escape(name)}.*.part"):
        log.info("removing stale partial download %s", stale.name)
        stale.unlink(missing_ok=True)


def _check_space(dest_dir: Path, name: str, need: int, disk_usage: Callable[[str], _DiskUsage]) -> None:
    free = int(disk_usage(str(dest_dir)).free)
    if free < need + SPACE_MARGIN_BYTES:
        # the work folder's path is internal: the message names the file and the numbers only
        raise InsufficientSpaceError(
            f"not enough free space in the work folder for {name}: need {need} bytes "
            f"(+{SPACE_MARGIN_BYTES} margin), {free} free"
        )


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def content_range(resp: requests.Response) -> tuple[int, int, int | None] | None:
    """(first byte, last byte, size or None for ``*``) of a 206's ``Content-Range``; None otherwise."""
    if resp.status_code != 206:
        return None
    match = CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
    if not match:
        return None
    size = match.group(3)
    return int(match.group(1)), int(match.group(2)), int(size) if size.isdigit() else None


def get_through_tea(session: requests.Session, url: str, headers: dict[str, str]) -> requests.Response:
    """A streamed GET of ``url`` through ``session``, which follows TEA's redirect with the token
    and allowlist of any request. A signed URL refused (401/403) at the end of the redirect had
    expired on the way there (ASF signs CloudFront URLs for 15 s; granules resolve side by side):
    TEA is asked once more."""
    resp = session.get(url, stream=True, headers=headers)
    if resp.status_code in (401, 403) and resp.history:
        log.info("the signed URL TEA gave for %s was refused (HTTP %d); asking again", redact_url(url),
                 resp.status_code)
        resp.close()
        resp = session.get(url, stream=True, headers=headers)
    return resp


def first_range(session: requests.Session, url: str, length: int) -> tuple[requests.Response, int | None]:
    """GET the first ``length`` bytes of ``url`` through TEA (:func:`get_through_tea`): the
    streamed response, and the object's size if it answered 206 from byte 0 with a size; then
    ``resp.url`` is the URL the redirect resolved to (presigned: its query is a credential, log it
    only through redact_url). The size is None for anything else, e.g. a 200 from a server that
    ignores ``Range``."""
    resp = get_through_tea(session, url, {**IDENTITY, "Range": f"bytes=0-{length - 1}"})
    rng = content_range(resp)
    return resp, (rng[2] if rng is not None and rng[0] == 0 else None)


def resolve(session: requests.Session, url: str, service: str) -> tuple[str, int]:
    """(the URL TEA redirects ``url`` to, the object's size) from a 1-byte ``Range`` GET;
    ``service`` names a failure."""
    try:
        resp, size = first_range(session, url, 1)
    except requests.RequestException as exc:
        raise UpstreamError(f"resolving failed after retries ({failure_cause(exc)})", service=service) from None
    try:
        if resp.status_code == 404:
            raise NotFoundError(f"not found: {redact_url(url)}")
        if size is not None:
            return resp.url, size
        raise UpstreamError(f"HTTP {resp.status_code} without a byte range to a Range request", service=service)
    finally:
        resp.close()


class TeaUrl:
    """One object behind TEA and the URL its redirect resolved to (presigned S3 or signed
    CloudFront: a credential, logged only through redact_url), resolved again when refused (such
    URLs expire mid-read), at most ``max_resolves`` times in all, by one thread for all."""

    def __init__(self, session: requests.Session, url: str, resolved: str, size: int, *, max_resolves: int,
                 service: str):
        self.session, self.url, self.size = session, url, size
        self.resolved = resolved
        self.max_resolves = max_resolves
        self.service = service  # names a failure: which object, by which path
        self.resolves = 1
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        return redact_url(self.resolved).split("/")[2]

    def resolve_again(self, refused: str, status: int) -> bool:
        """A new URL from TEA unless another thread got one since ``refused``; False when out of
        resolves (one that fails is counted too: the other threads do not try again)."""
        with self._lock:
            if self.resolved != refused:
                return True
            if self.resolves >= self.max_resolves:
                return False
            log.info("resolved URL of %s refused (HTTP %d); resolving again", redact_url(self.url), status)
            self.resolves += 1
            resolved, size = resolve(self.session, self.url, self.service)
            if size != self.size:
                raise UpstreamError(f"object changed size from {self.size} to {size} while reading",
                                    service=self.service)
            self.resolved = resolved
        return True


def stream_download(
    session: requests.Session,
    url: str,
    dest_dir: str | os.PathLike,
    *,
    expected_size: int | None = None,
    chunk_size: int = 1 << 20,
    max_resumes: int = 5,
    file_name: str | None = None,
    disk_usage: Callable[[str], _DiskUsage] = shutil.disk_usage,
    on_bytes: Callable[[int], None] | None = None,
    parallel: int = 1,
    part_size: int = DEFAULT_PART_BYTES,
) -> Path:
    """Download ``url`` into ``dest_dir`` and return the final path (``on_bytes``: called with
    each chunk's size as it is written, e.g. for a progress bar; never concurrently).

    ``parallel``: ranged GETs of ``part_size`` bytes in flight at once (1: one streamed GET);
    ``max_resumes`` then bounds the resumes of each range. ``disk_usage``
    (``shutil.disk_usage``-like, ``.free`` in bytes) is a parameter so tests can present a small
    disk. Raises InsufficientSpaceError, NotFoundError, UpstreamError (size mismatch, too many
    broken connections) or the session's AuthError/DisallowedHostError.
    """
    if parallel < 1 or part_size < 1:
        raise ValueError(f"parallel and part_size must be >= 1, got {parallel} and {part_size}")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = _local_name(url, file_name)
    final = dest_dir / name
    _remove_stale_parts(dest_dir, name)
    if expected_size is not None:
        # the catalogue's size is known: refuse before the server starts sending
        _check_space(dest_dir, name, expected_size, disk_usage)

    resp, total = None, None
    # a file the catalogue says fits in one part gains nothing from ranges: one plain GET
    if parallel > 1 and (expected_size is None or expected_size > part_size):
        resp, total = first_range(session, url, part_size)
        if total is None and resp.status_code in (206, 416):
            # a range without the size (or none for an empty file): start again with a plain GET
            resp.close()
            resp = None
    if resp is None:
        resp = get_through_tea(session, url, IDENTITY)
    _check_status(resp, url)
    try:
        need = _size_to_write(url, total if total is not None else _content_length(resp), expected_size,
                              dest_dir, name, disk_usage)
    except InsufficientSpaceError:
        resp.close()
        raise

    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            if total is not None:  # the server serves ranges and said how big the file is
                done = _Ranges(session, url, resp.url, total, out, chunk_size, max_resumes, on_bytes).fetch_all(
                    resp, part_size, parallel)
            else:
                done = _write_stream(session, url, resp, out, need, chunk_size, max_resumes, on_bytes)
        size = tmp.stat().st_size
        want = need if need is not None else size
        if size != want:
            raise UpstreamError(f"got {size} bytes, expected {want}", service=_service(url))
        os.replace(tmp, final)
    except BaseException:
        resp.close()
        tmp.unlink(missing_ok=True)
        raise
    log.info("downloaded %s (%d bytes, %s)", redact_url(url), size, done)
    return final


def _size_to_write(url: str, total: int | None, expected_size: int | None, dest_dir: Path, name: str,
                   disk_usage: Callable[[str], _DiskUsage]) -> int | None:
    """The size the server announces (else the catalogue's), checked against the free space."""
    if total is not None and expected_size is not None and total != expected_size:
        # CMR's size and the server's can disagree: the transfer's own size is the one the body
        # is verified against (the caller records the catalogue's as a warning)
        log.warning("%s: server announces %d bytes, the catalogue says %d; using the server's",
                    redact_url(url), total, expected_size)
    need = total if total is not None else expected_size
    if need is not None and (expected_size is None or need > expected_size):
        _check_space(dest_dir, name, need, disk_usage)
    return need


def _write_stream(session: requests.Session, url: str, resp: requests.Response, out: BinaryIO,
                  need: int | None, chunk_size: int, max_resumes: int,
                  on_bytes: Callable[[int], None] | None) -> str:
    """One streamed GET into ``out``, resumed with ``Range`` when it breaks; what it took, for the log."""
    written = 0
    resumes = 0
    while True:
        try:
            for chunk in resp.iter_content(chunk_size):
                out.write(chunk)
                written += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
            resp.close()
            break
        except _BROKEN as exc:
            resp.close()
            if need is not None and written >= need:
                break
            resumes += 1
            if resumes > max_resumes:
                raise UpstreamError(
                    f"connection broke {resumes} times; got {written} of {need or '?'} bytes "
                    f"(last: {type(exc).__name__})",
                    service=_service(url),
                ) from None
            log.warning(
                "download of %s broke at byte %d (%s); resuming (%d/%d)",
                redact_url(url), written, type(exc).__name__, resumes, max_resumes,
            )
            out.flush()
            resp, written = _resume(session, url, out, written, need)
    return f"1 stream, {resumes} resumes"


class _Ranges:
    """One ranged download: TEA's resolved URL (:class:`TeaUrl`, resolved again once when
    refused), the ``.part`` file the ranges are written into at their offsets, and the bytes
    written so far."""

    def __init__(self, session: requests.Session, url: str, resolved: str, size: int, out: BinaryIO,
                 chunk_size: int, max_resumes: int, on_bytes: Callable[[int], None] | None):
        self.session, self.url, self.size = session, url, size
        # Range GETs to the resolved URL go through the same session: it sends no token or
        # cookie to a non-Earthdata host (the presigned query is the credential, and S3 refuses
        # a second one), still refuses hosts off the allowlist, and accepts a CloudFront URL only
        # because this session's own redirect from an Earthdata host vouched for that exact URL.
        # Two resolves in all: the first and one more when its URL is refused.
        self.tea = TeaUrl(session, url, resolved, size, max_resolves=2, service=_service(url))
        self.fd = out.fileno()
        self.chunk_size, self.max_resumes, self.on_bytes = chunk_size, max_resumes, on_bytes
        self.progress = threading.Lock()  # bytes written, on_bytes
        self.stop = threading.Event()  # set when one range failed: the others give up
        self.resumes = 0
        self.written = 0

    def fetch_all(self, first: requests.Response, part_size: int, parallel: int) -> str:
        """Write every range; ``first`` is the resolving response, whose range comes first (the
        caller closes it if this fails)."""
        got = content_range(first)
        assert got is not None  # first_range gave a size only for a 206 with a Content-Range
        head_end = min(got[1], self.size - 1)  # a server may send less than asked
        parts = [(0, head_end, first)] + [(start, min(start + part_size, self.size) - 1, None)
                                          for start in range(head_end + 1, self.size, part_size)]
        workers = min(parallel, len(parts))
        if workers == 1:  # one part: no pool
            self.fetch(*parts[0])
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download") as pool:
                futures = [pool.submit(self.fetch, *part) for part in parts]
                try:
                    for future in as_completed(futures):
                        future.result()
                except BaseException:
                    self.stop.set()  # the pool's exit waits for running ranges to stop
                    for future in futures:
                        future.cancel()
                    raise
        if self.written != self.size:
            raise UpstreamError(f"got {self.written} bytes, expected {self.size}", service=_service(self.url))
        return (f"{len(parts)} ranges over up to {workers} connections, {self.resumes} resumes, "
                f"{self.tea.resolves} resolves")

    def fetch(self, start: int, end: int, resp: requests.Response | None = None) -> None:
        """Bytes ``start``..``end`` (inclusive) into the file, resuming from the last whole chunk."""
        pos, resumes = start, 0
        if resp is None:
            resp = self._get(pos, end)
        while True:
            last = "no connection"
            if resp is not None:
                last = "short body"
                try:
                    for chunk in resp.iter_content(self.chunk_size):
                        if self.stop.is_set():
                            return
                        self._write(memoryview(chunk)[: end + 1 - pos], pos)
                        pos += min(len(chunk), end + 1 - pos)
                except _BROKEN as exc:
                    last = type(exc).__name__
                finally:
                    resp.close()
                if pos > end:
                    return
            if self.stop.is_set():
                return
            resumes += 1
            if resumes > self.max_resumes:
                raise UpstreamError(f"range {start}-{end} broke {resumes} times; got {pos - start} of "
                                    f"{end + 1 - start} bytes (last: {last})", service=_service(self.url))
            with self.progress:
                self.resumes += 1
            log.warning("range %d-%d of %s broke at byte %d (%s); resuming (%d/%d)", start, end,
                        redact_url(self.url), pos, last, resumes, self.max_resumes)
            resp = self._get(pos, end)

    def _write(self, data: memoryview, offset: int) -> None:
        while data:
            n = os.pwrite(self.fd, data, offset)
            data, offset = data[n:], offset + n
            with self.progress:
                self.written += n
                if self.on_bytes is not None:
                    self.on_bytes(n)

    def _get(self, start: int, end: int) -> requests.Response | None:
        """A streamed GET of bytes ``start``..``end`` of the resolved URL (None: no connection)."""
        while True:
            url = self.tea.resolved
            try:
                resp = self.session.get(url, stream=True, headers={**IDENTITY, "Range": f"bytes={start}-{end}"})
            except _BROKEN:
                return None  # the caller counts another resume
            if resp.status_code in (401, 403):
                resp.close()
                if not self.tea.resolve_again(url, resp.status_code):
                    raise UpstreamError(f"the resolved URL was refused (HTTP {resp.status_code}) after "
                                        "resolving again", service=_service(self.url))
                continue
            _check_status(resp, self.url)
            if content_range(resp) == (start, end, self.size):
                return resp
            resp.close()
            raise UpstreamError(f"range {start}-{end} answered HTTP {resp.status_code} "
                                f"({resp.headers.get('Content-Range', 'no Content-Range')})",
                                service=_service(self.url))


def _resume(session: requests.Session, url: str, out, written: int, total: int | None):
    """Re-request from byte ``written``; returns (response, bytes already kept)."""
    try:
        resp = get_through_tea(session, url, {**IDENTITY, "Range": f"bytes={written}-"})
    except _BROKEN:
        # the next loop turn reads nothing and counts another resume
        return _EmptyResponse(), written
    _check_status(resp, url)
    if resp.status_code == 206:
        rng = content_range(resp)
        if rng is not None and rng[0] == written and (total is None or rng[2] in (None, total)):
            return resp, written
        resp.close()
        raise UpstreamError(
            f"resume answered an unexpected Content-Range {resp.headers.get('Content-Range')!r}",
            service=_service(url),
        )
    # 200: the server ignored Range; start over
    if total is not None and _content_length(resp) not in (None, total):
        resp.close()
        raise UpstreamError("file changed size while resuming", service=_service(url))
    out.seek(0)
    out.truncate()
    return resp, 0


class _EmptyResponse:
    def iter_content(self, _size):
        raise requests.exceptions.ConnectionError("reconnect failed")

    def close(self):
        pass


@contextlib.contextmanager
def downloaded(session: requests.Session, url: str, dest_dir: str | os.PathLike, **kwargs) -> Iterator[Path]:
    """``with downloaded(...) as path:`` — the file is deleted when the block ends."""
    path = stream_download(session, url, dest_dir, **kwargs)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
