"""The Workday sandbox: one tenant on one host, serving the tenant's token endpoint
(`POST /ccx/oauth2/{tenant}/token`, grant refresh_token, the client authenticated with HTTP Basic
or form fields) and the Recruiting REST read Conduit's health check makes
(`GET /ccx/api/recruiting/v4/{tenant}/jobPostings`), with a per-second rate limit, the shared
faults and an overview page. `POST /_sandbox/credentials/rotate` issues a new client secret and
refresh token and revokes the old ones, so a test can rotate, see health fail, update, recover.

The answers' shapes are Workday's where sources agree and marked [verify] where they do not:
collections `{"total", "data"}`; errors `{"error", "errors": [...]}`; token errors in the OAuth
form `{"error", "error_description"}`."""

from __future__ import annotations

import re
from typing import Any

from integrations.sandbox.common import Reply, Request, SandboxApp, json_reply
from integrations.sandbox.faults import Fault
from integrations.sandbox.pages import Section
from integrations.sandbox.workday_data import CLIENT_ID, TENANT, WorkdayState, basic_credentials

TOKEN_PATH = re.compile(r"^/ccx/oauth2/([^/]+)/token$")
API_PATH = re.compile(r"^/ccx/api/recruiting/v4/([^/]+)/([A-Za-z]+)$")
# [verify] the error bodies below are modelled on OAuth 2.0 and Workday's REST error shape
INVALID_TOKEN = {"error": "invalid_token", "error_description": "The access token is invalid or has expired"}
NOT_FOUND = {"error": "Resource not found"}
FAULTS: dict[str, tuple[int, dict[str, Any]]] = {
    "rate_limit": (429, {"error": "Too many requests"}),
    "invalid_session": (401, INVALID_TOKEN),
    "missing_scope": (403, {"error": "The task submitted is not authorized."}),
    "validation": (
        400,
        {"error": "Invalid request", "errors": [{"error": "invalid value", "field": "limit"}]},
    ),
    "server_error": (500, {"error": "Internal server error"}),
    "unavailable": (503, {"error": "Service Unavailable"}),
    "hang": (504, {"error": "Gateway Timeout"}),
}


def oauth_error(status: int, error: str, description: str) -> Reply:
    return json_reply(status, {"error": error, "error_description": description})


def paging(query: dict[str, str]) -> tuple[int, int] | None:
    """`limit` 1..100 (default 20) and a zero-based `offset`, or None when either is malformed."""
    limit, offset = query.get("limit", "20"), query.get("offset", "0")
    if not (limit.isdigit() and offset.isdigit()) or not 1 <= int(limit) <= 100:
        return None
    return int(limit), int(offset)


class WorkdayApp(SandboxApp):
    provider = "workday"
    title = "Workday"
    state: WorkdayState

    def __init__(self) -> None:
        super().__init__(WorkdayState())

    def control(self, req: Request) -> Reply:
        if (req.method, req.path.rstrip("/")) == ("POST", "/_sandbox/credentials/rotate"):
            return json_reply(200, self.state.rotate_credentials())
        return super().control(req)

    def is_api(self, path: str) -> bool:
        return path.startswith("/ccx/api/")

    def is_create(self, req: Request) -> bool:
        return False  # Conduit writes nothing to Workday

    def mint_tokens(self, scopes: list[str] | None, ttl: int | None) -> dict[str, Any]:
        minted = self.state.issue(self.state.refresh_token)
        if ttl is not None:
            self.state.tokens.access[minted["access_token"]].expires_at = self.state.clock() + ttl
            minted["expires_in"] = ttl
        return {**self.state.credentials(), **minted}

    def upsert_record(self, data: Any) -> Reply:
        return json_reply(400, {"error": "the Workday sandbox's records are read-only"})

    def route(self, req: Request) -> Reply:
        if m := TOKEN_PATH.match(req.path):
            if req.method != "POST":
                return json_reply(405, {"error": "Method not allowed"})
            return self.token(req, m[1])
        if m := API_PATH.match(req.path):
            return self.api(req, m[1], m[2])
        return json_reply(404, NOT_FOUND)

    # the token endpoint

    def token(self, req: Request, tenant: str) -> Reply:
        state, form = self.state, req.form()
        if tenant != TENANT:
            # [verify] an unknown tenant: the host serves no token endpoint for it
            return oauth_error(404, "not_found", "No tenant of this name is served at this host")
        client = basic_credentials(req.headers.get("authorization", ""))
        if client is None:
            client = (form.get("client_id", ""), form.get("client_secret", ""))
        if not state.client_ok(*client):
            return oauth_error(401, "invalid_client", "Invalid client credentials")
        if form.get("grant_type") != "refresh_token":
            return oauth_error(400, "unsupported_grant_type", "Only the refresh_token grant is served here")
        fault = state.faults.take(req.path, grant=True)
        refresh = form.get("refresh_token", "")
        if fault or not state.grant_ok(refresh):
            return oauth_error(400, "invalid_grant", "Invalid refresh token")
        return json_reply(200, state.issue(refresh))

    # the Recruiting REST API

    def api(self, req: Request, tenant: str, resource: str) -> Reply:
        state = self.state
        if not state.session_ok(req.bearer()):
            return json_reply(401, INVALID_TOKEN)
        if tenant != TENANT or (req.method, resource) != ("GET", "jobPostings"):
            return json_reply(404, NOT_FOUND)
        if not state.window.try_hit(state.clock(), state.config["requests_per_second"]):
            state.rate_limited += 1
            return json_reply(429, {"error": "Too many requests"}, {"Retry-After": "1"})
        page = paging(req.query)
        if page is None:
            error = {
                "error": "limit must be 1 to 100 and offset 0 or more",
                "field": "limit",
                "location": "query",
            }
            return json_reply(400, {"error": "Invalid request", "errors": [error]})
        return json_reply(200, state.page_of_postings(*page))

    # faults and the overview page

    def fault_reply(self, fault: Fault) -> Reply:
        status, body = FAULTS[fault.kind]
        headers = {"Retry-After": str(fault.retry_after)} if fault.kind == "rate_limit" else {}
        return json_reply(status, body, headers)

    def index_sections(self) -> tuple[list[tuple[str, str]], list[Section]]:
        state, now = self.state, self.state.clock()
        summary = [
            ("Host", state.base_url or "(not serving)"),
            ("Tenant", TENANT),
            ("Client ID", CLIENT_ID),
            ("Client secret (sandbox only)", state.client_secret),
            ("Refresh token (sandbox only)", state.refresh_token),
            ("Credential rotations", str(state.rotations)),
        ]
        return summary, [
            Section(
                "Candidates",
                ["Id", "Name", "Email"],
                [[c["id"], c["name"], c["email"]] for c in state.candidates],
            ),
            Section(
                "Job postings",
                ["Id", "Title", "Location", "Start"],
                [
                    [p["id"], p["title"], p["primaryLocation"]["descriptor"], p["startDate"]]
                    for p in state.job_postings
                ],
            ),
            Section(
                "Notes",
                ["Candidate", "Note"],
                [],
                empty="none: Workday writes are not verified, so Conduit writes no notes to Workday",
            ),
            self.fault_section(),
            Section(
                "Usage",
                ["Requests", "Rate limited", "Active tokens", "1 s window"],
                [
                    [
                        state.requests_total,
                        state.rate_limited,
                        state.tokens.active(now),
                        f"{state.window.used(now)} / {state.config['requests_per_second']}",
                    ]
                ],
            ),
        ]
