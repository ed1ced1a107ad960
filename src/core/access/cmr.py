"""CMR granule search: collection resolution, CMR-Search-After paging, retries, data-file selection.

    client = CmrClient(session, settings)        # mounts urllib3 Retry for settings.cmr_url
    granules = client.search("ATL07/007", BBox(-62.8, 81.7, -56.4, 83), start, end)

We read ``/search/granules.umm_json`` (UMM-G) rather than the JSON feed: UMM-G types every
RelatedUrl ("GET DATA", "GET DATA VIA DIRECT ACCESS", "VIEW RELATED INFORMATION" for
/s3credentials, "EXTENDED METADATA", "USE SERVICE API"), gives sizes in bytes
(``SizeInBytes``) and the collection concept id, while the feed only has ``rel`` URIs and MB
(and took its ``granule_size`` from whichever file PO.DAAC listed first: the tutorial's
"9.3e-5 MB" granules are the 98-byte ``.nc.md5`` sidecars of full granules).

Real records (tests/data/realdata/cmr/recorded/) list sibling files (``.nc.md5``,
``.cmr.json``, ``.dmrpp``) in no fixed order and some carry only HTTPS links, so
:func:`granule_from_umm` picks the data file by name and type, takes its size from its own
``ArchiveAndDistributionInformation`` entry, and derives the ``s3://`` location from the HTTPS
path (``https://<TEA host>/<bucket>/<key>``) when a cloud-hosted record has no direct-access link.
Records are parsed with small pydantic models of the UMM-G fields we read.

A collection is a concept id (``C3564876395-NSIDC_CPRD``) or a short name and version
(``ATL07/007``, ``ATL07.007``, ``MODIS_A-JPL-L2P-v2019.0/2019.0``, optionally ``/PROVIDER``).
The retired on-premises ``C2003771980-NSIDC_ECS`` (ATL07 v004) is accepted and searched as the
configured current ATL07 collection.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from posixpath import basename
from typing import Any
from urllib.parse import urlparse

import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from core.access.catalog import parse_collection
from core.atomic import UnsafeNameError, safe_basename
from core.collections import CONCEPT_ID  # noqa: F401 (public here too)
from core.config import Settings
from core.errors import CmrPagingError, InputError, UpstreamError
from core.http import failure_cause, retry_policy
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
    name_problem: str | None = None  # why the record's file name cannot be made a safe basename

    @property
    def skip_reason(self) -> str | None:
        """Why this granule cannot be read, or None (CMR lists granules whose record has no data
        link, or a file name that cannot be made safe to write: core.atomic.safe_basename)."""
        if self.name_problem:
            return f"unsafe file name in the CMR record: {self.name_problem}"
        if not (self.https_url or self.s3_url):
            return "no data link in the CMR record"
        return None


def mount_retries(session: requests.Session, settings: Settings, prefix: str | None = None) -> Retry:
    """Mount the shared retry policy (core.http) for GETs on ``prefix`` (default: the CMR URL)."""
    retry = retry_policy(settings, ("GET", "HEAD"))
    session.mount(prefix or settings.cmr_url.rstrip("/") + "/", HTTPAdapter(max_retries=retry))
    return retry


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def _cmr_time(t: datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_https(url: str) -> bool:
    return urlparse(url).scheme in ("https", "http")


def _is_opendap(url: str, kind: str = "", subtype: str = "") -> bool:
    return "opendap" in url.lower() or "OPENDAP" in subtype.upper() or kind == "USE SERVICE API"


# Files published beside a granule's data file (PO.DAAC, NSIDC, SWOT records): checksums,
# metadata copies, DMR++ sidecars, browse images. They are listed in no fixed order.
SIDECAR_SUFFIXES = (".md5", ".sha256", ".sha512", ".xml", ".cmr.json", ".met.json", ".dmrpp", ".log",
                    ".jpg", ".png")


def is_sidecar(name: str) -> bool:
    """Whether a file name or URL names a sibling of the data file rather than the data."""
    return urlparse(name).path.lower().endswith(SIDECAR_SUFFIXES) if name else False


# --- UMM-G (https://cdn.earthdata.nasa.gov/umm/granule/v1.6.5): only the fields we read ------


class _Umm(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class RelatedUrl(_Umm):
    url: str = Field("", alias="URL")
    type: str = Field("", alias="Type")
    subtype: str = Field("", alias="Subtype")

    @property
    def file_name(self) -> str:
        return basename(urlparse(self.url).path)

    @property
    def is_data(self) -> bool:
        return (self.type in ("GET DATA", "GET DATA VIA DIRECT ACCESS") and bool(self.url)
                and not _is_opendap(self.url, self.type, self.subtype) and not is_sidecar(self.url))


class FileInfo(_Umm):
    """One ``ArchiveAndDistributionInformation`` entry (the data file or a sibling)."""

    name: str = Field("", alias="Name")
    size_in_bytes: int | None = Field(None, alias="SizeInBytes")
    size: float | None = Field(None, alias="Size")
    size_unit: str = Field("MB", alias="SizeUnit")

    @property
    def bytes(self) -> int | None:
        if self.size_in_bytes is not None:
            return int(self.size_in_bytes)
        if self.size is not None:
            return int(round(float(self.size) * _SIZE_UNITS.get(self.size_unit.upper(), 2**20)))
        return None


class _Identifier(_Umm):
    identifier: str = Field("", alias="Identifier")
    identifier_type: str = Field("", alias="IdentifierType")


class _DataGranule(_Umm):
    files: list[FileInfo] = Field(default_factory=list, alias="ArchiveAndDistributionInformation")
    identifiers: list[_Identifier] = Field(default_factory=list, alias="Identifiers")


class _Range(_Umm):
    begin: datetime | None = Field(None, alias="BeginningDateTime")
    end: datetime | None = Field(None, alias="EndingDateTime")


class _Temporal(_Umm):
    range: _Range | None = Field(None, alias="RangeDateTime")
    single: datetime | None = Field(None, alias="SingleDateTime")


class _Point(_Umm):
    lon: float = Field(alias="Longitude")
    lat: float = Field(alias="Latitude")


class _Boundary(_Umm):
    points: list[_Point] = Field(default_factory=list, alias="Points")


class _GPolygon(_Umm):
    boundary: _Boundary = Field(alias="Boundary")


class _Rectangle(_Umm):
    west: float = Field(alias="WestBoundingCoordinate")
    south: float = Field(alias="SouthBoundingCoordinate")
    east: float = Field(alias="EastBoundingCoordinate")
    north: float = Field(alias="NorthBoundingCoordinate")


class _Geometry(_Umm):
    polygons: list[_GPolygon] = Field(default_factory=list, alias="GPolygons")
    rectangles: list[_Rectangle] = Field(default_factory=list, alias="BoundingRectangles")


class _Horizontal(_Umm):
    geometry: _Geometry = Field(default_factory=_Geometry, alias="Geometry")


class _Spatial(_Umm):
    horizontal: _Horizontal = Field(default_factory=_Horizontal, alias="HorizontalSpatialDomain")


class UmmGranule(_Umm):
    granule_ur: str = Field("", alias="GranuleUR")
    temporal: _Temporal = Field(default_factory=_Temporal, alias="TemporalExtent")
    spatial: _Spatial = Field(default_factory=_Spatial, alias="SpatialExtent")
    data_granule: _DataGranule = Field(default_factory=_DataGranule, alias="DataGranule")
    related_urls: list[RelatedUrl] = Field(default_factory=list, alias="RelatedUrls")


class UmmMeta(_Umm):
    concept_id: str = Field(alias="concept-id")
    provider_id: str = Field("", alias="provider-id")
    native_id: str = Field("", alias="native-id")
    collection_concept_id: str = Field("", alias="collection-concept-id")


class UmmItem(_Umm):
    """One item of a ``granules.umm_json`` page."""

    meta: UmmMeta
    umm: UmmGranule


def _pick(links: list[RelatedUrl], file_name: str) -> str | None:
    """The link to ``file_name`` if there is one, else the first (records list links in no order)."""
    return next((u.url for u in links if u.file_name == file_name), links[0].url if links else None)


def select_umm_links(related_urls: Sequence[RelatedUrl | dict], file_name: str = "") -> dict[str, str | None]:
    """HTTPS data link, s3:// link and /s3credentials endpoint from UMM-G RelatedUrls.

    The data link is the one named ``file_name`` (the granule's data file) where given; siblings
    (.md5, .cmr.json, .dmrpp, ...) and OPeNDAP service links are never data links."""
    urls = [u if isinstance(u, RelatedUrl) else RelatedUrl.model_validate(u) for u in related_urls or []]
    data = [u for u in urls if u.is_data]
    creds = next((u.url for u in urls if u.type == "VIEW RELATED INFORMATION" and "s3credentials" in u.url
                  and _is_https(u.url)), None)
    return {
        "https": _pick([u for u in data if _is_https(u.url)], file_name),
        "s3": _pick([u for u in data if u.url.startswith("s3://")], file_name),
        "s3credentials": creds,
    }


def s3_url_from_https(url: str) -> str:
    """A cloud (TEA) download URL's S3 location: the bucket and key are the path after the host."""
    path = urlparse(url).path.lstrip("/")
    if "/" not in path:
        raise ValueError(f"{url} has no bucket/key path")
    return f"s3://{path}"


def data_file(umm: UmmGranule) -> tuple[str, FileInfo | None]:
    """The data file's name and its own ArchiveAndDistributionInformation entry (if listed).

    The name is the ProducerGranuleId where given, else the one listed file that is not a
    sibling, else the name in the first data link. The entry is the one of that name, or the
    only non-sibling entry (NSIDC's ECS records name it "Not provided")."""
    ids = {i.identifier_type: i.identifier for i in umm.data_granule.identifiers}
    data_files = [f for f in umm.data_granule.files if not is_sidecar(f.name)]
    name = ids.get("ProducerGranuleId") or (data_files[0].name if len(data_files) == 1 else "")
    if not name:
        name = next((u.file_name for u in umm.related_urls if u.is_data), "")
    info = next((f for f in umm.data_granule.files if f.name == name), None)
    if info is None and len(data_files) == 1 and not any(u.file_name == data_files[0].name for u in umm.related_urls):
        info = data_files[0]
    return name, info


def granule_from_umm(item: dict | UmmItem, settings: Settings, collection: str = "") -> Granule:
    """One UMM-G search item -> :class:`Granule` (pydantic.ValidationError if malformed)."""
    parsed = item if isinstance(item, UmmItem) else UmmItem.model_validate(item)
    meta, umm = parsed.meta, parsed.umm
    file_name, info = data_file(umm)
    links = select_umm_links(umm.related_urls, file_name)
    # the name is joined to the download folder and the product keys: only a safe basename of it
    name_problem = None
    try:
        safe_name = safe_basename(file_name) if file_name else ""
    except UnsafeNameError as exc:
        safe_name, name_problem = "", str(exc)
    s3credentials = links["s3credentials"] or settings.s3credentials_endpoints.get(meta.provider_id)
    s3_url = links["s3"]
    if s3_url is None and links["https"] and s3credentials:
        # a cloud-hosted record with only HTTPS links (PO.DAAC's UMM-G often has no direct-access
        # link): TEA serves https://<host>/<bucket>/<key>, so the S3 location is the path
        s3_url = s3_url_from_https(links["https"])
    temporal = umm.temporal
    geometry = umm.spatial.horizontal.geometry
    polygon = ([(p.lon, p.lat) for p in geometry.polygons[0].boundary.points] if geometry.polygons else None)
    return Granule(
        concept_id=meta.concept_id,
        title=umm.granule_ur or meta.native_id or meta.concept_id,
        producer_granule_id=safe_name,
        size_bytes=info.bytes if info is not None else None,
        start=_utc((temporal.range.begin if temporal.range else None) or temporal.single),
        end=_utc((temporal.range.end if temporal.range else None) or temporal.single),
        polygon=polygon,
        bbox=[BBox(r.west, r.south, r.east, r.north) for r in geometry.rectangles],
        https_url=links["https"],
        s3_url=s3_url,
        s3credentials_url=s3credentials,
        provider=meta.provider_id,
        collection=meta.collection_concept_id or collection,
        name_problem=name_problem,
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

    def search(self, collection: str, bbox: BBox, start: datetime, end: datetime) -> list[Granule]:
        """Every granule of ``collection`` intersecting ``bbox`` and [start, end], in CMR order.

        Granules whose record has no data link are returned too (``skip_reason`` says so): the
        caller reports them rather than losing them silently."""
        query = parse_collection(collection, self.settings)
        bbox = BBox(*bbox)
        params: dict[str, Any] = {
            **query.params(),
            "bounding_box": str(bbox),
            "temporal": f"{_cmr_time(start)},{_cmr_time(end)}",
            "page_size": self.page_size,
        }
        pages = _Paging(str(query), self.page_size, int(self.settings.cmr_max_granules))
        while True:
            headers = {"CMR-Search-After": pages.search_after} if pages.search_after else None
            resp = self._get("/search/granules.umm_json", params, headers)
            items, page_hits = self._parse_page(resp, pages.page_no + 1)
            pages.add([self._granule(item, pages.page_no + 1, query) for item in items], page_hits)
            if pages.done(resp.headers.get("CMR-Search-After")):
                break
        granules = pages.granules
        unreadable = [g for g in granules if g.skip_reason]
        log.info("CMR %s: %d granules (%d pages)%s", query, len(granules), pages.page_no,
                 f", {len(unreadable)} without a data link" if unreadable else "")
        return granules

    def _granule(self, item: dict, page_no: int, query: Any) -> Granule:
        try:
            return granule_from_umm(item, self.settings, str(query))
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else "?"
            raise UpstreamError(
                f"malformed granule in page {page_no} of the {query} search: {where}: "
                f"{exc.errors()[0]['msg'] if exc.errors() else exc}", service="cmr") from None

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
            header = resp.headers.get("CMR-Hits")
            hits = int(header) if header is not None else int(body["hits"])
        except (KeyError, TypeError, ValueError):
            raise UpstreamError(f"page {page_no} of granules.umm_json has no hit count", service="cmr") from None
        return body["items"], hits


class _Paging:
    """One search's pages, bounded three ways (a broken or hostile CMR must not page forever):
    by the ``CMR-Hits`` of the first page (no more pages than it needs, plus one), by tokens or
    pages seen before (not only identical consecutive ones), and by ``cmr_max_granules``.
    A granule listed twice (on two pages, or twice on one) is kept once."""

    def __init__(self, query: str, page_size: int, max_granules: int):
        self.query, self.page_size, self.max_granules = query, page_size, max_granules
        self.granules: list[Granule] = []
        self.page_no = 0
        self.hits: int | None = None
        self.search_after: str | None = None
        self.tokens: set[str] = set()
        self.pages: set[tuple[str, ...]] = set()
        self.seen: set[str] = set()
        self.new_on_page = 0

    def _fail(self, why: str) -> CmrPagingError:
        return CmrPagingError(f"paging of the {self.query} search stopped at page {self.page_no}: {why}")

    def add(self, granules: list[Granule], hits: int) -> None:
        self.page_no += 1
        if self.hits is None:
            if hits > self.max_granules:
                raise self._fail(f"CMR reports {hits} hits, more than the {self.max_granules} granules one "
                                 "search may list (cmr_max_granules)")
            self.hits = hits
        ids = tuple(g.concept_id for g in granules)
        if ids and ids in self.pages:
            raise self._fail("the same page was served again")
        self.pages.add(ids)
        self.new_on_page = 0
        for g in granules:
            # one granule: the same concept id, or the same data file (it would be written to,
            # and deleted from, one path of the work folder twice)
            keys = {f"id:{g.concept_id or g.title}"}
            if g.producer_granule_id:
                keys.add(f"file:{g.producer_granule_id}")
            if keys & self.seen:
                log.warning("CMR listed %s twice in the %s search; kept once", g.title, self.query)
                continue
            self.seen |= keys
            self.granules.append(g)
            self.new_on_page += 1
        if granules and not self.new_on_page:
            raise self._fail("a page held only granules already listed")
        if len(self.granules) > self.max_granules:
            raise self._fail(f"more than {self.max_granules} granules (cmr_max_granules)")

    def done(self, next_after: str | None) -> bool:
        """Whether the search is complete; raises when CMR would have it page on without end."""
        assert self.hits is not None
        if not self.new_on_page or len(self.granules) >= self.hits or not next_after:
            if len(self.granules) < self.hits:
                log.warning("CMR reported %d hits for %s but returned %d", self.hits, self.query, len(self.granules))
            return True
        if next_after == self.search_after or next_after in self.tokens:
            raise self._fail("CMR-Search-After repeated a token already followed")
        if self.page_no >= -(-self.hits // self.page_size) + 1:
            raise self._fail(f"{self.page_no} pages for {self.hits} hits of {self.page_size} per page")
        self.tokens.add(next_after)
        self.search_after = next_after
        return False
