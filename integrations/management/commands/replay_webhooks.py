"""Process stored webhook events again (runbook 003, "Replay Failed Webhooks"): one event, or the
failed events received in a time range. The twin of POST /api/v1/admin/replay-webhook."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from conduit.services import ConduitError
from integrations.models import CRM_CHOICES
from integrations.webhooks.processing import do_replay_webhooks


def moment(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:  # well-formed but not a date, e.g. 2026-02-30
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(f"--{name} must be an ISO 8601 time with a zone, e.g. 2026-12-01T09:00:00Z")
    return parsed


class Command(BaseCommand):
    help = "Replay one stored webhook event (--event-id) or the failed ones received in [--since, --until)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--provider", required=True, choices=[c for c, _ in CRM_CHOICES])
        parser.add_argument("--event-id", default="", help="the provider's event id")
        parser.add_argument("--since", help="replay failed events received at or after this time")
        parser.add_argument("--until", help="... and before this time (default: now)")

    def handle(self, *args: Any, **options: Any) -> None:
        since, until = moment(options["since"], "since"), moment(options["until"], "until")
        try:
            result = do_replay_webhooks(
                options["provider"],
                event_id=options["event_id"] or None,
                since=since,
                until=until,
                actor="system:replay_webhooks",
            )
        except ConduitError as exc:
            raise CommandError(exc.user_message) from None
        outcomes = ", ".join(f"{n} {status}" for status, n in sorted(result.statuses.items())) or "nothing"
        self.stdout.write(f"replayed {result.replayed} event(s): {outcomes}")
