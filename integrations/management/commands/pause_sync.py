"""Pause or resume CRM sync (kill switch): everything, one provider, workspace or connection."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conduit.models import Workspace
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from integrations.connections.pauses import active_pauses, do_pause_sync, do_resume_sync, target_for
from integrations.models import CRM_CHOICES, CrmConnection


class Command(BaseCommand):
    help = "Pause (or --resume) CRM writes. Paused writes stay queued and burn no attempts."

    def add_arguments(self, parser: CommandParser) -> None:
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--all", action="store_true", help="every provider and workspace")
        scope.add_argument("--provider", choices=[c for c, _ in CRM_CHOICES])
        scope.add_argument("--workspace", help="workspace slug")
        scope.add_argument("--connection", type=int, help="crm_connections id")
        parser.add_argument("--reason", default="", help="why (required to pause)")
        parser.add_argument("--resume", action="store_true", help="lift the pause instead")
        parser.add_argument("--list", action="store_true", help="show the pauses in force")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            self.list_pauses()
            return
        workspace = connection = None
        with system_scope():
            if options["workspace"]:
                workspace = Workspace.objects.filter(slug=options["workspace"]).first()
                if workspace is None:
                    raise CommandError(f"no workspace with slug {options['workspace']!r}")
            if options["connection"] is not None:
                connection = (
                    CrmConnection.objects.select_related("workspace").filter(pk=options["connection"]).first()
                )
                if connection is None:
                    raise CommandError(f"no CRM connection with id {options['connection']}")
        actor = "system:pause_sync"
        try:
            target = target_for(
                provider=options["provider"] or "",
                workspace=workspace,
                connection=connection,
                everything=options["all"],
            )
            if options["resume"]:
                lifted = do_resume_sync(target, actor=actor)
                self.stdout.write(f"resumed {describe(target.describe())}" if lifted else "was not paused")
                return
            pause, created = do_pause_sync(target, reason=options["reason"], actor=actor)
        except ConduitError as exc:
            raise CommandError(exc.user_message) from None
        state = "paused" if created else "already paused"
        self.stdout.write(f"{state} {describe(target.describe())} (reason: {pause.reason})")

    def list_pauses(self) -> None:
        pauses = active_pauses()
        rows = [
            *([pauses.everything] if pauses.everything else []),
            *pauses.providers.values(),
            *pauses.workspaces.values(),
            *pauses.connections.values(),
        ]
        if not rows:
            self.stdout.write("no pauses in force")
        for p in rows:
            self.stdout.write(f"{p} since {p.paused_at:%Y-%m-%d %H:%M} UTC by {p.actor}: {p.reason}")


def describe(described: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in described.items())
