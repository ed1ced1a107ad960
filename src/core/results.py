"""Where results live (an S3 bucket, or a local folder), and how they become visible.

Layout (deterministic, derived from the request; the same keys in a bucket and in a folder)::

    <prefix>/<request_id>/<date>/manifest.json           written last: a date is done iff this exists
    <prefix>/<request_id>/<date>/<run_id>/<granule>.nc   outputs of the run that won the manifest
    <prefix>/<request_id>/<date>/<run_id>/<granule>.png
    <prefix>/<request_id>/run-manifest.json              summary of a Step Functions run
    <prefix>/<request_id>/request/<run>/<request_id>_matches.nc   request-level netCDF of one Summarize run
    <prefix>/<request_id>/parquet/request_id=<request_id>/date=<date>/part-<date's run_id>.parquet
                                                         matches of a date (Athena; Hive partitions)
    <prefix>/<request_id>/pixels/request_id=<request_id>/date=<date>/part-<date's run_id>.parquet
                                                         the pixel-scale table of a date (Glue table pixels)
    <prefix>/_plans/<request_id>.json                    date plan for the distributed map

Outputs of a run are staged under its own ``run_id`` and published by one conditional put of
the manifest (S3: ``If-None-Match: *``; a folder: a hard link that fails if the name exists),
so two concurrent runs of one date leave exactly one complete result and the loser removes
its own files. A run that dies before the manifest leaves only unreferenced objects under its
run_id (see the bucket's lifecycle rule).

:class:`ResultStore` is what the pipeline needs; :class:`OutputStore` keeps results in S3 (the
Lambda functions), :class:`LocalOutputStore` in a folder (``colocate run``).

The request-level results (core.products.request_outputs) are written by Summarize: the netCDF under
the Summarize run's own key, referenced by the run manifest written after it (the previous
run's file is removed once the new manifest is up); the Parquet file of a date is named after
that date's published run, so it is derived from exactly one published result and is written
once: later attempts keep it, a recomputed date replaces it.
"""
from __future__ import annotations

import abc
import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
RUN_MANIFEST = "run-manifest.json"


def _is_code(err: ClientError, *codes: str) -> bool:
    error = err.response.get("Error", {})
    status = str(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return error.get("Code") in codes or status in codes


def _dumps(document: dict) -> bytes:
    return json.dumps(document, indent=2, sort_keys=True).encode()


class ResultStore(abc.ABC):
    """The key layout and the JSON documents, over a handful of storage primitives."""

    prefix: str

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the results are, for messages (``s3://bucket``, a folder path)."""

    # --- storage primitives ----------------------------------------------------------------
    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes | None:
        """The object's body, None if it does not exist."""

    @abc.abstractmethod
    def put_bytes(self, key: str, body: bytes, content_type: str, *, if_absent: bool = False) -> bool:
        """Write ``key``; with ``if_absent`` only if it does not exist yet (False: it did)."""

    @abc.abstractmethod
    def upload(self, path: Path, key: str, content_type: str) -> int:
        """Store the file at ``path`` under ``key``; returns its size."""

    @abc.abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``."""

    @abc.abstractmethod
    def download(self, key: str, path: Path) -> None:
        """Copy the object ``key`` to the local file ``path``."""

    @abc.abstractmethod
    def delete_keys(self, keys: list[str]) -> None:
        """Best effort: a key that cannot be deleted is logged, not raised."""

    @abc.abstractmethod
    def presign(self, key: str, expires_s: int) -> str:
        """A URL the caller can fetch the object with."""

    # --- keys ----------------------------------------------------------------------------
    def date_prefix(self, request_id: str, date: str) -> str:
        return f"{self.prefix}/{request_id}/{date}"

    def manifest_key(self, request_id: str, date: str) -> str:
        return f"{self.date_prefix(request_id, date)}/{MANIFEST}"

    def output_key(self, request_id: str, date: str, run_id: str, name: str) -> str:
        """A product's key; ``name`` (derived from a granule's remote name) only as a safe basename."""
        from core.atomic import safe_basename

        return f"{self.date_prefix(request_id, date)}/{run_id}/{safe_basename(name)}"

    def run_manifest_key(self, request_id: str) -> str:
        return f"{self.prefix}/{request_id}/{RUN_MANIFEST}"

    def plan_key(self, request_id: str) -> str:
        return f"{self.prefix}/_plans/{request_id}.json"

    def request_netcdf_key(self, request_id: str, run_id: str) -> str:
        from core.products.request_outputs import NETCDF_NAME

        return f"{self.prefix}/{request_id}/request/{run_id}/{NETCDF_NAME.format(request_id=request_id)}"

    def parquet_prefix(self, request_id: str) -> str:
        """Where the Glue table's partition projection finds a request's Parquet files: inside the
        request's folder, as a ``request_id=`` Hive partition, so DuckDB, pyarrow and pandas see
        the request_id column Athena's table has (core.products.tables)."""
        return f"{self.prefix}/{request_id}/parquet/request_id={request_id}/"

    def pixels_prefix(self, request_id: str) -> str:
        """Where the Glue table ``pixels`` finds a request's pixel-scale Parquet files."""
        return f"{self.prefix}/{request_id}/pixels/request_id={request_id}/"

    def partition_key(self, request_id: str, date: str, run_id: str, table: str = "matches") -> str:
        from core.products.request_outputs import PARQUET_NAME

        prefix = self.pixels_prefix(request_id) if table == "pixels" else self.parquet_prefix(request_id)
        return f"{prefix}date={date}/{PARQUET_NAME.format(run_id=run_id)}"

    # --- documents -----------------------------------------------------------------------
    def get_json(self, key: str) -> dict | None:
        body = self.get_bytes(key)
        return None if body is None else json.loads(body)

    def get_manifest(self, request_id: str, date: str) -> dict | None:
        return self.get_json(self.manifest_key(request_id, date))

    def put_json(self, key: str, document: dict) -> None:
        self.put_bytes(key, _dumps(document), "application/json")

    def publish_manifest(self, request_id: str, date: str, manifest: dict) -> bool:
        """Write the date's manifest unless one exists. False: another run published first."""
        return self.put_bytes(self.manifest_key(request_id, date), _dumps(manifest), "application/json",
                              if_absent=True)

    def put_plan(self, request_id: str, dates: list[str]) -> str:
        """Write the dates a Distributed Map runs; returns the key.

        A JSON array of date strings: the Distributed Map's ItemReader turns each into one item."""
        key = self.plan_key(request_id)
        self.put_bytes(key, json.dumps(dates).encode(), "application/json")
        return key

    def published_dates(self, request_id: str) -> set[str]:
        """Dates of a request whose manifest exists (listing only, no reads): the dates that are done."""
        done = set()
        for key in self.list_keys(f"{self.prefix}/{request_id}/"):
            parts = key[len(self.prefix) + 1:].split("/")
            if len(parts) == 3 and parts[2] == MANIFEST:  # <request_id>/<date>/manifest.json
                done.add(parts[1])
        return done

    def list_manifests(self, request_id: str) -> list[dict]:
        """Manifests of every finished date of a request, in date order."""
        out = []
        for key in self.list_keys(f"{self.prefix}/{request_id}/"):
            if key.endswith(f"/{MANIFEST}"):
                manifest = self.get_json(key)
                if manifest is not None:
                    out.append(manifest)
        return sorted(out, key=lambda m: m.get("date", ""))


@dataclass
class OutputStore(ResultStore):
    """The output bucket, through a boto3 S3 client handed in by the caller."""

    s3: Any
    bucket: str
    prefix: str = "colocations"

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}"

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as err:
            if _is_code(err, "NoSuchKey", "404"):
                return None
            raise

    def put_bytes(self, key: str, body: bytes, content_type: str, *, if_absent: bool = False) -> bool:
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **extra)
        except ClientError as err:
            if if_absent and _is_code(err, "PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            raise
        return True

    def upload(self, path: Path, key: str, content_type: str) -> int:
        size = Path(path).stat().st_size
        with open(path, "rb") as fh:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=fh, ContentType=content_type)
        return size

    def list_keys(self, prefix: str) -> list[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        return [o["Key"] for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                for o in page.get("Contents", [])]

    def download(self, key: str, path: Path) -> None:
        self.s3.download_file(self.bucket, key, str(path))

    def presign(self, key: str, expires_s: int) -> str:
        return self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
        )

    def delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            if chunk:
                resp = self.s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
                )
                # DeleteObjects answers 200 even when every key was refused (e.g. no s3:DeleteObject)
                failed = resp.get("Errors") or []
                if failed:
                    codes = sorted({e.get("Code", "?") for e in failed})
                    log.warning("could not delete %d of %d objects from s3://%s (%s), e.g. %s",
                                len(failed), len(chunk), self.bucket, ", ".join(codes), failed[0].get("Key"))


@dataclass
class LocalOutputStore(ResultStore):
    """A local folder with the bucket's layout (``colocate run``): keys are relative paths.

    Every file appears whole under its final name (written beside it, then renamed); the
    manifest is published with ``os.link``, which fails if the name exists, as the bucket's
    conditional put does."""

    root: Path
    prefix: str = "colocations"

    def __post_init__(self):
        self.root = Path(self.root)

    @property
    def location(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not a result key: {key!r}")
        return self.root.joinpath(*parts)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """A folder that cannot be written (permissions, a full disk) as one named error."""
        from core.errors import ColocationError

        try:
            yield
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise ColocationError(f"output folder {self.root}: {exc.strerror or type(exc).__name__}{where}") from None

    def _staged(self, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
        os.chmod(tmp, 0o644)
        return Path(tmp)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def put_bytes(self, key: str, body: bytes, content_type: str, *, if_absent: bool = False) -> bool:
        target = self.path(key)
        with self._errors():
            return self._put(target, body, if_absent)

    def _put(self, target: Path, body: bytes, if_absent: bool) -> bool:
        tmp = self._staged(target)
        try:
            tmp.write_bytes(body)
            if not if_absent:
                os.replace(tmp, target)
                return True
            try:
                os.link(tmp, target)  # atomic, and refuses an existing name
            except FileExistsError:
                return False
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def upload(self, path: Path, key: str, content_type: str) -> int:
        target = self.path(key)
        with self._errors():
            tmp = self._staged(target)
            try:
                shutil.copyfile(path, tmp)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            return target.stat().st_size

    def list_keys(self, prefix: str) -> list[str]:
        # a key prefix may end inside a name ("a/b" matches "a/bc"): walk from its folder
        folder = self.root.joinpath(*[p for p in prefix.split("/")[:-1] if p])
        if not folder.is_dir():
            return []
        keys = (path.relative_to(self.root).as_posix() for path in sorted(folder.rglob("*"))
                if path.is_file() and not path.name.startswith("."))  # not a file being written
        return [k for k in keys if k.startswith(prefix)]

    def download(self, key: str, path: Path) -> None:
        shutil.copyfile(self.path(key), path)

    def presign(self, key: str, expires_s: int) -> str:
        return self.path(key).resolve().as_uri()

    def delete_keys(self, keys: list[str]) -> None:
        for key in keys:
            path = self.path(key)
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not delete %s from %s (%s)", key, self.root, type(exc).__name__)
                continue
            with contextlib.suppress(OSError):  # a losing run's folder, once empty
                path.parent.rmdir()


def publish_request_products(store: ResultStore, request_id: str, request: dict, dates: list[dict],
                             workdir: Path, *, run_id: str) -> dict:
    """Build the request-level netCDF and Parquet from the published per-granule products.

    ``dates``: the complete dates in date order, each ``{"date", "run_id", "outputs": [keys]}``.
    Products are downloaded one at a time into ``workdir`` and deleted after use; each date's
    Parquet file is uploaded once complete (kept if that date's file is there already, stale
    ones of a recomputed date removed); the netCDF is uploaded last, under this run's key.
    Returns what the run manifest records (keys, counts); nothing is referenced before it is."""
    import xarray as xr

    from core.products.request_outputs import write_request_products

    workdir = Path(workdir)
    existing = set(store.list_keys(store.parquet_prefix(request_id))) | set(store.list_keys(
        store.pixels_prefix(request_id)))
    partitions: dict[str, str] = {}

    def products(keys: list[str]):
        for key in keys:
            local = workdir / "in" / key.rsplit("/", 1)[-1]
            local.parent.mkdir(parents=True, exist_ok=True)
            store.download(key, local)
            try:
                with xr.open_dataset(local, engine="h5netcdf") as ds:
                    yield ds
            finally:
                local.unlink(missing_ok=True)

    run_of = {d["date"]: str(d.get("run_id") or "0") for d in dates}

    def publisher(table: str) -> Callable[[str, Path], None]:
        def publish_partition(date: str, path: Path) -> None:
            key = store.partition_key(request_id, date, run_of[date], table)
            if key not in existing:
                store.upload(path, key, "application/vnd.apache.parquet")
            folder = key.rsplit("/", 1)[0] + "/"
            stale = [k for k in existing if k.startswith(folder) and k != key]
            store.delete_keys(stale)  # a recomputed date: only its current result may be queried
            (partitions if table == "matches" else pixel_partitions)[date] = key
            path.unlink(missing_ok=True)
        return publish_partition

    pixel_partitions: dict[str, str] = {}

    # the per-granule products (not their pixel tables, which the request-level outputs rebuild from them)
    nc_keys = [(d["date"], [k for k in d.get("outputs") or [] if k.endswith(".nc") and not k.endswith("_pixels.nc")])
               for d in dates]
    result = write_request_products(((day, products(keys)) for day, keys in nc_keys),
                                    workdir / "out" / "request.nc", workdir / "out" / "parquet",
                                    request_id=request_id, request=request, run_ids=run_of,
                                    on_partition=publisher("matches"), pixels_dir=workdir / "out" / "pixels",
                                    on_pixel_partition=publisher("pixels"))
    netcdf_key = None
    if result.netcdf is not None:
        netcdf_key = store.request_netcdf_key(request_id, run_id)
        store.upload(result.netcdf, netcdf_key, "application/x-netcdf")
        result.netcdf.unlink(missing_ok=True)
    return {"netcdf": netcdf_key, "parquet_prefix": store.parquet_prefix(request_id),
            "partitions": partitions, "pixels_prefix": store.pixels_prefix(request_id),
            "pixel_partitions": pixel_partitions, "products": result.products, "trajectories": result.trajectories,
            "matched": result.matched}
