"""What a connection test returns: its steps in order, and on failure the cause."""

from dataclasses import dataclass, field

OK = "ok"
FAILED = "failed"
SKIPPED = "skipped"


@dataclass(frozen=True)
class Settings:
    """Everything a connection test needs; `password` never appears in ``repr``.

    `port` is a TCP port (1-65535), `security` one of ``protocols.SECURITY_LABELS``.
    """

    protocol: str
    host: str
    port: int
    security: str
    username: str
    password: str = field(repr=False)
    folder: str = "INBOX"


@dataclass
class Step:
    """One step of the test: `name` is a stable code (``"tls"``), `title` what users read."""

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
    """

    code: str
    field: str | None
    message: str
    hint: str
    server_reply: str = ""


REPLY_LENGTH = 300


@dataclass
class Result:
    """The outcome of one connection test.

    `steps` are in the order they run (later ones ``skipped`` after a failure),
    `elapsed_ms` is wall-clock milliseconds, `message_count` the folder's
    message count on success.
    """

    settings: Settings
    steps: list
    elapsed_ms: int
    cause: Cause | None = None
    message_count: int | None = None

    @property
    def ok(self):
        return self.cause is None

    @property
    def failed_step(self):
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
