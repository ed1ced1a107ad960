"""Plain data passed between the readers, the colocation kernel and the writers.

Arrays only: no xarray, no files, no AWS. Times are ``datetime64[ns]`` in UTC (NaT = unknown).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import NamedTuple

import numpy as np

BEAMS = ("gt1l", "gt1r", "gt2l", "gt2r", "gt3l", "gt3r")


class BBox(NamedTuple):
    """West, south, east, north in degrees. ``west > east`` crosses the antimeridian."""

    west: float
    south: float
    east: float
    north: float

    @property
    def crosses_antimeridian(self) -> bool:
        return self.west > self.east

    def contains(self, lon: np.ndarray, lat: np.ndarray, margin_deg: float = 0.0) -> np.ndarray:
        lon = ((np.asarray(lon, dtype=np.float64) + 180.0) % 360.0) - 180.0
        lat = np.asarray(lat, dtype=np.float64)
        in_lat = (lat >= self.south - margin_deg) & (lat <= self.north + margin_deg)
        w, e = self.west - margin_deg, self.east + margin_deg
        if self.crosses_antimeridian or e - w >= 360.0:
            in_lon = (lon >= w) | (lon <= e) if e - w < 360.0 else np.ones_like(in_lat)
        else:
            in_lon = (lon >= w) & (lon <= e)
            # margins may push an edge past +/-180
            if w < -180.0:
                in_lon |= lon >= w + 360.0
            if e > 180.0:
                in_lon |= lon <= e - 360.0
        return in_lat & in_lon

    def __str__(self) -> str:  # CMR's bounding_box form
        return ",".join(f"{v:g}" for v in self)


@dataclass
class BeamSegments:
    """One ATL07 beam's sea-ice segments (already cut to the region of interest)."""

    granule: str  # file name of the ATL07 granule
    beam: str  # gt1l ... gt3r
    strength: str  # "strong" | "weak" | "mixed" (yaw flip inside the granule) | "unknown"
    time: np.ndarray  # datetime64[ns] UTC
    lat: np.ndarray  # float64 degrees_north
    lon: np.ndarray  # float64 degrees_east
    height_segment_id: np.ndarray  # int64, -1 where absent
    height: np.ndarray  # float32 metres, NaN = fill
    quality: np.ndarray  # int16 heights/height_segment_quality (1 good, 0 bad), -1 = fill/absent
    segment_type: np.ndarray  # int16, -1 = fill/absent
    # per segment 1 strong, 0 weak, -1 unknown (None: every segment has ``strength``)
    strength_flag: np.ndarray | None = None
    # further ATL07 variables by output name (core.science.atl07.ATL07_FIELDS), and every read variable's
    # attributes as in the granule (flag_values / flag_meanings / flag_masks, units, long_name)
    fields: dict = field(default_factory=dict)
    field_attrs: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.lat.shape[0])

    def strength_per_segment(self) -> np.ndarray:
        if self.strength_flag is not None:
            return self.strength_flag
        code = {"strong": 1, "weak": 0}.get(self.strength, -1)
        return np.full(len(self), code, np.int8)

    def subset(self, keep: np.ndarray) -> BeamSegments:
        """The segments where ``keep`` is True (every per-segment array cut alike)."""
        n = len(self)

        def cut(value):
            if isinstance(value, np.ndarray) and value.shape[:1] == (n,):
                return value[keep]
            if isinstance(value, dict) and value is self.fields:
                return {k: cut(v) for k, v in value.items()}
            return value

        return replace(self, **{f.name: cut(getattr(self, f.name)) for f in fields(self)})


@dataclass
class Atl07Granule:
    name: str
    beams: list[BeamSegments]
    sc_orient: int | None
    attrs: dict = field(default_factory=dict)  # selected global/ancillary metadata (str values)
    warnings: list[str] = field(default_factory=list)


@dataclass
class SstSwath:
    """A window of one GHRSST L2P granule; 2-D arrays share one shape."""

    granule: str  # granule name (file name without directory)
    lat: np.ndarray  # float32/64, NaN = invalid location
    lon: np.ndarray
    sst: np.ndarray  # float32 kelvin, NaN = fill or outside valid_min/valid_max
    time: np.ndarray  # datetime64[ns] per pixel (time + sst_dtime), NaT = fill
    quality_level: np.ndarray | None  # int8 0..5, None when the product has none
    l2p_flags: np.ndarray | None  # int16
    rows: slice = field(default_factory=lambda: slice(None))  # window position in the full swath
    cols: slice = field(default_factory=lambda: slice(None))
    attrs: dict = field(default_factory=dict)  # normalised global attributes
    warnings: list[str] = field(default_factory=list)
    # Single Sensor Error Statistics and the analysis difference (float32 K, NaN = fill); None
    # when the product has no such variable
    sses_bias: np.ndarray | None = None
    sses_standard_deviation: np.ndarray | None = None
    dt_analysis: np.ndarray | None = None
    sst_out_of_range: np.ndarray | None = None  # bool: an SST value outside valid_min/valid_max
    ice_mask: int | None = None  # the l2p_flags bit meaning "ice" (from the file's flag_meanings)
    variable_attrs: dict = field(default_factory=dict)  # {"sst"|"quality_level"|"l2p_flags"|...: attrs}

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.lat.shape)

    def ice(self) -> np.ndarray:
        """bool per pixel: the ice bit of l2p_flags is set (False where unknown)."""
        if self.l2p_flags is None or self.ice_mask is None:
            return np.zeros(self.shape, bool)
        return (self.l2p_flags.astype(np.int32) & int(self.ice_mask) != 0) & (self.l2p_flags != FLAGS_FILL)


QL_FILL = np.int8(-1)
FLAGS_FILL = np.int16(-1)
ICE_FILL = np.int8(-1)


@dataclass
class Matches:
    """Per-segment result of colocation; index -1 / NaN where no valid pixel matched.

    The candidate counts describe every geolocated pixel within the segment's radius and Δt:
    of the matched pixel's granule for a match, summed over granules for a segment without one."""

    sst: np.ndarray  # float32 K
    distance_m: np.ndarray  # float32
    dt_s: np.ndarray  # float64, pixel time minus segment time
    quality_level: np.ndarray  # int8, QL_FILL where none
    l2p_flags: np.ndarray  # int16, FLAGS_FILL where none
    granule_index: np.ndarray  # int32 index into the list of SST granule names, -1 = none
    pixel_nj: np.ndarray  # int32 row of the pixel in the full swath, -1 = none
    pixel_ni: np.ndarray  # int32 column
    sses_bias: np.ndarray  # float32 K, NaN where none
    sses_standard_deviation: np.ndarray  # float32 K
    dt_analysis: np.ndarray  # float32 K
    ice: np.ndarray  # int8 1 = ice bit set, 0 = not, ICE_FILL = unknown / no match
    n_valid: np.ndarray  # int32 valid pixels within radius and Δt (the match is one of them)
    n_rejected_quality: np.ndarray  # int32 SST present, quality level below the minimum
    n_out_of_range: np.ndarray  # int32 SST outside valid_min/valid_max
    n_ice: np.ndarray  # int32 ice bit set (any of the above)
    n_outside_dt: np.ndarray  # int32 geolocated pixels within the radius but outside Δt (or timeless)
    n_excluded_ice: np.ndarray  # int32 would have been valid, but the ice bit is set and ice is excluded
    sst_median: np.ndarray  # float32 K, median of the valid SSTs within radius and Δt
    sst_std: np.ndarray  # float32 K, their standard deviation (ddof 0); NaN with fewer than two
    radius_m: np.ndarray  # float32 radius applied to the segment, NaN where no pixel was near
    pixel_lat: np.ndarray  # float64 centre of the matched pixel, NaN = none
    pixel_lon: np.ndarray

    COUNTS = ("n_valid", "n_rejected_quality", "n_out_of_range", "n_ice", "n_outside_dt", "n_excluded_ice")

    @classmethod
    def empty(cls, n: int) -> Matches:
        nan32 = lambda: np.full(n, np.nan, np.float32)  # noqa: E731
        return cls(
            sst=nan32(),
            distance_m=nan32(),
            dt_s=np.full(n, np.nan, np.float64),
            quality_level=np.full(n, QL_FILL, np.int8),
            l2p_flags=np.full(n, FLAGS_FILL, np.int16),
            granule_index=np.full(n, -1, np.int32),
            pixel_nj=np.full(n, -1, np.int32),
            pixel_ni=np.full(n, -1, np.int32),
            sses_bias=nan32(),
            sses_standard_deviation=nan32(),
            dt_analysis=nan32(),
            ice=np.full(n, ICE_FILL, np.int8),
            **{name: np.zeros(n, np.int32) for name in cls.COUNTS},
            sst_median=nan32(),
            sst_std=nan32(),
            radius_m=nan32(),
            pixel_lat=np.full(n, np.nan),
            pixel_lon=np.full(n, np.nan),
        )

    @property
    def matched(self) -> np.ndarray:
        return self.granule_index >= 0

    def __len__(self) -> int:
        return int(self.sst.shape[0])


@dataclass
class Track:
    """A beam and its matches: one ``trajectory`` in the output product."""

    segments: BeamSegments
    matches: Matches


@dataclass
class SstSource:
    """What the product says about one L2P input granule (``Matches.granule_index`` order)."""

    name: str  # granule file name
    collection: str | None = None  # the request's collection it was found in (concept id / short name)
    attrs: dict = field(default_factory=dict)  # the file's global attributes (platform, sensor, id...)
    variable_attrs: dict = field(default_factory=dict)  # SstSwath.variable_attrs, when it was read
