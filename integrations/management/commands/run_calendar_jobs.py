"""Twin of the 5-minute beat task and of POST /api/admin/calendar/jobs/run: run one pass of the
calendar job runner now and print its summary."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.calendars import jobs
from integrations.calendars.flags import CalendarForbidden


def positive(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 10000:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Sync the due calendar connections now (one job pass) and print the summary."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=positive, help="connections to sync at most (1-10000)")
        parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            summary = jobs.run_pass(limit=options["limit"]).as_dict()
        except CalendarForbidden as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        if options["json"]:
            self.stdout.write(json.dumps({"summary": summary}, sort_keys=False))
            return
        for key, value in summary.items():
            if key != "errors":
                self.stdout.write(f"{key}: {value}")
        self.stdout.write(f"errors: {len(summary['errors'])}")
        for error in summary["errors"]:
            self.stdout.write(
                f"  connection {error['connection_id']} ({error['provider']}): "
                f"{error['error_code']}: {error['message']}"
            )
