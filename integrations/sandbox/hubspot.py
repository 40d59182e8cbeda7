"""The HubSpot sandbox: one seeded portal, OAuth v1 tokens, per-hub rate limits and CRM v3 calls.

`POST /_sandbox/tokens {"hub_id": N}` mints a grant for another portal N: its calls share the one
portal's records but have their own ten-second window, and `/_sandbox/state` then lists
`portals` with each portal's requests, 429s and the most calls it accepted in any ten seconds
(the multi-host drill, bench/multihost.py, holds each portal under its limit with these)."""

from __future__ import annotations

import re
from typing import Any

from integrations.sandbox import hubspot_crm as crm
from integrations.sandbox import records, webhooks
from integrations.sandbox.common import (
    Reply,
    Request,
    SandboxApp,
    empty_reply,
    json_reply,
    new_uuid,
    setting,
)
from integrations.sandbox.faults import Fault
from integrations.sandbox.hubspot_crm import (
    APP_ID,
    HUB_DOMAIN,
    HUB_ID,
    REQUIRED_SCOPES,
    SEARCH,
    USER,
    USER_ID,
    HubSpotState,
    Portal,
    Record,
    hs_error,
)
from integrations.sandbox.oauth import client_ok
from integrations.sandbox.pages import Section

TOKEN_PATH = re.compile(r"^/oauth/(?:v1|v3|\d{4}-\d{2})/token$")
AUTHORIZE_PATH = re.compile(r"^/oauth/(?:[\w-]+/)?authorize$")
TOKEN_INFO = re.compile(r"^/oauth/v1/access-tokens/([^/]+)$")
REFRESH_TOKEN = re.compile(r"^/oauth/v1/refresh-tokens/([^/]+)$")
SEARCH_SCOPES = {
    "contacts": "crm.objects.contacts.read",
    "deals": "crm.objects.deals.read",
    "notes": "crm.objects.contacts.write",
    "tasks": "crm.objects.contacts.write",
    "meetings": "crm.objects.contacts.write",
}
TEN_SECONDLY = "You have reached your ten_secondly_rolling limit."
BAD_REFRESH = {
    "error": "invalid_grant",
    "error_description": "refresh token is invalid, expired or revoked",
    "status": "BAD_REFRESH_TOKEN",
    "message": "missing or invalid refresh token",
}


class HubSpotApp(SandboxApp):
    provider = "hubspot"
    title = "HubSpot"
    account = f"the HubSpot account {HUB_DOMAIN} (portal {HUB_ID})"
    client_setting = "HUBSPOT_CLIENT_ID"
    decision_path = "/oauth/authorize/decision"
    deny_description = "The user denied the app access to the account"
    webhook_sender = staticmethod(webhooks.send)
    state: HubSpotState

    def __init__(self) -> None:
        super().__init__(HubSpotState())

    def is_api(self, path: str) -> bool:
        return not path.startswith("/oauth/")

    def upsert_record(self, data: Any) -> Reply:
        return records.upsert_hubspot(self.state, data)

    def _parse_config(self, data: Any) -> dict[str, int]:
        optional = self.state.OPTIONAL_CONFIG
        if not isinstance(data, dict) or not set(optional) & set(data):
            return super()._parse_config(data)
        for key in set(optional) & set(data):
            if isinstance(data[key], bool) or not isinstance(data[key], int) or data[key] < 1:
                raise ValueError(f"{key} must be a positive integer")
        return {**super()._parse_config({k: v for k, v in data.items() if k not in optional}), **data}

    def is_create(self, req: Request) -> bool:
        return req.method == "POST" and bool(crm.OBJECTS.match(req.path))

    def requested_scopes(self, query: dict[str, str]) -> list[str]:
        return query.get("scope", "").split() + query.get("optional_scope", "").split()

    def route(self, req: Request) -> Reply:
        path, method = req.path, req.method
        if method == "GET" and AUTHORIZE_PATH.match(path):
            return self.authorize_page(req)
        if method == "POST" and path == self.decision_path:
            return self.decide(req)
        if method == "POST" and TOKEN_PATH.match(path):
            return self.token(req)
        if method == "GET" and (m := TOKEN_INFO.match(path)):
            return self.token_info(m[1])
        if method == "DELETE" and (m := REFRESH_TOKEN.match(path)):
            if self.state.tokens.revoke_grant(m[1]):
                return empty_reply(204)
            return crm.not_found("refresh token not found")
        if path.startswith(("/crm/", "/account-info/")):
            return self.api(req)
        return crm.not_found(f"No route for {method} {path}")

    # OAuth

    def token_json(self, refresh_token: str, scopes: list[str], ttl: int) -> dict[str, Any]:
        now = self.state.clock()
        access = self.state.tokens.issue_access(scopes, ttl, now, "sbx-hs-", refresh_token)
        return {
            "access_token": access,
            "refresh_token": refresh_token,
            "expires_in": ttl,
            "token_type": "bearer",
            "hub_id": HUB_ID,
            "scopes": scopes,
            "user_id": USER_ID,
            "token_use": "access",
        }

    def token(self, req: Request) -> Reply:
        form, tokens, ttl = req.form(), self.state.tokens, self.state.config["access_token_ttl"]
        if not client_ok(form, setting("HUBSPOT_CLIENT_ID"), setting("HUBSPOT_CLIENT_SECRET")):
            return json_reply(
                400,
                {
                    "status": "BAD_CLIENT_ID",
                    "message": "missing or unknown client id",
                    "error": "invalid_client",
                    "error_description": "missing or unknown client id",
                },
            )
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            code = tokens.take_code(
                form.get("code", ""), form["client_id"], form.get("redirect_uri", ""), self.state.clock()
            )
            if code is None:
                return json_reply(
                    400,
                    {
                        "status": "BAD_AUTH_CODE",
                        "message": "missing or unknown auth code",
                        "error": "invalid_grant",
                        "error_description": "missing or unknown auth code",
                    },
                )
            return json_reply(
                200, self.token_json(tokens.issue_grant(code.scopes, "sbx-hs-rt-"), code.scopes, ttl)
            )
        if grant_type == "refresh_token":
            fault = self.state.faults.take(req.path, grant=True)
            refresh = form.get("refresh_token", "")
            if fault or refresh not in tokens.grants:
                return json_reply(400, BAD_REFRESH)
            return json_reply(200, self.token_json(refresh, tokens.grants[refresh], ttl))
        return json_reply(
            400,
            {
                "status": "BAD_GRANT_TYPE",
                "message": f"unsupported grant_type {grant_type!r}",
                "error": "unsupported_grant_type",
                "error_description": "grant_type must be authorization_code or refresh_token",
            },
        )

    def token_info(self, token: str) -> Reply:
        found = self.state.tokens.access.get(token)
        now = self.state.clock()
        if found is None or found.expires_at <= now:
            return crm.not_found("access token not found or expired")
        return json_reply(
            200,
            {
                "token": token,
                "user": USER,
                "hub_domain": HUB_DOMAIN,
                "scopes": found.scopes,
                "hub_id": HUB_ID,
                "app_id": APP_ID,
                "expires_in": int(found.expires_at - now),
                "user_id": USER_ID,
                "token_type": "access",
            },
        )

    def mint_tokens(self, scopes: list[str] | None, ttl: int | None, hub_id: int = HUB_ID) -> dict[str, Any]:
        granted = list(REQUIRED_SCOPES if scopes is None else scopes)
        ttl = self.state.config["access_token_ttl"] if ttl is None else ttl
        grant = self.state.tokens.issue_grant(granted, "sbx-hs-rt-")
        if hub_id != HUB_ID:
            self.state.portals.setdefault(hub_id, Portal())
            self.state.grant_hubs[grant] = hub_id
        return {**self.token_json(grant, granted, ttl), "hub_id": hub_id}

    def control(self, req: Request) -> Reply:
        if (req.method, req.path.rstrip("/")) == ("POST", "/_sandbox/tokens"):
            try:
                data = req.json()
            except ValueError:
                return json_reply(400, {"error": "body must be JSON"})
            if isinstance(data, dict) and "hub_id" in data:
                hub_id = data.pop("hub_id")
                if isinstance(hub_id, bool) or not isinstance(hub_id, int) or hub_id < 1:
                    return json_reply(400, {"error": "hub_id must be a positive integer"})
                try:
                    scopes, ttl = self._parse_mint(data)
                except ValueError as exc:
                    return json_reply(400, {"error": str(exc)})
                return json_reply(200, self.mint_tokens(scopes, ttl, hub_id))
        return super().control(req)

    # API

    def api(self, req: Request) -> Reply:
        state, now = self.state, self.state.clock()
        token = req.bearer()
        access = state.tokens.access.get(token) if token else None
        if access is None:
            message = "Authentication credentials not found or not valid. This API supports OAuth 2.0."
            return hs_error(401, "INVALID_AUTHENTICATION", message)
        if access.expires_at <= now:
            ago = int(now - access.expires_at)
            return hs_error(
                401,
                "EXPIRED_AUTHENTICATION",
                f"The OAuth token used to make this call expired {ago} second(s) ago.",
            )
        if search := SEARCH.match(req.path):
            if not state.secondly.try_hit(now, state.config["search_per_second"]):
                state.rate_limited += 1
                return self.rate_limit_reply("You have reached your secondly limit.", "SECONDLY")
            headers: dict[str, str] = {}
        else:
            limit = state.config["ten_second_limit"]
            portal = state.portals.get(state.grant_hubs.get(access.grant or "", HUB_ID))
            window = portal.window if portal else state.ten_second
            if portal:
                portal.requests += 1
            if not window.try_hit(now, limit):
                state.rate_limited += 1
                if portal:
                    portal.rate_limited += 1
                return self.rate_limit_reply(TEN_SECONDLY, "TEN_SECONDLY_ROLLING", self.limit_headers(0))
            used = window.used(now)
            if portal:
                portal.peak = max(portal.peak, used)
            headers = self.limit_headers(limit - used)
        needed = SEARCH_SCOPES[search[1]] if search else self.needed_scope(req.path)
        if needed and needed not in access.scopes:
            reply = crm.missing_scope(needed)
        else:
            reply = crm.crm_call(self.state, req, search)
        reply.headers.update(headers)
        return reply

    def limit_headers(self, remaining: int) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Max": str(self.state.config["ten_second_limit"]),
            "X-HubSpot-RateLimit-Remaining": str(max(remaining, 0)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        }

    @staticmethod
    def rate_limit_reply(message: str, policy: str, headers: dict[str, str] | None = None) -> Reply:
        body = {
            "status": "error",
            "message": message,
            "errorType": "RATE_LIMIT",
            "correlationId": new_uuid(),
            "policyName": policy,
            "requestId": new_uuid(),
        }
        return json_reply(429, body, headers)

    @staticmethod
    def needed_scope(path: str) -> str | None:
        if path == "/account-info/v3/details":
            return "oauth"
        if crm.OBJECTS.match(path) or crm.OBJECT.match(path) or crm.ASSOCIATE.match(path):
            return "crm.objects.contacts.write"  # notes, tasks and meetings have no scope of their own
        return None

    # faults and the overview page

    def fault_reply(self, fault: Fault) -> Reply:
        kind = fault.kind
        if kind == "rate_limit":
            return self.rate_limit_reply(
                TEN_SECONDLY, "TEN_SECONDLY_ROLLING", {"Retry-After": str(fault.retry_after)}
            )
        if kind == "invalid_session":
            return hs_error(
                401,
                "EXPIRED_AUTHENTICATION",
                "The OAuth token used to make this call expired 1 second(s) ago.",
            )
        if kind == "missing_scope":
            return crm.missing_scope("crm.objects.contacts.write")
        if kind == "validation":
            return hs_error(
                400, "VALIDATION_ERROR", "Property values were not valid (sandbox validation fault)"
            )
        if kind == "server_error":
            return hs_error(500, "INTERNAL_ERROR", "internal error (sandbox server_error fault)")
        if kind == "unavailable":
            return json_reply(
                503, {"status": "error", "message": "Service Unavailable", "category": "INTERNAL_ERROR"}
            )
        return json_reply(
            504, {"status": "error", "message": "Gateway Timeout", "category": "INTERNAL_ERROR"}
        )

    def index_sections(self) -> tuple[list[tuple[str, str]], list[Section]]:
        state, now = self.state, self.state.clock()
        summary = [
            ("Portal", f"{HUB_ID} ({HUB_DOMAIN})"),
            ("User", f"{USER} ({USER_ID})"),
            ("App", str(APP_ID)),
            ("Client id", str(setting("HUBSPOT_CLIENT_ID"))),
        ]

        def links(r: Record) -> str:
            return ", ".join(f"{a.to_type} {a.to_id} ({a.type_id})" for a in r.associations)

        newest = sorted(state.notes.values(), key=lambda r: int(r.id), reverse=True)
        tasks = sorted(state.tasks.values(), key=lambda r: int(r.id), reverse=True)
        meetings = sorted(state.meetings.values(), key=lambda r: int(r.id), reverse=True)
        return summary, [
            Section(
                "Contacts",
                ["Id", "Name", "Email"],
                [
                    [
                        c.id,
                        f"{c.properties.get('firstname', '')} {c.properties.get('lastname', '')}".strip(),
                        c.properties.get("email", ""),
                    ]
                    for c in state.contacts.values()
                ],
            ),
            Section(
                "Deals",
                ["Id", "Name", "Stage", "Closed", "Contact", "Last modified"],
                [
                    [
                        d.id,
                        d.properties.get("dealname", ""),
                        d.properties.get("dealstage", ""),
                        d.properties.get("hs_is_closed", ""),
                        d.associations[0].to_id if d.associations else "",
                        d.properties["hs_lastmodifieddate"],
                    ]
                    for d in state.deals.values()
                ],
            ),
            Section(
                "Notes (newest first)",
                ["Id", "Timestamp", "Body", "Associations", "Created"],
                [
                    [
                        n.id,
                        n.properties.get("hs_timestamp"),
                        n.properties.get("hs_note_body", "")[:200],
                        links(n),
                        n.created_at,
                    ]
                    for n in newest
                ],
            ),
            Section(
                "Tasks (newest first)",
                ["Id", "Subject", "Status", "Priority", "Type", "Due", "Associations"],
                [
                    [
                        t.id,
                        t.properties.get("hs_task_subject"),
                        t.properties.get("hs_task_status"),
                        t.properties.get("hs_task_priority"),
                        t.properties.get("hs_task_type"),
                        t.properties.get("hs_timestamp"),
                        links(t),
                    ]
                    for t in tasks
                ],
            ),
            Section(
                "Meetings (newest first)",
                ["Id", "Title", "Start", "End", "Outcome", "Associations"],
                [
                    [
                        m.id,
                        m.properties.get("hs_meeting_title"),
                        m.properties.get("hs_meeting_start_time"),
                        m.properties.get("hs_meeting_end_time"),
                        m.properties.get("hs_meeting_outcome"),
                        links(m),
                    ]
                    for m in meetings
                ],
            ),
            self.fault_section(),
            Section(
                "Usage",
                ["Requests", "Rate limited", "Active tokens", "10 s window", "Search (1 s)"],
                [
                    [
                        state.requests_total,
                        state.rate_limited,
                        state.tokens.active(now),
                        f"{state.ten_second.used(now)} / {state.config['ten_second_limit']}",
                        f"{state.secondly.used(now)} / {state.config['search_per_second']}",
                    ]
                ],
            ),
        ]
