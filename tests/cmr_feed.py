"""The CMR JSON feed (``granules.json``), read only to check recorded responses and the emulator.

The service reads UMM-G (core.access.cmr). The feed is what the tutorial read; its ``granule_size`` is
the first listed file's size, which is how the 98-byte ``.nc.md5`` sidecars of four full
granules showed up as "9.3e-5 MB granules". Parsed here with the same data-file rule as UMM-G.
"""
from __future__ import annotations

from datetime import UTC, datetime
from posixpath import basename
from urllib.parse import urlparse

from core.access.cmr import Granule, is_sidecar
from core.config import Settings
from core.model import BBox


def _utc(text: str | None) -> datetime | None:
    if not text:
        return None
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def select_feed_links(links: list[dict]) -> dict[str, str | None]:
    """HTTPS data link, s3:// link and /s3credentials endpoint from JSON-feed links (``rel`` URIs)."""
    https = s3 = creds = None
    for ln in links or []:
        href, rel = ln.get("href", ""), ln.get("rel", "")
        if not href or ln.get("inherited") or is_sidecar(href):
            continue
        if rel.endswith(("/data#", "/s3#")) and "opendap" not in href.lower():
            if href.startswith("s3://"):
                s3 = s3 or href
            elif urlparse(href).scheme in ("https", "http"):
                https = https or href
        elif "s3credentials" in href and urlparse(href).scheme in ("https", "http"):
            creds = creds or href
    return {"https": https, "s3": s3, "s3credentials": creds}


def granule_from_feed_entry(entry: dict, settings: Settings) -> Granule:
    links = select_feed_links(entry.get("links") or [])
    data_url = links["https"] or links["s3"]
    file_name = entry.get("producer_granule_id") or (basename(urlparse(data_url).path) if data_url else entry["title"])
    size = int(round(float(entry["granule_size"]) * 2**20)) if entry.get("granule_size") not in (None, "") else None
    polygon = None
    for poly in entry.get("polygons") or []:
        vals = [float(v) for v in (poly[0] if isinstance(poly, list) else poly).split()]
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
    )
