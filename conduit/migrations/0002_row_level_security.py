"""Postgres-only: row-level security on every workspace-owned table of the core (Plan 007)."""

from django.db import migrations

from conduit.rls import EnableWorkspaceRLS


class Migration(migrations.Migration):
    dependencies = [("conduit", "0001_initial")]

    operations = [
        EnableWorkspaceRLS("memberships"),
        EnableWorkspaceRLS("messages"),
        EnableWorkspaceRLS("attachments"),
        EnableWorkspaceRLS("audit_events"),
        EnableWorkspaceRLS("api_tokens"),
    ]
