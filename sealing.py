"""Secrets kept in table columns, sealed (encrypted and bound) to their row and name.

A model that keeps secrets declares one ``SecretField`` per secret and mixes in
``Sealed``; it needs a random ``uid`` column. Each ciphertext is made by
``encryption.KeyRing`` with the associated data ``<table>:<id>:<uid>:<secret
name>``, so a ciphertext copied to another row, table or field does not open
there, and neither does one left behind by a deleted row whose id a new row got.
"""

from peewee import TextField

from encryption import TOKEN_VERSION, UndecryptableSecret, key_id


class SecretField(TextField):
    """A column holding one secret as a ciphertext (``encryption.KeyRing`` text), or NULL when none is stored.

    `secret` is the secret's name (``"password"``; its label and rules live in
    logins.py); the column itself is called ``<secret>_ciphertext``.
    """

    def __init__(self, secret, **kwargs):
        super().__init__(null=True, column_name=f"{secret}_ciphertext", **kwargs)
        self.secret = secret


class Sealed:
    """Mixin for a model with ``SecretField`` columns and a ``uid``: seal, unseal and re-seal its secrets."""

    @classmethod
    def secret_fields(cls):
        """{secret name: SecretField}, in declaration order."""
        return {field.secret: field for field in cls._meta.sorted_fields if isinstance(field, SecretField)}

    @classmethod
    def keys_missing_from(cls, keyring):
        """The fingerprints (a set) of keys that made stored ciphertexts of this model and that `keyring` lacks.

        Reads each ciphertext's key id (encryption.key_id); a malformed ciphertext
        names no key and is left to its entry's "cannot be read" notice.
        """
        named = set()
        for column in cls.secret_fields().values():
            # Only ciphertexts no configured key made are read: normally none, however many rows there are.
            made_elsewhere = [~column.startswith(f"{TOKEN_VERSION}${fingerprint}$")
                              for fingerprint in keyring.fingerprints]
            query = cls.select(column).where(column.is_null(False), *made_elsewhere).tuples()
            named.update(key_id(token) for (token,) in query)
        return named - set(keyring.fingerprints) - {None}

    def seal_context(self, name):
        """The associated data that binds the secret `name` to this row: ``<table>:<id>:<uid>:<name>``."""
        return f"{self._meta.table_name}:{self.id}:{self.uid}:{name}"

    def _field(self, name):
        return self.secret_fields()[name]

    def ciphertext(self, name):
        """The stored ciphertext of the secret `name`, or None.

        Raises LookupError for a row listed without its ciphertexts (a list query's
        row), which can say whether a secret is set but not what it is.
        """
        column = self._field(name).name
        if column not in self.__data__ and hasattr(self, f"{name}_set"):
            raise LookupError(f"this {self._meta.table_name} was listed without its secrets; fetch the row itself")
        return getattr(self, column)

    def seal(self, keyring, name, plaintext):
        """Encrypt `plaintext` as the secret `name` of this row (None forgets it); saved by ``save()``.

        Needs ``self.id``: a new row is inserted before its secrets are sealed.
        """
        sealed = None if plaintext is None else keyring.encrypt(plaintext, self.seal_context(name))
        setattr(self, self._field(name).name, sealed)

    def unseal(self, keyring, name, sealed_for=None):
        """The plaintext of the stored secret `name`, or "" when none is stored.

        `sealed_for` is the associated data the ciphertext was made with, when it
        is not this row's own (an upgrade re-binding old ciphertexts). Raises
        encryption.UndecryptableSecret when it cannot be read.
        """
        token = self.ciphertext(name)
        return "" if token is None else keyring.decrypt(token, sealed_for or self.seal_context(name))

    def has_secret(self, name):
        """True when the secret `name` is stored.

        A row listed without its ciphertexts (a list query selects ``<name>_set``
        booleans instead) answers from that column.
        """
        column = self._field(name).name
        if column in self.__data__:
            return self.__data__[column] is not None
        return bool(getattr(self, f"{name}_set", False))

    @property
    def stored_secrets(self):
        """The names of the secrets this row has stored, in declaration order."""
        return [name for name in self.secret_fields() if self.has_secret(name)]

    def unreadable_secrets(self, keyring):
        """The names of stored secrets `keyring` cannot decrypt (another key, altered, or copied from
        another row); the secrets themselves are not kept."""
        unreadable = []
        for name in self.stored_secrets:
            try:
                self.unseal(keyring, name)
            except UndecryptableSecret:
                unreadable.append(name)
        return unreadable

    def reseal(self, keyring, sealed_for=None):
        """Re-encrypt the stored secrets the active key did not make; return (re-encrypted, unreadable) counts.

        Writes only the ciphertext columns (nothing a user set changed).
        `sealed_for` (secret name -> associated data), when given, is the binding
        the stored ciphertexts were made with instead of this row's; then every
        readable secret is re-encrypted, so it ends bound to this row as it is now.
        """
        done = unreadable = 0
        for name in self.stored_secrets:
            if sealed_for is None and keyring.is_current(self.ciphertext(name)):
                continue
            try:
                plaintext = self.unseal(keyring, name, sealed_for(name) if sealed_for else None)
            except UndecryptableSecret:
                unreadable += 1
                continue
            self.seal(keyring, name, plaintext)
            field = self._field(name)
            type(self).update({field: getattr(self, field.name)}).where(type(self).id == self.id).execute()
            done += 1
        return done, unreadable
