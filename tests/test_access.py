"""Who may do what: every route, every method, for an anonymous visitor and each role.

The table below is written out by hand, not derived from the code, and must
name every route the application has: a new route fails this test until
someone decides who may use it.
"""

import re

import pytest
from clients import signed_in

import access
import models

IDENTITIES = ("anonymous", "viewer", "editor", "admin")
ROLE_ORDER = ("public",) + IDENTITIES[1:]

# (rule, method): the least role that may use it.
LEAST_ROLE = {
    ("/setup", "GET"): "public", ("/setup", "POST"): "public",
    ("/login", "GET"): "public", ("/login", "POST"): "public",
    ("/logout", "POST"): "viewer",
    ("/account/", "GET"): "viewer", ("/account/", "POST"): "viewer",
    ("/", "GET"): "viewer",
    ("/credentials/", "GET"): "viewer",
    ("/credentials/<id:credential_id>", "GET"): "viewer",
    ("/credentials/new", "GET"): "editor", ("/credentials/new", "POST"): "editor",
    ("/credentials/<id:credential_id>/edit", "GET"): "editor",
    ("/credentials/<id:credential_id>/edit", "POST"): "editor",
    ("/credentials/custom-data", "POST"): "editor",
    ("/credentials/autodetect", "GET"): "editor",
    ("/credentials/<id:credential_id>/password", "GET"): "editor",
    ("/credentials/<id:credential_id>/password", "POST"): "editor",
    ("/credentials/<id:credential_id>/client-secret", "GET"): "editor",
    ("/credentials/<id:credential_id>/client-secret", "POST"): "editor",
    ("/credentials/test", "POST"): "editor",
    ("/credentials/<id:credential_id>/test-form", "POST"): "editor",
    ("/credentials/<id:credential_id>/test", "POST"): "editor",
    ("/credentials/<id:credential_id>/delete", "GET"): "editor",
    ("/credentials/<id:credential_id>/delete", "POST"): "editor",
    ("/aliases/", "GET"): "viewer",
    ("/aliases/credential-choices", "GET"): "editor",
    ("/aliases/new", "GET"): "editor", ("/aliases/new", "POST"): "editor",
    ("/aliases/<id:alias_id>/edit", "GET"): "editor", ("/aliases/<id:alias_id>/edit", "POST"): "editor",
    ("/aliases/<id:alias_id>/delete", "GET"): "editor", ("/aliases/<id:alias_id>/delete", "POST"): "editor",
    ("/groups/", "GET"): "viewer", ("/groups/", "POST"): "editor",
    ("/groups/<id:group_id>", "GET"): "editor",
    ("/groups/<id:group_id>/edit", "GET"): "editor", ("/groups/<id:group_id>/edit", "POST"): "editor",
    ("/groups/<id:group_id>/delete", "GET"): "editor", ("/groups/<id:group_id>/delete", "POST"): "editor",
    ("/tokens/", "GET"): "viewer", ("/tokens/", "POST"): "viewer",
    ("/tokens/<id:token_id>/revoke", "POST"): "viewer",
    ("/users/", "GET"): "admin", ("/users/", "POST"): "admin",
    ("/users/<id:user_id>/role", "POST"): "admin",
    ("/users/<id:user_id>/active", "POST"): "admin", ("/users/<id:user_id>/inactive", "POST"): "admin",
    ("/users/<id:user_id>/password", "GET"): "admin", ("/users/<id:user_id>/password", "POST"): "admin",
    ("/users/<id:user_id>/delete", "GET"): "admin", ("/users/<id:user_id>/delete", "POST"): "admin",
    ("/audit/", "GET"): "admin",
    ("/oauth-apps/", "GET"): "admin",
    ("/oauth-apps/new", "GET"): "admin", ("/oauth-apps/new", "POST"): "admin",
    ("/oauth-apps/<id:app_id>/edit", "GET"): "admin", ("/oauth-apps/<id:app_id>/edit", "POST"): "admin",
    ("/oauth-apps/<id:app_id>/delete", "GET"): "admin", ("/oauth-apps/<id:app_id>/delete", "POST"): "admin",
    ("/oauth/sign-in/<id:credential_id>", "POST"): "editor",
    ("/oauth/callback", "GET"): "public",
    ("/api/v1/openapi.json", "GET"): "public",
    ("/api/v1/credentials", "GET"): "viewer", ("/api/v1/credentials", "POST"): "editor",
    ("/api/v1/credentials/<id:row_id>", "GET"): "viewer",
    ("/api/v1/credentials/<id:row_id>", "PATCH"): "editor",
    ("/api/v1/credentials/<id:row_id>", "DELETE"): "editor",
    ("/api/v1/aliases", "GET"): "viewer", ("/api/v1/aliases", "POST"): "editor",
    ("/api/v1/aliases/<id:row_id>", "GET"): "viewer",
    ("/api/v1/aliases/<id:row_id>", "PATCH"): "editor",
    ("/api/v1/aliases/<id:row_id>", "DELETE"): "editor",
    ("/api/v1/groups", "GET"): "viewer", ("/api/v1/groups", "POST"): "editor",
    ("/api/v1/groups/<id:row_id>", "GET"): "viewer",
    ("/api/v1/groups/<id:row_id>", "PATCH"): "editor",
    ("/api/v1/groups/<id:row_id>", "DELETE"): "editor",
    ("/api/v1/credentials/<id:row_id>/secrets/<any(password, client_secret):name>", "PUT"): "editor",
    ("/api/v1/oauth-apps", "GET"): "admin", ("/api/v1/oauth-apps", "POST"): "admin",
    ("/api/v1/oauth-apps/<id:row_id>", "GET"): "admin",
    ("/api/v1/oauth-apps/<id:row_id>", "PATCH"): "admin",
    ("/api/v1/oauth-apps/<id:row_id>", "DELETE"): "admin",
    ("/api/v1/connection-tests", "POST"): "editor",
}


def example_url(rule, row_id="999"):
    """A URL of `rule`: each id is `row_id`, each choice of an ``any(...)`` its first one."""
    url = re.sub(r"<id:\w+>", row_id, rule)
    return re.sub(r"<any\((\w+)[^)]*\):\w+>", r"\1", url)


def routes(app):
    """Every (rule, method) of the application but static files."""
    return {(rule.rule, method) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def test_the_table_names_every_route(app):
    assert routes(app) == set(LEAST_ROLE)


@pytest.mark.parametrize(("rule", "method"), sorted(LEAST_ROLE), ids=lambda value: str(value))
def test_every_route_lets_in_exactly_the_roles_it_should(app, rule, method):
    least = LEAST_ROLE[(rule, method)]
    url = example_url(rule)  # no such row: nothing is changed, the check still runs
    api = rule.startswith("/api/")
    for identity in IDENTITIES:
        response = _client(app, identity, api).open(url, method=method, json={} if api else None,
                                                     data=None if api else {"name": "x"})
        allowed = ROLE_ORDER.index(identity if identity != "anonymous" else "public") >= ROLE_ORDER.index(least)
        if allowed:
            assert response.status_code not in (401, 403), (identity, response.status_code)
            if not api and least != "public":
                assert not _to_login(response), identity
        elif identity == "anonymous":
            assert response.status_code == 401 if api else _to_login(response), (identity, response.status_code)
        else:
            assert response.status_code == 403, (identity, response.status_code)


def _to_login(response):
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


def _client(app, identity, api):
    if identity == "anonymous":
        return app.test_client()
    if not api:
        return signed_in(app, identity)
    with models.db.connection_context():
        _, token = models.ApiToken.issue(models.User.get(models.User.username == identity), "access test")
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def test_an_htmx_request_without_a_session_is_sent_to_sign_in(app):
    response = app.test_client().get("/credentials/", headers={"HX-Request": "true"})
    assert response.headers["HX-Redirect"].startswith("/login")


def test_an_htmx_request_beyond_the_role_says_why_in_the_message_area(app):
    response = signed_in(app, "viewer").post("/credentials/test", headers={"HX-Request": "true"})
    assert response.headers["HX-Retarget"] == "#messages"
    assert "This needs the editor role; you are a viewer." in response.get_data(as_text=True)


@pytest.mark.parametrize("number", ["0", str(2**63 - 1), str(2**63), "99999999999999999999"])
def test_every_route_answers_not_found_for_an_id_no_row_can_have(app, number):
    """Ids from a URL reach the database only from 1 to 2**63 - 1 (SQLite's largest integer); any other
    number is no row, on every route that takes one, rather than an overflow and a 500."""
    page, api = signed_in(app, "admin"), _client(app, "admin", api=True)
    with_ids = [(rule, method) for rule, method in sorted(LEAST_ROLE) if "<id:" in rule]
    assert len(with_ids) >= 20
    for rule, method in with_ids:
        url = example_url(rule, number)
        if rule.startswith("/api/"):
            response = api.open(url, method=method, json={})
        else:
            response = page.open(url, method=method, data={"name": "x"})
        assert response.status_code == 404, (url, method, response.status_code)


@pytest.mark.parametrize("identity", IDENTITIES[1:])
def test_what_pages_offer_follows_the_roles_the_routes_require(app, identity):
    """access.may, which templates ask before showing a link or button, answers as check_access does."""
    endpoints = {(rule.rule, method): rule.endpoint for rule in app.url_map.iter_rules() for method in rule.methods}
    with models.db.connection_context():
        user = models.User.get(models.User.username == identity)
    for (rule, method), least in LEAST_ROLE.items():
        with app.test_request_context(example_url(rule, "1"), method=method):
            access.g.api_user = user  # acting as this user, the way the API's token sets it
            allowed = least == "public" or ROLE_ORDER.index(identity) >= ROLE_ORDER.index(least)
            assert access.may(endpoints[(rule, method)], method) == allowed, (rule, method, identity)


def test_viewers_are_shown_only_what_they_may_do(app):
    with models.db.connection_context():
        credential = models.Credential.create(
            name="Support", description="x", group=models.Group.default(), host="imap.example.com", port=993,
            username="help@example.com")
        models.Alias.create(address="help@example.com", credential=credential)
    viewer, editor = signed_in(app, "viewer"), signed_in(app, "editor")
    pages = ("/credentials/", "/aliases/", "/groups/")
    for page in pages:
        html = viewer.get(page).get_data(as_text=True)
        for offer in ("Add credential", "Add alias", "Add group", "Test Support", "Edit Support", "Delete Support",
                      "Edit help@example.com", "Delete help@example.com", "Rename Default", "/credentials/1/edit",
                      "Add the first one", "/users/", "/audit/"):
            assert offer not in html, (page, offer)
    offered = "".join(editor.get(page).get_data(as_text=True) for page in pages)
    for offer in ("Add credential", "Add alias", "Add group", "Test Support", "Edit Support", "Delete Support",
                  "Edit help@example.com", "Delete help@example.com", "Rename Default"):
        assert offer in offered, offer
    assert "/users/" not in offered and "/audit/" in signed_in(app, "admin").get("/credentials/").text


# Error pages: the layout, a plain title and a way back; the API keeps JSON.

def test_a_missing_page_has_the_layout_a_plain_title_and_a_way_back(app):
    page = signed_in(app, "viewer").get("/no-such-page")
    html = page.get_data(as_text=True)
    assert page.status_code == 404
    assert "<title>Page not found · Mailkeep</title>" in html and '<nav aria-label="Main">' in html
    assert '<a href="/credentials/">Back to the credentials</a>' in html
    anonymous = app.test_client().get("/credentials/999/nothing").get_data(as_text=True)
    assert '<a href="/login">Go to sign in</a>' in anonymous
    api = app.test_client().get("/api/v1/nothing")
    assert api.status_code == 404 and api.is_json


def test_an_unexpected_failure_has_the_layout_and_a_way_back(app, monkeypatch):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: the error page, not the traceback

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(models.Alias, "search", broken)
    page = signed_in(app, "viewer").get("/aliases/")
    html = page.get_data(as_text=True)
    assert page.status_code == 500
    assert "<title>Something went wrong · Mailkeep</title>" in html and "Nothing was changed" in html
    assert '<a href="/credentials/">Back to the credentials</a>' in html


def test_too_many_requests_says_so_in_its_title_with_a_way_back(app):
    app.config["LOGIN_RATE_LIMIT"] = "1 per minute"
    client = app.test_client()
    client.post("/login", data={"username": "x", "password": "y"})
    page = client.post("/login", data={"username": "x", "password": "y"})
    html = page.get_data(as_text=True)
    assert page.status_code == 429 and "<title>Too many requests · Mailkeep</title>" in html
    assert '<a href="/login">Go to sign in</a>' in html


def test_every_form_on_every_page_says_where_it_posts(app):
    """A form without an action posts to the page's own address, which after a test without JavaScript is
    the test's: every form names its action."""
    with models.db.connection_context():
        credential = models.Credential.create(
            name="Support", description="x", group=models.Group.default(), host="imap.example.com", port=993,
            username="help@example.com")
        models.Alias.create(address="help@example.com", credential=credential)
    client = signed_in(app, "admin")
    pages = ["/credentials/", "/credentials/new", "/credentials/1/edit", "/credentials/1/password",
             "/credentials/1/client-secret", "/credentials/1/delete", "/aliases/", "/aliases/new", "/aliases/1/edit",
             "/aliases/1/delete", "/groups/", "/groups/1/edit", "/groups/1/delete", "/tokens/", "/users/", "/audit/"]
    forms = []
    for page in pages:
        forms += [(page, tag) for tag in re.findall(r"<form\b[^>]*>", client.get(page).get_data(as_text=True))]
    forms += [("/login", tag) for tag in re.findall(r"<form\b[^>]*>", app.test_client().get("/login").text)]
    assert len(forms) > 20
    assert [(page, tag) for page, tag in forms if " action=" not in tag] == []
