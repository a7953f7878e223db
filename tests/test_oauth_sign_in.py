"""OAuth2 sign-in through the pages: the credential form saves and sends the browser to the provider with
PKCE, a state and a nonce; the callback refuses a wrong, foreign or replayed state, redeems the code once,
stores the refresh token sealed with the account and scopes, and tests it; every test stores the provider's
new refresh token with its outcome; a refused refresh token asks to sign in again, for that credential only."""

import base64
import hashlib
import html
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from types import SimpleNamespace

import pytest
from peewee import OperationalError

import audit
import models
import probe
from clients import HTMX, signed_in
from models import AuditEvent, Credential, CredentialCheck, OAuthSignIn
from services import checks, connection_tests, oauth_sign_in, oauth_tokens
from sign_in import (
    credential_form,
    local_path,
    registered_app,
    sign_in,
    signed_in_credential,
    start,
    stored_refresh_token,
)
from testdata import CANARY, CLIENT_SECRET, MAILBOX_USER, SIGN_IN_CLIENT_ID

NOT_FOR_THIS_SIGN_IN = ("The provider's ID Token was not issued for this sign-in (audience or nonce differs); nothing "
                        "was stored.")


def query_of(url):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def stored(credential_id):
    with models.db.connection_context():
        return Credential.get_by_id(credential_id)


def events(action):
    with models.db.connection_context():
        return list(AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id))


def test_sign_in_saves_the_form_and_asks_the_provider_with_pkce_state_and_nonce(app, client, token_server, dovecot):
    oauth_app = registered_app(app, token_server)
    location = start(client, credential_form(dovecot, description="Kept across the sign-in"), oauth_app)
    assert location.startswith(token_server.authorization_url + "?")
    asked = query_of(location)
    assert asked["client_id"] == SIGN_IN_CLIENT_ID and asked["response_type"] == "code"
    assert asked["redirect_uri"] == "http://127.0.0.1:5000/oauth/callback"  # MAILKEEP_BASE_URL's
    assert asked["scope"] == "openid email mail offline_access"
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert len(asked["state"]) >= 43 and asked["nonce"]
    credential = stored_by_name("Signed in")
    assert credential.description == "Kept across the sign-in" and credential.stored_secrets == []
    with models.db.connection_context():
        pending = OAuthSignIn.get()
        assert asked["state"] not in pending.state_digest  # only its digest is kept
        verifier = pending.unseal(app.extensions["mailkeep.keyring"], "code_verifier")
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == asked["code_challenge"]  # the verifier stays here; the provider sees its S256 only


def stored_by_name(name):
    with models.db.connection_context():
        return Credential.get(Credential.name == name)


def test_the_callback_stores_the_sign_in_fills_the_username_and_tests_it(app, client, token_server, dovecot):
    oauth_app = registered_app(app, token_server)
    response = sign_in(client, token_server, credential_form(dovecot), oauth_app)
    assert response.status_code == 303 and response.headers["Location"].endswith("/credentials/1/edit")
    credential = stored(1)
    assert credential.username == MAILBOX_USER and credential.oauth_account == MAILBOX_USER
    assert credential.oauth_app_id == oauth_app.id and credential.oauth_scopes == "openid email mail offline_access"
    assert credential.last_test_ok is True  # tested at once with the new sign-in
    assert CANARY not in credential.refresh_token_ciphertext
    token = stored_refresh_token(app, 1)
    assert token_server.refresh_token_works(token)  # the test's refresh replaced the first one; this is the new
    page = client.get("/credentials/1/edit").get_data(as_text=True)
    assert f"Signed in as {MAILBOX_USER}" in page and "Tested: working." in page
    assert "Sign in again with Test provider" in page
    assert [event.outcome for event in events("oauth_sign_in")] == ["ok"]
    assert OAuthSignIn.select().count() == 0


def test_a_shared_mailbox_typed_as_username_stays(app, client, token_server, dovecot):
    oauth_app = registered_app(app, token_server)
    sign_in(client, token_server, credential_form(dovecot, username="shared@example.test"), oauth_app)
    credential = stored(1)
    assert (credential.username, credential.oauth_account) == ("shared@example.test", MAILBOX_USER)
    assert credential.last_test_ok is False  # Dovecot lets alice's token read alice's mailbox only


def test_a_failed_login_keeps_the_refresh_token_the_provider_replaced(app, client, token_server, dovecot):
    """The test after the sign-in refreshes (the provider takes the sign-in's refresh token back and answers
    a new one), then the mailbox refuses the login: the new refresh token is stored all the same, so the next
    test is refused by the mailbox again, not told to sign in again (invalid_grant) for a used-up token."""
    oauth_app = registered_app(app, token_server)
    issued = len(token_server.refresh_tokens)
    sign_in(client, token_server, credential_form(dovecot, username="shared@example.test"), oauth_app)
    signed_in_with, rotated = token_server.refresh_tokens[issued:]  # the code's, then the test's refresh
    assert stored(1).last_test_ok is False
    assert stored_refresh_token(app, 1) == rotated
    assert token_server.refresh_token_works(rotated) and not token_server.refresh_token_works(signed_in_with)
    html = client.post("/credentials/1/test", headers=HTMX).get_data(as_text=True)
    assert "Failing" in html and "oauth_consent_required" not in html
    with models.db.connection_context():
        causes = [check.cause_code for check in CredentialCheck.of(1).order_by(CredentialCheck.id)]
    assert causes == ["auth_failed", "auth_failed"]
    assert token_server.refresh_token_works(stored_refresh_token(app, 1))


def edit_page(client, credential_id=1):
    """The credential's edit page as text, HTML entities read (the sign-in's outcome is said there)."""
    return html.unescape(client.get(f"/credentials/{credential_id}/edit").get_data(as_text=True))


@pytest.mark.parametrize("misanswer", [{"audience": "another-client"}, {"audience": ["another-client", "an-api"]},
                                       {"nonce": "the-nonce-of-another-sign-in"}])
def test_an_id_token_not_issued_for_this_sign_in_is_refused_and_nothing_is_stored(
        app, client, token_server, dovecot, misanswer):
    """OpenID Connect Core 1.0 section 3.1.3.7: the ID Token must name this client in ``aud`` and carry the
    nonce this sign-in sent; one that does not (a token meant for another client, or replayed from another
    sign-in) names no account Mailkeep may trust, so its refresh token is not kept either."""
    oauth_app = registered_app(app, token_server)
    token_server.misanswer_next_code(**misanswer)
    response = sign_in(client, token_server, credential_form(dovecot), oauth_app)
    assert response.status_code == 303 and response.headers["Location"].endswith("/credentials/1/edit")
    assert NOT_FOR_THIS_SIGN_IN in edit_page(client)
    credential = stored(1)
    assert credential.stored_secrets == [] and (credential.username, credential.oauth_account) == ("", "")
    assert credential.oauth_signed_in_at is None and credential.last_test_at is None
    assert [(event.outcome, event.details) for event in events("oauth_sign_in")] == [("failed", NOT_FOR_THIS_SIGN_IN)]
    assert OAuthSignIn.select().count() == 0


def test_an_id_token_for_several_audiences_this_client_among_them_is_taken(app, client, token_server, dovecot):
    oauth_app = registered_app(app, token_server)
    token_server.misanswer_next_code(audience=["an-api", SIGN_IN_CLIENT_ID])
    sign_in(client, token_server, credential_form(dovecot), oauth_app)
    credential = stored(1)
    assert credential.oauth_account == MAILBOX_USER and credential.last_test_ok is True


def test_a_provider_that_sends_no_refresh_token_is_told_apart_and_nothing_is_stored(app, client, token_server,
                                                                                     dovecot):
    """Without a refresh token the sign-in could not be used past its first access token: Mailkeep says what
    the app lacks (for a custom provider, the scope that gives refresh tokens) instead of storing half a
    sign-in."""
    oauth_app = registered_app(app, token_server)
    issued = len(token_server.refresh_tokens)
    token_server.misanswer_next_code(refresh_token=False)
    response = sign_in(client, token_server, credential_form(dovecot), oauth_app)
    assert response.status_code == 303 and len(token_server.refresh_tokens) == issued  # none was issued
    said = oauth_sign_in.NO_REFRESH_TOKEN["custom"]
    assert said.startswith("The provider sent no refresh token: add the scope") and said in edit_page(client)
    credential = stored(1)
    assert credential.stored_secrets == [] and credential.oauth_account == "" and credential.last_test_at is None
    assert [(event.outcome, event.details) for event in events("oauth_sign_in")] == [("failed", said)]


def add_app(client, **values):
    """Add an OAuth app on the OAuth apps page; return it as stored."""
    form = {"name": "Work mail", "client_id": "11111111-2222", "client_secret": CLIENT_SECRET, **values}
    assert client.post("/oauth-apps/new", data=form).status_code == 303
    with models.db.connection_context():
        return models.OAuthApp.get(models.OAuthApp.name == form["name"])


def elsewhere(**overrides):
    """A credential form for a provider's own mail server (not the test Dovecot: nothing is dialled)."""
    return credential_form(SimpleNamespace(imaps_port=993), **overrides)


def test_microsoft_sign_in_goes_to_the_apps_tenant_and_the_button_says_microsoft(app, client):
    tenant = "contoso.onmicrosoft.com"
    oauth_app = add_app(client, kind="microsoft", tenant=tenant)
    form_page = client.get("/credentials/new").get_data(as_text=True)
    assert ">Sign in with Microsoft</button>" in form_page
    location = start(client, elsewhere(host="outlook.office365.com"), oauth_app)
    assert location.startswith(f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize?")
    asked = query_of(location)
    assert asked["client_id"] == "11111111-2222" and asked["prompt"] == "select_account"
    assert asked["scope"] == "openid email https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
    assert asked["code_challenge_method"] == "S256" and asked["redirect_uri"].endswith("/oauth/callback")
    pop = start(client, elsewhere(host="outlook.office365.com", protocol="POP3", port="995", name="POP3"), oauth_app)
    assert query_of(pop)["scope"] == "openid email https://outlook.office.com/POP.AccessAsUser.All offline_access"


def test_google_sign_in_asks_for_offline_access_and_consent_every_time(app, client):
    """Google sends a refresh token only for ``access_type=offline``, and on a later sign-in (Sign in again)
    only with ``prompt=consent``: both are in the URL the browser is sent to, with the sign-in's own."""
    oauth_app = add_app(client, kind="google", name="Gmail")
    assert ">Sign in with Google</button>" in client.get("/credentials/new").get_data(as_text=True)
    location = start(client, elsewhere(host="imap.gmail.com", username="someone@gmail.com"), oauth_app)
    assert location.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    asked = query_of(location)
    assert (asked["access_type"], asked["prompt"]) == ("offline", "consent")
    assert asked["scope"] == "openid email https://mail.google.com/" and asked["response_type"] == "code"
    assert asked["code_challenge_method"] == "S256" and asked["state"] and asked["nonce"]


def test_a_wrong_foreign_or_replayed_state_is_refused_and_changes_nothing(app, client, token_server, dovecot):
    oauth_app = registered_app(app, token_server)
    back = local_path(token_server.approve(start(client, credential_form(dovecot), oauth_app)))
    state = query_of(back)["state"]
    wrong = client.get(back.replace(state, state[:-4] + "AAAA"))
    assert wrong.status_code == 400 and "not one Mailkeep started in this session" in wrong.get_data(as_text=True)
    other_session = signed_in(app, "admin").get(back)
    assert other_session.status_code == 400
    assert client.get(back).status_code == 303
    replayed = client.get(back)
    assert replayed.status_code == 400
    assert "not one Mailkeep started in this session, or it was finished already" in replayed.get_data(as_text=True)
    assert [event.outcome for event in events("oauth_sign_in")] == ["ok"]


def test_a_replay_racing_the_first_return_is_refused(app, client, token_server, dovecot):
    """The state is marked used before the code is redeemed: a second return that finds the row still there
    cannot claim it again."""
    oauth_app = registered_app(app, token_server)
    back = local_path(token_server.approve(start(client, credential_form(dovecot), oauth_app)))
    with models.db.connection_context():
        OAuthSignIn.update(used_at=models.utcnow()).execute()  # as if the first return had just claimed it
    response = client.get(back)
    assert response.status_code == 400 and "finished already" in response.get_data(as_text=True)
    assert stored(1).stored_secrets == []


def test_a_sign_in_that_took_too_long_is_refused(app, client, token_server, dovecot):
    oauth_app = registered_app(app, token_server)
    back = local_path(token_server.approve(start(client, credential_form(dovecot), oauth_app)))
    with models.db.connection_context():
        OAuthSignIn.update(created_at=models.utcnow() - timedelta(minutes=16)).execute()
    response = client.get(back)
    assert response.status_code == 400 and "took too long" in response.get_data(as_text=True)


def test_a_declined_consent_says_so_in_the_providers_words_and_stores_nothing(app, client, token_server, dovecot):
    oauth_app = registered_app(app, token_server)
    response = sign_in(client, token_server, credential_form(dovecot), oauth_app, approve=False)
    assert response.status_code == 303
    page = client.get("/credentials/1/edit").get_data(as_text=True)
    assert "Custom did not sign you in: access_denied: The user declined consent." in page
    assert stored(1).stored_secrets == [] and [event.outcome for event in events("oauth_sign_in")] == ["refused"]


def test_an_intercepted_code_is_useless_without_the_verifier_and_works_once(app, client, token_server, dovecot):
    """Someone who sees the code on its way back cannot redeem it without the PKCE verifier, which never left
    Mailkeep; and a code works once, so the attempt spends it: Mailkeep says so and stores nothing."""
    oauth_app = registered_app(app, token_server)
    back = token_server.approve(start(client, credential_form(dovecot), oauth_app))
    form = urllib.parse.urlencode({"grant_type": "authorization_code", "code": query_of(back)["code"],
                                   "redirect_uri": "http://127.0.0.1:5000/oauth/callback",
                                   "client_id": SIGN_IN_CLIENT_ID, "client_secret": CLIENT_SECRET,
                                   "code_verifier": "guessed" * 7}).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(token_server.token_url, data=form), timeout=5)
    assert refused.value.code == 400 and b"PKCE verification failed" in refused.value.read()
    response = client.get(local_path(back))
    assert response.status_code == 303
    page = client.get("/credentials/1/edit").get_data(as_text=True)
    assert "The sign-in could not be finished. The token endpoint refused the authorization code" in page
    assert stored(1).stored_secrets == []
    assert [event.outcome for event in events("oauth_sign_in")] == ["token_request_failed"]


def test_a_test_stores_the_new_refresh_token_with_its_outcome(app, client, token_server, dovecot):
    credential, _ = signed_in_credential(app, client, token_server, dovecot)
    before = stored_refresh_token(app, credential.id)
    html = client.post(f"/credentials/{credential.id}/test", headers=HTMX).get_data(as_text=True)
    assert "Working" in html
    after = stored_refresh_token(app, credential.id)
    assert after != before
    assert not token_server.refresh_token_works(before) and token_server.refresh_token_works(after)
    # The values on screen (another folder) use the stored sign-in too, and keep its new refresh token.
    form = credential_form(dovecot, username=MAILBOX_USER, folder="Archive")
    html = client.post(f"/credentials/{credential.id}/test-form", data=form, headers=HTMX).get_data(as_text=True)
    assert "We were able to connect to your mailbox." in html
    assert stored_refresh_token(app, credential.id) not in (before, after)
    assert token_server.refresh_token_works(stored_refresh_token(app, credential.id))
    assert stored(credential.id).oauth_used_at is not None


@pytest.mark.parametrize("failing", ["outcome", "audit event"])
def test_a_replaced_refresh_token_is_kept_even_when_the_tests_outcome_cannot_be_written(
        app, client, token_server, dovecot, monkeypatch, failing):
    """The provider took the old refresh token back when it answered the new one: should writing the test's
    outcome (or its audit event) fail, the new refresh token is stored all the same, on its own, and the error
    goes on. The outcome is not written; the next test works instead of asking to sign in again."""
    credential, _ = signed_in_credential(app, client, token_server, dovecot)
    before, tested = stored_refresh_token(app, credential.id), stored(credential.id)

    def refused(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(*((checks, "record_result") if failing == "outcome" else (audit, "record")), refused)
    with app.test_request_context(), models.db.connection_context():
        checks_before = CredentialCheck.of(credential.id).count()
        with pytest.raises(OperationalError, match="database is locked"):
            connection_tests.test_saved(Credential.get_by_id(credential.id), actor="tests",
                                        now=models.utcnow() + timedelta(hours=1))
        assert CredentialCheck.of(credential.id).count() == checks_before
    after = stored_refresh_token(app, credential.id)
    assert after != before
    assert token_server.refresh_token_works(after) and not token_server.refresh_token_works(before)
    untouched = stored(credential.id)
    assert (untouched.last_test_at, untouched.last_test_summary) == (tested.last_test_at, tested.last_test_summary)
    monkeypatch.undo()
    assert "Working" in client.post(f"/credentials/{credential.id}/test", headers=HTMX).get_data(as_text=True)
    assert token_server.refresh_token_works(stored_refresh_token(app, credential.id))


def test_a_refused_refresh_token_asks_to_sign_in_again_for_that_credential(app, client, token_server, dovecot):
    credential, oauth_app = signed_in_credential(app, client, token_server, dovecot, description="Unchanged")
    token_server.revoke_consent(MAILBOX_USER)
    form = credential_form(dovecot, username=MAILBOX_USER, description="Unchanged")
    html = client.post(f"/credentials/{credential.id}/test-form", data=form, headers=HTMX).get_data(as_text=True)
    assert "The provider no longer accepts this sign-in (invalid_grant)." in html
    assert "The server said: <code>invalid_grant: The user has withdrawn consent.</code>" in html
    assert "Cause: <code>oauth_consent_required</code>" in html
    assert f'<button type="submit" name="sign_in_app" value="{oauth_app.id}"' in html
    assert ">Sign in again</button>" in html
    assert '<small id="test-blame-refresh_token" class="test-blame" hx-swap-oob="true">The provider' in html
    # "Sign in again" saves the form (nothing changed) and signs in for this credential only.
    response = sign_in(client, token_server, form, oauth_app, credential_id=credential.id)
    assert response.status_code == 303
    again = stored(credential.id)
    assert again.last_test_ok is True and again.description == "Unchanged"
    assert [event.outcome for event in events("oauth_sign_in")] == ["ok", "ok"]


def test_changing_the_server_forgets_the_sign_in(app, client, token_server, dovecot):
    credential, _ = signed_in_credential(app, client, token_server, dovecot)
    form = credential_form(dovecot, username=MAILBOX_USER, port=str(dovecot.imap_port), security="starttls")
    html = client.post(f"/credentials/{credential.id}/test-form", data=form, headers=HTMX).get_data(as_text=True)
    assert "The server changed since the sign-in: sign in again for it." in html
    assert client.post(f"/credentials/{credential.id}/edit", data=form).status_code == 303
    assert stored(credential.id).stored_secrets == []
    page = client.get(f"/credentials/{credential.id}/edit").get_data(as_text=True)
    assert "Not signed in yet." in page


def test_a_changed_oauth_app_is_not_sent_the_old_sign_ins_refresh_token(app, client, token_server, dovecot):
    """An administrator points the app at another token endpoint (or client): the refresh tokens issued by
    the old one stay here, and the credentials ask to sign in again."""
    credential, oauth_app = signed_in_credential(app, client, token_server, dovecot)
    asked = len([entry for entry in token_server.requests if entry["path"] == "/token"])
    with models.db.connection_context():
        models.OAuthApp.update(token_url="https://login.elsewhere.example/token").execute()
    html = client.post(f"/credentials/{credential.id}/test", headers=HTMX).get_data(as_text=True)
    assert "Failing" in html and "changed since this sign-in" in html
    assert len([entry for entry in token_server.requests if entry["path"] == "/token"]) == asked  # none asked
    form = credential_form(dovecot, username=MAILBOX_USER)
    result = client.post(f"/credentials/{credential.id}/test-form", data=form, headers=HTMX).get_data(as_text=True)
    assert "changed since this sign-in" in result
    assert "changed since alice@example.test signed in: sign in again." in client.get(
        f"/credentials/{credential.id}/edit").get_data(as_text=True)
    with models.db.connection_context():
        models.OAuthApp.update(token_url=token_server.token_url).execute()
    assert "Working" in client.post(f"/credentials/{credential.id}/test", headers=HTMX).get_data(as_text=True)


def test_a_credential_waits_for_its_sign_in_and_says_so(app, client, token_server, dovecot):
    registered_app(app, token_server)
    response = client.post("/credentials/new", data={**credential_form(dovecot, username=MAILBOX_USER), "then": "test"})
    assert response.status_code == 303
    assert "Not tested: Sign in first" in client.get("/credentials/").get_data(as_text=True)
    html = client.post("/credentials/1/test-form", data=credential_form(dovecot, username=MAILBOX_USER),
                       headers=HTMX).get_data(as_text=True)
    assert "Sign in first" in html and ">Sign in with Test provider</button>" in html


def test_without_an_oauth_app_the_form_says_who_adds_one(app, token_server, dovecot):
    editor_page = signed_in(app, "editor").get("/credentials/new").get_data(as_text=True)
    assert "No OAuth app is registered yet. An administrator adds one on the OAuth apps page." in editor_page
    admin_page = signed_in(app, "admin").get("/credentials/new").get_data(as_text=True)
    assert 'href="/oauth-apps/new">Add the one your team registered</a>' in admin_page


def test_another_process_refreshing_first_is_not_taken_for_lost_consent(app, client, token_server, dovecot):
    """A test that read the refresh token just before another process used it (each works once) asks again
    with the one that process stored, instead of saying to sign in again."""
    credential, _ = signed_in_credential(app, client, token_server, dovecot)
    with app.test_request_context(), models.db.connection_context():
        stale = Credential.get_by_id(credential.id)
        oauth_tokens.access_token_for(credential.id, fresh=True)  # the other process
        outcome = connection_tests.test_saved(stale, actor="tests")
        assert outcome.result.ok, outcome.result.cause
        newest = stored_refresh_token(app, credential.id)
        assert token_server.refresh_token_works(newest)


def test_an_older_refresh_token_is_never_written_over_a_newer_one(app, client, token_server, dovecot):
    credential, _ = signed_in_credential(app, client, token_server, dovecot)
    """Two refreshes with one refresh token both answered (as Microsoft does, which lets the old one work a
    while): the one stored second would put back a token older than the stored one's, and is dropped."""
    with app.test_request_context(), models.db.connection_context():
        stale = Credential.get_by_id(credential.id)
        settings = oauth_tokens.token_settings(stale)
        oauth_tokens.access_token_for(credential.id, fresh=True)  # another process's refresh, stored first
        newest = stored_refresh_token(app, credential.id)
        late = probe.Grant(access_token="at-late", refresh_token=f"rt-{CANARY}-late", rotated=True)
        assert oauth_tokens.keep_rotated(stale, settings, late) is False
        assert stored_refresh_token(app, credential.id) == newest
        assert oauth_tokens.keep_rotated(Credential.get_by_id(credential.id), settings, late) is True


def test_sign_in_again_from_the_credentials_page_hints_the_account(app, client, token_server, dovecot):
    credential, oauth_app = signed_in_credential(app, client, token_server, dovecot)
    page = client.get(f"/credentials/{credential.id}")
    policy = page.headers["Content-Security-Policy"]
    assert policy.endswith(f"form-action 'self' {token_server.url}")  # its form may lead to the provider
    assert client.get("/credentials/").headers["Content-Security-Policy"].endswith("form-action 'self'")
    response = client.post(f"/oauth/sign-in/{credential.id}")
    assert response.status_code == 303
    asked = query_of(response.headers["Location"])
    assert asked["login_hint"] == MAILBOX_USER and asked["client_id"] == SIGN_IN_CLIENT_ID
    back = client.get(local_path(token_server.approve(response.headers["Location"])))
    assert back.headers["Location"].endswith(f"/credentials/{credential.id}")
    assert back.headers["Referrer-Policy"] == "no-referrer"  # its URL held the code


def test_a_return_without_a_session_is_refused_without_sending_the_code_anywhere(app, token_server):
    response = app.test_client().get("/oauth/callback?state=s&code=code-that-must-go-nowhere")
    assert response.status_code == 400 and "Location" not in response.headers
    assert "code-that-must-go-nowhere" not in response.get_data(as_text=True)


@pytest.mark.parametrize("page", ["/credentials/1/edit", "/credentials/1", "/credentials/", "/api/v1/credentials/1"])
def test_tokens_never_reach_the_browser(app, client, api, token_server, dovecot, page):
    """The canary check after each test looks at every response; the test server's tokens, codes and the
    client secret all hold the canary. Here, pages and the API that show a signed-in credential."""
    signed_in_credential(app, client, token_server, dovecot)
    response = (api if page.startswith("/api/") else client).get(page)
    assert response.status_code == 200
    if page.startswith("/api/"):
        body = response.get_json()
        assert body["refresh_token_set"] is True and body["sign_in"]["account"] == MAILBOX_USER
        assert "refresh_token" not in body
    assert CLIENT_SECRET not in response.get_data(as_text=True)


def test_the_command_line_adds_a_credential_to_sign_in_to_without_asking_for_a_secret(app):
    runner = app.test_cli_runner()
    added = runner.invoke(args=["credentials", "add", "--name", "Later", "--description", "Signed in on its page",
                                "--host", "outlook.office365.com", "--username", "help@contoso.com",
                                "--auth", "oauth2_sign_in"])
    assert added.exit_code == 0, added.output
    tested = runner.invoke(args=["credentials", "test", added.output.strip()])
    assert tested.exit_code == 1 and "Later: Sign in first" in tested.output
    listed = runner.invoke(args=["credentials", "list", "--auth", "oauth2_sign_in"])
    assert "Later" in listed.output
