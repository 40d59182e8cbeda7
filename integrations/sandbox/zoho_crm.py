"""Zoho CRM v7 records in the sandbox: the seeded org, contact search, the three COQL queries
Conduit sends, Notes (create, a record's notes) and Tasks (create). Each resource returns
(status, JSON body); a status of 204 has no body."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from integrations.sandbox.common import Reply, SandboxState, json_reply
from integrations.sandbox.records import parse_change

ORG = {
    "id": "7700000000000010001",
    "company_name": "Sandbox Demo GmbH",
    "zgid": "60012345",
    "domain_name": "sandbox-demo",
    "primary_email": "owner@sandbox-demo.example",
    "country_code": "DE",
    "time_zone": "Europe/Berlin",
    "currency": "EUR",
}
ORG_ID = str(ORG["id"])
USER = {"id": "5725767000000280001", "name": "Sandbox Owner", "email": "owner@sandbox-demo.example"}
LOCATION = "eu"  # the data centre the sandbox's callback names
# Zoho answers times in the org's time zone with its offset (here CET, +01:00).
ORG_TZ = timezone(timedelta(hours=1))
REQUIRED_SCOPES = [
    "ZohoCRM.modules.contacts.READ",
    "ZohoCRM.modules.deals.READ",
    "ZohoCRM.modules.notes.CREATE",
    "ZohoCRM.modules.notes.READ",
    "ZohoCRM.modules.tasks.CREATE",
    "ZohoCRM.modules.tasks.READ",
    "ZohoCRM.coql.READ",
    "ZohoCRM.org.READ",
]
SEEDED_AT = "2026-01-05T10:00:00+01:00"
CONTACTS = [
    ("5725767000000410001", "Maya", "Lopez", "maya.lopez@acme-logistics.example"),
    ("5725767000000410002", "Jonas", "Weber", "jonas@brightfield-energy.example"),
    ("5725767000000410003", "Lee", "Park", "lee@northwind.example"),
]
DEALS = [  # id, name, stage, contact index, modified
    (
        "5725767000000420001",
        "Acme Logistics - Annual plan",
        "Negotiation/Review",
        0,
        "2026-03-02T11:00:00+01:00",
    ),
    ("5725767000000420002", "Acme Logistics - Pilot", "Closed Won", 0, "2026-03-05T17:30:00+01:00"),
    ("5725767000000420003", "Brightfield rollout", "Qualification", 1, "2026-02-20T09:15:00+01:00"),
]
NOTE_FIELDS = {"Note_Title", "Note_Content", "Parent_Id", "$se_module"}
TASK_FIELDS = {"Subject", "Description", "Due_Date", "Status", "Priority", "Who_Id", "What_Id", "$se_module"}
TASK_STATUSES = ("Not Started", "Deferred", "In Progress", "Completed", "Waiting for input")
TASK_PRIORITIES = ("Highest", "High", "Normal", "Low", "Lowest")
LIMITS = {"Note_Title": 120, "Note_Content": 32000, "Subject": 255, "Description": 32000}
_VALUE = r"'((?:[^'\\]|\\.)*)'"
_STAMP = r"'(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[+-]\d{2}:\d{2}|Z))'"
OPEN_DEAL_QUERY = re.compile(
    rf"^\s*select\s+id\s*,\s*Stage\s*,\s*Modified_Time\s+from\s+Deals\s+where\s+\(\s*Contact_Name\s*=\s*"
    rf"{_VALUE}\s+and\s+Stage\s+not\s+like\s+{_VALUE}\s*\)\s+order\s+by\s+Modified_Time\s+(asc|desc)"
    r"\s+limit\s+(\d+)\s*$",
    re.I,
)
MARKED_TASK_QUERY = re.compile(
    rf"^\s*select\s+id\s+from\s+Tasks\s+where\s+\(\s*Who_Id\s*=\s*{_VALUE}\s+and\s+Subject\s+like\s+"
    rf"{_VALUE}\s*\)\s+limit\s+(\d+)\s*$",
    re.I,
)
CHANGED_QUERY = re.compile(
    r"^\s*select\s+id\s*,\s*(Email\s*,\s*)?Modified_Time\s+from\s+(Contacts|Deals)\s+where\s+(.+?)"
    r"\s+order\s+by\s+Modified_Time\s+asc\s*,\s*id\s+asc\s+limit\s+(\d+)\s*$",
    re.I | re.S,
)
SINCE_WHERE = re.compile(rf"^Modified_Time\s*>=\s*{_STAMP}$", re.I)
AFTER_WHERE = re.compile(
    rf"^\(\s*Modified_Time\s*>\s*{_STAMP}\s+or\s+\(\s*Modified_Time\s*=\s*{_STAMP}\s+and\s+id\s*>\s*"
    rf"{_VALUE}\s*\)\s*\)$",
    re.I,
)

Result = tuple[int, Any]


def zoho_error(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "details": details or {}, "message": message, "status": "error"}


def record_error(code: str, message: str, api_name: str, **details: Any) -> Result:
    """A refused record write: the error is the first (only) record's answer in `data`."""
    return 400, {"data": [zoho_error(code, message, {"api_name": api_name, **details})]}


def zoho_time(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), ORG_TZ).isoformat()


def as_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def unquote(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def like(pattern: str) -> re.Pattern[str]:
    """A COQL LIKE pattern as a case-insensitive regex: % is any run of characters."""
    return re.compile(".*".join(re.escape(part) for part in unquote(pattern).split("%")), re.I | re.S)


def listing(records: list[dict[str, Any]]) -> Result:
    """A list answer; none found is 204 No Content, as Zoho answers an empty search."""
    if not records:
        return 204, None
    return 200, {"data": records, "info": {"count": len(records), "more_records": False}}


class ZohoState(SandboxState):
    DEFAULT_CONFIG = {
        "access_token_ttl": 3600,
        "credit_limit": 50000,
        "credits_used": 0,
        "concurrency_limit": 10,
    }

    def seed(self) -> None:
        self.contacts: dict[str, dict[str, Any]] = {
            cid: {
                "id": cid,
                "First_Name": first,
                "Last_Name": last,
                "Full_Name": f"{first} {last}",
                "Email": email,
                "Modified_Time": SEEDED_AT,
            }
            for cid, first, last, email in CONTACTS
        }
        self.deals: dict[str, dict[str, Any]] = {
            did: {
                "id": did,
                "Deal_Name": name,
                "Stage": stage,
                "Contact_Name": {"id": CONTACTS[ci][0], "name": f"{CONTACTS[ci][1]} {CONTACTS[ci][2]}"},
                "Modified_Time": modified,
            }
            for did, name, stage, ci, modified in DEALS
        }
        self.notes: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.next_id = 1

    def new_id(self, series: int) -> str:
        self.next_id += 1
        return f"5725767000000{series}{self.next_id:05d}"

    def as_json(self) -> dict[str, Any]:
        return {
            "org": dict(ORG),
            "contacts": list(self.contacts.values()),
            "deals": list(self.deals.values()),
            "notes": list(reversed(self.notes.values())),
            "tasks": list(reversed(self.tasks.values())),
            "credits": {"used": self.config["credits_used"], "limit": self.config["credit_limit"]},
            **super().as_json(),
        }


# --- reads --------------------------------------------------------------------------------------


def search_contacts(state: ZohoState, query: dict[str, str]) -> Result:
    email = query.get("email", "").strip().lower()
    if not email:
        return 400, zoho_error("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {})
    found = [
        {"id": c["id"], "Email": c["Email"], "Full_Name": c["Full_Name"]} for c in state.contacts.values()
    ]
    return listing([c for c in found if c["Email"].lower() == email])


def run_coql(state: ZohoState, body: Any) -> Result:
    query = body.get("select_query") if isinstance(body, dict) else None
    if not isinstance(query, str) or not query.strip():
        return 400, zoho_error("REQUIRED_PARAM_MISSING", "select_query is missing", {"param": "select_query"})
    if m := OPEN_DEAL_QUERY.match(query):
        contact, closed, limit = unquote(m[1]), like(m[2]), int(m[4])
        deals = [
            d
            for d in state.deals.values()
            if d["Contact_Name"]["id"] == contact and not closed.fullmatch(d["Stage"])
        ]
        deals.sort(key=lambda d: as_time(d["Modified_Time"]), reverse=m[3].lower() == "desc")
        return listing([{k: d[k] for k in ("id", "Stage", "Modified_Time")} for d in deals[:limit]])
    if m := MARKED_TASK_QUERY.match(query):
        who, subject, limit = unquote(m[1]), like(m[2]), int(m[3])
        tasks = [
            t for t in state.tasks.values() if t["Who_Id"]["id"] == who and subject.fullmatch(t["Subject"])
        ]
        return listing([{"id": t["id"]} for t in tasks[:limit]])
    if m := CHANGED_QUERY.match(query):
        return changed_records(state, m)
    return 400, zoho_error("SYNTAX_ERROR", f"unsupported query in sandbox: {query}", {})


def changed_filter(where: str) -> Callable[[dict[str, Any]], bool] | None:
    """The two WHERE clauses of the incremental pull: since a time, or past (time, id)."""
    if m := SINCE_WHERE.match(where):
        since = as_time(m[1])
        return lambda r: as_time(r["Modified_Time"]) >= since
    if m := AFTER_WHERE.match(where):
        later, same, last_id = as_time(m[1]), as_time(m[2]), int(unquote(m[3]))
        return lambda r: (
            as_time(r["Modified_Time"]) > later
            or (as_time(r["Modified_Time"]) == same and int(r["id"]) > last_id)
        )
    return None


def changed_records(state: ZohoState, m: re.Match[str]) -> Result:
    module, with_email, keep = m[2].capitalize(), bool(m[1]), changed_filter(m[3].strip())
    if keep is None:
        return 400, zoho_error("SYNTAX_ERROR", f"unsupported WHERE clause in sandbox: {m[3]}", {})
    if module == "Deals" and with_email:
        return 400, zoho_error("INVALID_QUERY", "Email is not a field of Deals", {"column_name": "Email"})
    table = state.contacts if module == "Contacts" else state.deals
    rows = sorted(table.values(), key=lambda r: (as_time(r["Modified_Time"]), int(r["id"])))
    names = ["id", "Email", "Modified_Time"] if with_email else ["id", "Modified_Time"]
    return listing([{n: r[n] for n in names} for r in rows if keep(r)][: int(m[4])])


def notes_of(state: ZohoState, module: str, record_id: str, query: dict[str, str]) -> Result:
    if not query.get("fields"):
        return 400, zoho_error("REQUIRED_PARAM_MISSING", "fields is required", {"param_name": "fields"})
    parents = state.contacts if module == "Contacts" else state.deals
    if record_id not in parents:
        return 400, zoho_error("INVALID_DATA", "the related id given seems to be invalid", {"api_name": "id"})
    notes = [
        n for n in state.notes.values() if (n["$se_module"], n["Parent_Id"]["id"]) == (module, record_id)
    ]
    notes.sort(key=lambda n: n["id"], reverse=query.get("sort_order", "desc") == "desc")
    shown = {"id", *query["fields"].split(",")}
    return listing(
        [{k: v for k, v in n.items() if k in shown} for n in notes][: int(query.get("per_page", 200))]
    )


# --- writes -------------------------------------------------------------------------------------


def single_record(body: Any) -> dict[str, Any] | None:
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        return data[0]
    return None


def field_error(record: dict[str, Any], allowed: set[str]) -> Result | None:
    if unknown := sorted(set(record) - allowed):
        return record_error("INVALID_DATA", "invalid data", unknown[0])
    for name, most in LIMITS.items():
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            return record_error("INVALID_DATA", "invalid data", name, expected_data_type="text")
        if len(value or "") > most:
            return record_error("INVALID_DATA", "invalid data", name, maximum_length=most)
    return None


def lookup_id(value: Any) -> str:
    return str(value.get("id") or "") if isinstance(value, dict) else str(value or "")


def created(record_id: str, now: str) -> Result:
    stamp = {
        "Modified_Time": now,
        "Modified_By": USER,
        "Created_Time": now,
        "Created_By": USER,
        "id": record_id,
    }
    return 201, {
        "data": [{"code": "SUCCESS", "details": stamp, "message": "record added", "status": "success"}]
    }


def create_note(state: ZohoState, body: Any) -> Result:
    record = single_record(body)
    if record is None:
        return 400, zoho_error("INVALID_DATA", 'the body must be {"data": [one record]}', {})
    if error := field_error(record, NOTE_FIELDS):
        return error
    if not record.get("Note_Content"):
        return record_error("MANDATORY_NOT_FOUND", "required field not found", "Note_Content")
    module, parent = record.get("$se_module"), lookup_id(record.get("Parent_Id"))
    parents = {"Contacts": state.contacts, "Deals": state.deals}.get(str(module))
    if parents is None or parent not in parents:
        return record_error("INVALID_DATA", "the related id given seems to be invalid", "Parent_Id")
    note_id, now = state.new_id(6), zoho_time(state.clock())
    state.notes[note_id] = {
        "id": note_id,
        "Note_Title": record.get("Note_Title") or "",
        "Note_Content": record["Note_Content"],
        "Parent_Id": {"id": parent},
        "$se_module": module,
        "Created_Time": now,
        "Modified_Time": now,
    }
    return created(note_id, now)


def task_error(state: ZohoState, record: dict[str, Any]) -> Result | None:
    if error := field_error(record, TASK_FIELDS):
        return error
    if not record.get("Subject"):
        return record_error("MANDATORY_NOT_FOUND", "required field not found", "Subject")
    for name, allowed in (("Status", TASK_STATUSES), ("Priority", TASK_PRIORITIES)):
        if record.get(name) is not None and record[name] not in allowed:
            return record_error("INVALID_DATA", "invalid data", name, expected_data_type="picklist")
    if (due := record.get("Due_Date")) is not None and not is_date(due):
        return record_error("INVALID_DATA", "invalid data", "Due_Date", expected_data_type="date")
    if "Who_Id" in record and lookup_id(record["Who_Id"]) not in state.contacts:
        return record_error("INVALID_DATA", "the related id given seems to be invalid", "Who_Id")
    if "What_Id" in record and record.get("$se_module") != "Deals":
        return record_error("INVALID_DATA", "invalid data", "$se_module")
    if "What_Id" in record and lookup_id(record["What_Id"]) not in state.deals:
        return record_error("INVALID_DATA", "the related id given seems to be invalid", "What_Id")
    return None


def is_date(value: Any) -> bool:
    try:
        date.fromisoformat(str(value))
    except ValueError:
        return False
    return len(str(value)) == 10


def create_task(state: ZohoState, body: Any) -> Result:
    record = single_record(body)
    if record is None:
        return 400, zoho_error("INVALID_DATA", 'the body must be {"data": [one record]}', {})
    if error := task_error(state, record):
        return error
    task_id, now = state.new_id(7), zoho_time(state.clock())
    what = lookup_id(record.get("What_Id"))
    state.tasks[task_id] = {
        "id": task_id,
        "Subject": record["Subject"],
        "Description": record.get("Description") or "",
        "Due_Date": record.get("Due_Date"),
        "Status": record.get("Status") or "Not Started",
        "Priority": record.get("Priority") or "High",
        "Who_Id": {"id": lookup_id(record.get("Who_Id"))},
        "What_Id": {"id": what} if what else None,
        "$se_module": record.get("$se_module") if what else None,
        "Created_Time": now,
        "Modified_Time": now,
    }
    return created(task_id, now)


def upsert_record(state: ZohoState, data: Any) -> Reply:
    """POST /_sandbox/records: a contact or deal changed "at the CRM" now (records.py's body,
    with "fields"); an unknown or missing id creates it."""
    try:
        change = parse_change(data, "fields")
    except ValueError as exc:
        return json_reply(400, {"error": str(exc)})
    table = state.contacts if change.object == "contact" else state.deals
    record = table.get(change.id)
    if record is None:
        record_id = change.id or state.new_id(4 if change.object == "contact" else 5)
        blank: dict[str, Any] = {"First_Name": "", "Last_Name": "", "Email": ""}
        if change.object == "deal":
            blank = {"Deal_Name": "", "Stage": "Qualification", "Contact_Name": {"id": "", "name": ""}}
        record = table[record_id] = {"id": record_id, **blank}
    record |= change.values
    if change.object == "contact":
        record["Full_Name"] = f"{record['First_Name']} {record['Last_Name']}".strip()
    if change.contact:
        name = state.contacts.get(change.contact, {}).get("Full_Name", "")
        record["Contact_Name"] = {"id": change.contact, "name": name}
    record["Modified_Time"] = zoho_time(state.clock())
    return json_reply(200, record)
