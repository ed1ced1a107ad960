"""Which CMR collection a request names, and whether it exists (cheap: no numpy, no requests).

A granule search for a collection that does not exist is no error to CMR: it answers 200 with
zero hits, so a typo in ``sst_collection`` would publish a complete, empty result. Before any
work, :func:`check_collections` asks CMR's collection search once per requested collection
(cached per process) and refuses an unknown one as a validation error naming the field. It
runs in the API function too, which ships only Powertools + pydantic and the runtime's boto3,
so it speaks urllib3 (botocore's own dependency) with core.http's retry policy.

A collection is a concept id (``C3564876395-NSIDC_CPRD``) or a short name and version
(``ATL07/007``, ``ATL07.007``, ``MODIS_A-JPL-L2P-v2019.0/2019.0``, optionally ``/PROVIDER``,
or a short name ending in its version, ``MODIS_A-JPL-L2P-v2019.0``): one syntax, which
requests and settings are checked against too (:func:`is_collection`).
The retired on-premises ``C2003771980-NSIDC_ECS`` (ATL07 v004) is accepted and searched as the
configured current ATL07 collection.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from core.collections import COLLECTION_SYNTAX, CONCEPT_ID, NSIDC_VERSION, SLASHED, is_collection
from core.config import ATL07_RETIRED_COLLECTION, Settings
from core.errors import InputError

log = logging.getLogger(__name__)

FIELDS = ("atl07_collection", "sst_collection")
CACHE_TTL_S = 3600.0  # a collection that exists now exists for the life of a container


@dataclass(frozen=True)
class CollectionQuery:
    """The CMR parameters that select one collection."""

    concept_id: str | None = None
    short_name: str | None = None
    version: str | None = None
    provider: str | None = None

    def params(self) -> dict[str, str]:
        if self.concept_id:
            return {"collection_concept_id": self.concept_id}
        out = {"short_name": self.short_name or ""}
        if self.version:
            out["version"] = self.version
        if self.provider:
            out["provider"] = self.provider
        return out

    def __str__(self) -> str:
        return self.concept_id or "/".join(p for p in (self.short_name, self.version, self.provider) if p)


def parse_collection(collection: str, settings: Settings | None = None) -> CollectionQuery:
    """``C...-PROV`` | ``SHORT/VERSION[/PROVIDER]`` | ``SHORT.VVV`` | ``SHORT-vVERSION`` -> a query."""
    text = (collection or "").strip()
    if not text:
        raise InputError("collection is empty", "collection")
    if not is_collection(text):
        raise InputError(f"collection {text[:100]!r} is not {COLLECTION_SYNTAX}", "collection")
    if text == ATL07_RETIRED_COLLECTION:
        current = (settings or Settings()).atl07_collection
        log.info("collection %s (ATL07 v004, on-premises) is retired; searching %s", text, current)
        text = current
    if CONCEPT_ID.fullmatch(text):
        return CollectionQuery(concept_id=text)
    m = SLASHED.fullmatch(text)
    if m:
        return CollectionQuery(short_name=m["short"], version=m["version"], provider=m["provider"])
    m = NSIDC_VERSION.fullmatch(text)
    if m:
        return CollectionQuery(short_name=m["short"], version=m["version"])
    return CollectionQuery(short_name=text)


_known: dict[tuple[str, str], float] = {}  # (cmr_url, collection query) -> cached until
_known_lock = threading.Lock()


def collection_exists(collection: str, settings: Settings, *, http=None) -> bool | None:
    """True / False from one CMR collection search; None when CMR could not be asked (the
    date's own search will then fail by name). Only positive answers are cached."""
    import urllib3

    from core.http import retry_policy

    query = parse_collection(collection, settings)
    key = (settings.cmr_url, str(query))
    now = time.monotonic()
    with _known_lock:
        if _known.get(key, 0.0) > now:
            return True
    params = {"concept_id": query.concept_id} if query.concept_id else query.params()
    url = f"{settings.cmr_url.rstrip('/')}/search/collections.json?{urlencode({**params, 'page_size': 1})}"
    pool = http or urllib3.PoolManager(retries=retry_policy(settings), timeout=settings.http_timeout_s)
    try:
        resp = pool.request("GET", url, headers={"Client-Id": settings.client_id, "Accept": "application/json"})
        body = json.loads(resp.data) if resp.status == 200 else None
        entries = body["feed"]["entry"] if body is not None else None
    except (urllib3.exceptions.HTTPError, ValueError, KeyError, TypeError) as exc:
        log.warning("could not check collection %s with CMR (%s); the search will tell", query, type(exc).__name__)
        return None
    if entries is None:
        log.warning("could not check collection %s with CMR (HTTP %d); the search will tell", query, resp.status)
        return None
    if entries:
        with _known_lock:
            _known[key] = now + CACHE_TTL_S
    return bool(entries)


def check_collections(request, settings: Settings, *, http=None) -> None:
    """Raise InputError naming the field for each requested collection CMR does not know.

    The configured defaults are the operator's choice and are not asked about."""
    for field in FIELDS:
        value = getattr(request, field, None)
        if value is None or value == getattr(settings, field):
            continue
        try:
            exists = collection_exists(value, settings, http=http)
        except InputError as exc:
            raise InputError(f"{field}: {exc}", field) from None
        if exists is False:
            raise InputError(
                f"{field}: CMR has no collection {value!r} (a search of an unknown collection finds "
                f"nothing, so nothing would be colocated); the default is {getattr(settings, field)}",
                field,
            )


# --- what a request can reach: collection extents and granule counts ---------------------------
@dataclass(frozen=True)
class TemporalExtent:
    """A collection's temporal extent from its UMM-C ``TemporalExtents`` (CMR collection search);
    ``end`` None: the collection is ongoing (``EndsAtPresentFlag``, or no EndingDateTime)."""

    collection: str
    start: datetime | None
    end: datetime | None


def _utc_time(text: str | None) -> datetime | None:
    if not text:
        return None
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _pool(settings: Settings, http):
    import urllib3

    from core.http import retry_policy

    return http or urllib3.PoolManager(retries=retry_policy(settings), timeout=settings.http_timeout_s)


def _get_json(settings: Settings, path: str, params: dict, http=None) -> tuple[dict | None, dict]:
    """One CMR search answer as (JSON body or None, headers); None when CMR could not answer."""
    import urllib3

    url = f"{settings.cmr_url.rstrip('/')}{path}?{urlencode(params)}"
    try:
        resp = _pool(settings, http).request("GET", url, headers={"Client-Id": settings.client_id,
                                                                   "Accept": "application/json"})
        return (json.loads(resp.data) if resp.status == 200 else None), dict(resp.headers)
    except (urllib3.exceptions.HTTPError, ValueError) as exc:
        # not a warning: the caller says what it could not do (the estimate's notes; no trim), and
        # a date's own search fails by name if CMR is really down
        log.info("CMR %s failed (%s)", path, type(exc).__name__)
        return None, {}


@dataclass(frozen=True)
class CollectionRecord:
    """What a collection's UMM-C record says that the service uses: its temporal extent (None:
    none listed or unreadable) and its DOI (UMM-C ``DOI.DOI``; None where CMR gives a
    ``MissingReason`` instead)."""

    collection: str
    extent: TemporalExtent | None
    doi: str | None


_records: dict[tuple[str, str], tuple[float, CollectionRecord]] = {}


def collection_record(collection: str, settings: Settings, *, http=None) -> CollectionRecord | None:
    """The collection's UMM-C record (CMR Search API, ``/search/collections.umm_json``), asked
    once per process for its extent and its DOI alike; None when CMR could not be asked or knows
    no such collection (not cached: the next caller asks again)."""
    query = parse_collection(collection, settings)
    key = (settings.cmr_url, str(query))
    now = time.monotonic()
    with _known_lock:
        cached = _records.get(key)
    if cached and cached[0] > now:
        return cached[1]
    params = {"concept_id": query.concept_id} if query.concept_id else query.params()
    body, _ = _get_json(settings, "/search/collections.umm_json", {**params, "page_size": 1}, http)
    try:
        umm = body["items"][0]["umm"] if body and body.get("items") else None
    except (KeyError, TypeError, IndexError):
        umm = None
    if not isinstance(umm, dict):
        return None
    record = CollectionRecord(collection, _temporal_extent(collection, query, umm), _umm_doi(umm))
    with _known_lock:
        _records[key] = (now + CACHE_TTL_S, record)
    return record


def _umm_doi(umm: dict) -> str | None:
    """UMM-C 1.17 ``DOI``: ``{"DOI": "10.5067/..."}``, or ``{"MissingReason": ...}`` when the
    collection has none."""
    doi = umm.get("DOI")
    value = str(doi.get("DOI") or "").strip() if isinstance(doi, dict) else ""
    return value or None


def _temporal_extent(collection: str, query: CollectionQuery, umm: dict) -> TemporalExtent | None:
    """The union of the UMM-C ``TemporalExtents`` range(s) (UMM-C 1.17); None when it lists none."""
    try:
        extents = umm.get("TemporalExtents") or []
        ranges = [r for ext in extents for r in ext.get("RangeDateTimes") or []]
        ongoing = any(ext.get("EndsAtPresentFlag") for ext in extents)
        starts = [_utc_time(r.get("BeginningDateTime")) for r in ranges]
        ends = [_utc_time(r.get("EndingDateTime")) for r in ranges]
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        log.info("collection %s: unreadable TemporalExtents (%s); nothing trimmed", query, type(exc).__name__)
        return None
    if not ranges:
        return None
    return TemporalExtent(collection, None if None in starts else min(s for s in starts if s),
                          None if ongoing or None in ends else max(e for e in ends if e))


def collection_extent(collection: str, settings: Settings, *, http=None) -> TemporalExtent | None:
    """The collection's temporal extent from its cached UMM-C record (:func:`collection_record`);
    None when CMR could not be asked or lists none (then nothing is trimmed)."""
    record = collection_record(collection, settings, http=http)
    return record.extent if record else None


def collection_doi(collection: str, settings: Settings, *, http=None) -> str | None:
    """The collection's DOI from its cached UMM-C record; None when CMR has none or could not be
    asked (the product then cites the file's own attributes)."""
    record = collection_record(collection, settings, http=http)
    return record.doi if record else None


@dataclass(frozen=True)
class GranuleCount:
    """What CMR lists for a collection in a box and time range: hits, and the mean size of a
    sample page's granules (bytes; 0 when unknown)."""

    hits: int
    mean_bytes: float


def _granule_bytes(item: dict) -> float | None:
    """A UMM-G record's data size: its largest file (a record also lists its .md5 sidecar)."""
    files = ((item.get("umm") or {}).get("DataGranule") or {}).get("ArchiveAndDistributionInformation") or []
    units = {"KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}
    sizes = [float(f["SizeInBytes"]) if f.get("SizeInBytes") is not None
             else float(f.get("Size") or 0) * units.get(str(f.get("SizeUnit", "MB")).upper(), 2**20) for f in files]
    return max(sizes) if sizes else None


def count_granules(collection: str, bbox: tuple[float, float, float, float], start: datetime, end: datetime,
                   settings: Settings, *, sample: int = 20, http=None) -> GranuleCount | None:
    """One UMM-G granule search (``page_size=sample``): ``CMR-Hits`` and the mean data size of the
    sample's granules; None when CMR could not answer."""
    query = parse_collection(collection, settings)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    params = {**query.params(), "bounding_box": ",".join(f"{v:g}" for v in bbox),
              "temporal": f"{start.astimezone(UTC).strftime(stamp)},{end.astimezone(UTC).strftime(stamp)}",
              "page_size": sample}
    body, headers = _get_json(settings, "/search/granules.umm_json", params, http)
    if body is None:
        return None
    try:
        items = body["items"]
        hits = int({k.lower(): v for k, v in headers.items()}.get("cmr-hits", body.get("hits", len(items))))
        sizes = [b for b in (_granule_bytes(i) for i in items) if b]
    except (KeyError, TypeError, ValueError):
        return None
    return GranuleCount(hits, sum(sizes) / len(sizes) if sizes else 0.0)
