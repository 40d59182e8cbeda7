"""Twin of the ten-minute beat task: sweep expired leases, claim due writes, deliver them."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conduit.models import Workspace
from conduit.tenancy import system_scope
from reconcile.delivery import deliver_writes
from reconcile.queue import enqueue_group, reconcile_crm_writes


class Command(BaseCommand):
    help = "Requeue due CRM writes (failed or planned, not permanent); prints counts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", help="only this workspace (slug)")
        parser.add_argument("--limit", type=int, help="claim at most this many writes")
        parser.add_argument("--dry-run", action="store_true", help="count only; change nothing")
        parser.add_argument(
            "--inline", action="store_true", help="deliver in this process instead of handing to Celery"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be a positive number")
        workspace_id = None
        if options["workspace"]:
            with system_scope():
                workspace = Workspace.objects.filter(slug=options["workspace"]).first()
            if workspace is None:
                raise CommandError(f"no workspace with slug {options['workspace']!r}")
            workspace_id = workspace.pk
        outcomes: dict[str, int] = {}

        def inline(write_ids: list[int], token: str) -> None:
            for outcome in deliver_writes(write_ids, token).values():
                outcomes[outcome.code] = outcomes.get(outcome.code, 0) + 1

        result = reconcile_crm_writes(
            workspace_id=workspace_id,
            limit=options["limit"],
            dry_run=options["dry_run"],
            dispatch_group=inline if options["inline"] else enqueue_group,
        )
        prefix = "dry run: would claim; " if options["dry_run"] else ""
        self.stdout.write(prefix + result.line())
        for code, n in sorted(outcomes.items()):
            self.stdout.write(f"  {code}: {n}")
