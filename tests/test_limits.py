"""Unbounded input: request size, form fields, custom data rows and every field's length have a limit, the
same in the pages, the API and the command line, and each refusal says what was too large."""

import pytest

import models
from app import create_app
from clients import HTMX, signed_in
from models import Credential
from test_credentials import field_error, form_values

CREDENTIAL = {"name": "Support", "description": "x", "host": "imap.example.com", "username": "help@example.com",
              "password": "pw"}


def rows(count):
    return {f"custom_data-{index}-{part}": f"{part}{index}" for index in range(count) for part in ("key", "value")}


def test_a_body_over_the_limit_is_refused_with_413_and_says_so(client, api):
    page = client.post("/credentials/new", data=form_values(description="x" * (2 * 1024 * 1024)))
    assert page.status_code == 413
    assert "larger than Mailkeep accepts: at most 1,048,576 bytes" in page.get_data(as_text=True)
    assert len(page.get_data()) < 20_000  # not echoed back
    fragment = client.post("/credentials/new", data=form_values(description="x" * (2 * 1024 * 1024)), headers=HTMX)
    assert fragment.headers["HX-Retarget"] == "#messages" and "larger than Mailkeep accepts" in fragment.text
    body = {**CREDENTIAL, "description": "x" * (2 * 1024 * 1024)}
    refused = api.post("/api/v1/credentials", json=body)
    assert refused.status_code == 413 and "larger than Mailkeep accepts" in refused.get_json()["error"]
    with models.db.connection_context():
        assert Credential.select().count() == 0


def test_the_request_limit_is_configurable(app_config):
    app = create_app({**app_config, "MAX_REQUEST_BYTES": "2000"})
    with models.db.connection_context():
        models.User.add("admin", "a long test password", "admin")
    client = signed_in(app, "admin")
    assert client.post("/groups/", data={"name": "x", "description": "y" * 3000}).status_code == 413
    assert client.post("/groups/", data={"name": "x", "description": "y" * 400}).status_code == 303


def test_a_form_with_more_fields_than_allowed_is_refused_before_it_is_read(client):
    response = client.post("/credentials/new", data={**form_values(), **rows(600)})
    assert response.status_code == 413
    assert "This form sends more fields than Mailkeep accepts. It accepts at most 1000." in response.text


def test_custom_data_rows_are_limited_in_the_page_and_the_api(app, client, api):
    too_many = client.post("/credentials/new", data={**form_values(), **rows(51)})
    assert too_many.status_code == 200
    assert "A credential holds at most 50 rows of custom data." in too_many.get_data(as_text=True)
    assert client.post("/credentials/new", data={**form_values(), **rows(50)}).status_code == 303
    with models.db.connection_context():
        credential = Credential.get()
        assert len(credential.custom_data) == 50
    no_more = client.post(f"/credentials/{credential.id}/edit",
                          data={**form_values(password=None), **rows(50), "custom_data_action": "add"})
    assert 'name="custom_data-50-key"' not in no_more.text and "at most 50 rows" in no_more.text
    custom = [{"key": f"k{index}", "value": ""} for index in range(51)]
    refused = api.post("/api/v1/credentials", json={**CREDENTIAL, "name": "Other", "username": "o@example.com",
                                                    "custom_data": custom})
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == {"custom_data": ["A credential holds at most 50 rows of custom data."]}
    app.config["MAX_CUSTOM_DATA_ROWS"] = 2
    assert "at most 2 rows" in client.post("/credentials/new", data={**form_values(), **rows(3)}).text


@pytest.mark.parametrize("field", ["password", "client_secret"])
def test_secrets_have_a_longest_length_too(api, field):
    body = {**CREDENTIAL, field: "x" * 4097}
    if field == "client_secret":
        body.update(auth="oauth2_client_credentials", client_id="c", token_url="https://login.example.com/token")
        del body["password"]
    refused = api.post("/api/v1/credentials", json=body)
    assert refused.status_code == 422
    assert refused.get_json()["errors"][field] == ["Field cannot be longer than 4096 characters."]


def test_a_long_field_is_refused_on_its_field(client):
    response = client.post("/credentials/new", data=form_values(name="n" * 5000))
    assert field_error(response.text, "name") == "Field cannot be longer than 100 characters."


def test_the_command_line_refuses_an_over_long_secret(app):
    result = app.test_cli_runner().invoke(args=[
        "credentials", "add", "--name", "Support", "--description", "x", "--host", "imap.example.com",
        "--username", "help@example.com", "--secret-stdin"], input="x" * 5000 + "\n")
    assert result.exit_code == 1 and "password: Field cannot be longer than 4096 characters." in result.output


def test_a_form_too_large_is_refused_before_the_rate_limits_read_it_with_redis_too(app_config, redis_server):
    """Flask-Limiter, counting in Redis, takes an error raised while it works out a limit (the form it reads
    is too large) for Redis failing and swallows it: the limits must never be the first to read the body."""
    redis_server.flush()
    app = create_app({**app_config, "REDIS_URL": redis_server.url})
    with models.db.connection_context():
        models.User.add("admin", "a long test password", "admin")
    client = signed_in(app, "admin")
    assert client.post("/credentials/new", data={**form_values(), **rows(600)}).status_code == 413
    too_big = client.post("/credentials/new", data=form_values(description="x" * (2 * 1024 * 1024)))
    assert too_big.status_code == 413
    assert client.post("/credentials/new", data=form_values()).status_code == 303  # Redis was never taken for dead
