"""Which secret a login needs, what it is called, and when a stored one may serve the values on screen.

The one owner of the rule "a stored secret stays bound to the login it was typed
for": change the server or the login (for OAuth2 also the client or the token
endpoint) and the stored secret must be typed again, so it is never sent
somewhere the person who typed it did not choose. Forms, views, templates, the
API, the CLI and the browser script (through ``client_rules()``) all ask here.

OAuth2 sign-in's secret, the refresh token, is not typed: a sign-in puts it
there (services/oauth_sign_in.py), and a new sign-in replaces it. It stays
bound to the server it was signed in for (a change of protocol, host, port or
security forgets it), but not to the username, which may be a shared mailbox
the signed-in account may read. A credential may be saved before anyone signs
in: the sign-in comes after the save.
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import probe
from probe import protocols

# The fields of a connection test's settings (probe.Settings) that are not secrets, in its order.
CONNECTION_FIELDS = tuple(
    field.name for field in dataclasses.fields(probe.Settings) if field.name not in probe.Settings.SECRET_FIELDS
)
SERVER_FIELDS = ("protocol", "host", "port", "security", "username")


@dataclass(frozen=True)
class SecretRule:
    """One kind of secret: its `name` (a probe.Settings field), the `label` people read, and the fields
    (`bound_to`) whose stored values it was typed for.

    `typed` says whether people type it into the form (a sign-in's refresh
    token is not: a sign-in stores it); `needed_to_save` whether a credential
    may be saved without it. `enter` and `enter_again` say what to do when it
    is missing: none stored, or the stored one no longer serves.
    """

    name: str
    label: str
    bound_to: tuple
    typed: bool = True
    needed_to_save: bool = True
    enter: str = ""
    enter_again: str = ""

    @property
    def noun(self):
        """The label inside a sentence: "password", "client secret"."""
        return self.label.lower()


@dataclass(frozen=True)
class LoginRule:
    """One way to log in (a key of ``protocols.AUTHENTICATION_LABELS``): the secret it needs and the other
    fields it needs filled in."""

    auth: str
    secret: SecretRule
    needs: tuple = ()


PASSWORD = SecretRule("password", "Password", SERVER_FIELDS)
CLIENT_SECRET = SecretRule("client_secret", "Client secret", SERVER_FIELDS + ("client_id", "token_url"))
REFRESH_TOKEN = SecretRule(
    "refresh_token", "Refresh token", ("protocol", "host", "port", "security"), typed=False, needed_to_save=False,
    enter="Sign in first: press a Sign in button (it saves the form, then opens the provider's sign-in page).",
    enter_again="The server changed since the sign-in: sign in again for it.",
)
SECRETS = {rule.name: rule for rule in (PASSWORD, CLIENT_SECRET, REFRESH_TOKEN)}
# The secrets people type into the form (each has a field and a draft there).
TYPED_SECRETS = tuple(name for name, rule in SECRETS.items() if rule.typed)
LOGINS = {
    protocols.PASSWORD: LoginRule(protocols.PASSWORD, PASSWORD),
    protocols.OAUTH2: LoginRule(protocols.OAUTH2, CLIENT_SECRET, needs=("client_id", "token_url")),
    protocols.OAUTH2_SIGN_IN: LoginRule(protocols.OAUTH2_SIGN_IN, REFRESH_TOKEN),
}

UNREADABLE_SECRET = "This secret cannot be read with the current keys; set it again."


def login_for(auth):
    """The LoginRule of `auth`; an unknown value counts as a password login (forms refuse it first)."""
    return LOGINS.get(auth, LOGINS[protocols.PASSWORD])


def settings_for(values, secrets):
    """The probe.Settings of connection `values` (a mapping holding at least ``CONNECTION_FIELDS``) and
    `secrets` ({secret name: plaintext}; missing ones are empty)."""
    return probe.Settings(**{name: values[name] for name in CONNECTION_FIELDS}, **secrets)


def binding(saved, name):
    """What the secret `name` is bound to in `saved` (a credential, or anything with the connection fields
    as attributes): a SHA-256 hex digest of the values of its ``bound_to`` fields. Equal digests mean the
    same server and login, so a secret kept for one (an older version of it) may serve the other."""
    values = {field: getattr(saved, field) for field in SECRETS[name].bound_to}
    return hashlib.sha256(json.dumps([name, values], sort_keys=True).encode()).hexdigest()


def client_rules():
    """The rule as data for the browser script: which secret each login needs, which other fields it
    needs, and the secrets' labels ({"logins": {auth: {"secret", "needs"}}, "labels": {name: label}})."""
    return {
        "logins": {auth: {"secret": rule.secret.name, "needs": list(rule.needs)} for auth, rule in LOGINS.items()},
        "labels": {name: rule.label for name, rule in SECRETS.items()},
    }


class LoginSecrets:
    """The secrets of one login as it stands on screen.

    `saved` is the saved credential being edited or tested (anything with the
    connection fields as attributes and ``stored_secrets``, ``unseal``), or None
    when adding; `values` the connection values on screen (a mapping with the
    ``bound_to`` fields and ``auth``); `typed` the secrets typed with them
    ({name: text}, "" or absent when not typed); `kept` the secrets typed
    earlier into the same form and kept since as drafts (drafts.py). A kept
    secret counts as typed unless it is typed again, or its stored one serves
    these values (then the draft was for another login, and is let go).
    """

    def __init__(self, saved, values, typed=None, kept=None):
        self.saved = saved
        self.values = values
        reusable = self.reusable
        self.typed = {
            name: (typed or {}).get(name) or ("" if name in reusable else (kept or {}).get(name) or "")
            if SECRETS[name].typed else "" for name in SECRETS
        }

    @property
    def needed(self):
        """The SecretRule of the secret the chosen login needs."""
        return login_for(self.values.get("auth")).secret

    @property
    def reusable(self):
        """The names of the saved credential's stored secrets that may serve these values: those whose
        ``bound_to`` fields are unchanged."""
        if self.saved is None:
            return []
        return [
            name for name in self.saved.stored_secrets
            if all(getattr(self.saved, field) == self.values.get(field) for field in SECRETS[name].bound_to)
        ]

    @property
    def stored(self):
        """True when the saved credential has the needed secret stored (reusable here or not)."""
        return self.saved is not None and self.needed.name in self.saved.stored_secrets

    def missing(self):
        """Why the needed secret is missing (a sentence), or None when it was typed or a stored one serves."""
        needed = self.needed
        if self.typed[needed.name] or needed.name in self.reusable:
            return None
        if self.stored:
            return needed.enter_again or f"The server or login changed: type the {needed.noun} again for it."
        return needed.enter or f"Enter the {needed.noun}."

    def missing_for_save(self):
        """Why the entry may not be saved as it is for want of its secret (``missing``), or None: a login
        whose secret comes after the save (a sign-in) may be saved without it."""
        return self.missing() if self.needed.needed_to_save else None

    def typed_over_stored(self):
        """{name: message} for secrets typed although their stored one still serves: those change only
        through their own step (the change dialog, or the API's secret route), never by a save."""
        return {
            name: f"The stored {SECRETS[name].noun} changes through its own step (Change {SECRETS[name].noun}), "
                  "not with the other fields."
            for name in self.reusable if self.typed[name]
        }

    def changes(self):
        """What saving does to the secrets: {name: new plaintext, or None to forget the stored one}.

        A typed secret is stored (unless its stored one still serves, see
        ``typed_over_stored``); a stored secret whose login changed and that was
        not typed again is forgotten.
        """
        reusable = self.reusable
        changes = {name: text for name, text in self.typed.items() if text and name not in reusable}
        for name in self.saved.stored_secrets if self.saved is not None else ():
            if name not in reusable and name not in changes:
                changes[name] = None
        return changes

    def for_test(self, keyring):
        """{name: plaintext} of the needed secret to test these values with: the typed one, else the
        stored one where it serves, else {} (ask for it: see ``missing``).

        Raises encryption.UndecryptableSecret when the stored one cannot be read.
        """
        name = self.needed.name
        if self.typed[name]:
            return {name: self.typed[name]}
        if name in self.reusable:
            return {name: self.saved.unseal(keyring, name)}
        return {}
