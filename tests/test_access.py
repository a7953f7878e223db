"""Who may do what: every route, every method, for an anonymous visitor and each role.

The table below is written out by hand, not derived from the code, and must
name every route the application has: a new route fails this test until
someone decides who may use it.
"""

import re
from datetime import timedelta

import pytest

import access
import models
import readers
from clients import signed_in

IDENTITIES = ("anonymous", "viewer", "editor", "admin")
# "service" is above every person's role: routes that need it (reading a connection) let no person in.
ROLE_ORDER = ("public",) + IDENTITIES[1:] + ("service",)

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
    ("/credentials/<id:credential_id>/pause", "POST"): "editor",
    ("/credentials/<id:credential_id>/resume", "POST"): "editor",
    ("/checks/runs", "POST"): "editor",
    ("/checks/runs/<id:run_id>", "GET"): "viewer",
    ("/notifications/", "GET"): "admin",
    ("/notifications/channels", "POST"): "admin",
    ("/notifications/channels/<id:channel_id>/enable", "POST"): "admin",
    ("/notifications/channels/<id:channel_id>/disable", "POST"): "admin",
    ("/notifications/channels/<id:channel_id>/delete", "POST"): "admin",
    ("/notifications/relay", "POST"): "admin",
    ("/notifications/test-email", "POST"): "admin",
    # Read by Prometheus: an API token (or an address in MAILKEEP_METRICS_NETWORKS, tested in test_monitoring).
    ("/metrics", "GET"): "viewer",
    ("/healthz", "GET"): "public",
    ("/api/v1/credentials/<id:row_id>/checks", "GET"): "viewer",
    ("/api/v1/health", "GET"): "viewer",
    ("/api/v1/check-runs", "POST"): "editor",
    ("/api/v1/check-runs/<id:run_id>", "GET"): "viewer",
    ("/api/v1/notification-channels", "GET"): "admin", ("/api/v1/notification-channels", "POST"): "admin",
    ("/api/v1/notification-channels/<id:row_id>", "GET"): "admin",
    ("/api/v1/notification-channels/<id:row_id>", "PATCH"): "admin",
    ("/api/v1/notification-channels/<id:row_id>", "DELETE"): "admin",
    # Service accounts and secret versions (issue 11).
    ("/service-accounts/", "GET"): "admin", ("/service-accounts/", "POST"): "admin",
    ("/service-accounts/<id:account_id>", "GET"): "admin", ("/service-accounts/<id:account_id>", "POST"): "admin",
    ("/service-accounts/<id:account_id>/credentials", "POST"): "admin",
    ("/service-accounts/<id:account_id>/credentials/<id:credential_id>/remove", "POST"): "admin",
    ("/service-accounts/<id:account_id>/tokens", "POST"): "admin",
    ("/service-accounts/<id:account_id>/tokens/<id:token_id>/revoke", "POST"): "admin",
    ("/service-accounts/<id:account_id>/delete", "GET"): "admin",
    ("/service-accounts/<id:account_id>/delete", "POST"): "admin",
    ("/credentials/<id:credential_id>/rotate", "POST"): "editor",
    ("/credentials/<id:credential_id>/secret-versions/<id:number>/restore", "POST"): "editor",
    ("/api/v1/credentials/<id:row_id>/connection", "GET"): "service",
    ("/api/v1/aliases/<id:row_id>/connection", "GET"): "service",
    ("/api/v1/aliases/by-address/<string(maxlength=320):address>/connection", "GET"): "service",
    ("/api/v1/credentials/<id:row_id>/secret-versions", "GET"): "viewer",
    ("/api/v1/credentials/<id:row_id>/secret-versions", "POST"): "editor",
    ("/api/v1/credentials/<id:row_id>/secret-versions/<id:number>/restore", "POST"): "editor",
    ("/api/v1/service-accounts", "GET"): "admin", ("/api/v1/service-accounts", "POST"): "admin",
    ("/api/v1/service-accounts/<id:row_id>", "GET"): "admin",
    ("/api/v1/service-accounts/<id:row_id>", "PATCH"): "admin",
    ("/api/v1/service-accounts/<id:row_id>", "DELETE"): "admin",
    ("/api/v1/service-accounts/<id:row_id>/tokens", "POST"): "admin",
    ("/api/v1/service-accounts/<id:row_id>/tokens/<id:token_id>", "DELETE"): "admin",
}

# (rule, method): the scope a service account needs to use it. Every other route refuses service accounts.
SERVICE_SCOPE = {
    ("/api/v1/credentials/<id:row_id>/connection", "GET"): "connection:read",
    ("/api/v1/aliases/<id:row_id>/connection", "GET"): "connection:read",
    ("/api/v1/aliases/by-address/<string(maxlength=320):address>/connection", "GET"): "connection:read",
    ("/api/v1/connection-tests", "POST"): "connection:test",
}
# Routes outside /api/ that machines read with an API token, answering as the API does.
TOKEN_ROUTES = ("/metrics",)


def example_url(rule, row_id="999", address="nobody@example.com"):
    """A URL of `rule`: each id is `row_id`, each choice of an ``any(...)`` its first one, each other text
    `address`."""
    url = re.sub(r"<id:\w+>", row_id, rule)
    url = re.sub(r"<string[^>]*:\w+>", address, url)
    return re.sub(r"<any\((\w+)[^)]*\):\w+>", r"\1", url)


def routes(app):
    """Every (rule, method) of the application but static files."""
    return {(rule.rule, method) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def test_the_table_names_every_route(app):
    assert routes(app) == set(LEAST_ROLE)


def route_family(rule):
    """The family `rule` belongs to: ``/api/v1/<resource>`` for the API, else its first path segment
    (``/credentials``). The route tables' tests take a family at a time: one application and database for
    its routes instead of one for each route (each route still checked on its own, named in each message)."""
    parts = rule.strip("/").split("/")
    return "/" + "/".join(parts[:3] if parts[0] == "api" else parts[:1])


FAMILIES = sorted({route_family(rule) for rule, _ in LEAST_ROLE})


def family_routes(family):
    """The (rule, method) pairs of LEAST_ROLE in `family` (see route_family), sorted."""
    return sorted(route for route in LEAST_ROLE if route_family(route[0]) == family)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_route_lets_in_exactly_the_roles_it_should(app, family):
    for rule, method in family_routes(family):
        least = LEAST_ROLE[(rule, method)]
        url = example_url(rule)  # no such row: nothing is changed, the check still runs
        api = rule.startswith("/api/") or rule in TOKEN_ROUTES
        for identity in IDENTITIES:
            response = _client(app, identity, api).open(url, method=method, json={} if api else None,
                                                         data=None if api else {"name": "x"})
            allowed = ROLE_ORDER.index(identity if identity != "anonymous" else "public") >= ROLE_ORDER.index(least)
            said = (method, rule, identity, response.status_code)
            if allowed:
                assert response.status_code not in (401, 403), said
                if not api and least != "public":
                    assert not _to_login(response), said
            elif identity == "anonymous":
                assert response.status_code == 401 if api else _to_login(response), said
            else:
                assert response.status_code == 403, said


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


# Service accounts: every route, for a service account inside and outside its groups, with and without each
# scope, with an expired token, and from a network it may not call from; and people's sessions and personal
# tokens on the routes only service accounts may use.

# Each kind of service-account caller: (scopes it holds, where its ids point, expired token, from its networks).
SERVICE_CALLERS = {
    "inside its groups": (("connection:read", "connection:test"), "inside", False, True),
    "outside its groups": (("connection:read", "connection:test"), "outside", False, True),
    "without connection:read": (("connection:test",), "inside", False, True),
    "without connection:test": (("connection:read",), "inside", False, True),
    "with an expired token": (("connection:read", "connection:test"), "inside", True, True),
    "from a network it may not use": (("connection:read", "connection:test"), "inside", False, False),
}
# A port nothing listens on: a connection test of these credentials ends at once ("connection refused").
CLOSED_PORT = 9


def _reading_rows(app):
    """A credential and an alias inside the group service accounts may read, and one of each outside it."""
    rows = {}
    for where, group in (("inside", "Readable"), ("outside", "Elsewhere")):
        credential = readers.saved(app, name=f"{where} mailbox", group=group, host="127.0.0.1", port=CLOSED_PORT,
                                   username=f"{where}@example.com")
        with models.db.connection_context():
            alias = models.Alias.create(address=f"{where}@example.com", credential=credential)
        rows[where] = {"credential": credential.id, "alias": alias.id, "address": alias.address}
    return rows


def _service_accounts():
    """One service account for each kind of caller in SERVICE_CALLERS: {caller: account}."""
    return {caller: readers.account(caller, scopes=scopes, groups=["Readable"],
                                    networks="" if network_allowed else "10.0.0.0/8")
            for caller, (scopes, _, _, network_allowed) in SERVICE_CALLERS.items()}


def _service_request(app, rows, rule, method, caller, made):
    _, where, expired, _ = SERVICE_CALLERS[caller]
    client = readers.client_of(app, made, expired=expired)
    row = rows[where]
    row_id = row["alias"] if rule.startswith("/api/v1/aliases/") else row["credential"]
    url = example_url(rule, str(row_id), address=row["address"].upper())
    api = rule.startswith("/api/")
    body = {"credential_id": row["credential"]} if rule == "/api/v1/connection-tests" else {}
    return client.open(url, method=method, json=body if api else None, data=None if api else {"name": "x"})


@pytest.mark.parametrize("family", FAMILIES)
def test_every_route_lets_in_exactly_the_service_accounts_it_should(app, family):
    rows, accounts = _reading_rows(app), _service_accounts()
    for rule, method in family_routes(family):
        _check_service_accounts(app, rows, accounts, rule, method)


def _check_service_accounts(app, rows, accounts, rule, method):
    """Every kind of service-account caller on the route (rule, method), and, where it matters, an expired
    personal token and people's sessions and personal tokens."""
    least, scope = LEAST_ROLE[(rule, method)], SERVICE_SCOPE.get((rule, method))
    api = rule.startswith("/api/") or rule in TOKEN_ROUTES
    for caller, (scopes, where, expired, network_allowed) in SERVICE_CALLERS.items():
        status = _service_request(app, rows, rule, method, caller, accounts[caller]).status_code
        if least == "public":
            expected = "not refused"
        elif not api:
            expected = "sign in"  # a page knows no service token: the caller is nobody
        elif expired:
            expected = 401
        elif not network_allowed or scope is None or scope not in scopes:
            expected = 403
        elif where == "outside":
            expected = 404  # it must not learn what exists
        else:
            expected = 200
        said = (method, rule, caller, status)
        if expected == "not refused":
            assert status not in (401, 403), said
        elif expected == "sign in":
            assert status == 302, said
        else:
            assert status == expected, said
    if api and least != "public":  # an expired personal token is no token, on every route
        with models.db.connection_context():
            _, expired = models.ApiToken.issue(models.User.get(models.User.username == "admin"), "old",
                                               expires_at=models.utcnow() - timedelta(minutes=1))
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {expired}"
        assert client.open(example_url(rule), method=method, json={}).status_code == 401, (method, rule)
    if least == "service":  # no person, with a session or a personal token, reads a connection
        for identity in IDENTITIES[1:]:
            url = example_url(rule, str(rows["inside"]["credential"]), address=rows["inside"]["address"])
            assert signed_in(app, identity).open(url, method=method).status_code == 403, (method, rule, identity)
            assert _client(app, identity, api=True).open(url, method=method).status_code == 403, (
                method, rule, identity)


def test_an_htmx_request_without_a_session_says_so_and_leaves_the_page_where_it_is(app):
    # A request the page makes by itself (the server lookup as you type) must not take the form away.
    response = app.test_client().get("/credentials/autodetect?username=a%40example.com", headers={
        "HX-Request": "true", "HX-Current-URL": "http://localhost/credentials/new?group=1"})
    assert "HX-Redirect" not in response.headers
    assert response.headers["HX-Retarget"] == "#messages"
    html = response.get_data(as_text=True)
    assert "Your session ended, so that was not done." in html
    assert '<a href="/login?next=/credentials/new?group%3D1">Sign in</a>' in html
    page = app.test_client().get("/credentials/")  # without htmx, to the sign-in page as before
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")


def test_an_htmx_request_beyond_the_role_says_why_in_the_message_area(app):
    response = signed_in(app, "viewer").post("/credentials/test", headers={"HX-Request": "true"})
    assert response.headers["HX-Retarget"] == "#messages"
    assert "This needs the editor role; you are a viewer." in response.get_data(as_text=True)


@pytest.mark.parametrize("number", ["0", str(2**63 - 1), str(2**63), "99999999999999999999"])
def test_every_route_answers_not_found_for_an_id_no_row_can_have(app, number):
    """Ids from a URL reach the database only from 1 to 2**63 - 1 (SQLite's largest integer); any other
    number is no row, on every route that takes one, rather than an overflow and a 500."""
    page, api = signed_in(app, "admin"), _client(app, "admin", api=True)
    # Routes no person may use are asked by a service account that may use them.
    service = readers.client_of(app, readers.account(scopes=("connection:read", "connection:test")))
    with_ids = [(rule, method) for rule, method in sorted(LEAST_ROLE) if "<id:" in rule]
    assert len(with_ids) >= 20
    for rule, method in with_ids:
        url = example_url(rule, number)
        if rule.startswith("/api/") or rule in TOKEN_ROUTES:
            response = (service if LEAST_ROLE[(rule, method)] == "service" else api).open(url, method=method, json={})
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
    readers.account(credentials=[credential])
    client = signed_in(app, "admin")
    pages = ["/credentials/", "/credentials/new", "/credentials/1/edit", "/credentials/1/password",
             "/credentials/1/client-secret", "/credentials/1/delete", "/aliases/", "/aliases/new", "/aliases/1/edit",
             "/aliases/1/delete", "/groups/", "/groups/1/edit", "/groups/1/delete", "/tokens/", "/users/", "/audit/",
             "/credentials/1", "/service-accounts/", "/service-accounts/1", "/service-accounts/1/delete",
             "/notifications/"]
    forms = []
    for page in pages:
        forms += [(page, tag) for tag in re.findall(r"<form\b[^>]*>", client.get(page).get_data(as_text=True))]
    forms += [("/login", tag) for tag in re.findall(r"<form\b[^>]*>", app.test_client().get("/login").text)]
    assert len(forms) > 20
    assert [(page, tag) for page, tag in forms if " action=" not in tag] == []
