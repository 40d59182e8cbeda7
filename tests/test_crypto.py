"""Encrypted columns: ciphertext at rest, plaintext in Python, rotation to the primary key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, models

from conduit.crypto import DecryptionError, EncryptedTextField, decrypt, encrypt, encrypted_fields


class SecretNote(models.Model):
    label = models.CharField(max_length=20)
    secret = EncryptedTextField(null=True)
    other = EncryptedTextField(null=True)

    class Meta:
        app_label = "conduit"
        db_table = "test_secret_notes"

    def __str__(self) -> str:
        return self.label


@pytest.fixture
def secret_table(transactional_db: None) -> Iterator[None]:
    with connection.schema_editor() as editor:
        editor.create_model(SecretNote)
    yield
    with connection.schema_editor() as editor:
        editor.delete_model(SecretNote)


def stored(pk: int, column: str = "secret") -> str:
    with connection.cursor() as cur:
        cur.execute(f"SELECT {column} FROM test_secret_notes WHERE id = %s", [pk])
        return cur.fetchone()[0]  # type: ignore[index, no-any-return]


def test_value_is_ciphertext_at_rest_and_plaintext_in_python(secret_table: None) -> None:
    note = SecretNote.objects.create(label="a", secret="refresh-token-value")
    assert "refresh-token-value" not in stored(note.pk)
    assert SecretNote.objects.get(pk=note.pk).secret == "refresh-token-value"
    assert SecretNote.objects.create(label="n", secret=None).secret is None


def test_rotation_reencrypts_every_row_and_old_key_can_be_dropped(
    secret_table: None, settings, capsys
) -> None:  # type: ignore[no-untyped-def]
    old_key = settings.CONDUIT_ENCRYPTION_KEYS[0]
    notes = [SecretNote.objects.create(label=str(i), secret=f"token-{i}", other=f"o{i}") for i in range(7)]
    SecretNote.objects.create(label="empty", secret=None)
    new_key = Fernet.generate_key().decode()
    settings.CONDUIT_ENCRYPTION_KEYS = [new_key, old_key]
    call_command("rotate_encryption_keys", "--batch-size", "3")
    out = capsys.readouterr().out
    assert "test_secret_notes.secret: 7 re-encrypted, 0 unreadable" in out
    assert "test_secret_notes.other: 7 re-encrypted, 0 unreadable" in out
    settings.CONDUIT_ENCRYPTION_KEYS = [new_key]
    assert [n.secret for n in SecretNote.objects.order_by("pk") if n.secret] == [
        f"token-{i}" for i in range(7)
    ]
    assert SecretNote.objects.get(pk=notes[0].pk).other == "o0"


def test_rotation_reports_values_no_key_can_read(secret_table: None, settings) -> None:  # type: ignore[no-untyped-def]
    SecretNote.objects.create(label="x", secret="s")
    settings.CONDUIT_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="1 value"):
        call_command("rotate_encryption_keys")
    with pytest.raises(CommandError, match="batch-size"):
        call_command("rotate_encryption_keys", "--batch-size", "0")


def test_decrypt_with_wrong_key_never_shows_the_value(settings) -> None:  # type: ignore[no-untyped-def]
    token = encrypt("super-secret-value")
    settings.CONDUIT_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(DecryptionError) as excinfo:
        decrypt(token)
    assert "super-secret-value" not in str(excinfo.value) and token not in str(excinfo.value)


def test_encrypted_fields_are_discovered(secret_table: None) -> None:
    assert (SecretNote, ["secret", "other"]) in encrypted_fields()


def test_filtering_on_an_encrypted_value_is_refused(secret_table: None) -> None:
    from django.core.exceptions import FieldError

    SecretNote.objects.create(label="a", secret="s")
    with pytest.raises(FieldError, match="only isnull"):
        list(SecretNote.objects.filter(secret="s"))
    assert SecretNote.objects.filter(secret__isnull=False).count() == 1
