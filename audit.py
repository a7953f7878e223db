"""The audit log: who did what to which entry, when, and how it ended.

``record`` is called inside the change's own ``db.atomic()`` block, so an
event that cannot be written takes its change down with it. Events carry
names and outcomes, never secrets.
"""

from flask import has_request_context

from access import acting_user
from models import Alias, ApiToken, AuditEvent, Credential, Group, User

COMMAND_LINE = "(command line)"

ACTIONS = (
    "login", "login_failed", "logout", "create", "update", "delete", "secret_change", "connection_test",
    "role_change", "user_create", "user_disable", "user_enable", "token_create", "token_revoke", "key_rotation",
)


def record(action, entry=None, outcome="ok", details="", actor=None):
    """Write one event. `entry` is the model instance acted on (or None); `actor` a username, by
    default the signed-in user's (COMMAND_LINE outside a request). Raises peewee errors when the
    event cannot be written, which rolls back the surrounding transaction.
    """
    if actor is None:
        user = acting_user() if has_request_context() else None
        actor = user.username if user else ("" if has_request_context() else COMMAND_LINE)
    entry_type, entry_id, entry_name = describe(entry)
    AuditEvent.create(
        actor=actor, action=action, entry_type=entry_type, entry_id=entry_id, entry_name=entry_name,
        outcome=outcome, details=details,
    )


def describe(entry):
    """(type, id, name) of a model instance for the log."""
    if entry is None:
        return "", None, ""
    if isinstance(entry, Credential):
        return "credential", entry.id, entry.name
    if isinstance(entry, Alias):
        return "alias", entry.id, entry.address
    if isinstance(entry, Group):
        return "group", entry.id, entry.name
    if isinstance(entry, User):
        return "user", entry.id, entry.username
    if isinstance(entry, ApiToken):
        return "token", entry.id, f"{entry.name} ({entry.user.username})"
    raise TypeError(f"cannot describe {type(entry).__name__} for the audit log")
