"""`manage.py run_sandbox`: serve the HubSpot, Salesforce, Zoho CRM and Odoo sandboxes and the
Google Calendar and Microsoft Graph calendar sandboxes until SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.sandbox.common import setting
from integrations.sandbox.server import RunningSandbox, start_sandbox


class Command(BaseCommand):
    help = (
        "Serve the local HubSpot, Salesforce, Zoho CRM and Odoo sandboxes, the Greenhouse, Lever "
        "and Workday ATS sandboxes, and the Google Calendar and Microsoft Graph calendar sandboxes "
        "until interrupted (never in production)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", help="address to bind (default: settings.SANDBOX_HOST)")
        parser.add_argument("--hubspot-port", type=int, help="default: settings.SANDBOX_HUBSPOT_PORT")
        parser.add_argument("--salesforce-port", type=int, help="default: settings.SANDBOX_SALESFORCE_PORT")
        parser.add_argument("--zoho-port", type=int, help="default: settings.SANDBOX_ZOHO_PORT")
        parser.add_argument("--odoo-port", type=int, help="default: settings.SANDBOX_ODOO_PORT")
        parser.add_argument("--google-port", type=int, help="default: settings.SANDBOX_GOOGLE_PORT")
        parser.add_argument("--microsoft-port", type=int, help="default: settings.SANDBOX_MICROSOFT_PORT")
        parser.add_argument("--greenhouse-port", type=int, help="default: settings.SANDBOX_GREENHOUSE_PORT")
        parser.add_argument("--lever-port", type=int, help="default: settings.SANDBOX_LEVER_PORT")
        parser.add_argument("--workday-port", type=int, help="default: settings.SANDBOX_WORKDAY_PORT")
        parser.add_argument(
            "--if-enabled",
            action="store_true",
            help="for the Procfile: with CONDUIT_SANDBOX off, idle until stopped instead of serving",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["if_enabled"] and not settings.CONDUIT_SANDBOX:
            self.stdout.write("sandbox: CONDUIT_SANDBOX is off; not serving (idle until stopped)")
            self.stdout.flush()
            wait_for_signal()
            return
        if setting("PRODUCTION"):
            raise CommandError(
                "run_sandbox serves fake provider APIs; it is refused when CONDUIT_ENV=production"
            )
        host = options["host"] or setting("SANDBOX_HOST")
        ports = {
            provider: setting(f"SANDBOX_{provider.upper()}_PORT") if port is None else port
            for provider, port in (
                ("hubspot", options["hubspot_port"]),
                ("salesforce", options["salesforce_port"]),
                ("zoho", options["zoho_port"]),
                ("odoo", options["odoo_port"]),
                ("google", options["google_port"]),
                ("microsoft", options["microsoft_port"]),
                ("greenhouse", options["greenhouse_port"]),
                ("lever", options["lever_port"]),
                ("workday", options["workday_port"]),
            )
        }
        running: list[RunningSandbox] = []
        try:
            for provider, port in ports.items():
                if not 0 <= port <= 65535:
                    raise CommandError(f"--{provider}-port must be between 0 and 65535, not {port}")
                try:
                    running.append(start_sandbox(provider, host, port))
                except OSError as exc:
                    reason = exc.strerror or exc
                    raise CommandError(
                        f"cannot serve the {provider} sandbox on {host}:{port}: {reason}"
                    ) from None
            for sandbox in running:
                self.stdout.write(f"sandbox {sandbox.provider} at {sandbox.base_url}")
            self.stdout.flush()
            wait_for_signal()
        finally:
            for sandbox in running:
                sandbox.stop()


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM, then restore the previous handlers."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.is_set():  # short waits so the main thread runs the signal handler promptly
            stop.wait(0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
