"""Row-level security for workspace-owned tables (Postgres only).

Use `EnableWorkspaceRLS("table")` in a migration for every table with a workspace_id column;
tests/test_tenancy.py fails if a workspace-owned model's table lacks it.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from conduit.tenancy import SYSTEM_GUC, WORKSPACE_GUC

POLICY = "workspace_isolation"


def policy_predicate(column: str = "workspace_id") -> str:
    return (
        f"current_setting('{SYSTEM_GUC}', true) = 'on' OR {column} = "
        f"nullif(current_setting('{WORKSPACE_GUC}', true), '')::bigint"
    )


def enable_sql(table: str, column: str = "workspace_id") -> str:
    predicate = policy_predicate(column)
    return (
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY; "
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY; "
        f"CREATE POLICY {POLICY} ON {table} USING ({predicate}) WITH CHECK ({predicate});"
    )


def disable_sql(table: str) -> str:
    return (
        f"DROP POLICY IF EXISTS {POLICY} ON {table}; "
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY; "
        f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;"
    )


class EnableWorkspaceRLS(migrations.RunSQL):
    """RunSQL that only runs on Postgres (SQLite has no row-level security)."""

    def __init__(self, table: str, column: str = "workspace_id") -> None:
        self.table = table
        self.column = column
        super().__init__(sql=enable_sql(table, column), reverse_sql=disable_sql(table))

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs = {} if self.column == "workspace_id" else {"column": self.column}
        return (self.__class__.__qualname__, [self.table], kwargs)

    def database_forwards(self, app_label: str, schema_editor: Any, *args: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, *args)

    def database_backwards(self, app_label: str, schema_editor: Any, *args: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, *args)

    def describe(self) -> str:
        return f"Enable row-level security on {self.table}"
