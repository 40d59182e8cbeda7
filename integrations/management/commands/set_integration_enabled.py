"""Switch one workspace's CRM integration off or on (runbook 001 §1, "Disable integration
temporarily"); the twin of PATCH /api/v1/admin/tenants/{tenant_id}/integrations/{provider}."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conduit.services import workspace_by_ref
from integrations.connections.tenant_switch import do_set_integration_enabled
from integrations.models import CRM_CHOICES


class Command(BaseCommand):
    help = "Turn a workspace's CRM integration --off (no writes, health checks or pulls) or --on again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True, help="workspace id or slug")
        parser.add_argument("--provider", required=True, choices=[c for c, _ in CRM_CHOICES])
        state = parser.add_mutually_exclusive_group(required=True)
        state.add_argument("--off", action="store_true")
        state.add_argument("--on", action="store_true")
        parser.add_argument("--reason", default="", help="why (shown in sync-status and the audit trail)")

    def handle(self, *args: Any, **options: Any) -> None:
        key = options["workspace"].strip()
        workspace = workspace_by_ref(key)
        if workspace is None:
            raise CommandError(f"no workspace {key!r}")
        row, changed = do_set_integration_enabled(
            workspace,
            options["provider"],
            bool(options["on"]),
            actor="system:set_integration_enabled",
            reason=options["reason"],
        )
        state = "on" if row.enabled else "off"
        verb = "switched" if changed else "already"
        self.stdout.write(f"{options['provider']} for workspace {workspace.slug}: {verb} {state}")
