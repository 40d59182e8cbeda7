"""The purge's statements, one batch each: redact messages, remove attachments (and delete their
files after the commit); sync logs through the pruner integrations registers (conduit/pruning.py);
plus the counts a dry run reports.

Rule: no per-row loops in SQL; at most one batch per statement, each batch its own short
transaction under system scope; locked rows are skipped, not waited on (two runs at once split
the work, and a redaction is guarded by NOT is_redacted so nothing is done twice); batches walk
the rows oldest first with a keyset on (time, id), so a batch never rescans what the previous
one did. Bodies never enter Python: statements return ids, times and sizes only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.files.storage import default_storage
from django.db import connection

from conduit.batch_sql import db_time, ids_in, keyset_after, lock_clause
from conduit.pruning import pruner
from conduit.tenancy import system_scope

log = logging.getLogger("conduit.retention")


# --- messages -------------------------------------------------------------------------------


def no_flush_wait(cur: Any) -> None:
    """This transaction's commit does not wait for its WAL to reach the disk. Safe for a
    redaction: a crash can lose only the last batches' commits (never half of one), their rows
    stay unredacted and the next run redacts them; the run's audit event commits normally, which
    flushes every batch before it. On SQLite there is no such setting."""
    if connection.vendor == "postgresql":
        cur.execute("SET LOCAL synchronous_commit TO OFF")


COUNT_MESSAGES = """
SELECT count(*) FROM messages WHERE workspace_id = %s AND NOT is_redacted AND received_at < %s"""

REDACT_MESSAGES = """
UPDATE messages SET body_text = NULL, body_html = NULL, raw = NULL, is_redacted = true, redacted_at = %s
WHERE {batch} AND NOT is_redacted
RETURNING received_at, id"""
REDACT_BATCH = """
SELECT id FROM messages WHERE workspace_id = %s AND NOT is_redacted AND received_at < %s{after}
ORDER BY received_at, id LIMIT %s{lock}"""


def redact_messages_batch(
    workspace_id: int, cutoff: datetime, at: datetime, limit: int, after: tuple[Any, Any] | None
) -> tuple[int, tuple[Any, Any] | None]:
    """Redact up to `limit` messages received before `cutoff`, past the keyset `after`;
    returns (count, the last key done)."""
    where, params = keyset_after("received_at, id", after)
    sql = REDACT_MESSAGES.format(batch=ids_in(REDACT_BATCH.format(after=where, lock=lock_clause())))
    with system_scope(), connection.cursor() as cur:
        no_flush_wait(cur)
        cur.execute(sql, [db_time(at), workspace_id, db_time(cutoff), *params, limit])
        rows = cur.fetchall()
    return len(rows), (max((r[0], r[1]) for r in rows) if rows else None)


# --- attachments ----------------------------------------------------------------------------

COUNT_ATTACHMENTS = """
SELECT count(*), coalesce(sum(a.size), 0) FROM attachments a JOIN messages m ON m.id = a.message_id
WHERE a.workspace_id = %s AND a.removed_at IS NULL AND m.received_at < %s"""

LOCK_ATTACHMENTS = """
SELECT a.id, a.message_id, a.file, a.size FROM attachments a JOIN messages m ON m.id = a.message_id
WHERE a.workspace_id = %s AND a.removed_at IS NULL AND m.received_at < %s{after}
ORDER BY a.message_id, a.id LIMIT %s{lock}"""

REMOVE_ATTACHMENTS = """
UPDATE attachments SET file = '', removed_at = %s WHERE removed_at IS NULL AND id IN ({ids}) RETURNING id"""

RESTORE_ATTACHMENT = """
UPDATE attachments SET file = %s, removed_at = NULL WHERE id = %s AND file = '' AND removed_at = %s"""


@dataclass
class RemovedFile:
    attachment_id: int
    name: str
    size: int


@dataclass
class AttachmentBatch:
    seen: int
    removed: list[RemovedFile]
    last_key: tuple[Any, Any] | None


def remove_attachments_batch(
    workspace_id: int, cutoff: datetime, at: datetime, limit: int, after: tuple[Any, Any] | None
) -> AttachmentBatch:
    """Mark up to `limit` attachments of messages received before `cutoff` removed (file ''),
    in one transaction; returns the old file names and sizes for deletion after the commit."""
    where, params = keyset_after("a.message_id, a.id", after)
    with system_scope(), connection.cursor() as cur:
        cur.execute(
            LOCK_ATTACHMENTS.format(after=where, lock=lock_clause("a")),
            [workspace_id, db_time(cutoff), *params, limit],
        )
        locked = cur.fetchall()
        if not locked:
            return AttachmentBatch(0, [], None)
        ids = [r[0] for r in locked]
        cur.execute(REMOVE_ATTACHMENTS.format(ids=", ".join(["%s"] * len(ids))), [db_time(at), *ids])
        done = {r[0] for r in cur.fetchall()}
    removed = [RemovedFile(r[0], r[2] or "", int(r[3] or 0)) for r in locked if r[0] in done]
    return AttachmentBatch(len(locked), removed, max((r[1], r[0]) for r in locked))


def delete_files(removed: Iterable[RemovedFile], at: datetime) -> tuple[int, list[RemovedFile]]:
    """Delete the files of committed removals; returns (missing, failed). A missing file is
    not an error; a failed delete puts its row back so the next run tries again, and so does
    every file not reached when something unexpected stops the loop (then it re-raises)."""
    missing, failed = 0, []
    pending = list(removed)
    try:
        while pending:
            item = pending[0]
            try:
                if not item.name or not default_storage.exists(item.name):
                    missing += 1
                    log.info(
                        "attachment %s: file already gone",
                        item.attachment_id,
                        extra={"category": "retention", "error_code": "attachment_file_missing"},
                    )
                else:
                    default_storage.delete(item.name)
            except OSError as exc:
                failed.append(item)
                log.warning(
                    "attachment %s: file not deleted (%s); it is retried by the next run",
                    item.attachment_id,
                    type(exc).__name__,
                    extra={"category": "retention", "error_code": "attachment_file_delete_failed"},
                )
            pending.pop(0)
    finally:
        if back := [*failed, *pending]:
            with system_scope(), connection.cursor() as cur:
                for item in back:
                    cur.execute(RESTORE_ATTACHMENT, [item.name, item.attachment_id, db_time(at)])
    return missing, failed


# --- sync logs (integrations keeps them and deletes them: conduit/pruning.py) ---------------


def delete_sync_logs_batch(
    workspace_id: int, cutoff: datetime, limit: int, after: tuple[Any, Any] | None
) -> tuple[int, tuple[Any, Any] | None]:
    return pruner("sync_logs").delete_batch(workspace_id, cutoff, limit, after)


def count_due(
    workspace_id: int, messages_before: datetime, attachments_before: datetime, sync_logs_before: datetime
) -> dict[str, int]:
    """What a run would change: messages, attachments (and their bytes), sync logs."""
    with system_scope(), connection.cursor() as cur:
        cur.execute(COUNT_MESSAGES, [workspace_id, db_time(messages_before)])
        messages = int(cur.fetchone()[0])
        cur.execute(COUNT_ATTACHMENTS, [workspace_id, db_time(attachments_before)])
        attachments, size = cur.fetchone()
    sync_logs = pruner("sync_logs").count(workspace_id, sync_logs_before)
    return {"messages": messages, "attachments": int(attachments), "bytes": int(size), "sync_logs": sync_logs}
