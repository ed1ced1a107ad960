"""What every stage of one date's task shares: the task, the clients, the parameters as
recorded, the stage timer, and what the date's reads report (per L2P granule, warnings)."""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.errors import ColocationError, UnreadableFileError, UpstreamError
from core.params import ColocationParams
from core.pipeline.services import Services, StageTimer
from core.request import DateTask

log = logging.getLogger(__name__)


@dataclass
class DateContext:
    """What every ATL07 and L2P granule of one date task shares (built once per task)."""

    task: DateTask
    services: Services
    params: dict  # processing parameters, as recorded in the manifest and the product
    science: ColocationParams
    lo: datetime
    hi: datetime
    timer: StageTimer
    collection_of: dict[str, str] = field(default_factory=dict)  # L2P granule title -> its SST collection
    sst_report: dict[str, dict[str, Any]] = field(default_factory=dict)  # per L2P granule: bytes, window, access
    warnings: list[str] = field(default_factory=list)  # the date's warnings (e.g. CMR sizes that disagree)
    lock: threading.Lock = field(default_factory=threading.Lock)  # reads run side by side

    def warn(self, text: str | None) -> str | None:
        """Record (and log) a warning."""
        if text:
            with self.lock:
                log.warning("%s", text)
                self.warnings.append(text)
        return text

    def report_sst(self, title: str, report: dict[str, Any]) -> None:
        with self.lock:
            self.sst_report[title] = report


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def np_utc(t: datetime) -> np.datetime64:
    return np.datetime64(t.astimezone(UTC).replace(tzinfo=None), "ns")


def size_warning(title: str, cmr_size: int | None, actual: int) -> str | None:
    """CMR's size and the transfer's own can disagree; the transfer's is the one verified."""
    if cmr_size and cmr_size != actual:
        return f"{title}: CMR lists {cmr_size} bytes, the server sent {actual} (the server's size was used)"
    return None


@contextlib.contextmanager
def read_errors(title: str, service: str = "S3") -> Iterator[None]:
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
