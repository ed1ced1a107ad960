"""The EDL token and EDL/DAAC cookies reach Earthdata hosts only, on redirect chains of every shape.

Four loopback servers play the hosts: EDL and a DAAC's TEA (Earthdata), CloudFront and S3
(allowed, not Earthdata). All share 127.0.0.1, so the cookie jar alone would send every cookie
everywhere; the production ``EarthdataSession`` must keep them (and ``Authorization``) off the
non-Earthdata hops. Each server records the credentials it was shown.
"""
from __future__ import annotations

import pytest
from flask import Flask, redirect, request

from core.access.earthdata import EarthdataSession, StaticToken
from core.config import Settings
from sandbox.emulator import ServerThread

TOKEN = "EDL-TOKEN-SECRET-0001"
COOKIES = {"urs_session": "EDL-COOKIE-SECRET", "tea_session": "TEA-COOKIE-SECRET"}
SECRETS = (TOKEN, *COOKIES.values())


class Hosts:
    def __init__(self):
        self.seen: list[tuple[str, str, str, str]] = []  # (host, path, Authorization, Cookie)
        self.servers = {name: ServerThread(self._app(name), f"scope-{name}")
                        for name in ("edl", "tea", "cloudfront", "s3")}

    def url(self, name: str, path: str) -> str:
        return f"{self.servers[name].url}{path}"

    def _app(self, name: str) -> Flask:
        app = Flask(f"scope-{name}")

        @app.before_request
        def record():
            self.seen.append((name, request.path, request.headers.get("Authorization", ""),
                              request.headers.get("Cookie", "")))

        def hop(target: str, code: int):
            resp = redirect(target, code=code)
            if name == "edl":
                resp.set_cookie("urs_session", COOKIES["urs_session"])
            if name == "tea":
                resp.set_cookie("tea_session", COOKIES["tea_session"])
            return resp

        @app.get("/to/<nxt>/<int:code>/<path:rest>")
        def forward(nxt, code, rest):  # /to/<host>/<status>/<the rest of the chain>
            return hop(self.url(nxt, "/" + rest), code)

        @app.get("/object")
        def obj():
            return f"bytes from {name}".encode(), 200, {"Content-Type": "application/octet-stream"}

        return app

    def __enter__(self):
        for s in self.servers.values():
            s.start()
        return self

    def __exit__(self, *exc):
        for s in self.servers.values():
            s.stop()


@pytest.fixture
def hosts():
    with Hosts() as h:
        yield h


def _session(hosts: Hosts) -> EarthdataSession:
    settings = Settings().replace(
        earthdata_hosts=(hosts.servers["edl"].host, hosts.servers["tea"].host),
        extra_allowed_hosts=(hosts.servers["cloudfront"].host, hosts.servers["s3"].host),
        http_retries=0,
    )
    return EarthdataSession(settings, StaticToken(TOKEN))


def _path(hops: list[tuple[str, int]], end: str) -> str:
    """URL path on hops[0]'s host: each hop redirects (with its status) to the next host."""
    path = "/object"
    targets = [h for h, _ in hops[1:]] + [end]
    for (_, code), nxt in reversed(list(zip(hops, targets))):
        path = f"/to/{nxt}/{code}{path}"
    return path


EARTHDATA = {"edl", "tea"}
SHAPES = {
    "earthdata->s3 (TEA 307 to a presigned URL)": ([("tea", 307)], "s3"),
    "earthdata->cloudfront->s3 (PO.DAAC's 303 via CloudFront)": ([("tea", 303), ("cloudfront", 307)], "s3"),
    "s3->earthdata": ([("s3", 302)], "tea"),
    "earthdata->earthdata->s3 (on-prem OAuth, then S3)": ([("tea", 302), ("edl", 302), ("tea", 307)], "s3"),
    "s3->earthdata->cloudfront": ([("s3", 302), ("edl", 302)], "cloudfront"),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_credentials_reach_earthdata_hosts_only(hosts, shape):
    hops, end = SHAPES[shape]
    s = _session(hosts)
    # a session that already holds EDL and DAAC cookies (as after an on-prem login)
    s.get(hosts.url("edl", _path([("edl", 302), ("tea", 302)], "edl")))  # sets both on 127.0.0.1
    assert {c.name for c in s.cookies} == set(COOKIES)
    hosts.seen.clear()
    first = hops[0][0]
    resp = s.get(hosts.url(first, _path(hops, end)))
    assert resp.status_code == 200 and resp.text == f"bytes from {end}"
    assert [h.status_code for h in resp.history] == [code for _, code in hops]
    visited = [h for h, *_ in hosts.seen]
    assert visited == [h for h, _ in hops] + [end], visited
    for host, path, auth, cookie in hosts.seen:
        if host in EARTHDATA:
            assert auth == f"Bearer {TOKEN}", (host, path)
        else:
            leaked = [x for x in SECRETS if x in auth or x in cookie]
            assert not auth and not leaked, (shape, host, path, auth, cookie)
    # the cookies did travel where they belong (so their absence elsewhere means something)
    assert any(COOKIES["urs_session"] in c for h, _, _, c in hosts.seen if h in EARTHDATA)
