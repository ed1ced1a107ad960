"""Nearest *valid* SST pixel for every ATL07 segment, within a radius and a time window.

Unlike ``pyresample.kd_tree.resample_nearest`` (which picks the nearest pixel and only then
looks at its value, so a fill or low-quality pixel can win), every geolocated pixel within the
radius is examined: a segment's k nearest pixels are queried, k growing until the k-th lies
beyond the radius, and the exact great-circle and Δt tests then sort them into valid (finite
SST inside the valid range, quality level ≥ minimum: the nearest of these is the match),
rejected by quality level, outside the valid range and ice-flagged, counted per segment with
the median and standard deviation of the valid SSTs (a box around the pixel, as OBPG's
matchup tools report).

Coordinates are geocentric (x, y, z on a sphere), so the antimeridian and the poles need no
special case; nearest by chord is nearest by great-circle distance, which is what is reported.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from pykdtree.kdtree import KDTree

from core.model import QL_FILL, Matches, SstSwath

EARTH_RADIUS_M = 6371008.8  # IUGG mean radius; distances are great-circle on this sphere
FOOTPRINT = "footprint"  # radius_m mode: each swath's own local pixel size (see footprint_radius_m)
# Farthest a pixel can matter in footprint mode: half the diagonal of the largest L2P pixel
# (MODIS scan edge ~4.8 km across x ~2 km along; VIIRS ~1.6 km), with a wide margin.
FOOTPRINT_READ_RADIUS_M = 5000.0
_K_START = 8  # candidates per segment in the first query (a 1 km radius holds ~3-5 MODIS pixels)
_K_GROWTH = 4
_BATCH = 1 << 18  # segments per k-d tree query batch


def lonlat_to_xyz(lon: np.ndarray, lat: np.ndarray, radius: float = EARTH_RADIUS_M) -> np.ndarray:
    """Geocentric cartesian coordinates (n, 3) float64 of points on the sphere."""
    lon_r = np.radians(np.asarray(lon, dtype=np.float64))
    lat_r = np.radians(np.asarray(lat, dtype=np.float64))
    cos_lat = np.cos(lat_r)
    return np.column_stack((radius * cos_lat * np.cos(lon_r), radius * cos_lat * np.sin(lon_r),
                            radius * np.sin(lat_r)))


def arc_from_chord(chord_m: np.ndarray, radius: float = EARTH_RADIUS_M) -> np.ndarray:
    """Great-circle distance for a chord length (inf, e.g. no k-d tree neighbour, stays inf)."""
    chord = np.asarray(chord_m, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        arc = 2.0 * radius * np.arcsin(np.minimum(chord / (2.0 * radius), 1.0))
    return np.where(np.isfinite(chord), arc, np.inf)


def chord_from_arc(arc_m: float | np.ndarray, radius: float = EARTH_RADIUS_M):
    return 2.0 * radius * np.sin(np.minimum(np.asarray(arc_m, dtype=np.float64), np.pi * radius) / (2.0 * radius))


def haversine_m(lon1, lat1, lon2, lat2, radius: float = EARTH_RADIUS_M) -> np.ndarray:
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (lon1, lat1, lon2, lat2))
    a = np.sin((lat2 - lat1) / 2.0) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2.0) ** 2
    return 2.0 * radius * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def valid_pixel_mask(swath: SstSwath, min_quality_level: int | None) -> np.ndarray:
    """Pixels allowed to match: finite SST and location, known time, quality ≥ minimum.

    A swath without quality_level cannot be filtered on quality (core.pairing refuses such a
    product unless the request asks for no screening)."""
    ok = np.isfinite(swath.lat) & np.isfinite(swath.lon) & np.isfinite(swath.sst) & ~np.isnat(swath.time)
    if swath.quality_level is not None and min_quality_level is not None:
        ok &= swath.quality_level >= min_quality_level
    return ok


def footprint_radius_m(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Per pixel, half the diagonal of its cell, from the swath's own grid spacing.

    Across-scan spacing is the mean great-circle distance to the left and right neighbours,
    along-track spacing the mean distance to the rows above and below; a point anywhere in a
    cell of those sides is within half its diagonal of the centre. MODIS pixels grow from ~1 km
    at nadir to ~4.8 km across-scan at the swath edge, so this radius grows from ~0.7 km to
    ~2.5 km. Pixels without a neighbour on one axis use the other axis; the rest the median."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    nan_col = np.full((lat.shape[0], 1), np.nan)
    nan_row = np.full((1, lat.shape[1]), np.nan)
    d_col = haversine_m(lon[:, 1:], lat[:, 1:], lon[:, :-1], lat[:, :-1]) if lat.shape[1] > 1 else nan_col[:, :0]
    d_row = haversine_m(lon[1:], lat[1:], lon[:-1], lat[:-1]) if lat.shape[0] > 1 else nan_row[:0]
    across = _mean_of_finite(np.hstack([nan_col, d_col]), np.hstack([d_col, nan_col]))
    along = _mean_of_finite(np.vstack([nan_row, d_row]), np.vstack([d_row, nan_row]))
    across = np.where(np.isfinite(across), across, along)
    along = np.where(np.isfinite(along), along, across)
    radius = 0.5 * np.hypot(across, along)
    located = np.isfinite(lat) & np.isfinite(lon)
    radius[~located] = np.nan
    known = np.isfinite(radius)
    if known.any():
        radius[located & ~known] = np.median(radius[known])
    return radius


def _mean_of_finite(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise mean of the finite ones of a and b; NaN where neither is."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    total = np.where(fa, a, 0.0) + np.where(fb, b, 0.0)
    count = fa.astype(np.int8) + fb
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def colocate(
    segments_lat: np.ndarray,
    segments_lon: np.ndarray,
    segments_time: np.ndarray,
    swath: SstSwath,
    *,
    radius_m: float | str = 1000.0,
    max_dt_s: float = 3 * 3600.0,
    min_quality_level: int | None = 4,
    granule_index: int = 0,
) -> Matches:
    """Per segment, the nearest valid pixel of ``swath`` within ``radius_m`` and ``max_dt_s``,
    and what else lay within that radius and Δt (valid, rejected by quality, outside the valid
    range, ice-flagged; median and standard deviation of the valid SSTs).

    ``radius_m = FOOTPRINT``: each segment's radius is the footprint radius
    (:func:`footprint_radius_m`) of the pixel nearest to it, valid or not."""
    seg_lat = np.asarray(segments_lat, dtype=np.float64).ravel()
    seg_lon = np.asarray(segments_lon, dtype=np.float64).ravel()
    seg_t = np.asarray(segments_time).astype("datetime64[ns]").ravel()
    n = seg_lat.shape[0]
    out = Matches.empty(n)
    seg_ok = np.isfinite(seg_lat) & np.isfinite(seg_lon) & ~np.isnat(seg_t)
    geo = (np.isfinite(swath.lat) & np.isfinite(swath.lon)).ravel()
    pix = np.flatnonzero(geo)
    if not seg_ok.any() or pix.size == 0:
        return out
    seg_ns = seg_t.view(np.int64)
    max_dt_ns = int(round(max_dt_s * 1e9))

    # per geolocated pixel: location, time and which of the reported classes it falls in
    p_lat, p_lon = swath.lat.ravel()[pix].astype(np.float64), swath.lon.ravel()[pix].astype(np.float64)
    p_time = swath.time.astype("datetime64[ns]", copy=False).ravel()[pix]
    p_ns = p_time.view(np.int64)
    p_timed = ~np.isnat(p_time)
    p_sst = swath.sst.ravel()[pix].astype(np.float64)
    sst_ok = np.isfinite(p_sst)
    if swath.quality_level is not None and min_quality_level is not None:
        quality_ok = swath.quality_level.ravel()[pix] >= min_quality_level
    else:
        quality_ok = np.ones(pix.size, bool)
    # packed class bits per pixel: 1 valid (may be matched), 2 rejected by quality level,
    # 4 SST outside the valid range, 8 ice bit set
    classes = ((sst_ok & quality_ok).astype(np.uint8)
               | ((sst_ok & ~quality_ok).astype(np.uint8) << 1))
    if swath.sst_out_of_range is not None:
        classes |= swath.sst_out_of_range.ravel()[pix].astype(np.uint8) << 2
    if swath.l2p_flags is not None:
        classes |= swath.ice().ravel()[pix].astype(np.uint8) << 3
    tree = KDTree(lonlat_to_xyz(p_lon, p_lat))

    seg_idx = np.flatnonzero(seg_ok)
    if radius_m == FOOTPRINT:
        fp = footprint_radius_m(swath.lat, swath.lon).ravel()[pix]
        radius = np.full(seg_idx.size, np.nan)
        for b0 in range(0, seg_idx.size, _BATCH):
            part = seg_idx[b0:b0 + _BATCH]
            d, i = tree.query(lonlat_to_xyz(seg_lon[part], seg_lat[part]), k=1,
                              distance_upper_bound=float(chord_from_arc(FOOTPRINT_READ_RADIUS_M)))
            radius[b0:b0 + part.size] = np.where(np.isfinite(d), fp[np.where(np.isfinite(d), i, 0)], np.nan)
    else:
        radius = np.full(seg_idx.size, float(radius_m))

    hood = _Neighbourhood.empty(seg_idx.size)
    # segments in batches: memory for coordinates and candidates stays bounded
    for b0 in range(0, seg_idx.size, _BATCH):
        batch = slice(b0, min(b0 + _BATCH, seg_idx.size))
        s = seg_idx[batch]
        hood.fill(batch, _neighbourhood(tree, pix.size, seg_lon[s], seg_lat[s], seg_ns[s], radius[batch],
                                        p_lon, p_lat, p_ns, p_timed, p_sst, classes, max_dt_ns))

    out.radius_m[seg_idx] = radius
    for k, name in enumerate(Matches.COUNTS):
        getattr(out, name)[seg_idx] = hood.counts[k]
    out.sst_median[seg_idx], out.sst_std[seg_idx] = hood.median, hood.std
    hit = hood.best >= 0
    seg_hit, chosen = seg_idx[hit], hood.best[hit]
    flat = pix[chosen]
    out.sst[seg_hit] = swath.sst.ravel()[flat]
    out.distance_m[seg_hit] = hood.distance[hit]
    out.dt_s[seg_hit] = (p_ns[chosen] - seg_ns[seg_hit]) / 1e9
    nj, ni = np.unravel_index(flat, swath.shape)
    out.pixel_nj[seg_hit] = nj + (swath.rows.start or 0)
    out.pixel_ni[seg_hit] = ni + (swath.cols.start or 0)
    out.quality_level[seg_hit] = swath.quality_level.ravel()[flat] if swath.quality_level is not None else QL_FILL
    if swath.l2p_flags is not None:
        out.l2p_flags[seg_hit] = swath.l2p_flags.ravel()[flat]
        if swath.ice_mask is not None:
            out.ice[seg_hit] = swath.ice().ravel()[flat]
    for name in ("sses_bias", "sses_standard_deviation", "dt_analysis"):
        values = getattr(swath, name)
        if values is not None:
            getattr(out, name)[seg_hit] = values.ravel()[flat]
    out.granule_index[seg_hit] = granule_index
    return out


@dataclass
class _Neighbourhood:
    """Per segment of a batch: nearest valid pixel (index into the geolocated pixels, -1 =
    none), its distance, class counts (valid, quality, range, ice) and valid-SST statistics."""

    best: np.ndarray
    distance: np.ndarray
    counts: np.ndarray  # (5, n) int32: valid, quality, range, ice (within radius and Δt), outside Δt
    median: np.ndarray
    std: np.ndarray

    @classmethod
    def empty(cls, n: int) -> _Neighbourhood:
        return cls(np.full(n, -1, np.int64), np.full(n, np.nan), np.zeros((5, n), np.int32),
                   np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32))

    def fill(self, part, other: _Neighbourhood) -> None:
        self.best[part], self.distance[part], self.counts[:, part] = other.best, other.distance, other.counts
        self.median[part], self.std[part] = other.median, other.std


def _neighbourhood(tree, n_pix, lon, lat, t_ns, radius, p_lon, p_lat, p_ns, p_timed, p_sst, classes,
                   max_dt_ns) -> _Neighbourhood:
    """Every pixel within each segment's radius (k nearest, k grown until the k-th lies beyond
    the radius), then the exact great-circle and Δt tests; candidates come nearest first."""
    res = _Neighbourhood.empty(lon.size)
    # query slightly beyond the radius; the exact great-circle test comes after
    bound = chord_from_arc(np.nan_to_num(radius, nan=0.0)) * (1.0 + 1e-9) + 1e-3
    pending = np.flatnonzero(np.isfinite(radius) & (radius > 0))
    if not pending.size:
        return res
    xyz = lonlat_to_xyz(lon, lat)
    query_bound = float(bound[pending].max())
    k = min(_K_START, n_pix)
    while pending.size:
        dist, idx = tree.query(xyz[pending], k=k, distance_upper_bound=query_bound)
        dist = dist.reshape(pending.size, k)
        idx = idx.reshape(pending.size, k).astype(np.int64)
        found = np.isfinite(dist)
        # the k-th candidate still inside this segment's radius: there may be more
        more = found[:, -1] & (dist[:, -1] <= bound[pending]) & (k < n_pix)
        done = pending[~more]
        if done.size:
            i, f = idx[~more], found[~more]
            safe = np.where(f, i, 0)
            # arc length from the tree's chord (exact on the sphere; haversine only for the match)
            arc = arc_from_chord(np.where(f, dist[~more], np.inf))
            in_space = arc <= radius[done][:, None]
            in_time = p_timed[safe] & (np.abs(p_ns[safe] - t_ns[done][:, None]) <= max_dt_ns)
            near = in_space & in_time
            bits = np.where(near, classes[safe], 0)  # one gather of the packed class bits
            for c in range(4):
                res.counts[c, done] = ((bits >> c) & 1).sum(axis=1)
            res.counts[4, done] = (in_space & ~in_time).sum(axis=1)  # why a segment may have none
            valid = (bits & 1).astype(bool)
            has = valid.any(axis=1)
            first = np.argmax(valid, axis=1)
            chosen = safe[has, first[has]]
            res.best[done[has]] = chosen
            res.distance[done[has]] = haversine_m(lon[done[has]], lat[done[has]], p_lon[chosen], p_lat[chosen])
            if has.any():
                res.median[done[has]], res.std[done[has]] = _median_std(np.where(valid[has], p_sst[safe[has]], np.nan))
        pending = pending[more]
        k = min(k * _K_GROWTH, n_pix)
    return res


def _median_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise median and standard deviation (ddof 0) of the finite values; every row has one.
    (np.nanmedian takes a masked-array path for short rows: far slower.)"""
    ok = np.isfinite(values)
    n = ok.sum(axis=1)
    ordered = np.sort(values, axis=1)  # NaN sorts last
    rows = np.arange(values.shape[0])
    median = 0.5 * (ordered[rows, (n - 1) // 2] + ordered[rows, n // 2])
    mean = np.where(ok, values, 0.0).sum(axis=1) / n
    std = np.sqrt(np.where(ok, (values - mean[:, None]) ** 2, 0.0).sum(axis=1) / n)
    return median, std


def best_of(a: Matches, b: Matches) -> Matches:
    """Merge two results for the same segments: nearest wins, ties go to the smaller |Δt|; a
    match carries its own granule's neighbourhood. Where neither matched, the candidate counts
    add up (what every granule had around the segment) and the larger radius is kept."""
    if len(a) != len(b):
        raise ValueError(f"cannot merge matches of {len(a)} and {len(b)} segments")
    a_m, b_m = a.matched, b.matched
    with np.errstate(invalid="ignore"):
        nearer = b.distance_m < a.distance_m
        tie_earlier = (b.distance_m == a.distance_m) & (np.abs(b.dt_s) < np.abs(a.dt_s))
    take_b = b_m & (~a_m | nearer | tie_earlier)
    neither = ~a_m & ~b_m
    merged = {f.name: np.where(take_b, getattr(b, f.name), getattr(a, f.name)) for f in fields(Matches)}
    for name in Matches.COUNTS:
        merged[name] = np.where(neither, getattr(a, name) + getattr(b, name), merged[name]).astype(np.int32)
    merged["radius_m"] = np.where(neither, np.fmax(a.radius_m, b.radius_m), merged["radius_m"])
    return Matches(**merged)


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
