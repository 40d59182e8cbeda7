"""The daily purge task (beat entry "purge retention"); the purge_retention command is its twin."""

from __future__ import annotations

from celery import shared_task

from retention import purge

# A first purge of a large backlog may take long; the run stops before Redis' visibility
# timeout (3600 s) would hand the task to a second worker, and the next run carries on.
SOFT_TIME_LIMIT = 3000
TIME_LIMIT = 3300


class PurgeFailed(Exception):
    """At least one workspace failed (each failure is audited and logged); the task fails."""


@shared_task(
    name="retention.purge_retention", acks_late=True, soft_time_limit=SOFT_TIME_LIMIT, time_limit=TIME_LIMIT
)
def purge_retention() -> str:
    run = purge.purge_retention()
    if run.failed:
        raise PurgeFailed(
            "retention purge failed for "
            + ", ".join(r.workspace_slug for r in run.failed)
            + "; "
            + run.summary()
        )
    return run.summary()
