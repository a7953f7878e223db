"""Aliases: addresses that route mail through a credential, with defaults for what they create."""

from flask import Blueprint, render_template, request
from peewee import IntegrityError
from playhouse.flask_utils import get_object_or_404
from playhouse.shortcuts import model_to_dict

from access import actor_name, requires
from forms import AliasForm
from models import Alias
from web import after_change, fragment_or_page, is_htmx, naturally

from services.entries import delete_entry, save_entry

bp = Blueprint("aliases", __name__, url_prefix="/aliases")


@bp.get("/")
@requires("viewer")
def index():
    """Every alias, with the credential it routes through; htmx gets the list alone (it refreshes after a delete)."""
    template = "aliases/_list.html" if is_htmx() else "aliases/index.html"
    return render_template(template, aliases=naturally(Alias.ordered(), "address"))


@bp.route("/new", methods=["GET", "POST"], defaults={"alias_id": None})
@bp.route("/<int:alias_id>/edit", methods=["GET", "POST"])
def edit(alias_id):
    """Add an alias (no id) or edit one."""
    alias = get_object_or_404(Alias, Alias.id == alias_id) if alias_id else None
    form = AliasForm(data=model_to_dict(alias, recurse=False) if alias else None, instance=alias)
    if form.validate_on_submit():
        try:
            saved = save_entry(alias or Alias(), form.values(), actor=actor_name())
        except IntegrityError:
            form.address.errors.append("Another alias took this address meanwhile.")
        else:
            return after_change(f"Saved {saved.address}.", ".index")
    return render_template("aliases/form.html", form=form, alias=alias)


@bp.route("/<int:alias_id>/delete", methods=["GET", "POST"])
def delete(alias_id):
    """Ask (GET, for browsers without JavaScript), then delete the alias."""
    alias = get_object_or_404(Alias, Alias.id == alias_id)
    if request.method == "GET":
        return fragment_or_page("_delete_confirm.html", f"Delete {alias.address}", thing=f"the alias {alias.address}")
    delete_entry(alias, actor=actor_name())
    return after_change(f"Deleted {alias.address}.", ".index", event="aliasesChanged")
