"""CMR granule search: collection resolution, CMR-Search-After paging, retries, links, placeholders.

    client = CmrClient(session, settings)        # mounts urllib3 Retry for settings.cmr_url
    granules = client.search("ATL07/007", BBox(-62.8, 81.7, -56.4, 83), start, end)

We read ``/search/granules.umm_json`` (UMM-G) rather than the JSON feed: UMM-G types every
RelatedUrl ("GET DATA", "GET DATA VIA DIRECT ACCESS", "VIEW RELATED INFORMATION" for
/s3credentials, "EXTENDED METADATA", "USE SERVICE API"), gives sizes in bytes
(``SizeInBytes``) and the collection concept id, while the feed only has ``rel`` URIs and MB.
:func:`granule_from_feed_entry` parses the feed too (same link rules) for recorded responses.

A collection is a concept id (``C3564876395-NSIDC_CPRD``) or a short name and version
(``ATL07/007``, ``ATL07.007``, ``MODIS_A-JPL-L2P-v2019.0/2019.0``, optionally ``/PROVIDER``).
The retired on-premises ``C2003771980-NSIDC_ECS`` (ATL07 v004) is accepted and searched as the
configured current ATL07 collection.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from posixpath import basename
from typing import Any
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from core.catalog import CONCEPT_ID, CollectionQuery, parse_collection  # noqa: F401 (public here too)
from core.config import Settings
from core.http import failure_cause, retry_policy
from core.errors import InputError, UpstreamError
from core.model import BBox

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 2000
_SIZE_UNITS = {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}


@dataclass
class Granule:
    concept_id: str
    title: str
    producer_granule_id: str  # the data file's name
    size_bytes: int | None
    start: datetime | None  # tz-aware UTC
    end: datetime | None
    polygon: list[tuple[float, float]] | None  # (lon, lat) ring, if the footprint is a polygon
    bbox: list[BBox] = field(default_factory=list)  # bounding rectangles (W, S, E, N)
    https_url: str | None = None
    s3_url: str | None = None
    s3credentials_url: str | None = None
    provider: str = ""
    collection: str = ""
    is_placeholder: bool = False


def mount_retries(session: requests.Session, settings: Settings, prefix: str | None = None) -> Retry:
    """Mount the shared retry policy (core.http) for GETs on ``prefix`` (default: the CMR URL)."""
    retry = retry_policy(settings, ("GET", "HEAD"))
    session.mount(prefix or settings.cmr_url.rstrip("/") + "/", HTTPAdapter(max_retries=retry))
    return retry


def _utc(text: str | None) -> datetime | None:
    if not text:
        return None
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _cmr_time(t: datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_https(url: str) -> bool:
    return urlparse(url).scheme in ("https", "http")


def _is_opendap(url: str, kind: str = "", subtype: str = "") -> bool:
    return "opendap" in url.lower() or "OPENDAP" in subtype.upper() or kind == "USE SERVICE API"


def _is_sidecar(url: str) -> bool:
    return url.lower().endswith((".md5", ".sha256", ".sha512", ".xml", ".cmr.json", ".dmrpp", ".jpg", ".png"))


def select_umm_links(related_urls: list[dict]) -> dict[str, str | None]:
    """HTTPS data link, s3:// link and /s3credentials endpoint from UMM-G RelatedUrls."""
    https = s3 = creds = None
    for u in related_urls or []:
        url, kind, subtype = u.get("URL", ""), u.get("Type", ""), u.get("Subtype", "")
        if not url or _is_sidecar(url):
            continue
        if kind in ("GET DATA", "GET DATA VIA DIRECT ACCESS") and not _is_opendap(url, kind, subtype):
            if url.startswith("s3://"):
                s3 = s3 or url
            elif _is_https(url):
                https = https or url
        elif kind == "VIEW RELATED INFORMATION" and "s3credentials" in url:
            creds = creds or url
    return {"https": https, "s3": s3, "s3credentials": creds}


def select_feed_links(links: list[dict]) -> dict[str, str | None]:
    """The same selection for JSON-feed links (``rel`` URIs instead of types)."""
    https = s3 = creds = None
    for ln in links or []:
        href, rel = ln.get("href", ""), ln.get("rel", "")
        if not href or ln.get("inherited") or _is_sidecar(href):
            continue
        if rel.endswith("/data#") and not _is_opendap(href):
            if href.startswith("s3://"):
                s3 = s3 or href
            elif _is_https(href):
                https = https or href
        elif "s3credentials" in href and _is_https(href):
            creds = creds or href
    return {"https": https, "s3": s3, "s3credentials": creds}


def _data_file_size(umm: dict, file_name: str | None) -> int | None:
    infos = (umm.get("DataGranule") or {}).get("ArchiveAndDistributionInformation") or []
    chosen = None
    for info in infos:
        if file_name and info.get("Name") == file_name:
            chosen = info
            break
    if chosen is None:
        chosen = next((i for i in infos if not _is_sidecar(i.get("Name", ""))), None)
    if chosen is None:
        return None
    if chosen.get("SizeInBytes") is not None:
        return int(chosen["SizeInBytes"])
    if chosen.get("Size") is not None:
        return int(round(float(chosen["Size"]) * _SIZE_UNITS.get(str(chosen.get("SizeUnit", "MB")).upper(), 2**20)))
    return None


def _umm_footprint(umm: dict) -> tuple[list[tuple[float, float]] | None, list[BBox]]:
    geometry = ((umm.get("SpatialExtent") or {}).get("HorizontalSpatialDomain") or {}).get("Geometry") or {}
    polygon = None
    for gp in geometry.get("GPolygons") or []:
        points = (gp.get("Boundary") or {}).get("Points") or []
        polygon = [(float(p["Longitude"]), float(p["Latitude"])) for p in points]
        break
    rects = [BBox(float(r["WestBoundingCoordinate"]), float(r["SouthBoundingCoordinate"]),
                  float(r["EastBoundingCoordinate"]), float(r["NorthBoundingCoordinate"]))
             for r in geometry.get("BoundingRectangles") or []]
    return polygon, rects


def granule_from_umm(item: dict, settings: Settings, collection: str = "") -> Granule:
    """One UMM-G search item -> :class:`Granule` (KeyError/TypeError/ValueError if malformed)."""
    meta, umm = item["meta"], item["umm"]
    concept_id = meta["concept-id"]
    provider = meta.get("provider-id", "")
    links = select_umm_links(umm.get("RelatedUrls") or [])
    data_url = links["https"] or links["s3"]
    ids = {i.get("IdentifierType"): i.get("Identifier") for i in (umm.get("DataGranule") or {}).get("Identifiers") or []}
    file_name = ids.get("ProducerGranuleId") or (basename(urlparse(data_url).path) if data_url else umm.get("GranuleUR", ""))
    rng = (umm.get("TemporalExtent") or {}).get("RangeDateTime") or {}
    single = (umm.get("TemporalExtent") or {}).get("SingleDateTime")
    polygon, rects = _umm_footprint(umm)
    size = _data_file_size(umm, file_name)
    return Granule(
        concept_id=concept_id,
        title=umm.get("GranuleUR") or meta.get("native-id", concept_id),
        producer_granule_id=file_name,
        size_bytes=size,
        start=_utc(rng.get("BeginningDateTime") or single),
        end=_utc(rng.get("EndingDateTime") or single),
        polygon=polygon,
        bbox=rects,
        https_url=links["https"],
        s3_url=links["s3"],
        s3credentials_url=links["s3credentials"] or settings.s3credentials_endpoints.get(provider),
        provider=provider,
        collection=meta.get("collection-concept-id") or collection,
        is_placeholder=size is not None and size <= settings.placeholder_max_bytes,
    )


def granule_from_feed_entry(entry: dict, settings: Settings) -> Granule:
    """One JSON-feed entry -> :class:`Granule` (used for the recorded responses)."""
    links = select_feed_links(entry.get("links") or [])
    data_url = links["https"] or links["s3"]
    file_name = entry.get("producer_granule_id") or (basename(urlparse(data_url).path) if data_url else entry["title"])
    size = None
    if entry.get("granule_size") not in (None, ""):
        size = int(round(float(entry["granule_size"]) * 2**20))
    polygon = None
    for poly in entry.get("polygons") or []:
        ring = poly[0] if isinstance(poly, list) else poly
        vals = [float(v) for v in ring.split()]
        polygon = list(zip(vals[1::2], vals[0::2]))  # the feed gives "lat lon" pairs
        break
    rects = []
    for box in entry.get("boxes") or []:
        s, w, n, e = (float(v) for v in box.split())
        rects.append(BBox(w, s, e, n))
    provider = entry.get("data_center", "")
    return Granule(
        concept_id=entry["id"], title=entry["title"], producer_granule_id=file_name, size_bytes=size,
        start=_utc(entry.get("time_start")), end=_utc(entry.get("time_end")), polygon=polygon, bbox=rects,
        https_url=links["https"], s3_url=links["s3"],
        s3credentials_url=links["s3credentials"] or settings.s3credentials_endpoints.get(provider),
        provider=provider, collection=entry.get("collection_concept_id", ""),
        is_placeholder=size is not None and size <= settings.placeholder_max_bytes,
    )


class CmrClient:
    """Granule searches against ``settings.cmr_url`` with the session it is given.

    ``mount_retry`` installs :func:`mount_retries` for the CMR URL on that session (the
    EarthdataSession has its own, equivalent adapter for every other host)."""

    def __init__(self, session: requests.Session, settings: Settings, *, mount_retry: bool = True):
        self.session = session
        self.settings = settings
        if mount_retry:
            mount_retries(session, settings)

    @property
    def page_size(self) -> int:
        return max(1, min(int(self.settings.cmr_page_size), MAX_PAGE_SIZE))

    def _get(self, path: str, params: dict, headers: dict | None = None) -> requests.Response:
        url = self.settings.cmr_url.rstrip("/") + path
        hdrs = {"Client-Id": self.settings.client_id, "Accept": "application/json", **(headers or {})}
        try:
            resp = self.session.get(url, params=params, headers=hdrs, timeout=self.settings.http_timeout_s)
        except requests.RequestException as exc:
            raise UpstreamError(f"{path} failed after retries: {failure_cause(exc)}", service="cmr") from None
        if resp.status_code != 200:
            detail = ""
            try:
                detail = "; ".join(str(e) for e in resp.json().get("errors", []))
            except ValueError:
                detail = resp.text[:200]
            raise UpstreamError(
                f"{path} returned HTTP {resp.status_code} (request id {resp.headers.get('CMR-Request-Id', '?')})"
                + (f": {detail}" if detail else ""), service="cmr")
        return resp

    def collection_concept_id(self, collection: str) -> str:
        """Resolve a short name + version to a concept id with /search/collections.json."""
        query = parse_collection(collection, self.settings)
        if query.concept_id:
            return query.concept_id
        resp = self._get("/search/collections.json", query.params())
        try:
            entries = resp.json()["feed"]["entry"]
        except (ValueError, KeyError, TypeError):
            raise UpstreamError("malformed collections.json response", service="cmr") from None
        if not entries:
            raise InputError(f"no CMR collection matches {query}", "collection")
        if len(entries) > 1:
            log.info("%d collections match %s; using %s", len(entries), query, entries[0]["id"])
        return entries[0]["id"]

    def search(self, collection: str, bbox: BBox, start: datetime, end: datetime, *,
               include_placeholders: bool = False) -> list[Granule]:
        """Every granule of ``collection`` intersecting ``bbox`` and [start, end], in CMR order.

        Placeholder granules (size <= settings.placeholder_max_bytes) are logged and dropped, or
        kept with ``is_placeholder=True`` when ``include_placeholders``."""
        query = parse_collection(collection, self.settings)
        bbox = BBox(*bbox)
        params: dict[str, Any] = {
            **query.params(),
            "bounding_box": str(bbox),
            "temporal": f"{_cmr_time(start)},{_cmr_time(end)}",
            "page_size": self.page_size,
        }
        granules: list[Granule] = []
        search_after: str | None = None
        hits: int | None = None
        page_no = 0
        while True:
            page_no += 1
            headers = {"CMR-Search-After": search_after} if search_after else None
            resp = self._get("/search/granules.umm_json", params, headers)
            items, page_hits = self._parse_page(resp, page_no)
            hits = page_hits if hits is None else hits
            for item in items:
                try:
                    granules.append(granule_from_umm(item, self.settings, str(query)))
                except (KeyError, TypeError, ValueError) as exc:
                    raise UpstreamError(
                        f"malformed granule in page {page_no} of the {query} search: {type(exc).__name__} {exc}",
                        service="cmr") from None
            next_after = resp.headers.get("CMR-Search-After")
            if not items or len(granules) >= hits or not next_after:
                break
            if next_after == search_after:
                raise UpstreamError(f"CMR-Search-After did not advance on page {page_no}", service="cmr")
            search_after = next_after
        if hits is not None and len(granules) < hits:
            log.warning("CMR reported %d hits for %s but returned %d", hits, query, len(granules))
        placeholders = [g for g in granules if g.is_placeholder]
        log.info("CMR %s: %d granules (%d pages)%s", query, len(granules), page_no,
                 f", {len(placeholders)} placeholders" if placeholders else "")
        if placeholders:
            log.info("%s %d placeholder granules (<= %d bytes): %s",
                     "flagging" if include_placeholders else "skipping", len(placeholders),
                     self.settings.placeholder_max_bytes, ", ".join(g.title for g in placeholders))
        if include_placeholders:
            return granules
        return [g for g in granules if not g.is_placeholder]

    @staticmethod
    def _parse_page(resp: requests.Response, page_no: int) -> tuple[list[dict], int]:
        try:
            body = resp.json()
        except (ValueError, json.JSONDecodeError):
            raise UpstreamError(
                f"page {page_no} of granules.umm_json is not JSON ({resp.headers.get('Content-Type', '?')}, "
                f"{len(resp.content)} bytes)", service="cmr") from None
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise UpstreamError(f"page {page_no} of granules.umm_json has no 'items' list", service="cmr")
        try:
            hits = int(resp.headers.get("CMR-Hits", body.get("hits")))
        except (TypeError, ValueError):
            raise UpstreamError(f"page {page_no} of granules.umm_json has no hit count", service="cmr") from None
        return body["items"], hits
