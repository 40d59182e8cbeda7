"""The ATS providers: greenhouse, lever and workday join the provider choices, and the
`integrations` view (0014) counts `credentials_invalid` (an ATS whose credentials were refused) as
runbook 001's `needs_reauth`, like integrations.models.REAUTH_REASONS."""

from typing import Any

from django.db import migrations, models

OLD_REASONS = ("access_token_rejected", "missing_scope", "refresh_token_missing", "refresh_token_revoked")
NEW_REASONS = (
    "access_token_rejected",
    "credentials_invalid",
    "missing_scope",
    "refresh_token_missing",
    "refresh_token_revoked",
)
SELECT = """
SELECT c.workspace_id AS tenant_id,
       w.slug AS tenant_slug,
       c.crm AS provider,
       c.id AS connection_id,
       CASE WHEN c.status = 'error' AND c.last_error IN ({reasons}) THEN 'needs_reauth'
            ELSE c.status END AS status,
       c.status AS connection_status,
       c.last_error,
       c.token_expires_at AS expires_at,
       c.last_refreshed_at,
       c.connected_at,
       c.updated_at
FROM crm_connections c
LEFT JOIN workspaces w ON w.id = c.workspace_id
"""


def replace_view(schema_editor: Any, reasons: tuple[str, ...]) -> None:
    connection = schema_editor.connection
    options = ""
    if connection.vendor == "postgresql" and connection.pg_version >= 150000:
        options = " WITH (security_invoker = true)"
    listed = ", ".join(f"'{reason}'" for reason in reasons)
    schema_editor.execute("DROP VIEW IF EXISTS integrations")
    schema_editor.execute(f"CREATE VIEW integrations{options} AS {SELECT.format(reasons=listed)}")


def forwards(apps: Any, schema_editor: Any) -> None:
    replace_view(schema_editor, NEW_REASONS)


def backwards(apps: Any, schema_editor: Any) -> None:
    replace_view(schema_editor, OLD_REASONS)


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0016_calendar_sync"),
    ]

    operations = [
        migrations.AlterField(
            model_name="connectionhealth",
            name="crm",
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
        migrations.AlterField(
            model_name="crmconnection",
            name="crm",
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
        migrations.AlterField(
            model_name="integrationsetting",
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
        migrations.AlterField(
            model_name="oauthstate",
            name="crm",
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
        migrations.AlterField(
            model_name="pendinginstall",
            name="crm",
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
        migrations.AlterField(
            model_name="synccursor",
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
        migrations.AlterField(
            model_name="synclog",
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
        migrations.AlterField(
            model_name="syncpause",
            name="provider",
            field=models.CharField(
                blank=True,
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
        migrations.AlterField(
            model_name="webhookevent",
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
        migrations.RunPython(forwards, backwards),
    ]
