"""One ATL07 granule paired with the L2P windows that reach it → its netCDF and PNG in the run's
folder, and its entry in the date's manifest."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from core.access.cmr import Granule
from core.atomic import safe_basename
from core.errors import InsufficientSpaceError
from core.manifest import GranuleProduct
from core.model import SstSwath
from core.pipeline.atl07_inputs import Atl07Read
from core.pipeline.date_context import DateContext
from core.pipeline.workdir import disk_usage
from core.products.granule_netcdf import build_dataset, write_netcdf
from core.products.pixel_table import PIXELS_SUFFIX, write_pixel_table
from core.science.pairing import SstWindow, pair_granule

log = logging.getLogger(__name__)


@dataclass
class MadeProduct:
    """A granule's manifest entry and, where it had segments, its files (kind -> path) to upload."""

    entry: GranuleProduct
    files: dict[str, Path]


def make_granule_product(granule: Granule, atl07_read: Atl07Read, windows: list[SstWindow], ctx: DateContext,
                         workdir: Path) -> MadeProduct:
    atl07, direct, atl07_bytes, size_warning = atl07_read
    if not sum(len(b) for b in atl07.beams):
        log.info("%s: no segments in the bbox and time window", granule.title)
        return MadeProduct(GranuleProduct(atl07_granule=granule.title, segments=0, matched=0), {})
    # the windows were read for the segments of every ATL07 granule of the date: the same swath
    # serves each (a window holding every pixel near any segment holds those near this one's)
    pairing = pair_granule(atl07, windows, ctx.science, timer=ctx.timer)
    # the file name CMR gave (already a safe basename), else the one read: made safe here too
    stem = _stem(granule.producer_granule_id or safe_basename(atl07.name))
    with ctx.timer("write"):
        ds = build_dataset(pairing.tracks, pairing.source_info(), ctx.params, atl07_attrs=atl07.attrs,
                           request_id=ctx.task.request_id,
                           warnings=[*(f"{atl07.name}: {w}" for w in atl07.warnings), *pairing.warnings])
        _check_space(ds, workdir, ctx)
        files = {"netcdf": write_netcdf(ds, workdir / f"{stem}_sst.nc"),
                 "pixels": write_pixel_table(ds, workdir / f"{stem}_sst{PIXELS_SUFFIX}")}
        png = _render(ds, workdir / f"{stem}_sst.png", pairing.swaths)
        if png is not None:
            files["png"] = png
    matched_sources = pairing.matched_sources()
    entry = GranuleProduct(
        atl07_granule=granule.title,
        segments=pairing.segments,
        matched=pairing.matched,
        beams=[b.beam for b in atl07.beams],
        sst_granules_matched=matched_sources,
        sst_granules_considered=[w.name for w in windows],
        sst_collections_matched=sorted({ctx.collection_of.get(n, "") for n in matched_sources} - {""}),
        atl07_access="direct" if direct else "download",
        atl07_bytes=int(atl07_bytes),
        warnings=list(atl07.warnings) + ([size_warning] if size_warning else []),
        sst_warnings=list(pairing.warnings),
    )
    return MadeProduct(entry, files)


# room for the PNG and HDF5's metadata beside the variables' own bytes
PRODUCT_MARGIN_BYTES = 4 << 20


def _check_space(ds, workdir: Path, ctx: DateContext) -> None:
    """Refuse before writing a product that cannot fit: HDF5 that meets ENOSPC mid-write leaves
    its file open in the library (closed only at garbage collection, which can crash the process),
    so a full disk is caught here; ENOSPC anyway (another writer) is mapped by run_task."""
    need = int(ds.nbytes) + PRODUCT_MARGIN_BYTES
    if disk_usage(ctx.services.settings)(str(workdir)).free < need:
        raise InsufficientSpaceError(f"not enough free space in the work folder for the products of "
                                     f"{ctx.task.date.isoformat()}: need about {need} bytes")


def _stem(name: str) -> str:
    for ext in (".h5", ".nc", ".he5"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _render(ds, path: Path, swaths: list[SstSwath]) -> Path | None:
    try:
        from core.products.quicklook import render_quicklook  # matplotlib: heavy, own layer
    except ImportError as exc:
        log.warning("no quicklook: %s", exc)
        return None
    return render_quicklook(ds, path, swaths=swaths)
