"""Aliases: addresses that route mail through a credential, with defaults for what they create."""

from flask import Blueprint, render_template, request
from peewee import IntegrityError
from playhouse.flask_utils import get_object_or_404
from playhouse.shortcuts import model_to_dict

from access import actor_name, requires
from database import is_missing_reference
from forms import AliasForm
from models import Alias, Credential
from services.entries import delete_entry, save_entry
from web import Pages, after_change, fragment_or_page, is_htmx

bp = Blueprint("aliases", __name__, url_prefix="/aliases")

# Credentials the picker offers at most at once; it asks for more words beyond that.
PICKER_SIZE = 20
FIND = "find_credential"


@bp.get("/")
@requires("viewer")
def index():
    """The aliases, searched and paged; htmx gets the list alone (the search and page links swap it)."""
    text = request.args.get("q", "").strip()
    pages = Pages(Alias.search(text), lambda: Alias.count_matching(text))
    template = "aliases/_list.html" if is_htmx() else "aliases/index.html"
    return render_template(template, aliases=pages.get_object_list(), pages=pages, q=text)


@bp.route("/new", methods=["GET", "POST"], defaults={"alias_id": None})
@bp.route("/<id:alias_id>/edit", methods=["GET", "POST"])
def edit(alias_id):
    """Add an alias (no id) or edit one. The credential picker's Find button (without JavaScript)
    re-renders the form with the credentials found, saving nothing."""
    alias = get_object_or_404(Alias, Alias.id == alias_id) if alias_id else None
    form = AliasForm(data=model_to_dict(alias, recurse=False) if alias else None, instance=alias)
    finding = request.method == "POST" and FIND in request.form
    if not finding and form.validate_on_submit():
        try:
            saved = save_entry(alias or Alias(), form.values(), actor=actor_name())
        except IntegrityError as error:
            if is_missing_reference(error):
                form.credential.errors.append("That credential was deleted meanwhile. Choose another.")
            else:
                form.address.errors.append("Another alias took this address meanwhile.")
        else:
            return after_change(f"Saved {saved.address}.", ".index")
    query = request.form.get("credential_query", "").strip() if finding else ""
    return render_template("aliases/form.html", form=form, alias=alias, query=query,
                           **_choices(query, form.credential.data))


@bp.get("/credential-choices")
def credential_choices():
    """The credential picker's choices for what was typed (htmx), keeping the one already chosen."""
    query = request.args.get("credential_query", "").strip()
    chosen = request.args.get("credential", type=int)
    return render_template("aliases/_credential_choices.html", **_choices(query, chosen))


def _choices(query, chosen_id):
    """What the picker shows: up to PICKER_SIZE credentials matching `query` (by name, description, host,
    username), the chosen one first, and how many match in all."""
    found = list(Credential.search(query).limit(PICKER_SIZE))
    chosen = Credential.search().where(Credential.id == chosen_id).first() if isinstance(chosen_id, int) else None
    if chosen is not None:
        found = [chosen, *(credential for credential in found if credential.id != chosen.id)][:PICKER_SIZE]
    return {"choices": found, "chosen_id": chosen.id if chosen else None,
            "matching": Credential.count_matching(query), "any_credential": Credential.select().exists()}


@bp.route("/<id:alias_id>/delete", methods=["GET", "POST"])
def delete(alias_id):
    """Ask (GET, for browsers without JavaScript), then delete the alias."""
    alias = get_object_or_404(Alias, Alias.id == alias_id)
    if request.method == "GET":
        return fragment_or_page("_delete_confirm.html", f"Delete {alias.address}", thing=f"the alias {alias.address}")
    delete_entry(alias, actor=actor_name())
    return after_change(f"Deleted {alias.address}.", ".index", event="aliasesChanged")
