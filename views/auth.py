"""Signing in and out, and the one-time set-up of the first administrator."""

from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from access import PUBLIC, limiter, limits_password_guesses, mark_signed_in, requires
from forms import AccountForm, LoginForm
from models import User
from services import accounts

bp = Blueprint("auth", __name__)

INVALID = "Invalid username or password."


@bp.route("/setup", methods=["GET", "POST"])
@requires(PUBLIC)
def setup():
    """Create the first administrator; there is no default password. Gone once anyone exists."""
    if User.select().exists():
        abort(404)
    form = AccountForm()
    if form.validate_on_submit():
        try:
            user = accounts.create_first_admin(form.username.data, form.password.data)
        except accounts.SetupDone:  # someone finished set-up while this form was filled in
            abort(404)
        _start_session(user)
        return redirect(url_for("credentials.index"), 303)
    return render_template("auth/setup.html", form=form)


@bp.route("/login", methods=["GET", "POST"])
@requires(PUBLIC)
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"])
@limits_password_guesses(lambda: request.form.get("username", "").strip())
def login():
    """Sign in. A failure says only that the username or password is invalid; too many for one account, from
    anywhere, say to wait (access.limits_password_guesses)."""
    form = LoginForm()
    if form.validate_on_submit():
        user = accounts.sign_in(form.username.data, form.password.data)
        if user is not None:
            _start_session(user)
            return redirect(_local(request.args.get("next")) or url_for("credentials.index"), 303)
        form.form_errors.append(INVALID)
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
@requires("viewer")
def logout():
    """Sign out: this session and any copy of its cookie end, and the user's other sessions with them."""
    accounts.sign_out(current_user)
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"), 303)


def _start_session(user):
    # A new session on every sign-in: nothing from before it (a planted session, an old CSRF token) survives.
    session.clear()
    # Expires PERMANENT_SESSION_LIFETIME after its cookie's last renewal (access.SlidingSessionCookie): idle timeout.
    session.permanent = True
    mark_signed_in()  # and SESSION_MAX_HOURS after now, whatever happens
    login_user(user)


def _local(target):
    """`target` if it is a path on this site, else None: no open redirects.

    Refuses anything with a scheme or host, backslashes (some browsers read them
    as slashes) and whitespace or control characters (dropped on the way into a
    header, turning "/\t/evil.example" into "//evil.example").
    """
    if not target or any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target
