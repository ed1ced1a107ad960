"""Secrets never leak; only allowlisted hosts are contacted; presigned output URLs expire.

The secret check runs the *direct Lambda handler* on the seed case in the sandbox with a known
fake username/password (exchanged for a token by the production code), captures every log
record (root logger at DEBUG), stdout and stderr, and searches them, the returned body, the
manifest and the netCDF attributes for the password, the EDL token and the S3 keys the emulator
issued during the run.
"""
from __future__ import annotations

import json
import logging
import socket
from datetime import UTC

import h5py
import pytest
import requests

from core.errors import DisallowedHostError
from sandbox.cmr_app import umm_item
from sandbox.lambda_context import LambdaContext
from tests import faults_fixtures as ff
from tests.pipeline_fixtures import run_date

FAKE_USER = "leak-canary-user"
FAKE_PASSWORD = "Canary-PASSWORD-7f3a9c1e"


@pytest.fixture
def sb(fault_sb):
    return fault_sb



@pytest.fixture
def handler_env(sb, handler_environment):
    """The colocate Lambda's environment pointed at the sandbox, EDL login by username/password."""
    from handlers import colocate

    sb.state.add_user(FAKE_USER, FAKE_PASSWORD)
    handler_environment({**sb.env(), "EARTHDATA_USERNAME": FAKE_USER, "EARTHDATA_PASSWORD": FAKE_PASSWORD,
                         "COLOC_EDL_SECRET_NAME": "", "POWERTOOLS_TRACE_DISABLED": "1",
                         "POWERTOOLS_LOG_LEVEL": "DEBUG"}, drop=("EARTHDATA_TOKEN",))
    return colocate


def _secrets_of_the_run(sb, issued_before: int) -> dict[str, str]:
    found = {"password": FAKE_PASSWORD}
    for i, token in enumerate(sb.state.tokens_of(FAKE_USER)):
        found[f"edl token {i}"] = token
    for i, creds in enumerate(sb.state.issued_credentials[issued_before:]):
        found[f"s3 access key id {i}"] = creds["accessKeyId"]
        found[f"s3 secret key {i}"] = creds["secretAccessKey"]
        found[f"s3 session token {i}"] = creds["sessionToken"]
    return found


def test_no_secret_in_logs_output_manifest_or_netcdf(sb, handler_env, caplog, capfd, tmp_path):
    caplog.set_level(logging.DEBUG)  # every logger, including botocore/urllib3/s3fs
    issued_before = len(sb.state.issued_credentials)
    event = {"bbox": ff.SEED_BBOX, "date": "2019-06-22", "radius_m": 1234.5}
    body = handler_env.handler(event, LambdaContext("coloc-colocate", 2048, "sec-0001", 600_000))
    out, err = capfd.readouterr()

    assert body["dates"][0]["status"] == "complete", body
    secrets = _secrets_of_the_run(sb, issued_before)
    assert any(k.startswith("edl token") for k in secrets) and any(k.startswith("s3") for k in secrets)

    s3 = sb.boto3_client("s3")
    manifest_key = body["dates"][0]["manifest_key"]
    manifest = s3.get_object(Bucket=sb.settings.output_bucket, Key=manifest_key)["Body"].read().decode()
    texts = {"logs": caplog.text, "log records": "\n".join(repr(r.__dict__) for r in caplog.records),
             "stdout": out, "stderr": err, "handler response": json.dumps(body), "manifest": manifest}
    for key in body["dates"][0]["outputs"]:
        if key.endswith(".nc"):
            path = tmp_path / key.rsplit("/", 1)[-1]
            s3.download_file(sb.settings.output_bucket, key, str(path))
            with h5py.File(path, "r") as f:
                attrs = [f"{k}={v!r}" for k, v in f.attrs.items()]
                f.visititems(lambda name, obj: attrs.extend(f"{name}.{k}={v!r}" for k, v in obj.attrs.items()))
            texts[f"netCDF attributes of {path.name}"] = "\n".join(attrs)
    assert len(caplog.records) > 20 and out, "nothing captured: the check would prove nothing"
    leaks = [(where, what) for where, text in texts.items() for what, secret in secrets.items() if secret in text]
    if leaks:  # say which logger printed it
        culprits = {(r.name, r.levelname) for r in caplog.records
                    if any(v in r.getMessage() or v in repr(r.__dict__) for v in secrets.values())}
        leaks.append(("loggers", sorted(culprits)))
    assert leaks == [], leaks


def test_errors_do_not_carry_the_password(sb, handler_env, capfd):
    sb.state.users[FAKE_USER] = "a-different-password"  # the configured one is now wrong
    body = handler_env.handler({"bbox": ff.SEED_BBOX, "date": "2019-06-22", "radius_m": 1234.6}, LambdaContext("coloc-colocate", 2048, "sec-0001", 600_000))
    out, err = capfd.readouterr()
    failed = body["dates"][0]
    assert failed["status"] == "failed" and failed["type"] == "AuthError" and "Earthdata Login" in failed["error"]
    for text in (json.dumps(body), out, err):
        assert FAKE_PASSWORD not in text and "a-different-password" not in text


# --------------------------------------------------------------------------- SSRF
class _Tripwire:
    """A loopback listener that tells whether anything connected to it — without a grace period.

    ``connections()`` makes a connection of its own and accepts until it sees it: a connection
    the code under test opened before it returned completed its handshake earlier, so the
    kernel queued it ahead of ours. The only wait is for our own connection (bounded)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(10.0)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10.0) as mine:
            me = mine.getsockname()
            others = 0
            while True:
                conn, peer = self.sock.accept()  # raises after 10 s: ours must come
                conn.close()
                if peer == me:
                    return others
                others += 1

    def close(self):
        self.sock.close()


def test_the_tripwire_sees_a_connection():
    t = _Tripwire()
    try:
        assert t.connections() == 0
        with pytest.raises(requests.RequestException):
            requests.get(f"http://127.0.0.1:{t.port}/", timeout=0.5)  # connects, then no answer
        assert t.connections() == 1
    finally:
        t.close()


@pytest.fixture
def tripwire():
    t = _Tripwire()
    yield t
    t.close()


def _page(granule, links: dict) -> str:
    return json.dumps({"hits": 1, "took": 1, "items": [umm_item(granule, links)]})


@pytest.mark.parametrize("evil_host", ["127.0.0.1:{port}", "evil.example.com"])
def test_cmr_data_link_to_another_host_is_refused_without_contacting_it(sb, tripwire, evil_host):
    host = evil_host.format(port=tripwire.port)
    g = next(g for g in sb.scene.granules if g.short_name == "ATL07" and "_20190622055317_" in g.file_name)
    scheme = "http" if host.startswith("127.") else "https"
    links = {**sb.links(g), "https": f"{scheme}://{host}/{g.bucket}/{g.key}"}
    sb.faults.add("/search/granules.umm_json", app="cmr", body=_page(g, links), content_type="application/json",
                  headers={"CMR-Hits": "1"}, times=1)  # the ATL07 search comes first
    t = ff.task(sb)
    with pytest.raises(DisallowedHostError, match="not on the allowlist"):
        run_date(t, ff.services(sb))
    assert tripwire.connections() == 0
    # nor was the granule fetched some other way (the L2P granules, opened side by side with the
    # ATL07 download, may have asked their own DAAC for credentials: that is not this granule)
    assert not [r for r in sb.state.requests if g.key in r.path], "data was fetched from a link CMR did not vouch for"
    ff.assert_nothing_written(sb, t)


def test_cmr_s3credentials_link_to_another_host_is_refused(sb, tripwire):
    l2p = [g for g in sb.scene.granules if g.short_name != "ATL07"
           and g.file_name.startswith("20190622064501")]
    services = ff.services(sb)
    evil = {"s3credentials": f"http://127.0.0.1:{tripwire.port}/s3credentials"}
    page = json.dumps({"hits": len(l2p), "took": 1, "items": [umm_item(g, {**sb.links(g), **evil}) for g in l2p]})
    seen = []

    def poison_the_sst_search(resp, *args, **kwargs):
        if "/search/granules.umm_json" in resp.url:
            seen.append(resp.url)
            if len(seen) == 1:
                sb.faults.add("/search/granules.umm_json", app="cmr", body=page, content_type="application/json",
                              headers={"CMR-Hits": str(len(l2p))}, times=1)

    services.http.hooks["response"].append(poison_the_sst_search)
    t = ff.task(sb)
    with pytest.raises(DisallowedHostError):
        run_date(t, services)
    assert tripwire.connections() == 0
    assert sb.state.requests_to("podaac") == [] and sb.state.requests_to("s3api") == []
    ff.assert_nothing_written(sb, t)


# --------------------------------------------------------------------------- presigned URLs
def test_presigned_output_urls_expire(sb, handler_environment):
    """What GET /colocations/{id} hands out (the API handler's own store): SigV4 URLs valid for
    the configured lifetime only.

    moto's server does not enforce X-Amz-Expires, so the lifetime is read from the signed URL
    (S3 rejects a SigV4 URL after X-Amz-Date + X-Amz-Expires; SigV2 URLs could live much longer)."""
    from datetime import datetime
    from urllib.parse import parse_qs, urlsplit

    from handlers import runtime

    handler_environment({**sb.env(), "COLOC_PRESIGN_EXPIRY_S": "900"})
    links = runtime.output_links()
    store = links.store
    store.put_json(f"{store.prefix}/security-test/x.json", {"ok": True})
    url = store.presign(f"{store.prefix}/security-test/x.json", links.expires_s)
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert q["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and "X-Amz-Signature" in q
    assert "AWSAccessKeyId" not in q and "Expires" not in q  # not SigV2
    signed = datetime.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - signed).total_seconds()) < 60
    assert int(q["X-Amz-Expires"]) == 900
    assert requests.get(url, timeout=5).status_code == 200


# --------------------------------------------------------------------------- IAM: what the code needs
# (tests/deploy/test_template.py checks nothing is granted beyond the stack's own resources; this checks
# the colocate role is granted what run_task actually does to the output bucket.)
def _policy_actions(function: str) -> dict[str, set[str]]:
    from cfnlint.decode import decode

    from tests.deploy_fixtures import TEMPLATE

    tpl, _ = decode(str(TEMPLATE))
    out: dict[str, set[str]] = {}
    for policy in tpl["Resources"][function]["Properties"].get("Policies", []):
        for st in policy.get("Statement", []):
            if st.get("Effect") != "Allow":
                continue
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resource = json.dumps(st.get("Resource"))
            for a in actions:
                out.setdefault(a, set()).add(resource)
    return out


def test_colocate_role_can_clean_up_what_it_wrote():
    actions = _policy_actions("ColocateFunction")
    # run_task: get_object (manifest), put_object (outputs, manifest), list_objects_v2 (orphans),
    # delete_objects (its own files on failure, a dead run's orphans) → s3:DeleteObject per key
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert any("OutputBucket.Arn}/*" in r for r in actions.get(action, ())), (action, actions)
    assert any("OutputBucket" in r for r in actions.get("s3:ListBucket", ())), actions


def test_no_credential_in_function_environments():
    from cfnlint.decode import decode

    from tests.deploy_fixtures import TEMPLATE

    tpl, _ = decode(str(TEMPLATE))
    blocks = [tpl.get("Globals", {}).get("Function", {}).get("Environment", {})]
    blocks += [r["Properties"].get("Environment", {}) for r in tpl["Resources"].values()
               if r["Type"] == "AWS::Serverless::Function"]
    for block in blocks:
        for name in block.get("Variables", {}):
            assert not any(word in name.upper() for word in ("TOKEN", "PASSWORD", "SECRET_ACCESS", "USERNAME")) \
                or name == "COLOC_EDL_SECRET_NAME", name
