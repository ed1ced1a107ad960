"""Nearest *valid* SST pixel for every ATL07 segment, within a radius and a time window.

Unlike ``pyresample.kd_tree.resample_nearest`` (which picks the nearest pixel and only then
looks at its value, so a fill or low-quality pixel can win), the k-d tree here is built only
over pixels that pass every test (finite SST and location, quality level, time span), and the
Δt bound is enforced exactly: each segment takes its nearest candidates in order and keeps the
first one inside ``max_dt_s``; segments whose k candidates all fail Δt are queried again with a
larger k until a candidate passes or the radius is exhausted.

Coordinates are geocentric (x, y, z on a sphere), so the antimeridian and the poles need no
special case; nearest by chord is nearest by great-circle distance, which is what is reported.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pykdtree.kdtree import KDTree

from .model import FLAGS_FILL, QL_FILL, Matches, SstSwath

EARTH_RADIUS_M = 6371008.8  # IUGG mean radius; distances are great-circle on this sphere
_K_GROWTH = 8
_BATCH = 1 << 18  # segments per k-d tree query batch


def lonlat_to_xyz(lon: np.ndarray, lat: np.ndarray, radius: float = EARTH_RADIUS_M) -> np.ndarray:
    """Geocentric cartesian coordinates (n, 3) float64 of points on the sphere."""
    lon_r = np.radians(np.asarray(lon, dtype=np.float64))
    lat_r = np.radians(np.asarray(lat, dtype=np.float64))
    cos_lat = np.cos(lat_r)
    return np.column_stack((radius * cos_lat * np.cos(lon_r), radius * cos_lat * np.sin(lon_r),
                            radius * np.sin(lat_r)))


def chord_from_arc(arc_m: float | np.ndarray, radius: float = EARTH_RADIUS_M):
    return 2.0 * radius * np.sin(np.minimum(np.asarray(arc_m, dtype=np.float64), np.pi * radius) / (2.0 * radius))


def haversine_m(lon1, lat1, lon2, lat2, radius: float = EARTH_RADIUS_M) -> np.ndarray:
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (lon1, lat1, lon2, lat2))
    a = np.sin((lat2 - lat1) / 2.0) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2.0) ** 2
    return 2.0 * radius * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def valid_pixel_mask(swath: SstSwath, min_quality_level: int | None) -> np.ndarray:
    """Pixels allowed to match: finite SST and location, known time, quality ≥ minimum.

    A swath without quality_level cannot be filtered on quality (see core.l2p)."""
    ok = np.isfinite(swath.lat) & np.isfinite(swath.lon) & np.isfinite(swath.sst) & ~np.isnat(swath.time)
    if swath.quality_level is not None and min_quality_level is not None:
        ok &= swath.quality_level >= min_quality_level
    return ok


def colocate(
    segments_lat: np.ndarray,
    segments_lon: np.ndarray,
    segments_time: np.ndarray,
    swath: SstSwath,
    *,
    radius_m: float = 1000.0,
    max_dt_s: float = 3 * 3600.0,
    min_quality_level: int | None = 4,
    granule_index: int = 0,
) -> Matches:
    """Per segment, the nearest valid pixel of ``swath`` within ``radius_m`` and ``max_dt_s``."""
    seg_lat = np.asarray(segments_lat, dtype=np.float64).ravel()
    seg_lon = np.asarray(segments_lon, dtype=np.float64).ravel()
    seg_t = np.asarray(segments_time).astype("datetime64[ns]").ravel()
    n = seg_lat.shape[0]
    out = Matches.empty(n)
    seg_ok = np.isfinite(seg_lat) & np.isfinite(seg_lon) & ~np.isnat(seg_t)
    if not seg_ok.any():
        return out
    seg_ns = seg_t.view(np.int64)
    max_dt_ns = int(round(max_dt_s * 1e9))

    valid = valid_pixel_mask(swath, min_quality_level)
    pix_ns_all = swath.time.astype("datetime64[ns]", copy=False).view(np.int64)
    # pixels outside the segments' time span (± max_dt) can never match
    valid &= (pix_ns_all >= seg_ns[seg_ok].min() - max_dt_ns) & (pix_ns_all <= seg_ns[seg_ok].max() + max_dt_ns)
    pix = np.flatnonzero(valid.ravel())
    if pix.size == 0:
        return out
    p_lat, p_lon = swath.lat.ravel()[pix], swath.lon.ravel()[pix]
    p_ns = pix_ns_all.ravel()[pix]
    tree = KDTree(lonlat_to_xyz(p_lon, p_lat))
    # query slightly beyond the radius; the exact great-circle test comes after
    bound = float(chord_from_arc(radius_m)) * (1.0 + 1e-9) + 1e-3

    seg_idx = np.flatnonzero(seg_ok)
    best = np.full(seg_idx.size, -1, dtype=np.int64)  # index into pix
    # segments in batches: memory for coordinates and candidates stays bounded
    for b0 in range(0, seg_idx.size, _BATCH):
        batch = np.arange(b0, min(b0 + _BATCH, seg_idx.size))
        best[batch] = _nearest_in_time(tree, pix.size, p_ns, seg_lon[seg_idx[batch]], seg_lat[seg_idx[batch]],
                                       seg_ns[seg_idx[batch]], bound, max_dt_ns)

    hit = best >= 0
    seg_hit = seg_idx[hit]
    chosen = best[hit]
    dist_m = haversine_m(seg_lon[seg_hit], seg_lat[seg_hit], p_lon[chosen], p_lat[chosen])
    inside = dist_m <= radius_m
    seg_hit, chosen, dist_m = seg_hit[inside], chosen[inside], dist_m[inside]
    flat = pix[chosen]
    out.sst[seg_hit] = swath.sst.ravel()[flat]
    out.distance_m[seg_hit] = dist_m
    out.dt_s[seg_hit] = (p_ns[chosen] - seg_ns[seg_hit]) / 1e9
    if swath.quality_level is not None:
        out.quality_level[seg_hit] = swath.quality_level.ravel()[flat]
    else:
        out.quality_level[seg_hit] = QL_FILL
    if swath.l2p_flags is not None:
        out.l2p_flags[seg_hit] = swath.l2p_flags.ravel()[flat]
    else:
        out.l2p_flags[seg_hit] = FLAGS_FILL
    out.granule_index[seg_hit] = granule_index
    return out


def _nearest_in_time(tree, n_pix, p_ns, lon, lat, t_ns, bound, max_dt_ns) -> np.ndarray:
    """Index of the nearest pixel within ``bound`` (chord) and ``max_dt_ns``, -1 if none."""
    xyz = lonlat_to_xyz(lon, lat)
    best = np.full(lon.size, -1, dtype=np.int64)
    pending = np.arange(lon.size)
    k = 1
    while pending.size:
        k = min(k, n_pix)
        dist, idx = tree.query(xyz[pending], k=k, distance_upper_bound=bound)
        dist = dist.reshape(pending.size, k)
        idx = idx.reshape(pending.size, k).astype(np.int64)
        found = np.isfinite(dist)
        safe = np.where(found, idx, 0)
        passing = found & (np.abs(p_ns[safe] - t_ns[pending][:, None]) <= max_dt_ns)
        has = passing.any(axis=1)
        first = np.argmax(passing, axis=1)
        best[pending[has]] = safe[has, first[has]]
        # all k candidates inside the radius but none inside Δt: there may be more further out
        more = ~has & found[:, -1] & (k < n_pix)
        pending = pending[more]
        k *= _K_GROWTH
    return best


def best_of(a: Matches, b: Matches) -> Matches:
    """Merge two results for the same segments: nearest wins, ties go to the smaller |Δt|."""
    if len(a) != len(b):
        raise ValueError(f"cannot merge matches of {len(a)} and {len(b)} segments")
    a_m, b_m = a.matched, b.matched
    with np.errstate(invalid="ignore"):
        nearer = b.distance_m < a.distance_m
        tie_earlier = (b.distance_m == a.distance_m) & (np.abs(b.dt_s) < np.abs(a.dt_s))
    take_b = b_m & (~a_m | nearer | tie_earlier)
    return Matches(**{
        name: np.where(take_b, getattr(b, name), getattr(a, name))
        for name in ("sst", "distance_m", "dt_s", "quality_level", "l2p_flags", "granule_index")
    })


def colocate_swaths(
    segments_lat: np.ndarray,
    segments_lon: np.ndarray,
    segments_time: np.ndarray,
    swaths: Sequence[SstSwath | None],
    **kwargs,
) -> Matches:
    """Colocate against several granules; ``granule_index`` is the position in ``swaths``
    (None entries, e.g. granules that do not reach the segments, are skipped)."""
    result = Matches.empty(np.size(segments_lat))
    for i, swath in enumerate(swaths):
        if swath is None:
            continue
        result = best_of(result, colocate(segments_lat, segments_lon, segments_time, swath,
                                          granule_index=i, **kwargs))
    return result
