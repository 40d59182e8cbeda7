"""`manage.py announce`: the `Procfile`'s last process. It waits until Conduit answers, prints where
to log in, waits until beat is fresh (per /healthz's own fields), prints it again, then idles until
SIGINT / SIGTERM (honcho stops every process when one exits). So the login line comes after the
start-up log lines instead of under them."""

from __future__ import annotations

import json
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from conduit.management.commands.seed_demo import DEMO_EMAIL, DEMO_PASSWORD

POLL_TIMEOUT = 10.0  # a gunicorn worker's first request loads the URLconf: seconds on a busy machine
# The sandbox CRMs and calendars (when CONDUIT_SANDBOX is on) whose overview pages the banner lists.
SANDBOX_PORTS = (
    ("HubSpot", "SANDBOX_HUBSPOT_PORT"),
    ("Salesforce", "SANDBOX_SALESFORCE_PORT"),
    ("Zoho CRM", "SANDBOX_ZOHO_PORT"),
    ("Odoo", "SANDBOX_ODOO_PORT"),
    ("Google Calendar", "SANDBOX_GOOGLE_PORT"),
    ("Microsoft 365", "SANDBOX_MICROSOFT_PORT"),
)


@dataclass(frozen=True)
class Health:
    """One answer of /healthz: None when nothing answered (not up yet)."""

    status: int | None
    body: dict[str, Any]


def fetch_health(url: str) -> Health:
    """GET <url>healthz; a 503 is an answer, a refused connection or a timeout is not."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=POLL_TIMEOUT) as reply:  # noqa: S310
            return Health(reply.status, _json(reply.read()))
    except urllib.error.HTTPError as exc:
        return Health(exc.code, _json(exc.read()))
    except (OSError, ValueError):  # refused, reset, timed out, not yet listening
        return Health(None, {})


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def beat_is_fresh(health: Health, since: datetime) -> bool:
    """200, beat ok, and a heartbeat written after `since`: a heartbeat left by the previous run
    (still within CONDUIT_BEAT_STALE_SECONDS) does not show that this run's beat works."""
    beat = health.body.get("beat") or {}
    if health.status != 200 or not beat.get("ok"):
        return False
    try:
        last = datetime.fromisoformat(str(beat.get("last_beat_at")))
    except ValueError:
        return False
    return last.tzinfo is not None and last >= since


def waiting_for(health: Health) -> str:
    if health.status is None:
        return "no answer yet (is the web process up?)"
    down = [
        f"{name}: {check.get('error') or 'not ok'}" for name, check in health.body.items() if _down(check)
    ]
    return "; ".join(down) or "beat's first heartbeat of this run"


def _down(check: Any) -> bool:
    return isinstance(check, dict) and not check.get("ok", True)


def banner(url: str, sandboxes: list[tuple[str, str]], *, ready: bool) -> list[str]:
    state = "is ready (web, worker and beat are up)" if ready else "is up; waiting for beat"
    lines = [f"Conduit {state}: {url}  login: {DEMO_EMAIL} / {DEMO_PASSWORD}"]
    if ready and sandboxes:
        lines.append("sandboxes: " + ", ".join(f"{name} {base}/" for name, base in sandboxes))
    if ready:
        lines.append("next: README.md, 'First five minutes'")
    return lines


def announce(
    url: str,
    *,
    started: datetime,
    fetch: Callable[[str], Health],
    wait: Callable[[float], bool],
    write: Callable[[str], None],
    now: Callable[[], datetime],
    sandboxes: list[tuple[str, str]] | None = None,
    interval: float = 1.0,
    patience: float = 120.0,
) -> bool:
    """Poll /healthz: print the banner once the web process answers (unless beat is fresh by then),
    and again once beat is fresh.
    A stop (`wait` returning True) ends it early. While beat is not fresh after `patience` seconds,
    say once what /healthz still reports. Returns whether beat became fresh."""
    up = nagged = False
    while True:
        health = fetch(url)
        if beat_is_fresh(health, started):
            for line in banner(url, sandboxes or [], ready=True):
                write(line)
            return True
        if health.status is not None and not up:
            up = True
            for line in banner(url, sandboxes or [], ready=False):
                write(line)
        if not nagged and (now() - started).total_seconds() > patience:
            nagged = True
            write(f"Conduit is not ready after {patience:.0f} s; /healthz: {waiting_for(health)}")
        if wait(interval):
            return False


def sandbox_pages() -> list[tuple[str, str]]:
    if not settings.CONDUIT_SANDBOX:
        return []
    return [
        (name, f"http://{settings.SANDBOX_HOST}:{getattr(settings, port)}") for name, port in SANDBOX_PORTS
    ]


class Command(BaseCommand):
    help = "For make run: print the URL and the demo login once Conduit answers and beat is fresh."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="the web process to poll")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
        parser.add_argument(
            "--patience", type=float, default=120.0, help="seconds before saying what is not ready"
        )
        parser.add_argument("--no-idle", action="store_true", help="exit after announcing (tests)")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("announce prints the demo login and is refused when CONDUIT_ENV=production")
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}

        def write(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        try:
            announce(
                options["url"],
                started=timezone.now(),
                fetch=fetch_health,
                wait=stop.wait,
                write=write,
                now=timezone.now,
                sandboxes=sandbox_pages(),
                interval=options["interval"],
                patience=options["patience"],
            )
            while not options["no_idle"] and not stop.wait(0.5):
                pass  # idle: honcho stops every process when one exits
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
