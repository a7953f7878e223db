"""People's accounts: the first administrator, new users, roles, passwords, enabling, disabling and deleting
users, signing in.

The rule that there is always an active admin lives here: demoting, disabling
or deleting the last one is refused, with the check and the write in one
``database.exclusive()`` transaction so two admins demoting each other at once
cannot both pass it. Errors are AccountError subclasses whose message the
pages and the command line show as they are.
"""

import functools
import secrets

import audit
from database import db, exclusive
from models import ROLES, ApiToken, User, fold


class AccountError(Exception):
    """A change to an account that is refused; the message says why, in words for people."""


class LastActiveAdmin(AccountError):
    """The change would leave no active admin."""

    def __init__(self, user):
        super().__init__(f"{user.username} is the last active admin; make another user admin first.")


class WrongPassword(AccountError):
    """The current password given to change it is not the user's."""

    def __init__(self):
        super().__init__("That is not your current password.")


class SetupDone(AccountError):
    """The first administrator exists already."""

    def __init__(self):
        super().__init__("Mailkeep is set up already.")


@functools.cache
def _unknown_user():
    """Checked against when the username is unknown, so a wrong name takes as long as a wrong password: hashed
    on first use, the way passwords are hashed then (models.PASSWORD_HASH_METHOD)."""
    user = User()
    user.set_password(secrets.token_hex(16))
    return user


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
    """Enable or disable `user`; disabling ends their sessions at their next request and revokes their API
    tokens (each revocation logged), so enabling them again brings back neither.

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
            _revoke_tokens(user, actor=actor, why="its user was disabled")  # nor old tokens
        user.save()
        audit.record("user_enable" if active else "user_disable", user, actor=actor)


def change_own_password(user, current_password, new_password):
    """`user` changes their own password to `new_password` (the forms check its length), proving they know
    `current_password`. Every session of theirs ends (the caller signs the one that asked in again).

    Raises WrongPassword, after logging the refusal, when `current_password` is not theirs.
    """
    if not user.check_password(current_password):
        with db.atomic():
            audit.record("password_change", user, actor=user.username, outcome="refused",
                         details="the current password was wrong")
        raise WrongPassword()
    _store_password(user, new_password, actor=user.username, details="their own")


def reset_password(user, new_password, *, actor):
    """Give `user` the password `new_password` (an admin, or the command line, for someone who lost theirs);
    every session of theirs ends. Raises AccountError when `actor` is `user`: your own password changes with
    ``change_own_password``, which asks for the current one."""
    if fold(user.username) == fold(actor):
        raise AccountError("Change your own password on your Account page; it asks for the current one.")
    _store_password(user, new_password, actor=actor, details="reset")


def _store_password(user, password, *, actor, details):
    with db.atomic():
        user.set_password(password)
        user.save()
        user.end_sessions()
        audit.record("password_change", user, actor=actor, details=details)


def delete_user(user, *, actor):
    """Delete `user` and their API tokens (each token's revocation logged); the audit events they made or that
    name them stay. Their sessions end at their next request.

    Raises AccountError when `actor` deletes themself, LastActiveAdmin when
    `user` is the last active admin.
    """
    if fold(user.username) == fold(actor):
        raise AccountError("You cannot delete yourself.")
    with exclusive("accounts"):
        if user.is_last_active_admin():
            raise LastActiveAdmin(user)
        _revoke_tokens(user, actor=actor, why="its user was deleted")
        audit.record("user_delete", user, actor=actor)
        user.delete_instance()


def _revoke_tokens(user, *, actor, why):
    """Delete every API token of `user`, logging each (inside the caller's transaction)."""
    for token in user.tokens:
        audit.record("token_revoke", token, actor=actor, details=why)
    ApiToken.delete().where(ApiToken.user == user).execute()


def sign_in(username, password):
    """The active user `username` whose password is `password`, or None; either way it is logged.

    Takes as long for an unknown username as for a wrong password. Only a known
    username is logged on failure: an unknown one may be a password typed in the
    wrong box.
    """
    user = User.matching(User.username_key, username)
    accepted = (user or _unknown_user()).check_password(password) and user is not None and user.active
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
