"""Delivery of one write: claim it, check it may go, resolve the contact, send it, record the
outcome by error class.

Never doubled: just before the send the row is committed with outcome_unknown=true. If the
worker dies, or the send times out, that flag stays; the next attempt first looks the record
up at the provider by its marker and only sends when it is not there.

Every finishing update is guarded by the lease token, so a worker whose lease was swept
cannot overwrite the row another worker now holds.

A claimed group (`deliver_writes`, one Celery task) is read in one statement and each write is
sent as above: its outcome_unknown commit just before its send holds only if nothing holds the
write back and its lease is live at that moment (a pause, the switch or an expired lease set
since stops it), and it extends the lease. The group's successes
(one statement) and the sync log rows of its calls (one INSERT) are stored when the group ends,
also when it stops early. A worker that dies before that leaves its sent writes outcome_unknown:
once their leases expire they are looked up by their marker, never sent again.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from conduit.audit import record_audit
from conduit.logging import log_failure
from conduit.prepared import Prepared, update_row
from conduit.secrets_scan import redact_text
from conduit.tenancy import system_scope
from integrations.connections.pauses import pause_covers
from integrations.connections.tenant_switch import switched_off
from integrations.connections.tokens import NotConnected, call_with_token, mark_scope_missing
from integrations.models import CrmConnection, SyncLog
from integrations.providers import get_provider
from integrations.providers.base import Account, Activity
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    Permanent,
    ProviderError,
    RateLimited,
    TokenExpired,
    Transient,
)
from integrations.providers.synclog import held_rows, write_held
from reconcile import backoff
from reconcile.curation import is_dry_run
from reconcile.mapping import cached_with, from_columns, resolve
from reconcile.models import CrmWriteLog

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

log = logging.getLogger("conduit.reconcile")
Clock = Callable[[], datetime]
ACTOR = "system:reconcile"
Status = CrmWriteLog.Status


@dataclass(frozen=True)
class Outcome:
    code: str
    retry_in: float | None = None  # seconds until the write may be tried again, when known


def new_lease_token() -> str:
    return secrets.token_hex(16)


class Holds(TypedDict):
    paused: bool  # a pause covers the write's connection (pauses.pause_for)
    switched_off: bool  # its workspace's integration is off (tenant_switch.is_enabled)
    mapping: dict[str, Any] | None  # its cached contact mapping (mapping.cached_with)


def _with_holds() -> QuerySet[CrmWriteLog]:
    return CrmWriteLog.objects.select_related("connection", "workspace").annotate(
        paused=pause_covers("connection"),
        switched_off=switched_off("connection"),
        mapping=cached_with(),
    )


def _leased(write_id: int, lease_token: str) -> QuerySet[CrmWriteLog]:
    return _with_holds().filter(pk=write_id, status=Status.SENDING, lease_token=lease_token)


def _leased_group(write_ids: str, lease_token: str) -> QuerySet[CrmWriteLog]:
    return (
        _with_holds()
        .filter(pk__in_json=write_ids, status=Status.SENDING, lease_token=lease_token)
        .order_by("connection_id", "pk")  # the claim's order
    )


_LEASED = Prepared(_leased, write_id=int, lease_token=str)


def _sendable(write_id: int) -> QuerySet[CrmWriteLog]:
    """The write, if nothing holds it back now and its lease has not expired (database time)."""
    return (
        CrmWriteLog.objects.alias(paused=pause_covers("connection"), switched_off=switched_off("connection"))
        .filter(
            pk=write_id,
            connection__status=CrmConnection.Status.CONNECTED,
            connection__dry_run=False,
            paused=False,
            switched_off=False,
        )
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__gt=Now()))
        .only("id")
    )


_SENDABLE = Prepared(_sendable, write_id=int)
_LEASED_GROUP = Prepared(_leased_group, write_ids=str, lease_token=str)  # write_ids: a JSON list


def _fetch(write_id: int, lease_token: str) -> WithAnnotations[CrmWriteLog, Holds] | None:
    """The leased row with its connection and workspace, whether a pause or the tenant switch
    holds it back and its cached contact mapping, read in one statement at the start of this
    delivery (compiled once)."""
    return _LEASED.first(write_id=write_id, lease_token=lease_token)  # type: ignore[return-value]


def claim(
    write_id: int, *, now: datetime, lease_token: str = ""
) -> WithAnnotations[CrmWriteLog, Holds] | None:
    """The row, leased to this worker. With a lease_token the caller (reconcile) claimed it
    already; without one the row is claimed here, only if it is due (status guard)."""
    with system_scope():
        if lease_token:
            return _fetch(write_id, lease_token)
        token = new_lease_token()
        taken = CrmWriteLog.objects.filter(
            Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now),
            pk=write_id,
            status__in=[Status.PLANNED, Status.FAILED],
            permanent_failure=False,
        ).update(
            status=Status.SENDING,
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=settings.CONDUIT_WRITE_LEASE_SECONDS),
            updated_at=now,
        )
        return _fetch(write_id, token) if taken else None


def _finish(
    row: CrmWriteLog,
    now: datetime,
    audit: tuple[str, dict[str, Any]] | None = None,
    **fields: Any,
) -> bool:
    """Apply the outcome and end the lease, if this worker still holds it; audit in the same
    transaction."""
    fields.update(lease_token="", lease_expires_at=None)
    with system_scope():
        done = update_row(
            CrmWriteLog,
            where={"pk": row.pk, "status": Status.SENDING, "lease_token": row.lease_token},
            values={"updated_at": now, **fields},
        )
        if done and audit is not None:
            event, payload = audit
            record_audit(event, actor=ACTOR, workspace=row.workspace, target=row, payload=payload)
    if not done:
        _lease_lost(row.pk)
    return bool(done)


def _lease_lost(write_id: int) -> None:
    log.warning(
        "write %s: lease lost before its outcome was recorded",
        write_id,
        extra={"category": "reconcile", "error_code": "lease_lost"},
    )


def _queued_status(row: CrmWriteLog) -> str:
    return Status.FAILED if row.last_error_code or row.retry_count else Status.PLANNED


def release(row: CrmWriteLog, now: datetime, code: str, *, park: bool = False) -> Outcome:
    """Hand the row back untouched (pause, connection not usable): no attempt is counted.
    `park` takes it out of the due range (next_retry_at NULL) until its connection is live
    again (reconcile brings it back), so claims do not step over it meanwhile."""
    _finish(row, now, status=_queued_status(row), next_retry_at=None if park else row.next_retry_at or now)
    return Outcome(code)


def activity_for(row: CrmWriteLog, contact_id: str, deal_id: str) -> Activity:
    """The write's Activity from its curated payload; a meeting (create_meeting) also carries
    its end and attendees."""
    data = row.payload
    due, ends = data.get("due_at"), data.get("ends_at")
    return Activity(
        subject=str(data["subject"]),
        text=str(data["text"]),
        occurred_at=datetime.fromisoformat(data["occurred_at"]),
        contact_id=contact_id,
        marker=row.marker,
        deal_id=deal_id or None,
        due_at=datetime.fromisoformat(due) if due else None,
        ends_at=datetime.fromisoformat(ends) if ends else None,
        attendees=tuple(str(a) for a in data.get("attendees") or ()),
    )


def _refused(sent: bool) -> dict[str, Any]:
    """A refusal of the send itself (429, 401, 403) means the provider did not create it."""
    return {"outcome_unknown": False} if sent else {}


def _error_fields(exc: ProviderError) -> dict[str, Any]:
    return {"last_error_code": exc.code[:100], "last_error_message": redact_text(exc.message or "")[:500]}


def deliver_write(write_id: int, lease_token: str = "", *, now: Clock = timezone.now) -> Outcome:
    row = claim(write_id, now=now(), lease_token=lease_token)
    if row is None:
        return Outcome("not_claimed")
    return _deliver_guarded(row, now)


def deliver_writes(
    write_ids: Sequence[int], lease_token: str, *, now: Clock = timezone.now
) -> dict[int, Outcome]:
    """Deliver a group claimed together under `lease_token`: read in one statement, each write
    sent as deliver_write sends it, the successes and the calls' sync log rows stored when the
    group ends. Returns each id's outcome (not_claimed: no longer leased)."""
    with system_scope():
        rows = _LEASED_GROUP.all(write_ids=json.dumps([int(i) for i in write_ids]), lease_token=lease_token)
    outcomes = dict.fromkeys(write_ids, Outcome("not_claimed"))
    done: list[_Success] = []
    with held_rows() as logs, _holding(done):
        try:
            for row in rows:
                outcomes[row.pk] = _deliver_guarded(row, now)  # type: ignore[arg-type]
        finally:
            _store_group(logs, done)
    return outcomes


@dataclass(frozen=True)
class _Success:
    write_id: int
    lease_token: str
    external_id: str
    at: datetime


_held_successes: ContextVar[list[_Success] | None] = ContextVar("conduit_successes_held", default=None)


@contextmanager
def _holding(done: list[_Success]) -> Iterator[None]:
    token = _held_successes.set(done)
    try:
        yield
    finally:
        _held_successes.reset(token)


# one statement for a group's successes, each guarded by its lease as _finish guards one
_SUCCEEDED = """
WITH done (id, lease_token, external_id, at) AS (VALUES {rows})
UPDATE crm_write_log SET status = %s, external_id = done.external_id, sent_at = done.at,
  updated_at = done.at, outcome_unknown = false, next_retry_at = NULL, last_error_code = '',
  last_error_message = '', lease_token = '', lease_expires_at = NULL
FROM done WHERE crm_write_log.id = done.id AND crm_write_log.status = %s
  AND crm_write_log.lease_token = done.lease_token
RETURNING crm_write_log.id"""


def _store_group(logs: list[SyncLog], done: list[_Success]) -> None:
    """The successes in one statement, then the sync logs in their own transaction (a log row
    that fails, its connection deleted meanwhile say, never holds back the outcomes)."""
    try:
        _store_successes(done)
    finally:
        write_held(logs)


def _store_successes(done: list[_Success]) -> None:
    if not done:
        return
    with system_scope():
        params: list[Any] = []
        for item in done:
            at = connection.ops.adapt_datetimefield_value(item.at)
            params += [item.write_id, item.lease_token, item.external_id[:100], at]
        rows = ", ".join(["(%s, %s, %s, %s)"] * len(done))
        with connection.cursor() as cur:
            cur.execute(_SUCCEEDED.format(rows=rows), [*params, Status.SUCCEEDED, Status.SENDING])
            stored = {r[0] for r in cur.fetchall()}
    for item in done:
        if item.write_id not in stored:
            _lease_lost(item.write_id)


def _deliver_guarded(row: WithAnnotations[CrmWriteLog, Holds], now: Clock) -> Outcome:
    try:
        return _deliver(row, now)
    except Exception as exc:  # the delivery boundary: a bug must cost an attempt, not loop forever
        log_failure(
            log,
            "write %s: delivery failed unexpectedly",
            row.pk,
            exc=exc,
            category="reconcile",
            error_code="internal_error",
        )
        error = Transient(row.provider, "internal_error", type(exc).__name__)
        outcome = schedule_retry(row, error, now(), sent=True)  # it may have gone out: look before resending
        if isinstance(exc, SoftTimeLimitExceeded):
            raise  # the task's time is up: the rest of its group waits for the lease sweep
        return outcome


def _hold(row: WithAnnotations[CrmWriteLog, Holds], now: Clock) -> Outcome | None:
    """What holds the write back (dry run, a connection not usable, a pause, the tenant switch),
    recorded; None when nothing does."""
    conn = row.connection
    if is_dry_run(conn):
        _finish(row, now(), status=Status.DRY_RUN, next_retry_at=None)
        return Outcome("dry_run")
    if conn.status != CrmConnection.Status.CONNECTED:
        return release(row, now(), "waiting_for_connection", park=True)
    if row.paused:
        return release(row, now(), "paused")
    if row.switched_off:
        return release(row, now(), "integration_disabled")
    return None


def _mark_sending(
    row: WithAnnotations[CrmWriteLog, Holds], at: datetime, payload: dict[str, Any]
) -> Outcome | None:
    """Commit outcome_unknown (and the payload) just before the send and extend the lease from
    now, only if this worker still holds the lease, it has not expired and nothing holds the
    write back at this moment (`_SENDABLE`: a row read with its group may be seconds old, and a
    pause, the switch, dry run or a connection gone since must stop the send). None when marked;
    otherwise the hold, recorded, or lease_lost."""
    with system_scope():
        marked = update_row(
            CrmWriteLog,
            where={"pk": row.pk, "status": Status.SENDING, "lease_token": row.lease_token},
            values={
                "updated_at": at,
                "payload": payload,
                "outcome_unknown": True,
                "lease_expires_at": at + timedelta(seconds=settings.CONDUIT_WRITE_LEASE_SECONDS),
            },
            pk_in=_SENDABLE.statement(write_id=row.pk),
        )
        fresh = None if marked else _fetch(row.pk, row.lease_token)  # held back, or not ours?
    if marked:
        return None
    live = fresh is not None and (fresh.lease_expires_at is None or fresh.lease_expires_at > at)
    held = _hold(fresh, lambda: at) if live and fresh is not None else None
    if held is not None:
        return held
    _lease_lost(row.pk)  # swept or about to be: another worker may hold it now
    return Outcome("lease_lost")


def _deliver(row: WithAnnotations[CrmWriteLog, Holds], now: Clock) -> Outcome:
    conn = row.connection
    if (held := _hold(row, now)) is not None:
        return held
    sent = False
    try:
        mapping = resolve(conn, row.target, now=now(), known=from_columns(conn, row.target, row.mapping))
        if not mapping.contact_id:
            _finish(
                row,
                now(),
                status=Status.SKIPPED,
                next_retry_at=None,
                last_error_code="no_matching_contact",
                last_error_message=f"no {conn.get_crm_display()} contact has this email",
            )
            return Outcome("no_matching_contact")
        activity = activity_for(row, mapping.contact_id, mapping.deal_id)
        provider = get_provider(conn.crm)
        if row.outcome_unknown:
            found = call_with_token(
                conn.pk, lambda a: provider.find_write(a, row.operation, activity), loaded=conn
            )
            if found:
                return succeed(row, found, now(), recovered=True)
        payload = {**row.payload, "contact_id": mapping.contact_id, "deal_id": mapping.deal_id}
        if (refused := _mark_sending(row, now(), payload)) is not None:
            return refused
        sent = True

        def send(account: Account) -> str:
            return provider.write(account, row.operation, activity)

        external_id = call_with_token(conn.pk, send, loaded=conn)  # conn: read with the row
    except RateLimited as exc:
        wait = max(exc.retry_after, 1.0)
        known = _refused(sent)
        _finish(
            row,
            now(),
            status=Status.FAILED,
            next_retry_at=now() + timedelta(seconds=wait),
            **known,
            **_error_fields(exc),
        )
        return Outcome("rate_limited", retry_in=wait)
    except (AuthRevoked, TokenExpired, NotConnected) as exc:
        code = exc.error_code if isinstance(exc, NotConnected) else exc.code
        known = _refused(sent)
        _finish(
            row,
            now(),
            status=Status.FAILED,
            next_retry_at=None,  # parked until the connection is live again
            last_error_code=code,
            last_error_message="waiting for the connection to be reconnected",
            **known,
        )
        return Outcome("waiting_for_connection")
    except MissingScope as exc:
        mark_scope_missing(conn.pk, list(exc.missing), actor=ACTOR)
        known = _refused(sent)
        _finish(row, now(), status=Status.FAILED, next_retry_at=None, **known, **_error_fields(exc))
        return Outcome("waiting_for_connection")
    except Transient as exc:
        return schedule_retry(row, exc, now(), sent=sent)
    except Permanent as exc:
        return mark_permanent(
            row, exc.code, exc.message or "", now(), outcome_unknown=False if sent else row.outcome_unknown
        )
    return succeed(row, external_id, now())


def succeed(row: CrmWriteLog, external_id: str, now: datetime, *, recovered: bool = False) -> Outcome:
    if (held := _held_successes.get()) is not None:
        held.append(_Success(row.pk, row.lease_token, external_id, now))  # stored with the group
    else:
        _finish(
            row,
            now,
            status=Status.SUCCEEDED,
            external_id=external_id[:100],
            sent_at=now,
            outcome_unknown=False,
            next_retry_at=None,
            last_error_code="",
            last_error_message="",
        )
    if recovered:
        log.info(
            "write %s was already at the provider (found by its marker); not sent again",
            row.pk,
            extra={"category": "reconcile", "error_code": "found_by_marker"},
        )
    return Outcome("found_existing" if recovered else "succeeded")


def schedule_retry(row: CrmWriteLog, exc: Transient, now: datetime, *, sent: bool) -> Outcome:
    """A transient failure counts as an attempt; past the bound the write is permanent."""
    attempts = row.retry_count + 1
    if attempts >= settings.CONDUIT_WRITE_MAX_ATTEMPTS:
        return mark_permanent(
            row,
            "max_attempts",
            f"{attempts} failed attempts; last: {exc.code}",
            now,
            retry_count=attempts,
            outcome_unknown=sent or row.outcome_unknown,
        )
    due = backoff.next_retry_at(attempts - 1, now)
    if sent or row.outcome_unknown:
        # the marker lookup comes first next time; give the CRM's search index time to see it
        due = max(due, now + timedelta(seconds=settings.CONDUIT_WRITE_RECHECK_DELAY_SECONDS))
    _finish(
        row,
        now,
        audit=(
            "crm_write_retry_scheduled",
            {
                "write_id": row.pk,
                "provider": row.provider,
                "retry_count": attempts,
                "next_retry_at": due.isoformat(),
                "error_code": exc.code,
            },
        ),
        status=Status.FAILED,
        retry_count=attempts,
        next_retry_at=due,
        **_error_fields(exc),
    )
    return Outcome("retry_scheduled", retry_in=(due - now).total_seconds())


def mark_permanent(
    row: CrmWriteLog,
    code: str,
    message: str,
    now: datetime,
    *,
    retry_count: int | None = None,
    outcome_unknown: bool,
) -> Outcome:
    fields: dict[str, Any] = {"retry_count": retry_count} if retry_count is not None else {}
    _finish(
        row,
        now,
        audit=(
            "crm_write_marked_permanent_failure",
            {
                "write_id": row.pk,
                "provider": row.provider,
                "reason": code,
                "detail": redact_text(message)[:300],
                "retry_count": retry_count if retry_count is not None else row.retry_count,
            },
        ),
        status=Status.FAILED,
        permanent_failure=True,
        next_retry_at=None,
        outcome_unknown=outcome_unknown,
        last_error_code=code[:100],
        last_error_message=redact_text(message)[:500],
        **fields,
    )
    log.warning(
        "write %s is a permanent failure: %s",
        row.pk,
        code,
        extra={"category": "reconcile", "error_code": code},
    )
    return Outcome("permanent_failure")
