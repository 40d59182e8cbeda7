"""The delivery tasks: a claimed group of writes or one write handed to delivery, and the contact
lookups of dry-run writes.

Whatever hands work over imports these (queue.py, planning.py), and reconcile/tasks.py imports
them so that Celery's autodiscovery registers them; they import only what does the work, so
nothing loops back here.
"""

from __future__ import annotations

from collections import Counter

from celery import shared_task
from django.conf import settings

from reconcile import delivery, mapping


def _come_back(write_id: int, outcome: delivery.Outcome) -> None:
    """Short waits come back by themselves; longer ones wait in next_retry_at for reconcile."""
    if outcome.retry_in is not None and outcome.retry_in <= settings.CONDUIT_WRITE_REQUEUE_MAX_SECONDS:
        deliver_crm_write.apply_async((write_id,), countdown=outcome.retry_in + 1)


@shared_task(name="reconcile.deliver_crm_write", acks_late=True)
def deliver_crm_write(write_id: int, lease_token: str = "") -> str:
    outcome = delivery.deliver_write(write_id, lease_token)
    _come_back(write_id, outcome)
    return outcome.code


# Not requeued when its worker is lost (CELERY_TASK_REJECT_ON_WORKER_LOST holds for the others):
# the group's sent writes are outcome_unknown for their marker lookup, which must wait until the
# CRM's search sees them; their leases expire and the reconcile sweep brings them back then.
@shared_task(name="reconcile.deliver_crm_writes", acks_late=True, reject_on_worker_lost=False)
def deliver_crm_writes(write_ids: list[int], lease_token: str) -> dict[str, int]:
    """A group claimed together (reconcile's hand_over); returns how many had each outcome."""
    outcomes = delivery.deliver_writes(write_ids, lease_token)
    for write_id, outcome in outcomes.items():
        _come_back(write_id, outcome)
    return dict(Counter(o.code for o in outcomes.values()))


@shared_task(name="reconcile.resolve_dry_run_targets", acks_late=True)
def resolve_dry_run_targets(write_ids: list[int]) -> int:
    return mapping.resolve_targets(write_ids)
