"""The Celery tasks of reconcile, found here by Celery's autodiscovery: the ten-minute sweep, and
the delivery tasks of dispatch.py (imported so that they register). Each task calls one
service; the management commands call the same ones."""

from __future__ import annotations

from celery import shared_task

from reconcile import dispatch, queue

DELIVERY_TASKS = (dispatch.deliver_crm_writes, dispatch.deliver_crm_write, dispatch.resolve_dry_run_targets)


@shared_task(name="reconcile.reconcile_crm_writes", acks_late=True)
def reconcile_crm_writes() -> int:
    return queue.reconcile_crm_writes().claimed
