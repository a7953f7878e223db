"""Access tokens for credentials that log in with one, and their refresh tokens kept current: the one owner
of "get an access token for this credential".

Whoever needs a token goes through here: a connection test (its token step
runs inside probe, with the settings ``complete`` gives, and ``keep_rotated``
stores what it brought back), a served connection or anything else that only
needs the token (``access_token_for``), and the keep-alive (``refresh_due``).
So the rules are written once:

- Which token endpoint, client and scopes: OAuth2 client credentials use the
  credential's own; OAuth2 sign-in uses the OAuth app the person signed in with
  (its client secret, its token endpoint, the mail scopes of the credential's
  protocol) and the credential's refresh token (RFC 6749 section 6).
- A provider may answer a refresh with a new refresh token (Microsoft always
  does; an authorization server with rotation accepts each refresh token once).
  The new one is stored, sealed to the row, in the same transaction as
  whatever the token was for (``keep_rotated``, inside ``storing_rotated``);
  should writing that fail, the new one is stored on its own all the same
  (the provider may accept the old one no more). The write is conditional on
  the stored ciphertext still being the one that was used, so a refresh racing
  another (a second process, a new sign-in) never writes an older token over a
  newer one; and a refresh refused with ``invalid_grant`` because another
  process had just used the same refresh token is tried once more with the
  token that process stored (``retry_settings``), instead of asking the person
  to sign in again.
- A refresh token that lies unused lapses (Microsoft: after 90 days).
  ``refresh_due`` refreshes every signed-in credential unused for its provider's
  limit less MAILKEEP_OAUTH_KEEPALIVE_MARGIN_DAYS; the scheduled-checks worker
  calls it periodically.
"""

import dataclasses
import hashlib
import logging
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from flask import current_app

import audit
import keys
from database import db
from encryption import UndecryptableSecret
from logins import LoginSecrets, settings_for
from models import Credential, OAuthApp, utcnow
from probe import protocols
from services import checks

log = logging.getLogger(__name__)

# The cause codes of a stored secret the configured keys cannot open, and of a sign-in that no longer serves
# (services.checks owns them: a check records them like any cause).
UNREADABLE_SECRET, NOT_SIGNED_IN = checks.SECRET_UNREADABLE, checks.NOT_SIGNED_IN
# How the audit log names the keep-alive, which acts for nobody in particular.
KEEP_ALIVE = "(keep-alive)"
# An access token cached in this process is handed out only while it has this many seconds left.
MIN_LIFETIME_SECONDS = 120
UNREADABLE_APP_SECRET = ("The OAuth app's client secret cannot be read with the current keys; an administrator "
                         "sets it again on the OAuth apps page.")
NO_APP = "The OAuth app this credential signed in with is gone: sign in again."


class TokenUnavailable(Exception):
    """No access token could be had for a credential.

    `code` is a stable code: a probe cause code (``token_request_failed``,
    ``deadline_exceeded``, ...), or ``not_signed_in`` (no refresh token that
    serves), UNREADABLE_SECRET (a stored secret the keys cannot open),
    ``no_token_login`` (a password login). `reason` says it in a sentence;
    `cause` is the probe.Cause when the token endpoint was asked.
    """

    def __init__(self, code, reason, cause=None):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.cause = cause


class ConsentRequired(TokenUnavailable):
    """The token endpoint refused the refresh token (``invalid_grant``): someone must sign in again
    (cause ``oauth_consent_required``)."""


@dataclass(frozen=True)
class AccessToken:
    """A bearer token for a credential's mailbox: `token` (never logged or shown) and `expires_at` (a
    timezone-aware UTC datetime, or None when the provider did not say)."""

    token: str = dataclasses.field(repr=False)
    expires_at: datetime | None


@dataclass(frozen=True)
class KeptAlive:
    """What the keep-alive did for one credential: its id and name, whether the refresh worked, and the
    cause code when it did not."""

    credential_id: int
    name: str
    ok: bool
    code: str | None = None
    summary: str = ""


# A host as a URL may name it in an origin: a DNS name or an IPv4 address, or an IPv6 address (bracketed).
PLAIN_HOST = re.compile(r"^(?:[a-z0-9.-]+|[0-9a-f:.]+)$")
CHANGED_APP = ("The OAuth app's client ID or token endpoint changed since this sign-in, so its refresh token is "
               "not sent there: sign in again.")


def origin(url):
    """The origin of `url` (``https://login.example.com``, with its port when it names one), or None when it
    is not an http(s) URL with a plain host name or IP address. Refresh tokens stay bound to it."""
    parts = urlsplit(url or "")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in ("https", "http") or not host or not PLAIN_HOST.match(host):
        return None
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}" + (f":{port}" if port else "")


def still_serves(credential, app):
    """True when `credential`'s sign-in was made with `app` as it is now: the same client ID and a token
    endpoint at the same origin. A refresh token is never sent to another client or authorization server
    than the one that issued it, even when an administrator changes the app (a new tenant of the same
    Microsoft endpoint is the same origin, and keeps working)."""
    return (app is not None and credential.oauth_app_id == app.id and credential.oauth_client_id == app.client_id
            and credential.oauth_token_origin == origin(app.token_endpoint))


def complete(settings, credential):
    """`settings` (probe.Settings of `credential`'s values on screen or as saved, with its secrets) made ready
    for the token endpoint: for OAuth2 sign-in, the client ID and secret, token endpoint and refresh scopes
    of the OAuth app `credential` signed in with; other logins as they are.

    Raises TokenUnavailable (``not_signed_in``) when the credential has no
    app, or the app's client ID or token endpoint's origin changed since the
    sign-in (``still_serves``), or (UNREADABLE_SECRET) when the app's
    client secret cannot be read.
    """
    if settings.auth != protocols.OAUTH2_SIGN_IN:
        return settings
    app = OAuthApp.get_or_none(OAuthApp.id == credential.oauth_app_id) if credential is not None else None
    if app is None:
        raise TokenUnavailable(NOT_SIGNED_IN, NO_APP)
    if not still_serves(credential, app):
        raise TokenUnavailable(NOT_SIGNED_IN, CHANGED_APP)
    try:
        client_secret = app.unseal(keys.ring(), "client_secret")
    except UndecryptableSecret:
        raise TokenUnavailable(UNREADABLE_SECRET, UNREADABLE_APP_SECRET) from None
    return dataclasses.replace(settings, client_id=app.client_id, client_secret=client_secret,
                               token_url=app.token_endpoint, scope=app.refresh_scopes(settings.protocol))


def token_settings(credential):
    """The probe.Settings that get an access token for the saved `credential`, with its stored secrets.

    Raises TokenUnavailable: ``no_token_login`` for a password login,
    ``not_signed_in`` when no stored secret serves, UNREADABLE_SECRET.
    """
    if credential.auth not in protocols.TOKEN_LOGINS:
        raise TokenUnavailable("no_token_login", f"{credential.name} logs in with a password, not a token.")
    values = credential.connection_values()
    login = LoginSecrets(credential, values)
    try:
        secrets = login.for_test(keys.ring())
    except UndecryptableSecret:
        raise TokenUnavailable(UNREADABLE_SECRET, f"The stored {login.needed.noun} cannot be read with the "
                                                    "current keys; set it again.") from None
    if not secrets:
        raise TokenUnavailable(NOT_SIGNED_IN, login.missing())
    return complete(settings_for(values, secrets), credential)


def keep_rotated(credential, settings, grant, now=None):
    """Store what a refresh granted: the new refresh token (if the provider sent one) and the time of use.

    Call it inside the transaction of what the token was for (a test's
    outcome), through ``storing_rotated``. `credential` is the row whose
    stored refresh token `settings` used, as it was read then (its ciphertext
    is compared: the new token is written only if the stored one is still
    that, see the module's notes); `grant` is the probe.Grant (None: nothing
    was granted, nothing happens). `now` is a naive UTC datetime (now unless
    given). Returns True when a new refresh token was stored.
    """
    if grant is None or settings.auth != protocols.OAUTH2_SIGN_IN or credential is None:
        return False
    now = now or utcnow()
    used = credential.ciphertext("refresh_token")
    if used is None:
        return False
    stored = False
    if grant.rotated and grant.refresh_token:
        sealed = keys.ring().encrypt(grant.refresh_token, credential.seal_context("refresh_token"))
        stored = bool(Credential.update(refresh_token_ciphertext=sealed, oauth_used_at=now)
                      .where((Credential.id == credential.id) & (Credential.refresh_token_ciphertext == used))
                      .execute())
        if stored:
            credential.refresh_token_ciphertext = sealed
        else:
            log.info("credential %s: its refresh token changed meanwhile; the one this refresh brought is dropped",
                     credential.id)
    if not stored:
        Credential.update(oauth_used_at=now).where(Credential.id == credential.id).execute()
    credential.oauth_used_at = now
    return stored


@contextmanager
def storing_rotated(credential, settings, grant, now=None):
    """A transaction for what a refresh was for (a test's outcome, written in the ``with`` block) that stores
    what the refresh granted with it (``keep_rotated``, same arguments).

    Should the block (or the commit) fail, the rest is rolled back but the new
    refresh token is still stored, in a transaction of its own, before the
    error goes on: the provider may accept the used one no more (rotation), and
    losing the new one would leave the credential asking to sign in again
    (``invalid_grant``) for nothing. (Inside a caller's own transaction this is
    a savepoint, kept only if that transaction is.)
    """
    if credential is None:
        with db.atomic():
            yield
        return
    used, used_at = credential.refresh_token_ciphertext, credential.oauth_used_at
    try:
        with db.atomic():
            keep_rotated(credential, settings, grant, now)
            yield
    except Exception:
        # What keep_rotated noted on the row object was rolled back with the rest.
        credential.refresh_token_ciphertext, credential.oauth_used_at = used, used_at
        try:
            with db.atomic():
                if keep_rotated(credential, settings, grant, now):
                    log.warning("credential %s: what its test came to could not be written; the refresh token the "
                                "provider sent with it was stored on its own", credential.id)
        except Exception as problem:
            log.error("credential %s: the refresh token the provider sent could not be stored either (%s)",
                      credential.id, type(problem).__name__)
        raise


def retry_settings(credential, settings, cause):
    """Settings to ask once more with, when a refresh was refused (`cause`, a probe.Cause or None) for a
    refresh token another process had replaced in the meantime; else None.

    Reads the stored refresh token again; when it differs from the one
    `credential` held, `credential` takes the stored one and the settings carry it.
    """
    if cause is None or cause.code != "oauth_consent_required" or credential is None:
        return None
    current = Credential.select(Credential.refresh_token_ciphertext).where(Credential.id == credential.id).scalar()
    if current is None or current == credential.ciphertext("refresh_token"):
        return None
    credential.refresh_token_ciphertext = current
    try:
        return dataclasses.replace(settings, refresh_token=credential.unseal(keys.ring(), "refresh_token"))
    except UndecryptableSecret:
        return None


# Access tokens handed out by this process, until shortly before they expire: {credential id: (login key, token)}.
_cache = {}
_locks = {}
_locks_lock = threading.Lock()


def access_token_for(credential, *, secrets=None, now=None, fresh=False, slots=None):
    """A bearer token for the mailbox of `credential` (a Credential or its id): an AccessToken.

    OAuth2 client credentials get one with the client-credentials grant,
    OAuth2 sign-in with the refresh-token grant (a new refresh token is stored
    at once, see ``keep_rotated``). A token this process got before is handed
    out again while it has MIN_LIFETIME_SECONDS left, unless `fresh`.
    `secrets` ({name: plaintext}) replaces the stored secrets for this once
    (a served previous version of a client secret): nothing is cached or
    stored then. `now` is a naive UTC datetime (the injectable clock).
    `slots` (a semaphore-like, see probe.Prober.run) bounds the token
    requests made at once. Raises ConsentRequired when someone must sign in
    again, TokenUnavailable otherwise (see its codes), probe.Busy when
    `slots` has none free.
    """
    credential_id = credential if isinstance(credential, int) else credential.id
    now = now or utcnow()
    with _lock_for(credential_id):
        credential = Credential.get_or_none(Credential.id == credential_id)
        if credential is None:
            raise TokenUnavailable(NOT_SIGNED_IN, f"No credential with id {credential_id}.")
        if secrets is not None:
            settings = complete(settings_for(credential.connection_values(), secrets), credential)
            return _token_of(current_app.extensions["mailkeep.prober"].token(settings, slots=slots))
        key = _login_key(credential)
        cached = _cache.get(credential_id)
        if not fresh and cached and cached[0] == key and _lasts(cached[1], now):
            return cached[1]
        try:
            token = _token_of(_refresh(credential, now, slots))
        except TokenUnavailable:
            _cache.pop(credential_id, None)
            raise
        _cache[credential_id] = (_login_key(credential), token)
        return token


def _token_of(result):
    """The AccessToken of a probe.TokenResult; ConsentRequired or TokenUnavailable with its cause when it failed."""
    if not result.ok:
        error = ConsentRequired if result.cause.code == "oauth_consent_required" else TokenUnavailable
        raise error(result.cause.code, result.cause.message, result.cause)
    return AccessToken(result.grant.access_token, result.grant.expires_at)


def _refresh(credential, now, slots=None):
    """Ask the token endpoint for `credential` (retrying once for a token another process replaced), within
    `slots` when given (probe.Busy when none is free); store what it granted; return the probe.TokenResult."""
    settings = token_settings(credential)
    prober = current_app.extensions["mailkeep.prober"]
    result = prober.token(settings, slots=slots)
    if (again := retry_settings(credential, settings, result.cause)) is not None:
        settings, result = again, prober.token(again, slots=slots)
    if result.ok:
        with db.atomic():
            keep_rotated(credential, settings, result.grant, now)
    return result


def _lock_for(credential_id):
    with _locks_lock:
        return _locks.setdefault(credential_id, threading.Lock())


def _lasts(token, now):
    """True when `token` still has MIN_LIFETIME_SECONDS left at `now` (naive UTC)."""
    if token.expires_at is None:
        return False
    return token.expires_at - now.replace(tzinfo=timezone.utc) >= timedelta(seconds=MIN_LIFETIME_SECONDS)


def _login_key(credential):
    """What a cached token was got with: the login and its secrets' ciphertexts (a new sign-in, a changed
    secret or app, and the cached token no longer counts) but not the refresh token, which each refresh changes."""
    parts = [credential.auth, credential.client_id, credential.token_url, credential.scope,
             credential.ciphertext("client_secret") or "", str(credential.oauth_app_id),
             str(credential.oauth_signed_in_at), credential.host, str(credential.port)]
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()


def forget_cached(credential_id):
    """Drop this process's cached access token of a credential (after a new sign-in)."""
    _cache.pop(credential_id, None)


def keep_alive_after(app, margin_days=None):
    """How long a refresh token of `app` (an OAuthApp) may lie unused before the keep-alive refreshes it (a
    timedelta): its provider's inactivity limit less `margin_days` (MAILKEEP_OAUTH_KEEPALIVE_MARGIN_DAYS
    unless given), at least a day; None when the limit is unknown."""
    if not app.idle_limit_days:
        return None
    margin = current_app.config["OAUTH_KEEPALIVE_MARGIN_DAYS"] if margin_days is None else margin_days
    return timedelta(days=max(app.idle_limit_days - margin, 1))


def refresh_due(now=None, *, margin_days=None):
    """Refresh, once, the refresh token of every signed-in credential that has gone unused so long that it
    would lapse within `margin_days` (MAILKEEP_OAUTH_KEEPALIVE_MARGIN_DAYS unless given) at its provider
    (OAuthApp.idle_limit_days: Microsoft 90 days); return a KeptAlive per credential refreshed.

    `now` is a naive UTC datetime (the injectable clock; now unless given).
    Each refresh is audited (``oauth_refresh``, as KEEP_ALIVE); one the
    provider refuses is also recorded on the credential's health as a failed
    test with its cause (``oauth_consent_required``: sign in again), so it is
    noticed like any failing credential. Apps whose providers' limit is unknown
    are left alone. The scheduled-checks worker calls this periodically.
    """
    now = now or utcnow()
    done = []
    for app in OAuthApp.select():
        if (after := keep_alive_after(app, margin_days)) is None:
            continue
        unused_since = now - after
        due = Credential.select().where(
            Credential.signing_in_with(app.id) & Credential.refresh_token_ciphertext.is_null(False)
            & (Credential.oauth_used_at.is_null(True) | (Credential.oauth_used_at < unused_since))
        ).order_by(Credential.id)
        for credential in due:
            # What only a new sign-in mends (consent gone, or an app changed since) is failing already: asking
            # again every hour would only fill the history.
            if credential.check_cause == "oauth_consent_required" or not still_serves(credential, app):
                continue
            done.append(_keep_alive(credential, now))
    return done


def _keep_alive(credential, now):
    """Refresh one credential's token for the keep-alive, audit it and record a refusal on its health."""
    unused_since = credential.oauth_used_at
    result = None
    try:
        result = _refresh(credential, now)
    except TokenUnavailable as problem:
        outcome = KeptAlive(credential.id, credential.name, False, problem.code, problem.reason)
    else:
        code = None if result.ok else result.cause.code
        outcome = KeptAlive(credential.id, credential.name, result.ok, code, result.summary)
    with db.atomic():
        if not outcome.ok:
            summary = f"Keep-alive refresh failed: {outcome.summary}"
            credential.record_test(False, summary, at=now)
            # Kept in the history and judged like any check: a refused sign-in alerts at once (health.py).
            checks.record(credential, ok=False, cause_code=outcome.code, summary=summary, actor=KEEP_ALIVE, now=now,
                          cause_detail=result.cause.detail if result else "", cause=result.cause if result else None)
        audit.record("oauth_refresh", credential, actor=KEEP_ALIVE, outcome="ok" if outcome.ok else outcome.code,
                     details=f"the refresh token had not been used since {unused_since or 'the sign-in'} UTC; "
                             f"{outcome.summary}")
    if outcome.ok:
        _cache.pop(credential.id, None)
    return outcome
