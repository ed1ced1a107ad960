"""Where results live in the output bucket, and how they become visible.

Layout (deterministic, derived from the request)::

    <prefix>/<request_id>/<date>/manifest.json           written last: a date is done iff this exists
    <prefix>/<request_id>/<date>/<run_id>/<granule>.nc   outputs of the run that won the manifest
    <prefix>/<request_id>/<date>/<run_id>/<granule>.png
    <prefix>/<request_id>/run-manifest.json              summary of a Step Functions run
    <prefix>/<request_id>/request/<run>/<request_id>_matches.nc   request-level netCDF of one Summarize run
    <prefix>/<request_id>/parquet/date=<date>/part-<date's run_id>.parquet   matches of a date (Athena)
    <prefix>/_plans/<request_id>.json                    date plan for the distributed map

Outputs of a run are staged under its own ``run_id`` and published by one conditional put of
the manifest (``If-None-Match: *``), so two concurrent runs of one date leave exactly one
complete result and the loser removes its own files. A run that dies before the manifest
leaves only unreferenced objects under its run_id (see the bucket's lifecycle rule).

The request-level results (core.request_products) are written by Summarize: the netCDF under
the Summarize run's own key, referenced by the run manifest written after it (the previous
run's file is removed once the new manifest is up); the Parquet file of a date is named after
that date's published run, so it is derived from exactly one published result and is written
once: later attempts keep it, a recomputed date replaces it.
"""
from __future__ import annotations

import json
import logging
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


@dataclass
class OutputStore:
    """The output bucket, through a boto3 S3 client handed in by the caller."""

    s3: Any
    bucket: str
    prefix: str = "colocations"

    # --- keys ----------------------------------------------------------------------------
    def date_prefix(self, request_id: str, date: str) -> str:
        return f"{self.prefix}/{request_id}/{date}"

    def manifest_key(self, request_id: str, date: str) -> str:
        return f"{self.date_prefix(request_id, date)}/{MANIFEST}"

    def output_key(self, request_id: str, date: str, run_id: str, name: str) -> str:
        return f"{self.date_prefix(request_id, date)}/{run_id}/{name}"

    def run_manifest_key(self, request_id: str) -> str:
        return f"{self.prefix}/{request_id}/{RUN_MANIFEST}"

    def plan_key(self, request_id: str) -> str:
        return f"{self.prefix}/_plans/{request_id}.json"

    def request_netcdf_key(self, request_id: str, run_id: str) -> str:
        from core.request_products import NETCDF_NAME

        return f"{self.prefix}/{request_id}/request/{run_id}/{NETCDF_NAME.format(request_id=request_id)}"

    def parquet_prefix(self, request_id: str) -> str:
        """Where the Glue table's partition projection finds a request's Parquet files."""
        return f"{self.prefix}/{request_id}/parquet/"

    def partition_key(self, request_id: str, date: str, run_id: str) -> str:
        from core.request_products import PARQUET_NAME

        return f"{self.parquet_prefix(request_id)}date={date}/{PARQUET_NAME.format(run_id=run_id)}"

    def list_keys(self, prefix: str) -> list[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        return [o["Key"] for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                for o in page.get("Contents", [])]

    # --- reading -------------------------------------------------------------------------
    def get_json(self, key: str) -> dict | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as err:
            if _is_code(err, "NoSuchKey", "404"):
                return None
            raise
        return json.loads(body)

    def get_manifest(self, request_id: str, date: str) -> dict | None:
        return self.get_json(self.manifest_key(request_id, date))

    def published_dates(self, request_id: str) -> set[str]:
        """Dates of a request whose manifest exists (listing only, no reads): the dates that are done."""
        done = set()
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/{request_id}/"):
            for obj in page.get("Contents", []):
                parts = obj["Key"][len(self.prefix) + 1:].split("/")
                if len(parts) == 3 and parts[2] == MANIFEST:  # <request_id>/<date>/manifest.json
                    done.add(parts[1])
        return done

    def list_manifests(self, request_id: str) -> list[dict]:
        """Manifests of every finished date of a request, in date order."""
        out = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/{request_id}/"):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(f"/{MANIFEST}"):
                    manifest = self.get_json(obj["Key"])
                    if manifest is not None:
                        out.append(manifest)
        return sorted(out, key=lambda m: m.get("date", ""))

    def presign(self, key: str, expires_s: int) -> str:
        return self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
        )

    # --- writing -------------------------------------------------------------------------
    def put_json(self, key: str, document: dict) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=json.dumps(document, indent=2, sort_keys=True).encode(),
            ContentType="application/json",
        )

    def upload(self, path: Path, key: str, content_type: str) -> int:
        size = Path(path).stat().st_size
        with open(path, "rb") as fh:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=fh, ContentType=content_type)
        return size

    def publish_manifest(self, request_id: str, date: str, manifest: dict) -> bool:
        """Write the date's manifest unless one exists. False: another run published first."""
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.manifest_key(request_id, date),
                Body=json.dumps(manifest, indent=2, sort_keys=True).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as err:
            if _is_code(err, "PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            raise
        return True

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


def publish_request_products(store: OutputStore, request_id: str, request: dict, dates: list[dict],
                             workdir: Path, *, run_id: str) -> dict:
    """Build the request-level netCDF and Parquet from the published per-granule products.

    ``dates``: the complete dates in date order, each ``{"date", "run_id", "outputs": [keys]}``.
    Products are downloaded one at a time into ``workdir`` and deleted after use; each date's
    Parquet file is uploaded once complete (kept if that date's file is there already, stale
    ones of a recomputed date removed); the netCDF is uploaded last, under this run's key.
    Returns what the run manifest records (keys, counts); nothing is referenced before it is."""
    import xarray as xr

    from core.request_products import write_request_products

    workdir = Path(workdir)
    existing = set(store.list_keys(store.parquet_prefix(request_id)))
    partitions: dict[str, str] = {}

    def products(keys: list[str]):
        for key in keys:
            local = workdir / "in" / key.rsplit("/", 1)[-1]
            local.parent.mkdir(parents=True, exist_ok=True)
            store.s3.download_file(store.bucket, key, str(local))
            try:
                with xr.open_dataset(local, engine="h5netcdf") as ds:
                    yield ds
            finally:
                local.unlink(missing_ok=True)

    run_of = {d["date"]: str(d.get("run_id") or "0") for d in dates}

    def publish_partition(date: str, path: Path) -> None:
        key = store.partition_key(request_id, date, run_of[date])
        if key not in existing:
            store.upload(path, key, "application/vnd.apache.parquet")
        stale = [k for k in existing if k.startswith(f"{store.parquet_prefix(request_id)}date={date}/") and k != key]
        store.delete_keys(stale)  # a recomputed date: only its current result may be queried
        partitions[date] = key
        path.unlink(missing_ok=True)

    nc_keys = [(d["date"], [k for k in d.get("outputs") or [] if k.endswith(".nc")]) for d in dates]
    result = write_request_products(((day, products(keys)) for day, keys in nc_keys),
                                    workdir / "out" / "request.nc", workdir / "out" / "parquet",
                                    request_id=request_id, request=request, run_ids=run_of,
                                    on_partition=publish_partition)
    netcdf_key = None
    if result.netcdf is not None:
        netcdf_key = store.request_netcdf_key(request_id, run_id)
        store.upload(result.netcdf, netcdf_key, "application/x-netcdf")
        result.netcdf.unlink(missing_ok=True)
    return {"netcdf": netcdf_key, "parquet_prefix": store.parquet_prefix(request_id),
            "partitions": partitions, "products": result.products, "trajectories": result.trajectories,
            "matched": result.matched}
