"""Twin of the 5-minute beat task: process received webhook events whose task was lost, and
failed ones with attempts left, now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.webhooks.processing import process_backlog


class Command(BaseCommand):
    help = "Process the webhook backlog now: events left received, and failed ones with attempts left."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=5000, help="events at most (1 to 100000)")

    def handle(self, *args: Any, **options: Any) -> None:
        limit = options["limit"]
        if not 1 <= limit <= 100_000:
            raise CommandError("--limit must be between 1 and 100000")
        result = process_backlog(limit=limit)
        outcomes = (
            ", ".join(f"{n} {status}" for status, n in sorted(result.statuses.items())) or "nothing to do"
        )
        self.stdout.write(f"processed {result.total} webhook event(s): {outcomes}")
