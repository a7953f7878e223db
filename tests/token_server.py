"""A tiny OAuth2 authorization server on loopback for tests and demos (standard library only).

It issues opaque bearer tokens with the client-credentials grant (RFC 6749 section 4.4), lets a person
sign in and consent (the authorization-code grant with PKCE, RFC 6749 section 4.1 and RFC 7636, with an
OpenID Connect ID Token), keeps them signed in with rotating refresh tokens (RFC 6749 section 6: each
refresh token works once), and answers token introspection (RFC 7662) as Dovecot's ``oauth2`` passdb
calls it, so a test can log in to ``tests/dovecot.py``'s server with XOAUTH2/OAUTHBEARER::

    clients = {"mailkeep-test": OAuthClient("s3cret", "alice@example.test")}
    with TokenServer(clients) as tokens, Dovecot(tmp_path, oauth2_introspection_url=tokens.introspection_url):
        ...  # POST tokens.token_url, then authenticate as alice@example.test with the token

Access tokens stay valid until the server stops (``expires_in`` is advertised, never enforced), unless
the consent they came from is revoked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_LIFETIME = 3600
"""Seconds advertised as ``expires_in``; introspection's ``exp`` is issue time plus this (Unix s)."""

CODE_LIFETIME = 600
"""Seconds an authorization code may wait to be redeemed (RFC 6749 section 4.1.2 recommends 10 minutes)."""

MASK = "***"
"""What ``client_secret`` becomes in ``TokenServer.requests``."""

APPROVE, DENY = "approve", "deny"


@dataclass(frozen=True)
class OAuthClient:
    """A registered client: its ``secret``, and the mailbox login (e.g. ``alice@example.test``)
    that introspection reports as ``username`` for every token issued to it (with the
    client-credentials grant; a sign-in's tokens are the signed-in account's). With
    ``omit_access_token`` its successful token response is ``200 {"token_type": "Bearer",
    "expires_in": 3600}``, without ``access_token``, for tests of broken providers."""

    secret: str
    username: str
    omit_access_token: bool = False


@dataclass
class _Consent:
    """One approved authorization: who, for which client and scope; every token it gave dies with it."""

    client_id: str
    username: str
    scope: str
    revoked: bool = False


@dataclass
class _Request:
    """An authorization request waiting on the consent page (or a code waiting to be redeemed)."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str
    challenge: str
    method: str
    nonce: str
    username: str
    consent: _Consent | None = None
    issued_at: float = field(default_factory=time.time)
    redeemed: bool = False


class TokenServer:
    """An OAuth2 authorization server on ``host`` (IPv4), on a free port, in a background thread. Use as a
    context manager or call start()/stop().

    ``clients`` maps client_id to OAuthClient. ``token_marker``, when given, is woven through every access
    token, refresh token and authorization code issued (tests pass the canary, so a token that leaks, whole
    or a dozen characters of it, is caught like the password). Endpoints (forms are form-encoded, answers
    JSON unless said):

    - ``GET /authorize``: an authorization request (RFC 6749 section 4.1.1) with PKCE S256 (RFC 7636;
      ``plain`` and requests without a challenge are refused). Answers an HTML consent page naming the
      account that signs in (``account``, else the client's username) with *Approve* and *Deny* buttons,
      which POST ``/authorize/decision``; that redirects (302) to the redirect URI with ``code`` and
      ``state``, or ``error=access_denied``. ``approve(url)`` and ``deny(url)`` do the same without HTTP.
    - ``/token``: ``grant_type=client_credentials`` (optional ``scope``); ``authorization_code``
      (``code``, ``redirect_uri``, ``code_verifier``: each code works once, within CODE_LIFETIME, for
      its redirect URI and verifier; 200 with ``access_token``, ``refresh_token``, ``id_token``,
      ``scope``, unless ``misanswer_next_code`` set up a wrong answer); ``refresh_token`` (each refresh
      token works once and is answered with a new one; ``invalid_grant`` for a used, unknown or revoked
      one, or one ``fail_next_refresh`` set up).
      The client authenticates by HTTP Basic (client_secret_basic; id and secret form-urlencoded
      first, RFC 6749 section 2.3.1) or form fields ``client_id``/``client_secret``
      (client_secret_post). 401 ``invalid_client`` for an unknown client or wrong secret (checked
      before the grant); 400 ``unsupported_grant_type`` for other grants, ``invalid_request`` for a
      missing grant or both authentication methods at once.
    - ``/introspect``: form field ``token``. 200 ``{"active": true, "username", "client_id",
      "token_type", "exp"[, "scope"]}`` for an issued access token whose consent stands, else
      ``{"active": false}``. The caller is not authenticated (Dovecot sends no credentials unless its
      URL has them).
    - ``GET /.well-known/openid-configuration``: its discovery document (issuer ``url``).

    Attributes (set by start()): ``url`` (e.g. ``http://127.0.0.1:43123``), ``token_url``,
    ``introspection_url``, ``authorization_url``. ``requests`` lists every request received, in
    order, as ``{"path": "/token", "form": {field: value}, "basic_client_id": str | None}``, with
    ``client_secret`` replaced by MASK (tokens are kept: tests compare them). ``refresh_tokens`` lists
    every refresh token issued, in order.
    """

    def __init__(self, clients: dict[str, OAuthClient], host: str = "127.0.0.1", token_marker: str = ""):
        self.clients = dict(clients)
        self.host = host
        self.token_marker = token_marker
        self.url = self.token_url = self.introspection_url = self.authorization_url = ""
        self.requests: list[dict] = []
        self.refresh_tokens: list[str] = []
        # The account that signs in on the consent page; None: the client's own username.
        self.account: str | None = None
        self._tokens: dict[str, dict] = {}
        self._refresh: dict[str, dict] = {}  # refresh token -> {"consent", "used"}
        self._pending: dict[str, _Request] = {}  # consent page id -> request
        self._codes: dict[str, _Request] = {}
        self._failures: list[tuple[str, str]] = []
        self._misanswers: list[dict] = []  # what the next authorization-code redemptions get wrong, in order
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
        self.authorization_url = f"{self.url}/authorize"
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

    def _new(self, kind: str) -> str:
        """A fresh token of `kind` ("at", "rt", "code"): random, or with ``token_marker`` woven through it,
        four characters of the marker after every four random ones, so any 12 characters of the token hold
        four of the marker's in a row (a leak of part of a token is caught too)."""
        if not self.token_marker:
            return secrets.token_urlsafe(32)
        pieces = [self.token_marker[start:start + 4] for start in range(0, len(self.token_marker), 4)]
        random = secrets.token_urlsafe(3 * len(pieces))
        return f"{kind}-" + "".join(random[4 * index:4 * index + 4] + piece for index, piece in enumerate(pieces))

    def issue_token(self, client_id: str, scope: str | None = None, username: str | None = None,
                    consent: _Consent | None = None) -> str:
        """A new access token for ``client_id`` without an HTTP round trip (no secret needed); it logs in as
        `username` (the client's username unless given)."""
        token = self._new("at")
        with self._lock:
            self._tokens[token] = {
                "client_id": client_id, "username": username or self.clients[client_id].username,
                "scope": scope, "exp": int(time.time()) + TOKEN_LIFETIME, "consent": consent,
            }
        return token

    # The person at the consent page, and the test's hand on the server.

    def approve(self, authorization_url: str) -> str:
        """Consent to an authorization request as ``account`` would on the page; return the URL the browser
        is sent back to (the redirect URI with ``code`` and ``state``). Raises ValueError for a request the
        page would refuse."""
        return self._decide(self._authorization_request(authorization_url), APPROVE)

    def deny(self, authorization_url: str) -> str:
        """Refuse an authorization request; return the redirect URI with ``error=access_denied``."""
        return self._decide(self._authorization_request(authorization_url), DENY)

    def revoke_consent(self, username: str | None = None) -> None:
        """Withdraw every consent given so far (of `username` only, when given): their refresh tokens then
        get ``invalid_grant`` and their access tokens introspect as inactive. A new sign-in consents anew."""
        with self._lock:
            for info in self._refresh.values():
                if username is None or info["consent"].username == username:
                    info["consent"].revoked = True

    def fail_next_refresh(self, error: str = "invalid_grant",
                          description: str = "The refresh token has expired.") -> None:
        """Answer the next refresh-token request with 400 `error` (whatever the token)."""
        with self._lock:
            self._failures.append((error, description))

    def misanswer_next_code(self, *, audience: str | list | None = None, nonce: str | None = None,
                            refresh_token: bool = True) -> None:
        """Answer the next authorization-code redemption as a broken or hostile provider would: an ID Token
        whose ``aud`` is `audience` or whose ``nonce`` is `nonce` instead of the request's, or (`refresh_token`
        False) a token response without a refresh token. The code is spent as usual."""
        with self._lock:
            self._misanswers.append({"audience": audience, "nonce": nonce, "refresh_token": refresh_token})

    def refresh_token_works(self, token: str) -> bool:
        """True when `token` would be accepted by the next refresh request."""
        with self._lock:
            info = self._refresh.get(token)
            return info is not None and not info["used"] and not info["consent"].revoked

    # What the endpoints do.

    def _authorization_request(self, url: str) -> _Request:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        status, page, request = self._authorize(query)
        if request is None:
            raise ValueError(f"the authorization request is refused ({status}): {page}")
        return request

    def _authorize(self, query: dict[str, str]) -> tuple[int, str, _Request | None]:
        """Check an authorization request: (200, its page id, the request), or (400, why, None)."""
        client = self.clients.get(query.get("client_id", ""))
        if client is None or not query.get("redirect_uri"):
            return 400, "unknown client or no redirect_uri", None
        if query.get("response_type") != "code":
            return 400, "response_type must be code", None
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return 400, "PKCE with S256 is required", None
        request = _Request(
            client_id=query["client_id"], redirect_uri=query["redirect_uri"], scope=query.get("scope", ""),
            state=query.get("state", ""), challenge=query["code_challenge"], method="S256",
            nonce=query.get("nonce", ""), username=self.account or client.username,
        )
        page_id = secrets.token_urlsafe(16)
        with self._lock:
            self._pending[page_id] = request
        return 200, page_id, request

    def _decide(self, request: _Request, decision: str) -> str:
        if decision != APPROVE:
            answer = {"error": "access_denied", "error_description": "The user declined consent.",
                      "state": request.state}
        else:
            code = self._new("code")
            request.consent = _Consent(request.client_id, request.username, request.scope)
            with self._lock:
                self._codes[code] = request
            answer = {"code": code, "state": request.state}
        separator = "&" if "?" in request.redirect_uri else "?"
        return request.redirect_uri + separator + urllib.parse.urlencode(answer)

    def _token(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, dict]:
        if basic and "client_secret" in form:
            return 400, {"error": "invalid_request", "error_description": "Multiple client authentication"}
        client_id, secret = basic or (form.get("client_id"), form.get("client_secret"))
        client = self.clients.get(client_id)
        if (client is None or secret is None
                or not secrets.compare_digest(secret.encode(), client.secret.encode())):
            return 401, {"error": "invalid_client", "error_description": "Client authentication failed"}
        grant = form.get("grant_type")
        if grant is None:
            return 400, {"error": "invalid_request", "error_description": "Missing grant_type"}
        if grant == "authorization_code":
            return self._redeem(client_id, form)
        if grant == "refresh_token":
            return self._refresh_grant(client_id, form)
        if grant != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        scope = form.get("scope")
        body = {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME}
        if not client.omit_access_token:
            body["access_token"] = self.issue_token(client_id, scope)
        if scope is not None:
            body["scope"] = scope
        return 200, body

    def _redeem(self, client_id: str, form: dict[str, str]) -> tuple[int, dict]:
        with self._lock:
            request = self._codes.get(form.get("code", ""))
            fresh = request is not None and not request.redeemed and time.time() - request.issued_at < CODE_LIFETIME
            if request is not None:
                request.redeemed = True  # a code works once (RFC 6749 section 4.1.2), whatever happens next
        if not fresh or request.client_id != client_id:
            return 400, {"error": "invalid_grant",
                         "error_description": "The authorization code is unknown, used or expired."}
        if form.get("redirect_uri") != request.redirect_uri:
            return 400, {"error": "invalid_grant",
                         "error_description": "redirect_uri differs from the authorization request's."}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not verifier or not hmac.compare_digest(challenge, request.challenge):
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed."}
        with self._lock:
            wrong = self._misanswers.pop(0) if self._misanswers else {}
        body = self._tokens_for(request.consent, refresh_token=wrong.get("refresh_token", True))
        body["id_token"] = self._id_token(request, audience=wrong.get("audience"), nonce=wrong.get("nonce"))
        return 200, body

    def _refresh_grant(self, client_id: str, form: dict[str, str]) -> tuple[int, dict]:
        with self._lock:
            if self._failures:
                error, description = self._failures.pop(0)
                return 400, {"error": error, "error_description": description}
            info = self._refresh.get(form.get("refresh_token", ""))
            if info is None or info["consent"].client_id != client_id:
                return 400, {"error": "invalid_grant", "error_description": "Unknown refresh token."}
            if info["consent"].revoked:
                return 400, {"error": "invalid_grant", "error_description": "The user has withdrawn consent."}
            if info["used"]:
                return 400, {"error": "invalid_grant", "error_description": "The refresh token was used already."}
            info["used"] = True
        return 200, self._tokens_for(info["consent"])

    def _tokens_for(self, consent: _Consent, refresh_token: bool = True) -> dict:
        """A new access token and (unless `refresh_token` is False) refresh token of `consent`, as a token
        response (RFC 6749 section 5.1)."""
        access_token = self.issue_token(consent.client_id, consent.scope, consent.username, consent)
        body = {"access_token": access_token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME,
                "scope": consent.scope}
        if refresh_token:
            body["refresh_token"] = self._new("rt")
            with self._lock:
                self._refresh[body["refresh_token"]] = {"consent": consent, "used": False}
                self.refresh_tokens.append(body["refresh_token"])
        return body

    def _id_token(self, request: _Request, audience: str | list | None = None, nonce: str | None = None) -> str:
        """An OpenID Connect ID Token (HS256 with the client secret, OpenID Connect Core 1.0 section 10.1), for
        `audience` and with `nonce` when given (a misanswer), else the request's client and nonce."""
        now = int(time.time())
        claims = {"iss": self.url, "sub": hashlib.sha256(request.username.encode()).hexdigest()[:16],
                  "aud": request.client_id if audience is None else audience, "iat": now,
                  "exp": now + TOKEN_LIFETIME, "email": request.username, "email_verified": True}
        if nonce is not None or request.nonce:
            claims["nonce"] = request.nonce if nonce is None else nonce
        parts = [_b64(json.dumps(part).encode()) for part in ({"alg": "HS256", "typ": "JWT"}, claims)]
        key = self.clients[request.client_id].secret.encode()
        signature = hmac.new(key, ".".join(parts).encode(), hashlib.sha256).digest()
        return ".".join([*parts, _b64(signature)])

    def _introspect(self, form: dict[str, str]) -> dict:
        with self._lock:
            info = self._tokens.get(form.get("token", ""))
        if info is None or (info["consent"] is not None and info["consent"].revoked):
            return {"active": False}
        shown = {k: v for k, v in info.items() if v is not None and k != "consent"}
        return {"active": True, "token_type": "Bearer", **shown}

    def _discovery(self) -> dict:
        return {"issuer": self.url, "authorization_endpoint": self.authorization_url, "token_endpoint": self.token_url,
                "introspection_endpoint": self.introspection_url, "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
                "code_challenge_methods_supported": ["S256"]}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


CONSENT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Test provider: sign in</title><link rel="icon" href="data:,"></head>
<body><main>
<h1>Sign in to the test provider</h1>
<p>Signed in as <strong>{account}</strong>.</p>
<p>The application <strong>{client}</strong> asks for: <code>{scope}</code></p>
<form method="post" action="/authorize/decision">
<input type="hidden" name="request" value="{request}">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</main></body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    # protocol_version stays HTTP/1.0: one request per connection, so no keep-alive handler
    # thread (Dovecot's http client would hold one open for 60 s) outlives stop().
    server_version = "TokenServer"

    def do_GET(self) -> None:
        server: TokenServer = self.server.token_server
        path, _, query = self.path.partition("?")
        if path == "/.well-known/openid-configuration":
            self._send(200, server._discovery())
        elif path == "/authorize":
            status, page_id, request = server._authorize(dict(urllib.parse.parse_qsl(query)))
            if request is None:
                self._send(status, {"error": "invalid_request", "error_description": page_id})
                return
            self._send_html(CONSENT_PAGE.format(account=html.escape(request.username),
                                                client=html.escape(request.client_id),
                                                scope=html.escape(request.scope), request=page_id))
        else:
            self._send(404, {"error": "not_found"})

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
            self._send(*server._token(form, basic))
        elif self.path == "/introspect":
            self._send(200, server._introspect(form))
        elif self.path == "/authorize/decision":
            with server._lock:
                request = server._pending.pop(form.get("request", ""), None)
            if request is None:
                self._send(400, {"error": "invalid_request", "error_description": "unknown or answered request"})
                return
            self.send_response(302)
            self.send_header("Location", server._decide(request, form.get("decision", "")))
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, {"error": "not_found"})

    def _send(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="token"')
        self.end_headers()
        self.wfile.write(payload)

    def _send_html(self, page: str) -> None:
        payload = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
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
