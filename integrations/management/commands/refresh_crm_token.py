"""Force a token refresh for one workspace's CRM connection (runbook: OAuth token expiry)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conduit.models import Workspace
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from integrations.connections.tokens import refresh_connection
from integrations.models import CRM_CHOICES, CrmConnection
from integrations.providers import get_provider
from integrations.providers.errors import ProviderError


class Command(BaseCommand):
    help = "Refresh the access token of a workspace's CRM connection now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True, help="workspace slug")
        parser.add_argument("--crm", required=True, choices=[c for c, _ in CRM_CHOICES])

    def handle(self, *args: Any, **options: Any) -> None:
        with system_scope():
            workspace = Workspace.objects.filter(slug=options["workspace"]).first()
            if workspace is None:
                raise CommandError(f"no workspace with slug {options['workspace']!r}")
            conn = (
                CrmConnection.objects.filter(workspace=workspace, crm=options["crm"])
                .exclude(status=CrmConnection.Status.DISCONNECTED)
                .first()
            )
        if conn is None:
            raise CommandError(f"{workspace.slug} has no {options['crm']} connection")
        try:
            conn = refresh_connection(conn.pk, force=True, actor="system:refresh_crm_token")
        except ConduitError as exc:
            raise CommandError(exc.user_message) from None
        except ProviderError as exc:
            raise CommandError(f"refresh failed: {exc.code} (nothing changed)") from None
        if conn.status != CrmConnection.Status.CONNECTED:
            raise CommandError(
                f"refresh refused by the provider: connection is now {conn.status} ({conn.last_error})"
            )
        if not get_provider(conn.crm).refreshes_tokens:
            self.stdout.write(
                f"{workspace.slug} {conn.crm}: an API key has no refresh; nothing changed "
                "(save a new key with Update credentials on the Integrations page)"
            )
            return
        expiry = (
            conn.token_expires_at.isoformat() if conn.token_expires_at else "none (refreshed after a 401)"
        )
        self.stdout.write(f"{workspace.slug} {conn.crm}: token refreshed; expires {expiry}")
