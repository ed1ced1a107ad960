"""``colocate``: the service's colocation from a command line.

* ``colocate files``: local ATL07 and L2P files → one netCDF (+ PNG);
* ``colocate run``: a request (bbox + date or range) through the Lambda's own pipeline
  (core.pipeline.task.run_task per date) against the real NASA services (the development
  sandbox runs the same command offline: ``python -m sandbox.colocate``); products and
  manifests land in a local folder with the bucket's layout.

Both accept exactly what the service accepts: the arguments are checked by the request models
of core.request. stdout gets exactly one line of JSON (the summary); progress, warnings and
errors go to stderr, errors as one line ``colocate: error: ...``, never a traceback.
Exit codes: 0 done, 1 failed (a file, a service, a date), 2 bad arguments, 130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from core.config import Settings
from core.errors import AuthError, ColocationError, InputError
from core.manifest import DateResult
from core.request import (
    FOOTPRINT,
    MAX_DT_S,
    MAX_RADIUS_M,
    ColocationRequest,
    LocalFilesRequest,
    error_fields,
    parse_request,
)

log = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
SAME_ERROR_STOPS_AFTER = 3  # dates in a row failing alike: a service is down, the rest would too
NO_SCREENING = "none"
# request field -> the option that sets it (messages name what the user typed)
OPTION_OF = {"bbox": "--bbox", "date": "--date", "start": "--start", "end": "--end",
             "atl07_collection": "--atl07-collection", "sst_collection": "--sst-collection",
             "sst_collections": "--sst-collection", "radius_m": "--radius-m", "max_dt_s": "--max-dt-s",
             "min_quality_level": "--min-quality-level", "exclude_ice": "--exclude-ice"}


class UsageError(Exception):
    """Bad arguments (exit 2), already worded for the user."""


class _StoreOnce(argparse._StoreAction):
    """A single-valued option given twice is an error (argparse keeps the last one silently:
    ``--date A --date B`` would run B alone)."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault("_options_given", {})
        if self.dest in given:
            first = given[self.dest]
            parser.error(f"{option_string} given twice: give it once" if first == option_string
                         else f"{first} and {option_string} set the same thing: give one of them")
        given[self.dest] = option_string
        super().__call__(parser, namespace, values, option_string)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)

    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    pass


# --- argument texts → request values (the request models check them) -------------------------
def _number_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text.strip()


def _bbox_values(text: str) -> list:
    return [_number_or_text(p) for p in text.split(",")]


def _radius(text: str) -> float | str:
    value = _number_or_text(text)
    if isinstance(value, str) and value.lower() != FOOTPRINT:
        raise argparse.ArgumentTypeError(f"not a number of metres or {FOOTPRINT!r}: {text!r}")
    return FOOTPRINT if isinstance(value, str) else value


def _seconds(text: str) -> float:
    value = _number_or_text(text)
    if isinstance(value, str):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


def _quality(text: str) -> int | str:
    if text.strip().lower() == NO_SCREENING:
        return NO_SCREENING  # no quality screening (products without quality_level)
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer or {NO_SCREENING!r}: {text!r}") from None


def _parameters(args: argparse.Namespace) -> dict:
    """The science parameters as a request would carry them (only those given)."""
    data: dict[str, Any] = {}
    collections = list(dict.fromkeys(args.sst_collection or []))
    if len(collections) == 1:
        data["sst_collection"] = collections[0]
    elif collections:
        data["sst_collections"] = collections
    if getattr(args, "atl07_collection", None):
        data["atl07_collection"] = args.atl07_collection
    for name in ("radius_m", "max_dt_s"):
        if getattr(args, name) is not None:
            data[name] = getattr(args, name)
    if args.min_quality_level is not None:
        data["min_quality_level"] = None if args.min_quality_level == NO_SCREENING else args.min_quality_level
    if getattr(args, "exclude_ice", False):
        data["exclude_ice"] = True
    return data


def _usage_message(exc: ValidationError | InputError) -> str:
    parts = []
    for f in error_fields(exc):
        option = OPTION_OF.get(f["field"].split(".")[0])
        parts.append(f"{option or f['field']}: {f['message']}")
    return "; ".join(parts)


def _validated(model, data: dict, settings: Settings):
    try:
        if model is ColocationRequest:
            return parse_request(data, settings)
        return model.model_validate(data).resolve(settings)
    except (ValidationError, InputError) as exc:
        raise UsageError(_usage_message(exc)) from None


# --- the parser ---------------------------------------------------------------------------------
def _add_parameters(p: argparse.ArgumentParser, s: Settings) -> None:
    p.add_argument("--radius-m", type=_radius, metavar="M",
                   help=f"search radius in metres, 0 < M <= {MAX_RADIUS_M:g}, or '{FOOTPRINT}': each swath's "
                        f"local pixel size (default: {s.radius_m:g} m)")
    p.add_argument("--max-dt-s", type=_seconds, metavar="S",
                   help=f"largest |pixel time - segment time| in seconds, 0 <= S <= {MAX_DT_S:g} "
                        f"(default: {s.max_dt_s:g} s = {s.max_dt_s / 3600:g} h)")
    p.add_argument("--min-quality-level", type=_quality, metavar="Q",
                   help=f"lowest GHRSST quality_level kept, 0..5, or '{NO_SCREENING}': no quality screening "
                        f"(needed for products without quality_level) (default: {s.min_quality_level})")
    p.add_argument("--exclude-ice", action="store_true",
                   help="never match a pixel whose L2P ice bit is set (GDS 2.0 l2p_flags; default: off, "
                        "ice-flagged matches are flagged in sst_match_flags)")


def build_parser(settings: Settings | None = None) -> argparse.ArgumentParser:
    s = settings or Settings()
    parser = _Parser(prog="colocate", description=__doc__.replace("``", ""), formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    files = sub.add_parser("files", help="colocate local files", formatter_class=_HelpFormatter,
                           description="Colocate local ATL07 granules with local L2P granules into one netCDF.")
    files.add_argument("--atl07", action="append", required=True, metavar="FILE",
                       help="ATL07 HDF5 granule (repeatable; each file once)")
    files.add_argument("--sst", action="append", required=True, metavar="FILE",
                       help="GHRSST L2P netCDF granule (repeatable; each file once)")
    files.add_argument("--sst-collection", action="append", default=[], metavar="COLLECTION",
                       help="collection of the --sst files: once for all, or once per --sst in order "
                            "(labels each match; platform/sensor/DOI from the collection profiles)")
    files.add_argument("--bbox", type=_bbox_values, metavar="W,S,E,N",
                       help="keep only segments in this box, degrees (west > east crosses 180°; default: all)")
    _add_parameters(files, s)
    files.add_argument("--out", required=True, metavar="RESULT.nc", help="the netCDF to write")
    files.add_argument("--png", metavar="RESULT.png", help="also draw a quicklook")
    files.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")

    run = sub.add_parser(
        "run", help="run a request through the service's pipeline, results in a local folder",
        formatter_class=_HelpFormatter,
        description="Search CMR, stream ATL07, read L2P (over HTTPS outside us-west-2), colocate and write the "
                    "products and each date's manifest under --out, as the Lambda does into its bucket. "
                    "Earthdata Login credentials: EARTHDATA_TOKEN, or EARTHDATA_USERNAME and EARTHDATA_PASSWORD, "
                    "or a ~/.netrc entry for urs.earthdata.nasa.gov. A date already in --out is not redone.")
    run.add_argument("--bbox", type=_bbox_values, required=True, metavar="W,S,E,N",
                     help="degrees; west > east crosses the antimeridian")
    run.add_argument("--date", metavar="YYYY-MM-DD", help="one UTC day")
    run.add_argument("--start", metavar="TIME", help="ISO-8601 start (UTC if no zone), with --end")
    run.add_argument("--end", metavar="TIME", help="ISO-8601 end; a bare date means the whole of that day")
    run.add_argument("--atl07-collection", metavar="COLLECTION",
                     help=f"CMR concept id or SHORTNAME.VERSION (default: {s.atl07_collection})")
    run.add_argument("--sst-collection", action="append", default=[], metavar="COLLECTION",
                     help=f"repeatable: the best match across all wins (default: {s.sst_collection})")
    _add_parameters(run, s)
    run.add_argument("--out", required=True, metavar="DIR", help="folder for the products and manifests")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary on stderr")
    run.add_argument("-v", "--verbose", action="store_true", help="log each step to stderr")
    run.add_argument("--dry-run", action="store_true",
                     help="print the estimate (dates, granules, GB to move, Lambda cost) from CMR and exit")
    run.add_argument("--yes", action="store_true",
                     help=f"run a request estimated above COLOC_ESTIMATE_CONFIRM_GB ({s.estimate_confirm_gb:g} GB)")
    return parser


# --- colocate files ------------------------------------------------------------------------------
def _distinct_files(paths: list[str], option: str) -> list[str]:
    for path in paths:
        if not os.path.isfile(path):
            raise InputError(f"missing file: {path}", field=option.lstrip("-"))
    seen: dict[str, str] = {}
    for path in paths:
        real = os.path.realpath(path)
        if real in seen:
            raise UsageError(f"{option}: {path} is given twice (each file once)")
        seen[real] = path
    return paths


def run_files(args: argparse.Namespace, settings: Settings) -> dict:
    """Read, colocate and write; returns the summary printed by :func:`main`."""
    from core.model import BBox, SstSource, Track
    from core.science.atl07 import read_atl07
    from core.science.l2p import open_l2p
    from core.science.pairing import pair_granule, read_local_windows

    request = _validated(LocalFilesRequest, {**_parameters(args), **({"bbox": args.bbox} if args.bbox else {})},
                         settings)
    collections = list(args.sst_collection)
    if len(collections) not in (0, 1, len(args.sst)):
        raise UsageError(f"--sst-collection given {len(collections)} times: give it once, or once per --sst "
                         f"({len(args.sst)})")
    atl07_files = _distinct_files(args.atl07, "--atl07")
    sst_files = _distinct_files(args.sst, "--sst")
    if len(collections) == 1:
        collections *= len(sst_files)
    params = request.colocation_params()
    bbox = BBox(*request.bbox) if request.bbox else None
    # every input is listed, used or not
    labels = collections or [None] * len(sst_files)
    files = list(zip(sst_files, labels, strict=True))
    tracks: list[Track] = []
    swaths: list = []
    reached: set[str] = set()
    atl07_attrs: dict | None = None
    warnings: list[str] = []
    infos = [SstSource(os.path.basename(os.fspath(path)), c) for path, c in files]
    for path in atl07_files:
        granule = read_atl07(path, bbox=bbox, margin_deg=settings.bbox_margin_deg)
        pairing = pair_granule(granule, read_local_windows(granule, files, params), params)
        tracks.extend(pairing.tracks)
        warnings += [*(f"{granule.name}: {w}" for w in granule.warnings), *pairing.warnings]
        # the first ATL07 granule that reached a source read its attributes
        infos = [i if i.attrs else new for i, new in zip(infos, pairing.source_info(), strict=True)]
        reached.update(s.granule for s in pairing.swaths)
        if args.png:
            swaths.extend(pairing.swaths)
        if len(atl07_files) == 1:
            atl07_attrs = granule.attrs

    for k, (info, path) in enumerate(zip(infos, sst_files, strict=True)):
        if not info.attrs:  # never reached the segments: label it from the file all the same
            with open_l2p(path, lat_band=(91.0, 92.0)) as g:  # no latitude there: no longitude read
                infos[k] = SstSource(info.name, info.collection, dict(g.ds.attrs), g.variable_attrs())
                warnings += [f"{info.name}: {w}" for w in g.warnings]

    from core.products.granule_netcdf import (  # the writer pulls in more of xarray's CF machinery
        build_dataset,
        write_netcdf,
    )

    attrs = params.as_attrs()
    if collections:
        attrs["sst_collections"] = list(dict.fromkeys(collections))
    if bbox is not None:
        attrs["bbox"] = ",".join(f"{v:g}" for v in request.bbox)
        attrs["bbox_margin_deg"] = float(settings.bbox_margin_deg)
    ds = build_dataset(tracks, infos, attrs, atl07_attrs=atl07_attrs, warnings=warnings,
                       history="colocate files (command line)")
    write_netcdf(ds, args.out)
    from core.products.pixel_table import pixels_path, write_pixel_table

    pixels = write_pixel_table(ds, pixels_path(args.out))  # one row per matched SST pixel, beside it
    used = {int(i) for t in tracks for i in np.unique(t.matches.granule_index) if i >= 0}
    summary = {
        "segments": sum(len(t.segments) for t in tracks),
        "matched": sum(int(t.matches.matched.sum()) for t in tracks),
        "granules": {"atl07": len(atl07_files), "sst": len(sst_files), "sst_reaching_segments": len(reached),
                     "sst_matched": len(used)},
        "beams": len(tracks),
        "out": os.fspath(args.out),
        "pixels": os.fspath(pixels),
    }
    if args.png:
        from core.products.quicklook import render_quicklook  # matplotlib: heavy, optional

        render_quicklook(ds, args.png, swaths=swaths)
        summary["png"] = os.fspath(args.png)
    return summary


# --- colocate run --------------------------------------------------------------------------------
def _request_data(args: argparse.Namespace) -> dict:
    data: dict[str, Any] = {"bbox": args.bbox, **_parameters(args)}
    for name in ("date", "start", "end"):
        if getattr(args, name) is not None:
            data[name] = getattr(args, name)
    return data


@dataclass(frozen=True)
class World:
    """Where ``colocate run`` finds its services: ``open(settings)`` yields the settings to use
    and the Earthdata Login token provider. The real NASA services by default; the development
    sandbox hands in its own (``python -m sandbox.colocate``), so nothing here imports it."""

    name: str
    open: Callable[[Settings], contextlib.AbstractContextManager[tuple[Settings, Any]]]
    data_mode: str = "real"  # core.config.Settings.data_mode of the settings ``open`` yields


@contextlib.contextmanager
def _nasa(settings: Settings) -> Iterator[tuple[Settings, Any]]:
    from core.access.earthdata import token_provider_from_env

    yield settings, token_provider_from_env(settings)


NASA = World("nasa", _nasa)
MODE_MARKER = ".colocate-data-mode"  # in --out: whose results the folder holds


def _claim_folder(out: Path, data_mode: str, *, mark: bool = True) -> None:
    """Results made from NASA's data and the sandbox's synthetic ones never share a folder
    (a date already in the folder is not redone: a real run must not keep a synthetic date).
    ``mark``: write the folder's mode (once the run is about to write into it)."""
    marker = out / MODE_MARKER
    held = marker.read_text().strip() if marker.is_file() else None
    if held and held != data_mode:
        made = "in the offline sandbox" if held == "synthetic" else "from NASA data"
        raise UsageError(f"--out: {out} holds {held} results (made {made}); give another folder for {data_mode} ones")
    if held is None and mark:
        out.mkdir(parents=True, exist_ok=True)
        marker.write_text(data_mode + "\n")


def _date_line(day: dict, store) -> str:
    if day["status"] != "complete":
        return f"{day['date']}: FAILED {day.get('error')}"
    c = day["counts"]
    cached = " (already in the folder)" if day.get("cached") else ""
    skipped = f" ({c['skipped']} skipped: no data link)" if c.get("skipped") else ""
    return (f"{day['date']}: {c['atl07_granules']} ATL07 granules, {c['sst_granules']} L2P granules{skipped}, "
            f"{c['segments']} segments, {c['matched']} matched{cached} → "
            f"{store.path(store.date_prefix(day['request_id'], day['date']))}")


def run_request(args: argparse.Namespace, settings: Settings, world: World = NASA) -> tuple[dict, bool]:
    """Every date of the request through core.pipeline.task.run_task; (summary, all complete)."""
    from cli.progress import ProgressReporter
    from core.access.catalog import check_collections
    from core.jobs.date_plan import plan
    from core.pipeline.services import build_services
    from core.pipeline.task import run_task
    from core.results import LocalOutputStore

    request = _validated(ColocationRequest, _request_data(args), settings)
    out = Path(args.out)
    _claim_folder(out, world.data_mode, mark=False)  # before the (slow) services start
    with world.open(settings) as (settings, token_provider):
        request = request.resolve(settings)  # the world's data mode is part of the request id
        try:
            check_collections(request, settings)
        except InputError as exc:
            raise UsageError(_usage_message(exc)) from None
        estimate = _preflight(args, request, settings)
        if args.dry_run:
            return {"request_id": request.request_id(), "dry_run": True, "estimate": estimate.document()}, True
        _claim_folder(out, settings.data_mode)
        store = LocalOutputStore(out, settings.output_prefix)
        tasks = [t for t in plan(request) if t.date in estimate.kept_dates]  # the dates that can have data
        services = build_services(settings, token_provider=token_provider, output=store)
        results: list[dict] = []
        with ProgressReporter(len(tasks), enabled=not args.quiet and sys.stderr.isatty()) as progress:
            services.progress = progress
            for task in tasks:
                day = task.date.isoformat()
                try:
                    manifest = run_task(task, services)
                    results.append(manifest.result(store.manifest_key(task.request_id, day)).document())
                except AuthError:
                    raise  # a credentials problem ends every date alike: stop here
                except ColocationError as exc:
                    results.append(DateResult.failed(day, " ".join(str(exc).split()), type(exc).__name__,
                                                     request_id=task.request_id).document())
                progress.date_done(results[-1]["status"] == "complete")
                if not args.quiet:
                    progress.write(_date_line(results[-1], store))
                last = results[-SAME_ERROR_STOPS_AFTER:]
                if (len(last) == SAME_ERROR_STOPS_AFTER and len(tasks) > len(results)
                        and all(r["status"] == "failed" and r["error"] == last[0]["error"] for r in last)):
                    raise ColocationError(f"{SAME_ERROR_STOPS_AFTER} dates in a row failed with the same error, "
                                          f"stopped before {tasks[len(results)].date}: {last[0]['error']}")
        request_outputs = _request_outputs(store, request, results, settings)
    complete = all(r["status"] == "complete" for r in results)
    summary = {
        "request_id": request.request_id(),
        "out": str(out),
        "dates": [_date_summary(r, store) for r in results],
        "counts": {k: sum(r.get("counts", {}).get(k, 0) for r in results)
                   for k in ("atl07_granules", "sst_granules", "skipped", "segments", "matched")},
    }
    if request_outputs:
        summary["request_outputs"] = request_outputs
    if estimate.trim.trimmed:
        summary["trim"] = estimate.trim.document()
    if world is not NASA:
        summary[world.name] = True
    return summary, complete


def _preflight(args: argparse.Namespace, request: ColocationRequest, settings: Settings):
    """The estimate (core.jobs.preflight) on stderr; a request above COLOC_ESTIMATE_CONFIRM_GB
    needs --yes (a global year is on the order of a terabyte of ATL07)."""
    from core.jobs.preflight import estimate as make_estimate

    estimate = make_estimate(request, settings)
    if args.dry_run or (not args.quiet and estimate.gb_to_move is not None):  # (None: CMR could not be asked)
        print(f"estimate: {estimate.summary()}", file=sys.stderr)
    if not args.dry_run and not args.yes and estimate.exceeds(settings.estimate_confirm_gb):
        raise UsageError(f"this request would move ≈ {estimate.gb_to_move:,.1f} GB, above "
                         f"COLOC_ESTIMATE_CONFIRM_GB ({settings.estimate_confirm_gb:g} GB): run it again with --yes "
                         "to go ahead (--dry-run prints the estimate)")
    return estimate


def _request_outputs(store, request: ColocationRequest, results: list[dict], settings: Settings) -> dict:
    """The request-level netCDF and date-partitioned Parquet of the complete dates, as Summarize
    writes them for the service (core.results.publish_request_products), into the folder."""
    import tempfile

    from core.results import publish_request_products

    complete = [r for r in results if r["status"] == "complete"]
    if not complete:
        return {}
    request_id = request.request_id()
    netcdf = store.path(store.request_netcdf_key(request_id, "local"))
    parquet = store.path(store.parquet_prefix(request_id).rstrip("/"))
    pixels = store.path(store.pixels_prefix(request_id).rstrip("/"))  # the pixel-scale table
    matched = sum(r["counts"]["matched"] for r in complete)
    if all(r.get("cached") for r in complete) and (netcdf.exists() or not matched):
        # a re-run that recomputed nothing: the folder already holds these results
        return {"matched": matched, "parquet": str(parquet), "pixels": str(pixels),
                **({"netcdf": str(netcdf)} if matched else {})}
    Path(settings.download_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="colocate-run-", dir=settings.download_dir) as workdir:
        made = publish_request_products(store, request_id, request.canonical(), complete,
                                        Path(workdir), run_id="local")
    out = {"matched": made["matched"], "parquet": str(parquet), "pixels": str(pixels)}
    if made["netcdf"]:
        out["netcdf"] = str(store.path(made["netcdf"]))
    return out


def _date_summary(r: dict, store) -> dict:
    if r["status"] != "complete":
        return {k: r[k] for k in ("date", "status", "error", "type") if k in r}
    return {"date": r["date"], "status": "complete", "cached": bool(r.get("cached")),
            "counts": r["counts"], "manifest": str(store.path(r["manifest_key"])),
            "products": [str(store.path(k)) for k in r.get("outputs", [])]}


# --- main ----------------------------------------------------------------------------------------
def _glue_negative_values(argv: Sequence[str]) -> list[str]:
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


def _error(message: str, code: int) -> int:
    print(f"colocate: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None, *, world: World = NASA) -> int:
    settings = Settings.from_env()
    parser = build_parser(settings)
    args = parser.parse_args(_glue_negative_values(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from core.pipeline.services import quiet_secret_bearing_loggers

    quiet_secret_bearing_loggers()
    with _retry_warnings_shown(args.verbose):
        return _main(args, settings, world)


@contextlib.contextmanager
def _retry_warnings_shown(verbose: bool) -> Iterator[None]:
    """Each retry is a urllib3 WARNING; without -v the date's one-line error says how it ended.
    The levels are put back afterwards (main() also runs inside other programs, e.g. tests)."""
    names = ("urllib3", "urllib3.connectionpool")
    saved = {name: logging.getLogger(name).level for name in names}
    if not verbose:
        for name in names:
            logging.getLogger(name).setLevel(max(logging.ERROR, saved[name]))
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _main(args: argparse.Namespace, settings: Settings, world: World) -> int:
    try:
        if args.command == "files":
            summary, ok = run_files(args, settings), True
        else:
            summary, ok = run_request(args, settings, world)
    except UsageError as exc:
        return _error(str(exc), EXIT_USAGE)
    except ColocationError as exc:
        return _error(str(exc), EXIT_FAILED)
    except OSError as exc:  # e.g. output directory not writable
        return _error(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), EXIT_FAILED)
    except KeyboardInterrupt:
        return _error("interrupted (a date in progress left nothing in the output folder)", EXIT_INTERRUPTED)
    except Exception as exc:  # a bug: one line all the same
        from core.products.attributes import scrub

        return _error(scrub(f"unexpected {type(exc).__name__}: {exc}")[:300], EXIT_FAILED)
    print(json.dumps(summary, separators=(",", ":")))
    if not ok:
        failed = [d["date"] for d in summary["dates"] if d["status"] != "complete"]
        return _error(f"{len(failed)} of {len(summary['dates'])} dates failed ({', '.join(failed[:5])}"
                      f"{', …' if len(failed) > 5 else ''}); run the same command again to retry them "
                      "(finished dates are kept)", EXIT_FAILED)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
