"""Aliases: addresses that route mail through a credential, with defaults for what they create."""

from flask import Blueprint, render_template, request
from peewee import IntegrityError
from playhouse.flask_utils import get_object_or_404
from playhouse.shortcuts import model_to_dict

from forms import AliasForm, field_values
from models import Alias

from . import UNPROCESSABLE, finish, respond

bp = Blueprint("aliases", __name__, url_prefix="/aliases")


@bp.get("/")
def index():
    return render_template("aliases/index.html", aliases=Alias.ordered())


@bp.route("/new", methods=["GET", "POST"])
def create():
    form = AliasForm()
    if form.validate_on_submit():
        try:
            alias = Alias.create(**field_values(form, AliasForm.FIELDS))
        except IntegrityError:
            form.address.errors.append("This alias was added meanwhile.")
        else:
            return finish(f"Added {alias.address}.", ".index")
    return _form_page(form, None)


@bp.route("/<int:alias_id>/edit", methods=["GET", "POST"])
def edit(alias_id):
    alias = get_object_or_404(Alias, Alias.id == alias_id)
    form = AliasForm(data=model_to_dict(alias, recurse=False), instance=alias)
    if form.validate_on_submit():
        for name, value in field_values(form, AliasForm.FIELDS).items():
            setattr(alias, name, value)
        try:
            alias.save()
        except IntegrityError:
            form.address.errors.append("This address was given to another alias meanwhile.")
        else:
            return finish(f"Saved {alias.address}.", ".index")
    return _form_page(form, alias)


def _form_page(form, alias):
    status = UNPROCESSABLE if form.errors else 200
    return render_template("aliases/form.html", form=form, alias=alias), status


@bp.route("/<int:alias_id>/delete", methods=["GET", "POST"])
def delete(alias_id):
    alias = get_object_or_404(Alias, Alias.id == alias_id)
    if request.method == "GET":
        return respond("_delete_confirm.html", f"Delete {alias.address}", thing=f"the alias {alias.address}")
    alias.delete_instance()
    return finish(f"Deleted {alias.address}.", ".index")
