"""Empty PROMETHEUS_MULTIPROC_DIR before the processes start (prometheus-client's multiprocess
rule: stale files from a previous run would keep old counters and gauges alive)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Delete the multiprocess metric files; run before starting web and workers."

    def handle(self, *args: Any, **options: Any) -> None:
        removed = 0
        for path in settings.PROMETHEUS_MULTIPROC_DIR.glob("*.db"):
            path.unlink(missing_ok=True)
            removed += 1
        self.stdout.write(f"metrics: cleared {removed} file(s) in {settings.PROMETHEUS_MULTIPROC_DIR}")
