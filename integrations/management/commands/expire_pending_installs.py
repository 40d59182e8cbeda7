"""Twin of the integrations.expire_pending_installs task."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from integrations.connections import claims


class Command(BaseCommand):
    help = "Expire pending installs past their expiry: revoke and clear their grants, audit each."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"expired {claims.expire_pending_installs()} pending install(s)")
