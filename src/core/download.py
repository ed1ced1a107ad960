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
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import requests

from core.earthdata import redact_url
from core.errors import InputError, InsufficientSpaceError, NotFoundError, UpstreamError

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


def file_name_from_url(url: str) -> str:
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise InputError(f"cannot derive a file name from {redact_url(url)}", field="url")
    return name


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
        raise InsufficientSpaceError(
            f"not enough free space in {dest_dir} for {name}: need {need} bytes "
            f"(+{SPACE_MARGIN_BYTES} margin), {free} free"
        )


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


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
) -> Path:
    """Download ``url`` into ``dest_dir`` and return the final path (``on_bytes``: called with
    each chunk's size as it is written, e.g. for a progress bar).

    ``disk_usage`` (``shutil.disk_usage``-like, ``.free`` in bytes) is a parameter so tests can
    present a small disk. Raises InsufficientSpaceError, NotFoundError, UpstreamError (size
    mismatch, too many broken connections) or the session's AuthError/DisallowedHostError.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = file_name or file_name_from_url(url)
    final = dest_dir / name
    _remove_stale_parts(dest_dir, name)
    if expected_size is not None:
        # the catalogue's size is known: refuse before the server starts sending
        _check_space(dest_dir, name, expected_size, disk_usage)

    resp = session.get(url, stream=True, headers=IDENTITY)
    _check_status(resp, url)
    total = _content_length(resp)
    if total is not None and expected_size is not None and total != expected_size:
        # CMR's size and the server's can disagree: the transfer's own Content-Length is the one
        # the body is verified against (the caller records the catalogue's as a warning)
        log.warning("%s: server announces %d bytes, the catalogue says %d; using the server's",
                    redact_url(url), total, expected_size)
    need = total if total is not None else expected_size
    if need is not None and (expected_size is None or need > expected_size):
        try:
            _check_space(dest_dir, name, need, disk_usage)
        except InsufficientSpaceError:
            resp.close()
            raise

    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest_dir)
    tmp = Path(tmp_name)
    written = 0
    resumes = 0
    try:
        with os.fdopen(fd, "wb") as out:
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
        size = tmp.stat().st_size
        want = need if need is not None else size
        if size != want:
            raise UpstreamError(f"got {size} bytes, expected {want}", service=_service(url))
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("downloaded %s (%d bytes, %d resumes)", redact_url(url), size, resumes)
    return final


def _resume(session: requests.Session, url: str, out, written: int, total: int | None):
    """Re-request from byte ``written``; returns (response, bytes already kept)."""
    try:
        resp = session.get(url, stream=True, headers={**IDENTITY, "Range": f"bytes={written}-"})
    except _BROKEN:
        # the next loop turn reads nothing and counts another resume
        return _EmptyResponse(), written
    _check_status(resp, url)
    if resp.status_code == 206:
        match = CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
        if (
            match
            and int(match.group(1)) == written
            and (total is None or match.group(3) in ("*", str(total)))
        ):
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
