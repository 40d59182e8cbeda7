"""Plan (or re-plan, idempotently) the CRM writes of a workspace's messages since a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from conduit.models import Workspace
from conduit.tenancy import system_scope
from reconcile.curation import plan_since
from reconcile.planning import dispatch_planned


def parse_since(value: str, now: datetime) -> datetime:
    """An ISO date/time (UTC when no zone is given) or a look-back like 24h / 7d."""
    value = value.strip()
    if value[:-1].isdigit() and value[-1:] in ("h", "d"):
        amount = int(value[:-1])
        return now - (timedelta(hours=amount) if value.endswith("h") else timedelta(days=amount))
    parsed = parse_datetime(value) or parse_datetime(value + "T00:00:00")
    if parsed is None:
        raise CommandError(f"--since {value!r} is not a date, a date-time or a look-back like 24h or 7d")
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Plan CRM writes for messages received since a time (safe to re-run)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True, help="workspace slug")
        parser.add_argument("--since", required=True, help="ISO date/time, or a look-back like 24h or 7d")

    def handle(self, *args: Any, **options: Any) -> None:
        since = parse_since(options["since"], timezone.now())
        with system_scope():
            workspace = Workspace.objects.filter(slug=options["workspace"]).first()
        if workspace is None:
            raise CommandError(f"no workspace with slug {options['workspace']!r}")
        result = plan_since(workspace, since)
        dispatch_planned(result)
        self.stdout.write(
            f"{workspace.slug}: {result.messages} message(s) since {since.isoformat()}; "
            f"planned {result.planned} live and {result.dry_run} dry-run write(s); "
            f"{result.already_planned} already planned"
        )
