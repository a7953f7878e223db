"""A tiny OAuth2 authorization server on loopback for tests and demos (standard library only).

It issues opaque bearer tokens with the client-credentials grant (RFC 6749 section 4.4) and
answers token introspection (RFC 7662) as Dovecot's ``oauth2`` passdb calls it, so a test can
log in to ``tests/dovecot.py``'s server with XOAUTH2/OAUTHBEARER::

    clients = {"mailkeep-test": OAuthClient("s3cret", "alice@example.test")}
    with TokenServer(clients) as tokens, Dovecot(tmp_path, oauth2_introspection_url=tokens.introspection_url):
        ...  # POST tokens.token_url, then authenticate as alice@example.test with the token

Tokens stay valid until the server stops (``expires_in`` is advertised, never enforced).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_LIFETIME = 3600
"""Seconds advertised as ``expires_in``; introspection's ``exp`` is issue time plus this (Unix s)."""

MASK = "***"
"""What ``client_secret`` becomes in ``TokenServer.requests``."""


@dataclass(frozen=True)
class OAuthClient:
    """A registered client: its ``secret``, and the mailbox login (e.g. ``alice@example.test``)
    that introspection reports as ``username`` for every token issued to it. With
    ``omit_access_token`` its successful token response is ``200 {"token_type": "Bearer",
    "expires_in": 3600}``, without ``access_token``, for tests of broken providers."""

    secret: str
    username: str
    omit_access_token: bool = False


class TokenServer:
    """An OAuth2 token and introspection endpoint on ``host`` (IPv4), on a free port, in a
    background thread. Use as a context manager or call start()/stop().

    ``clients`` maps client_id to OAuthClient. Endpoints (all POST, form-encoded, JSON replies):

    - ``/token``: ``grant_type=client_credentials`` (optional ``scope``), client authenticated
      by HTTP Basic (client_secret_basic; id and secret form-urlencoded first, RFC 6749
      section 2.3.1) or form fields ``client_id``/``client_secret`` (client_secret_post).
      200 ``{"access_token", "token_type": "Bearer", "expires_in": 3600[, "scope"]}``;
      401 ``invalid_client`` for an unknown client or wrong secret (checked before the grant);
      400 ``unsupported_grant_type`` for other grants, ``invalid_request`` for a missing
      grant or both authentication methods at once.
    - ``/introspect``: form field ``token``. 200 ``{"active": true, "username", "client_id",
      "token_type", "exp"[, "scope"]}`` for an issued token, else ``{"active": false}``.
      The caller is not authenticated (Dovecot sends no credentials unless its URL has them).

    Attributes (set by start()): ``url`` (e.g. ``http://127.0.0.1:43123``), ``token_url``,
    ``introspection_url``. ``requests`` lists every request received, in order, as
    ``{"path": "/token", "form": {field: value}, "basic_client_id": str | None}``, with
    ``client_secret`` replaced by MASK (tokens are kept: tests compare them).
    """

    def __init__(self, clients: dict[str, OAuthClient], host: str = "127.0.0.1"):
        self.clients = dict(clients)
        self.host = host
        self.url = self.token_url = self.introspection_url = ""
        self.requests: list[dict] = []
        self._tokens: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> TokenServer:
        """Bind a free port and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("TokenServer already started")
        self._httpd = ThreadingHTTPServer((self.host, 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.token_server = self
        self.url = f"http://{self.host}:{self._httpd.server_address[1]}"
        self.token_url = f"{self.url}/token"
        self.introspection_url = f"{self.url}/introspect"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="TokenServer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and join the thread. Idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            self._thread.join()

    def issue_token(self, client_id: str, scope: str | None = None) -> str:
        """A new access token for ``client_id`` without an HTTP round trip (no secret needed)."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = {
                "client_id": client_id, "username": self.clients[client_id].username,
                "scope": scope, "exp": int(time.time()) + TOKEN_LIFETIME,
            }
        return token

    def _token(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, dict]:
        if basic and "client_secret" in form:
            return 400, {"error": "invalid_request", "error_description": "Multiple client authentication"}
        client_id, secret = basic or (form.get("client_id"), form.get("client_secret"))
        client = self.clients.get(client_id)
        if (client is None or secret is None
                or not secrets.compare_digest(secret.encode(), client.secret.encode())):
            return 401, {"error": "invalid_client", "error_description": "Client authentication failed"}
        if "grant_type" not in form:
            return 400, {"error": "invalid_request", "error_description": "Missing grant_type"}
        if form["grant_type"] != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        scope = form.get("scope")
        body = {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME}
        if not client.omit_access_token:
            body["access_token"] = self.issue_token(client_id, scope)
        if scope is not None:
            body["scope"] = scope
        return 200, body

    def _introspect(self, form: dict[str, str]) -> dict:
        with self._lock:
            info = self._tokens.get(form.get("token", ""))
        if info is None:
            return {"active": False}
        return {"active": True, "token_type": "Bearer", **{k: v for k, v in info.items() if v is not None}}


class _Handler(BaseHTTPRequestHandler):
    # protocol_version stays HTTP/1.0: one request per connection, so no keep-alive handler
    # thread (Dovecot's http client would hold one open for 60 s) outlives stop().
    server_version = "TokenServer"

    def do_POST(self) -> None:
        server: TokenServer = self.server.token_server
        length = int(self.headers.get("Content-Length") or 0)
        text = self.rfile.read(length).decode("utf-8", "replace")
        form = dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
        basic = _basic_credentials(self.headers.get("Authorization"))
        with server._lock:
            server.requests.append({
                "path": self.path,
                "form": {k: MASK if k == "client_secret" and v else v for k, v in form.items()},
                "basic_client_id": basic[0] if basic else None,
            })
        if self.path == "/token":
            status, body = server._token(form, basic)
        elif self.path == "/introspect":
            status, body = 200, server._introspect(form)
        else:
            status, body = 404, {"error": "not_found"}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="token"')
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args) -> None:
        """Silenced: stderr noise in test output, and request lines could carry credentials."""


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(client_id, secret) from an ``Authorization: Basic`` header, or None if absent/malformed."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, sep, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not sep:
        return None
    return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)
