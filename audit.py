"""The audit log: who did what to which entry, when, and how it ended.

``record`` is called inside the change's own transaction, so an event that
cannot be written takes its change down with it. Events carry names and
outcomes, never secrets. Whoever records says who acted: a username, or one of
the names below for what is not a person.
"""

from models import AuditEvent

COMMAND_LINE = "(command line)"
ANONYMOUS = ""

ACTIONS = (
    "login", "login_failed", "logout", "create", "update", "delete", "secret_change", "connection_test",
    "role_change", "user_create", "user_disable", "user_enable", "user_delete", "password_change", "token_create",
    "token_revoke", "key_rotation",
    # Service accounts and secret versions (issue 11).
    "service_account_create", "service_account_update", "service_account_delete", "service_token_create",
    "service_token_revoke", "secret_read", "secret_rotation", "secret_restore",
    # Watching (issue 10).
    "check_pause", "check_resume", "check_run", "channel_create", "channel_update",
    "channel_delete", "smtp_change",
    # OAuth2 sign-in (issue 12).
    "oauth_sign_in", "oauth_refresh",
)


def record(action, entry=None, *, actor, outcome="ok", details=""):
    """Write one event: `actor` (a username, COMMAND_LINE, or ANONYMOUS when nobody is signed in) did
    `action` (one of ``ACTIONS``) to `entry` (a model instance, or None), ending in `outcome` ("ok",
    "refused", "failed" or a connection test's cause code); `details` in words.

    Raises peewee errors when the event cannot be written, which rolls back the
    surrounding transaction.
    """
    AuditEvent.create(
        actor=actor, action=action, outcome=outcome, details=details,
        entry_type=entry.AUDIT_TYPE if entry is not None else "",
        entry_id=entry.id if entry is not None else None,
        entry_name=entry.audit_name if entry is not None else "",
    )
