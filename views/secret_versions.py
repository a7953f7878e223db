"""A credential's secret versions on its own page: the list (never the values), Rotate (the new secret is
tested first) and Restore; and "Used by": the service accounts that read it. Plain forms: each change
answers 303 back to the credential's page with a notice, a refused one the page again with why.

Both changes are check-and-set, like the API's If-Match: each form carries the credential's revision the
page was rendered with (service_forms.CheckAndSetForm), and services.versions refuses the change
(models.StaleRevision) when someone changed the credential since, so two people rotating at once cannot
silently overwrite each other."""

from flask import Blueprint, abort
from playhouse.flask_utils import get_object_or_404

import logins
from access import actor_name, limits_connection_tests, requires
from models import Credential, StaleRevision
from service_forms import RestoreForm, RotationForm
from services import versions
from views import credential_page
from web import after_change

bp = Blueprint("secret_versions", __name__, url_prefix="/credentials")

# What a person is told when the page they changed from was out of date; nothing was changed.
CHANGED_MEANWHILE = "This credential was changed meanwhile"


def _page(credential, form=None, refusal=None, status=200):
    """The credential's page (a refused or invalid rotation shown in its form)."""
    return credential_page.render(credential, rotation_form=form, rotation_refusal=refusal, status=status)


@bp.post("/<id:credential_id>/rotate")
@requires("editor")
@limits_connection_tests
def rotate(credential_id):
    """Rotate the secret of the credential's login: test the new one, then make it current (or say why not).

    A rotation made from a page older than the credential changes nothing: the
    page again (409), showing the current versions, with the form as typed
    (the secret excepted, never shown) now carrying the current revision, so
    typing the secret again is a decision made on what is current.
    """
    credential = get_object_or_404(Credential, Credential.id == credential_id)
    needed = logins.login_for(credential.auth).secret
    form = RotationForm(secret=needed, instance=credential)
    if not form.validate():
        return _page(credential, form)
    try:
        version = versions.rotate(credential, needed.name, form.new_secret.data, actor=actor_name(),
                                  note=form.note.data, grace_seconds=form.grace_hours.data * 3600,
                                  save_anyway=form.save_anyway.data, expected_revision=form.expected_revision())
    except versions.VersionError as refused:
        return _page(credential, form, refused, status=429 if refused.status == 429 else 200)
    except StaleRevision as stale:
        if stale.current is None:  # deleted meanwhile
            abort(404)
        form.revision.data = str(stale.current)
        form.form_errors.append(f"{CHANGED_MEANWHILE}, so nothing was rotated: the versions above are current now. "
                                f"Type the new {needed.noun} again if you still want to rotate it.")
        return _page(credential, form, status=409)
    return after_change(f"Rotated the {needed.noun} of {credential.name}: version {version.number} is current.",
                        "credentials.show", credential_id=credential.id)


@bp.post("/<id:credential_id>/secret-versions/<id:number>/restore")
@requires("editor")
def restore(credential_id, number):
    """Make a kept version current again, as a new version; refused, changing nothing, when the page it was
    asked from is older than the credential."""
    credential = get_object_or_404(Credential, Credential.id == credential_id)
    form = RestoreForm(instance=credential)
    try:
        version = versions.restore(credential, number, actor=actor_name(), expected_revision=form.expected_revision())
    except versions.VersionError as refused:
        return after_change(str(refused), "credentials.show", credential_id=credential.id)
    except StaleRevision:
        return after_change(f"{CHANGED_MEANWHILE}, so version {number} was not restored: the versions below are "
                            "current now; restore it again if you still want to.", "credentials.show",
                            credential_id=credential.id)
    return after_change(f"Restored version {number} of {credential.name} as version {version.number}.",
                        "credentials.show", credential_id=credential.id)
