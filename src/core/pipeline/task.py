"""One date of a request → colocated products in the output store and the date's manifest.

``run_task`` is the unit of work of every entry point. For its date it searches CMR for ATL07
and L2P granules (:func:`search_date`), reads them with the network kept busy
(core.pipeline.date_reader: ATL07 streamed to the run's folder, or read in place; every L2P
granule within ±Δt of a segment read once, in place from S3 in us-west-2 or over HTTPS range
requests elsewhere), makes and uploads one netCDF + PNG per ATL07 granule as soon as its inputs
are read (:class:`GranulePublisher`), and publishes the date's manifest last, conditionally
(core.results): the manifest lists every L2P granule not colocated and why
(``inputs.sst_dropped``). A finished date is returned from the store, not redone.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.access.catalog import collection_doi
from core.access.cmr import CmrClient, Granule
from core.collections import profile
from core.config import Settings
from core.errors import UpstreamError, is_out_of_space, out_of_space
from core.manifest import DateManifest, DroppedGranule, GranuleProduct, SkippedGranule
from core.pipeline.atl07_inputs import Atl07Read
from core.pipeline.date_context import DateContext, iso
from core.pipeline.date_reader import DateReader
from core.pipeline.granule_products import make_granule_product
from core.pipeline.services import Services, StageTimer
from core.pipeline.workdir import workdir
from core.request import DateTask, is_provisional
from core.results import ResultStore
from core.science.pairing import SstWindow

log = logging.getLogger(__name__)


def run_task(task: DateTask, services: Services, *, run_id: str | None = None) -> DateManifest:
    """Colocate one date of a request; returns the manifest of the published result.

    Every failure ends in a :class:`ColocationError` naming its cause (a failing output bucket
    included), with none of this run's objects left in the output bucket."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return _run_task(task, services, run_id=run_id)
    except OSError as exc:
        if is_out_of_space(exc):  # a download, a product: the one named, retryable error, no path
            raise out_of_space(f"colocating {task.date.isoformat()}") from None
        raise
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
        raise UpstreamError(f"{type(exc).__name__} {code}: {exc}"[:500],
                            service=f"output bucket {services.output.location}") from None


def _run_task(task: DateTask, services: Services, *, run_id: str | None = None) -> DateManifest:
    if not task.request.is_resolved:
        raise ValueError("run_task() needs a resolved request")
    store, date = services.output, task.date.isoformat()
    existing = DateManifest.load(store, task.request_id, date)
    if existing is not None and not existing.provisional:
        log.info("date %s of %s already done: returning the stored result", date, task.request_id)
        return existing.as_cached()
    if existing is not None:
        log.info("date %s of %s was provisional: computing it again", date, task.request_id)
    run_id = run_id or uuid.uuid4().hex[:12]
    started = services.clock()
    ctx = _date_context(task, services)
    found = search_date(ctx)
    publisher = GranulePublisher(ctx, run_id)
    try:
        with workdir(Path(services.settings.download_dir)) as folder:
            publisher.folder = folder
            dropped = DateReader(found.atl07, found.sst, ctx, folder, publisher.publish).read()
        manifest = _manifest(ctx, found, publisher, dropped, started)
        if is_provisional(task.date, services.settings):
            manifest.provisional = True  # set (so stored) only when true
        if existing is not None:
            _withdraw_provisional(store, existing)
        return _publish_manifest(store, manifest, publisher.uploaded, ctx.timer)
    except BaseException:
        with contextlib.suppress(Exception):
            if publisher.uploaded and not _is_published_by(store, task.request_id, date, run_id):
                store.delete_keys(publisher.uploaded)
        raise


def _date_context(task: DateTask, services: Services) -> DateContext:
    req, settings = task.request, services.settings
    lo, hi = req.window(task.date)
    science = req.colocation_params()
    params = {
        "bbox": list(req.bbox), "bbox_margin_deg": float(settings.bbox_margin_deg),
        "start": iso(lo), "end": iso(hi), **science.as_attrs(),
        "atl07_collection": req.atl07_collection, "sst_collection": req.sst_collection,
        "sst_collections": list(req.collections),
        **({"data_mode": req.data_mode} if req.data_mode else {}),
        **_cmr_dois(req.collections, settings),
    }
    timer = StageTimer(services.clock, services.report if services.progress else None)
    return DateContext(task=task, services=services, params=params, science=science, lo=lo, hi=hi, timer=timer)


def _cmr_dois(collections: Sequence[str], settings: Settings) -> dict:
    """``{"sst_dois": {collection: DOI}}`` for the requested SST collections without a profile,
    from their UMM-C records (issue 25: cite any collection); CMR failing costs only the DOI (the
    product then cites the files' own attributes), never the date."""
    dois = {}
    for collection in collections:
        if profile(collection):
            continue
        try:
            doi = collection_doi(collection, settings)
        except Exception as exc:  # a citation is never worth a date
            log.info("no DOI from CMR for %s (%s)", collection, type(exc).__name__)
            continue
        if doi:
            dois[collection] = doi
    return {"sst_dois": dois} if dois else {}


@dataclass
class DateSearch:
    """What CMR lists for a date: the granules to read, and those skipped with their reason."""

    atl07_found: list[Granule]
    sst_found: list[Granule]
    atl07: list[Granule]
    sst: list[Granule]
    skipped: list[SkippedGranule]


def search_date(ctx: DateContext) -> DateSearch:
    """The date's ATL07 granules and, within ±Δt, the L2P granules of every requested SST collection."""
    req, services = ctx.task.request, ctx.services
    atl07_collection = req.atl07_collection
    assert atl07_collection is not None  # resolved: the request's or the default
    max_dt = timedelta(seconds=ctx.science.max_dt_s)
    # the EarthdataSession already mounts core.http's retry policy for every host; mounting it
    # again per task would only replace the adapter and drop its pooled connections
    cmr = CmrClient(services.http, services.settings, mount_retry=False)
    with ctx.timer("search"):
        atl07_found = cmr.search(atl07_collection, req.bounding_box, ctx.lo, ctx.hi)
        # every requested SST collection; a granule remembers the collection it was found in
        sst_all = [(c, g) for c in req.collections
                   for g in cmr.search(c, req.bounding_box, ctx.lo - max_dt, ctx.hi + max_dt)]
    ctx.collection_of.update({g.title: c for c, g in sst_all})
    # a granule is read whatever its catalogue size; one whose record has no data link is
    # reported with the reason, never dropped silently
    skipped = [SkippedGranule(granule=g.title, collection=c, reason=g.skip_reason)
               for c, g in [(atl07_collection, g) for g in atl07_found] + sst_all if g.skip_reason]
    found = DateSearch(atl07_found=atl07_found, sst_found=[g for _, g in sst_all],
                       atl07=[g for g in atl07_found if not g.skip_reason],
                       sst=[g for _, g in sst_all if not g.skip_reason], skipped=skipped)
    services.report("found", date=ctx.task.date.isoformat(), atl07=len(found.atl07), sst=len(found.sst),
                    skipped=len(skipped))
    for skip in skipped:
        log.warning("skipping %s granule %s: %s", skip.collection, skip.granule, skip.reason)
    return found


@dataclass
class GranulePublisher:
    """Makes each ATL07 granule's products as its inputs are ready (the date reader's one publish
    thread, joined before the task reads what it made) and uploads them under the run's keys; what
    it uploaded is withdrawn if the date fails."""

    ctx: DateContext
    run_id: str
    folder: Path | None = None
    uploaded: list[str] = field(default_factory=list)
    products: dict[str, GranuleProduct] = field(default_factory=dict)  # ATL07 title -> its entry

    def publish(self, granule: Granule, atl07_read: Atl07Read, windows: list[SstWindow]) -> None:
        assert self.folder is not None
        services, store, task = self.ctx.services, self.ctx.services.output, self.ctx.task
        made = make_granule_product(granule, atl07_read, windows, self.ctx, self.folder)
        for kind, path in made.files.items():
            key = store.output_key(task.request_id, task.date.isoformat(), self.run_id, path.name)
            with self.ctx.timer("upload"):
                store.upload(path, key, "image/png" if kind == "png" else "application/x-netcdf")
            self.uploaded.append(key)
            made.entry.outputs = {**made.entry.outputs, kind: key}
        self.products[granule.title] = made.entry
        if made.files:
            services.report("granule", title=granule.title, segments=made.entry.segments,
                            matched=made.entry.matched)

    def products_in(self, order: list[Granule]) -> list[GranuleProduct]:
        """Made as inputs arrived; listed as CMR found them."""
        return [self.products[g.title] for g in order if g.title in self.products]


def _manifest(ctx: DateContext, found: DateSearch, publisher: GranulePublisher, dropped: list[DroppedGranule],
              started: float) -> DateManifest:
    task, sst_report = ctx.task, ctx.sst_report
    products = publisher.products_in(found.atl07)
    return DateManifest(
        request_id=task.request_id, date=task.date.isoformat(), run_id=publisher.run_id, status="complete",
        request=task.request.canonical(), parameters=ctx.params, data_mode=task.request.data_mode or "real",
        inputs={"atl07": [g.title for g in found.atl07], "sst": [g.title for g in found.sst],
                "skipped": found.skipped, "sst_dropped": dropped},
        products=products,
        counts={"atl07_granules_found": len(found.atl07_found), "sst_granules_found": len(found.sst_found),
                "atl07_granules": len(found.atl07), "sst_granules": len(found.sst), "skipped": len(found.skipped),
                "sst_granules_dropped": len(dropped), "segments": sum(p.segments for p in products),
                "matched": sum(p.matched for p in products)},
        bytes={"atl07_downloaded": sum(p.atl07_bytes for p in products),
               "sst_fetched": sum(r["bytes_fetched"] for r in sst_report.values()), "sst_per_granule": sst_report},
        outputs=list(publisher.uploaded),
        warnings=list(ctx.warnings),
        timings_s={**ctx.timer.seconds, "total": round(ctx.services.clock() - started, 3)},
        created=iso(datetime.now(UTC)),
    )


def _publish_manifest(store: ResultStore, manifest: DateManifest, uploaded: list[str],
                      timer: StageTimer) -> DateManifest:
    """Publish the date's manifest unless another run did first (then its result is the date's)."""
    with timer("publish"):
        published = store.publish_manifest(manifest.request_id, manifest.date, manifest.document())
    if not published:
        winner = DateManifest.load(store, manifest.request_id, manifest.date)
        if winner is None or winner.run_id != manifest.run_id:
            # another run of this date finished first: keep its result, drop ours
            store.delete_keys(uploaded)
            return (winner or manifest).as_cached()
        # ours: the PUT landed, its answer was lost and the client's retry got 412
    _remove_orphans(store, manifest)
    return manifest


def _withdraw_provisional(store: ResultStore, provisional: DateManifest) -> None:
    """Remove a provisional manifest this run recomputed, if it is still the stored one (a run
    that published meanwhile wins the conditional publish that follows); its outputs become
    orphans that the publish removes."""
    current = DateManifest.load(store, provisional.request_id, provisional.date)
    if current is not None and current.provisional and current.run_id == provisional.run_id:
        store.delete_keys([store.manifest_key(provisional.request_id, provisional.date)])


def _is_published_by(store: ResultStore, request_id: str, date: str, run_id: str) -> bool:
    """Whether the date's manifest is this run's (then its outputs must stay)."""
    current = DateManifest.load(store, request_id, date)
    return current is not None and current.run_id == run_id


def _remove_orphans(store: ResultStore, manifest: DateManifest) -> None:
    """Once a date is published, anything else under it is a dead or losing run's output.

    Best effort and never raising: the date is published, and a failure here must not reach
    run_task's clean-up of the (now published) outputs; the bucket's lifecycle rule is the backstop."""
    request_id, date = manifest.request_id, manifest.date
    keep = set(manifest.outputs) | {store.manifest_key(request_id, date)}
    try:
        orphans = [k for k in store.list_keys(store.date_prefix(request_id, date) + "/") if k not in keep]
        if orphans:
            log.info("removing %d unpublished objects of earlier runs of %s", len(orphans), date)
            store.delete_keys(orphans)
    except Exception as exc:
        log.warning("could not remove unpublished objects of earlier runs of %s: %s", date, type(exc).__name__)


__all__ = ["DateSearch", "GranulePublisher", "run_task", "search_date"]
