"""The list of tables under forced row-level security in docs/security-privacy.md is the
database's own: read from pg_class and pg_policies after the migrations, so it cannot go stale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.db import connection

pytestmark = pytest.mark.postgres
DOC = Path(__file__).resolve().parent.parent / "docs" / "security-privacy.md"
BLOCK_RE = re.compile(r"<!-- rls-tables:start -->\n(.*?)\n<!-- rls-tables:end -->", re.S)
COLUMN_RE = re.compile(r"OR \((\w+) = ")


def forced_tables() -> list[tuple[str, str]]:
    """(table, workspace column) of every table with forced RLS and the workspace_isolation policy."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname, p.qual FROM pg_class c "
            "JOIN pg_policies p ON p.tablename = c.relname AND p.policyname = 'workspace_isolation' "
            "WHERE c.relrowsecurity AND c.relforcerowsecurity ORDER BY c.relname"
        )
        rows = cur.fetchall()
    found = []
    for table, qual in rows:
        match = COLUMN_RE.search(qual)
        assert match, f"{table}: unexpected policy {qual}"
        found.append((table, match.group(1)))
    return found


def documented_block(tables: list[tuple[str, str]]) -> str:
    header = "| table | the policy's workspace column |\n|---|---|"
    return header + "".join(f"\n| `{table}` | `{column}` |" for table, column in tables)


@pytest.mark.django_db
def test_the_documented_rls_tables_are_the_databases() -> None:
    tables = forced_tables()
    assert len(tables) >= 18
    block = BLOCK_RE.search(DOC.read_text())
    assert block, "docs/security-privacy.md lost its rls-tables block"
    expected = documented_block(tables)
    assert block.group(1) == expected, f"docs/security-privacy.md should list:\n{expected}"


@pytest.mark.django_db
def test_a_table_without_forced_rls_would_be_missing_from_the_list() -> None:
    with connection.cursor() as cur:
        cur.execute("ALTER TABLE api_tokens NO FORCE ROW LEVEL SECURITY")
    try:
        assert "api_tokens" not in dict(forced_tables())
    finally:
        with connection.cursor() as cur:
            cur.execute("ALTER TABLE api_tokens FORCE ROW LEVEL SECURITY")
