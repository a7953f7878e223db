"""Serving connections to service accounts: everything a program needs to connect, the secret included,
with every read in the audit log before the secret is handed out.

``read`` is the one path: it checks that the account may read the credential
(404 otherwise, the same answer as for a credential that does not exist, so an
account learns nothing about what it may not read), picks the version asked for
(current, or previous during its grace period), writes and commits the
``secret_read`` event (and the day's read count) and only then reads the secret
and builds the answer. If the event cannot be written, no secret is read and the
caller answers an error. For OAuth2 logins (client credentials, or a sign-in's
refresh token) the answer holds a fresh access token from
services.oauth_tokens.access_token_for, never the client secret or the
refresh token.

Airflow's ``BaseHook.get_connection`` and Vault's audited reads are the models
(https://airflow.apache.org/docs/apache-airflow/stable/authoring-and-scheduling/connections.html,
https://developer.hashicorp.com/vault/docs/audit).
"""

import logging
from datetime import timedelta

from flask import current_app

import audit
import keys
import logins
import probe
from database import db
from encryption import UndecryptableSecret
from models import Alias, Credential, SecretRead, SecretVersion, ServiceAccount
from probe import protocols
from services import oauth_tokens, versions

log = logging.getLogger(__name__)

CURRENT, PREVIOUS = versions.CURRENT, versions.PREVIOUS
WHICH = (CURRENT, PREVIOUS)
# The fields of an answer that hold a secret: the one place a stored secret leaves Mailkeep.
SECRET_FIELDS = ("password", "access_token")


class ServingError(Exception):
    """A read that is refused or failed; `status` is the HTTP status the API answers, the message what it says.
    Never carries a secret."""

    status = 500


class NotReadable(ServingError):
    """No such credential or alias, or none this account may read: the same answer either way."""

    status = 404


class NoSecret(ServingError):
    """The credential stores no secret for its login, so there is nothing to connect with."""

    status = 409


class ReadNotRecorded(ServingError):
    """The read could not be written to the audit log, so no secret was read or sent."""

    status = 503

    def __init__(self):
        super().__init__("This read could not be recorded in the audit log, so no secret was sent. Try again; if it "
                         "keeps happening, the server log says why.")


class SecretUnavailable(ServingError):
    """The read was recorded but the secret could not be had: unreadable with the configured keys (500), or no
    access token (502, with the probe.Cause as `cause`), or every outbound slot busy (429)."""

    def __init__(self, message, status=500, cause=None):
        super().__init__(message)
        self.status = status
        self.cause = cause


def credential_for(caller, credential_id):
    """The credential `credential_id` if `caller` (services.service_accounts.Caller) may read it; else
    NotReadable, whether it exists or not."""
    credential = Credential.get_or_none(Credential.id == credential_id)
    if credential is None or not caller.account.may_read(credential):
        raise NotReadable(f"No credential {credential_id} that this service account may read.")
    return credential


def alias_for(caller, alias_id=None, address=None):
    """The alias with id `alias_id` or address `address` (case ignored) if `caller` may read the credential it
    routes through; else NotReadable, whether it exists or not."""
    if alias_id is not None:
        alias, named = Alias.get_or_none(Alias.id == alias_id), f"alias {alias_id}"
    else:
        alias, named = Alias.matching(Alias.address_key, address or ""), f"alias {address}"
    if alias is None or not caller.account.may_read(alias.credential):
        raise NotReadable(f"No {named} that this service account may read.")
    return alias


def read(caller, credential, *, which=CURRENT, alias=None):
    """What `caller` needs to connect to `credential` (through `alias` when given): a JSON-ready dict, holding
    the secret in exactly one of SECRET_FIELDS.

    `which` is "current" or "previous" (the version a rotation replaced, during
    its grace period). The versions are read once: the version number and
    set-at time answered and logged, and the secret sent (or granted with),
    all come from the one version picked, whatever commits meanwhile. The
    secret_read event (account, token, credential, version, client address)
    and the day's read count are committed before the secret is read;
    ReadNotRecorded if they cannot be. Raises NoSecret,
    versions.NoReadableVersion (410), SecretUnavailable.
    """
    needed = logins.login_for(credential.auth).secret
    if not credential.has_secret(needed.name):
        raise NoSecret(f"{credential.name} stores no {needed.noun}, so there is nothing to connect with.")
    served = versions.serving(credential, which)
    version_words = f"{which} version {served.version.number}" if served else "the stored secret (no version kept)"
    at = versions.now()
    where = f" through the alias {alias.address}" if alias is not None else ""
    try:
        with db.atomic():
            audit.record("secret_read", credential, actor=caller.account.actor, details=(
                f"{version_words} of the {needed.noun}{where}, with the token {caller.token.name} "
                f"(#{caller.token.id}), from {caller.address}"))
            SecretRead.note(caller.account, credential, at)
    except Exception:
        log.exception("a read of credential %s by %s could not be recorded; no secret was sent", credential.id,
                      caller.account.actor)
        raise ReadNotRecorded() from None
    # Recorded and committed: only now is the secret read and the answer built.
    answer = _settings(credential, served)
    if credential.auth in protocols.TOKEN_LOGINS:
        # A fresh access token, never the client secret or the refresh token (services.oauth_tokens decides how).
        # A typed secret (a client secret) is the served version's own; a refresh token stays the stored one,
        # which the grant may replace (and which must then be stored, as only the stored one is).
        own = served is not None and (which == PREVIOUS or needed.typed)
        secrets = {needed.name: _plaintext(caller, credential, needed, served)} if own else None
        try:
            # Fresh for every read (as a tool that failed to log in and reads again expects), within the slots
            # of connection tests: the read rate limit bounds each account, the slots all of them together.
            token = oauth_tokens.access_token_for(credential, secrets=secrets, fresh=True,
                                                  slots=current_app.extensions["mailkeep.test_slots"])
        except probe.Busy:
            _failed(caller, credential, "busy", "every outbound slot was busy")
            raise SecretUnavailable("Too many connections are being made; try again in a few seconds.",
                                    status=429) from None
        except oauth_tokens.TokenUnavailable as problem:
            _failed(caller, credential, problem.code, problem.reason)
            raise SecretUnavailable(problem.reason, status=502, cause=problem.cause) from None
        answer.update(access_token=token.token, token_type="Bearer",
                      access_token_expires_at=token.expires_at.isoformat().replace("+00:00", "Z")
                      if token.expires_at else None)
    else:
        answer["password"] = _plaintext(caller, credential, needed, served)
    if alias is not None:
        answer["alias"] = {"id": alias.id, "address": alias.address, "workspace": alias.workspace,
                           "project_type": alias.project_type, "client": alias.client}
    return answer


def _settings(credential, served):
    """The non-secret part of an answer: where and how to connect, and which version of the secret."""
    version = served.version if served else None
    return {
        "credential_id": credential.id, "name": credential.name,
        **{name: getattr(credential, name) for name in ("protocol", "host", "port", "security", "username",
                                                        "folder", "auth")},
        "version": version.number if version else None,
        "version_state": served.state if served else None,
        "set_at": version.created_at.isoformat() + "Z" if version else None,
        "readable_until": served.readable_until.isoformat() + "Z" if served and served.readable_until else None,
    }


def _failed(caller, credential, outcome, why):
    """Log a recorded read whose secret could not be had (a second event, with the outcome), best effort."""
    try:
        with db.atomic():
            audit.record("secret_read", credential, actor=caller.account.actor, outcome=outcome,
                         details=f"no secret sent: {why}")
    except Exception:
        log.exception("could not record the failure of a read of credential %s", credential.id)


def _plaintext(caller, credential, needed, served=None):
    """The secret `needed` (a logins.SecretRule) of `credential` that an answer naming `served` (the
    versions.VersionState read once by ``read``, current or previous) sends: that version's own value, so the
    version number, the time it was set and the secret always agree, even when a rotation committed since it
    was read (a version's value never changes). Without a version (None: a secret stored before versions were
    kept), the stored secret of `credential` as ``read`` was given it.

    Raises versions.NoReadableVersion when that version was forgotten meanwhile, SecretUnavailable (500) when
    the keys cannot open it; either after logging the failed read (``_failed``).
    """
    try:
        if served is not None:
            # The listed version holds no ciphertext; its own row does (if it was not forgotten meanwhile).
            stored = SecretVersion.get_or_none(SecretVersion.id == served.version.id)
            if stored is None:
                _failed(caller, credential, "gone", f"version {served.version.number} was forgotten meanwhile")
                raise versions.NoReadableVersion(f"Version {served.version.number} was forgotten meanwhile; "
                                                 "read the connection again.")
            return stored.unseal(keys.ring(), "value")
        return credential.unseal(keys.ring(), needed.name)
    except UndecryptableSecret:
        _failed(caller, credential, "failed", f"the {needed.noun} cannot be read with the current keys")
        raise SecretUnavailable(f"The {needed.noun} of {credential.name} cannot be read with the configured keys; "
                                "an editor sets it again.") from None


def used_by(credential, at=None):
    """Who reads `credential`: each service account that may read it or did, with when it last read it and
    how often in the past 7 days (counted by UTC day, today included), by name. A list of dicts
    {"account", "may_read", "last_read" (naive UTC or None), "reads_7_days"}."""
    at = at or versions.now()
    reads = SecretRead.summary(credential, since=(at - timedelta(days=6)).date())
    readers = ServiceAccount.readers_of(credential)
    rows = [{"account": account, "may_read": True, "last_read": reads.get(account.id, (None, 0))[0],
             "reads_7_days": reads.get(account.id, (None, 0))[1]} for account in readers]
    # Accounts that read it but may no longer (a grant taken back) still show, as what they did.
    others = [account_id for account_id in reads if account_id not in {account.id for account in readers}]
    for account in ServiceAccount.select().where(ServiceAccount.id.in_(others)) if others else ():
        last, count = reads[account.id]
        rows.append({"account": account, "may_read": False, "last_read": last, "reads_7_days": count})
    return sorted(rows, key=lambda row: row["account"].name_key)
