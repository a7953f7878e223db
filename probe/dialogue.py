"""The protocol part of a connection test, the same shape for IMAP and POP3.

A protocol module provides ``STARTTLS_TITLE``, ``COUNT_STEP`` (name, title)
and a ``Session(attempt)`` with ``greet``, ``starttls``, ``mechanism``,
``authenticate``, ``count``, ``logout`` and ``close``. Each step method but
``authenticate`` returns its one-line details (``mechanism`` says how the
login will go, so a failed login still shows it; ``count`` returns the message
count and folder names too); any of them raises Failure to end the test.
"""

from . import imap, pop3, protocols

MODULES = {protocols.IMAP: imap, protocols.POP3: pop3}


def plan(protocol, security):
    """The steps after the connection (and implicit TLS) is up, as (name, title) pairs."""
    module = MODULES[protocol]
    steps = [("greeting", "Greeting")]
    if security == protocols.STARTTLS:
        steps.append(("starttls", module.STARTTLS_TITLE))
    return steps + [("authenticate", "Log in"), module.COUNT_STEP, ("logout", "Log out")]


def converse(attempt):
    """Run the protocol's steps on ``attempt.sock``; return (message count, folder names)."""
    settings = attempt.settings
    module = MODULES[settings.protocol]
    session = module.Session(attempt)
    try:
        with attempt.step("greeting") as step:
            step.details = session.greet()
        if settings.security == protocols.STARTTLS:
            with attempt.step("starttls") as step:
                step.details = session.starttls()
        with attempt.step("authenticate") as step:
            step.details = session.mechanism()
            session.authenticate()
        with attempt.step(module.COUNT_STEP[0]) as step:
            count, folders, step.details = session.count()
        with attempt.step("logout") as step:
            step.details = session.logout()
        return count, folders
    finally:
        session.close()
