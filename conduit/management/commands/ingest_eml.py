"""Twin of POST /api/v1/messages: ingest .eml files, directories and mbox files, streaming."""

from __future__ import annotations

import mailbox
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import reset_queries

from conduit.ingest import IngestRejected, ParsedMessage, ingest_batch, parse_raw
from conduit.models import Workspace
from conduit.tenancy import workspace_scope


def is_mbox(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(5) == b"From "


def iter_raw(paths: list[Path]) -> Iterator[tuple[str, bytes]]:
    """(label, raw bytes) for every message under the given paths, one at a time."""
    for path in paths:
        if path.is_dir():
            yield from iter_raw(sorted(p for p in path.rglob("*") if p.is_file()))
        elif is_mbox(path):
            box = mailbox.mbox(path, create=False)
            try:
                for key in box.iterkeys():
                    yield f"{path}#{key}", box.get_bytes(key)
            finally:
                box.close()
        else:
            yield str(path), path.read_bytes()


class Command(BaseCommand):
    help = "Ingest .eml files, directories of them, and mbox files into a workspace."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True, help="workspace slug")
        parser.add_argument("paths", nargs="+", help=".eml files, directories or mbox files")
        parser.add_argument("--progress-every", type=int, default=1000)

    def handle(self, *args: Any, **options: Any) -> None:
        workspace = Workspace.objects.filter(slug=options["workspace"]).first()
        if workspace is None:
            raise CommandError(f"workspace {options['workspace']!r} does not exist")
        paths = [Path(p) for p in options["paths"]]
        if missing := [str(p) for p in paths if not p.exists()]:
            raise CommandError(f"path not found: {', '.join(missing)}")
        counts = {"created": 0, "duplicate": 0, "rejected": 0}
        batch: list[ParsedMessage] = []
        started = time.monotonic()
        every = max(1, options["progress_every"])
        for seen, (label, raw) in enumerate(iter_raw(paths), start=1):
            try:
                batch.append(parse_raw(raw))
            except IngestRejected as exc:
                counts["rejected"] += 1
                self.stderr.write(f"rejected {label}: {exc.reason}")
            if len(batch) >= settings.CONDUIT_INGEST_BATCH_SIZE:
                self._flush(workspace, batch, counts)
            if seen % every == 0:
                rate = seen / max(time.monotonic() - started, 1e-6)
                self.stderr.write(f"... {seen} messages read ({rate:.0f}/s)")
        self._flush(workspace, batch, counts)
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"created {counts['created']}, duplicate {counts['duplicate']}, "
            f"rejected {counts['rejected']} in {elapsed:.1f}s"
        )
        if counts["rejected"]:
            raise CommandError(f"{counts['rejected']} message(s) rejected; see the lines above")

    def _flush(self, workspace: Workspace, batch: list[ParsedMessage], counts: dict[str, int]) -> None:
        if not batch:
            return
        with workspace_scope(workspace):
            results = ingest_batch(workspace, batch)
        for parsed, result in zip(batch, results, strict=True):
            if result.error:
                counts["rejected"] += 1
                self.stderr.write(f"rejected <{parsed.message_id}>: {result.error}")
            else:
                counts["created" if result.created else "duplicate"] += 1
        batch.clear()
        # With DEBUG on, Django keeps every query's SQL (here: whole messages) until a web
        # request ends; a long command must drop it or memory grows with the mailbox.
        reset_queries()
