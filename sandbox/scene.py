"""Deterministic, cached seed-case scene for the offline sandbox.

Public API (used by ``sandbox.services`` and the tests)::

    build_scene(cache_dir: Path, *, force: bool = False) -> Scene

returns the granules of the tutorial's seed case (bbox -62.8,81.7,-56.4,83 on 2019-06-22):

* two ATL07 v007 granules (``ATL07-01_20190622055317_12980301_007_01.h5`` and
  ``ATL07-01_20190622200154_13070301_007_01.h5``) whose tracks cross the bbox. Their HDF5 layout
  (every group, variable, dtype, attribute, chunking (10000,), gzip-6 / shuffle, dimension scales)
  is copied from the real ATL07 file in ``tests/data/realdata/atl07/``; the segment-rate variables
  are regenerated for a near-polar ascending ground track (inclination 92 deg, 3 beam pairs
  3.3 km apart, pair members 90 m apart), cut to +/-200 km along track around the bbox
  (about 20 k segments per strong beam, 7 k per weak beam; a full granule has ~200 k).
  ``delta_time`` is seconds since the ATLAS SDP epoch (2018-01-01T00:00:00Z; no leap second
  between 2018 and 2019, so it equals elapsed UTC seconds). Heights carry the real fill value,
  quality flags and surface types; variables the colocation does not use are resampled from the
  real file's values.
* the 14 MODIS_A-JPL-L2P-v2019.0 entries of the recorded CMR search (titles as recorded): 4 are
  98-byte placeholders (CMR lists 9.346e-5 MB; the recording has 4, not 5), 10 are full
  2030 x 1354 netCDF-4 granules with the
  real variables and dtypes (as in the notebook output), chunking (1, 1015, 677), zlib level 4
  without shuffle (as the .dmrpp/.zarr.json say), fill values, scale/offset and attributes stored
  as one-element arrays (strings as 1-element fixed-length byte arrays), so plain xarray returns
  ``[b'...']`` just like the real files. Swath geometry follows a sun-synchronous orbit
  (inclination 98.2 deg, 705 km, +/-55 deg scan) whose northern apex is at each granule's
  mid-time; at 10:02:30 it passes within ~60 km of the bbox centre, so G1956158784-POCLOUD covers
  the bbox near nadir and the 06:45-11:35 granules cover it too. SST comes from a geographically
  consistent noise field (same value where swaths overlap): ice (262-270 K, QL 1-2, ice flag),
  cloud (fill, QL 0), open water/leads (271-275 K, QL 3-5). ``sst_dtime`` is per scan line.

Footprints: ATL07 granules get a polygon ring around the six beams (``polygon``); L2P granules get
CMR-style bounding rectangles (``rectangles``, W,S,E,N; split at the antimeridian), computed from
the swath like PO.DAAC's metadata, which is why polar granules match far-away bboxes.

``size_bytes`` is the size of the file actually written (the emulator serves these files);
``recorded_size_mb`` keeps the size the real CMR listed.

Files are written by two worker processes (each file has its own seed, so the output does not
depend on the worker count). Everything is seeded and written under ``cache_dir / f"scene-{SCENE_VERSION}"`` (atomically, via a
temporary directory); a later call with the same version reuses it.
"""
from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time as _time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import h5py
import numpy as np

log = logging.getLogger(__name__)

SCENE_VERSION = "seed-2019-06-22-v3"
REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO / "tests" / "data" / "realdata"
ATL07_TEMPLATE = REALDATA / "atl07" / "processed_ATL07-01_20190222003738_08490201_003_02.h5"
L2P_ATTRS = REALDATA / "notebook" / "MODIS_A_20190622100001_xarray_h5netcdf_attrs_from_notebook_output.txt"

SEED_BBOX = (-62.8, 81.7, -56.4, 83.0)
SEED_DATE = date(2019, 6, 22)

ATL07_COLLECTION = "C3564876395-NSIDC_CPRD"
L2P_COLLECTION = "C1940473819-POCLOUD"
NSIDC_BUCKET = "nsidc-cumulus-prod-protected"
PODAAC_BUCKET = "podaac-ops-cumulus-protected"

R_EARTH = 6371008.8
OMEGA_E_DEG_S = 360.0 / 86164.0905
ATLAS_EPOCH = datetime(2018, 1, 1, tzinfo=timezone.utc)
L2P_EPOCH = datetime(1981, 1, 1, tzinfo=timezone.utc)
PLACEHOLDER_BYTES = 98  # 9.34600830078125e-5 MB * 2**20


@dataclass
class SceneGranule:
    concept_id: str
    collection_concept_id: str
    short_name: str
    version: str
    provider: str
    title: str
    file_name: str
    path: Path
    size_bytes: int
    start: datetime
    end: datetime
    polygon: list[tuple[float, float]] | None  # (lon, lat) closed ring, or None
    bucket: str
    key: str
    daac: str  # "nsidc" | "podaac"
    placeholder: bool
    rectangles: list[tuple[float, float, float, float]] = field(default_factory=list)  # W,S,E,N
    recorded_size_mb: float | None = None
    day_night: str = ""  # L2P: "Day" | "Night"


@dataclass
class Scene:
    granules: list[SceneGranule]
    bbox: tuple[float, float, float, float]
    date: date
    root: Path

    def by_collection(self, collection_concept_id: str) -> list[SceneGranule]:
        return [g for g in self.granules if g.collection_concept_id == collection_concept_id]


# ------------------------------------------------------------------------------------------
# geometry helpers (spherical Earth; good to a few km, plenty for a synthetic scene)


def _xyz(lat_deg, lon_deg):
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def _latlon(xyz):
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return np.degrees(np.arctan2(z, np.hypot(x, y))), np.degrees(np.arctan2(y, x))


def _ground_track(incl_deg, lon_node_deg, u, dt_s):
    """Sub-satellite point for argument of latitude ``u`` (rad) ``dt_s`` after the reference."""
    i = np.radians(incl_deg)
    lat = np.degrees(np.arcsin(np.sin(i) * np.sin(u)))
    lon = lon_node_deg + np.degrees(np.arctan2(np.cos(i) * np.sin(u), np.cos(u))) - OMEGA_E_DEG_S * dt_s
    return lat, ((lon + 180.0) % 360.0) - 180.0


def _offset(p, a, dist_m):
    """Move unit vectors ``p`` sideways (perpendicular to along-track ``a``) by ``dist_m``."""
    c = np.cross(p, a)
    c /= np.linalg.norm(c, axis=-1, keepdims=True)
    g = np.asarray(dist_m, dtype=np.float64)[..., None] / R_EARTH
    return np.cos(g) * p + np.sin(g) * c


def _field(xyz, seed, scale_km=120.0, n=8):
    """Smooth geographic noise in about [-1, 1]: identical wherever two swaths overlap."""
    rng = np.random.default_rng(seed)
    k = rng.normal(size=(n, 3))
    k *= (2 * np.pi * R_EARTH / 1000.0 / scale_km / np.linalg.norm(k, axis=1))[:, None] * rng.uniform(0.5, 1.5, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, n)
    out = np.zeros(xyz.shape[:-1], dtype=np.float64)
    for j in range(n):
        out += np.cos(xyz @ k[j] + phase[j])
    return out / np.sqrt(n / 2.0) / 1.5


def _lon_interval(lon):
    """Smallest circular interval (west, east) covering all longitudes; west > east wraps."""
    lon = np.sort(((np.asarray(lon, dtype=np.float64).ravel() + 180.0) % 360.0) - 180.0)
    lon = np.unique(np.round(lon, 3))
    if lon.size == 0:
        return -180.0, 180.0
    gaps = np.diff(np.concatenate([lon, [lon[0] + 360.0]]))
    j = int(np.argmax(gaps))
    if gaps[j] < 5.0:  # no real gap: covers all longitudes (e.g. contains the pole)
        return -180.0, 180.0
    west = lon[(j + 1) % lon.size]
    east = lon[j]
    return float(west), float(east)


def _rectangles(lat, lon):
    s, n = float(np.nanmin(lat)), float(np.nanmax(lat))
    w, e = _lon_interval(lon)
    if w <= e:
        return [(round(w, 3), round(s, 3), round(e, 3), round(n, 3))]
    return [(round(w, 3), round(s, 3), 180.0, round(n, 3)), (-180.0, round(s, 3), round(e, 3), round(n, 3))]


# ------------------------------------------------------------------------------------------
# ATL07

BEAM_ACROSS_M = {  # pair centres 3.3 km apart, pair members 90 m apart
    "gt1l": -3345.0, "gt1r": -3255.0, "gt2l": -45.0, "gt2r": 45.0, "gt3l": 3255.0, "gt3r": 3345.0,
}
ATL07_INCL = 92.0
ATL07_PERIOD_S = 5653.0  # 94.2 min
ATL07_HALF_CUT_M = 200_000.0


@dataclass(frozen=True)
class _Atl07Spec:
    file_name: str
    concept_id: str
    start: datetime  # granule start from the file name
    cross_time: datetime  # when the central pair crosses (cross_lon, cross_lat)
    cross_lon: float
    cross_lat: float
    rgt: int
    cycle: int
    orbit: int
    seed: int


ATL07_SPECS = (
    _Atl07Spec("ATL07-01_20190622055317_12980301_007_01.h5", "G3104012981-NSIDC_CPRD",
               datetime(2019, 6, 22, 5, 53, 17, tzinfo=timezone.utc),
               datetime(2019, 6, 22, 6, 7, 52, tzinfo=timezone.utc), -58.4, 82.45, 1298, 3, 3930, 7001),
    _Atl07Spec("ATL07-01_20190622200154_13070301_007_01.h5", "G3104013070-NSIDC_CPRD",
               datetime(2019, 6, 22, 20, 1, 54, tzinfo=timezone.utc),
               datetime(2019, 6, 22, 20, 16, 31, tzinfo=timezone.utc), -60.9, 82.2, 1307, 3, 3939, 7002),
)


def _atl07_track(spec: _Atl07Spec, rng: np.random.Generator):
    """Per-beam along-track geometry and times for an ascending pass through the crossing point."""
    n = 2 * np.pi / ATL07_PERIOD_S
    u_c = np.arcsin(np.sin(np.radians(spec.cross_lat)) / np.sin(np.radians(ATL07_INCL)))
    _, lon0 = _ground_track(ATL07_INCL, 0.0, np.array([u_c]), np.array([0.0]))
    lon_node = spec.cross_lon - float(lon0[0])
    beams = {}
    for beam, across in BEAM_ACROSS_M.items():
        strong = beam.endswith("l")  # sc_orient 0 (backward): left beams are strong
        mean_gap = 20.0 if strong else 60.0
        n_seg = int(2 * ATL07_HALF_CUT_M / mean_gap)
        gaps = rng.gamma(2.0, mean_gap / 2.0, n_seg)
        s = -ATL07_HALF_CUT_M + np.cumsum(gaps)
        s = s[s < ATL07_HALF_CUT_M]
        dt = s / (R_EARTH * n)
        u = u_c + s / R_EARTH
        lat, lon = _ground_track(ATL07_INCL, lon_node, u, dt)
        p = _xyz(lat, lon)
        a = np.gradient(p, axis=0)
        a /= np.linalg.norm(a, axis=-1, keepdims=True)
        blat, blon = _latlon(_offset(p, a, np.full(s.shape, across)))
        t = (spec.cross_time - ATLAS_EPOCH).total_seconds() + dt
        beams[beam] = dict(s=s, u=u, lat=blat, lon=blon, delta_time=t, strong=strong, across=across)
    return beams


def _atl07_beam_values(beam: dict, rng: np.random.Generator, spec: _Atl07Spec, first_id: int) -> dict:
    """The variables the colocation and the readers use, keyed by path below sea_ice_segments."""
    m = beam["s"].size
    fill32 = np.float32(3.4028235e38)
    along = np.cumsum(rng.normal(0, 0.08, m)) * 0.02  # slowly varying freeboard
    lead = rng.random(m) < 0.06
    cloud = rng.random(m) < 0.04
    fit = rng.choice(np.array([1, 2, 3, 4, 5], np.int8), m, p=[0.55, 0.2, 0.12, 0.08, 0.05])
    fit[cloud] = -1
    fit[rng.random(m) < 0.05] = -1
    valid = fit > 0
    height = np.where(lead, rng.normal(0.0, 0.04, m), np.abs(0.3 + along + rng.gamma(2.0, 0.12, m)))
    height = np.where(valid, height, fill32).astype(np.float32)
    stype = np.where(lead, rng.integers(2, 10, m), 1).astype(np.int8)
    stype[cloud] = 0
    quality = (valid & (fit <= 4)).astype(np.int8)
    length = np.where(valid, rng.gamma(3.0, 25.0 if beam["strong"] else 60.0, m), 0).astype(np.float32)
    geoseg = (beam["u"] * R_EARTH / 20.0).astype(np.int32)
    return {
        "delta_time": beam["delta_time"],
        "latitude": beam["lat"],
        "longitude": beam["lon"],
        "seg_dist_x": beam["u"] * R_EARTH,
        "height_segment_id": np.arange(first_id, first_id + m, dtype=np.int32),
        "geoseg_beg": geoseg,
        "geoseg_end": geoseg + 1,
        "geolocation/rgt": np.full(m, spec.rgt, np.int16),
        "heights/height_segment_height": height,
        "heights/height_segment_quality": quality,
        "heights/height_segment_fit_quality_flag": fit,
        "heights/height_segment_type": stype,
        "heights/height_segment_ssh_flag": (lead & valid).astype(np.int8),
        "heights/height_segment_length_seg": length,
        "heights/height_segment_confidence": np.where(valid, rng.uniform(0.2, 1.0, m), fill32).astype(np.float32),
        "heights/height_segment_surface_error_est": np.where(valid, rng.gamma(2.0, 0.01, m), fill32).astype(np.float32),
        "heights/across_track_distance": rng.normal(beam["across"], 5.0, m).astype(np.float32),
        "stats/ice_conc": np.clip(rng.normal(97.0, 2.0, m), 0, 100).astype(np.float32),
    }


def _attr_copy(src, dst, skip=("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME")):
    for name in src.attrs:
        if name in skip:
            continue
        aid = h5py.h5a.open(src.id, name.encode())
        dst.attrs.create(name, src.attrs[name], shape=aid.shape, dtype=aid.dtype)


def _set_attr_like(obj, name, value):
    """Replace an attribute's value keeping its stored type (fixed-length strings stay fixed)."""
    if name in obj.attrs:
        aid = h5py.h5a.open(obj.id, name.encode())
        dtype = aid.dtype
        if dtype.kind == "S":
            value = value.encode() if isinstance(value, str) else value
            dtype = np.dtype(f"S{max(len(value), 1)}")
        del obj.attrs[name]
        obj.attrs.create(name, value, shape=aid.shape, dtype=dtype)
    else:
        obj.attrs[name] = np.bytes_(value) if isinstance(value, str) else value


def _write_atl07(spec: _Atl07Spec, out: Path) -> tuple[dict, list[tuple[float, float]], datetime, datetime]:
    rng = np.random.default_rng(spec.seed)
    beams = _atl07_track(spec, rng)
    with h5py.File(ATL07_TEMPLATE, "r") as src, h5py.File(out, "w", libver=("earliest", "v110")) as dst:
        # The real subset lacks some beams' variables (gt2r there has empty groups): every beam
        # gets the full layout, borrowed from a beam of the same strength where missing.
        names: list[str] = []
        src.visit(names.append)
        present = set(names)
        plan: dict[str, str] = {n: n for n in names}  # destination path -> template path
        for beam in BEAM_ACROSS_M:
            donor = "gt1l" if beam.endswith("l") else "gt1r"
            for n in names:
                if n.startswith(donor + "/"):
                    target = beam + n[len(donor):]
                    if target not in present:
                        plan[target] = n

        def rename(path: str, dst_name: str) -> str:
            """A template path seen from ``dst_name``'s beam (for borrowed datasets)."""
            src_beam, dst_beam = plan[dst_name].split("/")[0], dst_name.split("/")[0]
            if src_beam != dst_beam and path.startswith(src_beam + "/"):
                return dst_beam + path[len(src_beam):]
            return path

        _attr_copy(src, dst, skip=("Processing Parameters",))
        values = {}
        next_id = {"gt1": 1_210_000, "gt2": 1_340_000, "gt3": 1_470_000}
        for beam, geo in beams.items():
            values[beam] = _atl07_beam_values(geo, rng, spec, next_id[beam[:3]] + (0 if beam.endswith("l") else 50_000))

        scales: list[tuple[str, int, str]] = []
        for name in sorted(plan, key=lambda n: (n.count("/"), n)):  # parents first
            obj = src[plan[name]]
            if isinstance(obj, h5py.Group):
                grp = dst.require_group(name)
                if not grp.attrs.keys():
                    _attr_copy(obj, grp)
                continue
            for d, dim in enumerate(obj.dims):
                for scale in dim.values():
                    if scale.name.lstrip("/") != plan[name]:
                        scales.append((name, d, rename(scale.name.lstrip("/"), name)))
            beam = name.split("/")[0]
            seg_rate = name.startswith("gt") and "/sea_ice_segments/" in name and (
                name.endswith("/sea_ice_segments/delta_time")
                or (len(obj.dims[0]) and obj.dims[0][0].name.endswith("/sea_ice_segments/delta_time")))
            if seg_rate:
                m = values[beam]["delta_time"].size
                rel = name.split("/sea_ice_segments/", 1)[1]
                data = values[beam].get(rel)
                if data is None:  # resample the real file's values for variables we don't model
                    real = obj[()]
                    data = real[rng.integers(0, real.shape[0], m)]
                shape = (m,) + obj.shape[1:]
                data = np.asarray(data, dtype=obj.dtype).reshape(shape)
            else:
                data = obj[()]
                shape = obj.shape
            ds = dst.create_dataset(
                name, shape=shape, dtype=obj.dtype, data=data, chunks=obj.chunks,
                maxshape=obj.maxshape if obj.chunks else None,  # h5py chunks anything given a maxshape
                compression=obj.compression, compression_opts=obj.compression_opts,
                shuffle=obj.shuffle,
                # a 100 kB string's fill value would not fit an object header (ancillary_data/control)
                fillvalue=obj.fillvalue if obj.dtype.itemsize < 1024 else None,
            )
            _attr_copy(obj, ds)
            if "CLASS" in obj.attrs and obj.attrs["CLASS"] == b"DIMENSION_SCALE":
                ds.make_scale(rename(obj.attrs.get("NAME", b"").decode(), name))
        for name, d, scale in scales:
            if scale in dst and name in dst:
                dst[name].dims[d].attach_scale(dst[scale])

        # granule-specific metadata
        t_all = np.concatenate([v["delta_time"] for v in values.values()])
        lat_all = np.concatenate([v["latitude"] for v in values.values()])
        lon_all = np.concatenate([v["longitude"] for v in values.values()])
        t0 = ATLAS_EPOCH + timedelta(seconds=float(t_all.min()))
        t1 = ATLAS_EPOCH + timedelta(seconds=float(t_all.max()))
        gstart = spec.start
        gend = spec.start + timedelta(seconds=5657)
        iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
        anc = dst["ancillary_data"]
        anc["atlas_sdp_gps_epoch"][0] = 1198800018.0
        anc["data_start_utc"][0] = iso(t0).encode()
        anc["data_end_utc"][0] = iso(t1).encode()
        anc["granule_start_utc"][0] = iso(gstart).encode()
        anc["granule_end_utc"][0] = iso(gend).encode()
        anc["start_delta_time"][0] = t_all.min()
        anc["end_delta_time"][0] = t_all.max()
        for k in ("start", "end"):
            anc[f"{k}_rgt"][0] = spec.rgt
            anc[f"{k}_cycle"][0] = spec.cycle
            anc[f"{k}_orbit"][0] = spec.orbit
        anc["release"][0] = b"007".ljust(80)
        anc["version"][0] = b"01".ljust(80)
        gps_week0, gps_sow0 = divmod(1198800018.0 + t_all.min(), 604800.0)
        gps_week1, gps_sow1 = divmod(1198800018.0 + t_all.max(), 604800.0)
        anc["start_gpsweek"][0], anc["start_gpssow"][0] = gps_week0, gps_sow0
        anc["end_gpsweek"][0], anc["end_gpssow"][0] = gps_week1, gps_sow1
        orb = dst["orbit_info"]
        node_time = (spec.cross_time - ATLAS_EPOCH).total_seconds() - 0.23 * ATL07_PERIOD_S
        orb["crossing_time"][0] = node_time
        orb["cycle_number"][0] = spec.cycle
        orb["orbit_number"][0] = spec.orbit
        orb["rgt"][0] = spec.rgt
        orb["sc_orient"][0] = 0  # backward: the left beams are the strong ones
        orb["sc_orient_time"][0] = (datetime(2019, 6, 1, tzinfo=timezone.utc) - ATLAS_EPOCH).total_seconds()
        for beam in beams:
            _set_attr_like(dst[beam], "sc_orientation", "Backward")
            _set_attr_like(dst[beam], "atlas_beam_type", "strong" if beam.endswith("l") else "weak")
        file_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, spec.file_name))
        for name, value in {
            "date_created": "2025-01-15T10:12:31.000000Z",
            "geospatial_lat_max": float(lat_all.max()), "geospatial_lat_min": float(lat_all.min()),
            "geospatial_lon_max": float(lon_all.max()), "geospatial_lon_min": float(lon_all.min()),
            "identifier_file_uuid": file_uuid,
            "identifier_product_doi": "doi:10.5067/ATLAS/ATL07.007",
            "time_coverage_start": iso(gstart), "time_coverage_end": iso(gend),
            "time_coverage_duration": 5657.0,
        }.items():
            _set_attr_like(dst, name, value)
        if "METADATA/DatasetIdentification" in dst:
            md = dst["METADATA/DatasetIdentification"]
            _set_attr_like(md, "fileName", spec.file_name)
            _set_attr_like(md, "VersionID", "007")
    # footprint: a ring around the outer beams
    outer_l, outer_r = beams["gt1l"], beams["gt3r"]
    idx_l = np.linspace(0, outer_l["lat"].size - 1, 24).astype(int)
    idx_r = np.linspace(0, outer_r["lat"].size - 1, 24).astype(int)[::-1]
    ring = [(float(outer_l["lon"][i]), float(outer_l["lat"][i])) for i in idx_l]
    ring += [(float(outer_r["lon"][i]), float(outer_r["lat"][i])) for i in idx_r]
    ring.append(ring[0])
    counts = {b: int(v["delta_time"].size) for b, v in values.items()}
    return counts, [(round(x, 5), round(y, 5)) for x, y in ring], t0, t1


# ------------------------------------------------------------------------------------------
# MODIS L2P

NJ, NI = 2030, 1354
L2P_CHUNKS = (1, 1015, 677)
AQUA_INCL = 98.2
AQUA_ALT_M = 705_000.0
AQUA_PERIOD_S = 5933.0
APEX_LON_AT_10 = -59.6  # 10:02:30 apex; the Earth turns under the orbit by 15.04 deg/h
APEX_REF = datetime(2019, 6, 22, 10, 2, 30, tzinfo=timezone.utc)

# (title, recorded size in MB) exactly as the recorded search (cell 35) lists them
L2P_RECORDED = (
    ("20190622000501-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0", 20.71552562713623),
    ("20190622014501-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0", 9.34600830078125e-5),
    ("20190622032501-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0", 21.307741165161133),
    ("20190622050001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0", 9.34600830078125e-5),
    ("20190622050501-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0", 20.065649032592773),
    ("20190622064001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0", 9.34600830078125e-5),
    ("20190622064501-JPL-L2P_GHRSST-SSTskin-MODIS_A-N-v02.0-fv01.0", 18.602201461791992),
    ("20190622064501-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0", 18.665077209472656),
    ("20190622082001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0", 19.782299995422363),
    ("20190622100001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0", 19.13440227508545),
    ("20190622113501-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0", 20.3239164352417),
    ("20190622114001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0", 9.34600830078125e-5),
    ("20190622163001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0", 19.257243156433105),
    ("20190622181001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0", 19.93498420715332),
)
L2P_CONCEPT_ID_10 = 1956158784  # the 10:00:01 granule the tutorial opened (granules[9])

# variable name -> (dims, dtype); order as in the real file
L2P_VARS = {
    "time": (("time",), "i4"),
    "lat": (("nj", "ni"), "f4"),
    "lon": (("nj", "ni"), "f4"),
    "sea_surface_temperature": (("time", "nj", "ni"), "i2"),
    "sst_dtime": (("time", "nj", "ni"), "i2"),
    "quality_level": (("time", "nj", "ni"), "i1"),
    "sses_bias": (("time", "nj", "ni"), "i1"),
    "sses_standard_deviation": (("time", "nj", "ni"), "i1"),
    "l2p_flags": (("time", "nj", "ni"), "i2"),
    "chlorophyll_a": (("time", "nj", "ni"), "f4"),
    "K_490": (("time", "nj", "ni"), "i2"),
    "wind_speed": (("time", "nj", "ni"), "i1"),
    "dt_analysis": (("time", "nj", "ni"), "i1"),
}
_FLOAT_ATTRS = {"scale_factor", "add_offset", "time_offset"}
_VAR_TYPED_ATTRS = {"_FillValue", "valid_min", "valid_max", "flag_values", "flag_masks"}
_GLOBAL_INT = {"file_quality_level"}


def _parse_value(text: str):
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return [float(v) if "." in v else int(v) for v in text.strip("[]").split()]


def _l2p_attr_template() -> tuple[dict[str, list[tuple[str, object]]], list[tuple[str, object]]]:
    """Per-variable and global attributes (name, value list) in document order, from the notebook."""
    rows = []
    for line in L2P_ATTRS.read_text().splitlines():
        if line.startswith("  ") and " : = " in line:
            name, value = line.strip().split(" : = ", 1)
            rows.append((name.strip(), _parse_value(value)))
    per_var: dict[str, list] = {}
    names = list(L2P_VARS)
    cur = -1
    for i, (name, value) in enumerate(rows):
        if name == "Conventions":
            return per_var, rows[i:]
        if name == "long_name":
            cur += 1
            per_var[names[cur]] = []
        per_var[names[cur]].append((name, value))
    raise ValueError(f"no global attributes in {L2P_ATTRS}")


def _attr_array(name: str, value, var_dtype: str | None):
    """One-element (or n-element) arrays, strings as fixed-length bytes: the real files' encoding."""
    vals = list(value) if isinstance(value, (list, tuple)) else [value]
    if isinstance(vals[0], bytes):
        return np.array(vals, dtype=f"S{max(len(v) for v in vals)}")
    if name in _FLOAT_ATTRS:
        return np.array(vals, dtype="f4")
    if name in _VAR_TYPED_ATTRS and var_dtype is not None:
        return np.array(vals, dtype=var_dtype)
    if name in _GLOBAL_INT or all(isinstance(v, int) for v in vals):
        return np.array(vals, dtype="i4")
    return np.array(vals, dtype="f4")


def _l2p_geometry(t_start: datetime):
    """lat/lon (NJ, NI) and per-line seconds since ``t_start`` of a swath with its apex mid-granule."""
    n = 2 * np.pi / AQUA_PERIOD_S
    t_mid = t_start + timedelta(seconds=150)
    apex_lon = APEX_LON_AT_10 - OMEGA_E_DEG_S * 0.99727 * (t_mid - APEX_REF).total_seconds()
    line_dt = (np.arange(NJ) // 10) * 1.4775  # 203 scans of 10 detector rows: one time per scan
    dt = np.arange(NJ) * 0.14775 - 150.0  # each detector row is ~1 km further along track
    u = np.pi / 2 + n * dt
    lat, lon = _ground_track(AQUA_INCL, apex_lon + 90.0, u, dt)
    p = _xyz(lat, lon)
    a = np.gradient(p, axis=0)
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    theta = np.radians(np.linspace(-55.0, 55.0, NI))
    gamma = np.arcsin((R_EARTH + AQUA_ALT_M) / R_EARTH * np.sin(theta)) - theta  # earth central angle
    c = np.cross(p, a)
    c /= np.linalg.norm(c, axis=-1, keepdims=True)
    xyz = np.cos(gamma)[None, :, None] * p[:, None, :] + np.sin(gamma)[None, :, None] * c[:, None, :]
    glat, glon = _latlon(xyz)
    return glat, glon, line_dt, xyz


def _l2p_content(xyz, lat, line_dt, seed):
    rng = np.random.default_rng(seed)
    cloud_f = _field(xyz, 11, scale_km=150.0)
    ice_f = _field(xyz, 12, scale_km=80.0)
    sst_f = _field(xyz, 13, scale_km=200.0)
    ql_f = _field(xyz, 14, scale_km=40.0)
    cloud = cloud_f > 0.35
    ice = (ice_f + (np.abs(lat) - 78.0) / 6.0) > 0.55
    water = ~cloud & ~ice
    sst_k = np.where(ice, 266.0 + 3.0 * sst_f, 273.0 + 1.7 * sst_f) + rng.normal(0, 0.08, lat.shape)
    sst_k = np.where(ice, np.clip(sst_k, 262.0, 270.0), np.clip(sst_k, 271.0, 275.0))
    sst = np.round((sst_k - 273.15) / 0.005).astype(np.int16)
    sst[cloud] = -32767
    ql = np.zeros(lat.shape, np.int8)
    ql[ice & ~cloud] = np.where(ql_f[ice & ~cloud] > 0, 2, 1)
    ql[water] = np.select([ql_f[water] > 0.3, ql_f[water] > -0.4], [5, 4], 3)
    dtime = np.broadcast_to(np.round(line_dt).astype(np.int16)[:, None], lat.shape).copy()
    flags = np.where(ice, 4, 0).astype(np.int16)
    bias = np.where(cloud, -128, np.round(rng.normal(-0.2, 0.1, lat.shape) / 0.15748031)).astype(np.int8)
    sd = np.where(cloud, -128, np.clip(np.round((np.where(ql >= 4, 0.45, 0.9) - 10.0) / 0.07874016), -127, 127)).astype(np.int8)
    return {
        "sea_surface_temperature": sst, "sst_dtime": dtime, "quality_level": ql,
        "sses_bias": bias, "sses_standard_deviation": sd, "l2p_flags": flags,
    }


def _write_l2p(title: str, t_start: datetime, day_night: str, out: Path, seed: int):
    import h5netcdf

    lat, lon, line_dt, xyz = _l2p_geometry(t_start)
    content = _l2p_content(xyz, lat, line_dt, seed)
    per_var, global_attrs = _l2p_attr_template()
    t_ref = int((t_start - L2P_EPOCH).total_seconds())
    t_stop = t_start + timedelta(seconds=298)
    rect_w, rect_e = _lon_interval(lon)
    fills = {"chlorophyll_a": np.float32(-32767.0), "K_490": np.int16(-32767), "wind_speed": np.int8(-128),
             "dt_analysis": np.int8(-128)}
    with h5netcdf.File(out, "w") as f:
        f.dimensions = {"time": 1, "nj": NJ, "ni": NI}
        for name, (dims, dtype) in L2P_VARS.items():
            fill = next((v[0] for k, v in per_var[name] if k == "_FillValue"), None)
            kw = dict(compression="gzip", compression_opts=4, shuffle=False)
            if name == "time":
                var = f.create_variable(name, dims, dtype, chunks=(1,), **kw)
                var[:] = np.array([t_ref], np.int32)
            else:
                chunks = L2P_CHUNKS[-len(dims):]
                var = f.create_variable(name, dims, dtype, chunks=chunks, fillvalue=fill, **kw)
                if name in ("lat", "lon"):
                    var[...] = (lat if name == "lat" else lon).astype(np.float32)
                elif name in content:
                    var[...] = content[name][None]
                else:  # not retrieved at these latitudes: all fill, as the real chunks are
                    var[...] = np.full((1, NJ, NI), fills[name], dtype=dtype)
    # attributes written by h5py: one-element arrays exactly like the real files
    overrides = {
        "start_time": t_start.strftime("%Y%m%dT%H%M%SZ"), "time_coverage_start": t_start.strftime("%Y%m%dT%H%M%SZ"),
        "stop_time": t_stop.strftime("%Y%m%dT%H%M%SZ"), "time_coverage_end": t_stop.strftime("%Y%m%dT%H%M%SZ"),
        "northernmost_latitude": float(lat.max()), "southernmost_latitude": float(lat.min()),
        "easternmost_longitude": rect_e, "westernmost_longitude": rect_w,
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, title)), "day_night_flag": day_night,
        "date_created": "20200221T085224Z",
    }
    with h5py.File(out, "r+") as h:
        for name, attrs in per_var.items():
            obj = h[name]
            for key in list(obj.attrs):
                if key not in ("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME") and not key.startswith("_Netcdf4"):
                    del obj.attrs[key]
            for key, value in attrs:
                obj.attrs.create(key, _attr_array(key, value, L2P_VARS[name][1]))
        for key, value in global_attrs:
            if key in overrides:
                v = overrides[key]
                value = [v.encode()] if isinstance(v, str) else [v]
            if key == "comment" and day_night == "Night":
                value = [value[0].replace(b"Day,", b"Night,")]
            h.attrs.create(key, _attr_array(key, value, None))
    return lat, lon


def _l2p_placeholder_rectangles(t_start: datetime):
    lat, lon, _, _ = _l2p_geometry(t_start)
    return _rectangles(lat[::10, ::10], lon[::10, ::10])


# ------------------------------------------------------------------------------------------
# scene assembly and cache


def _scene_from_manifest(root: Path) -> Scene:
    data = json.loads((root / "scene.json").read_text())
    granules = []
    for g in data["granules"]:
        g = dict(g)
        g["path"] = root / g["path"]
        g["start"] = datetime.fromisoformat(g["start"])
        g["end"] = datetime.fromisoformat(g["end"])
        g["polygon"] = [tuple(p) for p in g["polygon"]] if g["polygon"] else None
        g["rectangles"] = [tuple(r) for r in g["rectangles"]]
        granules.append(SceneGranule(**g))
    return Scene(granules=granules, bbox=tuple(data["bbox"]), date=date.fromisoformat(data["date"]), root=root)


def _manifest(scene_granules: list[SceneGranule], root: Path, extra: dict) -> dict:
    rows = []
    for g in scene_granules:
        d = asdict(g)
        d["path"] = str(g.path.relative_to(root))
        d["start"] = g.start.isoformat()
        d["end"] = g.end.isoformat()
        rows.append(d)
    return {"version": SCENE_VERSION, "bbox": list(SEED_BBOX), "date": SEED_DATE.isoformat(), "granules": rows, **extra}


def build_scene(cache_dir: Path, *, force: bool = False) -> Scene:
    """Generate (or reuse from ``cache_dir``) the seed-case scene; see the module docstring."""
    cache_dir = Path(cache_dir)
    root = cache_dir / f"scene-{SCENE_VERSION}"
    if root.is_dir() and (root / "scene.json").is_file() and not force:
        return _scene_from_manifest(root)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Several test sessions and the demo share one cache: one builds, the others wait for it.
    with open(cache_dir / ".scene.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if root.is_dir() and (root / "scene.json").is_file() and not force:
            return _scene_from_manifest(root)
        return _build(cache_dir, root)


def _atl07_job(spec: _Atl07Spec, path: Path):
    t = _time.perf_counter()
    result = _write_atl07(spec, path)
    return result, round(_time.perf_counter() - t, 2)


def _l2p_job(title: str, t_start: datetime, day_night: str, path: Path, seed: int, placeholder: bool):
    t = _time.perf_counter()
    if placeholder:
        # CMR lists these at 98 bytes; the content is not a usable granule
        path.write_bytes(hashlib.sha256(title.encode()).hexdigest().encode()[:PLACEHOLDER_BYTES]
                         .ljust(PLACEHOLDER_BYTES, b"\n"))
        rects = _l2p_placeholder_rectangles(t_start)
    else:
        lat, lon = _write_l2p(title, t_start, day_night, path, seed=seed)
        rects = _rectangles(lat, lon)
    return rects, round(_time.perf_counter() - t, 2)


def _build(cache_dir: Path, root: Path) -> Scene:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    tmp = Path(tempfile.mkdtemp(prefix=".scene-", dir=cache_dir))
    t0 = _time.perf_counter()
    granules: list[SceneGranule] = []
    timings: dict[str, float] = {}
    segments: dict[str, dict[str, int]] = {}
    try:
        (tmp / "nsidc").mkdir()
        (tmp / "podaac").mkdir()
        # every file has its own seed, so the result does not depend on the worker count;
        # spawn, not fork: the caller may be running server threads
        workers = max(1, min(2, os.cpu_count() or 1))
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            atl07_jobs = [(spec, pool.submit(_atl07_job, spec, tmp / "nsidc" / spec.file_name)) for spec in ATL07_SPECS]
            l2p_jobs = []
            for i, (title, size_mb) in enumerate(L2P_RECORDED):
                file_name = f"{title}.nc"
                t_start = datetime.strptime(title[:14], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
                day_night = "Night" if "-N-" in title else "Day"
                placeholder = size_mb < 0.001
                job = pool.submit(_l2p_job, title, t_start, day_night, tmp / "podaac" / file_name, 100 + i, placeholder)
                l2p_jobs.append((i, title, size_mb, file_name, t_start, day_night, placeholder, job))
            for spec, job in atl07_jobs:
                (counts, ring, start, end), took = job.result()
                path = tmp / "nsidc" / spec.file_name
                timings[spec.file_name] = took
                segments[spec.file_name] = counts
                granules.append(SceneGranule(
                    concept_id=spec.concept_id, collection_concept_id=ATL07_COLLECTION, short_name="ATL07",
                    version="007", provider="NSIDC_CPRD", title=spec.file_name, file_name=spec.file_name,
                    path=path, size_bytes=path.stat().st_size, start=start, end=end, polygon=ring,
                    bucket=NSIDC_BUCKET, key=f"ATLAS/ATL07/007/2019/06/22/{spec.file_name}", daac="nsidc",
                    placeholder=False,
                ))
            for i, title, size_mb, file_name, t_start, day_night, placeholder, job in l2p_jobs:
                rects, took = job.result()
                path = tmp / "podaac" / file_name
                timings[file_name] = took
                granules.append(SceneGranule(
                    concept_id=f"G{L2P_CONCEPT_ID_10 + (i - 9) * 17}-POCLOUD", collection_concept_id=L2P_COLLECTION,
                    short_name="MODIS_A-JPL-L2P-v2019.0", version="2019.0", provider="POCLOUD", title=title,
                    file_name=file_name, path=path, size_bytes=path.stat().st_size, start=t_start,
                    end=t_start + timedelta(seconds=299), polygon=None, bucket=PODAAC_BUCKET,
                    key=f"MODIS_A-JPL-L2P-v2019.0/{file_name}", daac="podaac", placeholder=placeholder,
                    rectangles=rects, recorded_size_mb=size_mb, day_night=day_night,
                ))
        total = round(_time.perf_counter() - t0, 2)
        (tmp / "scene.json").write_text(json.dumps(
            _manifest(granules, tmp, {"segments": segments, "timings_s": timings, "total_s": total}), indent=1))
        if root.exists():  # force=True: move the old one aside first, then drop it
            old = Path(tempfile.mkdtemp(prefix=".scene-old-", dir=cache_dir))
            os.replace(root, old / "scene")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built scene %s in %.1f s", root, total)
    return _scene_from_manifest(root)


def describe_scene(root: Path | None = None) -> Scene:
    """The seed scene's CMR metadata without writing any file (fast; for CMR-only tests).

    Footprints and times are those :func:`build_scene` produces; ``size_bytes`` is the recorded
    CMR size for L2P granules and an estimate for ATL07 (``path`` points where the file would be).
    """
    root = Path(root) if root is not None else Path("/nonexistent/scene")
    granules: list[SceneGranule] = []
    for spec in ATL07_SPECS:
        beams = _atl07_track(spec, np.random.default_rng(spec.seed))
        t_all = np.concatenate([b["delta_time"] for b in beams.values()])
        outer_l, outer_r = beams["gt1l"], beams["gt3r"]
        idx_l = np.linspace(0, outer_l["lat"].size - 1, 24).astype(int)
        idx_r = np.linspace(0, outer_r["lat"].size - 1, 24).astype(int)[::-1]
        ring = [(round(float(outer_l["lon"][i]), 5), round(float(outer_l["lat"][i]), 5)) for i in idx_l]
        ring += [(round(float(outer_r["lon"][i]), 5), round(float(outer_r["lat"][i]), 5)) for i in idx_r]
        ring.append(ring[0])
        granules.append(SceneGranule(
            concept_id=spec.concept_id, collection_concept_id=ATL07_COLLECTION, short_name="ATL07", version="007",
            provider="NSIDC_CPRD", title=spec.file_name, file_name=spec.file_name, path=root / "nsidc" / spec.file_name,
            size_bytes=9_200_000, start=ATLAS_EPOCH + timedelta(seconds=float(t_all.min())),
            end=ATLAS_EPOCH + timedelta(seconds=float(t_all.max())), polygon=ring, bucket=NSIDC_BUCKET,
            key=f"ATLAS/ATL07/007/2019/06/22/{spec.file_name}", daac="nsidc", placeholder=False,
        ))
    for i, (title, size_mb) in enumerate(L2P_RECORDED):
        t_start = datetime.strptime(title[:14], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
        file_name = f"{title}.nc"
        granules.append(SceneGranule(
            concept_id=f"G{L2P_CONCEPT_ID_10 + (i - 9) * 17}-POCLOUD", collection_concept_id=L2P_COLLECTION,
            short_name="MODIS_A-JPL-L2P-v2019.0", version="2019.0", provider="POCLOUD", title=title,
            file_name=file_name, path=root / "podaac" / file_name, size_bytes=int(round(size_mb * 2**20)),
            start=t_start, end=t_start + timedelta(seconds=299), polygon=None, bucket=PODAAC_BUCKET,
            key=f"MODIS_A-JPL-L2P-v2019.0/{file_name}", daac="podaac", placeholder=size_mb < 0.001,
            rectangles=_l2p_placeholder_rectangles(t_start), recorded_size_mb=size_mb,
            day_night="Night" if "-N-" in title else "Day",
        ))
    return Scene(granules=granules, bbox=SEED_BBOX, date=SEED_DATE, root=root)
