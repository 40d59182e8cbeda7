"""Postgres-only: row-level security on crm_connections and crm_sync_logs.

Rows with no workspace (a connection pending its claim, a token exchange before it) are
visible only in system scope."""

from django.db import migrations

from conduit.rls import EnableWorkspaceRLS


class Migration(migrations.Migration):
    dependencies = [("integrations", "0001_crm_connections_sync_logs")]

    operations = [EnableWorkspaceRLS("crm_connections"), EnableWorkspaceRLS("crm_sync_logs")]
