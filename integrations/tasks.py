"""Thin Celery tasks of the integrations app; each calls one service (the commands call the same)."""

from __future__ import annotations

from importlib import import_module

from celery import shared_task

from integrations.connections import claims


@shared_task(name="integrations.expire_pending_installs", acks_late=True)
def expire_pending_installs() -> int:
    return claims.expire_pending_installs()


@shared_task(name="integrations.reconcile_connections", acks_late=True)
def reconcile_connections() -> int:
    """Hourly (beat): queue every connected connection's check, spread over the hour."""
    from integrations.health.checks import schedule_checks

    return schedule_checks()


# A wave waits on the providers; its own limits, so a slow CRM cannot trip the global ones.
@shared_task(name="integrations.check_connections", acks_late=True, soft_time_limit=900, time_limit=960)
def check_connections(connection_ids: list[int]) -> dict[str, int]:
    from integrations.health.checks import run_checks

    results = run_checks(connection_ids)
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return counts


# The webhook inbox and the incremental pull keep their tasks beside their services; importing
# them here registers them when Celery autodiscovers integrations.tasks.
for _module in ("integrations.cursors.tasks", "integrations.webhooks.tasks"):
    import_module(_module)
