"""Celery tasks of the incremental pull (imported by integrations/tasks.py so autodiscovery finds them)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="integrations.pull_sync_cursors", acks_late=True)
def pull_sync_cursors() -> dict[str, int]:
    """Every 15 minutes (beat): read what changed at the CRMs since each cursor."""
    from integrations.cursors.pull import pull_sync_cursors as pull

    return pull().as_dict()
