"""The incremental pull: for every connected, enabled connection, read the contacts and deals
changed at the CRM since each sync cursor and mark the cached contact -> deal lookups that name
them stale, so a missed webhook cannot leave a write using an old mapping.

Rules:
- A run claims a cursor in a short transaction (FOR UPDATE SKIP LOCKED, then last_status
  "running"): a second run at the same time skips it rather than waiting or reading it twice. The
  provider calls run outside any transaction. Re-running is safe: marking a lookup stale twice
  changes nothing. A reset made during a run wins over the run's advance.
- since_ts moves to the newest modification time read, never backwards and never past now minus
  INDEX_LAG; the next run asks again from that time (">="), so records sharing it are read again,
  not missed.
- At most CONDUIT_SYNC_PULL_MAX_PAGES pages per cursor per run ("partial": the next run goes on).
- A provider without an incremental pull (pulls_changes False: the ATS) has no cursors.
- An integration switched off (enablement) is not pulled. A pause is not checked: it stops
  writes, and a pull only reads the CRM and marks Conduit's own cache stale.
- A provider error is recorded on its cursor (last_status "error", last_error its code only) and
  the other cursors go on; what was read before the error is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from conduit.logging import log_failure
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from integrations.connections.tenant_switch import enabled_connections
from integrations.connections.tokens import call_with_token
from integrations.cursors.apply import apply_changes
from integrations.models import CrmConnection, SyncCursor
from integrations.providers import PROVIDERS, get_provider
from integrations.providers.base import Account
from integrations.providers.changes import ChangedPage
from integrations.providers.errors import ProviderError

log = logging.getLogger("conduit.integrations")
Clock = Callable[[], datetime]
OBJECTS = [SyncCursor.Object.CONTACT.value, SyncCursor.Object.DEAL.value]


@dataclass
class PullCounts:
    connections: int = 0
    cursors: int = 0
    records: int = 0
    errors: int = 0
    skipped: int = 0  # another run has the cursor

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))

    def add(self, run: CursorRun | None) -> None:
        if run is None:
            self.skipped += 1
            return
        self.cursors += 1
        self.records += run.records
        self.errors += run.status == "error"


@dataclass(frozen=True)
class CursorRun:
    """How one pull of one cursor ended: ok / partial / error, and the records it read."""

    status: str
    records: int
    error: str = ""


@dataclass
class Progress:
    """What one pull of one cursor has read and applied so far."""

    newest: datetime
    records: int = 0
    complete: bool = False


def pulling_providers() -> list[str]:
    return [name for name in PROVIDERS if get_provider(name).pulls_changes]


def connections_to_pull() -> list[int]:
    with system_scope():
        return list(
            CrmConnection.objects.filter(
                enabled_connections(),
                status=CrmConnection.Status.CONNECTED,
                workspace__isnull=False,
                crm__in=pulling_providers(),
            )
            .order_by("id")
            .values_list("id", flat=True)
        )


def ensure_cursor(conn: CrmConnection, object: str, now: datetime) -> int:
    """The cursor's id; a new cursor starts CONDUIT_SYNC_PULL_INITIAL_HOURS back."""
    since = now - timedelta(hours=settings.CONDUIT_SYNC_PULL_INITIAL_HOURS)
    with system_scope():
        cursor, _ = SyncCursor.objects.get_or_create(
            connection=conn,
            object=object,
            defaults={"workspace_id": cast(int, conn.workspace_id), "provider": conn.crm, "since_ts": since},
        )
    return cursor.pk


def read_page(
    conn: CrmConnection, object: str, since: datetime, after: str | None, now: Clock
) -> ChangedPage:
    provider = get_provider(conn.crm)

    def call(account: Account) -> ChangedPage:
        return provider.changed_since(account, object, since, after, settings.CONDUIT_SYNC_PULL_PAGE_SIZE)

    return call_with_token(conn.pk, call, now=now)


def read_changes(conn: CrmConnection, cursor: SyncCursor, progress: Progress, now: Clock) -> None:
    """Read and apply pages until the last one or the page limit, updating `progress` as it goes
    (so an error part-way keeps what was applied)."""
    after: str | None = None
    for _ in range(settings.CONDUIT_SYNC_PULL_MAX_PAGES):
        page = read_page(conn, cursor.object, cursor.since_ts, after, now)
        apply_changes(conn, cursor.object, page.records)
        progress.records += len(page.records)
        progress.newest = max([progress.newest, *(r.modified_at for r in page.records)])
        after = page.next
        if after is None:
            progress.complete = True
            return


def error_code(exc: ProviderError | ConduitError) -> str:
    """What last_error keeps: the code, never the message (it may quote the CRM's reply)."""
    return exc.code if isinstance(exc, ProviderError) else exc.error_code


# CRM search indexes trail writes by seconds to minutes (HubSpot's search is eventually
# consistent): the cursor stays this far behind now, so a record changed just before a run but
# indexed after it is still found by the next run. Re-reading those minutes is harmless.
INDEX_LAG = timedelta(minutes=5)


# A run that died mid-pull (a killed worker) leaves its cursor "running"; after this long another
# run takes it over.
CLAIM_TTL = timedelta(minutes=30)
RUNNING = "running"


def claim(cursor_id: int, now: datetime) -> SyncCursor | None:
    """Mark the cursor running, in a short transaction; None when another run has it (its row
    locked right now, or running and not yet stale)."""
    with system_scope():
        cursor = (
            SyncCursor.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("connection")
            .filter(pk=cursor_id)
            .first()
        )
        if cursor is None or (
            cursor.last_status == RUNNING and cursor.last_run_at and cursor.last_run_at > now - CLAIM_TTL
        ):
            return None
        cursor.last_status, cursor.last_run_at = RUNNING, now
        cursor.save(update_fields=["last_status", "last_run_at", "updated_at"])
    return cursor


def finish(cursor: SyncCursor, progress: Progress, status: str, error: str, now: datetime) -> None:
    """Record the run, if its claim still stands (`claim` left its start in last_run_at; a run
    that outlived CLAIM_TTL was taken over and records nothing). A reset made while it ran wins:
    since_ts moves only if it is still where this run started from."""
    with system_scope():
        current = SyncCursor.objects.select_for_update().filter(pk=cursor.pk).first()
        if current is None or current.last_run_at != cursor.last_run_at:  # deleted, or taken over
            return
        if current.since_ts == cursor.since_ts:
            current.since_ts = max(current.since_ts, min(progress.newest, now - INDEX_LAG))
        current.last_run_at, current.last_status, current.last_error = now, status, error[:200]
        current.records_seen = progress.records
        current.save(
            update_fields=[
                "since_ts",
                "last_run_at",
                "last_status",
                "last_error",
                "records_seen",
                "updated_at",
            ]
        )


def pull_cursor(cursor_id: int, *, now: Clock = timezone.now) -> CursorRun | None:
    """Pull one cursor; None when another run has it. The provider calls run outside any
    transaction, so a token refresh commits at once and no row stays locked while the CRM answers.
    Conduit's own bug is recorded on the cursor; Celery's soft time limit is recorded, then
    raised: the task must stop, not start the next cursor."""
    cursor = claim(cursor_id, now())
    if cursor is None:
        return None
    try:
        return run_claimed(cursor, now)
    except Exception as exc:  # the per-cursor boundary
        log_failure(
            log,
            "pull of sync cursor %s failed",
            cursor_id,
            exc=exc,
            category="sync_pull",
            error_code="internal_error",
        )
        record_failure(cursor, now())
        if isinstance(exc, SoftTimeLimitExceeded):
            raise
        return CursorRun("error", 0, "internal_error")


def run_claimed(cursor: SyncCursor, now: Clock) -> CursorRun:
    progress = Progress(newest=cursor.since_ts)
    error = ""
    try:
        read_changes(cursor.connection, cursor, progress, now)
    except (ProviderError, ConduitError) as exc:
        error = error_code(exc)
        log.info(
            "pull of %s %s cursor %s failed",
            cursor.provider,
            cursor.object,
            cursor.pk,
            extra={"category": "sync_pull", "error_code": error},
        )
    status = "error" if error else "ok" if progress.complete else "partial"
    finish(cursor, progress, status, error, now())
    return CursorRun(status, progress.records, error)


def record_failure(cursor: SyncCursor, now: datetime) -> None:
    """The cursor shows the failure and keeps its place, unless another run has taken it over."""
    with system_scope():
        SyncCursor.objects.filter(pk=cursor.pk, last_run_at=cursor.last_run_at, last_status=RUNNING).update(
            last_run_at=now, last_status="error", last_error="internal_error", records_seen=0
        )


def safe_pull(cursor_id: int, *, now: Clock) -> CursorRun | None:
    """One cursor's pull that never stops the others: a failure to even claim it is logged."""
    try:
        return pull_cursor(cursor_id, now=now)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:  # the claim itself failed (the database, most likely)
        log_failure(
            log,
            "claiming sync cursor %s failed",
            cursor_id,
            exc=exc,
            category="sync_pull",
            error_code="internal_error",
        )
        return CursorRun("error", 0, "internal_error")


def pull_sync_cursors(*, now: Clock = timezone.now) -> PullCounts:
    """The 15-minute entry point (beat task and command): pull every cursor that is due."""
    counts = PullCounts()
    for connection_id in connections_to_pull():
        with system_scope():
            conn = CrmConnection.objects.filter(pk=connection_id).first()
        if conn is None:  # deleted since the list was read
            continue
        counts.connections += 1
        for object in OBJECTS:
            counts.add(safe_pull(ensure_cursor(conn, object, now()), now=now))
    log.info("pulled sync cursors", extra={"category": "sync_pull", **counts.as_dict()})
    return counts
