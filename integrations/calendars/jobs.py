"""The calendar job runner: which connections are due, one pass over them with bounded
concurrency, and "Sync now" from a member's card.

Rules:
- Due: sync enabled, connected, pushed (sync_needed) or stale (never synced, or last synced
  more than CALENDAR_SYNC_STALE_MINUTES ago), not in backoff, and allowed by both allowlists;
  oldest first (never synced first). The query is a UNION of three branches, each one an index
  range of the migration's partial indexes (calendar_conn_pushed, calendar_conn_stale) with its
  own LIMIT, so its cost follows the due rows, not the table.
- A pass syncs at most `limit` (CALENDAR_JOB_BATCH_SIZE) connections, at most
  CALENDAR_JOB_CONCURRENCY at once, each in its own thread with its own database connection
  (closed when the thread's sync ends). A connection another sync holds is skipped (not counted).
- After a successful sync the connection's stored events are processed (linked, planned); a
  processing failure is logged and does not fail the sync. One connection's failure never stops
  the pass.
- The flags: a pass needs CALENDAR_JOBS_ENABLED and CALENDAR_SYNC_ENABLED (CalendarForbidden).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection as db
from django.db import connections, transaction
from django.utils import timezone

from conduit.batch_sql import db_time
from conduit.logging import failure_frames
from conduit.tenancy import system_scope, workspace_scope
from integrations.calendars import flags, processing, sync
from integrations.calendars.flags import Feature
from integrations.calendars.logs import calendar_log
from integrations.calendars.sync import SyncOutcome
from integrations.models import ExternalCalendarConnection

SKIPPED = "sync_in_progress"
# by name: tasks.py imports this module
SYNC_TASK = "integrations.sync_calendar_connection"

# Each branch repeats the partial indexes' predicate literally (sync_enabled AND status =
# 'connected'), so the planner can prove the index applies.
_BRANCH = (
    "SELECT id, last_synced_at FROM (SELECT id, last_synced_at FROM external_calendar_connections"
    " WHERE sync_enabled AND status = 'connected' AND {condition}"
    " AND (backoff_until IS NULL OR backoff_until < %s){allowed} ORDER BY {order} LIMIT %s) AS {name}"
)
_BRANCHES = (
    ("pushed", "sync_needed", "last_synced_at NULLS FIRST, id"),  # calendar_conn_pushed
    ("never", "last_synced_at IS NULL", "id"),  # calendar_conn_stale, its NULL end
    ("stale", "last_synced_at < %s", "last_synced_at"),  # calendar_conn_stale, in index order
)


def allowlist_filter() -> tuple[str, list[int]] | None:
    """The allowlists as SQL; None when they allow nobody."""
    sql, params = "", []
    for column, allowlist in (
        ("provider_id", settings.CALENDAR_ALLOWLIST_PROVIDER_IDS),
        ("id", settings.CALENDAR_ALLOWLIST_CONNECTION_IDS),
    ):
        if "*" in allowlist:
            continue
        ids = [int(v) for v in allowlist if str(v).strip().isdigit()]
        if not ids:
            return None
        sql += f" AND {column} IN ({', '.join(['%s'] * len(ids))})"
        params += ids
    return sql, params


def due_query(now: datetime, limit: int) -> tuple[str, list[Any]] | None:
    """The SQL of due_connections and its parameters; None when the allowlists allow nobody."""
    allowed = allowlist_filter()
    if allowed is None:
        return None
    allowed_sql, allowed_params = allowed
    stale_before = db_time(now - timedelta(minutes=settings.CALENDAR_SYNC_STALE_MINUTES))
    branches, params = [], []
    for name, condition, order in _BRANCHES:
        branches.append(_BRANCH.format(condition=condition, allowed=allowed_sql, order=order, name=name))
        params += [stale_before] if "%s" in condition else []
        params += [db_time(now), *allowed_params, limit]
    sql = (
        "SELECT id FROM ("  # noqa: S608 - built from constants and placeholders only
        + " UNION ".join(branches)
        + ") AS due ORDER BY last_synced_at NULLS FIRST, id LIMIT %s"
    )
    return sql, [*params, limit]


def due_connections(now: datetime, limit: int) -> list[int]:
    """Ids of the connections a pass should sync now, oldest first."""
    query = due_query(now, limit)
    if query is None:
        return []
    with system_scope(), db.cursor() as cur:
        cur.execute(*query)
        return [int(row[0]) for row in cur.fetchall()]


@dataclass
class JobSummary:
    """What one pass did: the `summary` of the endpoint, the command and the task."""

    connections_processed: int = 0
    connections_synced: int = 0
    connections_failed: int = 0
    events_created: int = 0
    events_updated: int = 0
    events_deleted: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, connection_id: int, outcome: SyncOutcome) -> None:
        if outcome.error_code == SKIPPED:
            return
        self.connections_processed += 1
        self.events_created += outcome.created
        self.events_updated += outcome.updated
        self.events_deleted += outcome.deleted
        if outcome.ok:
            self.connections_synced += 1
            return
        self.connections_failed += 1
        self.errors.append(
            {
                "connection_id": connection_id,
                "provider": outcome.provider,
                "error_code": outcome.error_code,
                "message": outcome.error_message or "",
            }
        )


def sync_and_process(connection_id: int, *, now: datetime | None = None) -> SyncOutcome:
    """Sync one connection, then process its stored events; never raises."""
    try:
        outcome = sync.sync_connection(connection_id, now=now)
    except Exception as exc:  # recording the failure itself failed (the database): the pass goes on
        calendar_log(
            logging.ERROR,
            "calendar sync crashed",
            error_code="internal_error",
            connection_id=connection_id,
            failure=f"{type(exc).__name__} at {failure_frames(exc)}",
        )
        return SyncOutcome(error_code="internal_error", error_message=f"{type(exc).__name__} (see the logs)")
    if outcome.ok:
        try:
            processing.process_connection_events(connection_id)
        except Exception as exc:  # the events stay CREATED and are processed after the next sync
            calendar_log(
                logging.ERROR,
                "calendar event processing failed",
                error_code="processing_failed",
                connection_id=connection_id,
                failure=f"{type(exc).__name__} at {failure_frames(exc)}",
            )
    return outcome


def _in_thread(connection_id: int, now: datetime | None) -> SyncOutcome:
    try:
        return sync_and_process(connection_id, now=now)
    finally:
        connections.close_all()


def run_pass(*, limit: int | None = None, now: datetime | None = None) -> JobSummary:
    """One pass of the job runner over the due connections."""
    flags.check(Feature.JOBS)
    flags.check(Feature.SYNC)
    ids = due_connections(now or timezone.now(), limit or settings.CALENDAR_JOB_BATCH_SIZE)
    workers = min(settings.CALENDAR_JOB_CONCURRENCY, len(ids))
    if workers <= 1:
        outcomes = [sync_and_process(i, now=now) for i in ids]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="calendar-sync") as pool:
            outcomes = list(pool.map(partial(_in_thread, now=now), ids))
    summary = JobSummary()
    for connection_id, outcome in zip(ids, outcomes, strict=True):
        summary.add(connection_id, outcome)
    calendar_log(
        logging.ERROR if summary.connections_failed else logging.INFO,
        "calendar job pass done",
        error_code="sync_failed" if summary.connections_failed else "",
        due=len(ids),
        **{k: v for k, v in summary.as_dict().items() if k != "errors"},
    )
    return summary


def enqueue_sync(connection_id: int) -> None:
    """Queue one connection's sync task; a broker that is down loses nothing (the flag stays)."""
    try:
        current_app.send_task(SYNC_TASK, args=[connection_id])
    except Exception as exc:  # the broker is down: sync_needed is set, the next pass picks it up
        calendar_log(
            logging.WARNING,
            "calendar sync could not be queued; the next job pass runs it",
            error_code="enqueue_failed",
            connection_id=connection_id,
            failure=type(exc).__name__,
        )


def request_sync(connection: ExternalCalendarConnection) -> None:
    """ "Sync now": mark the connection due and queue its sync once this transaction commits."""
    flags.check(Feature.SYNC, provider_id=connection.profile_id, connection_id=connection.pk)
    with workspace_scope(connection.workspace_id):
        ExternalCalendarConnection.objects.filter(pk=connection.pk).update(sync_needed=True)
        transaction.on_commit(partial(enqueue_sync, connection.pk))
    calendar_log(
        logging.INFO,
        "calendar sync requested",
        connection_id=connection.pk,
        provider_id=connection.profile_id,
        provider=connection.provider,
    )
