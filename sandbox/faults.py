"""Programmable fault injection for the loopback emulators (any Flask app).

Tests program rules per path prefix (optionally per app): a status code with headers and a
body, a delay, a body cut short (``Content-Length`` still announcing the full size), a
connection dropped mid-body, an HTML login page instead of the file, or a redirect loop.
A rule fires ``times`` times (``None`` = until removed).

    faults = Faults()
    faults.install(app, "cmr")                 # before_request / after_request hooks
    faults.add("/search", status=429, headers={"Retry-After": "1"}, times=1)
"""
from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from flask import Flask, Response, g, request

LOGIN_PAGE = b"""<!DOCTYPE html>
<html><head><title>Earthdata Login</title></head>
<body><form action="/login" method="post"><h1>Earthdata Login</h1>
<input name="username"><input name="password" type="password"></form></body></html>
"""


@dataclass
class Rule:
    prefix: str
    app: str | None = None  # emulator name ("edl", "nsidc", "podaac", "onprem", "s3", "cmr")
    method: str | None = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | str | None = None
    content_type: str = "text/plain"
    delay_s: float = 0.0
    truncate_to: int | None = None  # send this many body bytes, then close cleanly
    drop_after: int | None = None  # send this many body bytes, then reset the connection
    html_login: bool = False
    redirect_loop: bool = False
    ignore_range: bool = False  # answer 200 with the whole body, as servers without Range do
    credentials_ttl_s: float | None = None  # TEA /s3credentials: issue credentials this short-lived
    times: int | None = None
    hits: int = 0
    id: int = 0

    def matches(self, app: str, method: str, path: str) -> bool:
        return (
            path.startswith(self.prefix)
            and (self.app is None or self.app == app)
            and (self.method is None or self.method.upper() == method)
        )


class Faults:
    """A thread-safe rule set shared by every emulator app of one sandbox."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._ids = itertools.count(1)
        self.fired: list[tuple[str, str, int]] = []  # (app, path, rule id)

    def add(self, prefix: str = "/", **kwargs) -> Rule:
        rule = Rule(prefix=prefix, **kwargs)
        with self._lock:
            rule.id = next(self._ids)
            self._rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if r.id != rule.id]

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.fired.clear()

    def take(self, app: str, method: str, path: str) -> Rule | None:
        """The first matching rule, consuming one of its ``times``."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(app, method, path):
                    rule.hits += 1
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            self._rules.remove(rule)
                    self.fired.append((app, path, rule.id))
                    return rule
        return None

    # --- Flask integration -----------------------------------------------------------------
    def install(self, app: Flask, name: str) -> None:
        """Apply this rule set to ``app`` (call before the app serves requests)."""

        @app.before_request
        def _inject_fault():
            rule = self.take(name, request.method, request.path)
            if rule is None:
                return None
            if rule.delay_s:
                time.sleep(rule.delay_s)
            if rule.ignore_range:
                request.environ.pop("HTTP_RANGE", None)
            if rule.html_login:
                return Response(LOGIN_PAGE, 200, {"Content-Type": "text/html; charset=utf-8"})
            if rule.redirect_loop:
                # bounce between this URL and itself with a marker, as a missing cookie jar would
                return Response(b"", 302, {"Location": request.url})
            if rule.status is not None:
                body = rule.body if rule.body is not None else f"injected {rule.status}"
                resp = Response(body, rule.status, {"Content-Type": rule.content_type})
                resp.headers.update(rule.headers)
                return resp
            if rule.body is not None:
                resp = Response(rule.body, 200, {"Content-Type": rule.content_type})
                resp.headers.update(rule.headers)
                return resp
            g.fault_rule = rule  # body-level faults are applied once the real response exists
            return None

        @app.after_request
        def _cut_body(resp: Response):
            rule: Rule | None = g.pop("fault_rule", None)
            if rule is None:
                return resp
            resp.headers.update(rule.headers)
            limit = rule.truncate_to if rule.truncate_to is not None else rule.drop_after
            if limit is None:
                return resp
            length = resp.headers.get("Content-Length")  # never materialise a streamed body
            sock = request.environ.get("werkzeug.socket")
            resp.direct_passthrough = False
            resp.response = _cut(resp.iter_encoded(), limit, sock, reset=rule.drop_after is not None)
            if length is not None:
                resp.headers["Content-Length"] = length  # still announce the full size
            return resp


def _cut(chunks: Iterable[bytes], limit: int, sock: socket.socket | None, *, reset: bool) -> Iterator[bytes]:
    sent = 0
    for chunk in chunks:
        if sent + len(chunk) >= limit:
            yield chunk[: limit - sent]
            break
        sent += len(chunk)
        yield chunk
    # The dev server would otherwise wait for the missing bytes on a kept-alive connection.
    if sock is not None:
        try:
            if reset:  # RST, like a proxy or load balancer dying mid-transfer
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
