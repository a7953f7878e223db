"""Groups: named sets of credentials. A group that still holds credentials cannot be deleted."""

from flask import Blueprint, redirect, render_template, request, url_for
from peewee import IntegrityError
from playhouse.flask_utils import get_object_or_404

from access import actor_name, requires
from forms import GroupForm
from models import Group
from services.entries import StillInUse, delete_entry, save_entry
from web import after_change, explain_refusal, fragment_or_page, is_htmx, naturally

bp = Blueprint("groups", __name__, url_prefix="/groups")


@bp.get("/")
@requires("viewer")
def index():
    """The list, with the form that adds a group."""
    return _groups_page(GroupForm(formdata=None))


@bp.post("/")
def add():
    """Add a group."""
    new_form = GroupForm()
    if new_form.validate():
        try:
            group = save_entry(Group(), new_form.values(), actor=actor_name())
        except IntegrityError:
            new_form.name.errors.append("A group with this name was added meanwhile.")
        else:
            return after_change(f"Added the group {group.name}.", ".index")
    return _groups_page(new_form)


def _groups_page(new_form, editing=None, form=None):
    """The groups page; `editing` is the group whose row shows the rename `form`."""
    return render_template("groups/index.html", groups=naturally(Group.with_counts(), "name"), new_form=new_form,
                           editing=editing, form=form)


@bp.route("/<id:group_id>/edit", methods=["GET", "POST"])
def edit(group_id):
    """Rename in place: htmx swaps the row for a form and back; without JavaScript the page shows that row as a form."""
    group = _listed_or_404(group_id)
    form = GroupForm(obj=group, instance=group)
    if form.validate_on_submit():
        try:
            save_entry(group, form.values(), actor=actor_name())
        except IntegrityError:
            form.name.errors.append("A group with this name was added meanwhile.")
        else:
            if is_htmx():
                return render_template("groups/_row.html", group=group)
            return after_change(f"Saved the group {group.name}.", ".index")
    if is_htmx():
        return render_template("groups/_edit_row.html", group=group, form=form)
    return _groups_page(GroupForm(formdata=None), editing=group.id, form=form)


@bp.get("/<id:group_id>")
def row(group_id):
    """A group's row, to put back when a rename is cancelled; without htmx, the list (404 for no such group)."""
    group = _listed_or_404(group_id)
    if not is_htmx():
        return redirect(url_for(".index"), 303)
    return render_template("groups/_row.html", group=group)


def _listed_or_404(group_id):
    """The group as the list shows it (with ``credential_count``), or 404."""
    return get_object_or_404(Group.with_counts(), Group.id == group_id)


@bp.route("/<id:group_id>/delete", methods=["GET", "POST"])
def delete(group_id):
    """Ask (GET, for browsers without JavaScript), then delete the group unless it is the default or holds
    credentials."""
    group = _listed_or_404(group_id)
    if request.method == "GET":
        return fragment_or_page("_delete_confirm.html", f"Delete {group.name}", thing=f"the group {group.name}")
    try:
        delete_entry(group, actor=actor_name())
    except StillInUse:
        return explain_refusal("groups/_delete_blocked.html", f"{group.name} is still in use", group=group)
    return after_change(f"Deleted the group {group.name}.", ".index")
