"""What a connection test takes and returns: settings in; steps in order and, on failure, the cause out."""

from dataclasses import asdict, dataclass, field
from datetime import datetime

from . import protocols

OK = "ok"
FAILED = "failed"
SKIPPED = "skipped"

REPLY_LENGTH = 300


@dataclass(frozen=True)
class Settings:
    """Everything a connection test needs. Secrets (`password`, `client_secret`, `refresh_token`) never
    appear in ``repr``.

    `port` is a TCP port (1-65535), `security` a key of ``protocols.SECURITY_LABELS``,
    `auth` a key of ``protocols.AUTHENTICATION_LABELS``. For OAuth2, `token_url`
    is the token endpoint and `scope` may be empty: the client-credentials grant
    takes `client_id` and `client_secret`; OAuth2 sign-in takes those of the
    OAuth app the person signed in with, and their `refresh_token` (RFC 6749
    section 6), with `scope` the scopes the access token is asked for.
    """

    protocol: str
    host: str
    port: int
    security: str
    username: str
    password: str = field(default="", repr=False)
    folder: str = "INBOX"
    auth: str = protocols.PASSWORD
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    token_url: str = ""
    scope: str = ""
    refresh_token: str = field(default="", repr=False)

    SECRET_FIELDS = ("password", "client_secret", "refresh_token")

    def public(self):
        """The settings without their secrets, as a dict."""
        return {name: value for name, value in asdict(self).items() if name not in self.SECRET_FIELDS}


@dataclass
class Step:
    """One step of the test: `name` is a stable code (``"tls"``), `title` what users read.

    `duration_ms` is wall-clock milliseconds; `details` one line of what was seen.
    """

    name: str
    title: str
    outcome: str = SKIPPED
    duration_ms: int = 0
    details: str = ""


@dataclass(frozen=True)
class Cause:
    """Why a test failed.

    `code` is stable (``"auth_failed"``), `field` the settings field to fix
    (``"password"``) or None, `message` and `hint` plain sentences, and
    `server_reply` the server's own words as plain text (templates escape it),
    at most ``REPLY_LENGTH`` characters, with the secrets of the test redacted.
    `detail` narrows a code where what to do depends on it, as a short stable
    word: for ``token_request_failed`` the endpoint's OAuth2 error code (RFC 6749
    section 5.2, e.g. ``invalid_client``), ``http_<status>``, ``timeout`` or
    ``unreachable``; else "".
    """

    code: str
    field: str | None
    message: str
    hint: str
    server_reply: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Certificate:
    """The certificate the server presented when TLS was used (implicit TLS or STARTTLS), once verified.

    `subject` and `issuer` are display names (the common name, else the
    organisation, as in RFC 5280's subject and issuer fields); `not_after` is
    the end of its validity as a timezone-aware datetime in UTC.
    """

    subject: str
    issuer: str
    not_after: datetime

    def as_dict(self):
        """The certificate as JSON-ready data, `not_after` as ISO 8601 text (``2026-01-31T12:00:00+00:00``)."""
        return {"subject": self.subject, "issuer": self.issuer, "not_after": self.not_after.isoformat()}

    @classmethod
    def from_dict(cls, data):
        """The certificate ``as_dict`` wrote as `data`. Raises KeyError or ValueError for anything else."""
        return cls(data["subject"], data["issuer"], datetime.fromisoformat(data["not_after"]))


@dataclass(frozen=True)
class Grant:
    """What a token endpoint granted (RFC 6749 section 5.1): kept in memory, never shown, logged or stored
    by probe.

    `access_token` is the bearer token; `expires_at` when it expires (a
    timezone-aware UTC datetime) or None when the endpoint did not say;
    `refresh_token` the refresh token to use next time: a new one when the
    endpoint rotated it, else the one used (RFC 6749 section 6), "" for grants
    without one (client credentials); `rotated` True when the endpoint sent a
    new one. `scope` is the granted scope (the endpoint's ``scope``, else what
    was asked for), `id_token` the OpenID Connect ID Token of an
    authorization-code grant, "" otherwise.
    """

    access_token: str = field(repr=False)
    expires_at: datetime | None = None
    refresh_token: str = field(default="", repr=False)
    rotated: bool = False
    scope: str = ""
    id_token: str = field(default="", repr=False)

    @property
    def secrets(self):
        """The secrets this grant holds (for redaction)."""
        return (self.access_token, self.refresh_token, self.id_token)


@dataclass
class TokenResult:
    """The outcome of asking a token endpoint alone (``Prober.token``), without a mail server.

    `steps` holds the one token step, `elapsed_ms` its wall-clock
    milliseconds, `cause` why it failed (None when it worked) and `grant` what
    was granted (a Grant, None on failure; never in ``as_dict``).
    """

    steps: list
    elapsed_ms: int
    cause: Cause | None = None
    grant: Grant | None = field(default=None, repr=False)

    @property
    def ok(self):
        """True when a token was granted."""
        return self.cause is None

    @property
    def summary(self):
        """One line for lists and logs, e.g. ``"Access token received (120 ms)."``."""
        if self.ok:
            return f"Access token received ({self.elapsed_ms} ms)."
        return f"{self.steps[0].title} failed: {self.cause.message}"

    def as_dict(self):
        """The outcome as JSON-ready data: no token of any kind."""
        return {"ok": self.ok, "summary": self.summary, "elapsed_ms": self.elapsed_ms,
                "steps": [asdict(step) for step in self.steps], "cause": asdict(self.cause) if self.cause else None}


@dataclass
class Result:
    """The outcome of one connection test.

    `steps` are in the order they run (later ones ``skipped`` after a failure),
    `elapsed_ms` is wall-clock milliseconds; on success `message_count` is the
    folder's message count and `folders` the server's folder names (IMAP ``LIST``,
    only when asked for; empty for POP3, which has one mailbox). `certificate`
    is the server's Certificate when TLS was used, else None (also when the
    handshake failed). `grant` is what the token endpoint granted for a login with a token (a Grant, kept
    in memory only and never in ``as_dict``: its refresh token is the one to store after the test), else None.
    """

    settings: Settings
    steps: list
    elapsed_ms: int
    cause: Cause | None = None
    message_count: int | None = None
    folders: list = field(default_factory=list)
    certificate: Certificate | None = None
    grant: Grant | None = field(default=None, repr=False)

    @property
    def ok(self):
        """True when every step passed."""
        return self.cause is None

    @property
    def failed_step(self):
        """The Step that failed, or None."""
        return next((step for step in self.steps if step.outcome == FAILED), None)

    @property
    def took(self):
        """The elapsed time in words: ``"35 ms"`` under a second, else ``"2.4 s"``."""
        return f"{self.elapsed_ms} ms" if self.elapsed_ms < 1000 else f"{self.elapsed_ms / 1000:.1f} s"

    @property
    def summary(self):
        """One line for lists and logs, e.g. ``"Log in failed: The server rejected ..."``."""
        if self.ok:
            return f"Connected; {self.settings.folder} holds {self.message_count} messages ({self.took})."
        step = self.failed_step
        where = f"{step.title} failed: " if step else ""
        return f"{where}{self.cause.message}"

    def as_dict(self):
        """The result as JSON-ready data; the settings come without their secrets."""
        return {
            "ok": self.ok,
            "summary": self.summary,
            "elapsed_ms": self.elapsed_ms,
            "message_count": self.message_count,
            "folders": self.folders,
            "settings": self.settings.public(),
            "steps": [asdict(step) for step in self.steps],
            "failed_step": self.failed_step.name if self.failed_step else None,
            "cause": asdict(self.cause) if self.cause else None,
            "certificate": self.certificate.as_dict() if self.certificate else None,
        }
