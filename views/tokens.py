"""Personal API tokens: each user makes and revokes their own. A token is shown once, when made."""

from flask import Blueprint, render_template
from flask_login import current_user
from playhouse.flask_utils import get_object_or_404

import audit
from access import actor_name, requires
from database import db
from forms import TokenForm
from models import ApiToken
from web import after_change

bp = Blueprint("tokens", __name__, url_prefix="/tokens")


@bp.get("/")
@requires("viewer")
def index():
    """Your tokens, and the form that makes one."""
    return _tokens_page(TokenForm(formdata=None))


@bp.post("/")
@requires("viewer")
def create():
    """Make a token; the page shows it this once (only its hash is kept)."""
    form = TokenForm()
    token = None
    if form.validate():
        with db.atomic():
            row, token = ApiToken.issue(current_user, form.name.data, expires_at=form.expires_at())
            audit.record("token_create", row, actor=actor_name())
        form = TokenForm(formdata=None)  # made: the next one starts blank
    return _tokens_page(form, token)


def _tokens_page(form, token=None):
    tokens = current_user.tokens.order_by(ApiToken.created_at.desc())
    return render_template("tokens/index.html", tokens=tokens, form=form, new_token=token)


@bp.post("/<id:token_id>/revoke")
@requires("viewer")
def revoke(token_id):
    """Revoke one of your tokens: it stops working at once."""
    token = get_object_or_404(ApiToken, (ApiToken.id == token_id) & (ApiToken.user == current_user.id))
    with db.atomic():
        audit.record("token_revoke", token, actor=actor_name())
        token.delete_instance()
    return after_change(f"Revoked the token {token.name}.", ".index")
