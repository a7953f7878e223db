"""Your own account: change your password (the current one, then the new one twice)."""

from flask import Blueprint, render_template
from flask_login import current_user, login_user

from access import limits_password_guesses, requires
from forms import PasswordChangeForm
from models import User
from services import accounts
from web import after_change

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.route("/", methods=["GET", "POST"])
@requires("viewer")
@limits_password_guesses(lambda: current_user.username)  # the current password is a guess like a sign-in
def index():
    """The account page; a changed password ends your other sessions and keeps this one."""
    form = PasswordChangeForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()
        try:
            accounts.change_own_password(user, form.current_password.data, form.new_password.data)
        except accounts.WrongPassword as refused:
            form.current_password.errors.append(str(refused))
        else:
            login_user(User.get_by_id(user.id))  # this session goes on under the new session epoch
            return after_change("Your password was changed; your other sessions have ended.", ".index")
    return render_template("account/index.html", form=form)
