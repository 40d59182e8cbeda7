"""Celery tasks of the incremental pull (registered through integrations/tasks.py)."""

from __future__ import annotations

from celery import shared_task

from integrations.cursors import pull


@shared_task(name="integrations.pull_sync_cursors", acks_late=True)
def pull_sync_cursors() -> dict[str, int]:
    """Every 15 minutes (beat): read what changed at the CRMs since each cursor."""
    return pull.pull_sync_cursors().as_dict()
