"""Encryption at rest for secret columns: one field type, MultiFernet over CONDUIT_ENCRYPTION_KEYS.

The first key encrypts; every listed key decrypts. To rotate: put a new key first, keep the
old ones after it, run `manage.py rotate_encryption_keys`, then drop the old keys.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import FieldError
from django.db import models


class DecryptionError(Exception):
    """A stored value could not be decrypted with any configured key (the value is not shown)."""


@cache
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.CONDUIT_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionError("stored secret cannot be decrypted with the configured keys") from None


def rotate(ciphertext: str) -> str:
    """Re-encrypt under the primary key (raises DecryptionError when no key fits)."""
    try:
        return fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionError("stored secret cannot be decrypted with the configured keys") from None


class EncryptedTextField(models.TextField):
    """A text column stored as a Fernet token; Python code only ever sees plaintext."""

    description = "Text encrypted at rest with the Conduit encryption keys"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return None if value is None else decrypt(value)

    def get_lookup(self, lookup_name: str) -> Any:
        # Fernet output differs on every call, so equality and text lookups never match.
        if lookup_name != "isnull":
            raise FieldError(f"encrypted fields cannot be filtered with '{lookup_name}' (only isnull)")
        return super().get_lookup(lookup_name)

    def get_prep_value(self, value: Any) -> str | None:
        value = super().get_prep_value(value)
        return None if value is None else encrypt(str(value))


def encrypted_fields() -> list[tuple[type[models.Model], list[str]]]:
    """Every model with encrypted columns, and those columns' attribute names."""
    from django.apps import apps

    found = []
    for model in apps.get_models():
        names = [f.attname for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if names:
            found.append((model, names))
    return found
