"""Postgres-only: row-level security on oauth_states and pending_installs.

A pending install belongs to no workspace until it is claimed (claimed_workspace_id), so
before that only system scope sees it."""

from django.db import migrations

from conduit.rls import EnableWorkspaceRLS


class Migration(migrations.Migration):
    dependencies = [("integrations", "0003_oauth_states_pending_installs")]

    operations = [
        EnableWorkspaceRLS("oauth_states"),
        EnableWorkspaceRLS("pending_installs", column="claimed_workspace_id"),
    ]
