"""Beat entries for the incremental CRM pull (every 15 minutes) and the webhook backlog sweep
(every 5 minutes: events whose processing task was lost or failed and may be retried)."""

from typing import Any

from django.db import migrations

SCHEDULES = {
    "pull sync cursors": ("integrations.pull_sync_cursors", 15),
    "process webhook backlog": ("integrations.process_webhook_backlog", 5),
}


def add_schedules(apps: Any, schema_editor: Any) -> None:
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, (task, minutes) in SCHEDULES.items():
        every, _ = IntervalSchedule.objects.get_or_create(every=minutes, period="minutes")
        PeriodicTask.objects.update_or_create(
            name=name, defaults={"task": task, "interval": every, "enabled": True}
        )


def remove_schedules(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=list(SCHEDULES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0009_operations"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(add_schedules, remove_schedules)]
