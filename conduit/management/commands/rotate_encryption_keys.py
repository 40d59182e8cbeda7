"""Re-encrypt every encrypted column under the primary key (the first of
CONDUIT_ENCRYPTION_KEYS), in batches, printing counts per column."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from conduit.crypto import DecryptionError, encrypted_fields, rotate
from conduit.tenancy import system_scope


class Command(BaseCommand):
    help = "Re-encrypt every encrypted column with the primary encryption key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        failed_total = 0
        for model, columns in encrypted_fields():
            for column in columns:
                rotated, failed = self._rotate_column(
                    model._meta.db_table, str(model._meta.pk.column), column, batch_size
                )
                failed_total += failed
                self.stdout.write(
                    f"{model._meta.db_table}.{column}: {rotated} re-encrypted, {failed} unreadable"
                )
        if failed_total:
            raise CommandError(f"{failed_total} value(s) could not be decrypted with any configured key")

    def _rotate_column(self, table: str, pk: str, column: str, batch_size: int) -> tuple[int, int]:
        qn = connection.ops.quote_name
        # Identifiers come from model metadata, quoted; values are parameters.
        select = (
            f"SELECT {qn(pk)}, {qn(column)} FROM {qn(table)} "  # noqa: S608
            f"WHERE {qn(column)} IS NOT NULL AND {qn(pk)} > %s ORDER BY {qn(pk)} LIMIT %s"
        )
        if connection.features.has_select_for_update:
            # Hold the batch until its UPDATE commits, so a concurrent write is never
            # overwritten with the old value re-encrypted.
            select += " FOR UPDATE"
        update = f"UPDATE {qn(table)} SET {qn(column)} = %s WHERE {qn(pk)} = %s"  # noqa: S608
        last, rotated, failed = 0, 0, 0
        while True:
            with system_scope(), connection.cursor() as cur:
                cur.execute(select, [last, batch_size])
                rows = cur.fetchall()
                if not rows:
                    return rotated, failed
                updates = []
                for row_pk, value in rows:
                    try:
                        updates.append((rotate(value), row_pk))
                    except DecryptionError:
                        failed += 1
                cur.executemany(update, updates)
                rotated += len(updates)
                last = rows[-1][0]
