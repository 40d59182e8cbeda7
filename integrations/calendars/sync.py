"""The sync of one calendar connection: read its events from the provider, full or incremental,
and keep external_calendar_events up to date.

Rules:
- One sync of a connection at a time: the sync holds a Postgres advisory lock on the
  connection id for its whole run, a transaction-level one (safe behind PgBouncer in transaction
  pooling) in a transaction of its own on a second database connection; a second sync of the
  same connection returns at once ("sync_in_progress") instead of waiting or reading twice. The
  provider calls run outside any transaction, so a token refresh (tokens.py, under the row lock)
  commits at once and no row stays locked while the provider answers. SQLite (development) has no
  such lock and runs one writer at a time anyway.
- No cursor (first sync, or after a reset / 410): a full listing of the window now -
  CALENDAR_SYNC_PAST_DAYS .. now + CALENDAR_SYNC_FUTURE_DAYS, page after page until the provider
  hands over the next cursor. With a cursor: the changes since it. A 410 (CursorExpired) clears
  the cursor at once and runs the full listing in the same call; a completed full listing marks
  the stored events of the window it did not list as cancelled. Nothing is ever doubled: rows are
  keyed on (connection, external_id).
- At most CALENDAR_SYNC_MAX_PAGES pages per sync. A sync that hits the cap keeps what it stored,
  leaves the cursor where it was and sync_needed true: the next pass starts that listing again
  (stored rows that did not change are not written again, so the repeat costs reads only).
- Per page, set-based: one SELECT of the stored rows of the page's ids, one INSERT of the new
  ones, one UPDATE of the changed ones. A row whose content (title, times, attendees, private,
  cancelled, organizer, iCalUID) did not change is not written at all; a changed one goes back to
  sync_status CREATED (processed again). A cancellation keeps the stored content and only flips
  `cancelled`. A cancelled event never stored is not stored.
- Never stored: a description or body (the provider shape has none). A private event is stored
  as busy only: no title, no organizer, no attendees.
- sync_needed is cleared when the sync starts (so a push that arrives while it runs sets it again
  and is not lost) and set again on failure or when the page cap is hit.
- Success: last_synced_at, error_count 0, last_error and backoff_until cleared, the new cursor.
  Failure: error_count + 1, last_error "<error_code>: <short message>" (never a token),
  backoff_until = now + min(cap, base * 2**(error_count - 1)), at least Retry-After when rate
  limited. A revoked grant: tokens.py puts the connection in error; no backoff.
- One `calendar_sync` log line per sync: info with the counts, or error with the error code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.db import connection as db
from django.db.models import F
from django.utils import timezone

from conduit.logging import failure_frames
from conduit.secrets_scan import redact_text
from conduit.services import ConduitError
from conduit.tenancy import system_scope, workspace_scope
from integrations.calendars import flags, tokens
from integrations.calendars.flags import CalendarForbidden, Feature
from integrations.calendars.logs import calendar_log
from integrations.models import ExternalCalendarConnection, ExternalCalendarEvent
from integrations.providers import get_calendar_provider
from integrations.providers.base import Account
from integrations.providers.calendar_base import CalendarEvent, CalendarProvider, CursorExpired, EventPage
from integrations.providers.errors import AuthRevoked, ProviderError, RateLimited

Connection = ExternalCalendarConnection
Event = ExternalCalendarEvent
Window = tuple[datetime, datetime]

# advisory-lock class id of calendar syncs (the second key is the connection id)
LOCK_CLASS = 0x0CA1
# what an event's "content" is: a change here sends it back to CREATED
CONTENT = ("ical_uid", "title", "starts_at", "ends_at", "all_day", "organizer", "attendees", "is_private")
WRITTEN = (*CONTENT, "cancelled", "sync_status", "last_error", "provider_updated_at", "updated_at")
MESSAGE_CHARS = 200


@dataclass
class SyncOutcome:
    """How one sync of one connection ended; error_code None on success."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    full: bool = False
    pages: int = 0
    error_code: str | None = None
    error_message: str | None = None
    provider: str = ""

    @property
    def ok(self) -> bool:
        return self.error_code is None

    def counts(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "full": self.full,
            "pages": self.pages,
        }


@contextmanager
def claimed(connection_id: int) -> Iterator[bool]:
    """True while this process holds the connection's sync lock; False when another sync has it."""
    if db.vendor != "postgresql":
        yield True
        return
    # The sync commits several times, so the lock lives in a transaction of its own, on a second
    # connection, open until the sync ends: a session-level lock would stay behind on whichever
    # server connection PgBouncer lent for that statement.
    holder = db.copy()
    try:
        holder.set_autocommit(False)
        with holder.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [LOCK_CLASS, connection_id % 2**31])
            got = bool(cur.fetchone()[0])
        yield got
    finally:
        with suppress(DatabaseError):  # a lost connection has let the lock go already
            holder.rollback()  # ends the transaction, and the lock with it
        holder.close()


def sync_connection(connection_id: int, *, now: datetime | None = None) -> SyncOutcome:
    """Sync one connection now (the job runner and "Sync now" call this)."""
    now = now or timezone.now()
    with claimed(connection_id) as got:
        if not got:
            calendar_log(
                logging.INFO,
                "calendar sync skipped: another sync of this connection is running",
                error_code="sync_in_progress",
                connection_id=connection_id,
            )
            return SyncOutcome(
                error_code="sync_in_progress", error_message="another sync of this connection is running"
            )
        return _sync_claimed(connection_id, now)


def refusal(conn: Connection | None) -> tuple[str, str] | None:
    """Why this connection may not be synced now (code, message), or None."""
    if conn is None:
        return "not_found", "no such calendar connection"
    if conn.status != Connection.Status.CONNECTED:
        return "not_connected", f"the calendar connection is {conn.status}"
    if not conn.sync_enabled:
        return "sync_disabled", "sync is turned off for this calendar connection"
    try:
        flags.check(Feature.SYNC, provider_id=conn.profile_id, connection_id=conn.pk)
    except CalendarForbidden as exc:
        return exc.code, exc.message
    return None


def _sync_claimed(connection_id: int, now: datetime) -> SyncOutcome:
    with system_scope():
        conn = Connection.objects.filter(pk=connection_id).first()
        refused = refusal(conn)
        if conn is not None and refused is None and conn.sync_needed:
            Connection.objects.filter(pk=conn.pk).update(sync_needed=False)
    if refused is not None or conn is None:
        code, message = refused or ("not_found", "no such calendar connection")
        calendar_log(
            logging.WARNING, f"calendar sync refused: {message}", error_code=code, connection_id=connection_id
        )
        return SyncOutcome(error_code=code, error_message=message, provider=conn.provider if conn else "")
    outcome = SyncOutcome(full=conn.sync_cursor is None, provider=conn.provider)
    try:
        cursor, complete = read_events(conn, outcome, now)
    except Exception as exc:  # a provider error, or Conduit's own bug: recorded, the pass goes on
        record_failure(conn, exc, outcome, now)
        return outcome
    record_success(conn, cursor, complete, outcome, now)
    return outcome


def window_around(now: datetime) -> Window:
    return (
        now - timedelta(days=settings.CALENDAR_SYNC_PAST_DAYS),
        now + timedelta(days=settings.CALENDAR_SYNC_FUTURE_DAYS),
    )


def read_events(conn: Connection, outcome: SyncOutcome, now: datetime) -> tuple[str | None, bool]:
    """Read and store every page; (the cursor to keep, whether the listing completed)."""
    provider = get_calendar_provider(conn.provider)
    window = window_around(now)
    if conn.sync_cursor is None:
        return read_listing(conn, provider, None, window, outcome, now)
    try:
        return read_listing(conn, provider, conn.sync_cursor, window, outcome, now)
    except CursorExpired:
        # committed at once: if the full listing fails too, the next sync still starts full
        with system_scope():
            Connection.objects.filter(pk=conn.pk).update(sync_cursor=None)
        calendar_log(
            logging.INFO,
            "calendar sync cursor expired: running a full sync",
            error_code="full_sync_required",
            **meta(conn),
        )
        outcome.full = True
        return read_listing(conn, provider, None, window, outcome, now)


def read_listing(
    conn: Connection,
    provider: CalendarProvider,
    cursor: str | None,
    window: Window,
    outcome: SyncOutcome,
    now: datetime,
) -> tuple[str | None, bool]:
    seen: set[str] = set()
    page_token: str | None = None
    for _ in range(settings.CALENDAR_SYNC_MAX_PAGES):
        page = fetch(conn.pk, provider, cursor, page_token, window)
        outcome.pages += 1
        store_page(conn, page.events, outcome, now)
        seen.update(e.external_id for e in page.events)
        if page.sync_cursor or not page.next_page:
            if cursor is None:
                outcome.deleted += cancel_unlisted(conn, seen, window, now)
            return page.sync_cursor, True
        page_token = page.next_page
    return cursor, False  # the page cap: the next pass starts this listing again


def fetch(
    connection_id: int, provider: CalendarProvider, cursor: str | None, page: str | None, window: Window
) -> EventPage:
    def call(account: Account) -> EventPage:
        return provider.list_events(account, cursor=cursor, page=page, window=window)

    return tokens.call_with_token(connection_id, call)


def stored_content(event: CalendarEvent) -> dict[str, Any]:
    """The columns kept of an event; a private one is busy time only."""
    private = event.private
    return {
        "ical_uid": event.ical_uid[:255],
        "title": "" if private else event.title[:500],
        "starts_at": event.starts_at,
        "ends_at": event.ends_at,
        "all_day": event.all_day,
        "organizer": "" if private else event.organizer.strip().lower()[:320],
        "attendees": [] if private else sorted({a.strip().lower() for a in event.attendees if a.strip()}),
        "is_private": private,
    }


def apply(row: Event, event: CalendarEvent, now: datetime) -> bool:
    """Bring a stored row up to date in memory; False when nothing it keeps changed."""
    if event.cancelled:
        if row.cancelled:
            return False
        row.cancelled = True
    else:
        content = stored_content(event)
        if not row.cancelled and all(getattr(row, k) == v for k, v in content.items()):
            return False
        for key, value in content.items():
            setattr(row, key, value)
        row.cancelled = False
    row.sync_status, row.last_error = Event.SyncStatus.CREATED, None
    row.provider_updated_at, row.updated_at = event.updated_at, now
    return True


def store_page(conn: Connection, events: list[CalendarEvent], outcome: SyncOutcome, now: datetime) -> None:
    latest = {e.external_id[:255]: e for e in events if e.external_id}
    if not latest:
        return
    with workspace_scope(conn.workspace_id):
        stored = {
            row.external_id: row
            for row in Event.objects.filter(connection_id=conn.pk, external_id__in=list(latest))
        }
        new: list[Event] = []
        changed: list[Event] = []
        for external_id, event in latest.items():
            row = stored.get(external_id)
            if row is None:
                if not event.cancelled:
                    new.append(
                        Event(
                            workspace_id=conn.workspace_id,
                            profile_id=conn.profile_id,
                            connection_id=conn.pk,
                            external_id=external_id,
                            provider_updated_at=event.updated_at,
                            created_at=now,
                            **stored_content(event),
                        )
                    )
            elif apply(row, event, now):
                changed.append(row)
        if new:
            Event.objects.bulk_create(new)
        if changed:
            Event.objects.bulk_update(changed, fields=list(WRITTEN))
    cancelled = sum(row.cancelled for row in changed)
    outcome.created += len(new)
    outcome.updated += len(changed) - cancelled
    outcome.deleted += cancelled


def cancel_unlisted(conn: Connection, seen: set[str], window: Window, now: datetime) -> int:
    """After a complete full listing: stored live events starting inside its window that it did
    not list are gone at the provider."""
    with workspace_scope(conn.workspace_id):
        live = Event.objects.filter(
            connection_id=conn.pk, cancelled=False, starts_at__gte=window[0], starts_at__lt=window[1]
        ).values_list("pk", "external_id")
        gone = [pk for pk, external_id in live if external_id not in seen]
        for start in range(0, len(gone), 500):
            Event.objects.filter(pk__in=gone[start : start + 500]).update(
                cancelled=True, sync_status=Event.SyncStatus.CREATED, last_error=None, updated_at=now
            )
    return len(gone)


def meta(conn: Connection) -> dict[str, Any]:
    return {"connection_id": conn.pk, "provider_id": conn.profile_id, "provider": conn.provider}


def record_success(
    conn: Connection, cursor: str | None, complete: bool, outcome: SyncOutcome, now: datetime
) -> None:
    fields: dict[str, Any] = {
        "last_synced_at": now,
        "error_count": 0,
        "last_error": None,
        "backoff_until": None,
        "sync_cursor": cursor,
        "updated_at": now,
    }
    if not complete:
        fields["sync_needed"] = True
    elif outcome.full:
        fields["full_sync_count"] = F("full_sync_count") + 1
    with system_scope():
        Connection.objects.filter(pk=conn.pk).update(**fields)
    calendar_log(
        logging.INFO,
        "calendar synced" if complete else "calendar synced in part: page cap reached, continues next pass",
        **meta(conn),
        **outcome.counts(),
    )


def describe(exc: Exception) -> tuple[str, str]:
    """(error_code, short message) of a failure; the message never quotes a token."""
    if isinstance(exc, ProviderError):
        message = exc.message or type(exc).__doc__ or exc.code
        if isinstance(exc, RateLimited):
            message = f"rate limited; retry after {int(exc.retry_after)}s"
        return exc.code, redact_text(message.strip().splitlines()[0])[:MESSAGE_CHARS]
    if isinstance(exc, ConduitError):  # e.g. tokens.NotConnected: a sentence meant for people
        return exc.error_code, redact_text(exc.user_message)[:MESSAGE_CHARS]
    return "internal_error", f"{type(exc).__name__} (details in the logs)"


def backoff_seconds(error_count: int) -> float:
    base, cap = settings.CALENDAR_BACKOFF_BASE_SECONDS, settings.CALENDAR_BACKOFF_CAP_SECONDS
    return float(min(cap, base * 2 ** min(max(error_count - 1, 0), 30)))


def record_failure(conn: Connection, exc: Exception, outcome: SyncOutcome, now: datetime) -> None:
    code, message = describe(exc)
    outcome.error_code, outcome.error_message = code, message
    with system_scope():
        row = Connection.objects.select_for_update().get(pk=conn.pk)
        row.error_count += 1
        row.sync_needed = True
        fields = ["error_count", "sync_needed", "updated_at"]
        if isinstance(exc, AuthRevoked):
            if row.status == Connection.Status.CONNECTED:  # tokens.py did not already say so
                row.status, row.last_error = Connection.Status.ERROR, code  # the card's "reconnect" key
                fields += ["status", "last_error"]
        else:
            delay = backoff_seconds(row.error_count)
            if isinstance(exc, RateLimited):
                delay = max(delay, float(exc.retry_after))
            row.last_error = f"{code}: {message}"[:500]
            row.backoff_until = now + timedelta(seconds=delay)
            fields += ["last_error", "backoff_until"]
        row.save(update_fields=fields)
    extra = {} if isinstance(exc, ProviderError) else {"failure": failure_frames(exc)}
    calendar_log(
        logging.ERROR,
        f"calendar sync failed: {message}",
        error_code=code,
        **meta(conn),
        **outcome.counts(),
        error_count=row.error_count,
        **extra,
    )
