"""Users (admins only): add people, change their role, disable and enable them."""

from flask import Blueprint, render_template, request
from playhouse.flask_utils import get_object_or_404

from access import actor_name, requires
from forms import AccountForm
from models import ROLES, User
from web import after_change, explain_refusal, is_htmx

from services import accounts

bp = Blueprint("users", __name__, url_prefix="/users")


@bp.get("/")
@requires("admin")
def index():
    """Every user, and the form that adds one."""
    return _users_page(AccountForm(formdata=None))


@bp.post("/")
@requires("admin")
def add():
    """Add a user with a role and a first password."""
    form = AccountForm()
    if form.validate():
        user = accounts.create_user(form.username.data, form.password.data, form.role.data, actor=actor_name())
        return after_change(f"Added {user.username} as {user.role}.", ".index")
    return _users_page(form)


def _users_page(form):
    return render_template("users/index.html", users=User.select().order_by(User.username_key), form=form,
                           roles=ROLES)


@bp.post("/<id:user_id>/role")
@requires("admin")
def set_role(user_id):
    """Give a user another role; the last active admin stays an admin."""
    user = get_object_or_404(User, User.id == user_id)
    role = request.form.get("role", "")
    try:
        accounts.set_role(user, role, actor=actor_name())
    except ValueError:
        return explain_refusal("_refused.html", "Unknown role", message=f"There is no role {role!r}.")
    except accounts.AccountError as refused:
        return explain_refusal("_refused.html", "The last admin", message=str(refused))
    return _row_or_back(user, f"{user.username} is now {role}.")


@bp.post("/<id:user_id>/active", defaults={"active": True})
@bp.post("/<id:user_id>/inactive", defaults={"active": False})
@requires("admin")
def set_active(user_id, active):
    """Enable or disable a user; disabling ends their sessions at their next request."""
    user = get_object_or_404(User, User.id == user_id)
    try:
        accounts.set_active(user, active, actor=actor_name())
    except accounts.AccountError as refused:
        return explain_refusal("_refused.html", "Not disabled", message=str(refused))
    return _row_or_back(user, f"{user.username} is {'enabled' if active else 'disabled'}.")


def _row_or_back(user, message):
    if is_htmx():
        return render_template("users/_row.html", user=user, roles=ROLES)
    return after_change(message, ".index")
