"""Twin of the hourly beat task: check connections now (no spreading) and print the verdicts."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conduit.models import Workspace
from conduit.tenancy import system_scope
from integrations.health.checks import CheckResult, connections_to_check, record_errored, run_checks
from integrations.models import CRM_CHOICES

COLUMNS = ("connection", "workspace", "crm", "account", "was", "now", "reason", "ms")


def table(results: list[CheckResult], slugs: dict[int, str]) -> list[str]:
    rows = [
        (
            str(r.connection_id),
            slugs.get(r.workspace_id or 0, "-"),
            r.crm,
            r.account or "-",
            r.previous or "-",
            r.status,
            r.reason or "-",
            "-" if r.latency_ms is None else str(r.latency_ms),
        )
        for r in results
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLUMNS)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [COLUMNS, *rows]
    ]


class Command(BaseCommand):
    help = "Check every connected CRM connection now and print a table of the results."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", help="only this workspace (slug)")
        parser.add_argument("--crm", help="only this CRM: " + ", ".join(c for c, _ in CRM_CHOICES))
        parser.add_argument("--concurrency", type=int, help="checks at once (default: the setting)")

    def handle(self, *args: Any, **options: Any) -> None:
        crm = options["crm"]
        if crm and crm not in dict(CRM_CHOICES):
            raise CommandError(f"unknown CRM {crm!r}; use one of: " + ", ".join(c for c, _ in CRM_CHOICES))
        if options["concurrency"] is not None and not 1 <= options["concurrency"] <= 64:
            raise CommandError("--concurrency must be between 1 and 64")
        workspace_id = None
        with system_scope():
            if options["workspace"]:
                workspace = Workspace.objects.filter(slug=options["workspace"]).first()
                if workspace is None:
                    raise CommandError(f"no workspace with slug {options['workspace']!r}")
                workspace_id = workspace.pk
            slugs = dict(Workspace.objects.values_list("id", "slug"))
        errored = record_errored(workspace_id=workspace_id, crm=crm)
        ids = connections_to_check(workspace_id=workspace_id, crm=crm)
        if not ids:
            self.stdout.write(
                "no connected connections to check" + (f" ({errored} in error)" if errored else "")
            )
            return
        results = run_checks(ids, concurrency=options["concurrency"])
        for line in table(results, slugs):
            self.stdout.write(line)
        counts: dict[str, int] = {}
        for result in results:
            counts[result.status] = counts.get(result.status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        self.stdout.write(f"checked {len(results)}: {summary}")
        if counts.get("failed"):
            raise CommandError(f"{counts['failed']} check(s) failed inside Conduit; see the logs")
