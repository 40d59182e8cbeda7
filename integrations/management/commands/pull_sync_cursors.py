"""Twin of the 15-minute beat task: pull every sync cursor now and print the counts."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from integrations.cursors.pull import pull_sync_cursors


class Command(BaseCommand):
    help = "Read the contacts and deals changed at each CRM since its sync cursors; print the counts."

    def handle(self, *args: Any, **options: Any) -> None:
        counts = pull_sync_cursors()
        self.stdout.write(
            f"pulled {counts.cursors} cursor(s) of {counts.connections} connection(s): "
            f"{counts.records} record(s), {counts.errors} error(s), {counts.skipped} skipped (busy)"
        )
