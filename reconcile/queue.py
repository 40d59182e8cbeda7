"""The reconcile queue: sweep expired leases, claim due writes in batches, hand them to delivery.

Rule: no per-row loops in SQL; at most one batch per statement; locked rows are skipped, not
waited on (two runs at once each claim different rows); re-running is safe. A claimed row
carries its batch's lease token, and delivery acts only on a row whose token it holds.

Going live and Retry now do not wait for the ten-minute run: after their transaction commits,
`dispatch_after_commit` claims one batch of the connections' due writes through the same
`claim_due` and hands them over; the run stays the safety net for the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone

from conduit.logging import log_failure
from conduit.tenancy import system_scope
from integrations.connections.pauses import ActivePauses, active_pauses
from integrations.connections.tenant_switch import DISABLED_SQL
from reconcile.delivery import new_lease_token
from reconcile.dispatch import deliver_crm_writes
from reconcile.models import CrmWriteLog

log = logging.getLogger("conduit.reconcile")
Dispatch = Callable[[int, str], Any]  # one write (callers that deliver each write themselves)
GroupDispatch = Callable[[list[int], str], Any]  # a delivery group (by default one Celery task)

DUE_WHERE = f"""
  w.status IN ('failed', 'planned') AND NOT w.permanent_failure AND w.next_retry_at <= %s
  AND c.status = 'connected' AND NOT c.dry_run AND {DISABLED_SQL}"""


def _skip_locked() -> str:
    return " FOR UPDATE OF w SKIP LOCKED" if connection.vendor == "postgresql" else ""


def due_filter(
    pauses: ActivePauses,
    workspace_id: int | None,
    now: datetime,
    connection_ids: Sequence[int] = (),
    write_ids: Sequence[int] = (),
) -> tuple[str, list[Any]]:
    """The WHERE clause of due rows, minus every paused scope (only these connections' or these
    writes when given)."""
    sql: str = DUE_WHERE
    params: list[Any] = [now]
    exclusions: list[tuple[str, list[Any]]] = [
        ("c.crm", list(pauses.providers)),
        ("w.workspace_id", list(pauses.workspaces)),
        ("w.connection_id", list(pauses.connections)),
    ]
    for column, values in exclusions:
        if values:
            sql += f" AND {column} NOT IN ({', '.join(['%s'] * len(values))})"
            params += values
    if workspace_id is not None:
        sql += " AND w.workspace_id = %s"
        params.append(workspace_id)
    if connection_ids:
        sql += f" AND w.connection_id IN ({', '.join(['%s'] * len(connection_ids))})"
        params += list(connection_ids)
    if write_ids:
        sql += f" AND w.id IN ({', '.join(['%s'] * len(write_ids))})"
        params += list(write_ids)
    return sql, params


def claim_due(
    limit: int,
    *,
    pauses: ActivePauses,
    workspace_id: int | None = None,
    connection_ids: Sequence[int] = (),
    write_ids: Sequence[int] = (),
    now: datetime,
) -> tuple[str, list[int]]:
    """Lease up to `limit` due rows in one statement; returns (lease token, ids by connection)."""
    token = new_lease_token()
    where, params = due_filter(pauses, workspace_id, now, connection_ids, write_ids)
    lease_until = now + timedelta(seconds=settings.CONDUIT_WRITE_LEASE_SECONDS)
    sql = f"""
UPDATE crm_write_log SET status = 'sending', lease_token = %s, lease_expires_at = %s, updated_at = %s
WHERE id IN (
  SELECT w.id FROM crm_write_log w JOIN crm_connections c ON c.id = w.connection_id
  WHERE {where}
  ORDER BY w.next_retry_at LIMIT %s{_skip_locked()})
RETURNING connection_id, id"""  # noqa: S608 - only placeholders and fixed column names are interpolated
    with system_scope(), connection.cursor() as cur:
        cur.execute(sql, [token, lease_until, now, *params, limit])
        # by connection, so a delivery group (hand_over) holds one connection's writes, or two:
        # a slow CRM then holds back its own writes, not another's
        ids = [write_id for _conn, write_id in sorted(cur.fetchall())]
    return token, ids


def count_due(*, pauses: ActivePauses, workspace_id: int | None = None, now: datetime) -> int:
    where, params = due_filter(pauses, workspace_id, now)
    sql = (
        f"SELECT count(*) FROM crm_write_log w JOIN crm_connections c ON c.id = w.connection_id WHERE {where}"  # noqa: S608
    )
    with system_scope(), connection.cursor() as cur:
        cur.execute(sql, params)
        return int(cur.fetchone()[0])


SWEEP = """
UPDATE crm_write_log SET status = 'failed', lease_token = '', lease_expires_at = NULL,
  next_retry_at = %s, updated_at = %s,
  last_error_code = CASE WHEN outcome_unknown THEN 'lease_expired_outcome_unknown' ELSE 'lease_expired' END
WHERE id IN (
  SELECT w.id FROM crm_write_log w
  WHERE w.status = 'sending' AND w.lease_expires_at < %s
  ORDER BY w.lease_expires_at LIMIT %s{lock})
RETURNING id"""


def sweep_expired_leases(*, now: datetime, batch_size: int | None = None) -> int:
    """Put rows whose worker vanished back in the queue; their outcome_unknown flag stays, so
    delivery looks them up at the provider before any resend."""
    batch_size = batch_size or settings.CONDUIT_RECONCILE_BATCH_SIZE
    swept = 0
    while True:
        with system_scope(), connection.cursor() as cur:
            cur.execute(SWEEP.format(lock=_skip_locked()), [now, now, now, batch_size])
            count = len(cur.fetchall())
        swept += count
        if count < batch_size:
            return swept


def count_expired_leases(*, now: datetime) -> int:
    with system_scope(), connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM crm_write_log WHERE status = 'sending' AND lease_expires_at < %s", [now]
        )
        return int(cur.fetchone()[0])


LIVE = "SELECT id FROM crm_connections WHERE status = 'connected' AND NOT dry_run"
# Writes of a connection that is not live are parked (next_retry_at NULL): out of the due
# range, so a claim never steps over them; they come back when the connection is live again.
PARK = f"""
UPDATE crm_write_log SET next_retry_at = NULL, updated_at = %s
WHERE status IN ('failed', 'planned') AND NOT permanent_failure AND next_retry_at IS NOT NULL
  AND connection_id IN (SELECT id FROM crm_connections WHERE id NOT IN ({LIVE}))"""  # noqa: S608
UNPARK = f"""
UPDATE crm_write_log SET next_retry_at = %s, updated_at = %s
WHERE status IN ('failed', 'planned') AND NOT permanent_failure AND next_retry_at IS NULL
  AND connection_id IN ({LIVE})"""  # noqa: S608


def park_and_unpark(*, now: datetime) -> tuple[int, int]:
    """(parked, brought back): set-based, driven by the connection (index on connection, status)."""
    with system_scope(), connection.cursor() as cur:
        cur.execute(PARK, [now])
        parked = cur.rowcount
        cur.execute(UNPARK, [now, now])
        return parked, cur.rowcount


@dataclass
class ReconcileResult:
    swept: int = 0
    parked: int = 0
    unparked: int = 0
    due: int = 0
    claimed: int = 0
    paused: str = ""
    batches: list[int] = field(default_factory=list)

    def line(self) -> str:
        text = (
            f"due {self.due}, claimed {self.claimed} in {len(self.batches)} batch(es), "
            f"swept {self.swept} expired lease(s), parked {self.parked} and resumed {self.unparked} "
            "write(s) of connections that left or came back"
        )
        return text + (f"; paused: {self.paused}" if self.paused else "")


def enqueue_group(write_ids: list[int], lease_token: str) -> None:
    deliver_crm_writes.delay(write_ids, lease_token)


def reconcile_crm_writes(
    *,
    workspace_id: int | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    now: Callable[[], datetime] = timezone.now,
    dispatch: Dispatch | None = None,
    dispatch_group: GroupDispatch = enqueue_group,
) -> ReconcileResult:
    """Sweep expired leases, then claim due rows batch by batch (up to `limit`) and hand them
    to delivery in groups (`dispatch_group`), or one by one to `dispatch` when one is given.
    `dry_run` counts what would happen and changes nothing."""
    limit = limit or settings.CONDUIT_RECONCILE_LIMIT
    result = ReconcileResult()
    pauses = active_pauses()
    at = now()
    if dry_run:
        result.swept = count_expired_leases(now=at)
    else:
        result.swept = sweep_expired_leases(now=at)
        result.parked, result.unparked = park_and_unpark(now=at)
    result.due = count_due(pauses=pauses, workspace_id=workspace_id, now=at)
    if pauses.everything is not None:
        result.paused = f"all CRM sync ({pauses.everything.reason})"
    elif settings.CONDUIT_FORCE_DRY_RUN:
        result.paused = "CONDUIT_FORCE_DRY_RUN is on"
    if dry_run or result.paused:
        return result
    batch_size = settings.CONDUIT_RECONCILE_BATCH_SIZE
    while result.claimed < limit:
        pauses = active_pauses()  # a pause set during the run holds the next batch
        if pauses.everything is not None:
            result.paused = f"all CRM sync ({pauses.everything.reason})"
            break
        token, ids = claim_due(
            min(batch_size, limit - result.claimed), pauses=pauses, workspace_id=workspace_id, now=now()
        )
        if not ids:
            break
        result.claimed += len(ids)
        result.batches.append(len(ids))
        hand_over(ids, token, dispatch, dispatch_group)
    log.info("reconcile: %s", result.line(), extra={"category": "reconcile"})
    return result


# A claimed row that could not be handed over goes back to the queue, still due: guarded by its
# lease token, so a message that did reach the broker finds no row to act on ("not_claimed").
RELEASE = """
UPDATE crm_write_log SET lease_token = '', lease_expires_at = NULL, updated_at = %s,
  status = CASE WHEN retry_count > 0 OR last_error_code <> '' THEN 'failed' ELSE 'planned' END
WHERE status = 'sending' AND lease_token = %s AND id IN ({ids})"""


def hand_over(
    ids: list[int],
    token: str,
    dispatch: Dispatch | None = None,
    dispatch_group: GroupDispatch = enqueue_group,
) -> None:
    """Hand the claimed ids over in groups of CONDUIT_DELIVERY_GROUP_SIZE (or one by one to
    `dispatch`); when the broker refuses one, release it and the rest, then raise."""
    size = 1 if dispatch is not None else settings.CONDUIT_DELIVERY_GROUP_SIZE
    for start in range(0, len(ids), size):
        group = ids[start : start + size]
        try:
            if dispatch is not None:
                dispatch(group[0], token)
            else:
                dispatch_group(group, token)
        except Exception:
            release_claims(ids[start:], token, now=timezone.now())
            raise


def release_claims(ids: list[int], token: str, *, now: datetime) -> int:
    with system_scope(), connection.cursor() as cur:
        cur.execute(RELEASE.format(ids=", ".join(["%s"] * len(ids))), [now, token, *ids])
        return cur.rowcount


def _pauses_if_sending() -> ActivePauses | None:
    """The pauses in force, or None when nothing may be sent at all (a global pause,
    CONDUIT_FORCE_DRY_RUN): the at-once dispatches then claim nothing."""
    pauses = active_pauses()
    if pauses.everything is not None or settings.CONDUIT_FORCE_DRY_RUN:
        return None
    return pauses


def dispatch_due_now(
    connection_ids: Iterable[int],
    *,
    now: Callable[[], datetime] = timezone.now,
    dispatch: Dispatch | None = None,
    dispatch_group: GroupDispatch = enqueue_group,
) -> int:
    """Claim these connections' due writes at once, through the reconcile run's own claim (a
    write is leased to one sender, whoever claims first), and dispatch them. At most one batch:
    the rest goes with the next run. Returns how many were claimed."""
    ids = sorted(set(connection_ids))
    pauses = _pauses_if_sending()
    if not ids or pauses is None:
        return 0
    token, claimed = claim_due(
        settings.CONDUIT_RECONCILE_BATCH_SIZE, pauses=pauses, connection_ids=ids, now=now()
    )
    hand_over(claimed, token, dispatch, dispatch_group)
    if claimed:
        log.info(
            "dispatched %d write(s) of connection(s) %s at once",
            len(claimed),
            ids,
            extra={"category": "reconcile"},
        )
    return len(claimed)


def dispatch_writes_now(
    write_ids: Sequence[int],
    *,
    now: Callable[[], datetime] = timezone.now,
    dispatch_group: GroupDispatch = enqueue_group,
) -> int:
    """Claim these writes (newly planned ones) at once through the reconcile run's own claim, those
    still due and not held back (pauses, the connection's state: those wait for the run), and
    hand them over in groups. Returns how many were claimed."""
    pauses = _pauses_if_sending()
    if pauses is None:
        return 0
    ids, claimed, size = sorted(set(write_ids)), 0, settings.CONDUIT_RECONCILE_BATCH_SIZE
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        token, got = claim_due(len(chunk), pauses=pauses, write_ids=chunk, now=now())
        hand_over(got, token, None, dispatch_group)
        claimed += len(got)
    return claimed


def _dispatch_quietly(connection_ids: list[int]) -> None:
    try:
        dispatch_due_now(connection_ids)
    except Exception as exc:  # the boundary: the change has committed; the next run sends them
        log_failure(
            log,
            "dispatching the due writes of connection(s) %s failed; the next reconcile run sends them",
            connection_ids,
            exc=exc,
            category="reconcile",
            error_code="dispatch_failed",
        )


def dispatch_after_commit(connection_ids: Iterable[int]) -> None:
    """Once the caller's transaction commits (at once outside one), dispatch these connections'
    due writes. A rollback dispatches nothing; a failure is logged and left to the reconcile run."""
    ids = sorted(set(connection_ids))
    if ids:
        transaction.on_commit(lambda: _dispatch_quietly(ids))


def next_attempt_at(conn_id: int, *, now: datetime) -> datetime | None:
    """When the connection's next waiting write is due: the earliest next_retry_at of its queued
    writes that are not due yet (a parked write, next_retry_at NULL, has no time)."""
    waiting = CrmWriteLog.objects.filter(
        connection_id=conn_id,
        status__in=[CrmWriteLog.Status.PLANNED, CrmWriteLog.Status.FAILED],
        permanent_failure=False,
        next_retry_at__gt=now,
    )
    earliest: datetime | None = waiting.aggregate(at=Min("next_retry_at"))["at"]
    return earliest


def queue_stats(*, now: datetime) -> dict[str, Any]:
    """The write queue at a glance (runbook 001 §3 "Check queue depth"): due now, the whole
    backlog (queued or retrying, live or parked), how old the oldest due write is, writes in
    flight, expired leases and permanent failures."""
    where, params = due_filter(active_pauses(), None, now)
    with system_scope(), connection.cursor() as cur:
        cur.execute(
            f"SELECT count(*), min(w.next_retry_at) FROM crm_write_log w "  # noqa: S608
            f"JOIN crm_connections c ON c.id = w.connection_id WHERE {where}",
            params,
        )
        due, oldest = cur.fetchone()
        cur.execute(
            """SELECT
                 count(*) FILTER (WHERE status IN ('failed', 'planned') AND NOT permanent_failure),
                 count(*) FILTER (WHERE status IN ('failed', 'planned') AND NOT permanent_failure
                                  AND next_retry_at IS NULL),
                 count(*) FILTER (WHERE status = 'sending'),
                 count(*) FILTER (WHERE status = 'sending' AND lease_expires_at < %s),
                 count(*) FILTER (WHERE status = 'failed' AND permanent_failure)
               FROM crm_write_log WHERE status IN ('failed', 'planned', 'sending')""",
            [now],
        )
        backlog, parked, sending, expired, permanent = cur.fetchone()
    if isinstance(oldest, str):  # SQLite returns the UTC text it stored
        oldest = datetime.fromisoformat(oldest).replace(tzinfo=UTC)
    return {
        "due": int(due),
        "backlog": int(backlog),
        "parked": int(parked),
        "sending": int(sending),
        "expired_leases": int(expired),
        "permanent_failures": int(permanent),
        "oldest_due_age_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
    }
