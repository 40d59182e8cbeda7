"""The read-only SQL view `integrations` runbook 001's token-expiry query reads:

    SELECT expires_at, last_refreshed_at FROM integrations WHERE tenant_id = '...' AND provider = '...';

One row per connection Conduit keeps (CRM connections today). `status` is runbook 001's status
(`needs_reauth` for a lost grant, as CrmConnection.runbook_status); `connection_status` is
crm_connections.status as stored. The join makes the view read-only, and on Postgres 15+ it runs
with the reader's rights (security_invoker), so row-level security applies to whoever reads it."""

from typing import Any

from django.db import migrations

SELECT = """
SELECT c.workspace_id AS tenant_id,
       w.slug AS tenant_slug,
       c.crm AS provider,
       c.id AS connection_id,
       CASE WHEN c.status = 'error' AND c.last_error IN (
                'access_token_rejected', 'missing_scope', 'refresh_token_missing', 'refresh_token_revoked'
            ) THEN 'needs_reauth'
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


def create_view(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    options = ""
    if connection.vendor == "postgresql" and connection.pg_version >= 150000:
        options = " WITH (security_invoker = true)"
    schema_editor.execute(f"CREATE VIEW integrations{options} AS {SELECT}")


def drop_view(apps: Any, schema_editor: Any) -> None:
    schema_editor.execute("DROP VIEW IF EXISTS integrations")


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0013_odoo"),
        ("conduit", "0006_periodic_runs"),
    ]

    operations = [migrations.RunPython(create_view, drop_view)]
