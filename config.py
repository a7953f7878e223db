"""Configuration: defaults, ``MAILKEEP_*`` environment variables, and the secret key kept in the instance folder.

Precedence, lowest first: the defaults below, ``MAILKEEP_<NAME>`` environment
variables (read by Flask's ``Config.from_prefixed_env``), then the mapping a
test passes to ``create_app``. The Flask secret key, when not configured, is
generated once into a file in the instance folder (mode 0600) and reused on
every start; the encryption keys are keys.py's.
"""

import ipaddress
import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import probe
import providers
from probe.policy import PolicyError

DEFAULTS = {
    # Seconds a whole connection test may take, from dialling to LOGOUT.
    "CONNECTION_TEST_DEADLINE": 15.0,
    # Seconds a server may take to greet (the TLS handshake included), within the deadline.
    "GREETING_TIMEOUT": 5.0,
    # Connection tests that may run at once in one process; more are told to try again (HTTP 429).
    "CONNECTION_TEST_LIMIT": 8,
    # Where connection tests may go: these ports, at public addresses and in these networks (CIDR, comma-separated).
    "ALLOWED_PORTS": "993,995,143,110",
    "ALLOWED_NETWORKS": "",
    # Flask-Limiter limits: sign-in attempts per address, failed password checks per account (sign-in and the
    # Account page together; a delay that ends with its window, never a lock), connection tests per user and for
    # all users together.
    "LOGIN_RATE_LIMIT": "10 per minute",
    "LOGIN_ACCOUNT_RATE_LIMIT": "5 per minute",
    "TEST_RATE_LIMIT": "30 per minute",
    "TEST_RATE_LIMIT_TOTAL": "120 per minute",
    # Redis shared by every process and instance: sign-in and test limits and test slots are counted there.
    "REDIS_URL": "",
    # Where Flask-Limiter counts: memory counts per process; REDIS_URL (or another shared store) across them.
    "RATELIMIT_STORAGE_URI": "",
    # Connections to the database that one process keeps open at most (playhouse's pool).
    "DATABASE_POOL_SIZE": 20,
    # Reverse proxies in front of Mailkeep whose X-Forwarded-For to believe (Werkzeug's ProxyFix).
    "TRUSTED_PROXIES": 0,
    # A session ends after this many minutes without a request, and this many hours after its sign-in whatever
    # its activity.
    "SESSION_IDLE_MINUTES": 30,
    "SESSION_MAX_HOURS": 12,
    # Set when Mailkeep is served over HTTPS: the session cookie is then sent over HTTPS only, and browsers are
    # told to come back over HTTPS only (HSTS).
    "HTTPS": False,
    # Set to allow credentials without TLS ("None (insecure)"): the password then crosses the network readable.
    "ALLOW_INSECURE": False,
    # Extra PEM file of CA certificates trusted besides the system store.
    "CA_FILE": None,
    "PAGE_SIZE": 20,
    # Where people and providers reach this Mailkeep: links in notifications, OAuth2 redirect URIs.
    "BASE_URL": "http://127.0.0.1:5000",
    # The largest request body accepted (bytes), the most fields a form may send, and the most custom data rows
    # a credential may have; more is refused (413, or a message on the field).
    "MAX_REQUEST_BYTES": 1024 * 1024,
    "MAX_FORM_PARTS": 1000,
    "MAX_CUSTOM_DATA_ROWS": 50,
    # Connection reads one service account may make (Flask-Limiter notation), counted per account.
    "SERVICE_READ_RATE_LIMIT": "60 per minute",
    # Versions of each secret a credential keeps (the current one and the previous one at least).
    "SECRET_VERSIONS_KEPT": 5,
    # Seconds a replaced secret stays readable by service accounts (?version=previous) unless a change says.
    "SECRET_GRACE_SECONDS": 86400,
    # Scheduled checks (health.py, checks.py, worker.py): seconds between two checks of a credential (0: no
    # scheduled checks; at least 5), checks at once across the workers, failures in a row of a cause that may
    # pass before a credential counts as failing, days of check history kept, the days before a certificate's
    # or client secret's expiry to warn at, and hours between reminders while a credential stays failing (0: none).
    "CHECK_INTERVAL": 900,
    "CHECK_CONCURRENCY": 4,
    "CHECK_FAILURES_BEFORE_ALERT": 3,
    "CHECK_RETENTION_DAYS": 90,
    "EXPIRY_WARNING_DAYS": "21,7",
    "CHECK_REMINDER_HOURS": 24,
    # Networks (CIDR, comma-separated) that may read /metrics without an API token.
    "METRICS_NETWORKS": "",
    # Seconds a webhook target or the SMTP relay may take to answer one delivery attempt.
    "NOTIFICATION_TIMEOUT": 10.0,
    # OAuth2 sign-in's keep-alive refreshes a refresh token this many days before its provider's inactivity
    # limit would end it (Microsoft's is 90 days unused).
    "OAUTH_KEEPALIVE_MARGIN_DAYS": 14,
    # Minutes a sign-in may take at the provider, from leaving Mailkeep to coming back.
    "OAUTH_SIGN_IN_MINUTES": 15,
}

SECRET_KEY_FILE = "secret_key"
# What connection-test hints call the settings they point at: the names an operator sets.
SETTING_NAMES = probe.SettingNames(
    ca_file="MAILKEEP_CA_FILE", allowed_networks="MAILKEEP_ALLOWED_NETWORKS", allowed_ports="MAILKEEP_ALLOWED_PORTS",
    allow_insecure="MAILKEEP_ALLOW_INSECURE",
)

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The handler configure_logging adds, by name, so the command line can quieten it.
CONSOLE_HANDLER = "mailkeep.console"
# At INFO, the HTTP client logs every request with its full URL (an OAuth2 token endpoint's query included).
# Its loggers are "httpx"/"httpcore", and "httpx2"/"httpcore2" in the fork Mailkeep installs.
QUIET_LOGGERS = ("httpx", "httpcore", "httpx2", "httpcore2")


def configure_logging():
    """Log INFO and above to standard error, unless logging is configured already (by a test runner, or a
    server's own logging configuration); the HTTP client's loggers only from WARNING, wherever they go."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.set_name(CONSOLE_HANDLER)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def console_level(level):
    """Print only records at `level` (a logging level) and above on standard error, through the handler
    ``configure_logging`` added; other handlers (a test's, a server's) keep theirs."""
    for handler in logging.getLogger().handlers:
        if handler.get_name() == CONSOLE_HANDLER:
            handler.setLevel(level)


class ConfigurationError(RuntimeError):
    """The configuration cannot be used; the message says what to fix."""


def load(app, test_config=None):
    """Fill ``app.config``.

    Also puts the outbound-connection policy (a probe.Policy) into
    ``app.extensions["mailkeep.policy"]``. Raises ConfigurationError when a
    value cannot be used: a malformed key, a deadline that is not a positive
    number of seconds, an unreadable CA file, a bad port or network list.
    """
    instance = Path(app.instance_path)
    if not instance.exists():
        # It holds the database and the keys: for Mailkeep's user alone.
        instance.mkdir(parents=True)
        instance.chmod(0o700)
    app.config.from_mapping(DEFAULTS, DATABASE_URL=f"sqlite:///{instance / 'mailkeep.db'}")
    app.config.from_prefixed_env("MAILKEEP")
    if test_config:
        app.config.from_mapping(test_config)

    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = read_or_create(instance / SECRET_KEY_FILE, secrets.token_hex)
    # from_prefixed_env parses values as JSON, so a numeric key would arrive as a number.
    app.config["SECRET_KEY"] = str(app.config["SECRET_KEY"])
    _positive(app, "CONNECTION_TEST_DEADLINE", float, "a positive number of seconds")
    _positive(app, "GREETING_TIMEOUT", float, "a positive number of seconds")
    app.config["GREETING_TIMEOUT"] = min(app.config["GREETING_TIMEOUT"], app.config["CONNECTION_TEST_DEADLINE"])
    _positive(app, "CONNECTION_TEST_LIMIT", int, "a positive whole number")
    _positive(app, "PAGE_SIZE", int, "a positive whole number")
    app.config["BASE_URL"] = _base_url(str(app.config["BASE_URL"]))
    _positive(app, "DATABASE_POOL_SIZE", int, "a positive whole number")
    _shared_counters(app)
    _positive(app, "SESSION_IDLE_MINUTES", float, "a positive number of minutes")
    _positive(app, "SESSION_MAX_HOURS", float, "a positive number of hours")
    _positive(app, "MAX_REQUEST_BYTES", int, "a positive whole number of bytes")
    _positive(app, "MAX_FORM_PARTS", int, "a positive whole number")
    _positive(app, "MAX_CUSTOM_DATA_ROWS", int, "a positive whole number")
    _positive(app, "SECRET_VERSIONS_KEPT", int, "a whole number of at least 2 (the current and the previous one)")
    if app.config["SECRET_VERSIONS_KEPT"] < 2:
        raise ConfigurationError("MAILKEEP_SECRET_VERSIONS_KEPT must be a whole number of at least 2 (the current and "
                                 "the previous one)")
    _at_least_zero(app, "SECRET_GRACE_SECONDS", "a whole number of seconds, 0 or more (at most 30 days)",
                   MAX_GRACE_SECONDS)
    _watching(app)
    _positive(app, "OAUTH_KEEPALIVE_MARGIN_DAYS", int, "a positive whole number of days")
    _positive(app, "OAUTH_SIGN_IN_MINUTES", int, "a positive whole number of minutes")
    if not str(app.config["TRUSTED_PROXIES"]).isdigit():
        raise ConfigurationError("MAILKEEP_TRUSTED_PROXIES must be a whole number (0 when no proxy is in front)")
    app.config["TRUSTED_PROXIES"] = int(app.config["TRUSTED_PROXIES"])
    app.config.update(
        # Flask's limits: the whole body (JSON included), and each multipart text part; MAX_FORM_PARTS is Flask's own.
        MAX_CONTENT_LENGTH=app.config["MAX_REQUEST_BYTES"],
        MAX_FORM_MEMORY_SIZE=app.config["MAX_REQUEST_BYTES"],
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=app.config["SESSION_IDLE_MINUTES"]),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        HTTPS=_flag(app.config["HTTPS"]),
        SESSION_COOKIE_SECURE=_flag(app.config["HTTPS"]),
        # A CSRF token lives as long as the session, so a form left open still saves while signed in.
        WTF_CSRF_TIME_LIMIT=None,
    )
    if app.config["CA_FILE"] and not os.access(app.config["CA_FILE"], os.R_OK):
        raise ConfigurationError(f"MAILKEEP_CA_FILE: cannot read {app.config['CA_FILE']}")
    try:
        policy = app.extensions["mailkeep.policy"] = probe.Policy.parse(
            app.config["ALLOWED_PORTS"], app.config["ALLOWED_NETWORKS"], plaintext=_flag(app.config["ALLOW_INSECURE"])
        )
    except PolicyError as error:
        raise ConfigurationError(f"MAILKEEP_ALLOWED_PORTS or MAILKEEP_ALLOWED_NETWORKS: {error}") from None
    app.extensions["mailkeep.prober"] = probe.Prober(
        deadline=app.config["CONNECTION_TEST_DEADLINE"], greeting_timeout=app.config["GREETING_TIMEOUT"],
        ca_file=app.config["CA_FILE"], policy=policy, advice=providers.advice, setting_names=SETTING_NAMES,
    )


# The shortest scheduled-check interval (seconds): for tests and demos.
MINIMUM_CHECK_INTERVAL = 5


def _watching(app):
    """Check and convert the scheduled checks' and notifications' settings (see DEFAULTS); ConfigurationError
    names the one that cannot be used."""
    try:
        interval = int(app.config["CHECK_INTERVAL"])
        if interval != 0 and interval < MINIMUM_CHECK_INTERVAL:
            raise ValueError(interval)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"MAILKEEP_CHECK_INTERVAL must be a whole number of seconds, at least {MINIMUM_CHECK_INTERVAL} "
            "(0 turns scheduled checks off)") from None
    app.config["CHECK_INTERVAL"] = interval
    _positive(app, "CHECK_CONCURRENCY", int, "a positive whole number")
    _positive(app, "CHECK_FAILURES_BEFORE_ALERT", int, "a positive whole number")
    _positive(app, "CHECK_RETENTION_DAYS", int, "a positive whole number of days")
    _positive(app, "NOTIFICATION_TIMEOUT", float, "a positive number of seconds")
    try:
        reminder = float(app.config["CHECK_REMINDER_HOURS"])
        if reminder < 0:
            raise ValueError(reminder)
    except (TypeError, ValueError):
        raise ConfigurationError("MAILKEEP_CHECK_REMINDER_HOURS must be a number of hours (0: no reminders)") from None
    app.config["CHECK_REMINDER_HOURS"] = reminder
    try:
        days = sorted({int(part) for part in str(app.config["EXPIRY_WARNING_DAYS"]).split(",") if part.strip()},
                      reverse=True)
        if not days or days[-1] <= 0:
            raise ValueError(days)
    except ValueError:
        raise ConfigurationError("MAILKEEP_EXPIRY_WARNING_DAYS must be positive whole numbers of days, "
                                 "comma-separated (e.g. 21,7)") from None
    app.config["EXPIRY_WARNING_DAYS"] = tuple(days)
    try:
        app.config["METRICS_NETWORKS"] = tuple(
            ipaddress.ip_network(part.strip()) for part in str(app.config["METRICS_NETWORKS"] or "").split(",")
            if part.strip())
    except ValueError as error:
        raise ConfigurationError(f"MAILKEEP_METRICS_NETWORKS: {error}") from None


def _shared_counters(app):
    """Count Flask-Limiter's limits in Redis when REDIS_URL is set (unless another store is configured), and
    keep limiting per process, never failing a request, while Redis cannot be reached."""
    redis_url = str(app.config["REDIS_URL"] or "")
    app.config["REDIS_URL"] = redis_url
    if not app.config["RATELIMIT_STORAGE_URI"]:
        app.config["RATELIMIT_STORAGE_URI"] = redis_url or "memory://"
    if not app.config["RATELIMIT_STORAGE_URI"].startswith("memory"):
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_timeout": 0.5, "socket_connect_timeout": 0.5})
        app.config.update(RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True, RATELIMIT_SWALLOW_ERRORS=True)


def _base_url(text):
    """MAILKEEP_BASE_URL without its trailing slash; ConfigurationError unless it is an http(s) URL with a host
    (and https unless the host is loopback: OAuth2 providers require it)."""
    parts = urlsplit(text.strip())
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme not in ("http", "https") or not parts.hostname or (parts.scheme == "http" and not loopback) \
            or parts.query or parts.fragment:
        raise ConfigurationError(
            "MAILKEEP_BASE_URL must be the https:// address people reach Mailkeep at, e.g. "
            "https://mailkeep.example.com (http:// only for localhost)"
        )
    return text.strip().rstrip("/")


# The longest grace period a replaced secret may have (seconds): 30 days.
MAX_GRACE_SECONDS = 30 * 86400


def _at_least_zero(app, name, description, most):
    """Coerce ``app.config[name]`` to a whole number from 0 to `most`."""
    try:
        value = int(app.config[name])
        if not 0 <= value <= most:
            raise ValueError(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"MAILKEEP_{name} must be {description}") from None
    app.config[name] = value


def _flag(value):
    """A yes/no setting: true for True, 1, "1", "true", "yes" (environment variables arrive as text or JSON)."""
    return value is True or str(value).strip().lower() in ("1", "true", "yes")


def _positive(app, name, kind, description):
    """Coerce ``app.config[name]`` to `kind` and insist it is above zero."""
    try:
        value = kind(app.config[name])
        if value <= 0:
            raise ValueError(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"MAILKEEP_{name} must be {description}") from None
    app.config[name] = value


def read_or_create(path, generate, announce=None):
    """Return the stripped text of `path`, first writing ``generate()`` to it (mode 0600) if absent.

    The value is written to a private temporary file and hard-linked into place,
    which fails if the file appeared meanwhile, so when several workers start at
    once exactly one value is kept and none of them reads a half-written file.
    `announce`, when given, is logged (with ``{path}`` filled in) by the one
    process that made the file. Raises ConfigurationError when the file is empty.
    """
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(generate() + "\n")
        try:
            os.link(temporary, path)
            if announce:
                log.info(announce.format(path=path))
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    text = path.read_text().strip()
    if not text:
        raise ConfigurationError(f"{path} is empty; restore it from your backup")
    return text
