"""Secrets typed into a form that comes back to the browser (a failed save, Add row or a test without
JavaScript, the "type the password to test with" prompt): kept as drafts, never as plaintext in the page.

A draft is the typed secret encrypted with the application's key ring (keys.ring()), bound to this session,
to the form it was typed into (a credential's id, or "new") and to the secret's name, and readable for
DRAFT_MAX_AGE_SECONDS. It travels in a hidden field; logins.LoginSecrets takes it as the typed secret, so
the form asks for a secret once and says it kept it. Signing out (or any new session) ends every draft.
"""

import secrets
import time

from flask import session

import keys
from encryption import UndecryptableSecret

DRAFT_MAX_AGE_SECONDS = 30 * 60
SESSION_KEY = "draft_key"


def seal(plaintext, form_key, name):
    """A draft of the secret `name` typed into the form `form_key`, as text for a hidden field."""
    issued = int(time.time())
    return f"{issued}.{keys.ring().encrypt(plaintext, _context(form_key, name, issued))}"


def unseal(draft, form_key, name):
    """The secret a draft of `name` for the form `form_key` keeps, or "" when there is no draft, or it
    belongs to another session, form or secret, was altered, or is older than DRAFT_MAX_AGE_SECONDS."""
    issued, _, ciphertext = (draft or "").partition(".")
    if not issued.isdigit() or not 0 <= time.time() - int(issued) <= DRAFT_MAX_AGE_SECONDS:
        return ""
    if SESSION_KEY not in session:  # this session made no draft (a new session, the API): none can be its
        return ""
    try:
        return keys.ring().decrypt(ciphertext, _context(form_key, name, int(issued)))
    except UndecryptableSecret:
        return ""


def _context(form_key, name, issued):
    """What a draft is bound to: this session's random draft key (made by the first ``seal``), the form,
    the secret and the moment it was made."""
    if SESSION_KEY not in session:
        session[SESSION_KEY] = secrets.token_hex(16)
    return f"draft:{session[SESSION_KEY]}:{form_key}:{name}:{issued}"
