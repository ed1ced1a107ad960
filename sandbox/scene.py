"""Deterministic, cached seed-case scene for the offline sandbox, at the real granules' scale.

Public API (used by ``sandbox.services``, the demo, the benchmarks and the tests)::

    build_scene(cache_dir: Path, *, force: bool = False, extent: str = "full",
                atl07_layout: str = "v007", atl07_chunk: int = 10_000) -> Scene
    describe_scene(root: Path | None = None, *, extent: str = "full") -> Scene   # metadata only

returns the granules of the tutorial's seed case (bbox -62.8,81.7,-56.4,83 on 2019-06-22).
``extent="full"`` (the demo, the benchmarks, the slow end-to-end test) writes the granules at
their real size; ``extent="cut"`` (the fast tests) cuts the ATL07 tracks to +/-200 km around
the bbox at the same segment density. The L2P granules are the same in both (hard-linked).

ATL07 (two v007 granules, ``ATL07-01_20190622055317_12980301_007_01.h5`` and
``ATL07-01_20190622200154_13070301_007_01.h5``, as the tutorial's search found them in v004)
-------------------------------------------------------------------------------------------
* Size and extent. Each granule is written to the size the real one has: 248,607,461 bytes
  (``Content-Length`` of the real download, notebook cell 23; 237.09 MB in the search, cell 17)
  and 230.9151573181 MB = 242,132,092 bytes. Six beams over the whole northern crossing: the
  sea-ice segments start at the coast ~60 km before the bbox and run over the pole (inclination
  92 deg, highest latitude 88 deg) down to 72.6 N, where the real granule's gt1l ends (cell 31:
  82.38 N -55.11 ... 72.61 N 145.1 E). A strong beam has 235,584 segments like the real gt1l
  (cell 31); each weak beam gets the count that brings the file to the real size (0.43-0.47 of a
  strong beam's here, ~100-110 k: its segments aggregate the same 150 photons from a quarter of
  the energy, so they are longer). The v006 twin is within 1 % of the real sizes; v007 rounds them up to whole pages.
  Pair centres are 3.3 km apart, pair members 90 m (ATL07/10 ATBD; ICESat-2 beam geometry).
* Variables. Every group, variable, dtype, attribute, dimension scale, chunk shape (10000,) /
  (10000, 100), gzip level 6 and shuffle setting (shuffle on integer variables only) is copied
  from the real v003 file in ``tests/data/realdata/atl07/``. Where v006/v007 differ, as far as
  public code shows: ``stats/ice_conc`` is replaced by ``stats/ice_conc_ssmi`` and
  ``stats/ice_conc_amsr2`` (read by version in public MATLAB code that tests ``_006_`` in the
  file name, and listed in a public ATL07 column registry that also has ``stats/dist2land``),
  so this scene has ``ice_conc_ssmi``, ``ice_conc_amsr2`` and ``dist2land`` (dtype, chunking,
  fill value and attributes of ``ice_conc``, ``units`` m for dist2land).
  NOT confirmed, so NOT written: the v007 groups ``sea_ice_segments_10m`` and
  ``dda_surface_segments`` (named by the same registry as having other row dimensions; their
  variables, dtypes and chunking are not in any public source we could find); whether v006/v007
  still carry ``stats/hist_photon_heights`` (kept from v003); v007 attribute text (v003's kept,
  ``release``/``VersionID`` set to 007). We found no copy of the v006/v007 data dictionary
  itself (NSIDC's PDF was not in the searchable sources).
* Layout (Release 007, ``atl07_layout="v007"``, the default). Written as NSIDC's production
  recipe for ICESat-2 Release 007 writes ATL03: file space strategy PAGE with free-space
  tracking persisted, 8 MiB (8,388,608-byte) pages, no COMPACT dataset (every small dataset
  CONTIGUOUS), and no chunk above a page; the file's size is a whole number of pages (the real
  size rounded up: 30 and 29 pages). All ~1.9 MB of metadata aggregates into the first page.
  - Confirmed (for ATL03 v007): PAGE strategy, free-space tracking, COMPACT made CONTIGUOUS,
    photon-rate chunks 10,000 -> 100,000 elements with none above a page, a final ``h5repack``
    (github nsidc/cloud-optimized-icesat2, ``paper.qmd``, "Mission implementation"; NSIDC news
    "Cloud-optimized HDF5 boosts access to ICESat-2 data", ATL03 released so on 2025-07-31); the
    page is 8 MiB, not the paper's ``h5repack -G 8000000`` example (real v007 ATL03 sizes are
    whole multiples of 8,388,608 B, earthaccess docs ``howto/fsspec.ipynb``: 570,425,344 B; NSIDC
    user-working-group 2025 notebook: "ATL products use 8MB-size pages").
  - Assumed: that ATL07 v007 follows the same recipe (likely by that notebook's wording; no
    ATL07-specific statement found). We write the file paged in one pass, in its final order,
    instead of running ``h5repack`` (not in the PyPI wheels): the result is what a repack leaves
    (no free space but the first page's tail and the last raw page's).
  - Unknown: ATL07 v007's segment-rate chunk size. ``atl07_chunk`` sets it: 10,000 (v003-v006's,
    the default) or 100,000 (ATL03 v007's photon-rate choice); 2-D variables keep their columns
    and are capped at a page of raw bytes. The bench reports both.
  ``atl07_layout="v006"`` writes the v006-layout twin (file space strategy 0, metadata blocks
  scattered between the chunks, as v003-v006 are published), named ``..._006_01.h5`` with
  version 006, for the older collection; it is built only when asked for (the bench).
* Bytes. The variables the service reads (times, positions, heights, quality, type, ssh flag,
  segment ids, ...) are modelled along the track (below). The ~65 others per beam are the real
  file's values resampled, with per-value jitter (smooth along track for geolocation and
  geophysical corrections), so they compress like measured floats do; each of them cycles
  through four distinct chunks written with ``write_direct_chunk`` (compressed once: that is
  what keeps a 240 MB granule within seconds). Chunks are real gzip-6 (+ shuffle) streams:
  every value in the file decodes.
* Content. ``delta_time`` is seconds since the ATLAS SDP epoch (2018-01-01; no leap second
  between 2018 and 2019). Heights carry the real fill value, fit quality and surface types
  (1 ice, 2-9 leads, 0 cloud); leads ~6 % of segments; ``sc_orient`` 0 (backward: left beams
  strong).

MODIS L2P (the 14 granules of the recorded search, all real)
-------------------------------------------------------------
* All 14 are full granules. The four the tutorial listed at 9.34600830078125e-5 MB are the
  98 bytes of their ``.nc.md5`` sidecars: PO.DAAC listed the .md5 first in those records and the
  old JSON feed's ``granule_size`` took the first file (``tests/data/realdata/cmr/recorded/
  README.md``). Those four records list the .md5 first here too (``md5_listed_first``).
* Each granule has its real siblings: ``<file>.nc.md5`` (``<md5>  <file name>\\n``, 98 bytes) and
  ``<file>.cmr.json`` (its UMM-G record), kept in PO.DAAC's public bucket as in the recorded
  UMM-G item ``modis_a_l2p_G1966151265-POCLOUD_umm.json``.
* Layout: 2030 x 1354, variables/dtypes/attributes of the real day granule (notebook output) and,
  for the night granule, the real night granule's (``realdata/l2p/*.zarr.json``, ``.dmrpp``:
  ``sea_surface_temperature_4um``, ``quality_level_4um``, ``sses_bias_4um``,
  ``sses_standard_deviation_4um`` and no chlorophyll_a / K_490). Chunks (1, 1015, 677) = 2 x 2
  per field, zlib level 4, no shuffle. The .dmrpp/.zarr.json declare the byte fields Int16;
  the 2019 granule's own xarray output (notebook) shows int8: int8 is kept.
* Byte mix like the real night granule's chunk sizes (zarr.json): lat 29 %, lon 35 %, SST 17 %,
  SST 4 um 17 %. lat/lon are the swath geometry itself (they compress to within 5 % of the real
  chunks); SST carries 0.25 K retrieval noise (GHRSST SSES standard deviations of 0.3-0.5 K).
  Day granules (no 4 um field) are therefore 22.4-23.1 MB, the night one 28.3 MB; the recorded
  day sizes are 19-21 MB (the night one 18.6 MB), so the real 2019 granules compress somewhat
  better than ours; their own byte mix is not recorded anywhere we could find.
* SST over sea ice as MODIS L2P delivers it. Sources: GHRSST GDS 2.0 (quality_level 0-5 and
  l2p_flags semantics, as the real attributes above spell them); the OBPG Level-2 flag table
  (bit 24 SEAICE "probable sea ice contamination", bit 9 CLDICE), the likely origin of the
  L2P ice bit (not confirmed); the MODIS_L2 repository of P. Cornillon (github.com/pcornillon/MODIS_L2: OBPG's cloud
  screening marks pixels by brightness-temperature tests and an SST-minus-reference test, i.e. a
  retrieval exists and the test sets its quality); and the tutorial itself: the SSTs it matched
  to the real gt1l segments over ice are 263.375 K (notebook cell 64): below ``valid_min``, kept
  because xarray masks ``_FillValue`` but not ``valid_min``. What we could NOT confirm: the
  resolution of the ice analysis behind the ice bit (0.25 deg x 1 deg is our choice), the
  fraction of melting ice that passes (20 % is our choice), cloud-top temperatures (245-265 K).
  - Cloud and ice pixels carry an SST value with a low quality level, not fill: cloud tops
    retrieve at 245-265 K with quality_level 1 (bad_data; 2 at cloud edges); ice-covered pixels
    retrieve the ice surface temperature with quality_level 1-2. Only pixels without a retrieval
    would be fill (none here: June is polar day and the swath is all ocean and ice).
  - Values below ``valid_min`` (-1000 = 268.15 K) occur over cold ice and under cloud; CF
    decoding makes them missing (kept in the file, as real files hold them).
  - Melting ice in June sits at 271-273 K (it cannot exceed 273.15 K) and some of it passes the
    tests: 20 % of melting-ice pixels get quality_level 4 (a false "acceptable").
  - The ice bit (4) of ``l2p_flags`` comes from a coarse ice analysis (cells of 0.25 deg latitude
    x 1 deg longitude, ice where the cell's concentration exceeds 15 %), so it follows neither
    leads nor the ice edge pixel by pixel.
  - Leads are mostly narrower than a 1 km pixel: each pixel mixes lead water (271.35 K, the
    freezing point of seawater) and ice by its sub-pixel open-water fraction (mostly < 25 %).
  The fields are geographic (the same value where two swaths overlap). ``sst_dtime`` is per scan
  (10 detector rows).
* Swath geometry: sun-synchronous orbit (98.2 deg, 705 km, +/-55 deg scan) with its northern
  apex at each granule's mid-time; the 10:00:01 granule (``G1956158784-POCLOUD``, the one the
  tutorial opened) covers the bbox near nadir.

Footprints: ATL07 granules get a polygon ring around the outer beams (``polygon``); L2P
granules get CMR-style bounding rectangles (``rectangles``, W,S,E,N; split at the antimeridian).
``size_bytes`` is the size of the file written (the emulator serves it, CMR lists it).

Files are written by two worker processes (each has its own seeds, so the output does not depend
on the worker count), with one progress line per file on stderr. Everything is written under
``cache_dir / f"scene-{SCENE_VERSION}-{extent}"`` (atomically, via a temporary directory) and
reused by later calls; a non-default ATL07 layout or chunk size gets its own folder
(``...-full-v006``, ``...-full-c100000``). The L2P files are hard-linked from any other scene in
the cache (they are the same in all).
"""
from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time as _time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import h5py
import numpy as np

log = logging.getLogger(__name__)

SCENE_VERSION = "seed-2019-06-22-v7"
EXTENTS = ("full", "cut")
# ATL07 file layouts: Release 007 as NSIDC publishes it (paged, cloud-optimized) and the v003-v006
# layout (file space strategy 0, metadata scattered through the file), kept as the twin for the
# older collection; see "Layout (Release 007)" in the module docstring
ATL07_LAYOUTS = ("v007", "v006")
ATL07_PAGE_BYTES = 8 * 1024 * 1024  # 8 MiB = 8,388,608 B: real v007 ATL03 sizes are whole multiples of it
REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO / "tests" / "data" / "realdata"
ATL07_TEMPLATE = REALDATA / "atl07" / "processed_ATL07-01_20190222003738_08490201_003_02.h5"
L2P_ATTRS = REALDATA / "notebook" / "MODIS_A_20190622100001_xarray_h5netcdf_attrs_from_notebook_output.txt"
L2P_NIGHT_ZARR = REALDATA / "l2p" / "20200911000001-JPL-L2P_GHRSST-SSTskin-MODIS_A-N-v02.0-fv01.0.zarr.json"

SEED_BBOX = (-62.8, 81.7, -56.4, 83.0)
SEED_DATE = date(2019, 6, 22)

ATL07_COLLECTION = "C3564876395-NSIDC_CPRD"
L2P_COLLECTION = "C1940473819-POCLOUD"
NSIDC_BUCKET = "nsidc-cumulus-prod-protected"
PODAAC_BUCKET = "podaac-ops-cumulus-protected"
PODAAC_PUBLIC_BUCKET = "podaac-ops-cumulus-public"  # where PO.DAAC keeps .md5 / .cmr.json

R_EARTH = 6371008.8
OMEGA_E_DEG_S = 360.0 / 86164.0905
ATLAS_EPOCH = datetime(2018, 1, 1, tzinfo=UTC)
L2P_EPOCH = datetime(1981, 1, 1, tzinfo=UTC)


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
    rectangles: list[tuple[float, float, float, float]] = field(default_factory=list)  # W,S,E,N
    day_night: str = ""  # L2P: "Day" | "Night"
    md5: str = ""
    # files published beside the data file: dicts of name, bucket, key, path, size_bytes, md5
    siblings: list[dict] = field(default_factory=list)
    md5_listed_first: bool = False  # the record lists the .md5 before the data file


@dataclass
class Scene:
    granules: list[SceneGranule]
    bbox: tuple[float, float, float, float]
    date: date
    root: Path
    extent: str = "full"

    def by_collection(self, collection_concept_id: str) -> list[SceneGranule]:
        return [g for g in self.granules if g.collection_concept_id == collection_concept_id]


def _progress(message: str) -> None:
    print(f"scene: {message}", file=sys.stderr, flush=True)


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


def _swath_field(xyz, seed, scale_km=120.0, n=8, step=4):
    """:func:`_field` over a swath (rows, cols, 3), evaluated every ``step`` pixels and
    interpolated bilinearly in between: the fields vary over tens of km, pixels are 1 km."""
    rows, cols = xyz.shape[:2]
    ri = np.minimum(np.arange(0, rows + step, step), rows - 1)
    ci = np.minimum(np.arange(0, cols + step, step), cols - 1)
    coarse = _field(xyz[ri][:, ci], seed, scale_km, n)
    r, c = np.arange(rows), np.arange(cols)
    r0, c0 = r // step, c // step
    wr, wc = ((r % step) / step)[:, None], ((c % step) / step)[None, :]
    top = coarse[r0][:, c0] * (1 - wc) + coarse[r0][:, c0 + 1] * wc
    bottom = coarse[r0 + 1][:, c0] * (1 - wc) + coarse[r0 + 1][:, c0 + 1] * wc
    return top * (1 - wr) + bottom * wr


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




# ------------------------------------------------------------------------------------------
# HDF5 chunks compressed here and written with write_direct_chunk (same bytes as the library's)


def _encode_chunk(chunk: np.ndarray, shuffle: bool, level: int) -> bytes:
    """HDF5's shuffle filter (byte planes) then deflate (a zlib stream), as H5Z applies them."""
    chunk = np.ascontiguousarray(chunk)
    raw = chunk.view(np.uint8).reshape(-1, chunk.dtype.itemsize).T.tobytes() if shuffle else chunk.tobytes()
    return zlib.compress(raw, level)


def _chunk_slices(shape: tuple[int, ...], chunks: tuple[int, ...]):
    """Offsets of every chunk of a dataset, row-major."""
    grids = [range(0, max(n, 1), c) for n, c in zip(shape, chunks)]
    offsets = [()]
    for g in grids:
        offsets = [o + (i,) for o in offsets for i in g]
    return offsets


def _padded(data: np.ndarray, offset: tuple[int, ...], chunks: tuple[int, ...], fill) -> np.ndarray:
    """The full-size chunk at ``offset`` (HDF5 stores edge chunks whole)."""
    out = np.full(chunks, fill, dtype=data.dtype)
    part = data[tuple(slice(o, o + c) for o, c in zip(offset, chunks))]
    out[tuple(slice(0, n) for n in part.shape)] = part
    return out


# ------------------------------------------------------------------------------------------
# ATL07

BEAM_ACROSS_M = {  # pair centres 3.3 km apart, pair members 90 m apart
    "gt1l": -3345.0, "gt1r": -3255.0, "gt2l": -45.0, "gt2r": 45.0, "gt3l": 3255.0, "gt3r": 3345.0,
}
ATL07_INCL = 92.0
ATL07_PERIOD_S = 5653.0  # 94.2 min
ATL07_HALF_CUT_M = 200_000.0  # extent="cut": +/-200 km around the bbox crossing
ATL07_BEFORE_M = 60_000.0  # sea-ice segments begin at the coast, just before the bbox
ATL07_END_LAT = 72.6  # ... and end at 72.6 N past the pole (the real gt1l: 72.61 N, cell 31)
ATL07_STRONG_SEGMENTS = 235_584  # the real gt1l of the 05:53:17 granule (cell 31)
ATL07_CHUNK = 10_000
ATL07_PAYLOADS = 4  # distinct chunks cycled through by each resampled variable
ATL07_GZIP = 6
ATL07_FILE_OVERHEAD = 1_900_000  # bytes besides the datasets' chunks: metadata, headers, chunk indexes (measured)
# v006/v007 names (destination) and the v003 variable whose layout they take
ATL07_V006_RENAMES = {"stats/ice_conc_ssmi": "stats/ice_conc", "stats/ice_conc_amsr2": "stats/ice_conc",
                      "stats/dist2land": "stats/ice_conc"}
ATL07_V003_ONLY = ("stats/ice_conc",)
_SMOOTH_GROUPS = ("/geolocation/", "/geophysical/")


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
    size_bytes: int  # the real granule's size (notebook cells 17 and 23)


ATL07_SPECS = (
    _Atl07Spec("ATL07-01_20190622055317_12980301_007_01.h5", "G3104012981-NSIDC_CPRD",
               datetime(2019, 6, 22, 5, 53, 17, tzinfo=UTC),
               datetime(2019, 6, 22, 6, 7, 52, tzinfo=UTC), -58.4, 82.45, 1298, 3, 3930, 7001,
               248_607_461),
    _Atl07Spec("ATL07-01_20190622200154_13070301_007_01.h5", "G3104013070-NSIDC_CPRD",
               datetime(2019, 6, 22, 20, 1, 54, tzinfo=UTC),
               datetime(2019, 6, 22, 20, 16, 31, tzinfo=UTC), -60.9, 82.2, 1307, 3, 3939, 7002,
               242_132_092),
)


def _atl07_orbit(spec: _Atl07Spec):
    """Argument of latitude at the crossing point and the ascending node's longitude."""
    u_c = float(np.arcsin(np.sin(np.radians(spec.cross_lat)) / np.sin(np.radians(ATL07_INCL))))
    _, lon0 = _ground_track(ATL07_INCL, 0.0, np.array([u_c]), np.array([0.0]))
    return u_c, spec.cross_lon - float(lon0[0])


def _atl07_extent(spec: _Atl07Spec, extent: str) -> tuple[float, float]:
    """Along-track distance (m from the crossing point) where the sea-ice segments start and end."""
    if extent == "cut":
        return -ATL07_HALF_CUT_M, ATL07_HALF_CUT_M
    u_c, _ = _atl07_orbit(spec)
    u_end = np.pi - np.arcsin(np.sin(np.radians(ATL07_END_LAT)) / np.sin(np.radians(ATL07_INCL)))
    return -ATL07_BEFORE_M, float((u_end - u_c) * R_EARTH)


def _atl07_points(spec: _Atl07Spec, s: np.ndarray, across_m: float):
    """lat, lon, delta_time and u of along-track positions ``s`` (m) offset ``across_m`` sideways."""
    u_c, lon_node = _atl07_orbit(spec)
    dt = s / (R_EARTH * 2 * np.pi / ATL07_PERIOD_S)
    u = u_c + s / R_EARTH
    lat, lon = _ground_track(ATL07_INCL, lon_node, u, dt)
    p = _xyz(lat, lon)
    a = np.gradient(p, axis=0) if s.size > 1 else np.zeros_like(p)
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    blat, blon = _latlon(_offset(p, a, np.full(s.shape, across_m)))
    return blat, blon, (spec.cross_time - ATLAS_EPOCH).total_seconds() + dt, u


def _atl07_footprint(spec: _Atl07Spec, extent: str):
    """CMR polygon around the outer beams, start and end time (independent of the segment draw)."""
    s0, s1 = _atl07_extent(spec, extent)
    s = np.linspace(s0, s1, 80)
    lat_l, lon_l, t, _ = _atl07_points(spec, s, BEAM_ACROSS_M["gt1l"] - 100.0)
    lat_r, lon_r, _, _ = _atl07_points(spec, s, BEAM_ACROSS_M["gt3r"] + 100.0)
    ring = [(round(float(x), 5), round(float(y), 5)) for x, y in zip(lon_l, lat_l)]
    ring += [(round(float(x), 5), round(float(y), 5)) for x, y in zip(lon_r[::-1], lat_r[::-1])]
    ring.append(ring[0])
    return ring, ATLAS_EPOCH + timedelta(seconds=float(t[0])), ATLAS_EPOCH + timedelta(seconds=float(t[-1]))


def _atl07_beam(spec: _Atl07Spec, beam: str, extent: str, mean_gap_m: float) -> dict:
    """Segment positions of one beam: gamma-distributed spacing with the given mean."""
    rng = np.random.default_rng([spec.seed, list(BEAM_ACROSS_M).index(beam), 0])
    s0, s1 = _atl07_extent(spec, extent)
    m = int((s1 - s0) / mean_gap_m * 1.02) + 16
    s = s0 + np.cumsum(rng.gamma(2.0, mean_gap_m / 2.0, m))
    s = s[s < s1]
    lat, lon, t, u = _atl07_points(spec, s, BEAM_ACROSS_M[beam])
    return dict(s=s, u=u, lat=lat, lon=lon, delta_time=t, strong=beam.endswith("l"), across=BEAM_ACROSS_M[beam])


def _atl07_beam_values(spec: _Atl07Spec, beam_name: str, beam: dict, first_id: int) -> dict:
    """The variables the colocation and the readers use, keyed by path below sea_ice_segments."""
    rng = np.random.default_rng([spec.seed, list(BEAM_ACROSS_M).index(beam_name), 1])
    m = beam["s"].size
    fill32 = np.float32(3.4028235e38)
    along = np.cumsum(rng.normal(0, 0.08, m)) * 0.02  # slowly varying freeboard
    along -= np.linspace(along[0], along[-1], m) if m else 0.0  # no drift over 2400 km
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
    length = np.where(valid, rng.gamma(3.0, 4.0 if beam["strong"] else 12.0, m), 0).astype(np.float32)
    geoseg = (beam["u"] * R_EARTH / 20.0).astype(np.int32)
    # passive-microwave concentration: ~95-100 % in the central Arctic pack in June
    conc = np.clip(96.0 + 3.0 * np.sin(beam["s"] / 90_000.0) + rng.normal(0, 1.0, m), 0, 100).astype(np.float32)
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
        "stats/ice_conc_ssmi": conc,
        "stats/ice_conc_amsr2": np.clip(conc + rng.normal(0, 1.5, m), 0, 100).astype(np.float32),
        "stats/dist2land": (np.abs(beam["s"] + ATL07_BEFORE_M) + 2_000.0).astype(np.float32),
    }


def _seg_chunks(obj: h5py.Dataset, rows: int) -> tuple[int, ...]:
    """A segment-rate variable's chunk shape with ``rows`` segments per chunk, capped so that no
    chunk holds more than a page of raw bytes (NSIDC's recipe: no chunk above a page)."""
    per_row = obj.dtype.itemsize * int(np.prod(obj.chunks[1:], dtype=np.int64))
    return (max(1, min(rows, ATL07_PAGE_BYTES // per_row)),) + tuple(obj.chunks[1:])


def _payloads(obj: h5py.Dataset, rel: str, seed: list[int],
              rows: int = ATL07_CHUNK) -> dict[tuple[int, ...], list[bytes]]:
    """ATL07_PAYLOADS compressed chunks per chunk column of a variable we do not model: the real
    file's values resampled with per-value jitter (smooth along track for slowly varying fields)."""
    rng = np.random.default_rng(seed)
    real = obj[()]
    fill = obj.fillvalue
    rows = _seg_chunks(obj, rows)[0]
    out: dict[tuple[int, ...], list[bytes]] = {}
    col_offsets = [()] if obj.ndim == 1 else [(0, c) for c in range(0, obj.shape[1], obj.chunks[1])]
    for col in col_offsets:
        out[col] = []
        for _ in range(ATL07_PAYLOADS):
            if real.shape[0] == 0:
                data = np.full((rows,) + obj.shape[1:], fill, obj.dtype)
            elif any(g in f"/{rel}" for g in _SMOOTH_GROUPS):
                knots = real[rng.integers(0, real.shape[0], 5)].astype(np.float64)
                data = np.interp(np.linspace(0, 4, rows), np.arange(5), knots)
                data = np.where(knots.max() >= 1e37, knots.max(), data)  # a filled variable stays filled
            else:
                data = real[rng.integers(0, real.shape[0], rows)].astype(np.float64 if obj.dtype.kind == "f" else obj.dtype)
            if obj.dtype.kind == "f":
                ok = np.abs(data) < 1e37
                data = np.where(ok, data * (1.0 + rng.normal(0, 1e-3, data.shape)), data)
            elif obj.ndim == 2:  # photon histograms: counts vary, and solar background (June: polar
                # day) puts stray photons in any bin
                data = np.where(data > 0, data + rng.integers(-1, 2, data.shape), data) + rng.poisson(0.12, data.shape)
            data = np.asarray(data).astype(obj.dtype)
            chunk_shape = (rows,) + tuple(obj.chunks[1:])
            chunk = _padded(data, (0,) + col[1:], chunk_shape, fill) if obj.ndim == 2 else data
            out[col].append(_encode_chunk(chunk, obj.shuffle, obj.compression_opts or ATL07_GZIP))
    return out


def _atl07_plan(src: h5py.File) -> tuple[dict[str, str], list[str]]:
    """Destination path -> template path: every beam gets the full layout (the real subset's
    gt2r is empty: borrowed from a beam of the same strength), v006/v007 names applied."""
    names: list[str] = []
    src.visit(names.append)
    present = set(names)
    plan: dict[str, str] = {n: n for n in names}
    for beam in BEAM_ACROSS_M:
        donor = "gt1l" if beam.endswith("l") else "gt1r"
        for n in names:
            if n.startswith(donor + "/") and beam + n[len(donor):] not in present:
                plan[beam + n[len(donor):]] = n
    for beam in BEAM_ACROSS_M:
        base = f"{beam}/sea_ice_segments/"
        for old in ATL07_V003_ONLY:
            template = plan.pop(base + old, None)
            if template is None:
                continue
            for new, was in ATL07_V006_RENAMES.items():
                if was == old:
                    plan[base + new] = template
    return plan, names


def _is_segment_rate(src: h5py.File, template_path: str) -> bool:
    obj = src[template_path]
    return (isinstance(obj, h5py.Dataset) and "/sea_ice_segments/" in template_path and obj.chunks is not None
            and (template_path.endswith("/sea_ice_segments/delta_time")
                 or (len(obj.dims[0]) > 0 and obj.dims[0][0].name.endswith("/sea_ice_segments/delta_time"))))


def _atl07_file(out: Path, layout: str) -> h5py.File:
    """The destination file: v007 paged like NSIDC's Release 007 recipe (PAGE strategy, free-space
    tracking persisted, 8 MiB pages; all metadata aggregates into metadata pages, which with
    ~2 MB of it is the first page), v006 with the library's default strategy (metadata blocks
    of 2 KiB scattered between the chunks)."""
    if layout == "v006":
        return h5py.File(out, "w", libver=("earliest", "v110"))
    return h5py.File(out, "w", libver=("earliest", "v110"), fs_strategy="page", fs_persist=True, fs_threshold=1,
                     fs_page_size=ATL07_PAGE_BYTES)


def _atl07_data_budget(size_bytes: int, layout: str) -> float:
    """Bytes of chunks that bring the file to the real granule's size: v006 less its metadata; v007
    (paged) to the real size rounded up to whole pages, less the metadata page and the ends of the
    raw-data pages a chunk does not fit in (~2.5 MB measured over 30 pages)."""
    if layout == "v006":
        return size_bytes - ATL07_FILE_OVERHEAD
    return -(-size_bytes // ATL07_PAGE_BYTES) * ATL07_PAGE_BYTES - ATL07_PAGE_BYTES - 2_500_000


def _write_atl07(spec: _Atl07Spec, out: Path, extent: str, layout: str = "v007", chunk: int = ATL07_CHUNK) -> dict:
    with h5py.File(ATL07_TEMPLATE, "r") as src, _atl07_file(out, layout) as dst:
        plan, _ = _atl07_plan(src)
        seg_paths = {n for n, t in plan.items() if n.startswith("gt") and _is_segment_rate(src, t)}
        rel_of = {n: n.split("/sea_ice_segments/", 1)[1] for n in seg_paths}

        # 1. the modelled variables of the strong beams and the payloads of everything else
        strong_gap = (lambda s0, s1: (s1 - s0) / ATL07_STRONG_SEGMENTS)(*_atl07_extent(spec, "full"))
        first_ids = {"gt1": 1_210_000, "gt2": 1_340_000, "gt3": 1_470_000}
        beams: dict[str, dict] = {}
        values: dict[str, dict] = {}
        for beam in ("gt1l", "gt2l", "gt3l"):
            beams[beam] = _atl07_beam(spec, beam, extent, strong_gap)
            values[beam] = _atl07_beam_values(spec, beam, beams[beam], first_ids[beam[:3]])
        payloads: dict[tuple[str, str], dict] = {}
        modelled = set(values["gt1l"])
        for i, rel in enumerate(sorted({r for r in rel_of.values()} - modelled)):
            for strength, donor in (("strong", "gt1l"), ("weak", "gt1r")):
                template = plan.get(f"{donor}/sea_ice_segments/{rel}")
                if template is not None:
                    payloads[(strength, rel)] = _payloads(src[template], rel, [spec.seed, 99, i, strength == "weak"],
                                                          chunk)

        def encode_beam(beam: str) -> dict[str, list[tuple[tuple[int, ...], bytes]]]:
            jobs = []
            for rel, data in values[beam].items():
                obj = src[plan[f"{beam}/sea_ice_segments/{rel}"]]
                data = np.asarray(data, dtype=obj.dtype)
                shape = _seg_chunks(obj, chunk)
                for off in _chunk_slices(data.shape, shape):
                    jobs.append((rel, off, _padded(data, off, shape, obj.fillvalue), obj.shuffle,
                                 obj.compression_opts or ATL07_GZIP))
            with ThreadPoolExecutor(2) as pool:  # zlib releases the GIL
                encoded = list(pool.map(lambda j: _encode_chunk(j[2], j[3], j[4]), jobs))
            out_: dict[str, list] = {}
            for (rel, off, *_), blob in zip(jobs, encoded):
                out_.setdefault(rel, []).append((off, blob))
            return out_

        chunks = {beam: encode_beam(beam) for beam in beams}
        # 2. the weak beams get the segment count that brings the file to the real size. A beam
        # of n segments stores ceil(n / 10000) whole chunks of every payload variable plus its
        # modelled variables (bytes per segment measured on the strong beams and on a trial weak
        # beam: its sparser segments compress differently)
        payload_row = {k: sum(np.mean([len(b) for b in blobs]) for (s, _), p in payloads.items()
                              if s == k for blobs in p.values()) for k in ("strong", "weak")}

        def beam_bytes(n: int, strength: str, model_per_seg: float) -> float:
            return model_per_seg * n + -(-n // chunk) * payload_row[strength]

        strong_model = sum(len(b) for beam in chunks for lst in chunks[beam].values() for _, b in lst) / sum(
            beams[b]["s"].size for b in beams)
        strong_full = 3 * beam_bytes(ATL07_STRONG_SEGMENTS, "strong", strong_model)
        s0, s1 = _atl07_extent(spec, "full")
        weak_gap = (s1 - s0) / (0.45 * ATL07_STRONG_SEGMENTS)
        trial = _atl07_beam(spec, "gt1r", "cut", weak_gap)
        beams["gt1r"], values["gt1r"] = trial, _atl07_beam_values(spec, "gt1r", trial, first_ids["gt1"] + 50_000)
        weak_model = sum(len(b) for lst in encode_beam("gt1r").values() for _, b in lst) / trial["s"].size
        per_beam = (_atl07_data_budget(spec.size_bytes, layout) - strong_full) / 3
        candidates = np.arange(int(0.15 * ATL07_STRONG_SEGMENTS), int(0.6 * ATL07_STRONG_SEGMENTS), 100)
        fits = [n for n in candidates if beam_bytes(int(n), "weak", weak_model) <= per_beam]
        weak_gap = (s1 - s0) / float(fits[-1] if fits else candidates[0])
        for beam in ("gt1r", "gt2r", "gt3r"):
            beams[beam] = _atl07_beam(spec, beam, extent, weak_gap)
            values[beam] = _atl07_beam_values(spec, beam, beams[beam], first_ids[beam[:3]] + 50_000)
            chunks[beam] = encode_beam(beam)

        # 3. write: groups, then datasets (segment-rate ones chunk by chunk)
        _attr_copy(src, dst, skip=("Processing Parameters",))
        scales: list[tuple[str, int, str]] = []

        def rename(path: str, dst_name: str) -> str:
            src_beam, dst_beam = plan[dst_name].split("/")[0], dst_name.split("/")[0]
            if src_beam != dst_beam and path.startswith(src_beam + "/"):
                return dst_beam + path[len(src_beam):]
            return path

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
            if name in seg_paths:
                beam, rel = name.split("/")[0], rel_of[name]
                m = beams[beam]["s"].size
                ds = dst.create_dataset(name, shape=(m,) + obj.shape[1:], dtype=obj.dtype,
                                        chunks=_seg_chunks(obj, chunk),
                                        maxshape=(None,) + obj.shape[1:], compression=obj.compression,
                                        compression_opts=obj.compression_opts, shuffle=obj.shuffle,
                                        fillvalue=obj.fillvalue)
                if rel in chunks[beam]:
                    for off, blob in chunks[beam][rel]:
                        ds.id.write_direct_chunk(off, blob)
                else:
                    cycle = payloads[("strong" if beam.endswith("l") else "weak", rel)]
                    for k, off in enumerate(_chunk_slices(ds.shape, ds.chunks)):
                        blobs = cycle[() if obj.ndim == 1 else (0, off[1])]
                        ds.id.write_direct_chunk(off, blobs[(k // max(1, len(cycle))) % len(blobs)])
            else:
                data = obj[()]
                ds = dst.create_dataset(
                    name, shape=obj.shape, dtype=obj.dtype, data=data, chunks=obj.chunks,
                    maxshape=obj.maxshape if obj.chunks else None, compression=obj.compression,
                    compression_opts=obj.compression_opts, shuffle=obj.shuffle,
                    # a 100 kB string's fill value would not fit an object header (ancillary_data/control)
                    fillvalue=obj.fillvalue if obj.dtype.itemsize < 1024 else None)
            _attr_copy(obj, ds)
            rel = rel_of.get(name, "")
            if rel == "stats/ice_conc_amsr2":
                _set_attr_like(ds, "description", "sea ice concentration from AMSR2")
                _set_attr_like(ds, "long_name", "sea ice concentration (AMSR2)")
            elif rel == "stats/ice_conc_ssmi":
                _set_attr_like(ds, "description", "sea ice concentration from SSMIS")
                _set_attr_like(ds, "long_name", "sea ice concentration (SSMIS)")
            elif rel == "stats/dist2land":
                _set_attr_like(ds, "description", "distance to the nearest land")
                _set_attr_like(ds, "long_name", "distance to land")
                _set_attr_like(ds, "units", "meters")
            if "CLASS" in obj.attrs and obj.attrs["CLASS"] == b"DIMENSION_SCALE":
                ds.make_scale(rename(obj.attrs.get("NAME", b"").decode(), name))
        for name, d, scale in scales:
            if scale in dst and name in dst:
                dst[name].dims[d].attach_scale(dst[scale])
        _atl07_metadata(dst, spec, values)
    return {b: int(v["s"].size) for b, v in beams.items()}


def _atl07_metadata(dst: h5py.File, spec: _Atl07Spec, values: dict) -> None:
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
    orb["sc_orient_time"][0] = (datetime(2019, 6, 1, tzinfo=UTC) - ATLAS_EPOCH).total_seconds()
    for beam in BEAM_ACROSS_M:
        _set_attr_like(dst[beam], "sc_orientation", "Backward")
        _set_attr_like(dst[beam], "atlas_beam_type", "strong" if beam.endswith("l") else "weak")
    for name, value in {
        "date_created": "2025-01-15T10:12:31.000000Z",
        "geospatial_lat_max": float(lat_all.max()), "geospatial_lat_min": float(lat_all.min()),
        "geospatial_lon_max": float(lon_all.max()), "geospatial_lon_min": float(lon_all.min()),
        "identifier_file_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, spec.file_name)),
        "identifier_product_doi": "doi:10.5067/ATLAS/ATL07.007",
        "time_coverage_start": iso(gstart), "time_coverage_end": iso(gend),
        "time_coverage_duration": 5657.0,
    }.items():
        _set_attr_like(dst, name, value)
    if "METADATA/DatasetIdentification" in dst:
        md = dst["METADATA/DatasetIdentification"]
        _set_attr_like(md, "fileName", spec.file_name)
        _set_attr_like(md, "VersionID", "007")


# ------------------------------------------------------------------------------------------
# MODIS L2P

NJ, NI = 2030, 1354
L2P_CHUNKS = (1, 1015, 677)
L2P_ZLIB = 4
AQUA_INCL = 98.2
AQUA_ALT_M = 705_000.0
AQUA_PERIOD_S = 5933.0
APEX_LON_AT_10 = -59.6  # 10:02:30 apex; the Earth turns under the orbit by 15.04 deg/h
APEX_REF = datetime(2019, 6, 22, 10, 2, 30, tzinfo=UTC)
SST_NOISE_K = 0.25  # retrieval noise (GHRSST SSES standard deviations are 0.3-0.5 K)
SEAWATER_FREEZING_K = 271.35  # -1.8 C
MELT_PASS_FRACTION = 0.2  # melting-ice pixels (271-273 K) that pass as quality_level 4
ICE_MASK_CELL_DEG = (0.25, 1.0)  # coarse external ice analysis: lat x lon cell
ICE_MASK_THRESHOLD = 0.15  # the usual ice-edge concentration

# (title, size in MB as the tutorial's JSON-feed search listed it, cell 35): 9.346e-5 MB is the
# 98-byte .nc.md5 listed first, not the granule
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
MD5_SIDECAR_MB = 9.34600830078125e-5  # 98 bytes
L2P_CONCEPT_ID_10 = 1956158784  # the 10:00:01 granule the tutorial opened (granules[9])
L2P_NOMINAL_BYTES = {"Day": 22_800_000, "Night": 27_300_000}  # describe_scene's estimate

# variable name -> (dims, dtype); order as in the real day file (notebook output)
L2P_DAY_VARS = {
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
# the real night granule (zarr.json/.dmrpp): 4 um fields instead of the ocean-colour ones
L2P_NIGHT_VARS = {
    **{k: v for k, v in L2P_DAY_VARS.items() if k not in ("chlorophyll_a", "K_490", "wind_speed", "dt_analysis")},
    "sea_surface_temperature_4um": (("time", "nj", "ni"), "i2"),
    "quality_level_4um": (("time", "nj", "ni"), "i1"),
    "sses_bias_4um": (("time", "nj", "ni"), "i1"),
    "sses_standard_deviation_4um": (("time", "nj", "ni"), "i1"),
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
    names = list(L2P_DAY_VARS)
    cur = -1
    for i, (name, value) in enumerate(rows):
        if name == "Conventions":
            return per_var, rows[i:]
        if name == "long_name":
            cur += 1
            per_var[names[cur]] = []
        per_var[names[cur]].append((name, value))
    raise ValueError(f"no global attributes in {L2P_ATTRS}")



def _night_attr_template() -> dict[str, list[tuple[str, object]]]:
    """Attributes of the 4 um fields, from the real night granule's zarr.json (document order)."""
    refs = json.loads(L2P_NIGHT_ZARR.read_text())
    out = {}
    for name in ("sea_surface_temperature_4um", "quality_level_4um", "sses_bias_4um", "sses_standard_deviation_4um"):
        attrs = refs[f"{name}/.zattrs"]
        attrs = json.loads(attrs) if isinstance(attrs, str) else attrs
        rows = []
        for key, value in attrs.items():
            if key == "_ARRAY_DIMENSIONS":
                continue
            if key == "coordinates":
                value = "lon lat"  # as the 2019 day granule writes it
            vals = value if isinstance(value, list) else [value]
            rows.append((key, [v.encode() if isinstance(v, str) else v for v in vals]))
        out[name] = rows
    return out


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



def _l2p_content(xyz, lat, lon, line_dt, seed: int, night: bool) -> dict:
    """SST, quality and flags over sea ice the way MODIS L2P delivers them (module docstring)."""
    rng = np.random.default_rng(seed)
    shape = lat.shape
    # surface: the pixel's sea-ice concentration (geographic: equal where swaths overlap)
    field = lambda seed, scale_km, **kw: _swath_field(xyz, seed, scale_km, **kw)  # noqa: E731
    pack = np.clip(0.6 + 0.45 * field(12, 250.0) + (np.abs(lat) - 80.0) / 6.0, 0.0, 1.0)
    open_frac = np.clip(0.25 * np.maximum(field(15, 8.0, n=12, step=2), 0.0) ** 2, 0.0, 0.7)  # sub-pixel leads
    conc = pack * (1.0 - open_frac)
    t_ice = np.minimum(270.6 + 2.2 * field(16, 40.0) - 0.6 * (np.abs(lat) - 82.0), 273.15)
    t_water = SEAWATER_FREEZING_K + 2.5 * (1.0 - pack) ** 2 + 0.2 * field(13, 200.0)
    cloud_f = field(11, 150.0)
    cloud = cloud_f > 0.3
    t_true = np.where(cloud, 258.0 + 7.0 * field(17, 60.0), conc * t_ice + (1.0 - conc) * t_water)
    ql_f = field(14, 40.0)
    icy = ~cloud & (conc > ICE_MASK_THRESHOLD)

    def retrieval(noise_k: float, bias_k: float):
        t = t_true + bias_k + rng.normal(0.0, noise_k, shape)
        sst = np.round((t - 273.15) / 0.005).astype(np.int16)  # below -1000 (268.15 K) stays in the file
        ql = np.select([ql_f > 0.3, ql_f > -0.4], [5, 4], 3).astype(np.int8)  # open water
        ql[icy] = np.where(ql_f[icy] > 0, 2, 1)
        melting_pass = icy & (t >= 271.0) & (t <= 273.2) & (rng.random(shape) < MELT_PASS_FRACTION)
        ql[melting_pass] = 4
        ql[cloud] = np.where(cloud_f[cloud] < 0.4, 2, 1)
        bias = np.where(ql >= 4, -1, -2).astype(np.int8)  # SSES bias per quality class (-0.16 / -0.31 K)
        sd = np.clip(np.round((np.where(ql >= 4, 0.45, 0.9) - 10.0) / 0.07874016), -127, 127).astype(np.int8)
        return sst, ql, bias, sd

    # l2p_flags ice bit from a coarse external ice analysis, not from the pixel
    cell_lat, cell_lon = ICE_MASK_CELL_DEG
    cells, inverse = np.unique(np.floor(lat / cell_lat) * 10_000 + np.floor(lon / cell_lon), return_inverse=True)
    clat = (np.floor(cells / 10_000) + 0.5) * cell_lat
    clon = (cells - np.floor(cells / 10_000) * 10_000 + 0.5) * cell_lon
    coarse = np.clip(0.6 + 0.45 * _field(_xyz(clat, clon), 12, 250.0) + (np.abs(clat) - 80.0) / 6.0, 0.0, 1.0)
    coarse = coarse[inverse.reshape(shape)]
    flags = np.where(coarse > ICE_MASK_THRESHOLD, 4, 0).astype(np.int16)
    sst, ql, bias, sd = retrieval(SST_NOISE_K, 0.0)
    out = {
        "sea_surface_temperature": sst, "quality_level": ql, "sses_bias": bias, "sses_standard_deviation": sd,
        "sst_dtime": np.broadcast_to(np.round(line_dt).astype(np.int16)[:, None], shape).copy(),
        "l2p_flags": flags,
    }
    if night:
        sst4, ql4, bias4, sd4 = retrieval(SST_NOISE_K, -0.1)
        out.update({"sea_surface_temperature_4um": sst4, "quality_level_4um": ql4, "sses_bias_4um": bias4,
                    "sses_standard_deviation_4um": sd4})
    return out


_L2P_FILLS = {"chlorophyll_a": np.float32(-32767.0), "K_490": np.int16(-32767), "wind_speed": np.int8(-128),
              "dt_analysis": np.int8(-128)}


def _write_l2p(title: str, t_start: datetime, day_night: str, out: Path, seed: int):
    import h5netcdf

    night = day_night == "Night"
    variables = L2P_NIGHT_VARS if night else L2P_DAY_VARS
    lat, lon, line_dt, xyz = _l2p_geometry(t_start)
    content = _l2p_content(xyz, lat, lon, line_dt, seed, night)
    per_var, global_attrs = _l2p_attr_template()
    if night:
        per_var.update(_night_attr_template())
    t_ref = int((t_start - L2P_EPOCH).total_seconds())
    t_stop = t_start + timedelta(seconds=298)
    rect_w, rect_e = _lon_interval(lon[::10, ::10])
    with h5netcdf.File(out, "w") as f:
        f.dimensions = {"time": 1, "nj": NJ, "ni": NI}
        for name, (dims, dtype) in variables.items():
            fill = next((v[0] for k, v in per_var[name] if k == "_FillValue"), None)
            kw = dict(compression="gzip", compression_opts=L2P_ZLIB, shuffle=False)
            if name == "time":
                var = f.create_variable(name, dims, dtype, chunks=(1,), **kw)
                var[:] = np.array([t_ref], np.int32)
                continue
            var = f.create_variable(name, dims, dtype, chunks=L2P_CHUNKS[-len(dims):], fillvalue=fill, **kw)
            if name in ("lat", "lon"):
                var[...] = (lat if name == "lat" else lon).astype(np.float32)
            elif name in content:
                var[...] = content[name][None]
            else:  # not retrieved at these latitudes: all fill, as the real chunks are
                var[...] = np.full((1, NJ, NI), _L2P_FILLS[name], dtype=dtype)
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
        for name in variables:
            obj = h[name]
            for key in list(obj.attrs):
                if key not in ("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME") and not key.startswith("_Netcdf4"):
                    del obj.attrs[key]
            for key, value in per_var[name]:
                obj.attrs.create(key, _attr_array(key, value, variables[name][1]))
        for key, value in global_attrs:
            if key in overrides:
                v = overrides[key]
                value = [v.encode()] if isinstance(v, str) else [v]
            if key == "comment" and night:
                value = [value[0].replace(b"Day,", b"Night,")]
            h.attrs.create(key, _attr_array(key, value, None))
        storage = {name: h[name].id.get_storage_size() for name in variables}
    return lat, lon, storage


def _l2p_rectangles(t_start: datetime):
    lat, lon, _, _ = _l2p_geometry(t_start)
    return _rectangles(lat[::10, ::10], lon[::10, ::10])


# ------------------------------------------------------------------------------------------
# siblings: the files PO.DAAC publishes beside each granule


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _l2p_siblings(g: SceneGranule, folder: Path) -> list[dict]:
    """``<file>.md5`` (md5sum format: 32 + 2 + len(name) + 1 = 98 bytes for these names) and
    ``<file>.cmr.json`` (the granule's UMM-G record), in PO.DAAC's public bucket."""
    md5_path = folder / f"{g.file_name}.md5"
    md5_path.write_text(f"{g.md5}  {g.file_name}\n")
    record = {
        "GranuleUR": g.title,
        "TemporalExtent": {"RangeDateTime": {"BeginningDateTime": g.start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                                             "EndingDateTime": g.end.strftime("%Y-%m-%dT%H:%M:%S.000Z")}},
        "SpatialExtent": {"HorizontalSpatialDomain": {"Geometry": {"BoundingRectangles": [
            {"WestBoundingCoordinate": w, "SouthBoundingCoordinate": s, "EastBoundingCoordinate": e,
             "NorthBoundingCoordinate": n} for w, s, e, n in g.rectangles]}}},
        "DataGranule": {"ArchiveAndDistributionInformation": [
            {"Name": g.file_name, "SizeInBytes": g.size_bytes, "Size": g.size_bytes / 2**20, "SizeUnit": "MB",
             "Checksum": {"Value": g.md5, "Algorithm": "MD5"}}], "DayNightFlag": g.day_night},
        "CollectionReference": {"ShortName": g.short_name, "Version": g.version},
    }
    json_path = folder / f"{g.file_name[:-3]}.cmr.json"
    json_path.write_text(json.dumps(record, indent=2))
    key_dir = g.key.rsplit("/", 1)[0]
    return [{"name": p.name, "bucket": PODAAC_PUBLIC_BUCKET, "key": f"{key_dir}/{p.name}", "path": p,
             "size_bytes": p.stat().st_size, "md5": _md5(p)} for p in (md5_path, json_path)]


# ------------------------------------------------------------------------------------------
# scene assembly and cache


def _atl07_name(spec: _Atl07Spec, layout: str) -> str:
    """The granule's file name: the v006 twin carries release 006 in it (``..._006_01.h5``)."""
    return spec.file_name if layout == "v007" else spec.file_name.replace("_007_", "_006_")


def _atl07_granule(spec: _Atl07Spec, extent: str, path: Path, size_bytes: int, layout: str = "v007") -> SceneGranule:
    ring, start, end = _atl07_footprint(spec, extent)
    name, version = _atl07_name(spec, layout), layout[1:]
    return SceneGranule(
        concept_id=spec.concept_id, collection_concept_id=ATL07_COLLECTION, short_name="ATL07", version=version,
        provider="NSIDC_CPRD", title=name, file_name=name, path=path, size_bytes=size_bytes,
        start=start, end=end, polygon=ring, bucket=NSIDC_BUCKET,
        key=f"ATLAS/ATL07/{version}/2019/06/22/{name}", daac="nsidc")


def _l2p_granule(i: int, title: str, path: Path, size_bytes: int) -> SceneGranule:
    t_start = datetime.strptime(title[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    file_name = f"{title}.nc"
    return SceneGranule(
        concept_id=f"G{L2P_CONCEPT_ID_10 + (i - 9) * 17}-POCLOUD", collection_concept_id=L2P_COLLECTION,
        short_name="MODIS_A-JPL-L2P-v2019.0", version="2019.0", provider="POCLOUD", title=title,
        file_name=file_name, path=path, size_bytes=size_bytes, start=t_start, end=t_start + timedelta(seconds=299),
        polygon=None, bucket=PODAAC_BUCKET, key=f"MODIS_A-JPL-L2P-v2019.0/{file_name}", daac="podaac",
        rectangles=_l2p_rectangles(t_start), day_night="Night" if "-N-" in title else "Day",
        md5_listed_first=L2P_RECORDED[i][1] == MD5_SIDECAR_MB)


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
        g["siblings"] = [{**s, "path": root / s["path"]} for s in g["siblings"]]
        granules.append(SceneGranule(**g))
    return Scene(granules=granules, bbox=tuple(data["bbox"]), date=date.fromisoformat(data["date"]), root=root,
                 extent=data["extent"])


def _manifest(scene_granules: list[SceneGranule], root: Path, extent: str, extra: dict) -> dict:
    rows = []
    for g in scene_granules:
        d = asdict(g)
        d["path"] = str(g.path.relative_to(root))
        d["start"] = g.start.isoformat()
        d["end"] = g.end.isoformat()
        d["siblings"] = [{**s, "path": str(Path(s["path"]).relative_to(root))} for s in g.siblings]
        rows.append(d)
    return {"version": SCENE_VERSION, "extent": extent, "bbox": list(SEED_BBOX), "date": SEED_DATE.isoformat(),
            "granules": rows, **extra}


def scene_root(cache_dir: Path, extent: str = "full", atl07_layout: str = "v007", atl07_chunk: int = ATL07_CHUNK) -> Path:
    """The scene's folder; a non-default ATL07 layout or chunk size gets its own."""
    variant = ("" if atl07_layout == "v007" else f"-{atl07_layout}") + \
        ("" if atl07_chunk == ATL07_CHUNK else f"-c{atl07_chunk}")
    return Path(cache_dir) / f"scene-{SCENE_VERSION}-{extent}{variant}"


def build_scene(cache_dir: Path, *, force: bool = False, extent: str = "full", atl07_layout: str = "v007",
                atl07_chunk: int = ATL07_CHUNK) -> Scene:
    """Generate (or reuse from ``cache_dir``) the seed-case scene; see the module docstring.
    ``atl07_layout`` "v007" (paged, as Release 007 publishes it) or "v006" (the older layout's
    twin); ``atl07_chunk``: segments per segment-rate chunk (10,000 as v003-v006; 100,000 as
    ATL03 v007's photon-rate chunks)."""
    if extent not in EXTENTS:
        raise ValueError(f"extent must be one of {EXTENTS}, not {extent!r}")
    if atl07_layout not in ATL07_LAYOUTS:
        raise ValueError(f"atl07_layout must be one of {ATL07_LAYOUTS}, not {atl07_layout!r}")
    cache_dir = Path(cache_dir)
    root = scene_root(cache_dir, extent, atl07_layout, atl07_chunk)
    if root.is_dir() and (root / "scene.json").is_file() and not force:
        return _scene_from_manifest(root)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Several test sessions and the demo share one cache: one builds, the others wait for it.
    with open(cache_dir / ".scene.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if root.is_dir() and (root / "scene.json").is_file() and not force:
            return _scene_from_manifest(root)
        return _build(cache_dir, root, extent, atl07_layout, atl07_chunk)


def _atl07_job(spec: _Atl07Spec, path: Path, extent: str, layout: str = "v007", chunk: int = ATL07_CHUNK):
    t = _time.perf_counter()
    counts = _write_atl07(spec, path, extent, layout, chunk)
    took = round(_time.perf_counter() - t, 2)
    _progress(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB, {sum(counts.values())} segments in {took} s")
    return counts, took


def _l2p_job(title: str, t_start: datetime, day_night: str, path: Path, seed: int):
    t = _time.perf_counter()
    _, _, storage = _write_l2p(title, t_start, day_night, path, seed=seed)
    took = round(_time.perf_counter() - t, 2)
    total = sum(storage.values())
    mix = {k: round(100 * v / total, 1) for k, v in storage.items() if v > 0.01 * total}
    _progress(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB ({mix}) in {took} s")
    return storage, took


def _reuse_l2p(cache_dir: Path, extent: str, folder: Path) -> bool:
    """Hard-link the L2P files of another scene in the cache (another extent, ATL07 layout or
    scene version: the L2P files are identical in all of them) if one exists."""
    for src in sorted(Path(cache_dir).glob("scene-*/podaac")):
        if src.parent.name.startswith(".") or not (src.parent / "scene.json").is_file():
            continue
        names = [f"{title}.nc" for title, _ in L2P_RECORDED]
        if all((src / n).is_file() for n in names):
            for n in names:
                try:
                    os.link(src / n, folder / n)
                except OSError:
                    shutil.copy2(src / n, folder / n)
            return True
    return False


def _build(cache_dir: Path, root: Path, extent: str, layout: str = "v007", chunk: int = ATL07_CHUNK) -> Scene:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    tmp = Path(tempfile.mkdtemp(prefix=".scene-", dir=cache_dir))
    t0 = _time.perf_counter()
    timings: dict[str, float] = {}
    segments: dict[str, dict[str, int]] = {}
    l2p_storage: dict[str, dict[str, int]] = {}
    try:
        (tmp / "nsidc").mkdir()
        (tmp / "podaac").mkdir()
        reused = _reuse_l2p(cache_dir, extent, tmp / "podaac")
        _progress(f"building the seed scene ({extent} extent) in {root}: 2 ATL07 granules"
                  + (", 14 L2P granules reused" if reused else ", 14 L2P granules") + " ...")
        # every file has its own seed, so the result does not depend on the worker count;
        # spawn, not fork: the caller may be running server threads
        workers = max(1, min(2, os.cpu_count() or 1))
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            atl07_jobs = [(spec, pool.submit(_atl07_job, spec, tmp / "nsidc" / _atl07_name(spec, layout), extent,
                                             layout, chunk))
                          for spec in ATL07_SPECS]
            l2p_jobs = []
            for i, (title, _) in enumerate(L2P_RECORDED):
                t_start = datetime.strptime(title[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
                day_night = "Night" if "-N-" in title else "Day"
                path = tmp / "podaac" / f"{title}.nc"
                job = None if reused else pool.submit(_l2p_job, title, t_start, day_night, path, 100 + i)
                l2p_jobs.append((i, title, path, job))
            granules: list[SceneGranule] = []
            for spec, job in atl07_jobs:
                counts, took = job.result()
                path = tmp / "nsidc" / _atl07_name(spec, layout)
                timings[path.name] = took
                segments[path.name] = counts
                granules.append(_atl07_granule(spec, extent, path, path.stat().st_size, layout))
            for i, title, path, job in l2p_jobs:
                if job is not None:
                    l2p_storage[path.name], timings[path.name] = job.result()
                g = _l2p_granule(i, title, path, path.stat().st_size)
                granules.append(g)
        for g in granules:
            g.md5 = _md5(g.path)
            if g.daac == "podaac":
                g.siblings = _l2p_siblings(g, tmp / "podaac")
        total = round(_time.perf_counter() - t0, 2)
        (tmp / "scene.json").write_text(json.dumps(
            _manifest(granules, tmp, extent, {"atl07_layout": layout, "atl07_chunk": chunk,
                                              "segments": segments, "l2p_storage_bytes": l2p_storage,
                                              "timings_s": timings, "total_s": total}), indent=1, default=str))
        if root.exists():  # force=True: move the old one aside first, then drop it
            old = Path(tempfile.mkdtemp(prefix=".scene-old-", dir=cache_dir))
            os.replace(root, old / "scene")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _progress(f"scene ready in {total:.1f} s")
    return _scene_from_manifest(root)


def describe_scene(root: Path | None = None, *, extent: str = "full") -> Scene:
    """The seed scene's CMR metadata without writing any file (fast; for CMR-only tests).

    Footprints, times and siblings' names are those :func:`build_scene` produces; sizes are the
    real ATL07 sizes and a nominal L2P size (``path`` points where the file would be)."""
    root = Path(root) if root is not None else Path("/nonexistent/scene")
    granules = [_atl07_granule(spec, extent, root / "nsidc" / spec.file_name, spec.size_bytes) for spec in ATL07_SPECS]
    for i, (title, _) in enumerate(L2P_RECORDED):
        g = _l2p_granule(i, title, root / "podaac" / f"{title}.nc", 0)
        g.size_bytes = L2P_NOMINAL_BYTES[g.day_night]
        g.md5 = hashlib.md5(title.encode()).hexdigest()
        key_dir = g.key.rsplit("/", 1)[0]
        g.siblings = [{"name": name, "bucket": PODAAC_PUBLIC_BUCKET, "key": f"{key_dir}/{name}",
                       "path": root / "podaac" / name, "size_bytes": size, "md5": ""}
                      for name, size in ((f"{g.file_name}.md5", 32 + 2 + len(g.file_name) + 1),
                                         (f"{title}.cmr.json", 1200))]
        granules.append(g)
    return Scene(granules=granules, bbox=SEED_BBOX, date=SEED_DATE, root=root, extent=extent)
