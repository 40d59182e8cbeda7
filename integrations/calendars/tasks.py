"""Celery tasks of the calendar room (registered through integrations/tasks.py): the job pass
(beat, every 5 minutes), channel renewal (beat, hourly) and one connection's sync ("Sync now")."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from celery import shared_task

from integrations.calendars import flags, jobs, push
from integrations.calendars.flags import CalendarForbidden, Feature
from integrations.calendars.logs import calendar_log


@shared_task(name="integrations.run_calendar_jobs", acks_late=True)
def run_calendar_jobs() -> dict[str, Any] | None:
    """One pass over the due connections; skipped (one log line) while a flag is off."""
    if not flags.enabled(Feature.JOBS):
        calendar_log(
            logging.INFO,
            "calendar job pass skipped: CALENDAR_JOBS_ENABLED is off",
            error_code="calendar_disabled",
        )
        return None
    try:
        return jobs.run_pass().as_dict()
    except CalendarForbidden as exc:
        calendar_log(logging.INFO, f"calendar job pass skipped: {exc.message}", error_code=exc.code)
        return None


@shared_task(name="integrations.renew_calendar_channels", acks_late=True)
def renew_calendar_channels() -> int:
    """Renew the push channels and subscriptions that end soon."""
    return push.renew_due_channels()


@shared_task(name="integrations.sync_calendar_connection", acks_late=True)
def sync_calendar_connection(connection_id: int) -> dict[str, Any]:
    """Sync one connection now and process its events ("Sync now" on the card)."""
    return asdict(jobs.sync_and_process(connection_id))
