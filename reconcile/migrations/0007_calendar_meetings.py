"""Meeting writes: crm_write_log.calendar_event and the create_meeting operation (issue 17)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("conduit", "0008_model_names"),
        ("integrations", "0016_calendar_sync"),
        ("reconcile", "0006_skipped_leave_permanent_queue"),
    ]

    operations = [
        migrations.AddField(
            model_name="crmwritelog",
            name="calendar_event",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="crm_writes",
                to="integrations.externalcalendarevent",
            ),
        ),
        migrations.AlterField(
            model_name="crmwritelog",
            name="operation",
            field=models.CharField(
                choices=[("create_note", "Note"), ("create_task", "Task"), ("create_meeting", "Meeting")],
                max_length=20,
            ),
        ),
        migrations.AddIndex(
            model_name="crmwritelog",
            index=models.Index(fields=["calendar_event"], name="crm_write_calendar_event"),
        ),
    ]
