"""The documents a run leaves behind, as typed models: what one date produced (``DateManifest``,
``manifest.json`` beside the date's products), what travels back to a caller or the state
machine for a date (``DateResult``), and what one attempt of a job produced (``RunManifest``,
written by Summarize).

The pipeline builds a ``DateManifest`` and publishes its ``document()``; the handlers, Summarize,
the job status and ``colocate run`` read stored documents back through these models instead of
``.get()`` on loose dicts. Reading is lenient about keys this version does not know (a bucket
may hold manifests of an older or newer release); writing emits exactly the keys that were set,
so a granule without segments keeps its three-key entry. No numpy: the API and Plan functions
import this.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.results import ResultStore

Number = int | float


class DocumentModel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def document(self) -> dict[str, Any]:
        """The JSON-safe document as stored (only the keys that were set)."""
        return self.model_dump(mode="json", exclude_unset=True)


class SkippedGranule(DocumentModel):
    """A granule CMR listed that was not read (its record has no data link)."""

    granule: str
    collection: str
    reason: str


class DroppedGranule(DocumentModel):
    """An L2P granule found but not colocated, and why (outside every segment's ±Δt, no window)."""

    granule: str
    reason: str


class GranuleProduct(DocumentModel):
    """One ATL07 granule's outcome: its product keys, or zero segments in the box and window."""

    atl07_granule: str
    segments: int = 0
    matched: int = 0
    beams: list[str] = Field(default_factory=list)
    sst_granules_matched: list[str] = Field(default_factory=list)
    sst_granules_considered: list[str] = Field(default_factory=list)
    sst_collections_matched: list[str] = Field(default_factory=list)
    atl07_access: Literal["direct", "download"] | None = None
    atl07_bytes: int = 0
    warnings: list[str] = Field(default_factory=list)
    sst_warnings: list[str] = Field(default_factory=list)
    outputs: dict[str, str] = Field(default_factory=dict)  # kind (netcdf, png) -> key


class DateInputs(DocumentModel):
    atl07: list[str] = Field(default_factory=list)
    sst: list[str] = Field(default_factory=list)
    skipped: list[SkippedGranule] = Field(default_factory=list)
    # L2P granules found but never read, or read no further than needed, and why
    sst_dropped: list[DroppedGranule] = Field(default_factory=list)


class DateCounts(DocumentModel):
    # a manifest of another release may count more: every number is summed all the same
    model_config = ConfigDict(extra="allow")

    atl07_granules_found: int = 0
    sst_granules_found: int = 0
    atl07_granules: int = 0
    sst_granules: int = 0
    skipped: int = 0
    sst_granules_dropped: int = 0
    segments: int = 0
    matched: int = 0


class DateBytes(DocumentModel):
    atl07_downloaded: int = 0
    sst_fetched: int = 0
    # per L2P granule: size, bytes fetched, requests, access path, window (see core.pipeline)
    sst_per_granule: dict[str, dict[str, Any]] = Field(default_factory=dict)


class DateManifest(DocumentModel):
    """One date of a request, published last (only if absent): its presence means the date is done."""

    # lenient where a stored manifest of an older release may be thinner: a date and its status
    # are what make it a result; the run that published it is "" when it does not say
    request_id: str = ""
    date: str
    run_id: str = ""
    status: Literal["complete"] = "complete"
    # the date was too recent for the collections to hold all its granules (settings'
    # collection_latency_days): not final, a later run computes it again
    provisional: bool = False
    # "synthetic": made in the offline sandbox (core.config.Settings.data_mode); older manifests say nothing
    data_mode: Literal["real", "synthetic"] = "real"
    request: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: DateInputs = Field(default_factory=DateInputs)
    products: list[GranuleProduct] = Field(default_factory=list)
    counts: DateCounts = Field(default_factory=DateCounts)
    bytes: DateBytes = Field(default_factory=DateBytes)
    outputs: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    timings_s: dict[str, float] = Field(default_factory=dict)

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs_by_kind(cls, value: Any) -> Any:
        return list(value.values()) if isinstance(value, dict) else value  # an older release's {kind: key}
    created: str = ""
    # True when this run found the date already published and returned the stored manifest
    cached: bool = Field(default=False, exclude=True)

    @classmethod
    def load(cls, store: ResultStore, request_id: str, date: str) -> DateManifest | None:
        """The published manifest of a date, or None; ValueError if the stored document is unreadable."""
        document = store.get_manifest(request_id, date)
        return None if document is None else cls.model_validate(document)

    def as_cached(self) -> DateManifest:
        copy = self.model_copy()
        copy.cached = True
        return copy

    def result(self, manifest_key: str, *, with_outputs: bool = True) -> DateResult:
        """What travels back to the caller / the Map: keys and numbers only (the manifest is on S3).

        A Map item's result leaves the product keys out (``with_outputs=False``): a date lists two
        per ATL07 granule, and a state payload must not grow with the granules of a date (30 of
        them made a 37-date inline run fail with States.DataLimitExceeded); Summarize reads
        them from the manifest."""
        result = DateResult(request_id=self.request_id, date=self.date, status=self.status, cached=self.cached,
                            manifest_key=manifest_key, outputs=list(self.outputs) if with_outputs else [],
                            counts=self.counts.model_dump(), bytes=self.bytes.model_dump(exclude={"sst_per_granule"}),
                            timings_s=dict(self.timings_s))
        if self.provisional:
            result.provisional = True
        return result


class DateResult(DocumentModel):
    """A date's answer to its caller: a complete date's keys and counts, or why it failed."""

    date: str
    status: Literal["complete", "failed"]
    request_id: str | None = None
    cached: bool = False
    provisional: bool = False  # a complete date that a later run computes again (DateManifest)
    manifest_key: str | None = None
    run_id: str | None = None
    outputs: list[str] = Field(default_factory=list)
    counts: dict[str, Number] = Field(default_factory=dict)
    bytes: dict[str, Number] = Field(default_factory=dict)
    timings_s: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    type: str | None = None

    @classmethod
    def failed(cls, date: str, error: str, error_type: str | None = None, *,
               request_id: str | None = None) -> DateResult:
        result = cls(date=date, status="failed", error=error)
        if error_type:
            result.type = error_type
        if request_id:
            result.request_id = request_id
        return result


class RunDate(DocumentModel):
    """One date in a run manifest."""

    date: str
    status: Literal["complete", "failed"]
    provisional: bool = False
    outputs: list[str] = Field(default_factory=list)
    manifest_key: str | None = None
    run_id: str | None = None
    error: str | None = None
    type: str | None = None


class RunManifest(DocumentModel):
    """One attempt of a job, folded by Summarize; written last, so its presence means the attempt ended."""

    request_id: str
    request: dict[str, Any] = Field(default_factory=dict)
    execution: str | None = None
    dates: list[RunDate] = Field(default_factory=list)
    n_dates: int = 0
    n_run: int = 0
    n_failed: int = 0
    counts: dict[str, Number] = Field(default_factory=dict)
    output_keys: list[str] = Field(default_factory=list)
    request_outputs: dict[str, Any] = Field(default_factory=dict)
    # Plan's trim (core.jobs.preflight.DateTrim): the dates asked for, kept, and why others were not
    trim: dict[str, Any] = Field(default_factory=dict)
