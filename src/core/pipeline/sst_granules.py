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
``resolves``, ``resolved_host``) of what it fetched, the sidecar included.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import requests

from core.access.cmr import Granule
from core.access.httpfile import open_https_granule
from core.access.inplace import ByteMap, open_https_in_place, open_in_place
from core.access.s3access import open_granule
from core.config import Settings
from core.errors import UpstreamError
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


__all__ = ["open_sst_granule"]
