"""The write ledger as integrations sees it.

Reconcile owns crm_write_log and the cached contact -> deal lookups, and depends on
integrations; integrations never imports it. Instead reconcile registers one WriteLedger here
when Django starts (reconcile/apps.py), and integrations talks to that:
- it asks for a connection's write counts, dry-run previews and when its next waiting write is
  due (the Integrations card, the status API) and the write queue's numbers (queue metrics);
- it tells which CRM records changed, appeared or were deleted (webhooks, sync cursors), so that
  cached lookups naming them are looked up again before the next write;
- calendars ask which of a meeting's addresses are the workspace's customers (external) and hand
  processed events over to be planned as meeting writes (`plan_meetings`).
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


@dataclass(frozen=True)
class WritePreview:
    """One dry-run write as the Integrations card shows it: what Conduit's curated activity says
    (its summary text, never an email body), whom it is about, and the exact request
    body the provider would be sent."""

    id: int
    operation: str  # create_note / create_task / create_meeting
    target: str  # the participant's email
    created_at: datetime
    text: str  # Conduit's summary: subject, participants, time, link
    due_at: datetime | None
    # From the write itself or the lookup cache; "" before the lookup has run, or when it found
    # no contact / no open deal (`looked_up` tells the two apart).
    contact_id: str
    deal_id: str
    looked_up: bool
    payload: dict[str, Any]
    payload_json: str


class WriteLedger(Protocol):
    def counts(self, conn: CrmConnection) -> WriteCounts: ...

    def previews(self, conn: CrmConnection) -> list[WritePreview]: ...

    def next_attempt_at(self, conn: CrmConnection, *, now: datetime | None = None) -> datetime | None:
        """The earliest time one of the connection's waiting writes (retrying, or queued but not
        due yet) is tried again; None when none waits for a time."""
        ...

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

    def account_switched(self, conn: CrmConnection) -> int:
        """The connection now reaches another CRM account: every contact / deal lookup cached for
        the old one is dropped (queued writes look theirs up again in the new account). Returns
        the lookups dropped."""
        ...

    def records_deleted(
        self, conn: CrmConnection, *, contact_ids: Iterable[str] = (), deal_ids: Iterable[str] = ()
    ) -> int: ...

    def external_addresses(self, workspace_id: int, addresses: Iterable[str]) -> list[str]:
        """The addresses that are not the workspace's own (its internal domains and members'
        emails, as its write policy says): lower-cased, in order, without repeats."""
        ...

    def plan_meetings(self, workspace_id: int, event_ids: list[int]) -> dict[int, str | None]:
        """Plan one meeting write per (connected CRM, event, customer) of these calendar events,
        from their stored customer_emails (idempotent: planning an event again adds nothing), in
        dry run unless the connection is live; live writes are sent after the commit. Returns,
        for each event id, None when planned (or nothing to plan) or a short error (no secret,
        no description)."""
        ...


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
