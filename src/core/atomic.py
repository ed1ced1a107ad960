"""Write a file under a temporary name in the same directory, then rename it into place; make a
name that came from a remote service safe to use as a file name or an S3 key's last part."""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path

# POSIX NAME_MAX is 255 bytes; a download's temporary name adds "." + "." + 8 random + ".part"
# and a product adds "_sst.nc": keep the name well below it.
MAX_NAME_BYTES = 200
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class UnsafeNameError(ValueError):
    """A remote name that cannot be made a safe basename; the message says why (no echo of it)."""


def safe_basename(name: str) -> str:
    """``name`` (a CMR ProducerGranuleId, a data file's Name, a URL's last segment) as a file
    name that stays inside the folder it is joined to and is a valid S3 key segment.

    Only the last component survives (``/`` and ``\\`` both separate), so ``../../etc/x.h5``
    or ``/abs/x.h5`` become ``x.h5``; a name that is empty after that, ``.``/``..``, hidden (a
    leading ``.``: the download's own ``.part`` names), holding control characters or longer
    than :data:`MAX_NAME_BYTES` raises :class:`UnsafeNameError` (the granule is skipped)."""
    if not isinstance(name, str):
        raise UnsafeNameError("the file name is not a string")
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not base or base in (".", ".."):
        raise UnsafeNameError("the file name is empty or a directory reference")
    if base.startswith("."):
        raise UnsafeNameError("the file name starts with '.' (a hidden name)")
    if _UNSAFE_CHARS.search(base):
        raise UnsafeNameError("the file name holds control characters")
    if len(base.encode("utf-8")) > MAX_NAME_BYTES:
        raise UnsafeNameError(f"the file name is longer than {MAX_NAME_BYTES} bytes")
    return base


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is
    removed, so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
