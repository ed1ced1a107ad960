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
