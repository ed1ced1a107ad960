"""How segments and pixels pair: the science parameters of one request (docs/SCIENCE.md).

Plain values, no numpy: the request models (and so the API and Plan functions) build them."""
from __future__ import annotations

from dataclasses import dataclass

Radius = float | str  # metres, or FOOTPRINT: the local pixel size of each swath
FOOTPRINT = "footprint"  # radius_m mode: each swath's own local pixel size (core.science.kernel.footprint_radius_m)
# Farthest a pixel can matter in footprint mode: half the diagonal of the largest L2P pixel
# (MODIS scan edge ~4.8 km across x ~2 km along; VIIRS ~1.6 km), with a wide margin.
FOOTPRINT_READ_RADIUS_M = 5000.0


@dataclass(frozen=True)
class ColocationParams:
    """How segments and pixels pair (one set per request; see docs/SCIENCE.md)."""

    radius_m: Radius = 1000.0
    max_dt_s: float = 3 * 3600.0
    min_quality_level: int | None = 4  # None: no quality screening (products without quality_level)
    # pixels whose L2P ice bit is set (GDS 2.0 l2p_flags) are ineligible, like a failed quality level
    exclude_ice: bool = False

    @property
    def read_radius_m(self) -> float:
        """How far from a segment a pixel may be and still matter (bounds every read)."""
        return FOOTPRINT_READ_RADIUS_M if self.radius_m == FOOTPRINT else float(self.radius_m)

    def as_attrs(self) -> dict:
        return {"radius_m": self.radius_m, "max_dt_s": float(self.max_dt_s),
                "min_quality_level": self.min_quality_level, "exclude_ice": bool(self.exclude_ice)}
