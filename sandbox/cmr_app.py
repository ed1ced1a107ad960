"""Loopback CMR search emulator for the offline sandbox.

Public API (used by ``sandbox.services``)::

    create_cmr_app(scene: Scene, links: Callable[[SceneGranule], dict], *, faults=None) -> flask.Flask

``links(g)`` returns ``{"https": url, "s3": "s3://bucket/key", "s3credentials": url}`` for a
granule (the sandbox supplies loopback DAAC URLs). ``faults`` is an optional
``sandbox.faults.Faults`` rule set; when given it is installed on the app under the name
``"cmr"`` (``Sandbox`` installs its own, so it does not pass one). With it tests inject 429 +
``Retry-After``, 500/503 bursts, delays and malformed pages (``body=...``, status 200).

Routes, with the real response shapes (``tests/data/realdata/cmr/``):

* ``GET /search/granules.umm_json`` -> ``{"hits", "took", "items": [{"meta", "umm"}]}`` (UMM-G
  1.6.5) answered as the recorded records are (``tests/data/realdata/cmr/recorded/``): the data
  file ("GET DATA", https) and its siblings (``.nc.md5``, ``.cmr.json``: "EXTENDED METADATA", in
  PO.DAAC's public bucket) in a per-granule order of their own; "GET DATA VIA DIRECT ACCESS" s3
  links on NSIDC records and on half the PO.DAAC ones (the recorded PO.DAAC item has none: the
  client derives the S3 location from the HTTPS path); "VIEW RELATED INFORMATION" /s3credentials
  and an OPeNDAP "USE SERVICE API" link for PO.DAAC. ``ArchiveAndDistributionInformation`` has
  one entry per file with its own Size (MB), SizeInBytes and MD5; the records of the four
  granules the tutorial's feed showed at 9.346e-5 MB list the 98-byte ``.nc.md5`` first.
* ``GET /search/granules.json`` -> ``{"feed": {"updated", "id", "title", "entry": [...]}}`` with
  ``links`` (rel ``.../data#`` for https and s3 — PO.DAAC lists the s3 link first, as in the
  tutorial — and ``.../metadata#`` for /s3credentials), ``granule_size`` in MB of the first
  listed file (so 9.346e-5 MB where that is the .md5, as the tutorial saw), ``polygons``
  ("lat lon ..." strings) or ``boxes`` ("S W N E").
* ``GET /search/collections.json`` -> the feed of collections matching short_name/version/
  provider/concept_id.

Query parameters: ``concept_id`` / ``collection_concept_id`` / ``echo_collection_id`` (a
collection ``C...`` or granule ``G...`` id), ``short_name`` + ``version`` (+ ``provider``),
``bounding_box`` (W,S,E,N; W > E crosses the antimeridian), ``temporal`` (``start,end``, either
side may be empty), ``page_size`` (default 10, 0..2000, otherwise 400), ``page_num``. Each of
them may also be given with a ``[]`` suffix. Paging: results are sorted by (start time, id); as
in the recorded cassettes, every non-empty page carries ``CMR-Search-After`` (JSON
``["provider", start_ms, id]``), even one holding all hits, and an empty page has none; the
client sends it back as a request header. Every response carries ``CMR-Request-Id``, ``CMR-Hits``
(searches) and ``CMR-Took``. Spatial matching uses the granule's footprint: its polygon ring
(densified) or its bounding rectangles.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from flask import Flask, Response, request

from core.collections import profile

DATA_REL = "http://esipfed.org/ns/fedsearch/1.1/data#"
METADATA_REL = "http://esipfed.org/ns/fedsearch/1.1/metadata#"
BROWSE_REL = "http://esipfed.org/ns/fedsearch/1.1/browse#"
UMM_CONTENT_TYPE = "application/vnd.nasa.cmr.umm_results+json;version=1.6.5; charset=utf-8"
JSON_CONTENT_TYPE = "application/json;charset=utf-8"
MAX_PAGE_SIZE = 2000

COLLECTIONS = {  # concept id -> facts CMR would return for the collection
    "C3564876395-NSIDC_CPRD": dict(short_name="ATL07", version_id="007", data_center="NSIDC_CPRD",
                                   dataset_id="ATLAS/ICESat-2 L3A Sea Ice Height V007",
                                   doi="10.5067/ATLAS/ATL07.007"),
    "C2003771980-NSIDC_ECS": dict(short_name="ATL07", version_id="004", data_center="NSIDC_ECS",
                                  dataset_id="ATLAS/ICESat-2 L3A Sea Ice Height V004"),
    "C1940473819-POCLOUD": dict(short_name="MODIS_A-JPL-L2P-v2019.0", version_id="2019.0", data_center="POCLOUD",
                                dataset_id="GHRSST Level 2P Global Sea Surface Skin Temperature from the Moderate "
                                "Resolution Imaging Spectroradiometer (MODIS) on the NASA Aqua satellite (GDS2)",
                                doi=profile("MODIS_A-JPL-L2P-v2019.0")["doi"]),
}

# UMM-C TemporalExtents of the collections above, as CMR's collection search returns them
# (/search/collections.umm_json; NSIDC's ATL07 landing pages: data from 13 October 2018;
# PO.DAAC's MODIS_A-JPL-L2P-v2019.0: from 4 July 2002, ongoing)
TEMPORAL_EXTENTS = {
    "C3564876395-NSIDC_CPRD": {"RangeDateTimes": [{"BeginningDateTime": "2018-10-13T00:00:00.000Z"}],
                               "EndsAtPresentFlag": True},
    "C2003771980-NSIDC_ECS": {"RangeDateTimes": [{"BeginningDateTime": "2018-10-13T00:00:00.000Z"}],
                              "EndsAtPresentFlag": True},
    "C1940473819-POCLOUD": {"RangeDateTimes": [{"BeginningDateTime": "2002-07-04T00:00:00.000Z"}],
                            "EndsAtPresentFlag": True},
}


class BadRequest(Exception):
    pass


# --- geometry ---------------------------------------------------------------------------------


def _lon_ranges(west: float, east: float) -> list[tuple[float, float]]:
    if west <= east:
        return [(west, east)]
    return [(west, 180.0), (-180.0, east)]


def _rect_intersects(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    if a[1] > b[3] or b[1] > a[3]:
        return False
    return any(w1 <= e2 and w2 <= e1 for w1, e1 in _lon_ranges(a[0], a[2]) for w2, e2 in _lon_ranges(b[0], b[2]))


def _in_rect(lon: np.ndarray, lat: np.ndarray, r: tuple[float, float, float, float]) -> np.ndarray:
    ok = np.zeros(lon.shape, bool)
    for w, e in _lon_ranges(r[0], r[2]):
        ok |= (lon >= w) & (lon <= e)
    return ok & (lat >= r[1]) & (lat <= r[3])


def _in_ring(lon: np.ndarray, lat: np.ndarray, ring: list[tuple[float, float]]) -> np.ndarray:
    """Even-odd rule in lon/lat, with longitudes unwrapped relative to the ring's first vertex."""
    ref = ring[0][0]
    rx = np.array([((x - ref + 180.0) % 360.0) - 180.0 for x, _ in ring])
    ry = np.array([y for _, y in ring])
    px = ((lon - ref + 180.0) % 360.0) - 180.0
    inside = np.zeros(px.shape, bool)
    for k in range(len(ring) - 1):
        x1, y1, x2, y2 = rx[k], ry[k], rx[k + 1], ry[k + 1]
        crosses = (y1 > lat) != (y2 > lat)
        with np.errstate(divide="ignore", invalid="ignore"):
            xi = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (px < xi)
    return inside


def _densify(points: Iterable[tuple[float, float]], n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    pts = list(points)
    xs, ys = [], []
    for (x1, y1), (x2, y2) in zip(pts[:-1], pts[1:]):
        dx = ((x2 - x1 + 180.0) % 360.0) - 180.0
        t = np.linspace(0.0, 1.0, n, endpoint=False)
        xs.append(x1 + t * dx)
        ys.append(y1 + t * (y2 - y1))
    lon = ((np.concatenate(xs) + 180.0) % 360.0) - 180.0
    return lon, np.concatenate(ys)


def _bbox_ring(b: tuple[float, float, float, float]) -> list[tuple[float, float]]:
    w, s, e, n = b
    e2 = e if w <= e else e + 360.0
    return [(w, s), (e2, s), (e2, n), (w, n), (w, s)]


def granule_intersects(g, bbox: tuple[float, float, float, float]) -> bool:
    if getattr(g, "rectangles", None):
        return any(_rect_intersects(r, bbox) for r in g.rectangles)
    ring = g.polygon
    if not ring:
        return True  # no spatial metadata: CMR would not exclude it on space
    lon, lat = _densify(ring)
    if _in_rect(lon, lat, bbox).any():
        return True
    blon, blat = _densify(_bbox_ring(bbox))
    return bool(_in_ring(blon, blat, ring).any())


# --- parameters ------------------------------------------------------------------------------


def _arg(name: str) -> str | None:
    for key in (name, f"{name}[]"):
        values = request.args.getlist(key)
        if values:
            return values[0]
    return None


def _parse_time(text: str) -> datetime:
    text = text.strip()
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"[{text}] is not a valid datetime") from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _parse_bbox(text: str) -> tuple[float, float, float, float]:
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise BadRequest(f"[{text}] is not a valid bounding box") from exc
    if not (-90 <= s <= n <= 90 and -180 <= w <= 180 and -180 <= e <= 180):
        raise BadRequest(f"bounding box {text} is out of range")
    return w, s, e, n


def _sort_key(g) -> list:
    """CMR's search-after value: ["provider", start in ms, numeric concept id]."""
    number = g.concept_id[1:].split("-")[0]
    return [g.provider.lower(), int(g.start.timestamp() * 1000), int(number) if number.isdigit() else g.concept_id]


def _order(g) -> tuple:
    key = _sort_key(g)
    return (key[1], str(key[2]).zfill(20), g.concept_id)


def _filter(granules) -> list:
    out = list(granules)
    cid = _arg("concept_id") or _arg("collection_concept_id") or _arg("echo_collection_id")
    if cid:
        if cid.startswith("G"):
            out = [g for g in out if g.concept_id == cid]
        else:
            out = [g for g in out if g.collection_concept_id == cid]
    short_name, version = _arg("short_name"), _arg("version")
    provider = _arg("provider") or _arg("provider_short_name")
    if short_name:
        out = [g for g in out if g.short_name == short_name]
    if version:
        out = [g for g in out if str(g.version).lstrip("0") == version.lstrip("0")]
    if provider:
        out = [g for g in out if g.provider == provider]
    if not (cid or short_name):
        raise BadRequest("a collection (concept_id or short_name) is required for granule searches")
    bbox = _arg("bounding_box")
    if bbox:
        box = _parse_bbox(bbox)
        out = [g for g in out if granule_intersects(g, box)]
    temporal = _arg("temporal")
    if temporal:
        parts = temporal.split(",")
        start = _parse_time(parts[0]) if parts[0].strip() else None
        end = _parse_time(parts[1]) if len(parts) > 1 and parts[1].strip() else None
        out = [g for g in out if (end is None or g.start <= end) and (start is None or g.end >= start)]
    return sorted(out, key=_order)


def _page(matches: list) -> tuple[list, str | None]:
    size_text = _arg("page_size")
    try:
        size = 10 if size_text is None else int(size_text)
    except ValueError:
        raise BadRequest(f"page_size must be a number between 0 and {MAX_PAGE_SIZE}") from None
    if not 0 <= size <= MAX_PAGE_SIZE:
        raise BadRequest(f"page_size must be a number between 0 and {MAX_PAGE_SIZE}")
    after = request.headers.get("CMR-Search-After")
    if after:
        try:
            key = json.loads(after)
            here = (int(key[1]), str(key[2]).zfill(20))
        except (ValueError, TypeError, IndexError, KeyError):
            raise BadRequest(f"Invalid CMR-Search-After header value: {after}") from None
        pos = [i for i, g in enumerate(matches) if _order(g)[:2] > here]
        start = pos[0] if pos else len(matches)
    else:
        page_num = int(_arg("page_num") or 1)
        start = (page_num - 1) * size
    page = matches[start : start + size]
    return page, (json.dumps(_sort_key(page[-1])) if page else None)


# --- which parameters: implemented, refused as CMR refuses, or refused as not emulated -------
# CMR answers 400 {"errors": ["Parameter [foo] was not recognized."]} to a parameter it does not
# know (CMR Search API docs, "General Request Details"); an emulator that ignored it would answer
# 200 with every granule. A parameter CMR knows but this emulator does not apply is refused in
# CMR's error shape too, naming it, rather than silently ignored.
GRANULE_PARAMS = {"concept_id", "collection_concept_id", "echo_collection_id", "short_name", "version", "provider",
                  "provider_short_name", "bounding_box", "temporal", "page_size", "page_num", "granule_ur",
                  "readable_granule_name", "producer_granule_id", "day_night_flag", "point", "sort_key",
                  "downloadable", "online_only"}
COLLECTION_PARAMS = {"concept_id", "short_name", "version", "provider", "provider_short_name", "page_size",
                     "page_num"}
CMR_PARAMS_NOT_EMULATED = {  # CMR knows these (granule or collection searches); the emulator does not apply them
    "polygon", "circle", "line", "shapefile", "cloud_cover", "orbit_number", "equator_crossing_longitude",
    "equator_crossing_date", "platform", "instrument", "sensor", "entry_title", "dataset_id", "revision_date",
    "updated_since", "production_date", "created_at", "attribute", "project", "campaign", "exclude",
    "cycle", "passes", "track_id", "browse_only", "browsable", "native_id", "collection_data_type",
    "two_d_coordinate_system", "grid", "offset", "scroll", "include_facets", "keyword", "archive_center",
    "cloud_hosted", "processing_level_id", "has_granules", "tool_concept_id", "service_concept_id",
    "include_granule_counts", "temporal_facet", "data_center", "spatial_keyword", "science_keywords",
    "has_granules_or_cwic", "doi", "instance_format", "bounding_box_srs", "token", "echo_token",
    "include_has_granules", "include_tags", "tag_key", "variable_concept_id",
}
# CMR's granule sort keys (Search API docs, "Sorting Granule Results"); only start_date, the
# emulator's own order, is applied
CMR_GRANULE_SORT_KEYS = {"campaign", "entry_title", "dataset_id", "data_size", "end_date", "granule_ur",
                         "producer_granule_id", "project", "provider", "readable_granule_name", "short_name",
                         "start_date", "version", "platform", "instrument", "sensor", "day_night_flag",
                         "online_only", "browsable", "browse_only", "cloud_cover", "revision_date"}
_NAME_PARAMS = ("granule_ur", "readable_granule_name", "producer_granule_id")
_OPTIONS = {"pattern", "ignore_case"}  # options[<name param>][...] the emulator applies
_DAY_NIGHT = ("day", "night", "both", "unspecified")


def _not_emulated(what: str) -> BadRequest:
    return BadRequest(f"{what} is valid in CMR but not implemented by the sandbox's CMR emulator "
                      "(it would be ignored and every granule returned)")


def check_parameters(known: set[str]) -> None:
    """400 in CMR's error shape for a parameter CMR does not know, or one the emulator does not apply."""
    for key in request.args:
        name = key[:-2] if key.endswith("[]") else key
        if name.startswith("options[") and name.endswith("]"):
            param, _, option = name[len("options["):-1].partition("][")
            if param not in known or param not in _NAME_PARAMS or option not in _OPTIONS:
                raise _not_emulated(f"Parameter [{name}]")
            continue
        if name in known:
            continue
        if name in CMR_PARAMS_NOT_EMULATED:
            raise _not_emulated(f"Parameter [{name}]")
        raise BadRequest(f"Parameter [{name}] was not recognized.")


def _values(name: str) -> list[str]:
    return request.args.getlist(name) + request.args.getlist(f"{name}[]")


def _option(param: str, option: str) -> bool:
    return (request.args.get(f"options[{param}][{option}]") or "").lower() == "true"


def _name_matches(param: str, candidates: list[str]) -> bool:
    import fnmatch

    wanted = _values(param)
    fold = _option(param, "ignore_case")
    pattern = _option(param, "pattern")
    for value in wanted:
        for name in candidates:
            a, b = (name.lower(), value.lower()) if fold else (name, value)
            if (fnmatch.fnmatchcase(a, b) if pattern else a == b):
                return True
    return False


def _bool(name: str) -> None:
    for value in _values(name):
        if value.lower() not in ("true", "false"):
            raise BadRequest(f"Parameter {name} must take value of true or false, but was [{value}]")


def filter_more(matches: list) -> list:
    """The granule parameters beyond the collection, bbox and time (:func:`_filter`)."""
    out = list(matches)
    if _values("granule_ur"):
        out = [g for g in out if _name_matches("granule_ur", [g.title])]
    if _values("producer_granule_id"):
        out = [g for g in out if _name_matches("producer_granule_id", [g.file_name])]
    if _values("readable_granule_name"):  # CMR: the granule UR or the producer granule id
        out = [g for g in out if _name_matches("readable_granule_name", [g.title, g.file_name])]
    for flag in _values("day_night_flag"):
        if flag.lower() not in _DAY_NIGHT:
            raise BadRequest(f"day_night_flag [{flag}] must be either day, night, both or unspecified")
        out = [g for g in out if (getattr(g, "day_night", "") or "unspecified").lower() == flag.lower()]
    for point in _values("point"):  # several points: all of them (CMR's default for spatial parameters)
        try:
            lon, lat = (float(v) for v in point.split(","))
        except ValueError:
            raise BadRequest(f"[{point}] is not a valid point") from None
        out = [g for g in out if granule_intersects(g, _parse_bbox(f"{lon},{lat},{lon},{lat}"))]
    for key in _values("sort_key"):
        if key.lstrip("-+") not in CMR_GRANULE_SORT_KEYS:
            raise BadRequest(f"The sort key [{key}] is not a valid field for sorting granules.")
        if key.lstrip("+") != "start_date":
            raise _not_emulated(f"sort_key [{key}]")
    _bool("downloadable")  # every granule of the scene is downloadable and online
    _bool("online_only")
    return out


def _collection_umm(concept_id: str, c: dict) -> dict:
    return {"meta": {"concept-type": "collection", "concept-id": concept_id, "revision-id": 1,
                     "native-id": f"{c['short_name']}_{c['version_id']}", "provider-id": c["data_center"],
                     "format": "application/vnd.nasa.cmr.umm+json", "revision-date": "2024-01-15T10:12:31.000Z"},
            "umm": {"ShortName": c["short_name"], "Version": c["version_id"], "EntryTitle": c["dataset_id"],
                    "TemporalExtents": [TEMPORAL_EXTENTS[concept_id]] if concept_id in TEMPORAL_EXTENTS else [],
                    # UMM-C 1.17 DOI: the DOI, or why there is none (CMR's MissingReason)
                    "DOI": {"DOI": c["doi"]} if c.get("doi") else
                    {"MissingReason": "Not Applicable", "Explanation": "no DOI is registered for this collection"},
                    "DirectDistributionInformation": {"Region": "us-west-2"} if c["data_center"] != "NSIDC_ECS"
                    else None}}


# --- documents -------------------------------------------------------------------------------


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _sibling_url(ln: dict, g, sibling: dict) -> str:
    """A sibling's HTTPS URL on the granule's TEA host (PO.DAAC keeps them in its public bucket)."""
    return ln["https"].replace(f"/{g.bucket}/{g.key}", f"/{sibling['bucket']}/{sibling['key']}")


def _varied(items: list, g, salt: str) -> list:
    """A fixed per-granule permutation: real records list their files in no fixed order."""
    digest = hashlib.sha256(f"{salt}:{g.concept_id}".encode()).digest()
    return [item for _, item in sorted(zip(digest, items), key=lambda pair: pair[0])]


def has_direct_link(g) -> bool:
    """Whether the record carries a "GET DATA VIA DIRECT ACCESS" link. PO.DAAC's recorded UMM-G
    item has none (HTTPS only); the recorded SSH-grid records have one: half the L2P granules
    get one, so both readings of a record are exercised."""
    if g.provider != "POCLOUD":
        return True
    return hashlib.sha256(g.concept_id.encode()).digest()[0] % 2 == 0


def _related_urls(g, ln: dict) -> list[dict]:
    name = g.file_name
    files = [{"URL": ln["https"], "Description": f"Download {name}", "Type": "GET DATA"}]
    files += [{"URL": _sibling_url(ln, g, sib), "Description": f"Download {sib['name']}", "Type": "EXTENDED METADATA"}
              for sib in getattr(g, "siblings", None) or []]
    urls = _varied(files, g, "related-urls")
    if has_direct_link(g):
        urls.append({"URL": ln["s3"], "Description": "This link provides direct download access via S3 to the granule",
                     "Type": "GET DATA VIA DIRECT ACCESS"})
    urls.append({"URL": ln["s3credentials"],
                 "Description": "api endpoint to retrieve temporary credentials valid for same-region direct s3 access",
                 "Type": "VIEW RELATED INFORMATION"})
    if g.provider == "POCLOUD":
        urls.append({"URL": f"https://opendap.earthdata.nasa.gov/collections/{g.collection_concept_id}/granules/{g.title}",
                     "Type": "USE SERVICE API", "Subtype": "OPENDAP DATA", "Description": "OPeNDAP request URL"})
    return urls


def _file_info(name: str, size: int, md5: str | None) -> dict:
    info = {"SizeUnit": "MB", "Size": size / 2**20, "SizeInBytes": size, "Name": name}
    if md5:
        info["Checksum"] = {"Value": md5, "Algorithm": "MD5"}
    return info


def archive_info(g) -> list[dict]:
    """ArchiveAndDistributionInformation: the data file and its checksum sidecar, each with its
    own size. PO.DAAC lists them in either order; the four granules the tutorial's feed showed at
    9.346e-5 MB are those listing the .md5 first (``md5_listed_first``)."""
    files = [_file_info(g.file_name, g.size_bytes, getattr(g, "md5", None))]
    files += [_file_info(sib["name"], sib["size_bytes"], sib.get("md5")) for sib in getattr(g, "siblings", None) or []
              if sib["name"].endswith(".md5")]
    return files[::-1] if getattr(g, "md5_listed_first", False) else files


def _spatial_umm(g) -> dict:
    if getattr(g, "rectangles", None):
        return {"HorizontalSpatialDomain": {"Geometry": {"BoundingRectangles": [
            {"WestBoundingCoordinate": w, "SouthBoundingCoordinate": s, "EastBoundingCoordinate": e,
             "NorthBoundingCoordinate": n} for w, s, e, n in g.rectangles]}}}
    if g.polygon:
        return {"HorizontalSpatialDomain": {"Geometry": {"GPolygons": [{"Boundary": {"Points": [
            {"Longitude": x, "Latitude": y} for x, y in g.polygon]}}]}}}
    return {}


def umm_item(g, ln: dict) -> dict:
    return {
        "meta": {
            "concept-type": "granule", "concept-id": g.concept_id, "revision-id": 1, "native-id": g.title,
            "collection-concept-id": g.collection_concept_id, "provider-id": g.provider,
            "format": "application/vnd.nasa.cmr.umm+json", "revision-date": "2024-01-15T10:12:31.000Z",
        },
        "umm": {
            "TemporalExtent": {"RangeDateTime": {"BeginningDateTime": _iso(g.start), "EndingDateTime": _iso(g.end)}},
            "MetadataSpecification": {"URL": "https://cdn.earthdata.nasa.gov/umm/granule/v1.6.5", "Name": "UMM-G",
                                      "Version": "1.6.5"},
            "GranuleUR": g.title,
            "SpatialExtent": _spatial_umm(g),
            "DataGranule": {
                "ArchiveAndDistributionInformation": archive_info(g),
                "DayNightFlag": getattr(g, "day_night", "") or "Unspecified",
                "ProductionDateTime": "2024-01-15T10:00:00.000Z",
            },
            "CollectionReference": {"ShortName": g.short_name, "Version": g.version},
            "RelatedUrls": _related_urls(g, ln),
        },
    }


def feed_entry(g, ln: dict) -> dict:
    data_links = [
        {"rel": DATA_REL, "type": "application/x-hdf5" if g.daac == "nsidc" else "application/x-netcdf",
         "title": f"Download {g.file_name}", "hreflang": "en-US", "href": ln["https"]},
        {"rel": DATA_REL, "title": "This link provides direct download access via S3 to the granule",
         "hreflang": "en-US", "href": ln["s3"]},
    ]
    if g.provider == "POCLOUD":
        data_links.reverse()  # PO.DAAC's feed lists the s3:// link first (the tutorial's links[0])
    entry = {
        "boxes" if getattr(g, "rectangles", None) else "polygons": (
            [f"{s} {w} {n} {e}" for w, s, e, n in g.rectangles] if getattr(g, "rectangles", None)
            else [[" ".join(f"{y} {x}" for x, y in g.polygon)]] if g.polygon else []
        ),
        "time_start": _iso(g.start),
        "updated": "2024-01-15T10:12:31.000Z",
        "dataset_id": COLLECTIONS.get(g.collection_concept_id, {}).get("dataset_id", g.short_name),
        "data_center": g.provider,
        "title": g.title,
        "coordinate_system": "CARTESIAN" if getattr(g, "rectangles", None) else "GEODETIC",
        "day_night_flag": (getattr(g, "day_night", "") or "UNSPECIFIED").upper(),
        "time_end": _iso(g.end),
        "id": g.concept_id,
        "original_format": "UMM_JSON",
        # the feed's granule_size is the first listed file's: the .md5's where PO.DAAC lists it first
        "granule_size": str(archive_info(g)[0]["Size"]),
        "browse_flag": False,
        "collection_concept_id": g.collection_concept_id,
        "online_access_flag": True,
        "links": data_links + [
            {"rel": METADATA_REL, "hreflang": "en-US", "href": ln["s3credentials"],
             "title": "api endpoint to retrieve temporary credentials valid for same-region direct s3 access"},
            {"rel": METADATA_REL, "hreflang": "en-US", "href": f"{ln['https']}.md5",
             "title": f"Download {g.file_name}.md5"},
        ],
    }
    if g.daac == "nsidc":
        entry["producer_granule_id"] = g.file_name
    return entry


# --- app -------------------------------------------------------------------------------------


def create_cmr_app(scene, links: Callable[[Any], dict], *, faults=None) -> Flask:
    """A Flask app serving CMR granule and collection searches over ``scene.granules``."""
    app = Flask("sandbox-cmr")
    granules = list(scene.granules)

    def respond(body: dict, content_type: str, status: int = 200, extra: dict | None = None) -> Response:
        resp = Response(json.dumps(body), status, {"Content-Type": content_type})
        resp.headers["CMR-Request-Id"] = str(uuid.uuid4())
        resp.headers["CMR-Took"] = str(int((time.perf_counter() - request.environ["cmr.t0"]) * 1000))
        resp.headers["Access-Control-Expose-Headers"] = "CMR-Hits, CMR-Request-Id, X-Request-Id, CMR-Search-After"
        for k, v in (extra or {}).items():
            resp.headers[k] = v
        return resp

    @app.before_request
    def _start_clock():
        request.environ["cmr.t0"] = time.perf_counter()

    @app.errorhandler(BadRequest)
    def _bad_request(exc):
        return respond({"errors": [str(exc)]}, JSON_CONTENT_TYPE, 400)

    def search(fmt: str) -> Response:
        check_parameters(GRANULE_PARAMS)
        matches = filter_more(_filter(granules))
        page, after = _page(matches)
        headers = {"CMR-Hits": str(len(matches))}
        if after:
            headers["CMR-Search-After"] = after
        took = int((time.perf_counter() - request.environ["cmr.t0"]) * 1000)
        if fmt == "umm":
            body = {"hits": len(matches), "took": took, "items": [umm_item(g, links(g)) for g in page]}
            return respond(body, UMM_CONTENT_TYPE, extra=headers)
        body = {"feed": {"updated": _iso(datetime.now(UTC)), "id": request.url,
                         "title": "ECHO granule metadata", "entry": [feed_entry(g, links(g)) for g in page]}}
        return respond(body, JSON_CONTENT_TYPE, extra=headers)

    @app.get("/search/granules.umm_json")
    def granules_umm():
        return search("umm")

    @app.get("/search/granules.json")
    def granules_json():
        return search("json")

    def matching_collections() -> list[tuple[str, dict]]:
        check_parameters(COLLECTION_PARAMS)
        cid, short_name, version = _arg("concept_id"), _arg("short_name"), _arg("version")
        provider = _arg("provider") or _arg("provider_short_name")
        return [(concept_id, c) for concept_id, c in COLLECTIONS.items()
                if (not cid or concept_id == cid) and (not short_name or c["short_name"] == short_name)
                and (not version or c["version_id"].lstrip("0") == version.lstrip("0"))
                and (not provider or c["data_center"] == provider)]

    @app.get("/search/collections.umm_json")
    def collections_umm():
        found = matching_collections()
        body = {"hits": len(found), "took": 1, "items": [_collection_umm(cid, c) for cid, c in found]}
        return respond(body, UMM_CONTENT_TYPE.replace("umm_results+json;version=1.6.5", "umm_results+json"),
                       extra={"CMR-Hits": str(len(found))})

    @app.get("/search/<path:route>")
    def unsupported(route: str):
        # CMR answers a format or route it does not serve with 400 and its error list, never HTML
        raise _not_emulated(f"The search route [{route}]")

    @app.get("/search/collections.json")
    def collections_json():
        entries = [{"id": concept_id, "title": c["dataset_id"], "dataset_id": c["dataset_id"],
                    "short_name": c["short_name"], "version_id": c["version_id"],
                    "data_center": c["data_center"], "archive_center": c["data_center"],
                    "cloud_hosted": c["data_center"] != "NSIDC_ECS", "online_access_flag": True}
                   for concept_id, c in matching_collections()]
        body = {"feed": {"updated": _iso(datetime.now(UTC)), "id": request.url,
                         "title": "ECHO dataset metadata", "entry": entries}}
        return respond(body, JSON_CONTENT_TYPE, extra={"CMR-Hits": str(len(entries))})

    if faults is not None:
        faults.install(app, "cmr")
    return app
