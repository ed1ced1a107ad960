"""One date run as the tests read it: the manifest as the bucket holds it (JSON), with
``cached`` when the run found the date already published."""
from __future__ import annotations

from core.pipeline.task import run_task


def run_date(task, services, **kwargs) -> dict:
    manifest = run_task(task, services, **kwargs)
    document = manifest.document()
    return {**document, "cached": True} if manifest.cached else document
