"""The ATS providers join crm_write_log.provider's choices."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reconcile", "0007_calendar_meetings"),
    ]

    operations = [
        migrations.AlterField(
            model_name="crmwritelog",
            name="provider",
            field=models.CharField(
                choices=[
                    ("hubspot", "HubSpot"),
                    ("salesforce", "Salesforce"),
                    ("zoho", "Zoho CRM"),
                    ("odoo", "Odoo"),
                    ("greenhouse", "Greenhouse"),
                    ("lever", "Lever"),
                    ("workday", "Workday"),
                ],
                max_length=20,
            ),
        ),
    ]
