"""Aged rows that an app keeps per workspace and the retention policy ages out.

The retention app owns the policy (how many days) and runs the purge, but it never writes
another app's tables: an app that keeps such rows registers a Pruner for them here, from its
AppConfig.ready(), and the purge calls it with the policy's cutoff. Today: "sync_logs"
(crm_sync_logs, registered by integrations). A kind nobody registered has nothing to prune.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

Key = tuple[Any, Any] | None


class Pruner(Protocol):
    def count(self, workspace_id: int, before: datetime) -> int:
        """Rows of the workspace older than `before`."""
        ...

    def delete_batch(self, workspace_id: int, before: datetime, limit: int, after: Key) -> tuple[int, Key]:
        """Delete at most `limit` such rows past the keyset `after`, oldest first, skipping
        locked ones; returns (rows deleted, the keyset of the last one)."""
        ...


class NothingToPrune:
    def count(self, workspace_id: int, before: datetime) -> int:
        return 0

    def delete_batch(self, workspace_id: int, before: datetime, limit: int, after: Key) -> tuple[int, Key]:
        return 0, None


_pruners: dict[str, Pruner] = {}


def register_pruner(kind: str, pruner: Pruner) -> None:
    _pruners[kind] = pruner


def pruner(kind: str) -> Pruner:
    return _pruners.get(kind, NothingToPrune())
