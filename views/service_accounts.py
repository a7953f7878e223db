"""Service accounts (admins only): the programs that read connections, what each may read and do, from
where, and their tokens. Plain forms throughout (each change answers 303 back to the page); a token is
shown once, on the page that made it."""

from flask import Blueprint, render_template, request
from playhouse.flask_utils import get_object_or_404

from access import actor_name, requires
from forms import TokenForm
from models import Credential, ServiceAccount, ServiceToken
from service_forms import ServiceAccountForm
from services import service_accounts
from views.aliases import PICKER_SIZE
from web import after_change, fragment_or_page

bp = Blueprint("service_accounts", __name__, url_prefix="/service-accounts")


@bp.get("/")
@requires("admin")
def index():
    """Every service account, and the form that adds one."""
    return _index_page(ServiceAccountForm(formdata=None))


@bp.post("/")
@requires("admin")
def add():
    """Add a service account, then go to its page to give it a token."""
    form = ServiceAccountForm()
    if form.validate():
        account = service_accounts.create(form.values(ServiceAccountForm.PAGE_FIELDS), actor=actor_name())
        return after_change(f"Added the service account {account.name}. Make it a token below.", ".show",
                            account_id=account.id)
    return _index_page(form)


def _index_page(form):
    accounts = list(ServiceAccount.by_name())
    return render_template("service_accounts/index.html", accounts=accounts, form=form)


@bp.route("/<id:account_id>", methods=["GET", "POST"])
@requires("admin")
def show(account_id):
    """One service account: its settings, the single credentials it may read, its tokens; a POST saves its
    name, description, scopes, networks and groups."""
    account = get_object_or_404(ServiceAccount, ServiceAccount.id == account_id)
    if request.method == "GET":
        return _show_page(account, ServiceAccountForm(formdata=None, data=_form_data(account), instance=account))
    form = ServiceAccountForm(instance=account)
    if form.validate():
        service_accounts.update(account, form.values(ServiceAccountForm.PAGE_FIELDS), actor=actor_name())
        return after_change(f"Saved {account.name}.", ".show", account_id=account.id)
    return _show_page(account, form)


def _form_data(account):
    return {"name": account.name, "description": account.description, "scopes": account.scope_list,
            "networks": account.networks, "group_ids": [group.id for group in account.granted_groups]}


def _token_form(formdata=None):
    """The form that makes a token (forms.TokenForm), its fields named apart from the account's own."""
    form = TokenForm(formdata=formdata, prefix="token")
    form.name.label.text = "Token name"
    return form


def _show_page(account, form, token_form=None, new_token=None, status=200):
    query = request.args.get("credential_query", "").strip()
    choices = list(Credential.search(query).limit(PICKER_SIZE)) if query else []
    return render_template(
        "service_accounts/show.html", account=account, form=form, token_form=token_form or _token_form(),
        new_token=new_token, tokens=list(account.tokens.order_by(ServiceToken.created_at.desc())),
        credentials=account.granted_credentials, query=query, choices=choices, chosen_id=None,
        matching=Credential.count_matching(query) if query else 0, any_credential=Credential.select().exists(),
    ), status


@bp.post("/<id:account_id>/credentials")
@requires("admin")
def allow_credential(account_id):
    """Let it read one more credential, chosen with the picker (by id)."""
    account = get_object_or_404(ServiceAccount, ServiceAccount.id == account_id)
    credential_id = request.form.get("credential", type=int)
    credential = Credential.get_or_none(Credential.id == credential_id) if credential_id and credential_id > 0 else None
    if credential is None:
        return after_change("Choose a credential first: type to find it, then pick it.", ".show",
                            account_id=account.id)
    service_accounts.allow_credential(account, credential, actor=actor_name())
    return after_change(f"{account.name} may read {credential.name}.", ".show", account_id=account.id)


@bp.post("/<id:account_id>/credentials/<id:credential_id>/remove")
@requires("admin")
def disallow_credential(account_id, credential_id):
    """Take back one single credential (its groups' stay)."""
    account = get_object_or_404(ServiceAccount, ServiceAccount.id == account_id)
    credential = get_object_or_404(Credential, Credential.id == credential_id)
    service_accounts.disallow_credential(account, credential, actor=actor_name())
    return after_change(f"{account.name} no longer reads {credential.name} by itself.", ".show",
                        account_id=account.id)


@bp.post("/<id:account_id>/tokens")
@requires("admin")
def make_token(account_id):
    """Make a token; the page shows it this once (only its hash is kept)."""
    account = get_object_or_404(ServiceAccount, ServiceAccount.id == account_id)
    token_form = _token_form(request.form)
    token = None
    if token_form.validate():
        _, token = service_accounts.issue_token(account, token_form.name.data, token_form.expires_at(),
                                                actor=actor_name())
        token_form = _token_form()
    form = ServiceAccountForm(formdata=None, data=_form_data(account), instance=account)
    return _show_page(account, form, token_form, new_token=token)


@bp.post("/<id:account_id>/tokens/<id:token_id>/revoke")
@requires("admin")
def revoke_token(account_id, token_id):
    """Revoke a token: it stops working at once."""
    token = get_object_or_404(ServiceToken,
                              (ServiceToken.id == token_id) & (ServiceToken.service_account == account_id))
    service_accounts.revoke_token(token, actor=actor_name())
    return after_change(f"Revoked the token {token.name}.", ".show", account_id=account_id)


@bp.route("/<id:account_id>/delete", methods=["GET", "POST"])
@requires("admin")
def delete(account_id):
    """Ask (GET), then delete the service account and its tokens."""
    account = get_object_or_404(ServiceAccount, ServiceAccount.id == account_id)
    if request.method == "GET":
        return fragment_or_page("_delete_confirm.html", f"Delete {account.name}",
                                thing=f"the service account {account.name} and its tokens")
    service_accounts.delete(account, actor=actor_name())
    return after_change(f"Deleted the service account {account.name}.", ".index")
