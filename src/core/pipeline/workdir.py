"""A private, locked folder per run under the download folder, and what it may use of the disk.

A killed Lambda leaves /tmp to the next invocation: a new run first removes the folders of runs
that died, so their partial downloads are neither reused nor left to fill the disk."""
from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from core.config import Settings

log = logging.getLogger(__name__)

WORKDIR_PREFIX = "coloc-"
WORKDIR_LOCK = ".lock"  # held (flock) while a run lives; free once its process is gone
STALE_UNLOCKED_S = 60.0  # a workdir without a lock file is only a dead run's after this long


def _remove_if_stale(path: Path) -> None:
    with contextlib.suppress(OSError):
        if time.time() - path.stat().st_mtime > STALE_UNLOCKED_S:
            shutil.rmtree(path, ignore_errors=True)


def remove_stale_workdirs(download_dir: Path) -> None:
    """Delete workdirs of runs that died: their partial downloads must neither be reused nor fill the disk."""
    for path in download_dir.glob("." + WORKDIR_PREFIX + "*"):  # died before it was locked
        _remove_if_stale(path)
    for path in download_dir.glob(WORKDIR_PREFIX + "*"):
        if not path.is_dir():
            continue
        try:
            lock = open(path / WORKDIR_LOCK, "a")
        except FileNotFoundError:
            _remove_if_stale(path)
            continue
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run (this or another process)
            log.info("removing the workdir of a dead run: %s", path.name)
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def workdir(download_dir: Path) -> Iterator[Path]:
    """A private, locked directory for one run under ``download_dir``, removed afterwards."""
    download_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_workdirs(download_dir)
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


def disk_usage(settings: Settings) -> Callable[[str], Any]:
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
