"""Open an L2P granule where it lies — in place on S3, or over HTTPS through TEA — read the way
``settings.l2p_read`` says (bench/README.md, "The right read for the file", measured the three):

* ``chunks``: a core.access.rangefile.RangeFile located by the granule's DMR++ sidecar (PO.DAAC
  publishes one beside each L2P object; fetched alongside the object's size: HEAD or TEA
  redirect and sidecar GET side by side), so each phase of core.science.l2p fetches its HDF5 metadata
  and chunks in one wave; without a sidecar, h5py's chunk index locates them once it is open;
* ``blocks``: the 1 MiB block-cached file (core.access.s3access.open_granule, core.access.httpfile), HDF5's
  reads fetched on demand one block at a time;
* ``whole``: the whole object as parallel ranges into memory before h5py opens it.

The granule returned exposes ``size``, ``bytes_fetched``, ``fetch_requests`` (and over HTTPS
``resolves``, ``resolved_host``) of what it fetched, the sidecar included. For a date's task,
:func:`open_for_date` opens a granule under the task's timer and error naming, and
:func:`read_window` locates and reads its window for the segments that can reach it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import requests

from core.access.cmr import Granule
from core.access.earthdata import redact_url
from core.access.httpfile import open_https_granule
from core.access.inplace import ByteMap, open_https_in_place, open_in_place
from core.access.s3access import open_granule
from core.config import Settings
from core.errors import UpstreamError
from core.model import Atl07Granule, SstSwath
from core.pipeline.date_context import DateContext, np_utc, read_errors, size_warning
from core.pipeline.services import l2p_access
from core.science.l2p import L2PGranule, open_l2p

log = logging.getLogger(__name__)


def open_sst_granule(sst: Granule, access: str, *, session: requests.Session,
                     s3_filesystem: Callable[[str], object], settings: Settings) -> L2PGranule:
    """``sst`` opened (metadata and latitude read) for :meth:`L2PGranule.locate` / ``window``;
    ``access`` "s3" | "https"; ``s3_filesystem(endpoint)``: the filesystem for a /s3credentials
    endpoint. A missing link is an UpstreamError naming cmr."""
    mode = settings.l2p_read
    byte_map: ByteMap | None = None
    sidecar_bytes = 0
    file: Any
    if access == "https":
        url = sst.https_url
        if not url:
            raise UpstreamError(f"{sst.title} has no HTTPS data link", service="cmr")
        if mode == "blocks":
            file = open_https_granule(session, url, settings)
        else:
            placed = open_https_in_place(session, url, settings, sidecar=mode == "chunks")
            file, byte_map, sidecar_bytes = placed.file, placed.byte_map, placed.sidecar_bytes
    else:
        s3_url = sst.s3_url
        if not s3_url:
            raise UpstreamError(f"{sst.title} has no s3:// link", service="cmr")
        endpoint = sst.s3credentials_url
        if not endpoint:
            raise UpstreamError(f"no /s3credentials endpoint known for {sst.title} ({sst.provider})", service="cmr")
        fs: Any = s3_filesystem(endpoint)
        if mode == "blocks":
            file = open_granule(fs, s3_url, settings)
        else:
            placed = open_in_place(fs, s3_url, settings, sidecar=mode == "chunks")
            file, byte_map, sidecar_bytes = placed.file, placed.byte_map, placed.sidecar_bytes
    try:
        if mode == "whole":
            file.prefetch([(0, file.size)])
        granule = open_l2p(file, name=sst.title, byte_map=byte_map, lazy_lon=True)
    except BaseException:
        file.close()
        raise
    granule.close_file = True
    granule.sidecar_bytes = sidecar_bytes
    return granule


def time_candidates(atl07: Atl07Granule, sst_granules: list[Granule], max_dt_s: float) -> list[Granule]:
    """L2P granules whose time span reaches within ±Δt of a segment (CMR's temporal extent; a
    granule without one cannot be ruled out by time)."""
    t_min = min(b.time.min() for b in atl07.beams)
    t_max = max(b.time.max() for b in atl07.beams)
    window = np.timedelta64(int(round(max_dt_s * 1e9)), "ns")
    return [g for g in sst_granules
            if (g.start is None or np_utc(g.start) - window <= t_max)
            and (g.end is None or np_utc(g.end) + window >= t_min)]


def _service(sst: Granule, access: str) -> str:
    return "S3" if access == "s3" else f"HTTPS {redact_url(sst.https_url or '')}"


def open_for_date(sst: Granule, ctx: DateContext) -> L2PGranule:
    """The L2P granule opened where it lies (S3 in region, HTTPS ranges outside): its metadata
    and latitude, read the way ``settings.l2p_read`` says."""
    services = ctx.services
    access = l2p_access(services.settings)
    with ctx.timer("sst_open"), read_errors(sst.title, _service(sst, access)):
        return open_sst_granule(sst, access, session=services.http, s3_filesystem=services.s3_filesystem,
                                settings=services.settings)


def read_window(sst: Granule, granule: L2PGranule, reaching: list[Atl07Granule], ctx: DateContext) -> SstSwath | None:
    """The window of an open L2P granule that can reach the segments of ``reaching``; None (and
    the reason in the granule's report) when no pixel can."""
    beams = [b for g in reaching for b in g.beams if len(b)]
    lat = np.concatenate([b.lat for b in beams]).astype(np.float64)
    lon = np.concatenate([b.lon for b in beams]).astype(np.float64)
    access = l2p_access(ctx.services.settings)
    with ctx.timer("sst_read"), read_errors(sst.title, _service(sst, access)):
        win = granule.locate(lat, lon, ctx.science.read_radius_m)
        swath = None if win is None else granule.window(*win)
    ctx.report_sst(sst.title, _read_report(granule, swath, access, ctx.services.settings.l2p_read))
    ctx.services.report("bytes", n=int(granule.bytes_fetched))
    ctx.warn(size_warning(sst.title, sst.size_bytes, int(granule.size)))
    return swath


def _read_report(granule: L2PGranule, swath: SstSwath | None, access: str, read: str) -> dict[str, Any]:
    """What the manifest records of one L2P granule's read (``bytes.sst_per_granule``)."""
    report: dict[str, Any] = {"size": int(granule.size), "bytes_fetched": int(granule.bytes_fetched),
                              "requests": int(granule.fetch_requests), "access": access, "read": read}
    if access == "https":
        report["resolves"] = int(granule.resolves)
        report["resolved_host"] = granule.resolved_host
    report["fraction"] = round(report["bytes_fetched"] / max(report["size"], 1), 4)
    report["window"] = None if swath is None else [swath.rows.start, swath.rows.stop, swath.cols.start, swath.cols.stop]
    if swath is None:
        report["no_window"] = granule.no_window_reason
    return report


__all__ = ["open_for_date", "open_sst_granule", "read_window", "time_candidates"]
