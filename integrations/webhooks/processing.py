"""Processing stored webhook events (a task, never the request that received them), the backlog
sweep that retries failures, and operator replay (runbook 003, "Replay Failed Webhooks")."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from conduit.audit import record_audit
from conduit.logging import log_failure
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from integrations.models import WebhookEvent
from integrations.providers.metrics import WEBHOOK_EVENTS, WEBHOOK_LATENCY
from integrations.webhooks.effects import connections_for, effect_of

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


def is_duplicate(event: WebhookEvent) -> bool:
    """Another event already processed says the same thing: same account, object, type, property
    and moment (HubSpot can send one change under two subscriptions)."""
    if event.occurred_at is None or not event.object_id:
        return False
    same_property = (
        Q(payload__propertyName=event.payload["propertyName"])
        if "propertyName" in event.payload
        else ~Q(payload__has_key="propertyName")
    )
    return (
        WebhookEvent.objects.filter(
            same_property,
            provider=event.provider,
            external_account_key=event.external_account_key,
            object_id=event.object_id,
            event_type=event.event_type,
            occurred_at=event.occurred_at,
            status=Status.PROCESSED,
        )
        .exclude(pk=event.pk)
        .exists()
    )


def apply(event: WebhookEvent) -> tuple[str, str]:
    """(status, note) after running the event's effect on every connection of its account."""
    if is_duplicate(event):
        return Status.DUPLICATE, ""
    effect = effect_of(event)
    if effect is None:
        return Status.PROCESSED, f"ignored: no effect for {event.event_type}"[:500]
    connections = connections_for(event)
    if not connections:
        return Status.PROCESSED, "ignored: no connection for this account"
    for conn in connections:
        effect(conn, event.payload)
    return Status.PROCESSED, ""


def process_one(event: WebhookEvent, *, now: datetime) -> str:
    first_time = event.processed_at is None
    try:
        with transaction.atomic():
            status, note = apply(event)
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
    event.status, event.error, event.processed_at = status, note, now
    event.attempts += 1
    event.save(update_fields=["status", "error", "processed_at", "attempts"])
    WEBHOOK_EVENTS.labels(provider=event.provider, outcome=status).inc()
    if first_time and status != Status.FAILED:
        WEBHOOK_LATENCY.labels(provider=event.provider).observe(
            max((now - event.received_at).total_seconds(), 0.0)
        )
    return status


def process_events(ids: Iterable[int], *, statuses: Iterable[str] = (Status.RECEIVED,)) -> Processed:
    """Process the given events still in one of `statuses`. Rows another worker holds are
    skipped (SKIP LOCKED), so each event is processed once however many tasks name it."""
    ids, result = list(ids), Processed()
    for start in range(0, len(ids), BATCH):
        with transaction.atomic(), system_scope():
            rows = (
                WebhookEvent.objects.select_for_update(skip_locked=True)
                .filter(pk__in=ids[start : start + BATCH], status__in=list(statuses))
                .order_by("occurred_at", "pk")
            )
            for event in rows:
                result.statuses[process_one(event, now=timezone.now())] += 1
    return result


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
