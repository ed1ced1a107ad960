"""The sandbox itself: start-up, seeding, settings/env round trip, emulator fidelity, faults."""
from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from core.config import Settings
from sandbox.faults import Faults
from sandbox.services import Sandbox
from tests.sandbox_fixtures import make_mini_scene


def test_starts_fast_and_stops_cleanly(tmp_path):
    # same names, sizes and bytes as the session mini scene: moto is process-global, and a
    # different object under the same key would overwrite the session sandbox's copy
    scene = make_mini_scene(tmp_path / "scene")
    t0 = time.monotonic()
    with Sandbox(scene, workdir=tmp_path / "w") as box:
        started = time.monotonic() - t0
        urls = dict(box.state.base_urls)
        assert requests.get(urls["edl"] + "/home", timeout=5).status_code == 200
    assert started < 3.0
    with pytest.raises(requests.ConnectionError):
        requests.get(urls["edl"] + "/home", timeout=2)


def test_buckets_objects_and_secret_are_seeded(sb):
    s3 = sb.boto3_client("s3")
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert {"nsidc-cumulus-prod-protected", "podaac-ops-cumulus-protected", sb.settings.output_bucket} <= names
    assert s3.get_bucket_location(Bucket=sb.settings.output_bucket)["LocationConstraint"] == "us-west-2"
    for g in sb.scene.granules:
        assert s3.head_object(Bucket=g.bucket, Key=g.key)["ContentLength"] == g.path.stat().st_size
    secret = sb.boto3_client("secretsmanager").get_secret_value(SecretId=sb.settings.edl_secret_name)
    assert secret["SecretString"] == sb.edl_token


def test_settings_and_env_round_trip(sb):
    env = sb.env()
    assert env["AWS_ENDPOINT_URL_S3"] == sb.moto_url and env["EARTHDATA_TOKEN"] == sb.edl_token
    assert Settings.from_env(env) == sb.settings
    ports = {urlsplit(u).port for u in sb.state.base_urls.values()} | {urlsplit(sb.moto_url).port}
    assert len(ports) == len(sb.state.base_urls) + 1  # every service on its own port
    assert all(h.startswith("127.0.0.1:") for h in sb.settings.allowed_hosts())


def test_edl_token_api_shapes_and_401(sb):
    edl = sb.url("edl")
    tokens = requests.get(f"{edl}/api/users/tokens", auth=(sb.edl_username, sb.edl_password), timeout=5)
    assert tokens.status_code == 200
    assert set(tokens.json()[0]) == {"access_token", "token_type", "expiration_date"}
    assert tokens.json()[0]["token_type"] == "Bearer"
    bad = requests.get(f"{edl}/api/users/tokens", auth=(sb.edl_username, "wrong"), timeout=5)
    assert bad.status_code == 401
    prof = requests.get(f"{edl}/profile", headers={"Authorization": f"Bearer {sb.edl_token}"}, timeout=5)
    assert prof.json()["uid"] == sb.edl_username
    anon = requests.get(f"{edl}/profile", allow_redirects=False, timeout=5)
    assert anon.status_code == 302 and anon.headers["Location"].endswith("/home")


def test_tea_without_token_redirects_to_edl_then_sets_cookie(sb):
    s = requests.Session()
    r = s.get(f"{sb.url('podaac')}/s3credentials", auth=(sb.edl_username, sb.edl_password), timeout=5)
    # Basic auth is stripped by requests on the host change, so EDL challenges
    assert r.status_code == 401 and r.url.startswith(sb.url("edl") + "/oauth/authorize")
    query = parse_qs(urlsplit(r.url).query)
    assert query["redirect_uri"] == [f"{sb.url('podaac')}/redirect"] and query["response_type"] == ["code"]
    # a browser-like client logs in at EDL, then the TEA redirect sets its cookie
    r = s.get(r.url, auth=(sb.edl_username, sb.edl_password), timeout=5)
    assert r.status_code == 200 and set(r.json()) == {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}
    assert "podaac_session" in s.cookies


def test_presigned_urls_are_checked(sb):
    g = next(g for g in sb.scene.granules if g.daac == "podaac")
    url = sb.state.presign(g.bucket, g.key)
    assert requests.get(url, timeout=5).content == g.path.read_bytes()
    assert requests.get(url, headers={"Authorization": "AWS4-HMAC-SHA256 x"}, timeout=5).status_code == 400
    parts = urlsplit(url)
    forged = dict(parse_qs(parts.query))
    forged["X-Amz-Signature"] = ["0" * 64]
    bad = requests.get(f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(forged, doseq=True)}", timeout=5)
    assert bad.status_code == 403
    part = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=5)
    assert part.status_code == 206 and part.content == g.path.read_bytes()[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{g.path.stat().st_size}"
    assert requests.get(url, headers={"Range": "bytes=999999999-"}, timeout=5).status_code == 416


def test_tea_refuses_other_daacs_buckets(sb):
    g = next(g for g in sb.scene.granules if g.daac == "nsidc")
    r = requests.get(
        f"{sb.url('podaac')}/{g.bucket}/{g.key}",
        headers={"Authorization": f"Bearer {sb.edl_token}"},
        allow_redirects=False,
        timeout=5,
    )
    assert r.status_code == 404


def test_fault_rules_times_app_filter_and_delay(sb):
    url = f"{sb.url('edl')}/home"
    rule = sb.faults.add("/home", app="edl", status=503, headers={"Retry-After": "7"}, times=2)
    sb.faults.add("/home", app="podaac", status=418)  # other app: never fires here
    r1, r2, r3 = (requests.get(url, timeout=5) for _ in range(3))
    assert (r1.status_code, r2.status_code, r3.status_code) == (503, 503, 200)
    assert r1.headers["Retry-After"] == "7" and rule.hits == 2
    sb.faults.add("/home", app="edl", delay_s=0.3, times=1)
    t0 = time.monotonic()
    assert requests.get(url, timeout=5).status_code == 200
    assert time.monotonic() - t0 >= 0.3


def test_faults_are_thread_safe():
    faults = Faults()
    faults.add("/x", status=500, times=100)
    fired = []

    def worker():
        for _ in range(50):
            fired.append(faults.take("cmr", "GET", "/x/y") is not None)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(fired) == 100 and faults.take("cmr", "GET", "/x") is None


@pytest.mark.slow
def test_seed_scene_sandbox_serves_every_granule(sandbox):
    """The real seed scene: every granule reachable via TEA (HEAD-like small range)."""
    from core.access.earthdata import EarthdataSession, StaticToken

    s = EarthdataSession(sandbox.settings, StaticToken(sandbox.edl_token))
    for g in sandbox.scene.granules:
        r = s.get(sandbox.links(g)["https"], headers={"Range": "bytes=0-7"})
        assert r.status_code == 206 and r.content == g.path.read_bytes()[:8]
