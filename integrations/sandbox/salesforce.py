"""The Salesforce sandbox: login host (OAuth, PKCE, identity) and the org's REST API with its daily
API-usage counter, in one server."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from integrations.sandbox import records
from integrations.sandbox import salesforce_rest as sf
from integrations.sandbox.common import Reply, Request, SandboxApp, empty_reply, json_reply, setting
from integrations.sandbox.faults import Fault
from integrations.sandbox.oauth import AccessToken, client_ok, pkce_challenge, same
from integrations.sandbox.pages import Section
from integrations.sandbox.salesforce_rest import ORG_ID, USER_ID, USERNAME, SalesforceState, sf_error

INVALID_SESSION = sf_error("INVALID_SESSION_ID", "Session expired or invalid")
NOT_REST_SESSION = sf_error("INVALID_SESSION_ID", "This session is not valid for use with the REST API")
LIMIT_EXCEEDED = sf_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
VERSIONS = [{"label": "Spring '26", "url": "/services/data/v66.0", "version": "66.0"}]
EVENT_COLUMNS = ["Id", "Subject", "StartDateTime", "EndDateTime", "WhoId", "WhatId", "CreatedDate"]
FAULTS: dict[str, tuple[int, list[dict[str, Any]]]] = {
    "rate_limit": (403, LIMIT_EXCEEDED),
    "invalid_session": (401, INVALID_SESSION),
    "missing_scope": (403, NOT_REST_SESSION),
    "validation": (400, sf_error("FIELD_CUSTOM_VALIDATION_EXCEPTION", "sandbox validation fault", [])),
    "server_error": (500, sf_error("UNKNOWN_EXCEPTION", "An unexpected error occurred.")),
    "unavailable": (503, sf_error("SERVER_UNAVAILABLE", "The server is temporarily unavailable.")),
    "hang": (
        504,
        sf_error("REQUEST_RUNNING_TOO_LONG", "Your request was running for too long, and has been stopped."),
    ),
}


def grant_error(description: str, error: str = "invalid_grant") -> Reply:
    return json_reply(400, {"error": error, "error_description": description})


class SalesforceApp(SandboxApp):
    provider = "salesforce"
    title = "Salesforce"
    account = f"the Salesforce org {ORG_ID} as {USERNAME}"
    client_setting = "SALESFORCE_CLIENT_ID"
    decision_path = "/services/oauth2/authorize/decision"
    deny_description = "end-user denied authorization"
    state: SalesforceState

    def __init__(self) -> None:
        super().__init__(SalesforceState())

    def is_api(self, path: str) -> bool:
        return not path.startswith("/services/oauth2/") or path == "/services/oauth2/userinfo"

    def upsert_record(self, data: Any) -> Reply:
        return records.upsert_salesforce(self.state, data)

    def is_create(self, req: Request) -> bool:
        match = sf.VERSION_PATH.match(req.path)
        resource = (match[2] or "").strip("/") if match is not None else ""
        return req.method == "POST" and resource in ("sobjects/Task", "sobjects/Event")

    def requested_scopes(self, query: dict[str, str]) -> list[str]:
        return query.get("scope", "").split() or list(sf.REQUIRED_SCOPES)

    def authorize_error(self, query: dict[str, str]) -> str | None:
        if query.get("response_type") != "code":
            return "response_type must be 'code' (the web server flow)."
        if (query.get("code_challenge_method") or "S256") != "S256":
            return "code_challenge_method must be S256."
        return None

    def route(self, req: Request) -> Reply:
        path, method = req.path, req.method
        if method == "GET" and path == "/services/oauth2/authorize":
            return self.authorize_page(req)
        if method == "POST" and path == self.decision_path:
            return self.decide(req)
        if method == "POST" and path == "/services/oauth2/token":
            return self.token(req)
        if method == "POST" and path == "/services/oauth2/revoke":
            return self.revoke(req)
        if method == "GET" and path.rstrip("/") == "/services/data":
            return json_reply(200, VERSIONS)
        if method == "GET" and (path == "/services/oauth2/userinfo" or path.startswith("/id/")):
            return self.identity(req)
        if sf.VERSION_PATH.match(path):
            return self.rest(req)
        return json_reply(404, sf.NOT_FOUND)

    def finish(self, req: Request, reply: Reply) -> Reply:
        if sf.VERSION_PATH.match(req.path):
            used, limit = self.state.config["api_usage"], self.state.config["daily_api_limit"]
            reply.headers["Sforce-Limit-Info"] = f"api-usage={used}/{limit}"
        return reply

    # OAuth and identity

    def token_json(
        self, scopes: list[str], grant: str | None, with_refresh: bool, ttl: int
    ) -> dict[str, Any]:
        now, base = self.state.clock(), self.state.base_url
        access = self.state.tokens.issue_access(scopes, ttl, now, ORG_ID[:15] + "!", grant)
        identity, issued_at = f"{base}/id/{ORG_ID}/{USER_ID}", str(int(now * 1000))
        secret = str(setting("SALESFORCE_CLIENT_SECRET")).encode("utf-8")
        signature = hmac.new(secret, (identity + issued_at).encode("utf-8"), hashlib.sha256).digest()
        data = {
            "access_token": access,
            "instance_url": base,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": base64.b64encode(signature).decode("ascii"),
            "scope": " ".join(scopes),
        }
        if with_refresh and grant:
            data["refresh_token"] = grant
        return data

    def issue(self, scopes: list[str], ttl: int) -> dict[str, Any]:
        wants_refresh = "refresh_token" in scopes or "offline_access" in scopes
        grant = self.state.tokens.issue_grant(scopes, "5Aep861") if wants_refresh else None
        return self.token_json(scopes, grant, True, ttl)

    def token(self, req: Request) -> Reply:
        form, tokens, ttl = req.form(), self.state.tokens, self.state.config["access_token_ttl"]
        if not client_ok(form, setting("SALESFORCE_CLIENT_ID"), setting("SALESFORCE_CLIENT_SECRET")):
            return grant_error("invalid client credentials", "invalid_client")
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            code = tokens.take_code(
                form.get("code", ""), form["client_id"], form.get("redirect_uri", ""), self.state.clock()
            )
            if code is None:
                return grant_error("invalid authorization code")
            if code.challenge and not same(pkce_challenge(form.get("code_verifier", "")), code.challenge):
                return grant_error("invalid code verifier")
            return json_reply(200, self.issue(code.scopes, ttl))
        if grant_type == "refresh_token":
            fault = self.state.faults.take(req.path, grant=True)
            refresh = form.get("refresh_token", "")
            if fault or refresh not in tokens.grants:
                return grant_error("expired access/refresh token")
            return json_reply(200, self.token_json(tokens.grants[refresh], refresh, False, ttl))
        return grant_error("grant type not supported", "unsupported_grant_type")

    def revoke(self, req: Request) -> Reply:
        token = req.form().get("token", "")
        if self.state.tokens.revoke_grant(token) or self.state.tokens.revoke_access(token):
            return empty_reply(200)
        return grant_error("this token type is not supported", "unsupported_token_type")

    def mint_tokens(self, scopes: list[str] | None, ttl: int | None) -> dict[str, Any]:
        granted = list(sf.REQUIRED_SCOPES if scopes is None else scopes)
        return self.issue(granted, self.state.config["access_token_ttl"] if ttl is None else ttl)

    def session(self, req: Request) -> AccessToken | None:
        token = req.bearer()
        found = self.state.tokens.access.get(token) if token else None
        return found if found and found.expires_at > self.state.clock() else None

    def identity(self, req: Request) -> Reply:
        if self.session(req) is None:
            return json_reply(401, INVALID_SESSION)
        identity = f"{self.state.base_url}/id/{ORG_ID}/{USER_ID}"
        person = {"user_id": USER_ID, "organization_id": ORG_ID, "email": USERNAME}
        if req.path == "/services/oauth2/userinfo":
            return json_reply(
                200, {"sub": identity, **person, "preferred_username": USERNAME, "name": sf.DISPLAY_NAME}
            )
        if req.path.rstrip("/") != f"/id/{ORG_ID}/{USER_ID}":
            return json_reply(404, sf.NOT_FOUND)
        return json_reply(
            200, {"id": identity, **person, "username": USERNAME, "display_name": sf.DISPLAY_NAME}
        )

    # REST

    def rest(self, req: Request) -> Reply:
        state, config = self.state, self.state.config
        session = self.session(req)
        if session is None:
            return json_reply(401, INVALID_SESSION)
        if not {"api", "full"} & set(session.scopes):
            return json_reply(403, NOT_REST_SESSION)
        if config["api_usage"] >= config["daily_api_limit"]:
            state.rate_limited += 1
            return json_reply(403, LIMIT_EXCEEDED)
        config["api_usage"] += 1  # a composite request counts once
        try:
            body = req.json() if req.method in ("POST", "PATCH") else None
        except ValueError:
            return json_reply(400, sf_error("JSON_PARSER_ERROR", "The request body is not valid JSON"))
        match = sf.VERSION_PATH.match(req.path)
        assert match is not None  # route() checked
        version, resource = match[1], (match[2] or "").strip("/")
        if req.method == "POST" and resource == "composite":
            status, data = sf.composite(state, body)
        else:
            status, data = sf.rest(state, req.method, version, resource, req.query, body)
        return json_reply(status, data)

    # faults and the overview page

    def fault_reply(self, fault: Fault) -> Reply:
        status, body = FAULTS[fault.kind]
        headers = {"Retry-After": str(fault.retry_after)} if fault.kind == "rate_limit" else {}
        return json_reply(status, body, headers)

    def index_sections(self) -> tuple[list[tuple[str, str]], list[Section]]:
        state, now = self.state, self.state.clock()
        summary = [
            ("Org", f"{state.org_name} ({ORG_ID})"),
            ("User", f"{USERNAME} ({USER_ID})"),
            ("Instance URL", state.base_url),
            ("Client id", str(setting("SALESFORCE_CLIENT_ID"))),
        ]
        data = state.as_json()
        task_columns = [
            "Id",
            "Subject",
            "Status",
            "Priority",
            "ActivityDate",
            "WhoId",
            "WhatId",
            "CreatedDate",
        ]
        return summary, [
            Section(
                "Contacts",
                ["Id", "Name", "Email"],
                [[c["Id"], c["Name"], c["Email"]] for c in data["contacts"]],
            ),
            Section(
                "Opportunities",
                ["Id", "Name", "StageName", "IsClosed", "ContactId", "LastModifiedDate"],
                [
                    [o[k] for k in ("Id", "Name", "StageName", "IsClosed", "ContactId", "LastModifiedDate")]
                    for o in data["opportunities"]
                ],
            ),
            Section(
                "Tasks (newest first)", task_columns, [[t[c] for c in task_columns] for t in data["tasks"]]
            ),
            Section(
                "Events (newest first)",
                EVENT_COLUMNS,
                [[e[c] for c in EVENT_COLUMNS] for e in data["events"]],
            ),
            self.fault_section(),
            Section(
                "Usage",
                ["Requests", "Rate limited", "Active tokens", "API usage today"],
                [
                    [
                        state.requests_total,
                        state.rate_limited,
                        state.tokens.active(now),
                        f"{state.config['api_usage']} / {state.config['daily_api_limit']}",
                    ]
                ],
            ),
        ]
