"""Deleting aged crm_sync_logs rows by the workspace's retention policy: the Pruner that
integrations registers with conduit/pruning.py (the retention purge decides when and up to
what time; the table's owner deletes). One batch per statement, skip-locked, oldest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection

from conduit.batch_sql import db_time, ids_in, keyset_after, lock_clause
from conduit.tenancy import system_scope

COUNT_SYNC_LOGS = "SELECT count(*) FROM crm_sync_logs WHERE workspace_id = %s AND created_at < %s"

DELETE_SYNC_LOGS = """
DELETE FROM crm_sync_logs WHERE {batch} RETURNING created_at, id"""
SYNC_LOG_BATCH = """
SELECT id FROM crm_sync_logs WHERE workspace_id = %s AND created_at < %s{after}
ORDER BY created_at, id LIMIT %s{lock}"""


def delete_sync_logs_batch(
    workspace_id: int, cutoff: datetime, limit: int, after: tuple[Any, Any] | None
) -> tuple[int, tuple[Any, Any] | None]:
    where, params = keyset_after("created_at, id", after)
    with system_scope(), connection.cursor() as cur:
        cur.execute(
            DELETE_SYNC_LOGS.format(
                batch=ids_in(SYNC_LOG_BATCH.format(after=where, lock=lock_clause(strength="UPDATE")))
            ),
            [workspace_id, db_time(cutoff), *params, limit],
        )
        rows = cur.fetchall()
    return len(rows), (max((r[0], r[1]) for r in rows) if rows else None)


class SyncLogPruner:
    def count(self, workspace_id: int, before: datetime) -> int:
        with system_scope(), connection.cursor() as cur:
            cur.execute(COUNT_SYNC_LOGS, [workspace_id, db_time(before)])
            return int(cur.fetchone()[0])

    def delete_batch(
        self, workspace_id: int, before: datetime, limit: int, after: tuple[Any, Any] | None
    ) -> tuple[int, tuple[Any, Any] | None]:
        return delete_sync_logs_batch(workspace_id, before, limit, after)
