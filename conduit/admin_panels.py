"""The core's panel on the console's home page: when each beat job last ran."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Max
from django.utils.timesince import timesince
from django_celery_beat.models import PeriodicTask

from conduit.admin_console import Figure, Panel, changelist, register_panel
from conduit.models import PeriodicRun

# a job is late when its next run is this much overdue (a busy worker may start it a bit later)
LATE_AFTER = timedelta(minutes=10)


@register_panel(order=60, perm="conduit.view_periodicrun")
def beat_jobs(now: datetime) -> Panel:
    sent = dict(
        PeriodicRun.objects.order_by().values("job").annotate(last=Max("sent_at")).values_list("job", "last")
    )
    jobs = PeriodicTask.objects.select_related("interval", "crontab", "solar", "clocked").order_by("name")
    return Panel(
        title="Beat jobs: last run",
        figures=[_job_figure(job, sent.get(job.task), now) for job in jobs],
        hint="When beat last sent each scheduled job (periodic runs, else django-celery-beat's last run).",
        empty="No scheduled jobs: run the migrations.",
    )


def _job_figure(job: PeriodicTask, sent_at: datetime | None, now: datetime) -> Figure:
    last = max((t for t in (sent_at, job.last_run_at) if t is not None), default=None)
    url = changelist("conduit.periodicrun", job=job.task)
    if not job.enabled:
        return Figure(job.name, "paused", url, tone="", note="disabled in Periodic tasks")
    if last is None:
        return Figure(job.name, "never", url, tone="warn")
    ago = f"{timesince(last, now, depth=1)} ago" if now - last >= timedelta(minutes=1) else "just now"
    late = job.schedule.remaining_estimate(last) < -LATE_AFTER
    return Figure(job.name, ago, url, tone="bad" if late else "ok", note="late" if late else "")
