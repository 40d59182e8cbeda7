"""Shared sandbox machinery: request/reply types and helpers, the state base class, the app base
class (control endpoints, fault application, consent flow) and the threaded HTTP server and handler.
Faults and the rolling-window counter live in faults.py, tokens in oauth.py, HTML in pages.py."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from django.conf import settings

from integrations.sandbox import pages
from integrations.sandbox.faults import Fault, FaultQueue, parse_fault
from integrations.sandbox.oauth import Consent, TokenStore, consent_error

log = logging.getLogger("conduit.sandbox")

DEFAULT_SETTINGS: dict[str, Any] = {
    "HUBSPOT_CLIENT_ID": "conduit-sandbox-hubspot",
    "HUBSPOT_CLIENT_SECRET": "sandbox-hubspot-client-secret",
    "SALESFORCE_CLIENT_ID": "conduit-sandbox-salesforce",
    "SALESFORCE_CLIENT_SECRET": "sandbox-salesforce-client-secret",
    "ZOHO_CLIENT_ID": "conduit-sandbox-zoho",
    "ZOHO_CLIENT_SECRET": "sandbox-zoho-client-secret",
    "SANDBOX_HOST": "127.0.0.1",
    "SANDBOX_HUBSPOT_PORT": 8701,
    "SANDBOX_SALESFORCE_PORT": 8702,
    "SANDBOX_ZOHO_PORT": 8703,
    "SANDBOX_ODOO_PORT": 8704,
    "SANDBOX_GOOGLE_PORT": 8705,
    "SANDBOX_MICROSOFT_PORT": 8706,
    "SANDBOX_GREENHOUSE_PORT": 8707,
    "SANDBOX_LEVER_PORT": 8708,
    "SANDBOX_WORKDAY_PORT": 8709,
    "GOOGLE_CLIENT_ID": "conduit-sandbox-google",
    "GOOGLE_CLIENT_SECRET": "sandbox-google-client-secret",
    "MICROSOFT_CLIENT_ID": "conduit-sandbox-microsoft",
    "MICROSOFT_CLIENT_SECRET": "sandbox-microsoft-client-secret",
    "PRODUCTION": False,
}

_TOKEN_PATH = re.compile(r"(/oauth/v1/(?:access|refresh)-tokens/)[^/\s?'\"]+")
_QUERY = re.compile(r"\?[^\s'\"]*")


def setting(name: str) -> Any:
    """Read at request time so tests (and a restarted settings module) take effect at once."""
    return getattr(settings, name, DEFAULT_SETTINGS[name])


def redact(text: str) -> str:
    """Drop query strings and the token segment of the HubSpot token paths."""
    return _QUERY.sub("", _TOKEN_PATH.sub(r"\1[redacted]", text))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_uuid() -> str:
    return str(uuid.uuid4())


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""

    def json(self) -> Any:
        """The JSON body; raises ValueError when it is not JSON."""
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def bearer(self) -> str | None:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, data: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(data).encode("utf-8"), headers=dict(headers or {}))


def html_reply(status: int, page: str) -> Reply:
    return Reply(status, page.encode("utf-8"), "text/html; charset=utf-8")


def empty_reply(status: int) -> Reply:
    return Reply(status, b"", "")


def redirect_reply(url: str, params: dict[str, str]) -> Reply:
    sep = "&" if "?" in url else "?"
    return Reply(302, b"", "", {"Location": url + sep + urlencode(params)})


class SandboxState:
    """All of one server's data. Handlers touch it only while holding `lock`."""

    DEFAULT_CONFIG: dict[str, int] = {}

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.clock = clock
        self.base_url = ""
        self.reset()

    def reset(self) -> None:
        self.config = dict(self.DEFAULT_CONFIG)
        self.faults = FaultQueue()
        self.tokens = TokenStore()
        self.requests_total = 0
        self.rate_limited = 0
        self.seed()

    def seed(self) -> None:
        raise NotImplementedError

    def as_json(self) -> dict[str, Any]:
        return {
            "active_tokens": self.tokens.active(self.clock()),
            "requests": {"total": self.requests_total, "rate_limited": self.rate_limited},
            "config": dict(self.config),
            "faults": self.faults.as_list(),
        }


class SandboxApp:
    """One provider's routes. `handle` serves the control endpoints and applies faults; the
    provider implements `route`, `is_api`, `fault_reply`, `mint_tokens` and `index_sections`."""

    provider = ""
    title = ""
    account = ""  # who the consent page connects the app to
    client_setting = ""  # the settings name of the expected client_id
    decision_path = ""
    deny_description = ""
    # POST /_sandbox/webhooks: a provider that sends signed webhooks sets its sender here
    # (HubSpot: integrations/sandbox/webhooks.py); the base knows no provider's signing.
    webhook_sender: Callable[[Request, Callable[[], float]], Reply] | None = None

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def handle(self, req: Request) -> Reply:
        state = self.state
        if req.path == "/" and req.method == "GET":
            with state.lock:
                return html_reply(200, pages.index_page(self.title, *self.index_sections()))
        if self.webhook_sender and (req.method, req.path.rstrip("/")) == ("POST", "/_sandbox/webhooks"):
            return self.webhook_sender(req, state.clock)
        if req.path.startswith("/_sandbox/"):
            with state.lock:
                return self.control(req)
        with state.lock:
            state.requests_total += 1
            api = self.is_api(req.path)
            fault = state.faults.take(req.path, grant=False, create=self.is_create(req)) if api else None
        if fault and fault.kind == "commit_then_hang":
            # The provider commits, then the reply is lost: the client times out on a write that
            # did happen (the reply, if still sent, goes to a closed socket).
            with state.lock:
                reply = self.finish(req, self.route(req))
            state.stopping.wait(fault.hang_seconds)  # outside the lock; stop() wakes it
            return reply
        if fault and fault.kind == "hang":
            state.stopping.wait(fault.hang_seconds)  # outside the lock; stop() wakes it
        with state.lock:
            if fault is None:
                return self.finish(req, self.route(req))
            if fault.kind == "rate_limit":
                state.rate_limited += 1
            return self.finish(req, self.fault_reply(fault))

    def control(self, req: Request) -> Reply:
        state, action = self.state, (req.method, req.path.rstrip("/"))
        if action == ("GET", "/_sandbox/state"):
            return json_reply(200, state.as_json())
        if action == ("DELETE", "/_sandbox/faults"):
            state.faults.clear()
            return empty_reply(204)
        if action == ("POST", "/_sandbox/reset"):
            state.reset()
            return empty_reply(204)
        if action not in {
            ("POST", "/_sandbox/faults"),
            ("POST", "/_sandbox/config"),
            ("POST", "/_sandbox/tokens"),
            ("POST", "/_sandbox/records"),
        }:
            return json_reply(404, {"error": f"no sandbox control endpoint {req.method} {req.path}"})
        try:
            data = req.json()
        except ValueError:
            return json_reply(400, {"error": "body must be JSON"})
        try:
            if action[1] == "/_sandbox/records":
                return self.upsert_record(data)
            if action[1] == "/_sandbox/faults":
                state.faults.add(parse_fault(data))
                return json_reply(201, {"ok": True})
            if action[1] == "/_sandbox/config":
                state.config.update(self._parse_config(data))
                return json_reply(200, dict(state.config))
            scopes, ttl = self._parse_mint(data)
        except ValueError as exc:
            return json_reply(400, {"error": str(exc)})
        return json_reply(200, self.mint_tokens(scopes, ttl))

    def _parse_config(self, data: Any) -> dict[str, int]:
        if not isinstance(data, dict):
            raise ValueError("config must be a JSON object")
        for key, value in data.items():
            if key not in self.state.DEFAULT_CONFIG:
                raise ValueError(f"unknown config key {key!r}; keys: {sorted(self.state.DEFAULT_CONFIG)}")
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be a non-negative integer")
        return data

    def _parse_mint(self, data: Any) -> tuple[list[str] | None, int | None]:
        data = {} if data is None else data
        if not isinstance(data, dict) or set(data) - {"scopes", "expires_in"}:
            raise ValueError("body must be an object with optional 'scopes' and 'expires_in'")
        scopes, ttl = data.get("scopes"), data.get("expires_in")
        if scopes is not None and (
            not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes)
        ):
            raise ValueError("scopes must be a list of strings")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int)):
            raise ValueError("expires_in must be an integer number of seconds")
        return scopes, ttl

    def authorize_page(self, req: Request) -> Reply:
        q = req.query
        consent = Consent(
            q.get("client_id", ""),
            q.get("redirect_uri", ""),
            self.requested_scopes(q),
            q.get("state", ""),
            q.get("code_challenge", ""),
        )
        error = consent_error(consent.client_id, consent.redirect_uri, setting(self.client_setting))
        if error := error or self.authorize_error(q):
            return html_reply(400, pages.error_page(self.title, error))
        page = pages.consent_page(
            self.title,
            self.account,
            consent.client_id,
            consent.scopes,
            self.decision_path,
            consent.hidden_fields(),
        )
        return html_reply(200, page)

    def decide(self, req: Request) -> Reply:
        form = req.form()
        consent = Consent(
            form.get("client_id", ""),
            form.get("redirect_uri", ""),
            form.get("scope", "").split(),
            form.get("state", ""),
            form.get("code_challenge", ""),
        )
        error = consent_error(consent.client_id, consent.redirect_uri, setting(self.client_setting))
        if not error and form.get("decision") not in ("allow", "deny"):
            error = "Choose Allow or Deny."
        if error:
            return html_reply(400, pages.error_page(self.title, error))
        extra = {"state": consent.state} if consent.state else {}
        if form["decision"] == "deny":
            params = {"error": "access_denied", "error_description": self.deny_description, **extra}
            return redirect_reply(consent.redirect_uri, params)
        code = self.state.tokens.issue_code(consent, self.state.clock())
        return redirect_reply(consent.redirect_uri, {"code": code, **extra})

    def fault_section(self) -> pages.Section:
        columns = ["kind", "count", "rate", "retry_after", "hang_seconds", "path_contains"]
        rows = [[f[c] for c in columns] for f in self.state.faults.as_list()]
        return pages.Section("Queued faults", columns, rows, empty="no faults queued")

    def finish(self, req: Request, reply: Reply) -> Reply:
        """Hook for headers every reply on a path carries (Salesforce's Sforce-Limit-Info)."""
        return reply

    def requested_scopes(self, query: dict[str, str]) -> list[str]:
        raise NotImplementedError

    def authorize_error(self, query: dict[str, str]) -> str | None:
        return None

    def is_api(self, path: str) -> bool:
        raise NotImplementedError

    def is_create(self, req: Request) -> bool:
        """Whether the call creates a note or task (the calls a commit_then_hang fault hits)."""
        raise NotImplementedError

    def route(self, req: Request) -> Reply:
        raise NotImplementedError

    def fault_reply(self, fault: Fault) -> Reply:
        raise NotImplementedError

    def mint_tokens(self, scopes: list[str] | None, ttl: int | None) -> dict[str, Any]:
        raise NotImplementedError

    def upsert_record(self, data: Any) -> Reply:
        """POST /_sandbox/records: create or change a CRM record now (integrations/sandbox/records.py)."""
        raise NotImplementedError

    def index_sections(self) -> tuple[list[tuple[str, str]], list[pages.Section]]:
        raise NotImplementedError


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: SandboxApp) -> None:
        self.app = app
        super().__init__(address, SandboxHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("sandbox %s: unhandled error in request handler", self.app.provider)


class SandboxHandler(BaseHTTPRequestHandler):
    server: SandboxServer
    server_version = "ConduitSandbox/1.0"
    timeout = 60  # a client that stops sending cannot hold a thread forever

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        try:
            length = max(int(self.headers.get("Content-Length") or 0), 0)
        except ValueError:
            self._send(json_reply(400, {"error": "bad Content-Length"}))
            return
        req = Request(
            self.command,
            parts.path,
            dict(parse_qsl(parts.query, keep_blank_values=True)),
            {k.lower(): v for k, v in self.headers.items()},
            self.rfile.read(length) if length else b"",
        )
        try:
            reply = self.server.app.handle(req)
        except Exception:  # the request boundary: answer 500 and keep serving
            log.exception("sandbox %s: %s %s failed", self.server.app.provider, req.method, redact(req.path))
            reply = json_reply(500, {"error": "sandbox internal error"})
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("sandbox %s: client went away", self.server.app.provider)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = redact(urlsplit(self.path).path)
        log.debug("sandbox %s: %s %s -> %s", self.server.app.provider, self.command, path, code)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox %s: %s", self.server.app.provider, redact(format % args))
