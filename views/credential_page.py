"""A credential's own page (credentials/show.html): the one place that gathers its sections, so every view
that shows it (the page itself, a refused rotation) shows all of them. A feature adds its section here."""

from flask import render_template

import logins
from models import Alias, Credential
from service_forms import RestoreForm, RotationForm
from services import serving, versions
from views import watch


def render(credential, *, rotation_form=None, rotation_refusal=None, status=200):
    """(HTML, `status`) of `credential`'s page (a models.Credential; re-read as the list shows it): its settings,
    health history (views.watch), what uses it, and its secret versions with the Rotate form (`rotation_form`,
    a service_forms.RotationForm with the user's values, and `rotation_refusal`, a services.versions.VersionError,
    when a rotation was refused)."""
    listed = Credential.count_aliases([Credential.search().where(Credential.id == credential.id).get()])[0]
    needed = logins.login_for(listed.auth).secret
    return render_template(
        "credentials/show.html", credential=listed, custom_data=listed.custom_data,
        aliases=listed.aliases.order_by(Alias.address_sort),
        versions=versions.states(listed), needed_secret=needed,
        rotation_form=rotation_form or RotationForm(formdata=None, secret=needed, instance=listed),
        restore_form=RestoreForm(formdata=None, instance=listed),
        rotation_refusal=rotation_refusal, versions_not_typed=versions.NOT_TYPED, used_by=serving.used_by(listed),
        **watch.history_context(listed),
    ), status
