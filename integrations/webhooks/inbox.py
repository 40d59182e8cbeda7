"""Storing a verified delivery: one webhook_events row per event, unique per provider and event
id. A redelivered event adds to `deliveries` and is not processed again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F

from conduit.tenancy import system_scope
from integrations.models import CrmConnection, WebhookEvent
from integrations.webhooks.events import ParsedEvent


@dataclass(frozen=True)
class Stored:
    new_ids: list[int]  # rows to process
    redelivered: int  # events already in the inbox


def workspaces_by_account(provider: str, keys: set[str]) -> dict[str, int]:
    """The first workspace whose connection names each account (oldest connection wins)."""
    rows = (
        CrmConnection.objects.filter(crm=provider, external_account_key__in=keys, workspace__isnull=False)
        .order_by("-pk")
        .values_list("external_account_key", "workspace_id")
    )
    return dict(rows)  # later (older) rows overwrite newer ones


def store_events(provider: str, events: list[ParsedEvent], *, now: datetime) -> Stored:
    ids = [event.event_id for event in events]
    with transaction.atomic(), system_scope():
        known = set(
            WebhookEvent.objects.filter(provider=provider, event_id__in=ids).values_list(
                "event_id", flat=True
            )
        )
        # in event-id order, so two deliveries of the same events in another order cannot deadlock
        fresh = sorted((event for event in events if event.event_id not in known), key=lambda e: e.event_id)
        workspaces = workspaces_by_account(
            provider, {event.account_key for event in fresh if event.account_key}
        )
        WebhookEvent.objects.bulk_create(
            [
                WebhookEvent(
                    provider=provider,
                    event_id=event.event_id,
                    event_type=event.event_type,
                    external_account_key=event.account_key,
                    object_id=event.object_id,
                    occurred_at=event.occurred_at,
                    workspace_id=workspaces.get(event.account_key),
                    payload=event.payload,
                    received_at=now,
                )
                for event in fresh
            ],
            ignore_conflicts=True,  # a concurrent redelivery of the same event is stored once
        )
        inserted = dict(
            WebhookEvent.objects.filter(
                provider=provider,
                event_id__in=[event.event_id for event in fresh],
                received_at=now,
                status=WebhookEvent.Status.RECEIVED,
            ).values_list("event_id", "pk")
        )
        # known before, or stored meanwhile by a concurrent delivery of the same event
        again = known | {event.event_id for event in fresh if event.event_id not in inserted}
        if again:
            WebhookEvent.objects.filter(provider=provider, event_id__in=again).update(
                deliveries=F("deliveries") + 1
            )
    return Stored(new_ids=list(inserted.values()), redelivered=len(again))
