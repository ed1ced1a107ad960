"""One date → colocated products in the output bucket (``run_task``; a request's dates: core.jobs.date_plan).

``run_task`` is the unit of work of every entry point. For its date it searches CMR for ATL07
and L2P granules, streams the ATL07 granules to ``download_dir``
one after another in a thread — each as parallel ranged GETs (core.access.download) — while it reads
the one before (or reads them in place), then reads every L2P granule within ±Δt of a segment
once for the segments of all ATL07 granules it can reach, side by side
(``settings.l2p_parallel``), in place from S3 in us-west-2 or over HTTPS range requests
elsewhere (``settings.l2p_access``); the manifest lists every L2P granule not colocated and why
(``inputs.sst_dropped``). It keeps the best match per segment across granules, and writes one
netCDF + PNG per ATL07 granule and the date's manifest (last, conditionally: see core.results).
A finished date is returned from the bucket, not redone.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import requests

from core.access.cmr import CmrClient, Granule
from core.access.credentials import CredentialsCache
from core.access.download import stream_download
from core.access.earthdata import redact_url
from core.access.s3access import open_s3_filesystem
from core.config import Settings
from core.errors import ColocationError, InputError, UnreadableFileError, UpstreamError
from core.http import failure_cause
from core.manifest import DateManifest
from core.model import Atl07Granule, SstSwath
from core.pipeline.sst_granules import open_sst_granule
from core.products.granule_netcdf import build_dataset, write_netcdf
from core.request import DateTask
from core.results import OutputStore, ResultStore
from core.science.atl07 import open_atl07_in_place, read_atl07
from core.science.l2p import L2PGranule
from core.science.pairing import ColocationParams, L2PSource, pair_granule, restrict_to_window

log = logging.getLogger(__name__)

WORKDIR_PREFIX = "coloc-"
WORKDIR_LOCK = ".lock"  # held (flock) while a run lives; free once its process is gone
STALE_UNLOCKED_S = 60.0  # a workdir without a lock file is only a dead run's after this long


@dataclass
class Services:
    """The clients a task needs, built once per process and handed in (tests: sandbox-backed)."""

    settings: Settings
    http: requests.Session  # an EarthdataSession: token, host allowlist, retries
    credentials: CredentialsCache
    output: ResultStore  # the bucket (OutputStore) or a local folder (LocalOutputStore)
    clock: Callable[[], float] = time.time
    # progress(event, info) as the task goes (``colocate run``'s progress bar); None in Lambda.
    # Events: "found" {date, atl07, sst, skipped}, "stage" {name}, "bytes" {n},
    # "granule" {title, segments, matched}
    progress: Callable[[str, dict], None] | None = None
    _filesystems: dict = field(default_factory=dict, repr=False)
    _filesystems_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def report(self, event: str, **info) -> None:
        if self.progress is not None:
            self.progress(event, info)

    def s3_filesystem(self, endpoint: str):
        """One s3fs filesystem per /s3credentials endpoint (credentials refresh themselves); the
        granules read side by side share it (one credentials request, one botocore client)."""
        with self._filesystems_lock:
            if endpoint not in self._filesystems:
                provider = self.credentials.provider(endpoint)
                self._filesystems[endpoint] = open_s3_filesystem(provider, self.settings)
            return self._filesystems[endpoint]


# At DEBUG these print signed requests: DAAC session tokens (x-amz-security-token), signatures,
# and presigned query strings (TEA's own X-Amz-Security-Token). Never below INFO, whatever the
# root level: secrets must not reach the logs even when someone turns on DEBUG.
SECRET_BEARING_LOGGERS = ("botocore.auth", "botocore.endpoint", "botocore.hooks", "botocore.parsers",
                          "aiobotocore.endpoint", "urllib3.connectionpool")


def quiet_secret_bearing_loggers() -> None:
    for name in SECRET_BEARING_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:
            logger.setLevel(logging.INFO)


def build_services(settings: Settings, *, token_provider=None, s3_client=None,
                   output: ResultStore | None = None) -> Services:
    """Production wiring: EDL token from the environment / netrc / Secrets Manager. The output
    store is handed in (handlers.runtime builds the bucket's; ``colocate run`` a folder's), or
    the S3 client of the output bucket."""
    if output is None:
        if s3_client is None:
            raise TypeError("build_services needs output= or s3_client= (see handlers.runtime.output_store)")
        output = OutputStore(s3_client, settings.output_bucket, settings.output_prefix)

    quiet_secret_bearing_loggers()

    from core.access.earthdata import EarthdataSession, token_provider_from_env

    http = EarthdataSession(settings, token_provider or token_provider_from_env(settings))
    return Services(
        settings=settings,
        http=http,
        credentials=CredentialsCache(http, refresh_margin_s=settings.credentials_refresh_margin_s),
        output=output,
    )


# --- helpers ---------------------------------------------------------------------------------


class _Timer:
    """Seconds per stage. Stages of one date overlap (downloads, L2P reads side by side): a
    stage's figure is the sum over its threads, and the stages add up to more than ``total``."""

    def __init__(self, clock: Callable[[], float], on_stage: Callable[..., None] | None = None):
        self.clock = clock
        self.on_stage = on_stage
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.on_stage is not None:
            self.on_stage("stage", name=name)
        t0 = self.clock()
        try:
            yield
        finally:
            with self._lock:
                self.seconds[name] = round(self.seconds.get(name, 0.0) + self.clock() - t0, 3)


def _remove_stale_workdirs(download_dir: Path) -> None:
    """Delete workdirs of runs that died (a killed Lambda leaves /tmp to the next invocation):
    their partial downloads must neither be reused nor fill the disk."""
    for path in download_dir.glob("." + WORKDIR_PREFIX + "*"):  # died before it was locked
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > STALE_UNLOCKED_S:
                shutil.rmtree(path, ignore_errors=True)
    for path in download_dir.glob(WORKDIR_PREFIX + "*"):
        if not path.is_dir():
            continue
        try:
            lock = open(path / WORKDIR_LOCK, "a")
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > STALE_UNLOCKED_S:
                    shutil.rmtree(path, ignore_errors=True)
            continue
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run (this or another process)
            log.info("removing the workdir of a dead run: %s", path.name)
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _workdir(download_dir: Path) -> Iterator[Path]:
    """A private, locked directory for one run under ``download_dir``, removed afterwards."""
    download_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_workdirs(download_dir)
    # lock first under a hidden name, then make it visible: a sweeper never sees it unlocked
    hidden = Path(tempfile.mkdtemp(prefix="." + WORKDIR_PREFIX, dir=download_dir))
    lock = open(hidden / WORKDIR_LOCK, "a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    path = download_dir / hidden.name[1:]
    hidden.rename(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        lock.close()


class _DiskUsage(NamedTuple):  # the shape of shutil.disk_usage()
    total: int
    used: int
    free: int


def _disk_usage(settings: Settings) -> Callable[[str], Any]:
    """``shutil.disk_usage`` bounded by ``settings.download_max_bytes`` (0: no bound)."""
    quota = int(settings.download_max_bytes)
    if quota <= 0:
        return shutil.disk_usage

    def usage(path: str):
        used = 0
        for f in Path(settings.download_dir).rglob("*"):
            with contextlib.suppress(OSError):
                if f.is_file():
                    used += f.stat().st_size
        real = shutil.disk_usage(path)
        return _DiskUsage(quota, used, max(0, min(real.free, quota - used)))

    return usage


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _np_utc(t: datetime) -> np.datetime64:
    return np.datetime64(t.astimezone(UTC).replace(tzinfo=None), "ns")


def _stem(name: str) -> str:
    for ext in (".h5", ".nc", ".he5"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def in_daac_region(settings: Settings) -> bool:
    """Whether this process runs in the DAACs' region (their S3 credentials work only there).
    Lambda tells its region in AWS_REGION; no EC2 metadata lookup (it fails in Lambda)."""
    return os.environ.get("AWS_REGION") == settings.aws_region


def _use_direct_access(granule: Granule, settings: Settings) -> bool:
    mode = settings.atl07_access  # one of config.ATL07_ACCESS: Settings refuses anything else
    can_direct = bool(granule.s3_url and granule.s3credentials_url)
    if mode == "direct" and not can_direct:
        raise InputError(f"{granule.title} has no s3:// link; use atl07_access=download", "atl07_access")
    return mode == "direct" or (mode == "auto" and can_direct and in_daac_region(settings))


def l2p_access(settings: Settings) -> str:
    """``s3`` or ``https``: how L2P granules are read (``auto``: s3 in the DAACs' region)."""
    mode = settings.l2p_access  # one of config.L2P_ACCESS: Settings refuses anything else
    if mode == "auto":
        return "s3" if in_daac_region(settings) else "https"
    return mode


def _size_warning(title: str, cmr_size: int | None, actual: int) -> str | None:
    """CMR's size and the transfer's own can disagree; the transfer's is the one verified."""
    if cmr_size and cmr_size != actual:
        return f"{title}: CMR lists {cmr_size} bytes, the server sent {actual} (the server's size was used)"
    return None


# --- the task ----------------------------------------------------------------------------------


def run_task(task: DateTask, services: Services, *, run_id: str | None = None) -> DateManifest:
    """Colocate one date of a request; returns the manifest of the published result.

    Every failure ends in a :class:`ColocationError` naming its cause (a failing output bucket
    included), with none of this run's objects left in the output bucket."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return _run_task(task, services, run_id=run_id)
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
        raise UpstreamError(f"{type(exc).__name__} {code}: {exc}"[:500],
                            service=f"output bucket {services.output.location}") from None


def _run_task(task: DateTask, services: Services, *, run_id: str | None = None) -> DateManifest:
    req, settings, store = task.request, services.settings, services.output
    if not req.is_resolved:
        raise ValueError("run_task() needs a resolved request")
    request_id, date = task.request_id, task.date.isoformat()
    existing = DateManifest.load(store, request_id, date)
    if existing is not None:
        log.info("date %s of %s already done: returning the stored result", date, request_id)
        return existing.as_cached()

    run_id = run_id or uuid.uuid4().hex[:12]
    clock = services.clock
    timer = _Timer(clock, services.report if services.progress else None)
    started = clock()
    lo, hi = req.window(task.date)
    bbox = req.bounding_box
    science = req.colocation_params()
    max_dt = timedelta(seconds=science.max_dt_s)
    atl07_collection = req.atl07_collection
    assert atl07_collection is not None  # resolved above: the request's or the default
    sst_report: dict[str, dict] = {}
    # the EarthdataSession already mounts core.http's retry policy for every host; mounting it
    # again per task would only replace the adapter and drop its pooled connections
    cmr = CmrClient(services.http, settings, mount_retry=False)

    with timer("search"):
        atl07_found = cmr.search(atl07_collection, bbox, lo, hi)
        # every requested SST collection; a granule remembers the collection it was found in
        sst_all = [(c, g) for c in req.collections for g in cmr.search(c, bbox, lo - max_dt, hi + max_dt)]
    sst_found = [g for _, g in sst_all]
    # a granule is read whatever its catalogue size; one whose record has no data link is
    # reported with the reason, never dropped silently
    skipped = [{"granule": g.title, "collection": c, "reason": g.skip_reason}
               for c, g in [(atl07_collection, g) for g in atl07_found] + sst_all if g.skip_reason]
    atl07_granules = [g for g in atl07_found if not g.skip_reason]
    sst_granules = [g for g in sst_found if not g.skip_reason]
    collection_of = {g.title: c for c, g in sst_all}
    services.report("found", date=date, atl07=len(atl07_granules), sst=len(sst_granules), skipped=len(skipped))
    for skip in skipped:
        log.warning("skipping %s granule %s: %s", skip["collection"], skip["granule"], skip["reason"])

    params = {
        "bbox": list(req.bbox), "bbox_margin_deg": float(settings.bbox_margin_deg),
        "start": _iso(lo), "end": _iso(hi), **science.as_attrs(),
        "atl07_collection": req.atl07_collection, "sst_collection": req.sst_collection,
        "sst_collections": list(req.collections),
    }
    ctx = _GranuleContext(task=task, services=services, params=params, science=science, lo=lo, hi=hi,
                          timer=timer, sst_report=sst_report, collection_of=collection_of)
    uploaded: list[str] = []
    products: list[dict] = []

    def publish_granule(granule: Granule, atl07_read: _Atl07Read, inputs: _DateInputs) -> None:
        product = _colocate_granule(granule, atl07_read, inputs, ctx, workdir)
        if product is None:
            products.append({"atl07_granule": granule.title, "segments": 0, "matched": 0})
            return
        for kind, path in product.pop("files").items():
            key = store.output_key(request_id, date, run_id, path.name)
            with timer("upload"):
                store.upload(path, key, "application/x-netcdf" if kind == "netcdf" else "image/png")
            uploaded.append(key)
            product.setdefault("outputs", {})[kind] = key
        products.append(product)
        services.report("granule", title=granule.title, segments=product["segments"], matched=product["matched"])

    try:
        with _workdir(Path(settings.download_dir)) as workdir:
            date_inputs = _read_date_inputs(atl07_granules, sst_granules, ctx, workdir, publish_granule)
        order = {g.title: i for i, g in enumerate(atl07_granules)}
        products.sort(key=lambda p: order[p["atl07_granule"]])  # made as inputs arrived; listed as found

        manifest = DateManifest.model_validate({
            "request_id": request_id,
            "date": date,
            "run_id": run_id,
            "status": "complete",
            "request": req.canonical(),
            "parameters": params,
            "inputs": {
                "atl07": [g.title for g in atl07_granules],
                "sst": [g.title for g in sst_granules],
                "skipped": skipped,
                # L2P granules found but never read, or read no further than needed, and why
                "sst_dropped": date_inputs.dropped,
            },
            "products": products,
            "counts": {
                "atl07_granules_found": len(atl07_found),
                "sst_granules_found": len(sst_found),
                "atl07_granules": len(atl07_granules),
                "sst_granules": len(sst_granules),
                "skipped": len(skipped),
                "sst_granules_dropped": len(date_inputs.dropped),
                "segments": sum(p["segments"] for p in products),
                "matched": sum(p["matched"] for p in products),
            },
            "bytes": {
                "atl07_downloaded": sum(p.get("atl07_bytes", 0) for p in products),
                "sst_fetched": sum(r["bytes_fetched"] for r in sst_report.values()),
                "sst_per_granule": sst_report,
            },
            "outputs": list(uploaded),
            "warnings": list(ctx.warnings),
            "timings_s": {**timer.seconds, "total": round(clock() - started, 3)},
            "created": _iso(datetime.now(UTC)),
        })
        with timer("publish"):
            published = store.publish_manifest(request_id, date, manifest.document())
        if not published:
            winner = DateManifest.load(store, request_id, date)
            if winner is None or winner.run_id != run_id:
                # another run of this date finished first: keep its result, drop ours
                store.delete_keys(uploaded)
                return (winner or manifest).as_cached()
            # ours: the PUT landed, its answer was lost and the client's retry got 412
        _remove_orphans(store, request_id, date, manifest)
        return manifest
    except BaseException:
        with contextlib.suppress(Exception):
            if uploaded and not _is_published_by(store, request_id, date, run_id):
                store.delete_keys(uploaded)
        raise


def _is_published_by(store: ResultStore, request_id: str, date: str, run_id: str) -> bool:
    """Whether the date's manifest is this run's (then its outputs must stay)."""
    current = DateManifest.load(store, request_id, date)
    return current is not None and current.run_id == run_id


def _remove_orphans(store: ResultStore, request_id: str, date: str, manifest: DateManifest) -> None:
    """Once a date is published, anything else under it is a dead or losing run's output.

    Best effort and never raising: the date is published, and a failure here must not reach
    run_task's clean-up of the (now published) outputs; the bucket's lifecycle rule is the backstop."""
    keep = set(manifest.outputs) | {store.manifest_key(request_id, date)}
    try:
        orphans = [k for k in store.list_keys(store.date_prefix(request_id, date) + "/") if k not in keep]
        if orphans:
            log.info("removing %d unpublished objects of earlier runs of %s", len(orphans), date)
            store.delete_keys(orphans)
    except Exception as exc:
        log.warning("could not remove unpublished objects of earlier runs of %s: %s", date, type(exc).__name__)


@dataclass
class _GranuleContext:
    """What every ATL07 granule of one date task shares (built once in _run_task)."""

    task: DateTask
    services: Services
    params: dict  # processing parameters, as recorded in the manifest and the product
    science: ColocationParams
    lo: datetime
    hi: datetime
    timer: _Timer
    sst_report: dict  # per L2P granule: size, bytes fetched, requests, window, access path
    collection_of: dict = field(default_factory=dict)  # L2P granule title -> its SST collection
    warnings: list = field(default_factory=list)  # the date's warnings (e.g. CMR sizes that disagree)
    lock: threading.Lock = field(default_factory=threading.Lock)  # reads run side by side

    def warn(self, text: str | None) -> str | None:
        """Record (and log) a warning."""
        if text:
            with self.lock:
                log.warning("%s", text)
                self.warnings.append(text)
        return text


class _Atl07Read(NamedTuple):
    granule: Atl07Granule
    direct: bool
    bytes_fetched: int
    size_warning: str | None


def _read_in_place(granule: Granule, ctx: _GranuleContext) -> _Atl07Read:
    """The ATL07 granule's segments in the bbox, read where it lies on S3."""
    settings, services = ctx.services.settings, ctx.services
    # _use_direct_access chose direct only for a granule with both
    assert granule.s3_url and granule.s3credentials_url
    fs = services.s3_filesystem(granule.s3credentials_url)
    with ctx.timer("atl07_read"), _read_errors(granule.title):
        # in waves of ranged GETs side by side, guided by a DMR++ sidecar if one is published
        fh, byte_map = open_atl07_in_place(fs, granule.s3_url, settings)
        with fh:
            atl07 = read_atl07(fh, bbox=ctx.task.request.bounding_box, margin_deg=settings.bbox_margin_deg,
                               byte_map=byte_map)
            warning = ctx.warn(_size_warning(granule.title, granule.size_bytes, int(fh.size)))
            services.report("bytes", n=int(fh.bytes_fetched))
            return _Atl07Read(atl07, True, fh.bytes_fetched, warning)


def _download(granule: Granule, ctx: _GranuleContext, workdir: Path) -> Path:
    """Stream the ATL07 granule to ``workdir`` (the caller reads and deletes it)."""
    settings, services = ctx.services.settings, ctx.services
    if not granule.https_url:
        raise UpstreamError(f"{granule.title} has no HTTPS data link", service="cmr")
    try:
        with ctx.timer("atl07_download"):
            return stream_download(services.http, granule.https_url, workdir,
                                   expected_size=granule.size_bytes or None,
                                   file_name=granule.producer_granule_id or None,
                                   disk_usage=_disk_usage(settings),
                                   parallel=settings.download_parallel, part_size=settings.download_part_bytes,
                                   on_bytes=(lambda n: services.report("bytes", n=n)) if services.progress else None)
    except requests.RequestException as exc:
        # connection refused / timed out after the session's retries; the message of
        # requests' exception carries the URL with its query (presigned hops): not repeated
        raise UpstreamError(f"{granule.title}: failed after retries ({failure_cause(exc)})",
                            service=f"download {redact_url(granule.https_url)}") from None


def _read_downloaded(granule: Granule, path: Path, ctx: _GranuleContext) -> _Atl07Read:
    settings = ctx.services.settings
    try:
        size = path.stat().st_size
        warning = ctx.warn(_size_warning(granule.title, granule.size_bytes, size))
        with ctx.timer("atl07_read"):
            atl07 = read_atl07(path, bbox=ctx.task.request.bounding_box, margin_deg=settings.bbox_margin_deg)
        return _Atl07Read(atl07, False, size, warning)
    except UnreadableFileError as exc:
        # the bytes matched the server's size: the DAAC served a corrupt file
        raise UpstreamError(f"{granule.title}: {exc}",
                            service=f"download {redact_url(granule.https_url or '')}") from None
    finally:
        path.unlink(missing_ok=True)  # /tmp is small and shared: one granule on disk at a time per download


def _fetch_atl07(granule: Granule, ctx: _GranuleContext, workdir: Path) -> _Atl07Read | Path:
    """Read in place, or download (to be read by the caller while the next one downloads)."""
    if _use_direct_access(granule, ctx.services.settings):
        return _read_in_place(granule, ctx)
    return _download(granule, ctx, workdir)


@dataclass
class _DateInputs:
    """What one date's colocation works from: every ATL07 granule's segments (in the window) and
    every L2P granule's window, read once for the segments of all ATL07 granules it can reach."""

    atl07: list[tuple[Granule, _Atl07Read]]
    candidates: dict[str, list[Granule]]  # ATL07 title -> the L2P granules within its ±Δt
    swaths: dict[str, SstSwath | None]  # L2P title -> its window (None: no pixel reaches a segment)
    dropped: list[dict]  # {"granule", "reason"}: L2P granules not colocated, and why


def _time_candidates(atl07: Atl07Granule, sst_granules: list[Granule], max_dt_s: float) -> list[Granule]:
    """L2P granules whose time span reaches within ±Δt of a segment (CMR's temporal extent; a
    granule without one cannot be ruled out by time)."""
    t_min = min(b.time.min() for b in atl07.beams)
    t_max = max(b.time.max() for b in atl07.beams)
    window = np.timedelta64(int(round(max_dt_s * 1e9)), "ns")
    return [g for g in sst_granules
            if (g.start is None or _np_utc(g.start) - window <= t_max)
            and (g.end is None or _np_utc(g.end) + window >= t_min)]


def _read_date_inputs(atl07_granules: list[Granule], sst_granules: list[Granule], ctx: _GranuleContext,
                      workdir: Path, on_ready: Callable[[Granule, _Atl07Read, _DateInputs], None]) -> _DateInputs:
    """Read the date's inputs with the network kept busy, handing each ATL07 granule to
    ``on_ready`` (colocate, write, upload) as soon as everything it pairs with is read; ``on_ready``
    runs in a thread of its own, one granule at a time in order, while this one reads on.

    ATL07 granules download one after another in a thread (each as parallel ranged GETs) while
    this thread reads the one before (or are read in place). Meanwhile every L2P granule that
    CMR's ATL07 time extents reach within ±Δt is opened side by side (``settings.l2p_parallel``):
    its HDF5 metadata and latitude, which need no segment. An L2P granule is located and
    windowed once every ATL07 granule that can reach it is read, for the segments of all of them
    within its ±Δt: so the first ATL07 granule's products are made while the next downloads."""
    settings = ctx.services.settings
    _preload(settings)
    max_dt = timedelta(seconds=ctx.science.max_dt_s)

    def might_reach(sst: Granule, atl07: Granule) -> bool:
        # by CMR's extents: a superset of the exact test on segment times; no extent, no ruling out
        return ((sst.start is None or atl07.end is None or sst.start - max_dt <= atl07.end)
                and (sst.end is None or atl07.start is None or sst.end + max_dt >= atl07.start))

    reach_cmr = {s.title: {a.title for a in atl07_granules if might_reach(s, a)} for s in sst_granules}
    by_title = {g.title: g for g in sst_granules}
    inputs = _DateInputs(atl07=[], candidates={}, swaths={}, dropped=[])
    reaching: dict[str, list[tuple[str, Atl07Granule]]] = {}  # L2P title -> (ATL07 title, segments)
    windows: dict[str, tuple[frozenset[str], Future[SstSwath | None]]] = {}
    read: set[str] = set()
    handed: set[str] = set()
    opening: dict[str, Future[L2PGranule]] = {}

    def advance(l2p_pool: ThreadPoolExecutor, all_read: bool) -> None:
        for title, pairs in reaching.items():
            names = frozenset(a for a, _ in pairs)
            ready = all_read or reach_cmr[title] <= read
            if ready and (title not in windows or windows[title][0] != names):
                if title not in opening:  # no CMR extent matched: opened only now
                    opening[title] = l2p_pool.submit(_open_l2p, by_title[title], ctx)
                if title in windows:  # reached by one more ATL07 granule than CMR's extents said:
                    windows[title][1].result()  # one read of an open granule at a time, then again
                windows[title] = names, l2p_pool.submit(_read_l2p_window, by_title[title], opening[title].result(),
                                                        [g for _, g in pairs], ctx)
        for granule, atl07_read in inputs.atl07:
            cands = inputs.candidates.get(granule.title, [])
            if granule.title in handed or not all(c.title in windows and granule.title in windows[c.title][0]
                                                  for c in cands):
                continue
            for c in cands:
                inputs.swaths[c.title] = windows[c.title][1].result()
            handed.add(granule.title)
            # the windows as they are now: this thread may re-read one for a later granule meanwhile
            published.append(publisher.submit(publish, granule, atl07_read,
                                              dataclasses.replace(inputs, swaths=dict(inputs.swaths))))
        for product in published:  # a product that failed fails the date now, not after the next download
            if product.done() and product.exception() is not None:
                product.result()

    failed = threading.Event()
    published: list[Future[None]] = []

    def publish(granule: Granule, atl07_read: _Atl07Read, ready: _DateInputs) -> None:
        if failed.is_set():
            return  # an earlier product failed: the date fails with it, nothing more is made
        try:
            on_ready(granule, atl07_read, ready)
        except BaseException:
            failed.set()
            raise

    try:
        # products are made in their own thread, one at a time in the order the granules are ready,
        # so that this thread reads the next ATL07 granule (and asks for its L2P windows) as soon
        # as it is downloaded instead of after the previous granule's product is uploaded
        with ThreadPoolExecutor(max_workers=settings.l2p_parallel, thread_name_prefix="l2p") as l2p_pool, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="atl07") as fetcher, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish") as publisher:
            opening.update({t: l2p_pool.submit(_open_l2p, by_title[t], ctx) for t, reach in reach_cmr.items() if reach})
            fetches = [fetcher.submit(_fetch_atl07, g, ctx, workdir) for g in atl07_granules]
            try:
                for granule, fetch in zip(atl07_granules, fetches, strict=True):
                    got = fetch.result()
                    atl07_read = _read_downloaded(granule, got, ctx) if isinstance(got, Path) else got
                    restrict_to_window(atl07_read.granule, _np_utc(ctx.lo), _np_utc(ctx.hi))
                    inputs.atl07.append((granule, atl07_read))
                    read.add(granule.title)
                    if any(len(b) for b in atl07_read.granule.beams):
                        inputs.candidates[granule.title] = _time_candidates(atl07_read.granule, sst_granules,
                                                                            ctx.science.max_dt_s)
                        for sst in inputs.candidates[granule.title]:
                            reaching.setdefault(sst.title, []).append((granule.title, atl07_read.granule))
                    advance(l2p_pool, all_read=False)
                advance(l2p_pool, all_read=True)
                for product in published:
                    product.result()
            except BaseException:
                failed.set()
                for future in fetches:
                    future.cancel()
                for job in opening.values():
                    job.cancel()
                raise
    finally:
        for job in opening.values():  # every granule opened is closed, whatever happened
            if job.done() and not job.cancelled() and job.exception() is None:
                with contextlib.suppress(Exception):
                    job.result().close()
    dt = f"{ctx.science.max_dt_s:g} s"
    inputs.dropped = [{"granule": g.title, "reason": f"no segment within ±{dt} of its time span ("
                       + ("only its metadata and latitude read" if g.title in opening else "not read") + ")"}
                      for g in sst_granules if g.title not in reaching]
    for title in reaching:
        if inputs.swaths.get(title) is None:
            reason = ctx.sst_report.get(title, {}).get("no_window") or f"no valid pixel within {ctx.science.radius_m} m"
            inputs.dropped.append({"granule": title, "reason": reason})
    return inputs


def _window_of(inputs: _DateInputs, title: str) -> Callable[[np.ndarray, np.ndarray, float], SstSwath | None]:
    def read(_lat: np.ndarray, _lon: np.ndarray, _radius_m: float) -> SstSwath | None:
        return inputs.swaths.get(title)
    return read


def _colocate_granule(granule: Granule, atl07_read: _Atl07Read, inputs: _DateInputs, ctx: _GranuleContext,
                      workdir: Path) -> dict | None:
    atl07, direct, atl07_bytes, size_warning = atl07_read
    if not sum(len(b) for b in atl07.beams):
        log.info("%s: no segments in the bbox and time window", granule.title)
        return None
    candidates = inputs.candidates[granule.title]
    # the windows were read for the segments of every ATL07 granule of the date: the same swath
    # serves each (a window holding every pixel near any segment holds those near this one's)
    sources = [L2PSource(g.title, _window_of(inputs, g.title), ctx.collection_of.get(g.title)) for g in candidates]
    pairing = pair_granule(atl07, sources, ctx.science, timer=ctx.timer)

    stem = _stem(atl07.name)
    with ctx.timer("write"):
        ds = build_dataset(pairing.tracks, pairing.source_info(), ctx.params, atl07_attrs=atl07.attrs,
                           request_id=ctx.task.request_id,
                           warnings=[*(f"{atl07.name}: {w}" for w in atl07.warnings), *pairing.warnings])
        nc = write_netcdf(ds, workdir / f"{stem}_sst.nc")
        files = {"netcdf": nc}
        png = _render(ds, workdir / f"{stem}_sst.png", pairing.swaths)
        if png is not None:
            files["png"] = png
    return {
        "atl07_granule": granule.title,
        "segments": pairing.segments,
        "matched": pairing.matched,
        "beams": [b.beam for b in atl07.beams],
        "sst_granules_matched": pairing.matched_sources(),
        "sst_granules_considered": [g.title for g in candidates],
        "sst_collections_matched": sorted({ctx.collection_of.get(n, "") for n in pairing.matched_sources()} - {""}),
        "atl07_access": "direct" if direct else "download",
        "atl07_bytes": int(atl07_bytes),
        "warnings": list(atl07.warnings) + ([size_warning] if size_warning else []),
        "sst_warnings": list(pairing.warnings),
        "files": files,
    }


def _l2p_service(sst: Granule, access: str) -> str:
    return "S3" if access == "s3" else f"HTTPS {redact_url(sst.https_url or '')}"


def _open_l2p(sst: Granule, ctx: _GranuleContext) -> L2PGranule:
    """The L2P granule opened where it lies (S3 in region, HTTPS ranges outside): its metadata
    and latitude, read the way ``settings.l2p_read`` says (core.pipeline.sst_granules)."""
    services = ctx.services
    access = l2p_access(services.settings)
    with ctx.timer("sst_open"), _read_errors(sst.title, _l2p_service(sst, access)):
        return open_sst_granule(sst, access, session=services.http, s3_filesystem=services.s3_filesystem,
                                settings=services.settings)


def _read_l2p_window(sst: Granule, granule: L2PGranule, reaching: list[Atl07Granule],
                     ctx: _GranuleContext) -> SstSwath | None:
    """The window of an open L2P granule that can reach the segments of ``reaching``; None (and
    the reason in the granule's report) when no pixel can."""
    beams = [b for g in reaching for b in g.beams if len(b)]
    lat = np.concatenate([b.lat for b in beams]).astype(np.float64)
    lon = np.concatenate([b.lon for b in beams]).astype(np.float64)
    access = l2p_access(ctx.services.settings)
    with ctx.timer("sst_read"), _read_errors(sst.title, _l2p_service(sst, access)):
        win = granule.locate(lat, lon, ctx.science.read_radius_m)
        swath = None if win is None else granule.window(*win)
    report: dict[str, Any] = {"size": int(granule.size), "bytes_fetched": int(granule.bytes_fetched),
                              "requests": int(granule.fetch_requests), "access": access,
                              "read": ctx.services.settings.l2p_read}
    if access == "https":
        report["resolves"] = int(granule.resolves)
        report["resolved_host"] = granule.resolved_host
    report["fraction"] = round(report["bytes_fetched"] / max(report["size"], 1), 4)
    report["window"] = None if swath is None else [swath.rows.start, swath.rows.stop, swath.cols.start, swath.cols.stop]
    if swath is None:
        report["no_window"] = granule.no_window_reason
    with ctx.lock:
        ctx.sst_report[sst.title] = report
    ctx.services.report("bytes", n=report["bytes_fetched"])
    ctx.warn(_size_warning(sst.title, sst.size_bytes, int(granule.size)))
    return swath


def _preload(settings: Settings) -> None:
    """Import what later stages need in a background thread while the task waits on the
    network: the quicklook's plotting stack (matplotlib, ~0.4 s of CPU; core.products.quicklook.preload)
    and, for reads in place, s3fs/aiobotocore (~0.3 s; imported lazily by core.access.s3access)."""
    def load():
        with contextlib.suppress(ImportError):
            if l2p_access(settings) == "s3" or settings.atl07_access != "download":
                import s3fs  # noqa: F401
            from core.products.quicklook import preload

            preload()

    threading.Thread(target=load, name="preload", daemon=True).start()


@contextlib.contextmanager
def _read_errors(title: str, service: str = "S3") -> Iterator[None]:
    """A granule read in place fails as a named error of ``service``, whichever layer (s3fs,
    aiobotocore, aiohttp, requests, h5py) raised: a cut transfer, a throttled GET, a truncated
    or corrupt object."""
    try:
        yield
    except UnreadableFileError as exc:
        raise UpstreamError(f"{title}: {exc}", service=service) from None
    except ColocationError:
        raise
    except Exception as exc:
        raise UpstreamError(f"cannot read {title}: {type(exc).__name__}: {exc}"[:500], service=service) from None


def _render(ds, path: Path, swaths: list[SstSwath]) -> Path | None:
    try:
        from core.products.quicklook import render_quicklook  # matplotlib: heavy, own layer
    except ImportError as exc:
        log.warning("no quicklook: %s", exc)
        return None
    return render_quicklook(ds, path, swaths=swaths)


__all__ = ["Services", "build_services", "run_task"]
