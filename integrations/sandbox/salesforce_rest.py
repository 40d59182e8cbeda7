"""Salesforce REST resources in the sandbox: the seeded org, limits, the supported SOQL queries
(contact, open opportunity, marked task or event, changed records, the org's name), Task and
Event create/read and composite. Each resource returns (status, JSON body)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from integrations.sandbox.common import SandboxState, iso

ORG_ID = "00D5g000004SbxAEAS"
USER_ID = "0055g00000SbxUsAAJ"
USERNAME = "admin@sandbox-demo.example"
DISPLAY_NAME = "Sandbox Admin"
ORG_NAME = "Sandbox Demo Inc."
REQUIRED_SCOPES = ["api", "refresh_token", "id"]
CONTACTS = [
    ("0035g00000SbxC1AAJ", "Maya", "Lopez", "maya.lopez@acme-logistics.example"),
    ("0035g00000SbxC2AAJ", "Jonas", "Weber", "jonas@brightfield-energy.example"),
    ("0035g00000SbxC3AAJ", "Lee", "Park", "lee@northwind.example"),
]
OPPORTUNITIES = [  # id, name, stage, closed, contact (via OpportunityContactRole), role id, modified
    (
        "0065g00000SbxO1AAJ",
        "Acme Logistics - Annual plan",
        "Negotiation/Review",
        False,
        0,
        "R1",
        "03-02T10:00",
    ),
    ("0065g00000SbxO2AAJ", "Acme Logistics - Pilot", "Closed Won", True, 0, "R2", "03-05T16:30"),
    ("0065g00000SbxO3AAJ", "Brightfield rollout", "Prospecting", False, 1, "R3", "02-20T08:15"),
]
TASK_FIELDS = {
    "Subject",
    "Description",
    "WhoId",
    "WhatId",
    "ActivityDate",
    "Status",
    "Priority",
    "TaskSubtype",
    "OwnerId",
}
EVENT_FIELDS = {
    "Subject",
    "Description",
    "WhoId",
    "WhatId",
    "StartDateTime",
    "EndDateTime",
    "DurationInMinutes",
    "ActivityDateTime",
    "IsAllDayEvent",
    "Location",
    "OwnerId",
}
EVENT_MAX_DAYS = 14  # an Event that is not all-day lasts at most 14 days
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
TASK_PRIORITIES = ("High", "Normal", "Low")
NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
_VALUE = r"'((?:[^'\\]|\\.)*)'"
CONTACT_QUERY = re.compile(
    rf"^\s*SELECT\s+Id\s*,\s*Name\s*,\s*Email\s+FROM\s+Contact\s+WHERE\s+Email\s*=\s*{_VALUE}"
    r"(?:\s+LIMIT\s+(\d+))?\s*$",
    re.I,
)
ROLE_QUERY = re.compile(
    rf"^\s*SELECT\s+OpportunityId\s+FROM\s+OpportunityContactRole\s+WHERE\s+ContactId\s*=\s*{_VALUE}"
    r"\s+AND\s+Opportunity\.IsClosed\s*=\s*(true|false)"
    r"\s+ORDER\s+BY\s+Opportunity\.LastModifiedDate(?:\s+(ASC|DESC))?(?:\s+LIMIT\s+(\d+))?\s*$",
    re.I,
)
MARKED_TASK_QUERY = re.compile(
    rf"^\s*SELECT\s+Id\s+FROM\s+Task\s+WHERE\s+WhoId\s*=\s*{_VALUE}\s+AND\s+Subject\s+LIKE\s+{_VALUE}"
    r"(?:\s+LIMIT\s+(\d+))?\s*$",
    re.I,
)
MARKED_EVENT_QUERY = re.compile(
    rf"^\s*SELECT\s+Id\s+FROM\s+Event\s+WHERE\s+WhoId\s*=\s*{_VALUE}\s+AND\s+Subject\s+LIKE\s+{_VALUE}"
    r"(?:\s+LIMIT\s+(\d+))?\s*$",
    re.I,
)
ORGANIZATION_QUERY = re.compile(r"^\s*SELECT\s+Name\s+FROM\s+Organization(?:\s+LIMIT\s+(\d+))?\s*$", re.I)
_STAMP = r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))"
CHANGED_QUERY = re.compile(
    r"^\s*SELECT\s+Id\s*,\s*(Email\s*,\s*)?SystemModstamp\s+FROM\s+(Contact|Opportunity)\s+WHERE\s+(.+?)"
    r"\s+ORDER\s+BY\s+SystemModstamp(?:\s+ASC)?(?:\s*,\s*Id(?:\s+ASC)?)?\s+LIMIT\s+(\d+)\s*$",
    re.I | re.S,
)
SINCE_WHERE = re.compile(rf"^SystemModstamp\s*>=\s*{_STAMP}$", re.I)
AFTER_WHERE = re.compile(
    rf"^\(\s*SystemModstamp\s*>\s*{_STAMP}\s+OR\s+\(\s*SystemModstamp\s*=\s*{_STAMP}"
    rf"\s+AND\s+Id\s*>\s*{_VALUE}\s*\)\s*\)$",
    re.I,
)
SEEDED_STAMP = "2026-01-05T09:00:00.000+0000"
LIKE_PART = re.compile(r"\\(.)|(.)", re.S)
TASK_PATH = re.compile(r"^sobjects/Task/(\w+)$")
EVENT_PATH = re.compile(r"^sobjects/Event/(\w+)$")
REFERENCE = re.compile(r"@\{(\w+)((?:\.\w+|\[\d+\])+)\}")
VERSION_PATH = re.compile(r"^/services/data/v(\d+\.\d)(?:/(.*))?$")

Result = tuple[int, Any]


def sf_error(code: str, message: str, fields: list[str] | None = None) -> list[dict[str, Any]]:
    error: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        error["fields"] = fields
    return [error]


class SalesforceState(SandboxState):
    DEFAULT_CONFIG = {"access_token_ttl": 7200, "daily_api_limit": 100000, "api_usage": 0}

    def seed(self) -> None:
        self.contacts = {
            cid: {
                "Id": cid,
                "FirstName": f,
                "LastName": la,
                "Name": f"{f} {la}",
                "Email": e,
                "SystemModstamp": SEEDED_STAMP,
            }
            for cid, f, la, e in CONTACTS
        }
        self.opportunities: dict[str, dict[str, Any]] = {
            oid: {
                "Id": oid,
                "Name": n,
                "StageName": s,
                "IsClosed": c,
                "LastModifiedDate": f"2026-{m}:00.000+0000",
                "SystemModstamp": f"2026-{m}:00.000+0000",
            }
            for oid, n, s, c, _, _, m in OPPORTUNITIES
        }
        self.roles = [
            {"Id": f"00K5g00000Sbx{rid}AAJ", "OpportunityId": oid, "ContactId": CONTACTS[ci][0]}
            for oid, _, _, _, ci, rid, _ in OPPORTUNITIES
        ]
        self.tasks: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.next_event = 1
        self.org_name = ORG_NAME
        self.next_task = 1
        self.next_record = 1

    def as_json(self) -> dict[str, Any]:
        opportunities = [
            {
                **o,
                "ContactId": next((r["ContactId"] for r in self.roles if r["OpportunityId"] == o["Id"]), ""),
            }
            for o in self.opportunities.values()
        ]
        return {
            "contacts": list(self.contacts.values()),
            "opportunities": opportunities,
            "tasks": list(reversed(self.tasks.values())),
            "events": list(reversed(self.events.values())),
            "api_usage": self.config["api_usage"],
            **super().as_json(),
        }


def _record(kind: str, version: str, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    url = f"/services/data/v{version}/sobjects/{kind}/{record_id}"
    return {"attributes": {"type": kind, "url": url}, **fields}


def _unquote(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def like(pattern: str) -> re.Pattern[str]:
    """A SOQL LIKE pattern (still backslash-escaped) as a case-insensitive regex: % is any run
    of characters, _ one character, a backslash makes the next character literal."""
    parts = []
    for escaped, char in LIKE_PART.findall(pattern):
        if escaped:
            parts.append(re.escape(escaped))
        else:
            parts.append({"%": ".*", "_": "."}.get(char) or re.escape(char))
    return re.compile("".join(parts), re.I | re.S)


def run_query(state: SalesforceState, version: str, soql: str) -> Result:
    records: list[dict[str, Any]]
    if m := CONTACT_QUERY.match(soql):
        email, limit = _unquote(m[1]).lower(), int(m[2] or 2000)
        records = [
            _record("Contact", version, c["Id"], {"Id": c["Id"], "Name": c["Name"], "Email": c["Email"]})
            for c in state.contacts.values()
            if c["Email"].lower() == email
        ][:limit]
    elif m := ROLE_QUERY.match(soql):
        contact, closed, limit = _unquote(m[1]), m[2].lower() == "true", int(m[4] or 2000)
        roles = [
            r
            for r in state.roles
            if r["ContactId"] == contact and state.opportunities[r["OpportunityId"]]["IsClosed"] == closed
        ]
        roles.sort(
            key=lambda r: state.opportunities[r["OpportunityId"]]["LastModifiedDate"],
            reverse=(m[3] or "ASC").upper() == "DESC",
        )
        records = [
            _record("OpportunityContactRole", version, r["Id"], {"OpportunityId": r["OpportunityId"]})
            for r in roles[:limit]
        ]
    elif m := CHANGED_QUERY.match(soql):
        return changed_records(state, version, m)
    elif ORGANIZATION_QUERY.match(soql):  # an org has exactly one Organization record
        records = [_record("Organization", version, ORG_ID, {"Name": state.org_name})]
    elif (m := MARKED_TASK_QUERY.match(soql)) or (m := MARKED_EVENT_QUERY.match(soql)):
        kind, table = ("Task", state.tasks) if m.re is MARKED_TASK_QUERY else ("Event", state.events)
        who, subject, limit = _unquote(m[1]), like(m[2]), int(m[3] or 2000)
        records = [
            _record(kind, version, t["Id"], {"Id": t["Id"]})
            for t in table.values()
            if t["WhoId"] == who and subject.fullmatch(t["Subject"] or "")
        ][:limit]
    else:
        return 400, sf_error("MALFORMED_QUERY", f"unsupported query in sandbox: {soql}")
    return 200, {"totalSize": len(records), "done": True, "records": records}


def stamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


def changed_filter(where: str) -> Callable[[dict[str, Any]], bool] | None:
    """The keyset filters the incremental pull sends: since a time, or past (time, Id)."""
    if m := SINCE_WHERE.match(where):
        since = stamp(m[1])
        return lambda r: stamp(r["SystemModstamp"]) >= since
    if m := AFTER_WHERE.match(where):
        later, same, last_id = stamp(m[1]), stamp(m[2]), _unquote(m[3])
        return lambda r: (
            stamp(r["SystemModstamp"]) > later or (stamp(r["SystemModstamp"]) == same and r["Id"] > last_id)
        )
    return None


def changed_records(state: SalesforceState, version: str, m: re.Match[str]) -> Result:
    kind, with_email, keep = m[2].capitalize(), bool(m[1]), changed_filter(m[3].strip())
    if keep is None:
        return 400, sf_error("MALFORMED_QUERY", f"unsupported WHERE clause in sandbox: {m[3]}")
    if kind == "Opportunity" and with_email:
        return 400, sf_error("INVALID_FIELD", "No such column 'Email' on entity 'Opportunity'")
    table = state.contacts if kind == "Contact" else state.opportunities
    rows = sorted(table.values(), key=lambda r: (stamp(r["SystemModstamp"]), r["Id"]))
    names = ["Id", "Email", "SystemModstamp"] if with_email else ["Id", "SystemModstamp"]
    records = [_record(kind, version, r["Id"], {n: r[n] for n in names}) for r in rows if keep(r)][
        : int(m[4])
    ]
    return 200, {"totalSize": len(records), "done": True, "records": records}


def _task_error(state: SalesforceState, body: Any) -> list[dict[str, Any]] | None:
    if not isinstance(body, dict):
        return sf_error("JSON_PARSER_ERROR", "The request body must be a JSON object")
    if unknown := sorted(set(body) - TASK_FIELDS):
        return sf_error(
            "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type Task", unknown[:1]
        )
    if bad := [k for k, v in body.items() if v is not None and not isinstance(v, str)]:
        return sf_error("JSON_PARSER_ERROR", f"Cannot deserialize {bad[0]}: expected a string", bad[:1])
    if not body.get("Subject"):
        return sf_error("REQUIRED_FIELD_MISSING", "Required fields are missing: [Subject]", ["Subject"])
    for name, most in (("Subject", 255), ("Description", 32000)):
        if len(body.get(name) or "") > most:
            return sf_error("STRING_TOO_LONG", f"{name}: data value too large (max length={most})", [name])
    who, what = body.get("WhoId"), body.get("WhatId")
    if who and who not in state.contacts:
        return sf_error("MALFORMED_ID", f"Contact ID: id value of incorrect type: {who}", ["WhoId"])
    if what and what not in state.opportunities:
        return sf_error("MALFORMED_ID", f"Related To ID: id value of incorrect type: {what}", ["WhatId"])
    if (day := body.get("ActivityDate")) and not _is_date(day):
        return sf_error(
            "JSON_PARSER_ERROR", f"Cannot deserialize ActivityDate from '{day}'", ["ActivityDate"]
        )
    for name, allowed in (("Status", TASK_STATUSES), ("Priority", TASK_PRIORITIES)):
        if body.get(name) and body[name] not in allowed:
            return sf_error(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{name}: bad value for restricted picklist field",
                [name],
            )
    return None


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def create_task(state: SalesforceState, version: str, body: Any) -> Result:
    if error := _task_error(state, body):
        return 400, error
    task_id = f"00T5g00000{state.next_task:05d}AAJ"
    state.next_task += 1
    now = iso(state.clock()).replace("Z", "+0000")
    fields = {name: body.get(name) for name in sorted(TASK_FIELDS)}
    fields |= {
        "Id": task_id,
        "Status": body.get("Status") or "Not Started",
        "Priority": body.get("Priority") or "Normal",
        "OwnerId": body.get("OwnerId") or USER_ID,
        "IsDeleted": False,
        "CreatedDate": now,
        "LastModifiedDate": now,
    }
    state.tasks[task_id] = _record("Task", version, task_id, fields)
    return 201, {"id": task_id, "success": True, "errors": []}


def _event_error(state: SalesforceState, body: Any) -> list[dict[str, Any]] | None:
    if not isinstance(body, dict):
        return sf_error("JSON_PARSER_ERROR", "The request body must be a JSON object")
    if unknown := sorted(set(body) - EVENT_FIELDS):
        return sf_error(
            "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type Event", unknown[:1]
        )
    for name in ("Subject", "Description", "WhoId", "WhatId", "StartDateTime", "EndDateTime"):
        if body.get(name) is not None and not isinstance(body[name], str):
            return sf_error("JSON_PARSER_ERROR", f"Cannot deserialize {name}: expected a string", [name])
    for name, most in (("Subject", 255), ("Description", 32000)):
        if len(body.get(name) or "") > most:
            return sf_error("STRING_TOO_LONG", f"{name}: data value too large (max length={most})", [name])
    who, what = body.get("WhoId"), body.get("WhatId")
    if who and who not in state.contacts:
        return sf_error("MALFORMED_ID", f"Contact ID: id value of incorrect type: {who}", ["WhoId"])
    if what and what not in state.opportunities:
        return sf_error("MALFORMED_ID", f"Related To ID: id value of incorrect type: {what}", ["WhatId"])
    times = {}
    for name in ("StartDateTime", "EndDateTime"):
        try:
            times[name] = datetime.fromisoformat(str(body.get(name) or "").replace("Z", "+00:00"))
        except ValueError:
            return sf_error(
                "REQUIRED_FIELD_MISSING" if not body.get(name) else "JSON_PARSER_ERROR",
                f"{name}: a date and time is required",
                [name],
            )
        if times[name].tzinfo is None:
            return sf_error("JSON_PARSER_ERROR", f"{name}: the time needs a zone", [name])
    span = times["EndDateTime"] - times["StartDateTime"]
    if span.total_seconds() < 0:
        return sf_error(
            "FIELD_INTEGRITY_EXCEPTION", "End Date Time: must be after Start Date Time", ["EndDateTime"]
        )
    if span.days > EVENT_MAX_DAYS or (span.days == EVENT_MAX_DAYS and span.seconds):
        return sf_error("FIELD_INTEGRITY_EXCEPTION", "Event duration cannot exceed 14 days", ["EndDateTime"])
    return None


def create_event(state: SalesforceState, version: str, body: Any) -> Result:
    """An Event needs its start and end (the sandbox takes no DurationInMinutes alone)."""
    if error := _event_error(state, body):
        return 400, error
    event_id = f"00U5g00000{state.next_event:05d}AAJ"
    state.next_event += 1
    now = iso(state.clock()).replace("Z", "+0000")
    fields = {name: body.get(name) for name in sorted(EVENT_FIELDS)}
    fields |= {
        "Id": event_id,
        "OwnerId": body.get("OwnerId") or USER_ID,
        "IsDeleted": False,
        "CreatedDate": now,
        "LastModifiedDate": now,
    }
    state.events[event_id] = _record("Event", version, event_id, fields)
    return 201, {"id": event_id, "success": True, "errors": []}


def rest(
    state: SalesforceState, method: str, version: str, resource: str, query: dict[str, str], body: Any
) -> Result:
    resource = resource.strip("/")
    if method == "GET" and resource == "limits":
        limit = state.config["daily_api_limit"]
        return 200, {
            "DailyApiRequests": {"Max": limit, "Remaining": max(limit - state.config["api_usage"], 0)}
        }
    if method == "GET" and resource == "query":
        return run_query(state, version, query.get("q", ""))
    if method == "POST" and resource == "sobjects/Task":
        return create_task(state, version, body)
    if method == "GET" and (m := TASK_PATH.match(resource)) and m[1] in state.tasks:
        return 200, state.tasks[m[1]]
    if method == "POST" and resource == "sobjects/Event":
        return create_event(state, version, body)
    if method == "GET" and (m := EVENT_PATH.match(resource)) and m[1] in state.events:
        return 200, state.events[m[1]]
    return 404, NOT_FOUND


def _resolve(expr: re.Match[str], results: dict[str, Any]) -> str:
    if expr[1] not in results:
        raise LookupError(expr[0])
    value = results[expr[1]]
    for name, index in re.findall(r"\.(\w+)|\[(\d+)\]", expr[2]):
        try:
            value = value[int(index)] if index else value[name]
        except (KeyError, IndexError, TypeError):
            raise LookupError(expr[0]) from None
    return str(value)


def _substitute(value: Any, results: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return REFERENCE.sub(lambda m: _resolve(m, results), value)
    if isinstance(value, list):
        return [_substitute(v, results) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, results) for k, v in value.items()}
    return value


def _check_composite(body: Any) -> list[dict[str, Any]] | None:
    subs = body.get("compositeRequest") if isinstance(body, dict) else None
    if not isinstance(subs, list) or not subs or not all(isinstance(s, dict) for s in subs):
        return sf_error("JSON_PARSER_ERROR", "compositeRequest must be a non-empty list of subrequests")
    for sub in subs:
        if not all(isinstance(sub.get(k), str) for k in ("method", "url", "referenceId")):
            return sf_error("JSON_PARSER_ERROR", "each subrequest needs method, url and referenceId")
    queries = sum(1 for s in subs if "/query" in s["url"])
    if len(subs) > 25 or queries > 5:
        return sf_error(
            "LIMIT_EXCEEDED", "composite allows at most 25 subrequests, of which at most 5 queries"
        )
    return None


def composite(state: SalesforceState, body: Any) -> Result:
    if error := _check_composite(body):
        return 400, error
    results: dict[str, Any] = {}
    answers: list[dict[str, Any]] = []
    created: list[str] = []
    failed = False
    for sub in body["compositeRequest"]:
        status: int
        data: Any
        try:
            url = _substitute(sub["url"], results)
            sub_body = _substitute(sub.get("body"), results)
        except LookupError as exc:
            status, data = (
                400,
                sf_error("INVALID_FIELD", f"Invalid reference specified. No value for {exc.args[0]}"),
            )
        else:
            parts = urlsplit(url)
            m = VERSION_PATH.match(parts.path)
            if m is None or (m[2] or "").strip("/") == "composite":
                status, data = 404, NOT_FOUND
            else:
                query = dict(parse_qsl(parts.query, keep_blank_values=True))
                status, data = rest(state, sub["method"].upper(), m[1], m[2] or "", query, sub_body)
        if status < 300:
            results[sub["referenceId"]] = data
            created += [data["id"]] if status == 201 else []
        failed = failed or status >= 400
        answers.append(
            {"body": data, "httpHeaders": {}, "httpStatusCode": status, "referenceId": sub["referenceId"]}
        )
        if failed and body.get("allOrNone"):
            break
    if failed and body.get("allOrNone"):
        for task_id in created:
            state.tasks.pop(task_id, None)
            state.events.pop(task_id, None)
        halted = sf_error(
            "PROCESSING_HALTED",
            "The transaction was rolled back since another operation in the same transaction failed.",
        )
        failing = len(answers) - 1  # the loop stopped at the failing subrequest
        answers = [
            answers[i]
            if i == failing
            else {"body": halted, "httpHeaders": {}, "httpStatusCode": 400, "referenceId": ref}
            for i, ref in enumerate(s["referenceId"] for s in body["compositeRequest"])
        ]
    return 200, {"compositeResponse": answers}
