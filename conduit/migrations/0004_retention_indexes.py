"""Indexes for the retention purge (issue 7): two partial indexes, and messages loses its plain
index on workspace_id (the unique constraint and the other indexes lead with it; one index fewer
makes each redaction, a non-HOT update, and each ingest cheaper).

On Postgres indexes are built and dropped CONCURRENTLY, so a deploy onto a large messages table
does not block ingest meanwhile (hence a non-atomic migration); SQLite does it plainly.
"""

from typing import Any

import django.db.models.deletion
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(migrations.AddIndex):
    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
            return
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.add_index(model, self.index, concurrently=True)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
            return
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, concurrently=True)


class DropForeignKeyIndexConcurrentlyOnPostgres(migrations.AlterField):
    """AlterField(db_index=False) on a foreign key: only its index goes, without a table rewrite."""

    def _index(self, schema_editor: Any, state: Any, app_label: str) -> tuple[str, str, str]:
        model = state.apps.get_model(app_label, self.model_name)
        column = model._meta.get_field(self.name).column
        table = model._meta.db_table
        name = schema_editor._create_index_name(table, [column])
        return (
            schema_editor.quote_name(name),
            schema_editor.quote_name(table),
            schema_editor.quote_name(column),
        )

    def _concurrently(self, schema_editor: Any) -> str:
        return " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        name, _, _ = self._index(schema_editor, from_state, app_label)
        schema_editor.execute(f"DROP INDEX{self._concurrently(schema_editor)} IF EXISTS {name}")

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        name, table, column = self._index(schema_editor, to_state, app_label)
        concurrently = self._concurrently(schema_editor)
        schema_editor.execute(f"CREATE INDEX{concurrently} IF NOT EXISTS {name} ON {table} ({column})")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("conduit", "0003_heartbeat_schedule")]

    operations = [
        DropForeignKeyIndexConcurrentlyOnPostgres(
            model_name="message",
            name="workspace",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="messages",
                to="conduit.workspace",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="message",
            index=models.Index(
                condition=models.Q(("is_redacted", False)),
                fields=["workspace", "received_at", "id"],
                name="messages_unredacted",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="attachment",
            index=models.Index(
                condition=models.Q(("removed_at__isnull", True)),
                fields=["workspace", "message"],
                name="attachments_present",
            ),
        ),
    ]
