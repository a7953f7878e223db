"""Values the tests share, and the check that the shared secret never leaks."""

# The one secret the suite uses everywhere: the test mailbox's password, and so what the credentials
# store. After every test it must not appear in a response body, a log record or the database files.
CANARY = "canary-7f3c9e2b-do-not-leak"
MAILBOX_USER = "alice@example.test"


def canary_leaks(bodies, log_text, folder):
    """Where the canary shows: a list of places (response bodies, the log, database files in `folder`)."""
    leaks = [f"response {body[:120]!r}" for body in bodies if CANARY.encode() in body]
    if CANARY in log_text:
        leaks.append("the log")
    leaks += [path.name for path in folder.glob("*.db*") if CANARY.encode() in path.read_bytes()]
    return leaks
