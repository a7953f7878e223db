"""Service accounts: the programs that read connections. Admins make them, say what each may read (groups,
single credentials), what it may do (scopes) and from where (IP networks), and give them tokens.

Every change is logged in its own transaction; a token is shown once and kept as
a hash. ``authenticate`` is the one place a service token is checked: the access
check (access.py) asks it and turns its refusals into answers.
"""

from dataclasses import dataclass

import audit
from database import db
from models import SCOPES, Credential, Group, ServiceAccount, ServiceGrant, ServiceToken, utcnow


class Refused(Exception):
    """A request with a service token that may not go on: `status` (401 or 403) and the message to send."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Caller:
    """A service account making this request, with the ServiceToken it sent and the client's address."""

    account: ServiceAccount
    token: ServiceToken
    address: str


def authenticate(text, address, now=None):
    """The Caller whose token is `text` (``mks_...``) calling from the IP address `address`; else Refused.

    401 for an unknown or expired token; 403 when the account may not call from
    `address` (its networks), checked before anything else is looked at, so a
    token used from elsewhere learns nothing more. Notes the token's use.
    """
    token = ServiceToken.find(text) if text else None
    if token is None:
        raise Refused(401, "Send a valid service token: Authorization: Bearer <token>.")
    if token.expired(now):
        raise Refused(401, f"This service token expired on {token.expires_at:%Y-%m-%d %H:%M} UTC; an admin makes a "
                           "new one on the Service accounts page.")
    account = token.service_account
    if not account.allows_address(address):
        raise Refused(403, f"This service account may not call from {address}; an admin sets its networks.")
    token.note_use(now)
    return Caller(account, token, address)


def create(values, *, actor):
    """Add a service account from `values` (name, description, scopes: a list of SCOPES keys, networks: CIDR
    text, group_ids, credential_ids: lists of ids that exist; the forms check them); log it; return it."""
    with db.atomic():
        account = ServiceAccount()
        _store(account, values)
        audit.record("service_account_create", account, actor=actor, details=describe(account))
    return account


def update(account, values, *, actor):
    """Change the fields of `account` that `values` names (as ``create`` takes them); log it; return it."""
    with db.atomic():
        _store(account, values)
        audit.record("service_account_update", account, actor=actor, details=describe(account))
    return account


def _store(account, values):
    for name in ("name", "description", "networks"):
        if name in values:
            setattr(account, name, values[name] or "")
    if "scopes" in values:
        account.scopes = " ".join(scope for scope in SCOPES if scope in set(values["scopes"]))
    account.save()
    if "group_ids" in values:
        _replace_grants(account, ServiceGrant.group, values["group_ids"])
    if "credential_ids" in values:
        _replace_grants(account, ServiceGrant.credential, values["credential_ids"])


def _replace_grants(account, column, ids):
    """Make the grants of `account` in `column` (group or credential) exactly `ids`."""
    ids = {int(row_id) for row_id in ids}
    (ServiceGrant.delete().where((ServiceGrant.service_account == account.id) & column.is_null(False)
                                 & column.not_in(list(ids) or [0])).execute())
    present = {row_id for (row_id,) in ServiceGrant.select(column).where(
        (ServiceGrant.service_account == account.id) & column.is_null(False)).tuples()}
    rows = [{"service_account": account.id, column.name: row_id} for row_id in sorted(ids - present)]
    if rows:
        ServiceGrant.insert_many(rows).execute()


def allow_credential(account, credential, *, actor):
    """Let `account` read the single `credential` too (nothing changes if it may already by that grant); log it."""
    with db.atomic():
        # A write first (SQLite then takes its lock before reading), and a grant already there is kept.
        ServiceGrant.insert(service_account=account.id, credential=credential.id).on_conflict_ignore().execute()
        audit.record("service_account_update", account, actor=actor, details=f"may read {credential.name}")


def disallow_credential(account, credential, *, actor):
    """Take back the grant of the single `credential` from `account` (its groups' stay); log it."""
    with db.atomic():
        ServiceGrant.delete().where((ServiceGrant.service_account == account.id)
                                    & (ServiceGrant.credential == credential.id)).execute()
        audit.record("service_account_update", account, actor=actor, details=f"no longer reads {credential.name} "
                                                                           "by itself")


def delete(account, *, actor):
    """Delete `account` with its tokens, grants and read counts (each token's revocation logged); the audit
    log keeps its events."""
    tokens = list(account.tokens)  # read before the transaction, whose first statement is a write
    with db.atomic():
        audit.record("service_account_delete", account, actor=actor)
        for token in tokens:
            audit.record("service_token_revoke", token, actor=actor, details="its service account was deleted")
        account.delete_instance()


def issue_token(account, name, expires_at=None, *, actor):
    """Make a token for `account` named `name` that works until `expires_at` (naive UTC, or None); log it.
    Returns (the ServiceToken row, the token text: shown once, never stored)."""
    with db.atomic():
        row, token = ServiceToken.issue(account, name, expires_at)
        row.service_account = account
        audit.record("service_token_create", row, actor=actor,
                     details=f"expires {expires_at:%Y-%m-%d}" if expires_at else "does not expire")
    return row, token


def revoke_token(token, *, actor):
    """Revoke a service token: it stops working at once. Logged."""
    with db.atomic():
        audit.record("service_token_revoke", token, actor=actor)
        token.delete_instance()


def describe(account):
    """What `account` may do, in words for the audit log: scopes, groups, single credentials and networks."""
    groups = ", ".join(group.name for group in account.granted_groups) or "none"
    credentials = ", ".join(credential.name for credential in account.granted_credentials) or "none"
    return (f"scopes: {', '.join(account.scope_list) or 'none'}; groups: {groups}; credentials: {credentials}; "
            f"networks: {account.networks or 'any'}")


def json(account, now=None):
    """A service account as the API shows it (its tokens without their text or hash)."""
    now = now or utcnow()
    return {
        "id": account.id, "name": account.name, "description": account.description, "scopes": account.scope_list,
        "networks": [str(network) for network in account.network_list],
        "group_ids": [group.id for group in account.granted_groups],
        "credential_ids": [credential.id for credential in account.granted_credentials],
        "created_at": account.created_at.isoformat() + "Z",
        "tokens": [token_json(token, now) for token in account.tokens.order_by(ServiceToken.created_at.desc())],
    }


def token_json(token, now=None):
    """A service token as the API shows it: never its text or hash."""
    return {
        "id": token.id, "name": token.name, "created_at": token.created_at.isoformat() + "Z",
        "last_used_at": token.last_used_at.isoformat() + "Z" if token.last_used_at else None,
        "expires_at": token.expires_at.isoformat() + "Z" if token.expires_at else None,
        "expired": token.expired(now),
    }


def existing_ids(model, ids):
    """Those of `ids` that name a row of `model` (Group or Credential)."""
    if model not in (Group, Credential):
        raise ValueError(model)
    return {row_id for (row_id,) in model.select(model.id).where(model.id.in_(list(ids))).tuples()} if ids else set()
