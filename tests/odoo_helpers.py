"""Shared pieces for the Odoo tests: the sandbox on a free port, accounts, a fake resolver that
counts lookups, a spy on every connection urllib3 opens, and a tiny HTTP server for redirects."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import urllib3.util.connection

from integrations.providers.base import Account, Activity
from integrations.providers.synclog import CallContext
from integrations.sandbox.common import SandboxServer
from integrations.sandbox.odoo import OdooApp
from integrations.sandbox.odoo_data import DATABASE, LOGIN, SEEDED_API_KEY, UID
from integrations.sandbox.server import RunningSandbox

PUBLIC_IP = "93.184.216.34"  # a global unicast address (nothing is ever sent to it: mocks only)
ODOO_HOST = "acme.odoo.com"
ODOO_URL = f"https://{ODOO_HOST}"
MOCK_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
MARKER = "cdw0123456789abcdef01234567"
TASK_MARKER = "cdw" + "b2" * 12
MAYA = "maya.lopez@acme-logistics.example"
_real_getaddrinfo = socket.getaddrinfo


def activity(contact: str, deal: str | None = None, *, marker: str = MARKER, **kw: Any) -> Activity:
    return Activity(
        subject=kw.pop("subject", "Re: pricing for the annual plan"),
        text=kw.pop(
            "text",
            f"Email from {MAYA} to sam@demo.conduit.local, inbound, 2026-11-16 09:12 UTC. "
            "Open in Conduit: https://conduit.example/messages/12/",
        ),
        occurred_at=datetime(2026, 11, 16, 9, 12, tzinfo=UTC),
        contact_id=contact,
        deal_id=deal,
        marker=marker,
        **kw,
    )


def start_odoo(major_version: int = 19) -> RunningSandbox:
    """The Odoo sandbox on a free port of 127.0.0.1, serving on a thread until stop()."""
    app = OdooApp(major_version)
    server = SandboxServer(("127.0.0.1", 0), app)
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    app.state.base_url = base_url
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return RunningSandbox("odoo", base_url, app.state, server, thread)


def sandbox_settings(settings: Any) -> None:
    """What development allows: plain http on any port, and the sandbox's 127.0.0.1."""
    settings.CONDUIT_ODOO_ALLOW_INSECURE = True
    settings.CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]


def production_settings(settings: Any) -> None:
    settings.CONDUIT_ODOO_ALLOW_INSECURE = False
    settings.CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS = []


def odoo_account(
    base: str,
    *,
    api: str = "json2",
    key: str = SEEDED_API_KEY,
    uid: int | None = UID,
    database: str = DATABASE,
    **ctx: Any,
) -> Account:
    host = base.split("://", 1)[1]
    details: dict[str, Any] = {"database": database, "login": LOGIN, "api": api, "version": "19.0"}
    if uid is not None:
        details["uid"] = uid
    return Account(
        "odoo", key, f"{host}/{database}", instance_url=base, details=details, context=CallContext(**ctx)
    )


class FakeDns:
    """socket.getaddrinfo for chosen names: each lookup takes the next answer (the last one
    repeats); other names (and IP literals) go to the real resolver. `lookups` counts by name."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: dict[str, int] = {}

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in self.answers:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        count = self.lookups[name] = self.lookups.get(name, 0) + 1
        addresses = self.answers[name][min(count, len(self.answers[name])) - 1]
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        infos = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr: tuple[Any, ...] = (address, port or 0, 0, 0) if ":" in address else (address, port or 0)
            infos.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return infos


def fake_dns(monkeypatch: pytest.MonkeyPatch, names: dict[str, Any]) -> FakeDns:
    """Install a FakeDns: `{name: [ip, ...]}` always answers those addresses; `{name: [[ip],
    [ip2]]}` answers the first lookup with ip, the next ones with ip2; `[]` does not resolve."""
    answers = {
        name: value if value and isinstance(value[0], list) else [value] for name, value in names.items()
    }
    dns = FakeDns(answers)
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    return dns


class ConnectSpy:
    """Every (host, port) urllib3 connects to, before the connection is made."""

    def __init__(self) -> None:
        self.targets: list[tuple[str, int]] = []
        self._real = urllib3.util.connection.create_connection

    def __call__(self, address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        self.targets.append((str(address[0]), int(address[1])))
        return self._real(address, *args, **kwargs)


def connect_spy(monkeypatch: pytest.MonkeyPatch) -> ConnectSpy:
    spy = ConnectSpy()
    monkeypatch.setattr(urllib3.util.connection, "create_connection", spy)
    return spy


@contextmanager
def tiny_server(status: int, headers: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """An HTTP server on 127.0.0.1 answering every request with `status` and `headers`; yields
    {"url": ..., "hits": [paths]}."""
    seen: dict[str, Any] = {"hits": []}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen["hits"].append(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    seen["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def reset(base_url: str, **config: int) -> None:
    assert requests.post(f"{base_url}/_sandbox/reset", timeout=5).status_code == 204
    if config:
        assert requests.post(f"{base_url}/_sandbox/config", json=config, timeout=5).status_code == 200


def inject(base_url: str, kind: str, **options: Any) -> None:
    body = {"kind": kind, "count": 1, **options}
    assert requests.post(f"{base_url}/_sandbox/faults", json=body, timeout=5).status_code == 201


def state(base_url: str) -> dict[str, Any]:
    return dict(requests.get(f"{base_url}/_sandbox/state", timeout=5).json())
