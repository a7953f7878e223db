"""People's accounts: the first administrator, new users, roles, enabling and disabling, signing in.

The rule that there is always an active admin lives here: demoting or
disabling the last one is refused, with the check and the write in one
``database.exclusive()`` transaction so two admins demoting each other at once
cannot both pass it. Errors are AccountError subclasses whose message the
pages and the command line show as they are.
"""

import secrets

import audit
from database import db, exclusive
from models import ROLES, User, fold


class AccountError(Exception):
    """A change to an account that is refused; the message says why, in words for people."""


class LastActiveAdmin(AccountError):
    """The change would leave no active admin."""

    def __init__(self, user):
        super().__init__(f"{user.username} is the last active admin; make another user admin first.")


class SetupDone(AccountError):
    """The first administrator exists already."""

    def __init__(self):
        super().__init__("Mailkeep is set up already.")


# Checked against when the username is unknown, so a wrong name takes as long as a wrong password.
_UNKNOWN_USER = User()
_UNKNOWN_USER.set_password(secrets.token_hex(16))


def create_first_admin(username, password):
    """Create the first administrator, who acts for themself in the audit log; return the User.

    Raises SetupDone when anyone exists already (set-up finished meanwhile).
    """
    with exclusive("accounts"):
        if User.select().exists():
            raise SetupDone()
        user = User.add(username, password, "admin")
        audit.record("user_create", user, actor=user.username, details="the first administrator, at set-up")
    return user


def create_user(username, password, role, *, actor):
    """Create an active user with `role` (one of models.ROLES); return it. The username must be free
    (forms check; the database's unique key refuses a race with peewee.IntegrityError)."""
    with db.atomic():
        user = User.add(username, password, role)
        audit.record("user_create", user, actor=actor, details=f"role {role}")
    return user


def set_role(user, role, *, actor):
    """Give `user` the role `role` (one of models.ROLES). Raises ValueError for an unknown role and
    LastActiveAdmin when it would demote the last active admin."""
    if role not in ROLES:
        raise ValueError(f"there is no role {role!r}")
    with exclusive("accounts"):
        if role != "admin" and user.is_last_active_admin():
            raise LastActiveAdmin(user)
        before, user.role = user.role, role
        user.save()
        audit.record("role_change", user, actor=actor, details=f"{before} to {role}")


def set_active(user, active, *, actor):
    """Enable or disable `user`; disabling ends their sessions at their next request.

    Raises AccountError when `actor` disables themself, LastActiveAdmin when
    it would disable the last active admin.
    """
    if not active and fold(user.username) == fold(actor):
        raise AccountError("You cannot disable yourself.")
    with exclusive("accounts"):
        if not active and user.is_last_active_admin():
            raise LastActiveAdmin(user)
        user.active = active
        if not active:
            user.end_sessions()  # re-enabling later must not bring old sessions back
        user.save()
        audit.record("user_enable" if active else "user_disable", user, actor=actor)


def sign_in(username, password):
    """The active user `username` whose password is `password`, or None; either way it is logged.

    Takes as long for an unknown username as for a wrong password. Only a known
    username is logged on failure: an unknown one may be a password typed in the
    wrong box.
    """
    user = User.matching(User.username_key, username)
    accepted = (user or _UNKNOWN_USER).check_password(password) and user is not None and user.active
    with db.atomic():
        if accepted:
            audit.record("login", user, actor=user.username)
        else:
            audit.record("login_failed", user, actor=user.username if user else audit.ANONYMOUS, outcome="refused")
    return user if accepted else None


def sign_out(user):
    """End every session of `user` (this one, copies of its cookie, other devices) and log it."""
    with db.atomic():
        user.end_sessions()
        audit.record("logout", actor=user.username)
