"""The Zoho CRM sandbox: one seeded org in the "eu" data centre, serving the accounts server
(consent, tokens, revocation) and the org's API domain (REST v7 and COQL) on one port, with the
org's API credits and its concurrency limit.

The data centre is emulated by host: the consent redirect names this server's own origin as
`accounts-server`, and the token endpoint answers a request that reached it under another host
name (e.g. `localhost` instead of `127.0.0.1`) as Zoho's other data centres answer a code they
never issued: `{"error": "invalid_code"}`. So a client that ignores `accounts-server` fails."""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from integrations.sandbox import zoho_crm as crm
from integrations.sandbox.common import Reply, Request, SandboxApp, json_reply, setting
from integrations.sandbox.faults import Fault
from integrations.sandbox.oauth import AccessToken, client_ok
from integrations.sandbox.pages import Section
from integrations.sandbox.zoho_crm import LOCATION, ORG, REQUIRED_SCOPES, ZohoState, zoho_error

API_PATH = re.compile(r"^/crm/v(\d+)/(.+)$")
NOTES_OF = re.compile(r"^(Contacts|Deals)/(\d+)/Notes$")
INVALID_TOKEN = zoho_error("INVALID_TOKEN", "invalid oauth token")
SCOPE_MISMATCH = zoho_error("OAUTH_SCOPE_MISMATCH", "invalid oauth scope to access this URL")
CONCURRENCY = zoho_error("TOO_MANY_REQUESTS", "The concurrency limit of the org has been exceeded")
NO_CREDITS = zoho_error("LIMIT_EXCEEDED", "API credits for the last 24 hours have been used up")
FAULTS: dict[str, tuple[int, dict[str, Any]]] = {
    "rate_limit": (429, CONCURRENCY),
    "invalid_session": (401, INVALID_TOKEN),
    "missing_scope": (401, SCOPE_MISMATCH),
    "validation": (400, {"data": [zoho_error("INVALID_DATA", "invalid data", {"api_name": "Note_Content"})]}),
    "server_error": (500, zoho_error("INTERNAL_ERROR", "Internal Server Error")),
    "unavailable": (503, zoho_error("INTERNAL_ERROR", "Service Unavailable")),
    "hang": (504, zoho_error("INTERNAL_ERROR", "Gateway Timeout")),
}
MODULE_SCOPES = {"Contacts": "contacts", "Deals": "deals", "Tasks": "tasks", "Notes": "notes"}
COQL_FROM = re.compile(r"\bfrom\s+(\w+)", re.I)


def covers(granted: list[str], needed: str) -> bool:
    """A grant covers a scope by itself, by its module's or service's ALL, or by the operation on
    every module (ZohoCRM.modules.READ)."""
    have = {s.lower() for s in granted}
    parts = needed.lower().split(".")
    prefix = parts[:-1]
    while len(prefix) >= 2:
        if {".".join([*prefix, parts[-1]]), ".".join([*prefix, "all"])} & have:
            return True
        prefix = prefix[:-1]
    return False


def token_error(error: str) -> Reply:
    # [verify] Zoho's token endpoint answers its errors with HTTP 200 and an `error` field
    return json_reply(200, {"error": error})


class ZohoApp(SandboxApp):
    provider = "zoho"
    title = "Zoho CRM"
    account = f"the Zoho CRM org {ORG['company_name']} ({ORG['id']}, data centre {LOCATION})"
    client_setting = "ZOHO_CLIENT_ID"
    decision_path = "/oauth/v2/auth/decision"
    deny_description = "The user denied access"
    state: ZohoState

    def __init__(self) -> None:
        super().__init__(ZohoState())
        self.in_flight = 0
        self.flight_lock = threading.Lock()

    def is_api(self, path: str) -> bool:
        return path.startswith("/crm/")

    def is_create(self, req: Request) -> bool:
        return req.method == "POST" and bool(re.fullmatch(r"/crm/v\d+/(Notes|Tasks)", req.path))

    def upsert_record(self, data: Any) -> Reply:
        return crm.upsert_record(self.state, data)

    def requested_scopes(self, query: dict[str, str]) -> list[str]:
        return [s for s in re.split(r"[\s,]+", query.get("scope", "")) if s]

    def authorize_error(self, query: dict[str, str]) -> str | None:
        if query.get("response_type") != "code":
            return "response_type must be 'code'."
        if query.get("access_type") != "offline":
            return "access_type must be 'offline': Conduit needs a refresh token."
        return None

    def handle(self, req: Request) -> Reply:
        """API calls count against the org's concurrency limit while they are in flight."""
        if not self.is_api(req.path):
            return super().handle(req)
        with self.flight_lock:
            busy = self.in_flight >= self.state.config["concurrency_limit"]
            self.in_flight += 0 if busy else 1
        if busy:
            with self.state.lock:
                self.state.requests_total += 1
                self.state.rate_limited += 1
            return json_reply(429, CONCURRENCY)
        try:
            return super().handle(req)
        finally:
            with self.flight_lock:
                self.in_flight -= 1

    def route(self, req: Request) -> Reply:
        path, method = req.path, req.method
        if method == "GET" and path == "/oauth/v2/auth":
            return self.authorize_page(req)
        if method == "POST" and path == self.decision_path:
            return self.decide(req)
        if method == "POST" and path == "/oauth/v2/token":
            return self.token(req)
        if method == "POST" and path == "/oauth/v2/token/revoke":
            return self.revoke(req)
        if m := API_PATH.match(path):
            return self.api(req, m[2])
        return json_reply(
            404,
            zoho_error("INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one"),
        )

    # OAuth: the accounts server

    def decide(self, req: Request) -> Reply:
        reply = super().decide(req)
        location = reply.headers.get("Location", "")
        if "code" in dict(parse_qsl(urlsplit(location).query)):
            dc = {"location": LOCATION, "accounts-server": self.state.base_url}
            reply.headers["Location"] = f"{location}&{urlencode(dc)}"
        return reply

    def at_data_centre(self, req: Request) -> bool:
        own = urlsplit(self.state.base_url).netloc
        return not own or req.headers.get("host", "") == own

    def token_json(self, scopes: list[str], grant: str | None) -> dict[str, Any]:
        ttl, now = self.state.config["access_token_ttl"], self.state.clock()
        return {
            "access_token": self.state.tokens.issue_access(scopes, ttl, now, "1000.", grant),
            "scope": " ".join(scopes),
            "api_domain": self.state.base_url,
            "token_type": "Bearer",
            "expires_in": ttl,
        }

    def issue(self, scopes: list[str]) -> dict[str, Any]:
        grant = self.state.tokens.issue_grant(scopes, "1000.")
        return {**self.token_json(scopes, grant), "refresh_token": grant}

    def token(self, req: Request) -> Reply:
        form, tokens = req.form(), self.state.tokens
        if not client_ok(form, setting("ZOHO_CLIENT_ID"), setting("ZOHO_CLIENT_SECRET")):
            return token_error("invalid_client")
        if not self.at_data_centre(req):
            return token_error("invalid_code")  # this data centre never issued that code or token
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            code = tokens.take_code(
                form.get("code", ""), form["client_id"], form.get("redirect_uri", ""), self.state.clock()
            )
            return token_error("invalid_code") if code is None else json_reply(200, self.issue(code.scopes))
        if grant_type == "refresh_token":
            fault = self.state.faults.take(req.path, grant=True)
            refresh = form.get("refresh_token", "")
            if fault or refresh not in tokens.grants:
                return token_error("invalid_code")
            return json_reply(200, self.token_json(tokens.grants[refresh], refresh))
        return token_error("unsupported_grant_type")

    def revoke(self, req: Request) -> Reply:
        token = req.query.get("token", "")
        if not self.at_data_centre(req):
            return token_error("invalid_token")
        if self.state.tokens.revoke_grant(token) or self.state.tokens.revoke_access(token):
            return json_reply(200, {"status": "success"})
        return token_error("invalid_token")

    def mint_tokens(self, scopes: list[str] | None, ttl: int | None) -> dict[str, Any]:
        granted = list(REQUIRED_SCOPES if scopes is None else scopes)
        minted = self.issue(granted)
        if ttl is not None:
            self.state.tokens.access[minted["access_token"]].expires_at = self.state.clock() + ttl
            minted["expires_in"] = ttl
        return minted

    # the API domain

    def session(self, req: Request) -> AccessToken | None:
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        found = self.state.tokens.access.get(token.strip()) if scheme.lower() == "zoho-oauthtoken" else None
        return found if found and found.expires_at > self.state.clock() else None

    def needed_scopes(self, method: str, resource: str, body: Any) -> list[str]:
        if resource == "org":
            return ["ZohoCRM.org.READ"]
        if resource == "coql":
            query = body.get("select_query") if isinstance(body, dict) else ""
            source = COQL_FROM.search(str(query or ""))
            module = MODULE_SCOPES.get(source[1], "contacts") if source else "contacts"
            return ["ZohoCRM.coql.READ", f"ZohoCRM.modules.{module}.READ"]
        if m := NOTES_OF.match(resource):
            return ["ZohoCRM.modules.notes.READ", f"ZohoCRM.modules.{MODULE_SCOPES[m[1]]}.READ"]
        name = resource.split("/")[0]
        operation = "CREATE" if method == "POST" else "READ"
        return [f"ZohoCRM.modules.{MODULE_SCOPES.get(name, name.lower())}.{operation}"]

    def api(self, req: Request, resource: str) -> Reply:
        state, config = self.state, self.state.config
        session = self.session(req)
        if session is None:
            return json_reply(401, INVALID_TOKEN)
        try:
            body = req.json() if req.method == "POST" else None
        except ValueError:
            return json_reply(400, zoho_error("INVALID_DATA", "the body is not valid JSON"))
        if not all(covers(session.scopes, s) for s in self.needed_scopes(req.method, resource, body)):
            return json_reply(401, SCOPE_MISMATCH)
        if config["credits_used"] >= config["credit_limit"]:
            state.rate_limited += 1
            return json_reply(429, NO_CREDITS)
        config["credits_used"] += 1
        status, data = self.resource(req, resource, body)
        return Reply(204, b"", "") if status == 204 else json_reply(status, data)

    def resource(self, req: Request, resource: str, body: Any) -> crm.Result:
        state, method = self.state, req.method
        if (method, resource) == ("GET", "org"):
            return 200, {"org": [dict(ORG)]}
        if (method, resource) == ("GET", "Contacts/search"):
            return crm.search_contacts(state, req.query)
        if (method, resource) == ("POST", "coql"):
            return crm.run_coql(state, body)
        if (method, resource) == ("POST", "Notes"):
            return crm.create_note(state, body)
        if (method, resource) == ("POST", "Tasks"):
            return crm.create_task(state, body)
        if method == "GET" and (m := NOTES_OF.match(resource)):
            return crm.notes_of(state, m[1], m[2], req.query)
        return 404, zoho_error(
            "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one"
        )

    # faults and the overview page

    def fault_reply(self, fault: Fault) -> Reply:
        status, body = FAULTS[fault.kind]
        headers = {"Retry-After": str(fault.retry_after)} if fault.kind == "rate_limit" else {}
        return json_reply(status, body, headers)

    def index_sections(self) -> tuple[list[tuple[str, str]], list[Section]]:
        state, now = self.state, self.state.clock()
        data = state.as_json()
        summary = [
            ("Org", f"{ORG['company_name']} ({ORG['id']})"),
            ("Data centre", f"{LOCATION}: accounts server and API domain {state.base_url}"),
            ("Client id", str(setting("ZOHO_CLIENT_ID"))),
        ]
        return summary, [
            Section(
                "Contacts",
                ["id", "Full_Name", "Email", "Modified_Time"],
                [[c[k] for k in ("id", "Full_Name", "Email", "Modified_Time")] for c in data["contacts"]],
            ),
            Section(
                "Deals",
                ["id", "Deal_Name", "Stage", "Contact", "Modified_Time"],
                [
                    [d["id"], d["Deal_Name"], d["Stage"], d["Contact_Name"]["id"], d["Modified_Time"]]
                    for d in data["deals"]
                ],
            ),
            Section(
                "Notes (newest first)",
                ["id", "Note_Title", "Parent", "Created_Time"],
                [
                    [n["id"], n["Note_Title"], f"{n['$se_module']} {n['Parent_Id']['id']}", n["Created_Time"]]
                    for n in data["notes"]
                ],
            ),
            Section(
                "Tasks (newest first)",
                ["id", "Subject", "Status", "Priority", "Due_Date", "Who_Id", "What_Id"],
                [
                    [
                        t["id"],
                        t["Subject"],
                        t["Status"],
                        t["Priority"],
                        t["Due_Date"],
                        t["Who_Id"]["id"],
                        (t["What_Id"] or {}).get("id", ""),
                    ]
                    for t in data["tasks"]
                ],
            ),
            self.fault_section(),
            Section(
                "Usage",
                ["Requests", "Rate limited", "Active tokens", "API credits (24 h)", "In flight"],
                [
                    [
                        state.requests_total,
                        state.rate_limited,
                        state.tokens.active(now),
                        f"{state.config['credits_used']} / {state.config['credit_limit']}",
                        f"{self.in_flight} / {state.config['concurrency_limit']}",
                    ]
                ],
            ),
        ]
