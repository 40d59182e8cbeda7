"""The Odoo sandbox: one database that speaks JSON-2 (when it claims version 19 or later) and
XML-RPC (common `version` / `authenticate`, object `execute_kw`), with API keys, a rate limit,
faults and an overview page. `OdooApp(major_version=17)` (or `POST /_sandbox/config
{"major_version": 17}`) makes it an older server that has no JSON-2."""

from __future__ import annotations

import threading
import traceback
import xmlrpc.client
from typing import Any
from xml.parsers.expat import ExpatError

from integrations.sandbox.common import Reply, Request, SandboxApp, empty_reply, json_reply
from integrations.sandbox.faults import Fault
from integrations.sandbox.odoo_data import DATABASE, LOGIN, SEEDED_API_KEY, UID, OdooError, OdooState
from integrations.sandbox.pages import Section

JSON2_FROM, XMLRPC_UNTIL = 19, 21  # JSON-2 from 19; XML-RPC removed in 22 (provider-facts.md)
# The JSON-2 status and exception name, and the /xmlrpc/2 fault code, of each OdooError kind.
ERRORS = {
    "validation": (422, "odoo.exceptions.ValidationError", 2),
    "missing_record": (404, "odoo.exceptions.MissingError", 2),
    "access_denied": (401, "werkzeug.exceptions.Unauthorized", 3),
    "access_error": (403, "odoo.exceptions.AccessError", 4),
    "missing_model": (404, "werkzeug.exceptions.NotFound", 2),
    "missing_method": (404, "werkzeug.exceptions.NotFound", 1),
    "server": (500, "builtins.ValueError", 1),
}
BROKEN_XMLRPC = (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError)
# execute_kw: the methods called on records (ids first), and the positional arguments of the rest
RECORD_METHODS = {"message_post"}
POSITIONAL = {"search_read": ["domain", "fields", "offset", "limit", "order"], "create": ["vals_list"]}
FAULT_ERRORS = {
    "invalid_session": OdooError("access_denied", "Invalid apikey"),
    "missing_scope": OdooError(
        "access_error", "You are not allowed to modify 'Activity' (mail.activity) records."
    ),
    "validation": OdooError("validation", "The operation cannot be completed (sandbox validation fault)."),
    "server_error": OdooError("server", "internal server error (sandbox server_error fault)"),
}


def odoo_error_reply(error: OdooError, *, xmlrpc_protocol: bool) -> Reply:
    status, name, fault_code = ERRORS[error.kind]
    if xmlrpc_protocol:
        text = error.message
        if fault_code == 1:  # Odoo sends the traceback of any other exception
            text = f"Traceback (most recent call last):\n  ...\n{name.rsplit('.', 1)[-1]}: {error.message}"
        return xml_reply(xmlrpc.client.Fault(fault_code, text))
    body: dict[str, Any] = {
        "name": name,
        "message": error.message,
        "arguments": [error.message],
        "context": {},
        "debug": "",
    }
    if status == 404 and error.kind == "missing_model":
        body["arguments"] = [error.message, 404]
    return json_reply(status, body)


def xml_reply(value: Any) -> Reply:
    """An XML-RPC answer (a fault too) is HTTP 200, text/xml."""
    params = value if isinstance(value, xmlrpc.client.Fault) else (value,)
    body = xmlrpc.client.dumps(params, methodresponse=True, allow_none=False)
    return Reply(200, body.encode("utf-8"), "text/xml; charset=utf-8")


def not_found() -> Reply:
    return Reply(404, b"<!doctype html><title>404 Not Found</title><h1>Not Found</h1>", "text/html")


class OdooApp(SandboxApp):
    provider = "odoo"
    title = "Odoo"
    state: OdooState

    def __init__(self, major_version: int = JSON2_FROM) -> None:
        super().__init__(OdooState(major_version))
        self.current = threading.local()  # the request a fault answers (JSON-2 or XML-RPC shape)

    @property
    def major(self) -> int:
        return int(self.state.config["major_version"])

    def handle(self, req: Request) -> Reply:
        self.current.xmlrpc = req.path.startswith("/xmlrpc/")
        return super().handle(req)

    def control(self, req: Request) -> Reply:
        if (req.method, req.path.rstrip("/")) == ("POST", "/_sandbox/revoke"):
            try:
                key = (req.json() or {}).get("api_key", "")
            except (ValueError, AttributeError):
                return json_reply(400, {"error": 'body must be {"api_key": ...}'})
            self.state.api_keys.pop(str(key), None)
            return empty_reply(204)
        return super().control(req)

    def _parse_config(self, data: Any) -> dict[str, int]:
        config = super()._parse_config(data)
        if "major_version" in config and not 8 <= config["major_version"] <= 30:
            raise ValueError("major_version must be between 8 and 30")
        return config

    def is_api(self, path: str) -> bool:
        return path.startswith(("/json/2/", "/xmlrpc/2/"))

    def is_create(self, req: Request) -> bool:
        if req.path.startswith("/json/2/"):
            return req.path.endswith("/message_post") or req.path == "/json/2/mail.activity/create"
        try:
            params, method = xmlrpc.client.loads(req.body)
        except BROKEN_XMLRPC:
            return False
        return method == "execute_kw" and len(params) > 4 and params[4] in ("message_post", "create")

    def mint_tokens(self, scopes: list[str] | None, ttl: int | None) -> dict[str, Any]:
        return {"api_key": self.state.mint_key(), "login": LOGIN, "database": DATABASE, "uid": UID}

    def upsert_record(self, data: Any) -> Reply:
        return self.state.upsert(data)

    def route(self, req: Request) -> Reply:
        if req.method == "GET" and req.path == "/web/version":
            if self.major < JSON2_FROM:
                return not_found()  # before 19 it is a JSON-RPC route, not a plain GET
            return json_reply(200, {"version_info": self.version_info(), "version": f"{self.major}.0"})
        if not self.is_api(req.path) or req.method != "POST":
            return not_found()
        if not self.state.window.try_hit(self.state.clock(), self.state.config["requests_per_second"]):
            self.state.rate_limited += 1
            return json_reply(429, {"message": "Too many requests"}, {"Retry-After": "1"})
        if req.path.startswith("/json/2/"):
            return self.json2(req) if self.major >= JSON2_FROM else not_found()
        return self.xmlrpc(req) if self.major <= XMLRPC_UNTIL else not_found()

    def version_info(self) -> list[Any]:
        return [self.major, 0, 0, "final", 0, ""]

    # JSON-2

    def json2(self, req: Request) -> Reply:
        parts = req.path.split("/")
        if len(parts) != 5 or not parts[3] or not parts[4]:
            return not_found()
        database = req.headers.get("x-odoo-database")
        if database and database != DATABASE:
            return not_found()  # no such database: the request has no db, and no /json/2 route
        scheme, _, key = req.headers.get("authorization", "").partition(" ")
        uid = self.state.api_keys.get(key.strip()) if scheme.lower() == "bearer" else None
        if uid is None:
            return odoo_error_reply(OdooError("access_denied", "Invalid apikey"), xmlrpc_protocol=False)
        try:
            body = req.json() if req.body else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return json_reply(
                400, {"name": "werkzeug.exceptions.BadRequest", "message": "expecting a json object"}
            )
        ids = body.pop("ids", None)
        try:
            result = self.state.execute(uid, parts[3], parts[4], ids, body)
        except OdooError as exc:
            return odoo_error_reply(exc, xmlrpc_protocol=False)
        except TypeError as exc:  # an unexpected named argument: JSON-2 answers 422
            return odoo_error_reply(OdooError("validation", str(exc)), xmlrpc_protocol=False)
        if parts[4] == "message_post":
            result = [result]  # a record answers as its ids
        return json_reply(200, result)

    # XML-RPC

    def xmlrpc(self, req: Request) -> Reply:
        try:
            params, method = xmlrpc.client.loads(req.body)
        except BROKEN_XMLRPC:  # Odoo answers a broken request with fault 1 and the traceback
            return xml_reply(xmlrpc.client.Fault(1, traceback.format_exc(limit=1)))
        service = req.path.removeprefix("/xmlrpc/2/")
        try:
            if service == "common" and method == "version":
                return xml_reply(self.server_version())
            if service == "common" and method in ("authenticate", "login"):
                return xml_reply(self.authenticate(*params[:3]))
            if service == "object" and method == "execute_kw":
                return xml_reply(self.execute_kw(*params))
            raise OdooError("server", f"AttributeError: '{service}' service has no method {method!r}")
        except OdooError as exc:
            return odoo_error_reply(exc, xmlrpc_protocol=True)
        except TypeError as exc:  # wrong arguments
            return odoo_error_reply(OdooError("server", f"TypeError: {exc}"), xmlrpc_protocol=True)

    def server_version(self) -> dict[str, Any]:
        version = f"{self.major}.0"
        return {
            "server_version": version,
            "server_version_info": self.version_info(),
            "server_serie": version,
            "protocol_version": 1,
        }

    def check_database(self, database: Any) -> None:
        if database != DATABASE:
            raise OdooError(
                "server",
                "psycopg2.OperationalError: connection to server failed: "
                f'FATAL:  database "{database}" does not exist',
            )

    def authenticate(self, database: Any, login: Any, key: Any) -> int | bool:
        self.check_database(database)
        return UID if login == LOGIN and self.state.api_keys.get(str(key)) == UID else False

    def execute_kw(
        self, database: Any, uid: Any, key: Any, model: Any, method: Any, args: Any = (), kw: Any = None
    ) -> Any:
        self.check_database(database)
        if self.state.api_keys.get(str(key)) != uid:
            raise OdooError("access_denied", "Access Denied")
        if model not in self.state.tables:
            raise OdooError("validation", f"Object {model} doesn't exist")
        args, named = list(args or []), dict(kw or {})
        ids = args.pop(0) if method in RECORD_METHODS and args else None
        for name, value in zip(POSITIONAL.get(str(method), []), args, strict=False):
            named[name] = value
        result = self.state.execute(uid, str(model), str(method), ids, named)
        return result

    # faults and the overview page

    def fault_reply(self, fault: Fault) -> Reply:
        kind = fault.kind
        if kind == "rate_limit":  # a proxy in front of Odoo answers it, in either protocol
            return json_reply(429, {"message": "Too many requests"}, {"Retry-After": str(fault.retry_after)})
        if kind == "unavailable":
            return Reply(503, b"<h1>503 Service Unavailable</h1>", "text/html")
        if kind in FAULT_ERRORS:
            return odoo_error_reply(
                FAULT_ERRORS[kind], xmlrpc_protocol=getattr(self.current, "xmlrpc", False)
            )
        return Reply(504, b"<h1>504 Gateway Time-out</h1>", "text/html")  # hang

    def index_sections(self) -> tuple[list[tuple[str, str]], list[Section]]:
        state, now = self.state, self.state.clock()
        tables = state.tables
        protocols = "JSON-2 and XML-RPC" if self.major >= JSON2_FROM else "XML-RPC only"
        if self.major > XMLRPC_UNTIL:
            protocols = "JSON-2 only"
        summary = [
            ("Version", f"{self.major}.0 ({protocols})"),
            ("Database", DATABASE),
            ("Login", f"{LOGIN} (uid {UID})"),
            ("Seeded API key (sandbox only)", SEEDED_API_KEY),
        ]

        def newest(model: str) -> list[dict[str, Any]]:
            return sorted(tables[model].values(), key=lambda r: int(r["id"]), reverse=True)

        return summary, [
            Section(
                "Contacts (res.partner)",
                ["Id", "Name", "Email", "Active", "Last written"],
                [
                    [p["id"], p["name"], p["email"], p["active"], p["write_date"]]
                    for p in tables["res.partner"].values()
                ],
            ),
            Section(
                "Opportunities (crm.lead)",
                ["Id", "Name", "Partner", "Stage", "Active", "Last written"],
                [
                    [
                        lead["id"],
                        lead["name"],
                        lead["partner_id"],
                        tables["crm.stage"][lead["stage_id"]]["name"],
                        lead["active"],
                        lead["write_date"],
                    ]
                    for lead in tables["crm.lead"].values()
                ],
            ),
            Section(
                "Logged notes (mail.message, newest first)",
                ["Id", "On", "Subject", "Body", "Posted"],
                [
                    [m["id"], f"{m['model']} {m['res_id']}", m["subject"], m["body"][:200], m["date"]]
                    for m in newest("mail.message")
                ],
            ),
            Section(
                "To-Dos (mail.activity, newest first)",
                ["Id", "On", "Summary", "Due", "Active"],
                [
                    [
                        a["id"],
                        f"{a['res_model']} {a['res_id']}",
                        a["summary"],
                        a["date_deadline"],
                        a["active"],
                    ]
                    for a in newest("mail.activity")
                ],
            ),
            self.fault_section(),
            Section(
                "Usage",
                ["Requests", "Rate limited", "API keys", "1 s window"],
                [
                    [
                        state.requests_total,
                        state.rate_limited,
                        len(state.api_keys),
                        f"{state.window.used(now)} / {state.config['requests_per_second']}",
                    ]
                ],
            ),
        ]
