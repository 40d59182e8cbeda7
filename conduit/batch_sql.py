"""Pieces of set-based batch SQL shared by the jobs that walk big tables (the retention purge,
the sync-log pruning): skip-locked batches, id probes, keyset paging and raw-SQL times.

Rule: at most one batch per statement; locked rows are skipped, not waited on; batches walk
oldest first with a keyset on (time, id), so a batch never rescans what the previous one did.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection


def lock_clause(of: str = "", strength: str = "NO KEY UPDATE") -> str:
    """Lock the batch, skipping rows another run holds. NO KEY UPDATE (the lock the UPDATE takes
    anyway) does not block a concurrent insert whose foreign key points at a locked message."""
    if connection.vendor != "postgresql":
        return ""  # SQLite: one writer at a time, nothing to skip
    return f" FOR {strength}{f' OF {of}' if of else ''} SKIP LOCKED"


def ids_in(select: str) -> str:
    """`id` among the batch's ids. On Postgres the batch is taken once, as an array probed
    through the primary key (a plain IN (...) may be planned as a scan of the whole table)."""
    if connection.vendor != "postgresql":
        return f"id IN ({select})"
    return f"id = ANY(ARRAY({select}))"


def db_time(value: datetime) -> Any:
    """A datetime as raw SQL compares it (SQLite stores naive UTC text)."""
    return connection.ops.adapt_datetimefield_value(value)


def keyset_after(columns: str, key: tuple[Any, Any] | None) -> tuple[str, list[Any]]:
    return ("", []) if key is None else (f" AND ({columns}) > (%s, %s)", list(key))
