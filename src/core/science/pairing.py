"""The one colocation core: an ATL07 granule's segments against a set of L2P sources → tracks.

Every entry point (the pipeline's per-date task, the ``colocate files`` command line) calls
:func:`pair_granule`; it owns beam concatenation, the best-of loop across L2P granules, the
quality-screening rule and the split back into one :class:`core.model.Track` per beam. How a
window's bytes are reached (local file, S3 in place, timing, byte counts) stays with the caller,
which reads each L2P granule's window for the segments first (:func:`segment_positions` gives
where they are; ``core.science.l2p.read_l2p``'s latitude-first read, or the pipeline's reads in
place) and hands the windows in as :class:`SstWindow` values (``swath`` None: nothing reaches).
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields

import numpy as np

from core.errors import InputError
from core.model import Atl07Granule, BeamSegments, Matches, SstSource, SstSwath, Track
from core.params import ColocationParams
from core.science.kernel import best_of, colocate
from core.science.l2p import read_l2p

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class SstWindow:
    """One L2P granule as pairing sees it: its name, its collection, and the window of it that
    can reach the segments (None: no pixel can)."""

    name: str
    swath: SstSwath | None
    collection: str | None = None


def segment_positions(granule: Atl07Granule) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude of every segment, beams concatenated: what a window is read for."""
    beams = [b for b in granule.beams if len(b)]
    return _concat(beams, "lat", np.float64), _concat(beams, "lon", np.float64)


def read_local_windows(granule: Atl07Granule, files: Iterable[tuple[str | os.PathLike, str | None]],
                       params: ColocationParams) -> list[SstWindow]:
    """The window of each local L2P file (path, collection) that can reach the granule's segments
    (read_l2p's latitude-first read); a granule without segments reads nothing."""
    lat, lon = segment_positions(granule)
    return [SstWindow(os.path.basename(os.fspath(path)),
                      read_l2p(path, lat=lat, lon=lon, radius_m=params.read_radius_m) if lat.size else None,
                      collection) for path, collection in files]


@dataclass
class Pairing:
    """The result for one ATL07 granule: one track per beam, and what was read."""

    granule: Atl07Granule
    tracks: list[Track]
    sources: list[SstWindow]  # every window handed in; Matches.granule_index indexes this list
    swaths: list[SstSwath] = field(default_factory=list)  # the windows that reached the segments
    warnings: list[str] = field(default_factory=list)  # L2P reader warnings, "<granule>: <text>"

    @property
    def source_names(self) -> list[str]:
        return [s.name for s in self.sources]

    def source_info(self) -> list[SstSource]:
        """Per source (in granule_index order) its collection and, if it was read, the file's
        global and variable attributes: what the product labels platform, sensor, flags with."""
        read = {s.granule: s for s in self.swaths}
        return [SstSource(s.name, s.collection, dict(read[s.name].attrs) if s.name in read else {},
                          dict(read[s.name].variable_attrs) if s.name in read else {}) for s in self.sources]

    @property
    def segments(self) -> int:
        return sum(len(t.segments) for t in self.tracks)

    @property
    def matched(self) -> int:
        return sum(int(t.matches.matched.sum()) for t in self.tracks)

    def matched_sources(self) -> list[str]:
        used = {int(i) for t in self.tracks for i in np.unique(t.matches.granule_index) if i >= 0}
        return sorted(self.sources[i].name for i in used)


def restrict_to_window(granule: Atl07Granule, lo: np.datetime64, hi: np.datetime64) -> Atl07Granule:
    """Keep only segments with lo <= time <= hi (dates of a request never overlap); beams left
    empty are dropped."""
    beams = []
    for beam in granule.beams:
        keep = (beam.time >= lo) & (beam.time <= hi)
        if not keep.all():
            beam = beam.subset(keep)
        if len(beam):
            beams.append(beam)
    granule.beams = beams
    return granule


# GDS 2.0 §7.9 (quality_level): 0 no data, 1 bad, 2 worst, 3 low, 4 acceptable,
# 5 best. Producers write their own flag_meanings (NAVO VIIRS: "not_used not_used not_used cloudy
# probably_cloudy clear"), so the minimum is read in the file's words, not assumed.
ACCEPTABLE_WORDS = ("acceptable", "best", "good", "clear", "excellent", "high")


def quality_meaning(variable_attrs: dict, level: int) -> str | None:
    """The file's own flag_meanings word for quality level ``level`` (None when it declares none)."""
    attrs = variable_attrs.get("quality_level") or {}
    words = str(attrs.get("flag_meanings") or "").split()
    values = attrs.get("flag_values")
    values = list(np.atleast_1d(np.asarray(values)).tolist()) if values is not None else list(range(len(words)))
    return next((w for v, w in zip(values, words, strict=False) if int(v) == level), None)


def screening_warnings(swath: SstSwath, params: ColocationParams) -> list[str]:
    """What the screening does not do as asked, in the file's own terms: a minimum quality level
    whose producer meaning is not acceptable/best (e.g. NAVO's 4 = probably_cloudy), and an
    ice exclusion the file cannot apply (no ice bit in l2p_flags)."""
    out = []
    level = params.min_quality_level
    if level is not None and swath.quality_level is not None:
        word = quality_meaning(swath.variable_attrs, level)
        if word is not None and ("probably" in word.lower() or not any(a in word.lower() for a in ACCEPTABLE_WORDS)):
            out.append(f"min_quality_level {level} means {word!r} in this file's quality_level flag_meanings, "
                       "not GHRSST's 'acceptable' (GDS 2.0): pixels of that level are matched")
    if params.exclude_ice and swath.ice_mask is None:
        out.append("exclude_ice: no l2p_flags ice bit in this file, so no pixel of it could be excluded as ice")
    return out


def _concat(beams: list[BeamSegments], name: str, dtype) -> np.ndarray:
    return np.concatenate([getattr(b, name) for b in beams]).astype(dtype) if beams else np.empty(0, dtype)


def _no_timer(_name: str) -> AbstractContextManager:
    return contextlib.nullcontext()


def pair_granule(
    granule: Atl07Granule,
    windows: Iterable[SstWindow],
    params: ColocationParams,
    *,
    timer: Callable[[str], AbstractContextManager] = _no_timer,
) -> Pairing:
    """Nearest valid pixel across ``windows`` for every segment of ``granule`` (all beams at once:
    one k-d tree per L2P window); the nearest wins across granules (core.science.kernel.best_of)."""
    beams = [b for b in granule.beams if len(b)]
    sources = list(windows)
    lat, lon = segment_positions(granule)
    time = _concat(beams, "time", "datetime64[ns]")
    matches = Matches.empty(lat.size)
    swaths: list[SstSwath] = []
    warnings: list[str] = []
    for index, source in enumerate(sources):
        if not lat.size:
            break
        swath = source.swath
        if swath is None:
            log.info("%s does not reach the segments of %s", source.name, granule.name)
            continue
        if swath.quality_level is None and params.min_quality_level is not None:
            raise InputError(
                f"{source.name} has no quality_level variable, so min_quality_level "
                f"{params.min_quality_level} cannot be applied; request min_quality_level null "
                "(--min-quality-level none) to colocate without quality screening", field="min_quality_level")
        for w in [*swath.warnings, *screening_warnings(swath, params)]:
            if f"{source.name}: {w}" not in warnings:
                warnings.append(f"{source.name}: {w}")
        with timer("colocate"):
            found = colocate(lat, lon, time, swath, radius_m=params.radius_m, max_dt_s=params.max_dt_s,
                             min_quality_level=params.min_quality_level, granule_index=index,
                             exclude_ice=params.exclude_ice)
            matches = best_of(matches, found)
        swaths.append(swath)

    tracks, start = [], 0
    for beam in beams:
        part = slice(start, start + len(beam))
        tracks.append(Track(beam, Matches(**{f.name: getattr(matches, f.name)[part] for f in fields(Matches)})))
        start = part.stop
    return Pairing(granule=granule, tracks=tracks, sources=sources, swaths=swaths, warnings=warnings)


__all__ = ["ColocationParams", "Pairing", "SstWindow", "pair_granule", "read_local_windows", "restrict_to_window",
           "segment_positions"]
