"""Idempotent demo data for `make run`: a demo workspace, its admin login, sample messages, and
aged messages that a retention purge redacts on a fresh install."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from conduit.ingest import IngestResult, ParsedMessage, ingest_batch, parse_raw
from conduit.models import Membership, Profile, Workspace
from conduit.tenancy import system_scope, workspace_scope

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "demo"
DEMO_EMAIL = "admin@demo.conduit.local"
DEMO_PASSWORD = "conduit-demo-2026"  # noqa: S105 - demo login, refused in production


@dataclass(frozen=True)
class AgedMessage:
    """A message stored `days` ago, so that turning retention on and purging shows a redaction."""

    days: int
    message_id: str
    sender: str
    subject: str
    body: str
    attachment: tuple[str, bytes] | None = None  # (file name, CSV content)


# With purge on and the default policy (bodies 365 days, attachments 180) a purge redacts the
# 400-day message and removes its attachment; a 90-day policy redacts the 120-day one too.
AGED_MESSAGES = (
    AgedMessage(
        400,
        "aged-400@acme-logistics.example",
        "Maya Lopez <maya.lopez@acme-logistics.example>",
        "Acme Logistics: last year's depot survey",
        "Hi Sam,\n\nAttached is the depot survey from our first call, dock hours included.\n\nMaya\n",
        ("depot-survey.csv", b"depot,doors,dock_hours\nColumbus,12,06-18\nDayton,8,07-15\n"),
    ),
    AgedMessage(
        120,
        "aged-120@brightfield-energy.example",
        "Jonas Weber <jonas@brightfield-energy.example>",
        "Brightfield: summer delivery report",
        "Hello Priya,\n\nHere are the summer figures you asked for: 1,240 deliveries, 3 late.\n\nJonas\n",
    ),
)


def aged_email(aged: AgedMessage, received_at: datetime) -> ParsedMessage:
    msg = EmailMessage()
    msg["From"] = aged.sender
    msg["To"] = "Sam Carter <sam@demo.conduit.local>"
    msg["Subject"] = aged.subject
    msg["Date"] = format_datetime(received_at)
    msg["Message-ID"] = f"<{aged.message_id}>"
    msg.set_content(aged.body)
    if aged.attachment:
        name, content = aged.attachment
        msg.add_attachment(content, maintype="text", subtype="csv", filename=name)
    return parse_raw(bytes(msg))


def seed_aged_messages(workspace: Workspace, now: datetime) -> list[IngestResult]:
    """Each aged message received `days` before `now`; one already stored (by Message-ID) stays
    as it is, redacted or not."""
    results = []
    for aged in AGED_MESSAGES:
        received_at = now - timedelta(days=aged.days)
        results += ingest_batch(workspace, [aged_email(aged, received_at)], now=received_at)
    return results


class Command(BaseCommand):
    help = "Create (or keep) the demo workspace, its admin login and sample messages."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("seed_demo creates a known login and is refused when CONDUIT_ENV=production")
        User = get_user_model()
        with system_scope():
            workspace, _ = Workspace.objects.get_or_create(slug="demo", defaults={"name": "Demo Company"})
            user, created = User.objects.get_or_create(
                username=DEMO_EMAIL, defaults={"email": DEMO_EMAIL, "is_staff": True, "is_superuser": True}
            )
            if created:
                user.set_password(DEMO_PASSWORD)
                user.save()
            Profile.objects.get_or_create(
                user=user, defaults={"email": DEMO_EMAIL, "display_name": "Demo Admin"}
            )
            Membership.objects.get_or_create(
                workspace=workspace, user=user, defaults={"role": Membership.Role.OWNER}
            )
        parsed = [parse_raw(p.read_bytes()) for p in sorted(FIXTURES.glob("*.eml"))]
        with workspace_scope(workspace):
            results = ingest_batch(workspace, parsed)
            aged = seed_aged_messages(workspace, timezone.now())
        new = sum(r.created for r in results)
        self.stdout.write(f"demo workspace '{workspace.slug}': {len(results)} sample messages ({new} new)")
        days = " and ".join(str(a.days) for a in AGED_MESSAGES)
        self.stdout.write(
            f"retention demo: {len(aged)} aged messages received {days} days ago "
            f"({sum(r.created for r in aged)} new); turn purge on under Settings -> Retention, "
            "then run manage.py purge_retention"
        )
        self.stdout.write(f"Conduit is at {options['url']}  login: {DEMO_EMAIL} / {DEMO_PASSWORD}")
