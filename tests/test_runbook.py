"""Every ```sql block of docs/runbook.md runs against the migrated Postgres schema, inside a
transaction that is rolled back, with placeholders filled from fixtures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.db import connection, transaction

from conduit.ingest import ingest_one, parse_raw
from tests.conftest import Tenant, raw_email
from tests.test_tenancy import PROBE_ROLE, _grant_probe_role

RUNBOOK = Path(__file__).resolve().parent.parent / "docs" / "runbook.md"
SQL_BLOCK = re.compile(r"```sql\n(.*?)```", re.DOTALL)
PLACEHOLDER = re.compile(r"<[a-z_]+>")


def sql_blocks() -> list[str]:
    if not RUNBOOK.exists():
        return []
    return [block.strip() for block in SQL_BLOCK.findall(RUNBOOK.read_text())]


def test_runbook_has_sql_blocks() -> None:
    assert len(sql_blocks()) >= 5


@pytest.mark.postgres
@pytest.mark.parametrize("index", range(len(sql_blocks())))
def test_runbook_sql_block_runs(index: int, alice: Tenant) -> None:
    message = ingest_one(alice.workspace, parse_raw(raw_email("runbook@x"))).message
    values = {
        "<workspace_id>": str(alice.workspace.pk),
        "<workspace_slug>": alice.workspace.slug,
        "<provider_email>": alice.user.email,
        "<user_email>": alice.user.email,
        "<message_pk>": str(message.pk),
        "<message_id>": message.message_id,
        "<install_id>": "runbook-install-id",
        "<external_account_key>": "4400001",
        "<provider_id>": str(alice.user.profile.pk),  # runbook 004 (section 22)
        "<connection_id>": "0",
    }
    sql = sql_blocks()[index]
    unknown = set(PLACEHOLDER.findall(sql)) - set(values)
    assert not unknown, f"runbook block {index} uses unknown placeholders {unknown}"
    for placeholder, value in values.items():
        sql = sql.replace(placeholder, value)
    _grant_probe_role()
    with transaction.atomic(), connection.cursor() as cur:
        sid = transaction.savepoint()
        # As the application role would: not superuser, not owner, row-level security on.
        cur.execute(f"SET LOCAL ROLE {PROBE_ROLE}")
        for statement in [s for s in sql.split(";\n") if s.strip()]:
            cur.execute(statement.replace("%", "%%"))
        transaction.savepoint_rollback(sid)
