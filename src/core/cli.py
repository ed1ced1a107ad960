"""``colocate files ...``: colocate local ATL07 and L2P files, write netCDF (+ PNG).

stdout gets exactly one line of JSON (segments, matched, granules, outputs); reader warnings
go to stderr. Bad input exits non-zero with a one-line ``colocate: error: ...`` message.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from typing import Sequence

import numpy as np

from .atl07 import read_atl07
from .config import Settings
from .errors import ColocationError, InputError
from .l2p import open_l2p
from .model import BBox, SstSource, Track
from .colocate import FOOTPRINT
from .pairing import ColocationParams, L2PSource, pair_granule

log = logging.getLogger("core.cli")

EXIT_INPUT = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parse_bbox(text: str) -> BBox:
    parts = text.split(",")
    try:
        w, s, e, n = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad bbox {text!r}: expected W,S,E,N as four numbers") from None
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise argparse.ArgumentTypeError(f"bad bbox {text!r}: values must be finite")
    if not (-90 <= s <= n <= 90):
        raise argparse.ArgumentTypeError(f"bad bbox {text!r}: need -90 <= south <= north <= 90")
    if not (-180 <= w <= 180 and -180 <= e <= 180):
        raise argparse.ArgumentTypeError(f"bad bbox {text!r}: longitudes must be within [-180, 180]")
    return BBox(w, s, e, n)


def _positive(kind):
    def conv(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value
    return conv


def _quality(text: str) -> int | None:
    if text.strip().lower() == "none":
        return None  # no quality screening (products without quality_level)
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer or 'none': {text!r}") from None
    if not 0 <= value <= 5:
        raise argparse.ArgumentTypeError(f"GHRSST quality levels are 0..5, not {value}")
    return value


def _radius(text: str) -> float | str:
    if text.strip().lower() == FOOTPRINT:
        return FOOTPRINT
    return _positive(float)(text)


def build_parser(settings: Settings | None = None) -> argparse.ArgumentParser:
    s = settings or Settings()
    parser = _Parser(prog="colocate", description="Colocate ICESat-2 ATL07 segments with GHRSST L2P SST.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    files = sub.add_parser("files", help="colocate local files")
    files.add_argument("--atl07", action="append", required=True, metavar="FILE", help="ATL07 HDF5 granule (repeatable)")
    files.add_argument("--sst", action="append", required=True, metavar="FILE", help="GHRSST L2P netCDF granule (repeatable)")
    files.add_argument("--sst-collection", action="append", default=[], metavar="COLLECTION",
                       help="collection of the --sst files: once for all, or once per --sst in order "
                            "(labels each match; platform/sensor/DOI from the collection profiles)")
    files.add_argument("--bbox", type=parse_bbox, metavar="W,S,E,N", help="restrict segments (west > east crosses 180°)")
    files.add_argument("--radius-m", type=_radius, default=s.radius_m,
                       help="metres, or 'footprint': each swath's local pixel size")
    files.add_argument("--max-dt-s", type=_positive(float), default=s.max_dt_s)
    files.add_argument("--min-quality-level", type=_quality, default=s.min_quality_level,
                       help="0..5, or 'none': no quality screening (needed for products without quality_level)")
    files.add_argument("--margin-deg", type=float, default=s.bbox_margin_deg, help=argparse.SUPPRESS)
    files.add_argument("--out", required=True, metavar="RESULT.nc")
    files.add_argument("--png", metavar="RESULT.png")
    files.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return parser


def run_files(args: argparse.Namespace) -> dict:
    """Read, colocate and write; returns the summary printed by :func:`main`."""
    for path in [*args.atl07, *args.sst]:
        if not os.path.isfile(path):
            raise InputError(f"missing file: {path}", field="atl07" if path in args.atl07 else "sst")

    params = ColocationParams(radius_m=args.radius_m, max_dt_s=args.max_dt_s,
                              min_quality_level=args.min_quality_level)
    collections = list(args.sst_collection)
    if len(collections) not in (0, 1, len(args.sst)):
        raise InputError(f"--sst-collection given {len(collections)} times: give it once, or once per --sst "
                         f"({len(args.sst)})", field="sst_collection")
    if len(collections) == 1:
        collections *= len(args.sst)
    # every input is listed, used or not
    sources = [L2PSource.local(path, c) for path, c in zip(args.sst, collections or [None] * len(args.sst))]
    tracks: list[Track] = []
    swaths: list = []
    reached: set[str] = set()
    atl07_attrs: dict | None = None
    warnings: list[str] = []
    infos = [SstSource(s.name, s.collection) for s in sources]
    for path in args.atl07:
        granule = read_atl07(path, bbox=args.bbox, margin_deg=args.margin_deg)
        pairing = pair_granule(granule, sources, params)
        tracks.extend(pairing.tracks)
        warnings += [*(f"{granule.name}: {w}" for w in granule.warnings), *pairing.warnings]
        # the first ATL07 granule that reached a source read its attributes
        infos = [i if i.attrs else new for i, new in zip(infos, pairing.source_info())]
        reached.update(s.granule for s in pairing.swaths)
        if args.png:
            swaths.extend(pairing.swaths)
        if len(args.atl07) == 1:
            atl07_attrs = granule.attrs

    for k, (info, path) in enumerate(zip(infos, args.sst)):
        if not info.attrs:  # never reached the segments: label it from the file all the same
            with open_l2p(path, lat_band=(91.0, 92.0)) as g:  # no latitude there: no longitude read
                infos[k] = SstSource(info.name, info.collection, dict(g.ds.attrs), g.variable_attrs())
                warnings += [f"{info.name}: {w}" for w in g.warnings]

    from .product import build_dataset, write_netcdf  # the writer pulls in more of xarray's CF machinery

    attrs = params.as_attrs()
    if collections:
        attrs["sst_collections"] = list(dict.fromkeys(collections))
    if args.bbox is not None:
        attrs["bbox"] = str(args.bbox)
    ds = build_dataset(tracks, infos, attrs, atl07_attrs=atl07_attrs, warnings=warnings,
                       history="colocate files (command line)")
    write_netcdf(ds, args.out)
    used = {int(i) for t in tracks for i in np.unique(t.matches.granule_index) if i >= 0}
    summary = {
        "segments": sum(len(t.segments) for t in tracks),
        "matched": sum(int(t.matches.matched.sum()) for t in tracks),
        "granules": {"atl07": len(args.atl07), "sst": len(args.sst), "sst_reaching_segments": len(reached),
                     "sst_matched": len(used)},
        "beams": len(tracks),
        "out": os.fspath(args.out),
    }
    if args.png:
        from .quicklook import render_quicklook  # matplotlib: heavy, optional

        render_quicklook(ds, args.png, swaths=swaths)
        summary["png"] = os.fspath(args.png)
    return summary


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--bbox -62.8,81.7,...``: argparse takes a leading '-' for an option; glue it on."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--bbox":
            nxt = next(it, None)
            out.append(arg if nxt is None else f"--bbox={nxt}")
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(Settings.from_env())
    args = parser.parse_args(_join_negative_values(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = run_files(args)
    except ColocationError as exc:
        print(f"colocate: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:  # e.g. output directory not writable
        print(f"colocate: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_INPUT
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
