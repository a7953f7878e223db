"""A credential's secret versions on its own page: the list (never the values), Rotate (the new secret is
tested first) and Restore; and "Used by": the service accounts that read it. Plain forms: each change
answers 303 back to the credential's page with a notice, a refused one the page again with why."""

from flask import Blueprint
from playhouse.flask_utils import get_object_or_404

import logins
from access import actor_name, limits_connection_tests, requires
from models import Credential, StaleRevision
from service_forms import RotationForm
from services import versions
from views import credential_page
from web import after_change

bp = Blueprint("secret_versions", __name__, url_prefix="/credentials")


def _page(credential, form=None, refusal=None, status=200):
    """The credential's page (a refused or invalid rotation shown in its form)."""
    return credential_page.render(credential, rotation_form=form, rotation_refusal=refusal, status=status)


@bp.post("/<id:credential_id>/rotate")
@requires("editor")
@limits_connection_tests
def rotate(credential_id):
    """Rotate the secret of the credential's login: test the new one, then make it current (or say why not)."""
    credential = get_object_or_404(Credential, Credential.id == credential_id)
    needed = logins.login_for(credential.auth).secret
    form = RotationForm(secret=needed, instance=credential)
    if not form.validate():
        return _page(credential, form)
    try:
        version = versions.rotate(credential, needed.name, form.new_secret.data, actor=actor_name(),
                                  note=form.note.data, grace_seconds=form.grace_hours.data * 3600,
                                  save_anyway=form.save_anyway.data)
    except versions.VersionError as refused:
        return _page(credential, form, refused, status=429 if refused.status == 429 else 200)
    except StaleRevision:
        form.form_errors.append("Someone changed this credential meanwhile; look again before rotating.")
        return _page(credential, form)
    return after_change(f"Rotated the {needed.noun} of {credential.name}: version {version.number} is current.",
                        "credentials.show", credential_id=credential.id)


@bp.post("/<id:credential_id>/secret-versions/<id:number>/restore")
@requires("editor")
def restore(credential_id, number):
    """Make a kept version current again, as a new version."""
    credential = get_object_or_404(Credential, Credential.id == credential_id)
    try:
        version = versions.restore(credential, number, actor=actor_name())
    except versions.VersionError as refused:
        return after_change(str(refused), "credentials.show", credential_id=credential.id)
    return after_change(f"Restored version {number} of {credential.name} as version {version.number}.",
                        "credentials.show", credential_id=credential.id)
