"""The first five minutes: `make run`'s announcer (against a fake web server), /healthz's start-up
503s (not ERROR lines), and README's "First five minutes" walk, whose every command must work as
written: each `manage.py` command exists and takes its arguments, each curl reaches a URL of the
project or of the sandbox and gets a success."""

from __future__ import annotations

import json
import logging
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import CommandError
from django.test import Client
from django.urls import Resolver404, resolve

from conduit import health
from conduit.management.commands import announce as announcer
from conduit.management.commands.seed_demo import DEMO_EMAIL, DEMO_PASSWORD
from conduit.services import do_create_api_token
from tests.conftest import Tenant

README = Path(__file__).resolve().parent.parent / "README.md"
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

# --- the announcer, against a fake web server ------------------------------------------------


def healthz(status: int, *, beat_at: datetime | None = None) -> tuple[int, dict[str, Any]]:
    beat: dict[str, Any] = {"ok": False, "error": "no heartbeat recorded yet", "age_seconds": None}
    if beat_at is not None:
        beat = {"ok": status == 200, "age_seconds": 1.0, "last_beat_at": beat_at.isoformat()}
    body = {"status": "ok" if status == 200 else "down", "database": {"ok": True}, "broker": {"ok": True}}
    return status, {**body, "beat": beat}


class FakeWeb:
    """A web process whose /healthz answers a script, one answer per request (the last repeats)."""

    def __init__(self, script: list[tuple[int, dict[str, Any]]]) -> None:
        self.script, self.paths = script, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.paths.append(self.path)
                status, body = fake.script.pop(0) if len(fake.script) > 1 else fake.script[0]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_web() -> Iterator[type[FakeWeb]]:
    started: list[FakeWeb] = []

    class Started(FakeWeb):
        def __init__(self, script: list[tuple[int, dict[str, Any]]]) -> None:
            super().__init__(script)
            started.append(self)

    yield Started
    for web in started:
        web.close()


def run_announce(url: str, *, polls: int = 50, patience: float = 120.0) -> tuple[bool, list[str], int]:
    """announce() with a clock that moves a second per poll and no real waiting."""
    lines: list[str] = []
    clock = {"now": T0, "polls": 0}

    def wait(seconds: float) -> bool:
        clock["polls"] += 1
        clock["now"] += timedelta(seconds=seconds)
        return clock["polls"] >= polls  # a stop signal after `polls` polls

    ready = announcer.announce(
        url,
        started=T0,
        fetch=announcer.fetch_health,
        wait=wait,
        write=lines.append,
        now=lambda: clock["now"],
        sandboxes=[("HubSpot", "http://127.0.0.1:8701")],
        patience=patience,
    )
    return ready, lines, clock["polls"]


def test_the_banner_comes_once_web_answers_and_again_once_this_runs_beat_is_fresh(
    fake_web: type[FakeWeb],
) -> None:
    web = fake_web(
        [
            healthz(503),  # web is up, beat has not beaten yet
            healthz(503),
            healthz(200, beat_at=T0 - timedelta(seconds=20)),  # the previous run's heartbeat
            healthz(200, beat_at=T0 + timedelta(seconds=3)),  # this run's beat
        ]
    )
    ready, lines, polls = run_announce(web.url)
    assert ready and polls == 3 and web.paths == ["/healthz"] * 4
    login = f"login: {DEMO_EMAIL} / {DEMO_PASSWORD}"
    assert lines == [
        f"Conduit is up; waiting for beat: {web.url}  {login}",
        f"Conduit is ready (web, worker and beat are up): {web.url}  {login}",
        "sandboxes: HubSpot http://127.0.0.1:8701/",
        "next: README.md, 'First five minutes'",
    ]


def test_a_web_that_is_ready_at_its_first_answer_gets_one_banner(fake_web: type[FakeWeb]) -> None:
    web = fake_web([healthz(200, beat_at=T0 + timedelta(seconds=1))])
    ready, lines, polls = run_announce(web.url)
    assert ready and polls == 0
    assert lines[0].startswith("Conduit is ready") and not any("waiting" in line for line in lines)


def test_nothing_answering_means_no_banner_and_one_line_saying_why(fake_web: type[FakeWeb]) -> None:
    web = fake_web([healthz(503)])
    url = web.url
    web.close()  # nothing listens there any more
    ready, lines, polls = run_announce(url, polls=5, patience=2)
    assert not ready and polls == 5
    assert lines == ["Conduit is not ready after 2 s; /healthz: no answer yet (is the web process up?)"]


def test_a_beat_that_stays_down_is_named_after_the_patience(fake_web: type[FakeWeb]) -> None:
    web = fake_web([healthz(503)])
    ready, lines, _ = run_announce(web.url, polls=10, patience=3)
    assert not ready
    assert lines[1] == "Conduit is not ready after 3 s; /healthz: beat: no heartbeat recorded yet"


def test_only_a_200_with_a_heartbeat_of_this_run_is_fresh() -> None:
    fresh = announcer.Health(200, healthz(200, beat_at=T0)[1])
    assert announcer.beat_is_fresh(fresh, T0)
    assert not announcer.beat_is_fresh(announcer.Health(503, fresh.body), T0)
    for last_beat_at in ("not a time", "2026-12-07T09:00:00"):  # unreadable, or without a zone
        body = {**fresh.body, "beat": {"ok": True, "last_beat_at": last_beat_at}}
        assert not announcer.beat_is_fresh(announcer.Health(200, body), T0)
    assert announcer._json(b"<html>") == {} and announcer._json(b"[1]") == {}


def test_the_command_prints_the_banner_and_refuses_production(fake_web: type[FakeWeb], settings: Any) -> None:
    settings.CONDUIT_SANDBOX = False
    web = fake_web([healthz(503), healthz(200, beat_at=datetime.now(UTC) + timedelta(minutes=1))])
    out = StringIO()
    call_command("announce", "--url", web.url, "--interval", "0.01", "--no-idle", stdout=out)
    assert out.getvalue().splitlines()[:2] == [
        f"Conduit is up; waiting for beat: {web.url}  login: {DEMO_EMAIL} / {DEMO_PASSWORD}",
        f"Conduit is ready (web, worker and beat are up): {web.url}  login: {DEMO_EMAIL} / {DEMO_PASSWORD}",
    ]
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="refused"):
        call_command("announce", "--url", web.url, "--no-idle")


def test_sandbox_pages_follow_the_sandbox_settings(settings: Any) -> None:
    settings.CONDUIT_SANDBOX, settings.SANDBOX_HOST, settings.SANDBOX_HUBSPOT_PORT = True, "127.0.0.1", 9701
    assert ("HubSpot", "http://127.0.0.1:9701") in announcer.sandbox_pages()
    assert ("Google Calendar", "http://127.0.0.1:8705") in announcer.sandbox_pages()
    assert ("Microsoft 365", "http://127.0.0.1:8706") in announcer.sandbox_pages()
    settings.CONDUIT_SANDBOX = False
    assert announcer.sandbox_pages() == []


# --- /healthz during start-up ----------------------------------------------------------------


Records = Callable[[], list[logging.LogRecord]]


@pytest.fixture
def request_records(caplog: pytest.LogCaptureFixture) -> Iterator[Records]:
    """django.request's records. The `django` logger does not propagate to the root: caplog's
    handler is put on it unless pytest put it there already."""
    django_logger = logging.getLogger("django")
    added = caplog.handler not in django_logger.handlers
    if added:
        django_logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG, logger="django.request")
    try:
        yield lambda: [r for r in caplog.records if r.name == "django.request"]
    finally:
        if added:
            django_logger.removeHandler(caplog.handler)


@pytest.fixture
def broker_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "check_broker", lambda: {"ok": True, "transport": "memory"})


@pytest.mark.django_db
def test_a_503_while_starting_is_logged_at_info_not_error(
    request_records: Records, broker_up: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "PROCESS_STARTED", time.monotonic() - 5)
    response = Client().get("/healthz")
    assert response.status_code == 503 and response.json()["beat"]["error"] == "no heartbeat recorded yet"
    assert not [r for r in request_records() if r.levelno >= logging.ERROR]
    (record,) = request_records()
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "Service Unavailable: /healthz (starting: waiting for beat: no heartbeat recorded yet)"
    )


@pytest.mark.django_db
def test_a_503_after_the_grace_or_with_the_database_down_is_still_an_error(
    request_records: Records, broker_up: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "PROCESS_STARTED", time.monotonic() - health.STARTUP_GRACE_SECONDS - 1)
    assert Client().get("/healthz").status_code == 503
    monkeypatch.setattr(health, "PROCESS_STARTED", time.monotonic())
    monkeypatch.setattr(health, "check_database", lambda: {"ok": False, "error": "OperationalError"})
    assert Client().get("/healthz").status_code == 503
    assert [(r.levelno, r.getMessage()) for r in request_records()] == [
        (logging.ERROR, "Service Unavailable: /healthz"),
        (logging.ERROR, "Service Unavailable: /healthz"),
    ]


# --- README's "First five minutes" -----------------------------------------------------------

CONDUIT_ORIGIN = "http://127.0.0.1:8000"
SANDBOX_PORTS = {"8701": "hubspot", "8702": "salesforce", "8703": "zoho", "8704": "odoo"}


def first_minutes() -> str:
    text = README.read_text()
    start = text.index("## First five minutes")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def shell_commands(section: str) -> list[str]:
    """The fenced bash blocks' commands, continuation lines joined."""
    blocks = re.findall(r"^ *```bash\n(.*?)^ *```", section, flags=re.S | re.M)
    joined = "\n".join(blocks).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip()]


class Curl:
    """The parts of a `curl -s [-X M] [-H h]... [-d body] URL` command."""

    def __init__(self, words: list[str]) -> None:
        self.method, self.headers, self.data, self.url = "GET", {}, None, ""
        args = iter(words[1:])
        for word in args:
            if word == "-X":
                self.method = next(args)
            elif word == "-H":
                name, _, value = next(args).partition(":")
                self.headers[name.strip()] = value.strip()
            elif word == "-d":
                self.data = next(args)
                self.method = "POST" if self.method == "GET" else self.method
            elif word.startswith("http"):
                self.url = word
            else:
                assert word == "-s", f"an option the test does not know: {word}"


def test_the_walk_has_each_step() -> None:
    commands = shell_commands(first_minutes())
    text = " ".join(commands)
    for needle in (
        "/api/v1/messages",
        "/_sandbox/faults",
        "/_sandbox/state",
        "purge_retention",
        "reconcile_",
    ):
        assert needle in text
    section = first_minutes()
    assert "/integrations/install/hubspot/" in section
    for name in ("SANDBOX_HUBSPOT_PORT", "SANDBOX_SALESFORCE_PORT", "SANDBOX_ZOHO_PORT", "SANDBOX_ODOO_PORT"):
        assert name in section


def test_every_manage_py_command_of_the_walk_exists_and_takes_its_arguments() -> None:
    known = get_commands()
    ran = 0
    for command in shell_commands(first_minutes()):
        words = shlex.split(command)
        if words[:2] != [".venv/bin/python", "manage.py"]:
            continue
        name, args = words[2], words[3:]
        assert name in known, f"no manage.py command {name!r}"
        load_command_class(known[name], name).create_parser("manage.py", name).parse_args(args)
        ran += 1
    assert ran >= 3


def test_every_conduit_url_of_the_walk_is_a_url_of_the_project() -> None:
    urls = re.findall(re.escape(CONDUIT_ORIGIN) + r"(/[^\s`'\")]*)", first_minutes())
    assert len(urls) >= 5
    for path in urls:
        try:
            resolve(path)
        except Resolver404:
            pytest.fail(f"README's First five minutes links {path}, which Conduit does not serve")


@pytest.mark.django_db
def test_every_curl_of_the_walk_works_as_written(alice: Tenant, crm_env: dict[str, str]) -> None:
    """Conduit's curls run through the test client with a real token; the sandbox's against a
    sandbox on a free port (their answers must be successes, their paths real routes)."""
    token = do_create_api_token(alice.workspace, "readme", actor=alice.user).raw
    assignments, curls = 0, 0
    for command in shell_commands(first_minutes()):
        words = shlex.split(command)
        if re.fullmatch(r"[A-Z_]+=\S+", command):
            assignments += 1
            continue
        if words[0] != "curl":
            assert words[:2] == [".venv/bin/python", "manage.py"], f"unexpected command: {command}"
            continue
        curl, curls = Curl(words), curls + 1
        url = urlsplit(curl.url)
        headers = {k: v.replace("$TOKEN", token) for k, v in curl.headers.items()}
        if f"{url.scheme}://{url.netloc}" == CONDUIT_ORIGIN:
            assert resolve(url.path)
            extra = {
                f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "Content-Type"
            }
            response = Client().generic(
                curl.method, url.path, curl.data or "", content_type=headers.get("Content-Type"), **extra
            )
            assert response.status_code == 201, (command, response.content)
            assert response.json()["created"] is True
        else:
            assert url.hostname == "127.0.0.1" and url.port is not None, command
            base = crm_env[SANDBOX_PORTS[str(url.port)]]
            reply = requests.request(curl.method, base + url.path, data=curl.data, headers=headers, timeout=5)
            assert reply.status_code < 300, (command, reply.text)
    assert assignments == 1 and curls >= 4
