"""Celery tasks of connection health (registered through integrations/tasks.py); each calls one
service, which the reconcile_connections command calls too."""

from __future__ import annotations

from celery import shared_task

from integrations.health.checks import run_checks, schedule_checks


@shared_task(name="integrations.reconcile_connections", acks_late=True)
def reconcile_connections() -> int:
    """Hourly (beat): queue every connected connection's check, spread over the hour."""
    return schedule_checks(
        lambda ids, countdown: check_connections.apply_async(args=(ids,), countdown=countdown)
    )


# A wave waits on the providers; its own limits, so a slow CRM cannot trip the global ones.
@shared_task(name="integrations.check_connections", acks_late=True, soft_time_limit=900, time_limit=960)
def check_connections(connection_ids: list[int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in run_checks(connection_ids):
        counts[result.status] = counts.get(result.status, 0) + 1
    return counts
