"""Mailkeep: a team's dashboard for the IMAP and POP3 credentials its tools use.

``create_app`` is the application factory (Flask's tutorial pattern):
configuration, the database, CSRF protection, the blueprints, and the command
line (``flask --app app --help``; see cli.py).
"""

import os

from flask import Flask, g, redirect, request, url_for
from werkzeug.middleware.proxy_fix import ProxyFix

import access
import cli
import config
import database
import keys
import logins
import migrations
import models
import slots
import web
import worker
from probe import protocols
from views import (
    account,
    aliases,
    api,
    api_watch,  # noqa: F401 (its routes join the API's blueprint when imported)
    auth,
    credentials,
    events,
    groups,
    monitoring,
    notification_pages,
    oauth,
    oauth_api,  # noqa: F401 (adds /api/v1/oauth-apps to the API's blueprint)
    secret_versions,
    service_accounts,
    serving,
    tokens,
    users,
    watch,
)

# No inline script or style anywhere (htmx is configured not to need them), so the policy can be strict.
# Pico CSS draws its select arrows and search icon as data: SVG images.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# Behind HTTPS (MAILKEEP_HTTPS=1): browsers come back over HTTPS only, for a year.
STRICT_TRANSPORT_SECURITY = "max-age=31536000"


def create_app(test_config=None):
    """Build the WSGI application.

    `test_config` is a mapping that overrides the defaults and ``MAILKEEP_*``
    environment variables. The instance folder (database, generated keys) is
    ``instance/`` beside this file unless ``INSTANCE_PATH`` in `test_config`
    or ``MAILKEEP_INSTANCE_PATH`` names another. Binds the database and brings
    its schema up to date. Raises config.ConfigurationError when the
    configuration cannot be used (a malformed or missing key, a bad deadline).
    """
    instance_path = (test_config or {}).get("INSTANCE_PATH") or os.environ.get("MAILKEEP_INSTANCE_PATH")
    app = Flask(__name__, instance_path=os.path.abspath(instance_path) if instance_path else None)
    app.request_class = web.Request
    config.configure_logging()
    config.load(app, test_config)
    app.extensions["mailkeep.test_slots"] = slots.make(
        app.config["CONNECTION_TEST_LIMIT"], app.config["REDIS_URL"],
        hold_seconds=app.config["CONNECTION_TEST_DEADLINE"] + 30,
    )
    # Scheduled checks have slots of their own, so they never take those of tests people start.
    app.extensions["mailkeep.check_slots"] = slots.make(
        app.config["CHECK_CONCURRENCY"], app.config["REDIS_URL"],
        hold_seconds=app.config["CONNECTION_TEST_DEADLINE"] + 30, name="scheduled-checks",
    )

    if proxies := app.config["TRUSTED_PROXIES"]:
        # Sign-in limits count per client address; behind a proxy that address is in X-Forwarded-For.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)
    database.bind(app.config["DATABASE_URL"], pool_size=app.config["DATABASE_POOL_SIZE"])
    keyring = app.extensions["mailkeep.keyring"] = keys.load(app)
    migrations.upgrade(keyring)
    keys.check(keyring)
    database.release_connections()  # the workers gunicorn forks from here open their own

    @app.before_request
    def open_database():
        """Take a connection from the pool for this request's thread (peewee connections are per thread).

        When none can be opened, a view marked ``monitoring.answers_without_database`` (/healthz) gets its own
        answer, before the other hooks (sign-in reads the database); any other request fails as before.
        """
        try:
            g.opened_database = database.db.connect(reuse_if_open=True)
        except Exception as error:
            answer = monitoring.answer_without_database(app.view_functions.get(request.endpoint), error)
            if answer is None:
                raise
            return answer
        return None

    @app.teardown_request
    def close_database(exc):
        """Give the connection the request took back to the pool."""
        # Only what this request took; a caller's own connection (a CLI command, a test) stays.
        if g.pop("opened_database", False):
            database.db.close()

    worker.make_huey(app)
    access.init_app(app)
    app.url_map.converters["id"] = web.RowIdConverter  # before the blueprints' routes use it
    for blueprint in (auth.bp, account.bp, credentials.bp, aliases.bp, groups.bp, users.bp, tokens.bp, events.bp,
                      api.bp, secret_versions.bp, service_accounts.bp, serving.bp, watch.bp, notification_pages.bp,
                      monitoring.bp, oauth.apps_bp, oauth.bp):
        app.register_blueprint(blueprint)
    app.add_url_rule("/", "home", access.requires("viewer")(lambda: redirect(url_for("credentials.index"))))
    for command in (cli.credentials_cli, cli.users_cli, cli.keys_cli, cli.checks_cli):
        app.cli.add_command(command)
    app.add_template_filter(ago)
    # What templates compare and word against: the protocol constants and the secrets' rules, never literals.
    app.jinja_env.globals.update(
        protocols=protocols, secret_rules=logins.SECRETS, unreadable_message=logins.UNREADABLE_SECRET,
        is_htmx=web.is_htmx,
    )

    @app.after_request
    def headers(response):
        """Add Vary, Cache-Control and the security headers to every response."""
        # The same URL answers a fragment or a page depending on this header; caches must know.
        response.vary.add("HX-Request")
        response.headers.update(SECURITY_HEADERS)
        if app.config["HTTPS"]:
            response.headers["Strict-Transport-Security"] = STRICT_TRANSPORT_SECURITY
        if request.endpoint != "static":
            # Pages name servers and accounts: keep them out of shared caches and the browser's disk cache.
            response.headers["Cache-Control"] = "no-store"
        return response

    return app


def ago(moment):
    """How long ago a naive UTC datetime was, in words: "just now", "5 min ago", "3 h ago", "2 days ago"."""
    seconds = (models.utcnow() - moment).total_seconds()
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''} ago"
    return "just now"
