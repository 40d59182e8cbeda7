"""Calendar sync (runbook 004): external_calendar_connections and external_calendar_events under
row-level security, and the beat entries of the calendar job runner and channel renewal."""

from typing import Any

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import conduit.crypto
from conduit.rls import EnableWorkspaceRLS

SCHEDULES = {
    # due calendar connections (pushed, or not synced for CALENDAR_SYNC_STALE_MINUTES)
    "run calendar jobs": ("integrations.run_calendar_jobs", 5),
    # push channels and subscriptions close to their end are renewed
    "renew calendar channels": ("integrations.renew_calendar_channels", 60),
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
        ("conduit", "0008_model_names"),
        ("integrations", "0015_model_names"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.CreateModel(
            name="ExternalCalendarConnection",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "provider",
                    models.CharField(
                        choices=[("google", "Google Calendar"), ("microsoft", "Microsoft 365")], max_length=20
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("connected", "Connected"),
                            ("error", "Error"),
                            ("disconnected", "Disconnected"),
                        ],
                        default="connected",
                        max_length=20,
                    ),
                ),
                ("sync_enabled", models.BooleanField(default=True)),
                ("last_synced_at", models.DateTimeField(blank=True, null=True)),
                ("error_count", models.PositiveIntegerField(default=0)),
                ("last_error", models.CharField(blank=True, max_length=500, null=True)),
                ("backoff_until", models.DateTimeField(blank=True, null=True)),
                ("token_expiry", models.DateTimeField(blank=True, null=True)),
                ("sync_cursor", models.TextField(blank=True, null=True)),
                ("sync_needed", models.BooleanField(default=True)),
                ("access_token", conduit.crypto.EncryptedTextField(blank=True)),
                ("refresh_token", conduit.crypto.EncryptedTextField(blank=True)),
                ("granted_scopes", models.JSONField(blank=True, default=list)),
                ("account_email", models.CharField(blank=True, max_length=320)),
                ("channel_id", models.CharField(blank=True, max_length=200)),
                ("channel_resource_id", models.CharField(blank=True, max_length=200)),
                ("channel_secret", conduit.crypto.EncryptedTextField(blank=True)),
                ("channel_expires_at", models.DateTimeField(blank=True, null=True)),
                (
                    "full_sync_count",
                    models.PositiveIntegerField(
                        default=0, help_text="full syncs so far (first one included)"
                    ),
                ),
                ("connected_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "profile",
                    models.ForeignKey(
                        db_column="provider_id",
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="calendar_connections",
                        to="conduit.profile",
                    ),
                ),
                (
                    "workspace",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="calendar_connections",
                        to="conduit.workspace",
                    ),
                ),
            ],
            options={
                "verbose_name": "calendar connection",
                "verbose_name_plural": "calendar connections",
                "db_table": "external_calendar_connections",
            },
        ),
        migrations.CreateModel(
            name="ExternalCalendarEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("external_id", models.CharField(max_length=255)),
                ("ical_uid", models.CharField(blank=True, max_length=255)),
                ("title", models.CharField(blank=True, max_length=500)),
                ("starts_at", models.DateTimeField(blank=True, null=True)),
                ("ends_at", models.DateTimeField(blank=True, null=True)),
                ("all_day", models.BooleanField(default=False)),
                ("organizer", models.CharField(blank=True, max_length=320)),
                (
                    "attendees",
                    models.JSONField(blank=True, default=list, help_text="lower-cased attendee emails"),
                ),
                ("is_private", models.BooleanField(default=False)),
                ("cancelled", models.BooleanField(default=False)),
                ("customer_emails", models.JSONField(blank=True, default=list)),
                (
                    "sync_status",
                    models.CharField(
                        choices=[
                            ("CREATED", "Waiting to be processed"),
                            ("PROCESSED", "Processed"),
                            ("FAILED", "Failed"),
                        ],
                        default="CREATED",
                        max_length=20,
                    ),
                ),
                ("last_error", models.CharField(blank=True, max_length=500, null=True)),
                ("provider_updated_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "connection",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="integrations.externalcalendarconnection",
                    ),
                ),
                (
                    "profile",
                    models.ForeignKey(
                        db_column="provider_id",
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="calendar_events",
                        to="conduit.profile",
                    ),
                ),
                (
                    "workspace",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="calendar_events",
                        to="conduit.workspace",
                    ),
                ),
            ],
            options={
                "verbose_name": "calendar event",
                "verbose_name_plural": "calendar events",
                "db_table": "external_calendar_events",
            },
        ),
        migrations.AddIndex(
            model_name="externalcalendarconnection",
            index=models.Index(
                condition=models.Q(("status", "connected"), ("sync_enabled", True)),
                fields=["last_synced_at"],
                name="calendar_conn_stale",
            ),
        ),
        migrations.AddIndex(
            model_name="externalcalendarconnection",
            index=models.Index(
                condition=models.Q(("status", "connected"), ("sync_enabled", True), ("sync_needed", True)),
                fields=["backoff_until"],
                name="calendar_conn_pushed",
            ),
        ),
        migrations.AddIndex(
            model_name="externalcalendarconnection",
            index=models.Index(
                condition=models.Q(("channel_id", ""), _negated=True),
                fields=["channel_expires_at"],
                name="calendar_conn_channel",
            ),
        ),
        migrations.AddConstraint(
            model_name="externalcalendarconnection",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "disconnected"), _negated=True),
                fields=("workspace", "profile", "provider"),
                name="calendar_connection_one_live",
            ),
        ),
        migrations.AddIndex(
            model_name="externalcalendarevent",
            index=models.Index(fields=["connection", "sync_status"], name="calendar_event_status"),
        ),
        migrations.AddIndex(
            model_name="externalcalendarevent",
            index=models.Index(fields=["workspace", "starts_at"], name="calendar_event_ws_start"),
        ),
        migrations.AddConstraint(
            model_name="externalcalendarevent",
            constraint=models.UniqueConstraint(
                fields=("connection", "external_id"), name="calendar_event_unique"
            ),
        ),
        EnableWorkspaceRLS("external_calendar_connections"),
        EnableWorkspaceRLS("external_calendar_events"),
        migrations.RunPython(add_schedules, remove_schedules),
    ]
