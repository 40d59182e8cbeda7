"""Runbook "Reset sync cursors": the next pull re-reads what changed in the last N hours."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conduit.services import ConduitError
from integrations.cursors.reset import MAX_HOURS, check_hours, do_reset_sync_cursors, find_workspace


class Command(BaseCommand):
    help = "Move sync cursors back N hours (since_ts = now - N h); the next pull reads from there."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--provider", required=True, help="hubspot, salesforce, zoho, ...")
        parser.add_argument("--object", required=True, help="contact or deal")
        parser.add_argument("--hours", required=True, help=f"1 to {MAX_HOURS}")
        parser.add_argument("--workspace", help="only this workspace (id or slug)")

    def handle(self, *args: Any, **options: Any) -> None:
        provider, object = options["provider"], options["object"]
        try:
            workspace = find_workspace(options["workspace"]) if options["workspace"] else None
            changed = do_reset_sync_cursors(
                provider, object, options["hours"], workspace=workspace, actor="system:reset_sync_cursor"
            )
        except ConduitError as exc:
            raise CommandError(exc.user_message) from None
        self.stdout.write(
            f"reset {changed} {provider} {object} cursor(s) to {check_hours(options['hours'])} h ago"
        )
