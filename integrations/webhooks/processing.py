"""Processing stored webhook events (a task, never the request that received them), the backlog
sweep that retries failures, and operator replay (runbook 003, "Replay Failed Webhooks").

A batch of locked events is processed with set-based statements: one query finds the events
already processed that say the same thing (the duplicate check), one reads the connections of
every account in the batch, the effects run in one savepoint, and one UPDATE records every
event's outcome. If anything in the batch fails, the batch is done again one event at a time, so
only the failing event is marked failed. A burst then costs a few statements per batch, not
several per event."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from conduit.audit import record_audit
from conduit.logging import log_failure
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from integrations.models import CrmConnection, WebhookEvent
from integrations.providers.metrics import WEBHOOK_EVENTS, WEBHOOK_LATENCY
from integrations.webhooks.effects import Effect, effect_of

log = logging.getLogger("conduit.webhooks")
Status = WebhookEvent.Status
BATCH = 500
# a received event the on-commit dispatch has not picked up after this long is swept up
DISPATCH_GRACE = timedelta(minutes=1)


class WebhookEventNotFound(ConduitError):
    error_code = "not_found"


class NothingToReplay(ConduitError):
    error_code = "invalid"


@dataclass
class Processed:
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


DuplicateKey = tuple[str, str, str, str, datetime, str | None]


def duplicate_key(event: WebhookEvent) -> DuplicateKey | None:
    """What two events that say the same thing share; None for an event that has no moment or
    object (never a duplicate)."""
    if event.occurred_at is None or not event.object_id:
        return None
    prop = event.payload.get("propertyName") if isinstance(event.payload, dict) else None
    return (
        event.provider,
        event.external_account_key,
        event.object_id,
        event.event_type,
        event.occurred_at,
        None if prop is None else str(prop),
    )


def processed_twins(events: Sequence[WebhookEvent]) -> dict[DuplicateKey, set[int]]:
    """The processed events (their ids) for each duplicate key of the batch, in one query."""
    keys = {key for e in events if (key := duplicate_key(e))}
    if not keys:
        return {}
    rows = WebhookEvent.objects.filter(
        provider__in={k[0] for k in keys},
        external_account_key__in={k[1] for k in keys},
        object_id__in={k[2] for k in keys},
        occurred_at__in={k[4] for k in keys},
        status=Status.PROCESSED,
    ).values_list(
        "pk", "provider", "external_account_key", "object_id", "event_type", "occurred_at", "payload"
    )
    found: dict[DuplicateKey, set[int]] = {}
    for pk, provider, account, object_id, event_type, occurred_at, payload in rows:
        prop = payload.get("propertyName") if isinstance(payload, dict) else None
        if occurred_at is None:  # pragma: no cover - the filter names a moment
            continue
        key = (provider, account, object_id, event_type, occurred_at, None if prop is None else str(prop))
        if key in keys:
            found.setdefault(key, set()).add(pk)
    return found


def connections_by_account(events: Sequence[WebhookEvent]) -> dict[tuple[str, str], list[CrmConnection]]:
    """Every connection of every account the batch names, in one query."""
    accounts = {(e.provider, e.external_account_key) for e in events if e.external_account_key}
    if not accounts:
        return {}
    found: dict[tuple[str, str], list[CrmConnection]] = {account: [] for account in accounts}
    for conn in CrmConnection.objects.filter(
        crm__in={a[0] for a in accounts},
        external_account_key__in={a[1] for a in accounts},
        workspace__isnull=False,
    ).order_by("pk"):
        if (conn.crm, conn.external_account_key) in found:
            found[(conn.crm, conn.external_account_key)].append(conn)
    return found


def apply_batch(events: Sequence[WebhookEvent]) -> list[tuple[str, str]]:
    """(status, note) per event, in order, with the batch's effects run: the events of one kind
    for one connection together (effects.py says why their order does not matter). The outcomes
    are those of `apply` one event after the other: an event is a duplicate of one processed
    before it, in the database or earlier in the batch."""
    twins = processed_twins(events)
    connections = connections_by_account(events)
    outcomes: list[tuple[str, str]] = []
    grouped: dict[tuple[Effect, int], tuple[CrmConnection, list[dict[str, Any]]]] = {}
    for event in events:
        key = duplicate_key(event)
        holders = twins.setdefault(key, set()) if key else set()
        if holders - {event.pk}:
            holders.discard(event.pk)  # a replayed event that was processed is now the duplicate
            outcomes.append((Status.DUPLICATE, ""))
            continue
        holders.add(event.pk)
        effect = effect_of(event)
        if effect is None:
            outcomes.append((Status.PROCESSED, f"ignored: no effect for {event.event_type}"[:500]))
            continue
        conns = connections.get((event.provider, event.external_account_key), [])
        if not conns:
            outcomes.append((Status.PROCESSED, "ignored: no connection for this account"))
            continue
        for conn in conns:
            grouped.setdefault((effect, conn.pk), (conn, []))[1].append(event.payload)
        outcomes.append((Status.PROCESSED, ""))
    for (effect, _), (conn, payloads) in grouped.items():
        effect(conn, payloads)
    return outcomes


def record_outcome(event: WebhookEvent, status: str, note: str, now: datetime) -> None:
    """The event's new state (not saved) and its metrics."""
    first_time = event.processed_at is None
    event.status, event.error, event.processed_at = status, note, now
    event.attempts += 1
    WEBHOOK_EVENTS.labels(provider=event.provider, outcome=status).inc()
    if first_time and status != Status.FAILED:
        WEBHOOK_LATENCY.labels(provider=event.provider).observe(
            max((now - event.received_at).total_seconds(), 0.0)
        )


def process_batch(events: Sequence[WebhookEvent], *, now: datetime) -> list[str]:
    """Process locked events together; if the batch fails, one at a time (process_one)."""
    try:
        with transaction.atomic():
            outcomes = apply_batch(events)
    except Exception:  # which event failed is found by doing them one at a time
        return [process_one(event, now=now) for event in events]
    for event, (status, note) in zip(events, outcomes, strict=True):
        record_outcome(event, status, note, now)
    WebhookEvent.objects.bulk_update(events, ["status", "error", "processed_at", "attempts"])
    return [status for status, _ in outcomes]


def process_one(event: WebhookEvent, *, now: datetime) -> str:
    try:
        with transaction.atomic():
            [(status, note)] = apply_batch([event])
    except Exception as exc:  # any failure is the event's, not the batch's: record it, retry later
        log_failure(
            log,
            "webhook event %s of %s failed",
            event.event_id,
            event.provider,
            exc=exc,
            category="webhook",
            error_code="processing_failed",
        )
        status, note = Status.FAILED, f"{type(exc).__name__}: processing failed"
    record_outcome(event, status, note, now)
    event.save(update_fields=["status", "error", "processed_at", "attempts"])
    return status


def process_events(ids: Iterable[int], *, statuses: Iterable[str] = (Status.RECEIVED,)) -> Processed:
    """Process the given events still in one of `statuses`. Rows another worker holds are
    skipped (SKIP LOCKED), so each event is processed once however many tasks name it."""
    ids, result = list(ids), Processed()
    for start in range(0, len(ids), BATCH):
        with transaction.atomic(), system_scope():
            rows = list(
                WebhookEvent.objects.select_for_update(skip_locked=True)
                .filter(pk__in=ids[start : start + BATCH], status__in=list(statuses))
                .order_by("occurred_at", "pk")
            )
            if rows:
                result.statuses.update(process_batch(rows, now=timezone.now()))
    return result


def process_delivered(ids: Iterable[int]) -> Processed:
    """A delivery's events, and with them (up to a batch) the other received events waiting
    behind them: in a burst one task drains many deliveries in one batch, and the tasks of the
    deliveries it took find their events done (the status filter) and return at once."""
    ids = list(ids)
    with system_scope():
        waiting = list(
            WebhookEvent.objects.filter(status=Status.RECEIVED)
            .exclude(pk__in=ids)
            .order_by("received_at", "pk")
            .values_list("pk", flat=True)[: max(BATCH - len(ids), 0)]
        )
    return process_events([*ids, *waiting])


def backlog_ids(*, now: datetime, limit: int) -> list[int]:
    """Received events nobody picked up, and failed ones with attempts left, oldest first."""
    with system_scope():
        stuck = WebhookEvent.objects.filter(status=Status.RECEIVED, received_at__lt=now - DISPATCH_GRACE)
        retry = WebhookEvent.objects.filter(
            status=Status.FAILED, attempts__lt=settings.CONDUIT_WEBHOOK_MAX_ATTEMPTS
        )
        return list((stuck | retry).order_by("received_at", "pk").values_list("pk", flat=True)[:limit])


def process_backlog(*, now: datetime | None = None, limit: int = 5000) -> Processed:
    ids = backlog_ids(now=now or timezone.now(), limit=limit)
    return process_events(ids, statuses=(Status.RECEIVED, Status.FAILED))


@dataclass(frozen=True)
class Replayed:
    replayed: int
    statuses: dict[str, int]


def replay_targets(
    provider: str, *, event_id: str | None, since: datetime | None, until: datetime | None
) -> list[WebhookEvent]:
    with system_scope():
        events = WebhookEvent.objects.filter(provider=provider)
        if event_id:
            found = list(events.filter(event_id=event_id))
            if not found:
                raise WebhookEventNotFound(f"no {provider} webhook event with id {event_id}")
            return found
        if since is None:
            raise NothingToReplay("give event_id, or since (and optionally until) to replay failed events")
        until = until or timezone.now()
        if until <= since:
            raise NothingToReplay("until must be later than since")
        return list(events.filter(status=Status.FAILED, received_at__gte=since, received_at__lt=until))


def do_replay_webhooks(
    provider: str,
    *,
    event_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: AbstractBaseUser | str,
) -> Replayed:
    """Process one stored event again (any status), or every failed event received in
    [since, until). Effects are idempotent, so a replay never doubles anything. Audited."""
    targets = replay_targets(provider, event_id=event_id, since=since, until=until)
    result = process_events([e.pk for e in targets], statuses=list(Status.values))
    workspaces = {e.workspace_id for e in targets}
    with transaction.atomic(), system_scope():
        record_audit(
            "webhook_replayed",
            actor=actor,
            workspace=targets[0].workspace if len(workspaces) == 1 and targets[0].workspace_id else None,
            target=targets[0] if event_id else None,
            payload={
                "provider": provider,
                "event_id": event_id or "",
                "since": since.isoformat() if since else "",
                "until": until.isoformat() if until else "",
                "replayed": result.total,
                "statuses": dict(result.statuses),
            },
        )
    return Replayed(replayed=result.total, statuses=dict(result.statuses))
