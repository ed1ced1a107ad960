"""An ATL07 granule's segments in the box: streamed to the run's folder and read there (the
default), or read in place on S3 (``settings.atl07_access``)."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import requests

from core.access.cmr import Granule
from core.access.download import stream_download
from core.access.earthdata import redact_url
from core.config import Settings
from core.errors import InputError, UnreadableFileError, UpstreamError
from core.http import failure_cause
from core.model import Atl07Granule
from core.pipeline.date_context import DateContext, read_errors, size_warning
from core.pipeline.services import in_daac_region
from core.pipeline.workdir import disk_usage
from core.science.atl07 import PAGED_FROM_RELEASE, open_atl07_in_place, read_atl07, release_of


class Atl07Read(NamedTuple):
    granule: Atl07Granule
    direct: bool
    bytes_fetched: int
    size_warning: str | None


def use_direct_access(granule: Granule, settings: Settings) -> bool:
    """``direct``: in place; ``download``: streamed to /tmp; ``auto``: in place where it is cheaper,
    i.e. on S3 in the DAACs' region and paged (Release 007 on: the metadata in one page, then only
    the box's chunks, ~22 MB of a 250 MB granule), else the download (an older granule's metadata
    read in place costs a round trip per miss: slower than the download, bench/README.md)."""
    mode = settings.atl07_access  # one of config.ATL07_ACCESS: Settings refuses anything else
    can_direct = bool(granule.s3_url and granule.s3credentials_url)
    if mode == "direct" and not can_direct:
        raise InputError(f"{granule.title} has no s3:// link; use atl07_access=download", "atl07_access")
    release = release_of(granule.producer_granule_id or granule.title)
    paged = release is not None and release >= PAGED_FROM_RELEASE
    return mode == "direct" or (mode == "auto" and can_direct and paged and in_daac_region(settings))


def fetch_atl07(granule: Granule, ctx: DateContext, workdir: Path) -> Atl07Read | Path:
    """Read in place, or download (to be read by the caller while the next one downloads)."""
    if use_direct_access(granule, ctx.services.settings):
        return read_in_place(granule, ctx)
    return download(granule, ctx, workdir)


def read_in_place(granule: Granule, ctx: DateContext) -> Atl07Read:
    """The ATL07 granule's segments in the bbox, read where it lies on S3."""
    settings, services = ctx.services.settings, ctx.services
    # use_direct_access chose direct only for a granule with both
    assert granule.s3_url and granule.s3credentials_url
    fs = services.s3_filesystem(granule.s3credentials_url)
    with ctx.timer("atl07_read"), read_errors(granule.title):
        # in waves of ranged GETs side by side, guided by a DMR++ sidecar if one is published
        fh, byte_map = open_atl07_in_place(fs, granule.s3_url, settings)
        with fh:
            atl07 = read_atl07(fh, bbox=ctx.task.request.bounding_box, margin_deg=settings.bbox_margin_deg,
                               byte_map=byte_map)
            warning = ctx.warn(size_warning(granule.title, granule.size_bytes, int(fh.size)))
            services.report("bytes", n=int(fh.bytes_fetched))
            return Atl07Read(atl07, True, fh.bytes_fetched, warning)


def download(granule: Granule, ctx: DateContext, workdir: Path) -> Path:
    """Stream the ATL07 granule to ``workdir`` (the caller reads and deletes it)."""
    settings, services = ctx.services.settings, ctx.services
    if not granule.https_url:
        raise UpstreamError(f"{granule.title} has no HTTPS data link", service="cmr")
    try:
        with ctx.timer("atl07_download"):
            return stream_download(services.http, granule.https_url, workdir,
                                   expected_size=granule.size_bytes or None,
                                   file_name=granule.producer_granule_id or None,
                                   disk_usage=disk_usage(settings),
                                   parallel=settings.download_parallel, part_size=settings.download_part_bytes,
                                   on_bytes=(lambda n: services.report("bytes", n=n)) if services.progress else None)
    except requests.RequestException as exc:
        # connection refused / timed out after the session's retries; the message of
        # requests' exception carries the URL with its query (presigned hops): not repeated
        raise UpstreamError(f"{granule.title}: failed after retries ({failure_cause(exc)})",
                            service=f"download {redact_url(granule.https_url)}") from None


def read_downloaded(granule: Granule, path: Path, ctx: DateContext) -> Atl07Read:
    settings = ctx.services.settings
    try:
        size = path.stat().st_size
        warning = ctx.warn(size_warning(granule.title, granule.size_bytes, size))
        with ctx.timer("atl07_read"):
            atl07 = read_atl07(path, bbox=ctx.task.request.bounding_box, margin_deg=settings.bbox_margin_deg)
        return Atl07Read(atl07, False, size, warning)
    except UnreadableFileError as exc:
        # the bytes matched the server's size: the DAAC served a corrupt file
        raise UpstreamError(f"{granule.title}: {exc}",
                            service=f"download {redact_url(granule.https_url or '')}") from None
    finally:
        path.unlink(missing_ok=True)  # /tmp is small and shared: one granule on disk at a time per download
