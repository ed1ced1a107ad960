"""The offline sandbox: moto's server plus the Earthdata emulator, seeded with a scene.

    with Sandbox(scene, workdir=tmp) as sb:
        session = EarthdataSession(sb.settings, StaticToken(sb.edl_token))
        ...
        subprocess.run([...], env={**os.environ, **sb.env()})

``scene`` is anything with ``.granules`` whose items have ``bucket``, ``key``, ``path``,
``daac`` ("nsidc" | "podaac"), ``file_name``, ``short_name``, ``version``, ``start``
(sandbox/scene.py's ``Scene``, or a stand-in in tests).

``network`` (or $COLOC_SANDBOX_NETWORK when not given): ``off`` (default), ``lambda-us-west-2`` or
custom figures; with a model on, every server the code under test talks to is served through
it (sandbox/netmodel.py, docs/NETWORK.md) and ``sb.netmodel.ledger`` accounts every delay.

``python -m sandbox.services [--cache DIR] [--network SPEC]`` builds the seed scene, starts
everything in the foreground and prints the environment for a shell (``eval``-able ``export`` lines).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
from botocore.config import Config
from flask import Flask, jsonify

from core.config import Settings
from sandbox.emulator import (
    DAAC_BUCKETS,
    EarthdataState,
    ServerThread,
    create_cloudfront_app,
    create_edl_app,
    create_onprem_app,
    create_s3_presign_app,
    create_s3_proxy_app,
    create_tea_app,
)
from sandbox.faults import Faults
from sandbox.netmodel import NetworkConfig, NetworkModel, choose

log = logging.getLogger(__name__)

OUTPUT_BUCKET = "coloc-sandbox-output"
EDL_SECRET_NAME = "coloc/sandbox/edl-token"
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
REGION = "us-west-2"


def onprem_path(granule) -> str:
    """The n5eil01u-style path of a granule: /DP9/ATLAS/<short>.<ver>/<YYYY.MM.DD>/<file>."""
    day = granule.start.strftime("%Y.%m.%d")
    return f"/DP9/ATLAS/{granule.short_name}.{str(granule.version).zfill(3)}/{day}/{granule.file_name}"


class Sandbox:
    """Context manager running every fake service on 127.0.0.1 with dynamic ports."""

    def __init__(
        self,
        scene,
        *,
        workdir: str | os.PathLike,
        credentials_ttl_s: float = 3600.0,
        edl_username: str = "sandbox-user",
        edl_password: str = "sandbox-password-not-secret",
        s3_faults: bool = False,
        in_region: bool = True,
        network: str | NetworkConfig | None = None,
        dmrpp_daacs: tuple[str, ...] = ("podaac",),
    ):
        self.scene = scene
        self.workdir = Path(workdir)
        self.edl_username = edl_username
        self.edl_password = edl_password
        self.faults = Faults()
        self.state = EarthdataState(credentials_ttl_s=credentials_ttl_s, faults=self.faults)
        self.edl_token = ""
        self.servers: dict[str, ServerThread] = {}
        self._moto = None
        self.moto_url = ""  # moto itself: the sandbox's own calls (seeding, moto-api, the S3 proxy)
        self.aws_url = ""  # the AWS endpoint the code under test uses (through the model if on)
        config = NetworkConfig.from_env() if network is None else NetworkConfig.parse(network)
        self.netmodel: NetworkModel | None = NetworkModel(config) if config is not None else None
        # moto's backends are process-global: names of our own are unique per sandbox so two
        # sandboxes in one process (the test session) never see each other's outputs or secret
        suffix = uuid.uuid4().hex[:8]
        self.output_bucket = f"{OUTPUT_BUCKET}-{suffix}"
        self.edl_secret_name = f"{EDL_SECRET_NAME}-{suffix}"
        self.settings: Settings | None = None
        # route settings.s3_endpoint_url through a proxy that applies fault rules (app "s3api")
        self.s3_faults = s3_faults
        self.state.caller_in_region = in_region
        # DMR++ sidecars (<key>.dmrpp beside the object, sandbox/dmrpp.py): PO.DAAC publishes
        # them for its L2P collections; for NSIDC's ATL07 it is not confirmed, so not by default
        self.dmrpp_daacs = tuple(dmrpp_daacs)
        self.sidecars: list[tuple[str, str, Path]] = []  # (bucket, key, path)

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        from sandbox.moto_ranges import moto_reads_only_the_range

        moto_reads_only_the_range()  # S3 reads only a ranged GET's range; moto read the whole object
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.moto_url = self.aws_url = f"http://{host}:{port}"
        if self.netmodel is not None:  # a modelled front end; moto's backends are process-global
            from moto.server import DomainDispatcherApplication, create_backend_app

            self.servers["aws"] = self.netmodel.server(DomainDispatcherApplication(create_backend_app), "aws")
            self.aws_url = self.servers["aws"].url

        self.edl_token = self.state.add_user(self.edl_username, self.edl_password)
        for g in self.scene.granules:
            self.state.files[(g.bucket, g.key)] = Path(g.path)
            for sibling in getattr(g, "siblings", None) or []:  # .md5, .cmr.json beside the data file
                self.state.files[(sibling["bucket"], sibling["key"])] = Path(sibling["path"])
            if g.daac == "nsidc":
                self.state.onprem_files[onprem_path(g)] = Path(g.path)
            if g.daac in self.dmrpp_daacs:
                from sandbox.dmrpp import SUFFIX, ensure_sidecar

                try:
                    sidecar = (g.bucket, g.key + SUFFIX, ensure_sidecar(g.path))
                except OSError:  # not HDF5 (a fault test's corrupt granule): no sidecar, as at a DAAC
                    continue
                self.sidecars.append(sidecar)
                self.state.files[sidecar[:2]] = sidecar[2]

        apps: dict[str, Flask] = {
            "edl": create_edl_app(self.state),
            "nsidc": create_tea_app(self.state, "nsidc"),
            "podaac": create_tea_app(self.state, "podaac"),
            "onprem": create_onprem_app(self.state),
            "s3": create_s3_presign_app(self.state),
            "cloudfront": create_cloudfront_app(self.state, "cloudfront"),
            "cloudfront2": create_cloudfront_app(self.state, "cloudfront2"),
        }
        if self.s3_faults:
            apps["s3api"] = create_s3_proxy_app(self.state, self.moto_url)
        for name, app in apps.items():
            self.servers[name] = self._server(app, name)
            self.state.base_urls[name] = self.servers[name].url
        # CMR needs the other URLs for its links, so it is created last.
        self.servers["cmr"] = self._server(self._cmr_app(), "cmr")
        self.state.base_urls["cmr"] = self.servers["cmr"].url
        for server in self.servers.values():
            server.start()

        self._seed_aws()
        self.settings = self._settings()

    def stop(self) -> None:
        for server in self.servers.values():
            try:
                server.stop()
            except Exception:  # pragma: no cover - best effort on teardown
                log.exception("stopping %s", server.name)
        self.servers.clear()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    # --- wiring ------------------------------------------------------------------------------
    def _server(self, app, name: str):
        return ServerThread(app, name) if self.netmodel is None else self.netmodel.server(app, name)

    @property
    def s3_url(self) -> str:
        """The S3 endpoint clients use: moto (modelled if on), or the fault proxy in front of it."""
        return self.url("s3api") if self.s3_faults else self.aws_url

    def url(self, name: str) -> str:
        return self.state.base_urls[name]

    def links(self, granule) -> dict:
        tea = self.url(granule.daac)
        return {
            "https": f"{tea}/{granule.bucket}/{granule.key}",
            "s3": f"s3://{granule.bucket}/{granule.key}",
            "s3credentials": f"{tea}/s3credentials",
        }

    def set_in_region(self, in_region: bool) -> None:
        """Put the caller inside us-west-2 (TEA → presigned S3, S3 credentials work) or outside
        it (TEA → CloudFront, S3 refuses the DAAC's credentials); ``settings.l2p_access``
        follows, as ``auto`` would decide from AWS_REGION."""
        self.state.caller_in_region = in_region
        if self.settings is not None:
            self.settings = self.settings.replace(l2p_access="s3" if in_region else "https")

    def onprem_url(self, granule) -> str:
        return self.url("onprem") + onprem_path(granule)

    def _cmr_app(self) -> Flask:
        try:
            from sandbox.cmr_app import create_cmr_app
        except ImportError:
            app = _fallback_cmr_app(self.scene, self.links)
            self.faults.install(app, "cmr")
        else:
            app = create_cmr_app(self.scene, self.links, faults=self.faults)
        # record CMR requests too, ahead of the fault hook so faulted calls show up
        app.before_request_funcs.setdefault(None, []).insert(0, lambda: self.state.record("cmr"))
        return app

    def boto3_client(self, service: str):
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.moto_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 2}),
        )

    def ensure_seeded(self) -> bool:
        """Seed S3 and Secrets Manager again if moto's process-global backends were reset (an
        in-process ``mock_aws`` resets them when it starts and stops). True if it re-seeded."""
        from botocore.exceptions import ClientError

        s3 = self.boto3_client("s3")
        try:
            s3.head_bucket(Bucket=self.settings.output_bucket)
            for g in self.scene.granules[:1]:
                s3.head_object(Bucket=g.bucket, Key=g.key)
            return False
        except ClientError:
            self._seed_aws()
            return True

    def _seed_aws(self) -> None:
        s3 = self.boto3_client("s3")
        buckets = {b for names in DAAC_BUCKETS.values() for b in names} | {self.output_bucket}
        buckets |= {g.bucket for g in self.scene.granules}
        # moto's backends are process-global: a second Sandbox in one process finds them seeded.
        for bucket in sorted(buckets):
            try:
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass
        for g in self.scene.granules:
            s3.upload_file(str(g.path), g.bucket, g.key)
        for bucket, key, path in self.sidecars:
            s3.upload_file(str(path), bucket, key)
        sm = self.boto3_client("secretsmanager")
        try:
            sm.create_secret(Name=self.edl_secret_name, SecretString=self.edl_token)
        except sm.exceptions.ResourceExistsException:
            sm.put_secret_value(SecretId=self.edl_secret_name, SecretString=self.edl_token)

    def _settings(self) -> Settings:
        host = lambda name: self.servers[name].host  # noqa: E731
        return Settings().replace(
            cmr_url=self.url("cmr"),
            edl_url=self.url("edl"),
            earthdata_hosts=tuple(host(n) for n in ("edl", "cmr", "nsidc", "podaac", "onprem")),
            extra_allowed_hosts=(host("s3"), self.s3_url.split("://", 1)[1]),
            cloudfront_hosts=(host("cloudfront"), host("cloudfront2")),
            l2p_access="s3" if self.state.caller_in_region else "https",
            s3credentials_endpoints={
                "NSIDC_CPRD": f"{self.url('nsidc')}/s3credentials",
                "NSIDC_ECS": f"{self.url('nsidc')}/s3credentials",
                "POCLOUD": f"{self.url('podaac')}/s3credentials",
            },
            s3_endpoint_url=self.s3_url,
            output_bucket=self.output_bucket,
            download_dir=str(self.workdir / "downloads"),
            edl_secret_name=self.edl_secret_name,
            http_backoff_s=0.05,
            data_mode="synthetic",  # every product says so; request ids differ from the real ones
        )

    def env(self) -> dict[str, str]:
        """Environment for a subprocess that should use this sandbox (incl. the EDL token)."""
        assert self.settings is not None, "sandbox not started"
        env = dict(self.settings.to_env())
        env.update(FAKE_AWS)
        env.update(
            {
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "AWS_ENDPOINT_URL": self.aws_url,  # S3, Secrets Manager, Step Functions
                "AWS_ENDPOINT_URL_S3": self.s3_url,
                "EARTHDATA_TOKEN": self.edl_token,
            }
        )
        return env


def scene_cache() -> Path:
    """Where the seed scene is cached: COLOC_SCENE_CACHE, else the checkout's .sandbox-cache/."""
    return Path(os.environ.get("COLOC_SCENE_CACHE") or Path(__file__).resolve().parents[1] / ".sandbox-cache")


@contextlib.contextmanager
def seed_sandbox(*, in_region: bool = True, workdir: str | os.PathLike | None = None,
                 extent: str = "full") -> Iterator[Sandbox]:
    """The sandbox over the seed-case scene (built once into :func:`scene_cache`; ``extent``
    "full" is the real-size scene, "cut" the fast tests' one), in a temporary work folder
    unless ``workdir`` is given."""
    from sandbox.scene import build_scene

    scene = build_scene(scene_cache(), extent=extent)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="coloc-sandbox-"))
        yield stack.enter_context(Sandbox(scene, workdir=workdir, in_region=in_region))


def _fallback_cmr_app(scene, links: Callable) -> Flask:
    """Minimal CMR stand-in (UMM-G JSON, one page) until sandbox/cmr_app.py exists."""
    app = Flask("sandbox-cmr-fallback")

    @app.get("/search/granules.umm_json")
    def granules():
        items = []
        for g in scene.granules:
            ln = links(g)
            items.append(
                {
                    "meta": {"concept-id": g.concept_id, "provider-id": g.provider},
                    "umm": {
                        "GranuleUR": g.title,
                        "RelatedUrls": [
                            {"URL": ln["https"], "Type": "GET DATA"},
                            {"URL": ln["s3"], "Type": "GET DATA VIA DIRECT ACCESS"},
                            {"URL": ln["s3credentials"], "Type": "VIEW RELATED INFORMATION"},
                        ],
                    },
                }
            )
        return jsonify({"hits": len(items), "took": 1, "items": items})

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the offline sandbox in the foreground.")
    repo = Path(__file__).resolve().parents[1]
    parser.add_argument("--cache", default=str(repo / ".sandbox-cache"), help="scene cache directory")
    parser.add_argument("--workdir", default=str(repo / ".sandbox-cache" / "services-run"))
    parser.add_argument("--outside-region", action="store_true",
                        help="the caller is outside us-west-2: TEA redirects to CloudFront, L2P is read over HTTPS")
    parser.add_argument("--network", default=None,
                        help="off | lambda-us-west-2 | key=value,... (default: $COLOC_SANDBOX_NETWORK or off)")
    args = parser.parse_args(argv)
    from sandbox.scene import build_scene

    network = choose(args.network, "off")
    scene = build_scene(Path(args.cache))
    print(f"# network model: {network.label}", file=sys.stderr)
    with Sandbox(scene, workdir=args.workdir, network=network.config or "off",
                 in_region=not args.outside_region) as sb:
        for key, value in sorted(sb.env().items()):
            print(f"export {key}={shlex.quote(value)}")
        sys.stdout.flush()
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print("# sandbox running; Ctrl-C to stop", file=sys.stderr)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
