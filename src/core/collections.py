"""Collection profiles: what is known about an SST collection (and its provider) beyond its
files, kept as data.

Looked up by CMR concept id or short name. The product takes platform, sensor and the SST
standard name from each L2P file's own attributes (GDS 2.0 requires ``platform`` and ``sensor``
global attributes) and falls back to the profile; the DOI comes from the profile. A collection
without a profile is still colocated, and labelled from its files alone.
DOIs: PO.DAAC dataset landing pages (verify against CMR before adding a collection).
"""
from __future__ import annotations

import re

# The DAAC behind each CMR provider hands out temporary S3 credentials for its own buckets
# (earthaccess keeps the same table); Settings.s3credentials_endpoints defaults to this one, for
# granules whose UMM-G lists no /s3credentials link.
PROVIDERS: tuple[dict, ...] = (
    {"provider": "POCLOUD", "daac": "PO.DAAC",
     "s3credentials": "https://archive.podaac.earthdata.nasa.gov/s3credentials"},
    {"provider": "NSIDC_CPRD", "daac": "NSIDC",
     "s3credentials": "https://data.nsidc.earthdatacloud.nasa.gov/s3credentials"},
)

PROFILES: tuple[dict, ...] = (
    {"short_name": "MODIS_A-JPL-L2P-v2019.0", "concept_id": "C1940473819-POCLOUD", "provider": "POCLOUD",
     "platform": "Aqua", "sensor": "MODIS", "doi": "10.5067/GHMDA-2PJ19",
     "sst_standard_name": "sea_surface_skin_temperature"},
    {"short_name": "MODIS_T-JPL-L2P-v2019.0", "provider": "POCLOUD",
     "platform": "Terra", "sensor": "MODIS", "doi": "10.5067/GHMDT-2PJ19",
     "sst_standard_name": "sea_surface_skin_temperature"},
    {"short_name": "VIIRS_NPP-JPL-L2P-v2016.2", "provider": "POCLOUD",
     "platform": "Suomi-NPP", "sensor": "VIIRS", "doi": "10.5067/GHVRS-2PJ62",
     "sst_standard_name": "sea_surface_skin_temperature"},
    {"short_name": "VIIRS_N20-OSPO-L2P-v2.61", "provider": "POCLOUD",
     "platform": "NOAA-20", "sensor": "VIIRS", "doi": "10.5067/GHV20-2PO28",
     "sst_standard_name": "sea_surface_subskin_temperature"},
)


def profile(collection: str | None) -> dict:
    """The profile of a collection named by concept id or short name ({} when unknown)."""
    if not collection:
        return {}
    key = collection.strip().lower()
    for p in PROFILES:
        if key in (p["short_name"].lower(), p.get("concept_id", "").lower()):
            return dict(p)
    return {}


def profile_for_file(attrs: dict) -> dict:
    """The profile whose short name is the L2P file's ``id`` attribute (GDS 2.0 sets it to the
    collection's short name, e.g. MODIS_A-JPL-L2P-v2019.0)."""
    return profile(str(attrs.get("id") or "")) if attrs else {}


def s3credentials_endpoints() -> dict[str, str]:
    """provider -> its DAAC's /s3credentials endpoint."""
    return {p["provider"]: p["s3credentials"] for p in PROVIDERS}


# The one collection syntax, for requests, settings and searches alike (whether the collection
# exists is only known to CMR: check_collections asks it):
CONCEPT_ID = re.compile(r"^C\d{1,12}-[A-Z0-9_]{1,40}$")
# SHORTNAME/VERSION[/PROVIDER]: MODIS_A-JPL-L2P-v2019.0/2019.0, ATL07/007/NSIDC_CPRD
SLASHED = re.compile(r"(?P<short>[A-Za-z0-9][A-Za-z0-9_.\-]{0,79})/(?P<version>[A-Za-z0-9_.\-]{1,20})"
                     r"(?:/(?P<provider>[A-Z0-9_]{1,40}))?")
# a short name that ends in its version: ATL07.007 (NSIDC: SHORT.VVV is short name + version),
# MODIS_A-JPL-L2P-v2019.0 and VIIRS_N20-OSPO-L2P-v2.61 (PO.DAAC: the version is part of the name)
VERSIONED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,79}\.v?\d{1,4}(?:\.\d{1,4})?")
NSIDC_VERSION = re.compile(r"(?P<short>.+)\.(?P<version>\d{3})")
COLLECTION_SYNTAX = ("a CMR concept id (e.g. C1940473819-POCLOUD), SHORTNAME.VERSION "
                     "(e.g. MODIS_A-JPL-L2P-v2019.0, ATL07.007) or SHORTNAME/VERSION[/PROVIDER]")


def is_collection(text: str) -> bool:
    """Whether ``text`` is written in the collection syntax (COLLECTION_SYNTAX)."""
    return any(p.fullmatch(text) for p in (CONCEPT_ID, SLASHED, VERSIONED_NAME))
