"""OAuth2 sign-in for a credential: send a person to their provider to sign in and consent, and take the
refresh token when the provider sends them back (the authorization-code grant, RFC 6749 section 4.1, with
PKCE, RFC 7636, and an OpenID Connect nonce and ID Token, OpenID Connect Core 1.0 section 3.1).

``begin`` keeps what the return must match in an OAuthSignIn row: the digest of a random ``state``
(RFC 6749 section 10.12), the session and user that started it, the credential and app, the PKCE code
verifier (sealed; the provider sees only its S256 challenge) and the nonce. It answers the provider's
authorization URL, built by Authlib's OAuth2 client. ``finish`` takes the provider's answer: the state
must name a sign-in of this session and user, not yet used and not older than MAILKEEP_OAUTH_SIGN_IN_MINUTES
(it is marked used before anything else, so a replayed answer is refused even when it races the first);
the code is redeemed once, through probe (the outbound policy, a deadline, a size limit), with the
verifier; and the refresh token, the granted scopes and the account the ID Token names are stored on the
credential, in one transaction with the audit event. No token or code reaches the browser or a log.
"""

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from authlib.oauth2.client import OAuth2Client
from flask import current_app, session, url_for
from peewee import IntegrityError

import audit
import identity_providers
import keys
import probe
from database import db
from encryption import UndecryptableSecret
from models import Credential, OAuthSignIn, utcnow
from probe import oauth, protocols
from services import oauth_tokens

# The session key holding this session's random binding for its sign-ins (only its digest is stored).
SESSION_KEY = "oauth_sign_in"
# Sign-ins older than this are deleted when the next one begins (answered or not).
KEPT_FOR = timedelta(days=1)
PROVIDER_WORDS_LENGTH = 300
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
UNKNOWN = ("This sign-in is not one Mailkeep started in this session, or it was finished already. Start it "
           "again from the credential.")
USED = "This sign-in was finished already: each one works once. Start it again from the credential."
NO_REFRESH_TOKEN = {
    identity_providers.MICROSOFT: "Microsoft sent no refresh token: the app registration must have the "
                                  "offline_access permission.",
    identity_providers.GOOGLE: "Google sent no refresh token. Remove Mailkeep's access at "
                               "myaccount.google.com/permissions, then sign in again.",
    identity_providers.CUSTOM: "The provider sent no refresh token: add the scope it gives refresh tokens for "
                               "(often offline_access) to the OAuth app's scopes.",
}


class SignInRefused(Exception):
    """A return from the provider that does not belong to a sign-in under way here; `message` says why."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


@dataclass
class Finished:
    """How a sign-in ended: `ok`, the `credential` it was for, `message` in words for the person, and where
    they go now (`return_to`: "edit" or "show")."""

    ok: bool
    credential: Credential
    message: str
    return_to: str


def callback_url():
    """The redirect URI every OAuth app registers with its provider: MAILKEEP_BASE_URL's ``/oauth/callback``."""
    return current_app.config["BASE_URL"] + url_for("oauth.callback")


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()


def begin(credential, app, *, user, return_to="edit", now=None):
    """Start a sign-in to `app` (an OAuthApp) for the saved `credential` by `user` in this session; return
    the URL to send the browser to (the provider's authorization endpoint with the request).

    Asks for ``openid email``, the mail scopes of the credential's protocol and
    what a refresh token needs (OAuthApp.sign_in_scopes), with PKCE S256, the
    state, a nonce, the provider's own parameters, and as ``login_hint`` the
    account that signed in last (so "Sign in again" offers it). `now` is a
    naive UTC datetime.
    """
    now = now or utcnow()
    binding = session.get(SESSION_KEY) or secrets.token_urlsafe(32)
    session[SESSION_KEY] = binding
    state, verifier, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(64), secrets.token_urlsafe(16)
    with db.atomic():
        OAuthSignIn.delete().where(OAuthSignIn.created_at < now - KEPT_FOR).execute()
        pending = OAuthSignIn.create(state_digest=_digest(state), session_digest=_digest(binding), user=user.id,
                                     credential=credential.id, oauth_app=app.id, nonce=nonce, return_to=return_to,
                                     created_at=now)
        pending.seal(keys.ring(), "code_verifier", verifier)
        pending.save()
    client = OAuth2Client(None, client_id=app.client_id, scope=app.sign_in_scopes(credential.protocol),
                          redirect_uri=callback_url(), code_challenge_method="S256")
    extra = app.authorization_params
    if credential.oauth_account:
        extra["login_hint"] = credential.oauth_account
    url, _ = client.create_authorization_url(app.authorization_endpoint, state=state, code_verifier=verifier,
                                             nonce=nonce, **extra)
    return url


def finish(answer, *, user, actor, now=None):
    """Take the provider's answer (`answer`: the callback's query arguments, a mapping) for a sign-in of
    `user` in this session; return a Finished. `actor` names who signed in, for the audit log.

    Raises SignInRefused, changing nothing, when the state names no sign-in of
    this session and user, one finished already, or one older than
    MAILKEEP_OAUTH_SIGN_IN_MINUTES. Anything else (the person declined, the
    code was refused, no refresh token came) is a Finished with ``ok`` False,
    and audited.
    """
    now = now or utcnow()
    state = str(answer.get("state") or "")
    pending = OAuthSignIn.get_or_none(OAuthSignIn.state_digest == _digest(state)) if state else None
    binding = session.get(SESSION_KEY) or ""
    if pending is None or not binding or pending.session_digest != _digest(binding) or pending.user_id != user.id:
        raise SignInRefused(UNKNOWN)
    claimed = OAuthSignIn.update(used_at=now).where(
        (OAuthSignIn.id == pending.id) & OAuthSignIn.used_at.is_null(True)).execute()
    if not claimed:
        raise SignInRefused(USED)
    if now - pending.created_at > timedelta(minutes=current_app.config["OAUTH_SIGN_IN_MINUTES"]):
        raise SignInRefused("This sign-in took too long at the provider. Start it again from the credential.")
    credential, app = pending.credential, pending.oauth_app
    if answer.get("error"):
        words = _provider_words(answer.get("error"), answer.get("error_description"))
        return _failed(pending, f"{app.kind_label} did not sign you in: {words}", actor, outcome="refused")
    code = str(answer.get("code") or "")
    if not code:
        return _failed(pending, f"{app.kind_label} sent no authorization code back.", actor)
    try:
        verifier = pending.unseal(keys.ring(), "code_verifier")
        client_secret = app.unseal(keys.ring(), "client_secret")
    except UndecryptableSecret:
        return _failed(pending, oauth_tokens.UNREADABLE_APP_SECRET, actor)
    settings = probe.Settings(credential.protocol, credential.host, credential.port, credential.security,
                              credential.username, auth=protocols.OAUTH2_SIGN_IN, client_id=app.client_id,
                              client_secret=client_secret, token_url=app.token_endpoint,
                              scope=app.sign_in_scopes(credential.protocol))
    result = current_app.extensions["mailkeep.prober"].token(
        settings, code=oauth.AuthorizationCode(code, verifier, callback_url()))
    if not result.ok:
        said = f" The provider said: {result.cause.server_reply}" if result.cause.server_reply else ""
        return _failed(pending, f"The sign-in could not be finished. {result.cause.message}{said}", actor,
                       outcome=result.cause.code)
    grant = result.grant
    if not grant.refresh_token:
        return _failed(pending, NO_REFRESH_TOKEN[app.kind], actor)
    claims = oauth.id_token_claims(grant.id_token)
    if grant.id_token and not _meant_for(claims, app.client_id, pending.nonce):
        return _failed(pending, "The provider's ID Token was not issued for this sign-in (audience or nonce "
                                "differs); nothing was stored.", actor)
    account = next((str(claims[name]) for name in ("email", "preferred_username", "upn") if claims.get(name)), "")
    account = CONTROL_CHARACTERS.sub("", account)[:320]
    return _store(pending, grant, account, actor, now)


def _meant_for(claims, client_id, nonce):
    """True when ID Token `claims` name `client_id` in ``aud`` and carry `nonce` (OpenID Connect Core 1.0
    section 3.1.3.7, steps 3 and 11)."""
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    return client_id in audiences and claims.get("nonce") == nonce


def _store(pending, grant, account, actor, now):
    """Store the sign-in on its credential with the audit event, in one transaction; drop the pending row."""
    credential, app = pending.credential, pending.oauth_app
    note = f"Signed in as {account or 'an account the provider did not name'} with {app.name}."
    with db.atomic():
        credential.seal(keys.ring(), "refresh_token", grant.refresh_token)
        credential.oauth_app = app.id
        credential.oauth_account = account
        credential.oauth_scopes = grant.scope[:1000]
        credential.oauth_signed_in_at = credential.oauth_used_at = now
        credential.oauth_client_id = app.client_id
        credential.oauth_token_origin = oauth_tokens.origin(app.token_endpoint) or ""
        credential.save()
        pending.delete_instance()
        audit.record("oauth_sign_in", credential, actor=actor, details=f"{note} Scopes granted: {grant.scope}")
    oauth_tokens.forget_cached(credential.id)
    if not credential.username:
        note += " " + _take_account_as_username(credential, account)
    return Finished(True, credential, note, pending.return_to)


def _take_account_as_username(credential, account):
    """Fill an empty username with the signed-in account; say what happened, in a sentence."""
    if not account:
        return "The provider did not say which account signed in: enter the Username (the mailbox to read)."
    try:
        with db.atomic():
            credential.username = account
            credential.save()
    except IntegrityError:
        credential.username = ""
        return (f"Another credential already reads {account}'s mailbox on this server, so the Username stays empty: "
                "enter the mailbox to read.")
    return f"The Username is now {account}."


def _failed(pending, message, actor, outcome="failed"):
    """A sign-in that did not work: audited, the pending row dropped, the credential unchanged."""
    with db.atomic():
        audit.record("oauth_sign_in", pending.credential, actor=actor, outcome=outcome, details=message)
        pending.delete_instance()
    return Finished(False, pending.credential, message, pending.return_to)


def _provider_words(error, description):
    """The provider's ``error`` and ``error_description`` (RFC 6749 section 4.1.2.1) as one line, cut short."""
    words = f"{error}: {description}" if description else str(error)
    return CONTROL_CHARACTERS.sub(" ", words)[:PROVIDER_WORDS_LENGTH]
