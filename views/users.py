"""Users (admins only): add people, change their role, set their password, disable, enable and delete them."""

from flask import Blueprint, render_template, request
from playhouse.flask_utils import get_object_or_404

from access import actor_name, requires
from forms import AccountForm, NewPasswordForm
from models import ROLES, User
from services import accounts
from web import after_change, explain_refusal, fragment_or_page, is_htmx

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


@bp.route("/<id:user_id>/password", methods=["GET", "POST"])
@requires("admin")
def set_password(user_id):
    """Set someone's password (they lost theirs); their sessions end. Your own changes on the Account page."""
    user = get_object_or_404(User, User.id == user_id)
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            accounts.reset_password(user, form.new_password.data, actor=actor_name())
        except accounts.AccountError as refused:
            return explain_refusal("_refused.html", "Not changed", message=str(refused))
        return after_change(f"{user.username} has a new password; their sessions have ended.", ".index")
    return render_template("users/password.html", user=user, form=form)


@bp.route("/<id:user_id>/delete", methods=["GET", "POST"])
@requires("admin")
def delete(user_id):
    """Ask (GET, for browsers without JavaScript), then delete a user and their API tokens; the audit log
    keeps their events. Not yourself, and not the last active admin."""
    user = get_object_or_404(User, User.id == user_id)
    if request.method == "GET":
        thing = f"the user {user.username} and their API tokens (the audit log keeps their events)"
        return fragment_or_page("_delete_confirm.html", f"Delete {user.username}", thing=thing)
    try:
        accounts.delete_user(user, actor=actor_name())
    except accounts.AccountError as refused:
        return explain_refusal("_refused.html", "Not deleted", message=str(refused))
    return after_change(f"Deleted {user.username}.", ".index")


def _row_or_back(user, message):
    if is_htmx():
        return render_template("users/_row.html", user=user, roles=ROLES)
    return after_change(message, ".index")
