"""Loopback Earthdata emulator: EDL, the DAACs' TEA hosts, an on-prem DAAC host and S3 presigned URLs.

Each service is its own Flask app on its own ``127.0.0.1`` port, so the redirects between them
cross hosts exactly as they do in production (``requests`` strips ``Authorization`` on a port
change too). Behaviour follows tests/data/realdata/s3credentials_and_EDL_flow.md:

* EDL (``edl``): ``/oauth/authorize`` (Basic or bearer, else 401 challenge) → 302 back to the
  client's ``redirect_uri`` with ``code`` and ``state``; the token API
  (``/api/users/find_or_create_token``, ``/api/users/tokens``, ``/api/users/token``); ``/profile``.
* TEA (``nsidc``, ``podaac``), after asfadmin/thin-egress-app ``src/thin_egress_app/app.py``:
  ``/s3credentials`` (camelCase keys, ``expiration`` like ``2021-01-27 00:50:09+00:00``) and
  ``/<bucket>/<key>`` → **303** to a presigned URL on ``s3`` (``try_download_from_bucket``), or,
  for a caller outside us-west-2 (``state.caller_in_region = False``), 303 to a signed CloudFront
  URL ``/s3-<hash>/<bucket>.s3.us-west-2.amazonaws.com/<key>?A-userid=…&Expires=…&Signature=…``
  on ``cloudfront`` (``state.cloudfront_hops = 2``: that host redirects once more, to
  ``cloudfront2``). Without a bearer token or session cookie: 302 to EDL, ``/redirect?code=``
  sets the cookie. A bearer token is decoded as a JWT without verification (TEA's
  ``get_profile_with_jwt_bearer``): one that is not a JWT gets the same **302 to EDL**, not a
  401; a JWT is checked with EDL (``/api/users/<uid>``): EDL's refusal (expired, revoked) comes
  back with EDL's status and JSON body; an EULA the user has not accepted
  (``state.require_eula``) is **403 JSON** ``{"status_code", "error_description",
  "resolution_url"}`` (rain-api-core's ``EulaException`` sample).
* On-prem (``onprem``, n5eil01u style): no cookie → 302 to EDL ``/oauth/authorize`` with
  ``state`` → ``/OPS/redirect?code=`` → cookie → 302 to the file → 200 with ``Content-Length``.
* Presigned S3 (``s3``): serves the bytes (``Range`` → 206); like real S3 it answers 400 to a
  request that carries an ``Authorization`` header as well as a presigned query.
* CloudFront (``cloudfront``, ``cloudfront2``): checks ``Expires``/``Signature`` (signed for
  GET only: a HEAD is 403, as gdal issue 4641 reports), refuses a second auth mechanism like
  its S3 origin, serves the bytes with ``Range``.

Every request is recorded (``state.requests``) with its headers so tests can prove where a
token went; every app honours the shared :class:`sandbox.faults.Faults` rule set.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, Response, abort, g, jsonify, redirect, request
from werkzeug.serving import make_server

from sandbox.faults import Faults

DAAC_BUCKETS = {
    "nsidc": ("nsidc-cumulus-prod-protected",),
    "podaac": ("podaac-ops-cumulus-protected", "podaac-ops-cumulus-public"),  # public: .md5, .cmr.json
}
ONPREM_CLIENT_ID = "_JLuwMHxb2xX6NwYTb4dRA"  # NSIDC_DATAPOOL_OPS, as in the recorded flow
S3_REGION_HOST = "s3.us-west-2.amazonaws.com"
TOKEN_TTL_S = 60 * 86400  # EDL user tokens live 60 days
_CHUNK = 256 * 1024

logging.getLogger("werkzeug").setLevel(logging.ERROR)


@dataclass
class RecordedRequest:
    app: str
    method: str
    path: str
    query: str
    headers: dict[str, str]


@dataclass
class EarthdataState:
    """Users, tokens, OAuth codes, sessions, issued credentials and the request log."""

    users: dict[str, str] = field(default_factory=dict)  # username -> password
    tokens: dict[str, str] = field(default_factory=dict)  # token -> username
    credentials_ttl_s: float = 3600.0  # lifetime of issued /s3credentials (short for tests)
    # what "now" is when /s3credentials sets an expiration: a test that drives the client's
    # clock past an expiry hands the same clock here, so the next set is valid on that clock
    credentials_clock: Callable[[], float] = time.time
    presign_ttl_s: int = 3600
    base_urls: dict[str, str] = field(default_factory=dict)  # app name -> http://127.0.0.1:port
    files: dict[tuple[str, str], Path] = field(default_factory=dict)  # (bucket, key) -> file
    onprem_files: dict[str, Path] = field(default_factory=dict)  # on-prem URL path -> file
    requests: list[RecordedRequest] = field(default_factory=list)
    issued_credentials: list[dict] = field(default_factory=list)  # {"daac", "accessKeyId", ...}
    faults: Faults = field(default_factory=Faults)
    # where the caller is, as TEA decides it from the source IP (check_in_region_request)
    caller_in_region: bool = True
    cloudfront_hops: int = 1  # 2: the first CloudFront host redirects to a second one
    cloudfront_ttl_s: int = 3600  # lifetime of a signed CloudFront URL (ASF's are 15 s)
    # CloudFront's "now", for signing and checking Expires: a test moves it past a URL's expiry
    # instead of sleeping through a short lifetime (which a loaded machine overruns early)
    cloudfront_clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[str, tuple[str, str]] = {}  # code -> (username, client_id)
        self._sessions: dict[str, str] = {}  # cookie value -> username
        self._signing_key = secrets.token_bytes(32)
        self._serial = itertools.count(1)
        self.clients: dict[str, str] = {}  # client_id -> redirect_uri
        self._expired: set[str] = set()  # tokens past their expiry (EDL still knows them)
        self._eula: dict[tuple[str, str], str] = {}  # (username, daac) -> EULA name not accepted

    # --- users and tokens ------------------------------------------------------------------
    def add_user(self, username: str, password: str) -> str:
        """Register a user; returns a fresh bearer token for them."""
        with self._lock:
            self.users[username] = password
        return self.new_token(username)

    def new_token(self, username: str, ttl_s: float = TOKEN_TTL_S) -> str:
        """An EDL user token: a JWT (RS256 in EDL; an HMAC here) with ``uid`` and ``exp``."""
        now = int(time.time())
        header = {"typ": "JWT", "origin": "Earthdata Login", "sig": "edljwtpubkey_sandbox", "alg": "RS256"}
        claims = {"type": "User", "uid": username, "exp": now + int(ttl_s), "iat": now,
                  "iss": "Earthdata Login", "jti": secrets.token_hex(8)}
        body = f"{_b64json(header)}.{_b64json(claims)}"
        sig = base64.urlsafe_b64encode(hmac.new(self._signing_key, body.encode(), hashlib.sha256).digest())
        token = f"{body}.{sig.decode().rstrip('=')}"
        with self._lock:
            self.tokens[token] = username
        return token

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self.tokens.pop(token, None)

    def expire_token(self, token: str) -> None:
        """Let a token run past its ``exp`` (EDL answers with its own 'expired' error)."""
        with self._lock:
            self._expired.add(token)

    def require_eula(self, username: str, daac: str, eula: str = "sandbox_eula") -> None:
        with self._lock:
            self._eula[(username, daac)] = eula

    def accept_eula(self, username: str, daac: str) -> None:
        with self._lock:
            self._eula.pop((username, daac), None)

    def edl_user_error(self, token: str, uid: str, client_id: str, daac: str | None = None) -> tuple[int, dict] | None:
        """EDL's answer to ``GET /api/users/<uid>?client_id=`` with this bearer token, if it
        refuses: (status, JSON body). The error shape is OAuth's (RFC 6750: ``error`` and
        ``error_description``); an EULA is rain-api-core's recorded sample."""
        with self._lock:
            user = self.tokens.get(token)
            expired = token in self._expired or _jwt_expiry(token) < time.time()
            eula = self._eula.get((user or "", daac or ""))
        if user is None or user != uid:
            return 401, {"error": "invalid_token", "error_description": "Invalid or revoked token"}
        if expired:
            return 401, {"error": "invalid_token", "error_description": "The token has expired"}
        if eula is not None:
            return 403, {"status_code": 403, "error_description": "EULA Acceptance Failure",
                         "resolution_url": f"{self.base_urls['edl']}/approve_app?client_id={client_id}"}
        return None

    def tokens_of(self, username: str) -> list[str]:
        with self._lock:
            return [t for t, u in self.tokens.items() if u == username]

    def check_password(self, username: str, password: str) -> bool:
        with self._lock:
            known = self.users.get(username)
        return known is not None and hmac.compare_digest(known, password)

    def new_code(self, username: str, client_id: str) -> str:
        code = secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = (username, client_id)
        return code

    def redeem_code(self, code: str, client_id: str) -> str | None:
        with self._lock:
            entry = self._codes.pop(code, None)
        return entry[0] if entry and entry[1] == client_id else None

    def new_session(self, username: str) -> str:
        value = secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[value] = username
        return value

    def session_user(self, value: str | None) -> str | None:
        with self._lock:
            return self._sessions.get(value or "")

    # --- S3 ----------------------------------------------------------------------------------
    def issue_credentials(self, daac: str, ttl_s: float | None = None) -> dict:
        ttl = self.credentials_ttl_s if ttl_s is None else ttl_s
        expires = datetime.fromtimestamp(self.credentials_clock() + ttl, tz=UTC)
        creds = {
            # distinct per DAAC and per issue, so tests can tell which set was used
            "accessKeyId": f"ASIA{daac.upper()}{next(self._serial):06d}",
            "secretAccessKey": secrets.token_urlsafe(30),
            "sessionToken": secrets.token_urlsafe(120),
            "expiration": expires.strftime("%Y-%m-%d %H:%M:%S+00:00"),
        }
        with self._lock:
            self.issued_credentials.append({"daac": daac, **creds})
        return creds

    def presign(self, bucket: str, key: str) -> str:
        expires = int(time.time()) + self.presign_ttl_s
        query = {
            "A-userid": "sandbox",
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": "ASIASANDBOX/us-west-2/s3/aws4_request",
            "X-Amz-Expires": str(self.presign_ttl_s),
            "X-Amz-Date": str(expires),
            "X-Amz-Signature": self._sign(bucket, key, expires),
        }
        return f"{self.base_urls['s3']}/{bucket}/{key}?{urlencode(query)}"

    def _sign(self, bucket: str, key: str, expires: int) -> str:
        msg = f"{bucket}/{key}:{expires}".encode()
        return hmac.new(self._signing_key, msg, hashlib.sha256).hexdigest()

    def verify_presigned(self, bucket: str, key: str, args) -> bool:
        try:
            expires = int(args.get("X-Amz-Date", ""))
        except ValueError:
            return False
        good = hmac.compare_digest(self._sign(bucket, key, expires), args.get("X-Amz-Signature", ""))
        return good and expires >= time.time()

    def cloudfront_url(self, app: str, bucket: str, key: str, user: str) -> str:
        """A signed CloudFront URL (the shape TEA hands a caller outside us-west-2)."""
        expires = int(self.cloudfront_clock()) + self.cloudfront_ttl_s
        path = f"/s3-{hashlib.sha1(bucket.encode()).hexdigest()[:12]}/{bucket}.{S3_REGION_HOST}/{key}"
        query = {"A-userid": user, "Expires": str(expires), "Signature": self._sign(app + path, user, expires),
                 "Key-Pair-Id": "KSANDBOXCLOUDFRONT"}
        return f"{self.base_urls[app]}{path}?{urlencode(query)}"

    def verify_cloudfront(self, app: str, path: str, args) -> bool:
        try:
            expires = int(args.get("Expires", ""))
        except ValueError:
            return False
        want = self._sign(app + path, args.get("A-userid", ""), expires)
        return hmac.compare_digest(want, args.get("Signature", "")) and expires >= self.cloudfront_clock()

    def credentials_for(self, access_key_id: str) -> dict | None:
        """The issued /s3credentials set with this access key id, if any."""
        with self._lock:
            return next((c for c in self.issued_credentials if c["accessKeyId"] == access_key_id), None)

    def requests_to(self, app: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.app == app]

    def record(self, app: str) -> None:
        entry = RecordedRequest(
            app, request.method, request.path, request.query_string.decode(), dict(request.headers)
        )
        with self._lock:
            self.requests.append(entry)


# --- helpers ---------------------------------------------------------------------------------
def _new_app(name: str, state: EarthdataState) -> Flask:
    app = Flask(f"sandbox-{name}")
    app.before_request(lambda: state.record(name))  # recorder first, so faulted calls show too
    state.faults.install(app, name)
    return app


def _bearer() -> str | None:
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def _basic_user(state: EarthdataState) -> str | None:
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return None
    if state.check_password(auth.username or "", auth.password or ""):
        return auth.username
    abort(Response("Invalid user credentials", 401, {"WWW-Authenticate": 'Basic realm="Earthdata Login"'}))


def serve_file(path: Path, *, attachment: bool = False) -> Response:
    """Stream a file with Content-Length; a single ``Range`` gives 206 + Content-Range."""
    size = path.stat().st_size
    start, end, status = 0, size, 200
    headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    rng = request.range
    if rng is not None:
        bounds = rng.range_for_length(size)
        if bounds is None:
            return Response(b"", 416, {"Content-Range": f"bytes */{size}"})
        start, end = bounds
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    if attachment:
        headers["Content-Disposition"] = f"attachment; filename={path.name}"

    def body():
        with open(path, "rb") as fh:
            fh.seek(start)
            left = end - start
            while left > 0:
                chunk = fh.read(min(_CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    return Response(body(), status, headers, direct_passthrough=True)


def _s3_error(status: int, code: str, message: str) -> Response:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(xml, status, {"Content-Type": "application/xml"})


def _b64json(obj: dict) -> str:
    import json

    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")


def _jwt_claims(token: str) -> dict:
    """The payload of a JWT, unverified (as TEA's ``jwt.decode(verify_signature=False)``);
    raises ValueError if ``token`` is not a JWT."""
    import json

    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError) as exc:
        raise ValueError("not a JWT") from exc
    if not isinstance(claims, dict):
        raise ValueError("not a JWT")
    return claims


def _jwt_expiry(token: str) -> float:
    try:
        return float(_jwt_claims(token).get("exp", 0))
    except (ValueError, TypeError):
        return 0.0


def _json_response(status: int, body: dict) -> Response:
    import json

    return Response(json.dumps(body), status, {"Content-Type": "application/json"})


def _state_param(url: str) -> str:
    return base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def _decode_state(value: str) -> str:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()


# --- EDL ---------------------------------------------------------------------------------------
def create_edl_app(state: EarthdataState) -> Flask:
    app = _new_app("edl", state)

    def _user() -> str | None:
        token = _bearer()
        if token is not None:
            user = state.tokens.get(token, "")
            refusal = state.edl_user_error(token, user, "")  # unknown, revoked or expired
            if refusal is not None:
                abort(_json_response(*refusal))
            return user
        return _basic_user(state) or state.session_user(request.cookies.get("urs_session"))

    def _challenge() -> Response:
        return Response(
            "Authentication required", 401, {"WWW-Authenticate": 'Basic realm="Earthdata Login"'}
        )

    @app.get("/oauth/authorize")
    def authorize():
        client_id = request.args.get("client_id", "")
        redirect_uri = request.args.get("redirect_uri", "")
        if state.clients.get(client_id) != redirect_uri or request.args.get("response_type") != "code":
            return Response("invalid_client or redirect_uri", 400)
        user = _user()
        if user is None:
            return _challenge()
        code = state.new_code(user, client_id)
        query = {"code": code}
        if "state" in request.args:
            query["state"] = request.args["state"]
        resp = redirect(f"{redirect_uri}?{urlencode(query)}", 302)
        resp.set_cookie("urs_session", state.new_session(user), httponly=True)
        return resp

    @app.post("/api/users/find_or_create_token")
    def find_or_create_token():
        user = _basic_user(state)
        if user is None:
            return _challenge()
        existing = state.tokens_of(user)
        token = existing[0] if existing else state.new_token(user)
        return jsonify(_token_json(token))

    @app.post("/api/users/token")
    def create_token():
        user = _basic_user(state)
        if user is None:
            return _challenge()
        return jsonify(_token_json(state.new_token(user)))

    @app.get("/api/users/tokens")
    def list_tokens():
        user = _basic_user(state)
        if user is None:
            return _challenge()
        return jsonify([_token_json(t) for t in state.tokens_of(user)])

    @app.get("/api/users/<uid>")
    def user_profile(uid: str):
        # what TEA asks EDL for a bearer token (rain-api-core EdlClient, get_profile_with_jwt_bearer)
        token = _bearer()
        if token is None:
            return _json_response(401, {"error": "invalid_token", "error_description": "Token is missing"})
        refusal = state.edl_user_error(token, uid, request.args.get("client_id", ""))
        if refusal is not None:
            return _json_response(*refusal)
        return jsonify({"uid": uid, "first_name": "Sandbox", "last_name": "User", "user_groups": []})

    @app.get("/profile")
    def profile():
        user = _user()
        if user is None:
            return redirect("/home", 302)
        return jsonify({"uid": user, "first_name": "Sandbox", "last_name": "User"})

    @app.get("/home")
    def home():
        return Response("<html><body>Earthdata Login home</body></html>", 200, {"Content-Type": "text/html"})

    return app


def _token_json(token: str) -> dict:
    expires = datetime.fromtimestamp(time.time() + 60 * 86400, tz=UTC)
    return {"access_token": token, "token_type": "Bearer", "expiration_date": expires.strftime("%m/%d/%Y")}


# --- EDL-protected data hosts ----------------------------------------------------------------
def _protected(app: Flask, name: str, state: EarthdataState, redirect_path: str, *, accept_bearer: bool = True):
    """Register the OAuth client for ``app`` and return ``current_user() -> str | Response``."""
    client_id = ONPREM_CLIENT_ID if name == "onprem" else f"sandbox-{name}-tea"
    cookie = f"{name}_session"

    def redirect_uri() -> str:
        return f"{state.base_urls[name]}{redirect_path}"

    def login_redirect():
        original = f"{state.base_urls[name]}{request.full_path.rstrip('?')}"
        query = urlencode(
            {
                "client_id": client_id,
                "response_type": "code",
                "redirect_uri": redirect_uri(),
                "state": _state_param(original),
            }
        )
        return redirect(f"{state.base_urls['edl']}/oauth/authorize?{query}", 302)

    def current_user():
        state.clients[client_id] = redirect_uri()
        user = state.session_user(request.cookies.get(cookie))
        if user is not None:
            return user
        token = _bearer() if accept_bearer else None
        if token is None:
            return login_redirect()
        try:
            # TEA decodes the bearer token as a JWT without verifying it; anything else ends in
            # its catch-all: no profile -> do_auth_and_return -> 302 to EDL (not a 401)
            uid = str(_jwt_claims(token)["uid"])
        except (ValueError, KeyError):
            return login_redirect()
        refusal = state.edl_user_error(token, uid, client_id, name)
        if refusal is not None:
            status, body = refusal
            # EulaException: 403 with EDL's message plus status_code; other EdlException: EDL's
            # own status and body
            return _json_response(status, {**body, "status_code": status} if status == 403 else body)
        return uid

    @app.get(redirect_path)
    def oauth_redirect():
        user = state.redeem_code(request.args.get("code", ""), client_id)
        if user is None:
            return Response("invalid or expired code", 401)
        target = _decode_state(request.args.get("state", "")) or f"{state.base_urls[name]}/"
        resp = redirect(target, 302)
        resp.set_cookie(cookie, state.new_session(user), httponly=True)
        return resp

    return current_user


def create_tea_app(state: EarthdataState, daac: str) -> Flask:
    """A DAAC's Thin Egress App (``nsidc`` = data.nsidc.earthdatacloud, ``podaac`` = archive.podaac)."""
    app = _new_app(daac, state)
    current_user = _protected(app, daac, state, "/redirect")

    @app.get("/s3credentials")
    def s3credentials():
        user = current_user()
        if not isinstance(user, str):
            return user
        rule = g.get("fault_rule")  # Faults.add("/s3credentials", credentials_ttl_s=...)
        return jsonify(state.issue_credentials(daac, getattr(rule, "credentials_ttl_s", None)))

    @app.get("/s3credentialsREADME")
    def readme():
        return Response("Temporary S3 credentials for in-region (us-west-2) access.", 200)

    @app.get("/<bucket>/<path:key>")
    def data(bucket: str, key: str):
        user = current_user()
        if not isinstance(user, str):
            return user
        if bucket not in DAAC_BUCKETS.get(daac, ()) or (bucket, key) not in state.files:
            return Response("Not Found", 404)
        if state.caller_in_region:
            target = state.presign(bucket, key)
        else:
            target = state.cloudfront_url("cloudfront", bucket, key, user)
        resp = redirect(target, 303)  # TEA: make_redirect(presigned_url, redirheaders, 303)
        resp.headers["Cache-Control"] = f"private, max-age={state.presign_ttl_s - 60}"
        return resp

    return app


def create_onprem_app(state: EarthdataState) -> Flask:
    """An on-premises DAAC data server (n5eil01u.ecs.nsidc.org style, OAuth + session cookie)."""
    app = _new_app("onprem", state)
    # A classic OAuth client: it ignores bearer tokens and needs the EDL redirect + its cookie.
    current_user = _protected(app, "onprem", state, "/OPS/redirect", accept_bearer=False)

    @app.get("/<path:path>")
    def data(path: str):
        user = current_user()
        if not isinstance(user, str):
            return user
        file = state.onprem_files.get("/" + path)
        if file is None:
            return Response("Not Found", 404)
        resp = serve_file(file, attachment=True)
        resp.headers["Server"] = "Apache"
        return resp

    return app


def create_s3_presign_app(state: EarthdataState) -> Flask:
    """Serves presigned GETs like in-region S3 (the target of TEA's 303)."""
    app = _new_app("s3", state)

    @app.get("/<bucket>/<path:key>")
    def get_object(bucket: str, key: str):
        if "Authorization" in request.headers and "X-Amz-Signature" in request.args:
            return _s3_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be specified",
            )
        if not state.verify_presigned(bucket, key, request.args):
            return _s3_error(403, "AccessDenied", "Request has expired or signature does not match")
        file = state.files.get((bucket, key))
        if file is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return serve_file(file)

    return app


def create_cloudfront_app(state: EarthdataState, name: str = "cloudfront") -> Flask:
    """A CloudFront distribution in front of the DAAC bucket, as a caller outside us-west-2
    reaches it: signed URLs, GET only, Range, no second auth mechanism."""
    app = _new_app(name, state)

    @app.route("/s3-<tag>/<host>/<path:key>", methods=["GET", "HEAD"])
    def get_object(tag: str, host: str, key: str):
        if "Authorization" in request.headers:
            return _s3_error(400, "InvalidArgument", "Only one auth mechanism allowed")
        if request.method != "GET" or not state.verify_cloudfront(name, request.path, request.args):
            return _s3_error(403, "AccessDenied", "Access denied")
        bucket = host.removesuffix("." + S3_REGION_HOST)
        if name == "cloudfront" and state.cloudfront_hops > 1:
            return redirect(state.cloudfront_url("cloudfront2", bucket, key, request.args.get("A-userid", "")), 307)
        file = state.files.get((bucket, key))
        if file is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return serve_file(file)

    return app


# --- servers -------------------------------------------------------------------------------------
class ServerThread:
    """A threaded WSGI server on 127.0.0.1 with a dynamic port."""

    def __init__(self, app, name: str):
        self.name = name
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sandbox-{name}", daemon=True
        )

    @property
    def app(self):
        """The WSGI app served (assignable, e.g. to wrap it in a byte counter)."""
        return self._server.app

    @app.setter
    def app(self, value) -> None:
        self._server.app = value

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --- a fault-injecting proxy in front of moto's S3 ------------------------------------------------
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "content-length", "server", "date",
}


def create_s3_proxy_app(state: EarthdataState, upstream: str) -> Flask:
    """Forwards every S3 API call to moto unchanged; fault rules (app ``"s3api"``, path prefix
    ``/<bucket>/<key>``) can throttle (503 SlowDown), deny (403), hide (404), delay or cut
    bodies short on the way — the S3 faults moto itself cannot produce."""
    import requests

    app = _new_app("s3api", state)
    http = requests.Session()
    http.trust_env = False
    methods = ["GET", "HEAD", "PUT", "POST", "DELETE"]

    @app.before_request
    def _check_daac_credentials():
        # moto accepts any key; S3 refuses expired STS credentials and a mismatched session token
        auth = request.headers.get("Authorization", "")
        m = re.search(r"Credential=([^/,\s]+)/", auth)
        key = m.group(1) if m else request.args.get("X-Amz-Credential", "").split("/")[0]
        issued = state.credentials_for(key) if key else None
        if issued is None:
            return None  # not a set the emulator issued (e.g. the output bucket's own client)
        if not state.caller_in_region:
            # the DAAC's bucket policy allows its temporary credentials only from us-west-2
            return _s3_error(403, "AccessDenied", "Access Denied")
        token = request.headers.get("X-Amz-Security-Token") or request.args.get("X-Amz-Security-Token")
        if token != issued["sessionToken"]:
            return _s3_error(403, "InvalidToken", "The provided token is malformed or otherwise invalid.")
        expires = datetime.strptime(issued["expiration"], "%Y-%m-%d %H:%M:%S+00:00").replace(tzinfo=UTC)
        if expires.timestamp() <= time.time():
            return _s3_error(400, "ExpiredToken", "The provided token has expired.")
        return None

    @app.route("/", defaults={"path": ""}, methods=methods)
    @app.route("/<path:path>", methods=methods)
    def forward(path: str):
        raw_uri = request.environ.get("RAW_URI") or request.full_path
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = request.get_data() if request.method in ("PUT", "POST") else None
        upstream_resp = http.request(
            request.method, upstream + raw_uri, headers=headers, data=body, stream=True, allow_redirects=False
        )
        out_headers = [(k, v) for k, v in upstream_resp.raw.headers.items() if k.lower() not in _HOP_BY_HOP]
        length = upstream_resp.headers.get("Content-Length")
        if length is not None:
            out_headers.append(("Content-Length", length))
        if request.method == "HEAD":
            upstream_resp.close()
            # an iterator, not b"": werkzeug would set Content-Length: 0 for a bytes body
            return Response(iter(()), upstream_resp.status_code, out_headers, direct_passthrough=True)
        return Response(
            upstream_resp.raw.stream(_CHUNK, decode_content=False),
            upstream_resp.status_code,
            out_headers,
            direct_passthrough=True,
        )

    return app


def s3_error_fault(code: str) -> dict:
    """Keyword arguments for ``Faults.add`` that make the S3 proxy answer like S3 does."""
    status = {"SlowDown": 503, "AccessDenied": 403, "NoSuchKey": 404, "InternalError": 500}[code]
    xml = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{code}</Message></Error>'
    return {"status": status, "body": xml, "content_type": "application/xml"}
