"""The Greenhouse sandbox: the authorization server (`POST /token`, the client-credentials grant
with HTTP Basic client auth and an optional `sub`; `POST /introspect`) and the Harvest v3 API
subset Conduit uses (`GET /v3/candidates`, `GET /v3/notes`, `POST /v3/notes`) on one port, with
scopes per token, the rolling 10 s rate limit and its headers, faults, an overview page, and
credential control: `POST /_sandbox/credentials` adds a credential (optional "scopes"),
`POST /_sandbox/credentials/rotate` (optional "client_id") gives a credential a new secret and
refuses the old one, and every token issued with it, from then on (the real 401 shapes)."""

from __future__ import annotations

from typing import Any

from integrations.sandbox import greenhouse_data as data
from integrations.sandbox.common import Reply, Request, SandboxApp, json_reply
from integrations.sandbox.faults import Fault
from integrations.sandbox.greenhouse_data import (
    ALL_SCOPES,
    ORG_ID,
    ORG_NAME,
    SEEDED_CLIENT_ID,
    GreenhouseState,
    errors_body,
    oauth_error,
)
from integrations.sandbox.pages import Section

SCOPES = {
    ("GET", "/v3/candidates"): "harvest:candidates:list",
    ("GET", "/v3/notes"): "harvest:notes:list",
    ("POST", "/v3/notes"): "harvest:notes:create",
}
# Harvest v3's 401, 403 and 429 bodies are not documented in what Conduit could read [verify]:
# the shapes below are the sandbox's; the provider reads `message`, `errors[0].message` or `error`.
UNAUTHORIZED = {"error": "invalid_token", "message": "The access token is missing, expired or revoked"}
FAULTS: dict[str, tuple[int, dict[str, Any]]] = {
    "invalid_session": (401, UNAUTHORIZED),
    "missing_scope": (403, {"message": "Missing required scope: harvest:notes:create"}),
    "validation": (422, errors_body("body is invalid (sandbox validation fault)", "body")),
    "server_error": (500, {"message": "Internal Server Error"}),
    "unavailable": (503, {"message": "Service Unavailable"}),
    "hang": (504, {"message": "Gateway Timeout"}),
}
REFUSED_CLIENT = ("invalid_client", "Client authentication failed")


class GreenhouseApp(SandboxApp):
    provider = "greenhouse"
    title = "Greenhouse Harvest v3"
    state: GreenhouseState

    def __init__(self) -> None:
        super().__init__(GreenhouseState())

    def is_api(self, path: str) -> bool:
        return path.startswith("/v3/")

    def is_create(self, req: Request) -> bool:
        return (req.method, req.path) == ("POST", "/v3/notes")

    def upsert_record(self, data_: Any) -> Reply:
        return data.upsert_candidate(self.state, data_)

    def control(self, req: Request) -> Reply:
        action = (req.method, req.path.rstrip("/"))
        if action not in {("POST", "/_sandbox/credentials"), ("POST", "/_sandbox/credentials/rotate")}:
            return super().control(req)
        try:
            body = req.json() or {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return json_reply(400, {"error": "body must be a JSON object"})
        if action[1] == "/_sandbox/credentials":
            scopes = body.get("scopes", ALL_SCOPES)
            if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
                return json_reply(400, {"error": "scopes must be a list of strings"})
            return json_reply(201, self.credential_json(self.state.add_credential(list(scopes))))
        credential = self.state.credentials.get(str(body.get("client_id") or SEEDED_CLIENT_ID))
        if credential is None:
            return json_reply(404, {"error": "no credential with this client_id"})
        revoked = self.state.rotate(credential)
        return json_reply(200, {**self.credential_json(credential), "revoked_tokens": revoked})

    def credential_json(self, credential: data.Credential) -> dict[str, Any]:
        return {
            "client_id": credential.client_id,
            "client_secret": credential.secret,
            "scopes": credential.scopes,
            "service_account_user_id": credential.service_user,
        }

    def mint_tokens(self, scopes: list[str] | None, ttl: int | None) -> dict[str, Any]:
        """A token of the seeded credential, acting as its service account, with these scopes."""
        credential = self.state.credentials[SEEDED_CLIENT_ID]
        granted = list(credential.scopes if scopes is None else scopes)
        ttl = self.state.config["access_token_ttl"] if ttl is None else ttl
        return {**self.state.issue_token(credential, credential.service_user, granted, ttl), "scope": granted}

    def route(self, req: Request) -> Reply:
        if (req.method, req.path) == ("POST", "/token"):
            return self.token(req)
        if (req.method, req.path) == ("POST", "/introspect"):
            return self.introspect(req)
        if self.is_api(req.path):
            return self.api(req)
        return json_reply(404, {"message": "Not Found"})

    # the authorization server

    def token(self, req: Request) -> Reply:
        state, form = self.state, req.form()
        credential = state.client(req.headers.get("authorization", ""))
        if state.faults.take(req.path, grant=True) or credential is None:
            return oauth_error(401, *REFUSED_CLIENT)
        if form.get("grant_type") != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        sub = credential.service_user
        if "sub" in form:
            found = state.active_user(form["sub"])
            if found is None:
                return oauth_error(400, "invalid_grant", "sub is not an active user of this organization")
            sub = found
        ttl = state.config["access_token_ttl"]
        return json_reply(200, state.issue_token(credential, sub, list(credential.scopes), ttl))

    def introspect(self, req: Request) -> Reply:
        state = self.state
        if not state.config["introspection"]:
            return json_reply(404, {"message": "Not Found"})
        credential = state.client(req.headers.get("authorization", ""))
        if credential is None:
            return oauth_error(401, *REFUSED_CLIENT)
        answer = state.introspection(req.form().get("token", ""))
        if answer.get("client_id") not in (None, credential.client_id):
            answer = {"active": False}  # another client's token
        return json_reply(200, answer)

    # the Harvest v3 API

    def api(self, req: Request) -> Reply:
        state = self.state
        found = state.tokens.access.get(req.bearer() or "")
        if found is None or found.expires_at <= state.clock():
            return json_reply(401, UNAUTHORIZED)
        scope = SCOPES.get((req.method, req.path))
        if scope is None:
            return json_reply(404, {"message": "Not Found"})
        if scope not in found.scopes:
            return json_reply(403, {"message": f"Missing required scope: {scope}"})
        limit = state.config["ten_second_limit"]
        if not state.window.try_hit(state.clock(), limit):
            state.rate_limited += 1
            return self.rate_limited(1)
        status, body, headers = self.resource(req, state.subjects[req.bearer() or ""])
        return json_reply(status, body, headers)

    def resource(self, req: Request, sub: int) -> data.Result:
        if req.method == "POST":
            try:
                body = req.json()
            except ValueError:
                return 400, {"message": "the body is not valid JSON"}, {}
            return data.create_note(self.state, body, sub)
        query = data.decode_cursor(req.query)
        if isinstance(query, tuple):
            return query
        if req.path == "/v3/candidates":
            return data.list_candidates(self.state, query)
        return data.list_notes(self.state, query)

    def finish(self, req: Request, reply: Reply) -> Reply:
        """Every API answer names the window's limit and what is left of it."""
        if self.is_api(req.path):
            limit = self.state.config["ten_second_limit"]
            left = max(limit - self.state.window.used(self.state.clock()), 0)
            reply.headers.setdefault("X-RateLimit-Limit", str(limit))
            reply.headers.setdefault("X-RateLimit-Remaining", str(left))
        return reply

    def rate_limited(self, retry_after: int) -> Reply:
        headers = {
            "Retry-After": str(retry_after),
            "X-RateLimit-Reset": str(int(self.state.clock()) + retry_after),
            "X-RateLimit-Remaining": "0",
        }
        return json_reply(429, {"message": "Rate limit exceeded"}, headers)

    # faults and the overview page

    def fault_reply(self, fault: Fault) -> Reply:
        if fault.kind == "rate_limit":
            return self.rate_limited(fault.retry_after)
        status, body = FAULTS[fault.kind]
        return json_reply(status, body)

    def index_sections(self) -> tuple[list[tuple[str, str]], list[Section]]:
        state, base = self.state, self.state.base_url
        seeded = state.credentials[SEEDED_CLIENT_ID]
        summary = [
            ("Organization", f"{ORG_NAME} ({ORG_ID})"),
            ("Token endpoint", f"POST {base}/token (HTTP Basic client_id:client_secret)"),
            ("Harvest API", f"{base}/v3"),
            ("Seeded client ID", seeded.client_id),
            ("Seeded client secret (sandbox only)", seeded.secret),
            ("Rotate it", f"POST {base}/_sandbox/credentials/rotate"),
        ]
        users = [
            [
                u["id"],
                f"{u['first_name']} {u['last_name']}",
                u["primary_email_address"],
                u["site_admin"],
                u["disabled"],
            ]
            for u in state.users.values()
        ]
        candidates = [
            [
                c["id"],
                f"{c['first_name']} {c['last_name']}",
                ", ".join(e["value"] for e in c["email_addresses"]),
            ]
            for c in state.candidates.values()
        ]
        notes = [
            [
                n["id"],
                n["candidate_id"],
                n["user_id"],
                n["visibility"],
                n["type"],
                n["body"][:200],
                n["created_at"],
            ]
            for n in reversed(state.notes.values())
        ]
        credentials = [[c.client_id, " ".join(c.scopes), c.service_user] for c in state.credentials.values()]
        now = state.clock()
        usage = [
            state.requests_total,
            state.rate_limited,
            state.tokens.active(now),
            f"{state.window.used(now)} / {state.config['ten_second_limit']}",
        ]
        return summary, [
            Section("Users", ["Id", "Name", "Email", "Site admin", "Disabled"], users),
            Section("Candidates", ["Id", "Name", "Email addresses"], candidates),
            Section(
                "Notes (newest first)",
                ["Id", "Candidate", "User", "Visibility", "Type", "Body", "Created"],
                notes,
            ),
            Section("Credentials", ["Client ID", "Scopes", "Service account user"], credentials),
            self.fault_section(),
            Section("Usage", ["Requests", "Rate limited", "Active tokens", "10 s window"], [usage]),
        ]
