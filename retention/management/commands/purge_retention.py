"""Twin of the daily beat task: purge every workspace with purge on, or one; prints progress."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conduit.models import Workspace
from conduit.services import workspace_by_ref
from retention.policy import PolicyValues
from retention.purge import PurgeDisabled, purge_retention


def find_workspace(value: str) -> Workspace:
    workspace = workspace_by_ref(value)
    if workspace is None:
        raise CommandError(f"no workspace with slug or id {value!r}")
    return workspace


def describe(policy: PolicyValues) -> str:
    return (
        f"purge {'on' if policy.purge_enabled else 'off'}; keeps message bodies {policy.message_days} d, "
        f"attachments {policy.attachment_days} d, sync logs {policy.sync_log_days} d"
    )


class Command(BaseCommand):
    help = "Redact old message bodies, delete aged attachments and prune sync logs by each policy."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", help="only this workspace (slug or id)")
        parser.add_argument("--dry-run", action="store_true", help="count what would go; change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        workspace = find_workspace(options["workspace"]) if options["workspace"] else None
        dry_run = options["dry_run"]
        prefix = "dry run: " if dry_run else ""

        def announce(target: Workspace, policy: PolicyValues) -> None:
            self.stdout.write(f"{prefix}{target.slug}: {describe(policy)}")

        def progress(kind: str, done: int, total: int) -> None:
            self.stdout.write(f"  {kind}: {done}/{total}")

        try:
            run = purge_retention(
                workspace=workspace,
                dry_run=dry_run,
                announce=announce,
                progress=None if dry_run else progress,
            )
        except PurgeDisabled as exc:
            raise CommandError(exc.user_message) from exc
        for result in run.results:
            self.stdout.write(f"{prefix}{result.workspace_slug}: {result.line()}")
        if not run.results:
            self.stdout.write("no workspace has retention purge on; nothing to do")
            return
        self.stdout.write(prefix + run.summary())
        if run.failed:
            names = ", ".join(r.workspace_slug for r in run.failed)
            raise CommandError(f"retention purge failed for {names} (audited; safe to re-run)")
