"""The Lever sandbox: one account's Data API under /v1 (users, opportunities found by email, an
opportunity's notes) with API keys sent as HTTP Basic (the key as the user name, the password
ignored), each key's endpoint permissions, a token bucket per key, the shared faults and an
overview page. Data and validation live in lever_data.py.

Control, besides the shared endpoints of common.py:
- `POST /_sandbox/credentials/rotate` ({} or {"api_key": ...}): a Super Admin regenerating a key.
  The answer holds the new key (same permissions); the old one is refused with 401 from now on.
- `POST /_sandbox/tokens` ({"scopes": [...]} of `lever_data.PERMISSIONS`): another key, e.g. one
  that lacks a permission. `POST /_sandbox/records` adds or changes a candidate's opportunity."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any

from integrations.sandbox.common import Reply, Request, SandboxApp, json_reply
from integrations.sandbox.faults import Fault
from integrations.sandbox.lever_data import (
    ACCOUNT,
    ANCHOR_USER,
    PERMISSIONS,
    LeverError,
    LeverState,
    bad_request,
)
from integrations.sandbox.pages import Section

NOTES_PATH = re.compile(r"^/v1/opportunities/([^/]+)/notes$")
ROUTES = {  # (method, path) -> the permission the key needs; notes by NOTES_PATH
    ("GET", "/v1/users"): "users:read",
    ("GET", "/v1/opportunities"): "opportunities:read",
    ("GET", "notes"): "notes:read",
    ("POST", "notes"): "notes:write",
}
FAULTS: dict[str, LeverError] = {
    "rate_limit": LeverError(429, "TooManyRequestsError", "Rate limit exceeded"),
    "invalid_session": LeverError(401, "UnauthorizedError", "Invalid API key"),
    "missing_scope": LeverError(403, "ForbiddenError", "This API key lacks the permission for this endpoint"),
    "validation": LeverError(400, "BadRequestError", "Invalid request (sandbox validation fault)"),
    "server_error": LeverError(500, "InternalServerError", "Internal server error (sandbox fault)"),
    "unavailable": LeverError(503, "ServiceUnavailableError", "Service unavailable (sandbox fault)"),
}
GATEWAY_TIMEOUT = LeverError(504, "GatewayTimeoutError", "Gateway timeout (sandbox hang fault)")
RATE_LIMITED = LeverError(429, "TooManyRequestsError", "Rate limit exceeded")


def basic_user(req: Request) -> str | None:
    """The user name of an HTTP Basic Authorization header (Lever's API key), or None."""
    scheme, _, encoded = req.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, _password = decoded.partition(":")
    return user or None


def when(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


class LeverApp(SandboxApp):
    provider = "lever"
    title = "Lever"
    account = f"the Lever account {ACCOUNT}"
    state: LeverState

    def __init__(self) -> None:
        super().__init__(LeverState())

    # --- control ---
    def control(self, req: Request) -> Reply:
        if (req.method, req.path.rstrip("/")) == ("POST", "/_sandbox/credentials/rotate"):
            try:
                data = req.json() or {}
            except ValueError:
                data = None
            if not isinstance(data, dict) or set(data) - {"api_key"}:
                return json_reply(400, {"error": 'body must be {} or {"api_key": ...}'})
            try:
                new, old = self.state.rotate(data.get("api_key"))
            except LeverError as exc:
                return json_reply(400, {"error": exc.message})
            return json_reply(200, {"api_key": new, "revoked_last4": old[-4:]})
        return super().control(req)

    def _parse_mint(self, data: Any) -> tuple[list[str] | None, int | None]:
        scopes, ttl = super()._parse_mint(data)
        if scopes is not None and (unknown := set(scopes) - set(PERMISSIONS)):
            raise ValueError(f"unknown permissions {sorted(unknown)}; permissions: {sorted(PERMISSIONS)}")
        return scopes, ttl

    def mint_tokens(self, scopes: list[str] | None, ttl: int | None) -> dict[str, Any]:
        key = self.state.mint_key(None if scopes is None else frozenset(scopes))
        return {"api_key": key, "permissions": sorted(self.state.api_keys[key].permissions)}

    def upsert_record(self, data: Any) -> Reply:
        return self.state.upsert(data)

    # --- the API ---
    def is_api(self, path: str) -> bool:
        return path.startswith("/v1/")

    def is_create(self, req: Request) -> bool:
        return req.method == "POST" and NOTES_PATH.match(req.path) is not None

    def route(self, req: Request) -> Reply:
        if not self.is_api(req.path):
            return LeverError(404, "NotFoundError", "Not found").reply()
        try:
            key = basic_user(req)
            self.state.authenticate(key, self.permission_for(req))
            if not self.state.admit(str(key)):
                self.state.rate_limited += 1
                return RATE_LIMITED.reply()  # [verify] whether Lever's own 429 has a Retry-After
            return self.serve(req)
        except LeverError as exc:
            return exc.reply()

    def permission_for(self, req: Request) -> str:
        path = "notes" if NOTES_PATH.match(req.path) else req.path.rstrip("/")
        permission = ROUTES.get((req.method, path))
        if permission is None:
            raise LeverError(404, "NotFoundError", f"Cannot {req.method} {req.path}")
        return permission

    def serve(self, req: Request) -> Reply:
        state, query = self.state, req.query
        if req.path.rstrip("/") == "/v1/users":
            return json_reply(200, state.list_users(query))
        if req.path.rstrip("/") == "/v1/opportunities":
            return json_reply(200, state.list_opportunities(query))
        match = NOTES_PATH.match(req.path)
        assert match is not None  # permission_for let only these routes through
        if req.method == "GET":
            return json_reply(200, state.list_notes(match[1], query))
        try:
            body = req.json()
        except ValueError:
            raise bad_request("The request body is not valid JSON") from None
        note_id = state.add_note(match[1], body, query.get("perform_as"))
        return json_reply(201, {"data": {"noteId": note_id}})  # [verify] Lever's create answer

    # --- faults and the overview page ---
    def fault_reply(self, fault: Fault) -> Reply:
        error = FAULTS.get(fault.kind, GATEWAY_TIMEOUT)  # hang: the gateway gives up
        reply = error.reply()
        if fault.kind == "rate_limit":
            reply.headers["Retry-After"] = str(fault.retry_after)
        return reply

    def index_sections(self) -> tuple[list[tuple[str, str]], list[Section]]:
        state = self.state
        summary = [
            ("Account", f"{ACCOUNT} (named by its oldest user, {ANCHOR_USER})"),
            ("API key (sandbox only)", state.primary_key),
            ("Authentication", "HTTP Basic: the key as the user name, a blank password"),
            (
                "Rate limit",
                f"{state.config['requests_per_second']} per second, bursts to {state.config['burst']}",
            ),
        ]
        opportunities = sorted(state.opportunities.values(), key=lambda o: o["updatedAt"], reverse=True)
        notes = sorted(
            ((oid, n) for oid, items in state.notes.items() for n in items),
            key=lambda item: item[1]["createdAt"],
            reverse=True,
        )
        return summary, [
            Section(
                "Candidates (opportunities)",
                ["Id", "Name", "Email", "Stage", "Archived", "Confidential", "Updated"],
                [
                    [
                        o["id"],
                        o["name"],
                        ", ".join(o["emails"]),
                        o["stage"],
                        (o["archived"] or {}).get("reason", ""),
                        o["confidentiality"] == "confidential",
                        when(o["updatedAt"]),
                    ]
                    for o in opportunities
                ],
            ),
            Section(
                "Notes (newest first)",
                ["Id", "Opportunity", "Text", "Author", "Created"],
                [[n["id"], oid, n["text"][:200], n["user"], when(n["createdAt"])] for oid, n in notes],
            ),
            Section(
                "Users",
                ["Id", "Name", "Email", "Role", "Created", "Deactivated"],
                [
                    [
                        u["id"],
                        u["name"],
                        u["email"],
                        u["accessRole"],
                        when(u["createdAt"]),
                        when(u["deactivatedAt"]),
                    ]
                    for u in state.users
                ],
            ),
            Section(
                "API keys",
                ["Ends with", "Permissions", "Status"],
                [
                    [f"…{key[-4:]}", ", ".join(sorted(k.permissions)), "active" if k.active else "revoked"]
                    for key, k in state.api_keys.items()
                ],
            ),
            self.fault_section(),
            Section(
                "Usage",
                ["Requests", "Rate limited"],
                [[state.requests_total, state.rate_limited]],
            ),
        ]
