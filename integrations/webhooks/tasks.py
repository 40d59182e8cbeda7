"""Celery tasks of the webhook inbox (registered through integrations/tasks.py)."""

from __future__ import annotations

from celery import shared_task

from integrations.webhooks import processing


@shared_task(name="integrations.process_webhook_events", acks_late=True)
def process_webhook_events(event_ids: list[int]) -> dict[str, int]:
    """Queued by the inbox once a delivery's rows have committed; takes the other received
    events waiting behind them too (processing.process_delivered)."""
    return dict(processing.process_delivered(event_ids).statuses)


@shared_task(name="integrations.process_webhook_backlog", acks_late=True)
def process_webhook_backlog() -> dict[str, int]:
    """Every 5 minutes (beat): events whose dispatch was lost, and failures with attempts left."""
    return dict(processing.process_backlog().statuses)
