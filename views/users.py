"""Users (admins only): add people, change their role, disable and enable them."""

from flask import Blueprint, render_template, request
from flask_login import current_user
from playhouse.flask_utils import get_object_or_404

import audit
from access import requires
from forms import AccountForm
from models import ROLES, User, check_then_write, db

from . import finish, is_htmx, refuse

bp = Blueprint("users", __name__, url_prefix="/users")


@bp.get("/")
@requires("admin")
def index():
    """Every user, and the form that adds one."""
    return _page(AccountForm(formdata=None))


@bp.post("/")
@requires("admin")
def add():
    """Add a user with a role and a first password."""
    form = AccountForm()
    if form.validate():
        with db.atomic():
            user = User.add(form.username.data, form.password.data, form.role.data)
            audit.record("user_create", user, details=f"role {user.role}")
        return finish(f"Added {user.username} as {user.role}.", ".index")
    return _page(form)


def _page(form):
    return render_template("users/index.html", users=User.select().order_by(User.username_key), form=form,
                           roles=ROLES)


@bp.post("/<int:user_id>/role")
@requires("admin")
def set_role(user_id):
    """Give a user another role; the last active admin stays an admin."""
    user = get_object_or_404(User, User.id == user_id)
    role = request.form.get("role", "")
    if role not in ROLES:
        return refuse("_refused.html", "Unknown role", message=f"There is no role {role!r}.")
    with check_then_write():
        if role != "admin" and user.is_last_active_admin():
            return refuse("_refused.html", "The last admin", message=f"{user.username} is the last active admin.")
        before, user.role = user.role, role
        user.save()
        audit.record("role_change", user, details=f"{before} to {role}")
    return _row_or_back(user, f"{user.username} is now {role}.")


@bp.post("/<int:user_id>/active", defaults={"active": True})
@bp.post("/<int:user_id>/inactive", defaults={"active": False})
@requires("admin")
def set_active(user_id, active):
    """Enable or disable a user; disabling ends their sessions at their next request."""
    user = get_object_or_404(User, User.id == user_id)
    if not active and user.id == current_user.id:
        return refuse("_refused.html", "Not disabled", message="You cannot disable yourself.")
    with check_then_write():
        if not active and user.is_last_active_admin():
            return refuse("_refused.html", "Not disabled", message=f"{user.username} is the last active admin.")
        user.active = active
        if not active:
            user.end_sessions()  # re-enabling later must not bring old sessions back
        user.save()
        audit.record("user_enable" if active else "user_disable", user)
    return _row_or_back(user, f"{user.username} is {'enabled' if active else 'disabled'}.")


def _row_or_back(user, message):
    if is_htmx():
        return render_template("users/_row.html", user=user, roles=ROLES)
    return finish(message, ".index")
