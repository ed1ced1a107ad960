"""Nearest *valid* SST pixel for every ATL07 segment, within a radius and a time window.

Unlike ``pyresample.kd_tree.resample_nearest`` (which picks the nearest pixel and only then
looks at its value, so a fill or low-quality pixel can win), every geolocated pixel within the
radius is examined, and exact float64 great-circle and Δt tests sort them into valid (finite
SST inside the valid range, quality level ≥ minimum: the nearest of these is the match, an
exact tie going to the smaller |Δt|), rejected by quality level, outside the valid range and
ice-flagged, counted per segment with the median and standard deviation of the valid SSTs (a
box around the pixel, as OBPG's matchup tools report).

How, cheaply: blocks of the pixel grid that no segment can reach are dropped first (float32
bounding boxes, with slack for its rounding); consecutive segments (metres apart along a
beam) sharing a cube of 0.3 × the radius make one k-d tree query for every pixel within the
radius plus the cube's half-diagonal (a superset, by the triangle inequality); each segment's
(segment, candidate) pairs then get the exact tests, and per-segment statistics come from
vectorised group reductions, not Python loops.

Coordinates are geocentric (x, y, z on a sphere), so the antimeridian and the poles need no
special case; nearest by chord is nearest by great-circle distance, which is what is reported.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from pykdtree.kdtree import KDTree

from core.model import QL_FILL, Matches, SstSwath
from core.params import FOOTPRINT, FOOTPRINT_READ_RADIUS_M

EARTH_RADIUS_M = 6371008.8  # IUGG mean radius; distances are great-circle on this sphere
_K_START = 8  # candidates per cube in the first query (a 1 km radius holds ~3-5 MODIS pixels)
_K_GROWTH = 4
_BATCH = 1 << 18  # segments per k-d tree query batch (footprint radius)
_PAIRS = 1 << 19  # (segment, candidate pixel) pairs examined at a time (~40 MB of temporaries)
_CELL_FRACTION = 0.3  # cube side / radius: fewer queries vs more pairs (fastest of 0.1-1 on the bench)
_CELL_MIN_M = 20.0  # smallest cube side: >= 10 m keeps cube indices within CellRuns' 21-bit fields
_BLOCK = 16  # pixels per side of the grid blocks that are kept or skipped whole
_F32_SLACK_M = 50.0  # > float32 rounding of geocentric coordinates (~1 m at 6.4e6 m)
_EDGE_M = 1e-4  # chords this close to the radius's chord get the exact great-circle test


def lonlat_to_xyz(lon: np.ndarray, lat: np.ndarray, radius: float = EARTH_RADIUS_M, dtype=np.float64) -> np.ndarray:
    """Geocentric cartesian coordinates (n, 3) of points on the sphere (float64 unless asked)."""
    lon = np.asarray(lon, dtype=dtype).ravel()
    out = np.empty((lon.size, 3), dtype)
    _fill_xyz(lon, np.asarray(lat, dtype=dtype).ravel(), out[:, 0], out[:, 1], out[:, 2], radius)
    return out


def _fill_xyz(lon, lat, x, y, z, radius: float = EARTH_RADIUS_M) -> None:
    """Write geocentric x, y, z of lon/lat (degrees, of the outputs' dtype) into x, y, z."""
    # x * (pi / 180) is what np.radians computes, but vectorised for float32 too
    to_rad = lon.dtype.type(np.pi / 180.0)
    lon_r, lat_r = lon * to_rad, lat * to_rad
    scaled_cos_lat = np.multiply(np.cos(lat_r), lon.dtype.type(radius))
    np.multiply(scaled_cos_lat, np.cos(lon_r), out=x)
    np.multiply(scaled_cos_lat, np.sin(lon_r), out=y)
    np.multiply(np.sin(lat_r), lon.dtype.type(radius), out=z)


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
    exclude_ice: bool = False,
) -> Matches:
    """Per segment, the nearest valid pixel of ``swath`` within ``radius_m`` and ``max_dt_s``,
    and what else lay within that radius and Δt (valid, rejected by quality, outside the valid
    range, ice-flagged; median and standard deviation of the valid SSTs).

    ``exclude_ice``: a pixel whose L2P ice bit is set is not valid (counted in n_excluded_ice).
    ``radius_m = FOOTPRINT``: each segment's radius is the footprint radius
    (:func:`footprint_radius_m`) of the pixel nearest to it, valid or not."""
    seg_lat = np.asarray(segments_lat, dtype=np.float64).ravel()
    seg_lon = np.asarray(segments_lon, dtype=np.float64).ravel()
    seg_t = np.asarray(segments_time).astype("datetime64[ns]").ravel()
    n = seg_lat.shape[0]
    out = Matches.empty(n)
    seg_ok = np.isfinite(seg_lat) & np.isfinite(seg_lon) & ~np.isnat(seg_t)
    geo = (np.isfinite(swath.lat) & np.isfinite(swath.lon)).ravel()
    if not seg_ok.any() or not geo.any():
        return out
    seg_ns = seg_t.view(np.int64)
    max_dt_ns = int(round(max_dt_s * 1e9))
    seg_idx = np.flatnonzero(seg_ok)
    s_xyz = lonlat_to_xyz(seg_lon[seg_idx], seg_lat[seg_idx])
    footprint = isinstance(radius_m, str) and radius_m == FOOTPRINT
    if footprint:
        fp_all = footprint_radius_m(swath.lat, swath.lon).ravel()
        # the nearest pixel is looked for this far; a segment's radius may be its pixel's, larger
        reach_m = float(np.max(fp_all, initial=FOOTPRINT_READ_RADIUS_M, where=np.isfinite(fp_all)))
    else:
        reach_m = max(float(radius_m), 0.0)
    # runs of consecutive segments sharing a small cube stand for them in the k-d tree queries
    # (ATL07 segments lie metres apart, a cube of 0.3 x the radius holds dozens)
    cells = CellRuns(s_xyz, _CELL_FRACTION * reach_m)
    # only pixels of grid blocks that can reach a segment enter the tree
    pix = np.flatnonzero(geo & reachable_blocks(swath.lat, swath.lon, cells.centres,
                                                 float(chord_from_arc(reach_m)) + cells.half_diagonal).ravel())
    radius = np.full(seg_idx.size, np.nan if footprint else float(radius_m))
    if not footprint:
        out.radius_m[seg_idx] = radius
    if pix.size == 0:
        return out

    # per candidate pixel: time and which of the reported classes it falls in
    p_time = swath.time.astype("datetime64[ns]", copy=False).ravel()[pix]
    p_ns = p_time.view(np.int64)
    p_sst = swath.sst.ravel()[pix].astype(np.float64)
    classes = _pixel_classes(swath, pix, p_sst, min_quality_level, exclude_ice)
    if not footprint:  # (the footprint radius comes from the nearest pixel of any kind)
        # a pixel of no class (a fill) within Δt of every segment counts nowhere: leave it out
        t_lo, t_hi = seg_ns[seg_idx].min(), seg_ns[seg_idx].max()
        inert = ((classes == 0) & ~np.isnat(p_time)
                 & (np.abs(p_ns - t_lo) <= max_dt_ns) & (np.abs(p_ns - t_hi) <= max_dt_ns))
        if inert.any():
            keep = ~inert
            pix, p_time, p_ns, p_sst, classes = pix[keep], p_time[keep], p_ns[keep], p_sst[keep], classes[keep]
            if pix.size == 0:
                return out
    p_lat, p_lon = swath.lat.ravel()[pix].astype(np.float64), swath.lon.ravel()[pix].astype(np.float64)
    p_xyz = lonlat_to_xyz(p_lon, p_lat)
    tree = KDTree(p_xyz)

    if footprint:
        fp = fp_all[pix]
        for b0 in range(0, seg_idx.size, _BATCH):
            d, i = tree.query(s_xyz[b0:b0 + _BATCH], k=1,
                              distance_upper_bound=float(chord_from_arc(FOOTPRINT_READ_RADIUS_M)))
            radius[b0:b0 + d.size] = np.where(np.isfinite(d), fp[np.where(np.isfinite(d), i, 0)], np.nan)
        out.radius_m[seg_idx] = radius

    hood = _neighbourhood(tree, cells, s_xyz, seg_ns[seg_idx], radius, p_xyz, p_ns, ~np.isnat(p_time), p_sst,
                          classes, max_dt_ns)
    for k, name in enumerate(Matches.COUNTS):
        getattr(out, name)[seg_idx] = hood.counts[k]
    out.sst_median[seg_idx], out.sst_std[seg_idx] = hood.median, hood.std
    hit = hood.best >= 0
    _record_matches(out, swath, seg_idx[hit], pix[hood.best[hit]], hood.distance[hit],
                    (p_ns[hood.best[hit]] - seg_ns[seg_idx[hit]]) / 1e9, granule_index)
    return out


def _pixel_classes(swath: SstSwath, pix: np.ndarray, p_sst: np.ndarray, min_quality_level: int | None,
                   exclude_ice: bool = False) -> np.ndarray:
    """Packed class bits per candidate pixel: 1 valid (may be matched), 2 rejected by quality
    level, 4 SST outside the valid range, 8 ice bit set, 16 excluded as ice (would be valid)."""
    sst_ok = np.isfinite(p_sst)
    if swath.quality_level is not None and min_quality_level is not None:
        quality_ok = swath.quality_level.ravel()[pix] >= min_quality_level
    else:
        quality_ok = np.ones(pix.size, bool)
    classes = ((sst_ok & quality_ok).astype(np.uint8)
               | ((sst_ok & ~quality_ok).astype(np.uint8) << 1))
    if swath.sst_out_of_range is not None:
        classes |= swath.sst_out_of_range.ravel()[pix].astype(np.uint8) << 2
    if swath.l2p_flags is not None:
        ice = swath.ice().ravel()[pix]
        classes |= ice.astype(np.uint8) << 3
        if exclude_ice:  # an ice-flagged pixel is ineligible like a failed quality level
            excluded = ice & (classes & 1).astype(bool)
            classes[excluded] = (classes[excluded] & ~np.uint8(1)) | np.uint8(16)
    return classes


def _record_matches(out: Matches, swath: SstSwath, seg_hit: np.ndarray, flat: np.ndarray, distance: np.ndarray,
                    dt_s: np.ndarray, granule_index: int) -> None:
    """Write each matched segment's pixel (``flat``: its index in the window) into ``out``."""
    out.sst[seg_hit] = swath.sst.ravel()[flat]
    out.distance_m[seg_hit] = distance
    out.dt_s[seg_hit] = dt_s
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
    out.pixel_lat[seg_hit] = swath.lat.ravel()[flat]
    out.pixel_lon[seg_hit] = swath.lon.ravel()[flat]


class CellRuns:
    """Points grouped into runs of consecutive points in the same cube of side ``cell`` (m):
    ``run`` per point, and per run the cube's centre, which every point of the run lies within
    ``half_diagonal`` of. A cube met again later starts a new run (harmless: one query more)."""

    def __init__(self, xyz: np.ndarray, cell: float):
        cell = max(float(cell), _CELL_MIN_M)
        ijk = np.floor(xyz / cell)
        # one int64 key per cube (|index| < 2**20 for cell >= 10 m): 1-D comparisons are fast
        k = ijk.astype(np.int64) + (1 << 20)
        key = (k[:, 0] << 42) | (k[:, 1] << 21) | k[:, 2]
        new = np.ones(key.size, bool)
        np.not_equal(key[1:], key[:-1], out=new[1:])
        self.run = np.cumsum(new) - 1
        self.centres = (ijk[new] + 0.5) * cell
        self.half_diagonal = cell * np.sqrt(3.0) / 2.0 + 1e-3  # + rounding of floor / centre


def reachable_blocks(lat: np.ndarray, lon: np.ndarray, centres: np.ndarray, reach: float) -> np.ndarray:
    """bool per pixel of the grid: its block of ``_BLOCK`` × ``_BLOCK`` pixels may hold a pixel
    within chord ``reach`` (m) of a centre. Blocks are bounded by boxes of their pixels'
    geocentric coordinates in float32 (fast; ``_F32_SLACK_M`` covers its rounding), so whole
    swaths far from the segments cost one cheap pass."""
    rows, cols = lat.shape
    nbr, nbc = -(-rows // _BLOCK), -(-cols // _BLOCK)
    planes = np.empty((3, nbr * _BLOCK, nbc * _BLOCK), np.float32)
    planes[:, rows:], planes[:, :rows, cols:] = np.nan, np.nan
    with np.errstate(over="ignore", invalid="ignore"):  # nonsense coordinates become NaN, not warnings
        _fill_xyz(np.asarray(lon, np.float32), np.asarray(lat, np.float32), *planes[:, :rows, :cols])
    blocks = planes.reshape(3, nbr, _BLOCK, nbc * _BLOCK)

    def bound(extreme):  # fmin/fmax skip NaN: pixels without a location do not widen a block
        # rows of a block first (contiguous along columns: vectorised), then its columns
        return extreme.reduce(extreme.reduce(blocks, axis=2).reshape(3, nbr, nbc, _BLOCK), axis=3)

    lo, hi = (np.moveaxis(bound(f), 0, -1).astype(np.float64) for f in (np.fmin, np.fmax))
    half = np.linalg.norm(hi - lo, axis=-1) / 2.0 + _F32_SLACK_M
    located = np.isfinite(half)
    hit = np.zeros((nbr, nbc), bool)
    if located.any() and centres.shape[0]:
        limit = half[located] + reach
        d, _ = KDTree(centres).query(((lo + hi) / 2.0)[located], k=1, distance_upper_bound=float(limit.max()))
        hit[located] = d <= limit
    return np.repeat(np.repeat(hit, _BLOCK, axis=0), _BLOCK, axis=1)[:rows, :cols]


@dataclass
class _Neighbourhood:
    """Per segment: nearest valid pixel (index into the candidate pixels, -1 = none), class
    counts (valid, quality, range, ice, outside Δt) and valid-SST statistics."""

    best: np.ndarray
    distance: np.ndarray  # m, great-circle, from the exact float64 chord
    counts: np.ndarray  # (6, n) int32: valid, quality, range, ice (within radius and Δt), outside Δt, excluded ice
    median: np.ndarray
    std: np.ndarray

    @classmethod
    def empty(cls, n: int) -> _Neighbourhood:
        return cls(np.full(n, -1, np.int64), np.full(n, np.nan), np.zeros((6, n), np.int32),
                   np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32))


def _neighbourhood(tree, cells: CellRuns, s_xyz, t_ns, radius, p_xyz, p_ns, p_timed, p_sst, classes,
                   max_dt_ns) -> _Neighbourhood:
    """Every pixel within each segment's radius: the pixels within radius + half a cube's
    diagonal of its run's cube centre are its candidates (triangle inequality), then exact
    float64 chord tests per (segment, candidate) pair, and per segment counts, the nearest
    valid pixel (a tie goes to the smaller |Δt|) and the valid SSTs' median and std."""
    res = _Neighbourhood.empty(s_xyz.shape[0])
    todo = np.isfinite(radius) & (radius > 0)
    if not todo.any():
        return res
    reach = float(chord_from_arc(radius[todo].max())) + cells.half_diagonal
    ptr, cand = _candidates(tree, cells.centres, reach)
    n_cand = np.where(todo, np.diff(ptr)[cells.run], 0)
    seg = np.flatnonzero(n_cand)
    if not seg.size:
        return res
    n_cand = n_cand[seg]
    first_cand = ptr[cells.run[seg]]
    uniform = bool(np.all(radius[seg] == radius[seg[0]]))  # one radius: no per-pair gather
    bound = chord_from_arc(radius[seg])
    ends = np.cumsum(n_cand)
    # planar coordinates: gathers of 1-D arrays are several times faster than of (n, 3) rows
    p_planes, s_planes = np.ascontiguousarray(p_xyz.T), np.ascontiguousarray(s_xyz[seg].T)
    b0 = 0
    # segments in batches of about _PAIRS pairs: memory stays bounded
    while b0 < seg.size:
        b1 = max(int(np.searchsorted(ends, (ends[b0 - 1] if b0 else 0) + _PAIRS, "right")), b0 + 1)
        cnt = n_cand[b0:b1]
        local = np.repeat(np.arange(b1 - b0), cnt)
        start = np.cumsum(cnt) - cnt
        pix = cand[np.arange(local.size) + np.repeat(first_cand[b0:b1] - start, cnt)]
        s = seg[b0:b1]
        chord = np.zeros(pix.size)
        for p_c, s_c in zip(p_planes, s_planes, strict=True):
            d = p_c[pix] - np.repeat(s_c[b0:b1], cnt)
            chord += d * d
        np.sqrt(chord, out=chord)
        limit = bound[b0] if uniform else bound[b0:b1][local]
        inside = chord <= limit
        # the exact great-circle test where chord and radius round alike
        edge = np.flatnonzero(np.abs(chord - limit) <= _EDGE_M)
        inside[edge] = arc_from_chord(chord[edge]) <= radius[s][local[edge]]
        keep = np.flatnonzero(inside)
        local, pix, chord = local[keep], pix[keep], chord[keep]
        dt = np.abs(p_ns[pix] - t_ns[s][local])
        in_time = p_timed[pix] & (dt <= max_dt_ns)
        bits = np.where(in_time, classes[pix], 0)
        for c in range(4):
            res.counts[c, s] = np.bincount(local, weights=(bits >> c) & 1, minlength=s.size)
        res.counts[4, s] = np.bincount(local, weights=~in_time, minlength=s.size)  # why a segment may have none
        res.counts[5, s] = np.bincount(local, weights=(bits >> 4) & 1, minlength=s.size)
        v = np.flatnonzero(bits & 1)
        if v.size:
            lv, pv, cv, dv = local[v], pix[v], chord[v], dt[v]
            group_start = np.flatnonzero(np.r_[True, lv[1:] != lv[:-1]])
            group = np.cumsum(np.r_[True, lv[1:] != lv[:-1]]) - 1
            nearest = cv == np.minimum.reduceat(cv, group_start)[group]
            dv_near = np.where(nearest, dv, np.iinfo(np.int64).max)
            win = np.flatnonzero(nearest & (dv == np.minimum.reduceat(dv_near, group_start)[group]))
            win = win[np.r_[True, group[win][1:] != group[win][:-1]]]
            has = s[lv[group_start]]
            res.best[has] = pv[win]
            res.distance[has] = arc_from_chord(cv[win])
            res.median[has], res.std[has] = _median_std(p_sst[pv], group_start)
        b0 = b1
    return res


def _candidates(tree, centres: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixels within chord ``reach`` of each centre, nearest first: (ptr, pixel indices) with
    centre i's at ``[ptr[i]:ptr[i + 1]]``; k grows until the k-th lies beyond ``reach``."""
    n_pix = tree.n
    counts = np.zeros(centres.shape[0], np.int64)
    owners, found_pix = [], []
    pending = np.arange(centres.shape[0])
    k = min(_K_START, n_pix)
    while pending.size:
        dist, idx = tree.query(centres[pending], k=k, distance_upper_bound=reach)
        dist, idx = dist.reshape(pending.size, k), idx.reshape(pending.size, k)
        found = np.isfinite(dist)
        more = found[:, -1] & (k < n_pix)
        done = ~more
        n_found = found[done].sum(axis=1)
        counts[pending[done]] = n_found
        owners.append(np.repeat(pending[done], n_found))
        found_pix.append(idx[done][found[done]].astype(np.int64))
        pending = pending[more]
        k = min(k * _K_GROWTH, n_pix)
    order = np.argsort(np.concatenate(owners), kind="stable")
    return np.r_[0, np.cumsum(counts)], np.concatenate(found_pix)[order]


def _median_std(values: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and standard deviation (ddof 0) of each group ``values[starts[i]:starts[i + 1]]``
    (the last group runs to the end; none is empty). Groups of one size are sorted together.
    The spread of a single value is undefined: NaN where a group has fewer than two."""
    size = np.diff(np.r_[starts, values.size])
    group = np.repeat(np.arange(size.size), size)
    mean = np.add.reduceat(values, starts) / size
    std = np.sqrt(np.add.reduceat((values - mean[group]) ** 2, starts) / size)
    std[size < 2] = np.nan
    median = np.empty(size.size)
    for m in np.unique(size):
        g = np.flatnonzero(size == m)
        ordered = np.sort(values[starts[g][:, None] + np.arange(m)], axis=1)
        median[g] = 0.5 * (ordered[:, (m - 1) // 2] + ordered[:, m // 2])
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
