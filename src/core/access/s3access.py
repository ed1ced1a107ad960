"""Read DAAC objects in place with s3fs and temporary credentials.

* The filesystem's credentials are *refreshable*: botocore asks the
  :class:`~core.access.credentials.S3CredentialsProvider` again as expiry nears, so one filesystem
  serves a task that outlives its one-hour credentials.
* Objects open with fsspec's ``blockcache`` (``settings.s3_block_size``, 1 MiB): HDF5 reads a
  few small scattered ranges, and s3fs's default read-ahead would fetch far more.
* Every opened file counts the bytes actually fetched from S3 (``file.bytes_fetched``,
  ``file.fetch_requests``).
"""
from __future__ import annotations

import asyncio
import functools
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from core.access.credentials import S3CredentialsProvider
from core.config import Settings
from core.errors import AuthError, InputError, NotFoundError

if TYPE_CHECKING:
    import s3fs

log = logging.getLogger(__name__)

MAX_CACHED_BLOCKS = 32  # 32 MiB per open file at the default block size


def _metadata(provider: S3CredentialsProvider) -> dict:
    creds = provider.get()
    return {
        "access_key": creds.key,
        "secret_key": creds.secret,
        "token": creds.token,
        "expiry_time": creds.expiration.isoformat(),
    }


@functools.cache
def _data_loader():
    from botocore.loaders import create_loader

    return create_loader()


def open_s3_filesystem(provider: S3CredentialsProvider, settings: Settings) -> s3fs.S3FileSystem:
    """An S3 filesystem in ``settings.aws_region`` whose credentials refresh from ``provider``."""
    # s3fs + aiobotocore + aiohttp: ~0.3 s of import, paid when the first filesystem is built
    # rather than when core.pipeline.task is imported (a task reading over HTTPS never loads them)
    import s3fs
    from aiobotocore.credentials import AioRefreshableCredentials
    from aiobotocore.session import AioSession

    async def refresh() -> dict:
        # provider.get() blocks on HTTP; keep it off the event loop fsspec runs on
        return await asyncio.to_thread(_metadata, provider)

    first = _metadata(provider)
    credentials = AioRefreshableCredentials(
        access_key=first["access_key"], secret_key=first["secret_key"], token=first["token"],
        expiry_time=datetime.fromisoformat(first["expiry_time"]), refresh_using=refresh,
        method="daac-s3credentials",
        # botocore judges expiry by the provider's clock: one notion of "now" for both
        time_fetcher=lambda: datetime.fromtimestamp(provider.clock(), UTC),
    )
    session = AioSession()
    session._credentials = credentials  # aiobotocore has no public setter for a refreshable set
    # botocore parses its endpoint and S3 model JSON once per loader (~0.09 s of CPU, measured):
    # one loader for the process, not one per task's session (a warm container's tasks share it)
    session.register_component("data_loader", _data_loader())
    client_kwargs = {"region_name": settings.aws_region}
    if settings.s3_endpoint_url:
        client_kwargs["endpoint_url"] = settings.s3_endpoint_url
    return s3fs.S3FileSystem(
        session=session,
        client_kwargs=client_kwargs,
        default_block_size=settings.s3_block_size,
        default_cache_type="blockcache",
        # granules read side by side, each with s3_parallel ranges in flight (core.access.rangefile)
        config_kwargs={"max_pool_connections": 4 * settings.s3_parallel},
        skip_instance_cache=True,  # fsspec would otherwise share instances across credentials
    )


def s3_path(s3_url: str) -> str:
    parts = urlsplit(s3_url)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        raise InputError(f"not an s3://bucket/key URL: {s3_url!r}", field="s3_url")
    return f"{parts.netloc}/{parts.path.lstrip('/')}"


def open_granule(fs: s3fs.S3FileSystem, s3_url: str, settings: Settings):
    """A read-only file object for ``s3_url`` with a block cache and a fetched-bytes counter.

    ``f.bytes_fetched`` / ``f.fetch_requests`` grow as blocks are fetched; ``f.size`` is the
    object size. Pass ``f`` to h5netcdf/h5py/xarray as a file object.
    """
    try:
        f = fs.open(
            s3_path(s3_url),
            "rb",
            block_size=settings.s3_block_size,
            cache_type="blockcache",
            cache_options={"maxblocks": MAX_CACHED_BLOCKS},
        )
    except FileNotFoundError:
        raise NotFoundError(f"S3 object not found: {s3_url}") from None
    except PermissionError:
        raise _access_denied(s3_url, settings) from None
    f.bytes_fetched = 0
    f.fetch_requests = 0
    fetch = f.cache.fetcher  # every cache miss ends up here

    def counting_fetch(start: int, end: int) -> bytes:
        data = fetch(start, end)
        f.bytes_fetched += len(data)
        f.fetch_requests += 1
        return data

    f.cache.fetcher = counting_fetch
    return f


def s3_fetch_many(fs: s3fs.S3FileSystem, s3_url: str, settings: Settings):
    """``fetch_many`` for core.access.rangefile: ranged GETs of one object, side by side on s3fs's event
    loop (at most ``settings.s3_parallel`` in flight)."""
    path = s3_path(s3_url)

    def fetch_many(ranges):
        if not ranges:
            return []
        try:
            return fs.cat_ranges([path] * len(ranges), [a for a, _ in ranges], [b for _, b in ranges],
                                 on_error="raise", batch_size=settings.s3_parallel)
        except FileNotFoundError:
            raise NotFoundError(f"S3 object not found: {s3_url}") from None
        except PermissionError:
            raise _access_denied(s3_url, settings) from None

    return fetch_many


def _access_denied(s3_url: str, settings: Settings) -> AuthError:
    return AuthError(f"access denied to {s3_url} (the DAAC's S3 credentials work only in {settings.aws_region}; "
                     "outside it read over HTTPS: l2p_access=https|auto, atl07_access=download|auto)", service="S3")


def s3_object_size(fs: s3fs.S3FileSystem, s3_url: str, settings: Settings) -> int:
    try:
        return int(fs.info(s3_path(s3_url))["size"])
    except FileNotFoundError:
        raise NotFoundError(f"S3 object not found: {s3_url}") from None
    except PermissionError:
        raise _access_denied(s3_url, settings) from None


def s3_sidecar(fs: s3fs.S3FileSystem, s3_url: str, suffix: str = ".dmrpp") -> bytes | None:
    """A small object published beside ``s3_url`` (e.g. its DMR++), or None if there is none."""
    try:
        return fs.cat_file(s3_path(s3_url + suffix))
    except (FileNotFoundError, PermissionError):
        return None


def open_s3_rangefile(fs: s3fs.S3FileSystem, s3_url: str, settings: Settings, size: int | None = None):
    """``s3_url`` as a core.access.rangefile.RangeFile (``size``: the object's, if known; else a HEAD)."""
    from core.access.rangefile import RangeFile

    size = s3_object_size(fs, s3_url, settings) if size is None else size
    return RangeFile(s3_fetch_many(fs, s3_url, settings), size, name=s3_url.rsplit("/", 1)[-1])
