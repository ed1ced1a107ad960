"""moto serving a ranged GET the way S3 does: only the range is read.

moto 5 answers a ranged GET by reading the whole object (``FakeKey.value``: e.g. a 245 MB read
under the key's lock, per request) and slicing it: a sandbox cost S3 does not have, which swamps
the network model for readers that make many range requests (a chunk-exact read of an ATL07
granule: ~1,000 ranges took 350 s instead of the ledger's 62 s). :func:`moto_reads_only_the_range`
patches moto (in the sandbox's process, where it serves) so that a simple ranged GET reads only
its range; every other request is served as before.
"""
from __future__ import annotations

import threading

_PATCHED = threading.Lock()
_done = False


def moto_reads_only_the_range() -> None:
    """Patch moto in this process (idempotent): a simple ranged GET reads only its range."""
    global _done
    with _PATCHED:
        if _done:
            return
        _done = True
    from moto.s3 import models, responses

    ranged = threading.local()
    whole = models.FakeKey.value

    class Lazy:  # what _handle_range_header needs of the object's content: its length and a slice
        def __init__(self, key):
            self.key = key

        def __len__(self) -> int:
            return self.key.contentsize

        def __getitem__(self, part: slice) -> bytes:
            with self.key.lock:
                self.key._value_buffer.seek(part.start)
                return self.key._value_buffer.read(part.stop - part.start)

    def value(key):
        return Lazy(key) if getattr(ranged, "on", False) else whole.fget(key)

    models.FakeKey.value = property(value, whole.fset)
    key_response = responses.S3Response._key_response

    def _key_response(self, request, full_url):
        spec = request.headers.get("range", "")
        ranged.on = request.method == "GET" and spec.startswith("bytes=") and "," not in spec
        try:
            return key_response(self, request, full_url)
        finally:
            ranged.on = False

    responses.S3Response._key_response = _key_response
