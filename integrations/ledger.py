"""The write ledger as integrations sees it.

Reconcile owns crm_write_log and the cached contact -> deal lookups, and depends on
integrations; integrations never imports it. Instead reconcile registers one WriteLedger here
when Django starts (reconcile/apps.py), and integrations talks to that:
- it asks for a connection's write counts and dry-run previews (the Integrations card, the
  status API) and the write queue's numbers (queue metrics);
- it tells which CRM records changed, appeared or were deleted (webhooks, sync cursors), so that
  cached lookups naming them are looked up again before the next write.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from integrations.models import CrmConnection

CrmObject = Literal["contact", "deal"]


@dataclass(frozen=True)
class WriteCounts:
    """A connection's writes by state, as its card and the status API show them."""

    dry_run: int = 0
    planned: int = 0
    failed: int = 0
    permanent: int = 0
    succeeded: int = 0
    skipped: int = 0
    last_error: str = ""
    last_error_at: Any = None


class WriteLedger(Protocol):
    def counts(self, conn: CrmConnection) -> WriteCounts: ...

    def previews(self, conn: CrmConnection) -> list[dict[str, Any]]: ...

    def queue_stats(self, *, now: datetime) -> dict[str, Any]: ...

    def records_changed(
        self,
        conn: CrmConnection,
        *,
        contact_ids: Iterable[str] = (),
        deal_ids: Iterable[str] = (),
        emails: Iterable[str] = (),
    ) -> int: ...

    def records_created(self, conn: CrmConnection, *, object: CrmObject) -> int: ...

    def records_deleted(
        self, conn: CrmConnection, *, contact_ids: Iterable[str] = (), deal_ids: Iterable[str] = ()
    ) -> int: ...


class NoLedger(LookupError):
    def __str__(self) -> str:
        return "no write ledger is registered: is the reconcile app in INSTALLED_APPS?"


_registered: list[WriteLedger] = []


def register(ledger: WriteLedger) -> None:
    """Called once from the ledger app's AppConfig.ready(); a second call replaces the first."""
    _registered[:] = [ledger]


def ledger() -> WriteLedger:
    if not _registered:
        raise NoLedger()
    return _registered[0]
