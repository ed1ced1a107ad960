"""The colocation request shared by every entry point (direct event, API body, Step Functions item).

Optional science parameters stay ``None`` when the caller leaves them out; :meth:`resolve` fills
them from :class:`core.config.Settings`, and the resolved request is what gets planned, hashed
into the request id and passed to the per-date tasks (so a settings change between the plan and
the tasks cannot mix parameters within one run).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from core.collections import COLLECTION_SYNTAX, is_collection
from core.config import Settings
from core.errors import InputError
from core.params import FOOTPRINT, ColocationParams

DATE_ONLY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
YEARS = (1980, 2100)  # sane bounds (ICESat-2 flies since 2018); also keeps date arithmetic in range
MAX_RADIUS_M = 50_000.0
MAX_SST_COLLECTIONS = 8
MAX_DT_S = 7 * 86_400.0
MAX_TEXT = 64  # longest collection / time string accepted (keeps error paths cheap)
HARD_MAX_DATES = Settings().max_dates  # model-level cap; resolve() applies the configured one

_CORNERS = ("west", "south", "east", "north")


def _field_error(field: str, message: str) -> PydanticCustomError:
    # cross-field errors have an empty loc; the field travels in ctx so callers can name it
    return PydanticCustomError("field_error", "{field}: {detail}", {"field": field, "detail": message})


def _parse_time(value: Any, field: str, *, end: bool) -> dt.datetime:
    if isinstance(value, dt.datetime):
        t = value
    elif isinstance(value, dt.date):
        t = dt.datetime.combine(value, dt.time())
        if end:
            t += dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    elif isinstance(value, str) and len(value) <= MAX_TEXT:
        text = value.strip()
        try:
            if DATE_ONLY.match(text):
                # a bare end date means the whole of that day
                return _parse_time(dt.date.fromisoformat(text), field, end=end)
            t = dt.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{field} must be an ISO-8601 date or time, e.g. 2019-06-22T00:00:00Z") from None
    else:
        raise ValueError(f"{field} must be an ISO-8601 date or time string")
    if not YEARS[0] <= t.year <= YEARS[1]:
        raise ValueError(f"{field} must be between {YEARS[0]} and {YEARS[1]}")
    if t.tzinfo is None:
        return t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC)


def _parse_date(value: Any) -> Any:
    if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
        return value
    if not isinstance(value, str) or not DATE_ONLY.match(value.strip()):
        raise ValueError("date must be a string YYYY-MM-DD (use start/end for times)")
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("not a valid calendar date") from None
    if not YEARS[0] <= day.year <= YEARS[1]:
        raise ValueError(f"date must be between {YEARS[0]} and {YEARS[1]}")
    return day


def _collection(value: str, field: str) -> str:
    # the syntax only (core.access.catalog's, also used for searches); whether CMR has it is asked later
    if is_collection(value):
        return value
    raise ValueError(f"{field} must be {COLLECTION_SYNTAX}")


def _positive_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite")
    return value


def check_bbox(value: Any) -> tuple[float, float, float, float]:
    """[west, south, east, north] in degrees (west > east crosses the antimeridian)."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError("bbox must be a list of 4 numbers [west, south, east, north]")
    if len(value) != 4:
        raise ValueError(f"bbox must have exactly 4 numbers [west, south, east, north], got {len(value)}")
    w, s, e, n = (_positive_number(f"bbox {c}", v) for c, v in zip(_CORNERS, value, strict=True))
    for name, v in (("west", w), ("east", e)):
        if not -180.0 <= v <= 180.0:
            raise ValueError(f"bbox {name} must be within [-180, 180] degrees")
    for name, v in (("south", s), ("north", n)):
        if not -90.0 <= v <= 90.0:
            raise ValueError(f"bbox {name} must be within [-90, 90] degrees")
    if not s < n:
        raise ValueError("bbox south must be less than north")
    if w == e:
        raise ValueError("bbox west and east must differ (west > east crosses the antimeridian)")
    if e < w < e + 180.0:
        # swapped corners (e.g. [-56.4, 81.7, -62.8, 83]) would run as a box almost round the globe
        raise ValueError(f"west {w:g} > east {e:g} makes a box {360.0 - (w - e):g}° wide across the antimeridian; "
                         f"for the {w - e:g}° between them give west first ({e:g},{s:g},{w:g},{n:g}); "
                         f"for every longitude -180,{s:g},180,{n:g}")
    # -0.0 and 0.0 must hash alike
    return (w + 0.0, s + 0.0, e + 0.0, n + 0.0)


def _braces(text: str) -> str:
    """A message as a pydantic message template (its braces are text)."""
    return text.replace("{", "{{").replace("}", "}}")


def _when_choice(date: Any, start: Any, end: Any) -> tuple[str, str] | None:
    """(field, problem) of a request's choice between one date and a start/end range, or None."""
    if date is not None:
        return ("date", "give either date or start and end, not both") if start is not None or end is not None else None
    if start is None and end is None:
        return "date", "give a date (YYYY-MM-DD) or a start and end"
    if start is None:
        return "start", "required with end"
    if end is None:
        return "end", "required with start"
    return None


Collection = Annotated[str | None, Field(default=None, max_length=100)]
BBoxDegrees = Annotated[tuple[float, float, float, float], BeforeValidator(check_bbox)]


class ColocationParameters(BaseModel):
    """How to colocate: collections and the science parameters (every entry point, and
    ``colocate files`` / ``colocate run``, validate them with this one model)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    atl07_collection: Collection = None
    sst_collection: Collection = None
    sst_collections: tuple[str, ...] | None = Field(
        default=None, description="several SST collections; the best match across all of them wins")
    radius_m: StrictFloat | Literal["footprint"] | None = Field(
        default=None, description="metres, or 'footprint': each L2P swath's local pixel size")
    max_dt_s: StrictFloat | None = Field(default=None, ge=0, le=MAX_DT_S, allow_inf_nan=False)
    # an explicit null: no quality screening (the only way to colocate a product without quality_level)
    min_quality_level: StrictInt | None = Field(default=None, ge=0, le=5)
    exclude_ice: StrictBool | None = Field(
        default=None, description="true: pixels whose L2P ice bit is set are never matched (default false)")

    @field_validator("exclude_ice")
    @classmethod
    def _check_exclude_ice(cls, value: bool | None) -> bool | None:
        return True if value else None  # false is the default: it must not change the request id

    @field_validator("atl07_collection", "sst_collection")
    @classmethod
    def _check_collection(cls, value: str | None, info) -> str | None:
        return None if value is None else _collection(value, info.field_name)

    @field_validator("sst_collections", mode="before")
    @classmethod
    def _check_collections(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, (list, tuple)) or not value or len(value) > MAX_SST_COLLECTIONS:
            raise ValueError(f"sst_collections must be a list of 1 to {MAX_SST_COLLECTIONS} collections")
        if not all(isinstance(v, str) and len(v) <= 100 for v in value):
            raise ValueError("sst_collections must be a list of collection names (strings)")
        return tuple(dict.fromkeys(_collection(v.strip(), "sst_collections") for v in value))

    @field_validator("radius_m", mode="before")
    @classmethod
    def _check_radius(cls, value: Any) -> Any:
        if value is None or value == FOOTPRINT:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"radius_m must be a number of metres or {FOOTPRINT!r}")
        if not (math.isfinite(value) and 0 < value <= MAX_RADIUS_M):
            raise ValueError(f"radius_m must be greater than 0 and at most {MAX_RADIUS_M:g} m")
        return float(value)

    @model_validator(mode="after")
    def _check_collection_choice(self) -> ColocationParameters:
        if self.sst_collection is not None and self.sst_collections is not None:
            raise _field_error("sst_collections", "give sst_collection or sst_collections, not both")
        return self

    def _science_defaults(self, settings: Settings) -> dict:
        """The science parameters with what the caller left out taken from ``settings``."""
        radius = self.radius_m if self.radius_m is not None else settings.radius_m
        return {
            "radius_m": radius if radius == FOOTPRINT else float(radius),
            "max_dt_s": float(self.max_dt_s if self.max_dt_s is not None else settings.max_dt_s),
            "min_quality_level": None if self.no_quality_screening else int(
                self.min_quality_level if self.min_quality_level is not None
                else settings.min_quality_level
            ),
        }

    @property
    def no_quality_screening(self) -> bool:
        """The caller asked for min_quality_level null (not merely left it out)."""
        return self.min_quality_level is None and "min_quality_level" in self.model_fields_set

    def colocation_params(self) -> ColocationParams:
        """The science parameters of a resolved request."""
        assert self.radius_m is not None and self.max_dt_s is not None, "resolve(settings) first"
        return ColocationParams(radius_m=self.radius_m, max_dt_s=float(self.max_dt_s),
                                min_quality_level=None if self.min_quality_level is None
                                else int(self.min_quality_level), exclude_ice=bool(self.exclude_ice))


class LocalFilesRequest(ColocationParameters):
    """``colocate files``: the parameters, and an optional bbox restricting the segments."""

    bbox: BBoxDegrees | None = None

    def resolve(self, settings: Settings) -> LocalFilesRequest:
        return self.model_copy(update=self._science_defaults(settings))


class ColocationRequest(ColocationParameters):
    """What to colocate: where (bbox), when (one date or a start/end range) and how."""

    bbox: BBoxDegrees = Field(
        description="[west, south, east, north] in degrees; west > east crosses the antimeridian"
    )
    date: dt.date | None = Field(default=None, description="one UTC day, YYYY-MM-DD")
    start: dt.datetime | None = Field(default=None, description="ISO-8601 start (UTC if no zone)")
    end: dt.datetime | None = Field(default=None, description="ISO-8601 end, >= start")
    # the job-id key (settings.job_id_key) this request's id is computed under; never serialised
    _job_key: bytes = PrivateAttr(default=b"")
    # set by resolve() from Settings.data_mode (a caller's value is replaced): part of the
    # request id, so a sandbox (synthetic) request never gets the id of the same request on NASA's data
    data_mode: Literal["synthetic"] | None = Field(
        default=None, description="set by the service: 'synthetic' in the offline sandbox")

    # --- field checks ------------------------------------------------------------------------
    @field_validator("date", mode="before")
    @classmethod
    def _check_date(cls, value: Any) -> Any:
        return _parse_date(value)

    @field_validator("start", mode="before")
    @classmethod
    def _check_start(cls, value: Any) -> Any:
        return None if value is None else _parse_time(value, "start", end=False)

    @field_validator("end", mode="before")
    @classmethod
    def _check_end(cls, value: Any) -> Any:
        return None if value is None else _parse_time(value, "end", end=True)

    @model_validator(mode="wrap")
    @classmethod
    def _every_bad_field_at_once(cls, data: Any, handler) -> Any:
        """A body with bad fields *and* a bad date/start/end choice names them all: pydantic
        skips the after-validator below once a field has failed."""
        try:
            return handler(data)
        except ValidationError as exc:
            when = [data.get(k) for k in ("date", "start", "end")] if isinstance(data, Mapping) else None
            choice = None if when is None else _when_choice(*when)
            if choice is None or any(e["type"] == "field_error" for e in exc.errors()):
                raise
            errors: list[Any] = [{"type": PydanticCustomError(e["type"], _braces(e["msg"])), "loc": e["loc"],
                                  "input": e.get("input")} for e in exc.errors()]
            errors.append({"type": _field_error(*choice), "loc": (), "input": data})
            raise ValidationError.from_exception_data(cls.__name__, errors) from None

    @model_validator(mode="after")
    def _check_when(self) -> ColocationRequest:
        choice = _when_choice(self.date, self.start, self.end)
        if choice is not None:
            raise _field_error(*choice)
        if self.start is not None and self.end is not None and self.end < self.start:
            raise _field_error("end", "end must not be before start")
        self._check_not_future()
        n = len(self._date_span())
        if n > HARD_MAX_DATES:
            raise _field_error("end", f"the range covers {n} days; at most {HARD_MAX_DATES} are allowed")
        return self

    def _check_not_future(self) -> None:
        """No granule of a date after today (UTC) exists: refused, naming the field, rather than
        published as an empty result."""
        today = dt.datetime.now(dt.UTC).date()
        for name, value in (("date", self.date), ("start", self.start), ("end", self.end)):
            day = value.date() if isinstance(value, dt.datetime) else value
            if day is not None and day > today:
                raise _field_error(name, f"{name} {day.isoformat()} is after today ({today.isoformat()} UTC): "
                                         "no data exists for it yet")

    # --- derived values ----------------------------------------------------------------------
    def _date_span(self) -> list[dt.date]:
        if self.date is not None:
            return [self.date]
        assert self.start is not None and self.end is not None  # the model validator requires them
        first = self.start.date()
        last = self.end.date()
        # an end exactly at midnight (after start) does not reach into that day
        if self.end > self.start and self.end.time() == dt.time(0):
            last -= dt.timedelta(days=1)
        if (last - first).days > HARD_MAX_DATES:  # cheap guard before building a list
            return [first] * (HARD_MAX_DATES + 1)
        return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]

    def dates(self) -> list[dt.date]:
        """Every UTC date the request touches, in order."""
        return self._date_span()

    def window(self, day: dt.date | None = None) -> tuple[dt.datetime, dt.datetime]:
        """The UTC time window [start, end] of the request, clipped to ``day`` when given."""
        if self.date is not None:
            lo = dt.datetime.combine(self.date, dt.time(), dt.UTC)
            hi = lo + dt.timedelta(days=1) - dt.timedelta(microseconds=1)
        else:
            assert self.start is not None and self.end is not None  # the model validator requires them
            lo, hi = self.start, self.end
        if day is not None:
            d0 = dt.datetime.combine(day, dt.time(), dt.UTC)
            lo, hi = max(lo, d0), min(hi, d0 + dt.timedelta(days=1) - dt.timedelta(microseconds=1))
        return lo, hi

    @property
    def bounding_box(self):
        """The bbox as a :class:`core.model.BBox` (imported here: the small functions ship no numpy)."""
        from core.model import BBox

        return BBox(*self.bbox)

    def resolve(self, settings: Settings) -> ColocationRequest:
        """A copy with every optional parameter filled from ``settings``; checks ``max_dates``."""
        n = len(self.dates())
        if n > settings.max_dates:
            raise InputError(f"end: the range covers {n} days; at most {settings.max_dates} are allowed", "end")
        collections = self.sst_collections or (self.sst_collection or settings.sst_collection,)
        return self.model_copy(
            update={
                "atl07_collection": self.atl07_collection or settings.atl07_collection,
                # one collection keeps the one-collection form (and so its request id)
                "sst_collection": collections[0] if len(collections) == 1 else None,
                "sst_collections": collections if len(collections) > 1 else None,
                **self._science_defaults(settings),
                "data_mode": "synthetic" if settings.data_mode == "synthetic" else None,
            }
        ).with_job_key(settings)

    def with_job_key(self, settings: Settings) -> ColocationRequest:
        """This request with its id computed under ``settings.job_id_key`` (a Map item's request
        gets it again in the function that runs it: the key never travels in a payload)."""
        copy = self.model_copy()
        copy._job_key = settings.job_id_key.get_secret_value().encode()
        return copy

    @property
    def collections(self) -> tuple[str, ...]:
        """The SST collections of a resolved request, in the caller's order."""
        return self.sst_collections or ((self.sst_collection,) if self.sst_collection else ())

    @property
    def is_resolved(self) -> bool:
        return None not in (self.atl07_collection, self.radius_m, self.max_dt_s) and bool(self.collections) and (
            self.min_quality_level is not None or self.no_quality_screening)

    def canonical(self) -> dict:
        """JSON-safe, normalised form (what request_id hashes and what travels between steps)."""
        out = self.model_dump(mode="json", exclude_none=True)
        if self.no_quality_screening:
            out["min_quality_level"] = None  # explicit: it must survive the trip to the tasks
        out["bbox"] = [float(v) for v in self.bbox]
        if self.start is not None and self.end is not None:
            out["start"] = self.start.isoformat().replace("+00:00", "Z")
            out["end"] = self.end.isoformat().replace("+00:00", "Z")
        return out

    def request_id(self) -> str:
        """Deterministic short id of the *resolved* request: same parameters (and key) → same
        output keys, so a request posted again is the same job (docs/RERUNS.md).

        Call it on ``resolve(settings)``'s result so defaults are part of the identity. Under a
        job-id key (the stack's secret) it is an HMAC-SHA256 of the parameters, which nobody
        without the key can compute from them; without one (a local run) a plain SHA-256.
        """
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":")).encode()
        if self._job_key:
            return "r" + hmac.new(self._job_key, blob, hashlib.sha256).hexdigest()[:20]
        return "r" + hashlib.sha256(blob).hexdigest()[:20]


def is_provisional(day: dt.date, settings: Settings, today: dt.date | None = None) -> bool:
    """Whether ``day`` is recent enough that the collections may not hold all its granules yet
    (``settings.collection_latency_days``): its result is provisional, computed again later."""
    today = today or dt.datetime.now(dt.UTC).date()
    return (today - day).days < settings.collection_latency_days


@dataclass(frozen=True)
class DateTask:
    """One UTC date of a (resolved) request: the unit of work of the colocate function."""

    request: ColocationRequest
    date: dt.date

    @property
    def request_id(self) -> str:
        return self.request.request_id()

    def to_item(self) -> dict:
        """The Step Functions Map item (small: parameters only)."""
        return {"request": self.request.canonical(), "date": self.date.isoformat()}

    @classmethod
    def from_item(cls, item: Any) -> DateTask:
        """Parse a Map item; raises :class:`pydantic.ValidationError` or :class:`InputError`."""
        return TaskItem.model_validate(item).to_task()


class TaskItem(BaseModel):
    """Step Functions Map item: ``{"request": {...}, "date": "YYYY-MM-DD"}``."""

    model_config = ConfigDict(extra="forbid")
    request: ColocationRequest
    date: dt.date

    @field_validator("date", mode="before")
    @classmethod
    def _check_date(cls, value: Any) -> Any:
        return _parse_date(value)

    def to_task(self) -> DateTask:
        if self.date not in self.request.dates():
            raise InputError("date: not one of the request's dates", "date")
        return DateTask(self.request, self.date)


def parse_request(data: Any, settings: Settings | None = None) -> ColocationRequest:
    """Validate a raw request (dict) and resolve its defaults; raises ValidationError/InputError."""
    req = ColocationRequest.model_validate(data)
    return req.resolve(settings or Settings())


def error_fields(exc: ValidationError | InputError, *, limit: int = 20) -> list[dict[str, str]]:
    """``[{"field": "bbox", "message": "..."}]`` for a caller: no stack trace, no echo of the input."""
    if isinstance(exc, InputError):
        field = exc.field or "request"
        return [{"field": field, "message": _short(_named_once(field, str(exc)))}]
    return fields_from_errors(exc.errors(include_url=False, include_input=False, include_context=True),
                              limit=limit)


def fields_from_errors(errors: Sequence[Mapping[str, Any]], *, whole: str = "request",
                       limit: int = 20) -> list[dict[str, str]]:
    """Pydantic-style error dicts (also Powertools' RequestValidationError.errors()) as field
    messages; ``whole`` names the request itself (e.g. "body" for an API body)."""
    out: list[dict[str, str]] = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if not isinstance(p, int)]
        # drop Powertools/pydantic wrapper segments ("body", union tags like "function-after[...]")
        loc = [p for p in loc if p not in ("body",) and "[" not in p]
        ctx = err.get("ctx") or {}
        if err.get("type") == "field_error" and ctx.get("field") and loc[-1:] != [str(ctx["field"])]:
            loc.append(str(ctx["field"]))  # a model-level check (maybe nested): its field is in ctx
        field = ".".join(loc)[:64] or whole
        message = err.get("msg", "invalid value")
        if err.get("type") == "field_error":
            message = str(ctx.get("detail", message))
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        elif err.get("type") == "extra_forbidden":
            message = "unknown field (not allowed)"
        elif err.get("type") in ("model_type", "dict_type", "model_attributes_type", "json_invalid"):
            field, message = whole, f"the {whole} must be a JSON object"
        entry = {"field": field, "message": _short(_named_once(field, message))}
        if entry not in out:
            out.append(entry)
        if len(out) >= limit:
            break
    return out or [{"field": whole, "message": "invalid request"}]


def _named_once(field: str, message: str) -> str:
    """The message without its own leading field name: the caller shows the field beside it
    (``--radius-m: must be …``, not ``--radius-m: radius_m must be …``)."""
    name = field.rsplit(".", 1)[-1]
    for prefix in (f"{name}: ", f"{name} "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def _short(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
