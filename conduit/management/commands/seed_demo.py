"""Idempotent demo data for `make run`: a demo workspace, its admin login, sample messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conduit.ingest import ingest_batch, parse_raw
from conduit.models import Membership, Profile, Workspace
from conduit.tenancy import system_scope, workspace_scope

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "demo"
DEMO_EMAIL = "admin@demo.conduit.local"
DEMO_PASSWORD = "conduit-demo-2026"  # noqa: S105 - demo login, refused in production


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
        new = sum(r.created for r in results)
        self.stdout.write(f"demo workspace '{workspace.slug}': {len(results)} sample messages ({new} new)")
        self.stdout.write(f"Conduit is at {options['url']}  login: {DEMO_EMAIL} / {DEMO_PASSWORD}")
