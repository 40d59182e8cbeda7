"""HubSpot CRM v3 objects in the sandbox: records, search, note/task/meeting creation and associations."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from integrations.sandbox.common import Reply, Request, SandboxState, iso, json_reply, new_uuid
from integrations.sandbox.faults import RollingWindow

HUB_ID = 4400001
HUB_DOMAIN = "sandbox-demo.hubspot.com"
USER = "owner@sandbox-demo.example"
USER_ID = 7700001
APP_ID = 3300001
REQUIRED_SCOPES = [
    "oauth",
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.objects.deals.read",
]
SEEDED_AT = "2026-01-05T09:00:00.000Z"
CONTACTS = [
    ("101", "maya.lopez@acme-logistics.example", "Maya", "Lopez"),
    ("102", "jonas@brightfield-energy.example", "Jonas", "Weber"),
    ("103", "lee@northwind.example", "Lee", "Park"),
]
DEALS = [  # id, name, stage, closed, contact, last modified
    ("201", "Acme Logistics - Annual plan", "contractsent", "false", "101", "2026-03-02T10:00:00.000Z"),
    ("202", "Acme Logistics - Pilot", "closedwon", "true", "101", "2026-03-05T16:30:00.000Z"),
    ("203", "Brightfield rollout", "appointmentscheduled", "false", "102", "2026-02-20T08:15:00.000Z"),
]
SEARCH = re.compile(r"^/crm/v3/objects/(contacts|deals|notes|tasks|meetings)/search$")
OBJECTS = re.compile(r"^/crm/v3/objects/(notes|tasks|meetings)$")
OBJECT = re.compile(r"^/crm/v3/objects/(notes|tasks|meetings)/(\d+)$")
ASSOCIATE = re.compile(
    r"^/crm/v3/objects/(notes|tasks|meetings)/(\d+)/associations/(contact|deal)s?/(\d+)/([^/]+)$"
)
# HUBSPOT_DEFINED default association type ids (associations v4 table in provider-facts)
DEFAULT_TYPE_IDS = {
    ("notes", "contact"): 202,
    ("notes", "deal"): 214,
    ("tasks", "contact"): 204,
    ("tasks", "deal"): 216,
    ("meetings", "contact"): 200,
    ("meetings", "deal"): 212,
}
MEETING_ENUMS: dict[str, tuple[str, ...]] = {
    "hs_meeting_outcome": ("SCHEDULED", "COMPLETED", "RESCHEDULED", "NO_SHOW", "CANCELED")
}
MEETING_TIMES = ("hs_meeting_start_time", "hs_meeting_end_time")
TASK_ENUMS: dict[str, tuple[str, ...]] = {
    "hs_task_status": ("NOT_STARTED", "COMPLETED", "WAITING", "IN_PROGRESS", "DEFERRED"),
    "hs_task_priority": ("LOW", "MEDIUM", "HIGH"),
    "hs_task_type": ("EMAIL", "CALL", "TODO"),
}
NOTE_BODY_MAX = 65536
# Search pages no further than this many results: after + limit past it answers 400.
SEARCH_RESULT_WINDOW = 10000
COMPARISONS = {
    "GTE": lambda a, b: a >= b,
    "GT": lambda a, b: a > b,
    "LTE": lambda a, b: a <= b,
    "LT": lambda a, b: a < b,
}
OPERATORS = ("EQ", "NEQ", "CONTAINS_TOKEN", *COMPARISONS)
# Date properties: filters and sorts compare them as times (epoch ms or ISO 8601 alike).
TIME_PROPERTIES = ("lastmodifieddate", "hs_lastmodifieddate", "createdate", "hs_createdate")
# The object that carries each modification property (contacts have no hs_lastmodifieddate here).
MODIFIED = {"contacts": "lastmodifieddate", "deals": "hs_lastmodifieddate"}


class Invalid(Exception):
    """A request the real API would answer with 400 VALIDATION_ERROR."""


@dataclass
class Association:
    to_type: str  # "contact" | "deal"
    to_id: str
    type_id: int


@dataclass
class Record:
    id: str
    properties: dict[str, str]
    created_at: str
    updated_at: str
    associations: list[Association] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "properties": dict(self.properties),
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "archived": False,
        }

    def as_state(self) -> dict[str, Any]:
        return {**self.public(), "associations": [asdict(a) for a in self.associations]}

    def value(self, name: str) -> list[str]:
        """The values a filter or sort on `name` sees; associations.<type> is multi-valued.
        A seeded contact's lastmodifieddate is its updatedAt."""
        if name.startswith("associations."):
            to_type = name.removeprefix("associations.")
            return [a.to_id for a in self.associations if a.to_type == to_type]
        if name == "lastmodifieddate":
            return [self.properties.get(name) or self.updated_at]
        return [self.properties.get(name, "")]

    def found(self, asked: Any) -> dict[str, Any]:
        """The record as a search result: a date property that was asked for is always there."""
        public = self.public()
        for name in asked if isinstance(asked, list) else []:
            if name in TIME_PROPERTIES and name not in public["properties"] and self.value(name)[0]:
                public["properties"][name] = self.value(name)[0]
        return public


def as_time(value: Any) -> float:
    """A date value as epoch seconds: epoch milliseconds or an ISO 8601 string."""
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text) / 1000
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{text!r} is not a date (epoch milliseconds or ISO 8601)") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def sort_key(record: Record, name: str) -> list[Any]:
    if name in TIME_PROPERTIES:
        return [as_time(v) if v else 0.0 for v in record.value(name)]
    return record.value(name)


def hs_error(status: int, category: str, message: str, **extra: Any) -> Reply:
    body = {"status": "error", "message": message, "correlationId": new_uuid(), "category": category, **extra}
    return json_reply(status, body)


def missing_scope(scope: str) -> Reply:
    errors = [
        {
            "message": "One or more of the following scopes are required.",
            "context": {"requiredGranularScopes": [scope]},
        }
    ]
    message = "This app hasn't been granted all required scopes to make this call."
    return hs_error(403, "MISSING_SCOPES", message, errors=errors)


def not_found(message: str = "Resource not found") -> Reply:
    return hs_error(404, "OBJECT_NOT_FOUND", message)


def _matches(record: Record, flt: Any) -> bool:
    if not isinstance(flt, dict) or not isinstance(flt.get("propertyName"), str):
        raise Invalid("each filter needs a propertyName")
    operator, wanted = flt.get("operator"), flt.get("value")
    if operator not in OPERATORS:
        raise Invalid(
            f"unsupported filter operator {operator!r}; the sandbox supports {', '.join(OPERATORS)}"
        )
    if not isinstance(wanted, str | int | float | bool):
        raise Invalid(f"filter on {flt['propertyName']} needs a value")
    if operator in COMPARISONS:
        if isinstance(wanted, bool) or flt["propertyName"] not in TIME_PROPERTIES:
            raise Invalid(
                f"{operator} on {flt['propertyName']} is unsupported in the sandbox; it compares"
                f" dates only ({', '.join(TIME_PROPERTIES)})"
            )
        return any(
            v and COMPARISONS[operator](as_time(v), as_time(wanted))
            for v in record.value(flt["propertyName"])
        )
    wanted_text = str(wanted).lower()
    values = [v.lower() for v in record.value(flt["propertyName"])]
    if operator == "EQ":
        return wanted_text in values
    if operator == "NEQ":
        return wanted_text not in values
    return any(wanted_text.strip("*") in v for v in values)


def search_records(records: dict[str, Record], body: Any, window: int = SEARCH_RESULT_WINDOW) -> Reply:
    try:
        if not isinstance(body, dict):
            raise Invalid("search body must be a JSON object")
        groups = body.get("filterGroups") or []
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise Invalid("filterGroups must be a list of objects")
        limit, after = body.get("limit", 10), str(body.get("after", "0"))
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 200:
            raise Invalid("limit must be an integer from 1 to 200")
        if not after.isdigit():
            raise Invalid("after must be a paging offset")
        found = [
            r
            for r in sorted(records.values(), key=lambda r: int(r.id))
            if not groups or any(all(_matches(r, f) for f in g.get("filters") or []) for g in groups)
        ]
        for sort in reversed(body.get("sorts") or []):
            if not isinstance(sort, dict) or not isinstance(sort.get("propertyName"), str):
                raise Invalid("each sort needs a propertyName")
            name: str = sort["propertyName"]
            found.sort(key=lambda r: sort_key(r, name), reverse=sort.get("direction") == "DESCENDING")
        if int(after) + limit > window:
            raise Invalid(f"paging past the first {window} results is not supported; narrow the search")
    except Invalid as exc:
        return hs_error(400, "VALIDATION_ERROR", str(exc))
    start = int(after)
    page: dict[str, Any] = {
        "total": len(found),
        "results": [r.found(body.get("properties")) for r in found[start : start + limit]],
    }
    if start + limit < len(found):
        page["paging"] = {"next": {"after": str(start + limit)}}
    return json_reply(200, page)


def _check_timestamp(value: str | None, name: str = "hs_timestamp") -> None:
    if not value:
        raise Invalid(f"Property values were not valid: {name} is required")
    if value.lstrip("-").isdigit():
        return
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(f"Property values were not valid: {name} {value!r} is not a date") from None


def clean_properties(obj_type: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(
        v is None or isinstance(v, str | int | float | bool) for v in raw.values()
    ):
        raise Invalid("properties must be an object of property names to values")
    props = {
        k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in raw.items()
    }
    _check_timestamp(props.get("hs_timestamp"))
    body = {"notes": "hs_note_body", "meetings": "hs_meeting_body"}.get(obj_type, "")
    if body and len(props.get(body, "")) > NOTE_BODY_MAX:
        raise Invalid(f"Property values were not valid: {body} is longer than {NOTE_BODY_MAX} characters")
    if obj_type == "meetings":
        for name in MEETING_TIMES:
            if name in props:
                _check_timestamp(props[name], name)
    enums: dict[str, tuple[str, ...]] = {"tasks": TASK_ENUMS, "meetings": MEETING_ENUMS}.get(obj_type, {})
    if enums:
        for name, allowed in enums.items():
            if name in props and props[name] not in allowed:
                raise Invalid(
                    f"Property values were not valid: {props[name]!r} is not a valid option for {name}"
                    f" (one of {', '.join(allowed)})"
                )
    return props


def check_association(
    obj_type: str, to_type: str | None, to_id: str, type_id: Any, targets: dict[str, dict[str, Record]]
) -> Association:
    kinds = [to_type] if to_type else list(targets)
    found = next((kind for kind in kinds if to_id in targets.get(kind, {})), None)
    if found is None:
        raise Invalid(f"{to_id} is not a valid {to_type or 'contact or deal'} id to associate with")
    expected = DEFAULT_TYPE_IDS[(obj_type, found)]
    if str(type_id) != str(expected):
        raise Invalid(
            f"invalid association type: {type_id} is not the HUBSPOT_DEFINED type for"
            f" {obj_type.rstrip('s')} to {found} ({expected})"
        )
    return Association(found, to_id, expected)


def parse_associations(obj_type: str, raw: Any, targets: dict[str, dict[str, Record]]) -> list[Association]:
    if not isinstance(raw, list):
        raise Invalid("associations must be a list")
    result = []
    for item in raw:
        to = item.get("to") if isinstance(item, dict) else None
        types = item.get("types") if isinstance(item, dict) else None
        if not isinstance(to, dict) or not isinstance(to.get("id"), str | int) or not isinstance(types, list):
            raise Invalid("each association needs to.id and a types list")
        if not types:
            raise Invalid("each association needs at least one type")
        for spec in types:
            category = spec.get("associationCategory") if isinstance(spec, dict) else None
            if category != "HUBSPOT_DEFINED":
                raise Invalid(f"unknown associationCategory {category!r}; the sandbox knows HUBSPOT_DEFINED")
            result.append(
                check_association(obj_type, None, str(to["id"]), spec.get("associationTypeId"), targets)
            )
    return result


@dataclass
class Portal:
    """Another portal's rate-limit window and counts (tokens minted with a hub_id)."""

    window: RollingWindow = field(default_factory=lambda: RollingWindow(10))
    requests: int = 0
    rate_limited: int = 0
    peak: int = 0  # the most calls accepted in one ten-second window

    def as_json(self) -> dict[str, int]:
        return {"requests": self.requests, "rate_limited": self.rate_limited, "peak_ten_seconds": self.peak}


class HubSpotState(SandboxState):
    DEFAULT_CONFIG = {"ten_second_limit": 110, "search_per_second": 5, "access_token_ttl": 1800}
    # Settable through /_sandbox/config but shown only once set (the defaults above are a contract).
    OPTIONAL_CONFIG = {"search_result_window": SEARCH_RESULT_WINDOW}

    def setting(self, key: str) -> int:
        return self.config.get(key, self.OPTIONAL_CONFIG[key])

    def seed(self) -> None:
        self.contacts = {
            cid: Record(
                cid, {"email": e, "firstname": f, "lastname": la, "hs_object_id": cid}, SEEDED_AT, SEEDED_AT
            )
            for cid, e, f, la in CONTACTS
        }
        self.deals = {
            did: Record(
                did,
                {
                    "dealname": n,
                    "dealstage": s,
                    "hs_is_closed": c,
                    "hs_lastmodifieddate": m,
                    "hs_object_id": did,
                },
                SEEDED_AT,
                m,
                [Association("contact", contact, 3)],
            )
            for did, n, s, c, contact, m in DEALS
        }
        self.notes: dict[str, Record] = {}
        self.tasks: dict[str, Record] = {}
        self.meetings: dict[str, Record] = {}
        self.next_id = 90001
        self.ten_second = RollingWindow(10)
        self.secondly = RollingWindow(1)
        self.portals: dict[int, Portal] = {}
        self.grant_hubs: dict[str, int] = {}

    def targets(self) -> dict[str, dict[str, Record]]:
        return {"contact": self.contacts, "deal": self.deals}

    def objects(self, obj_type: str) -> dict[str, Record]:
        return {
            "contacts": self.contacts,
            "deals": self.deals,
            "notes": self.notes,
            "tasks": self.tasks,
            "meetings": self.meetings,
        }[obj_type]

    def as_json(self) -> dict[str, Any]:
        def rows(records: dict[str, Record], newest_first: bool = False) -> list[dict[str, Any]]:
            return [
                r.as_state() for r in sorted(records.values(), key=lambda r: int(r.id), reverse=newest_first)
            ]

        return {
            "contacts": rows(self.contacts),
            "deals": rows(self.deals),
            "notes": rows(self.notes, True),
            "tasks": rows(self.tasks, True),
            "meetings": rows(self.meetings, True),
            **super().as_json(),
            **({"portals": {str(h): p.as_json() for h, p in self.portals.items()}} if self.portals else {}),
        }


def crm_call(state: HubSpotState, req: Request, search: re.Match[str] | None) -> Reply:
    method, path = req.method, req.path
    if method == "GET" and path == "/account-info/v3/details":
        return json_reply(
            200,
            {
                "portalId": HUB_ID,
                "timeZone": "US/Eastern",
                "uiDomain": "app.hubspot.com",
                "dataHostingLocation": "na1",
                "companyCurrency": "USD",
            },
        )
    try:
        body = req.json() if method in ("POST", "PUT") else None
    except ValueError:
        return hs_error(400, "VALIDATION_ERROR", "Invalid input JSON: the body is not JSON")
    if method == "POST" and search:
        return search_records(state.objects(search[1]), body, state.setting("search_result_window"))
    if method == "POST" and (m := OBJECTS.match(path)):
        return create(state, m[1], body)
    if method == "GET" and (m := OBJECT.match(path)) and m[2] in state.objects(m[1]):
        return json_reply(200, state.objects(m[1])[m[2]].public())
    if method == "PUT" and (m := ASSOCIATE.match(path)) and m[2] in state.objects(m[1]):
        return associate(state, state.objects(m[1])[m[2]], m[1], m[3], m[4], m[5])
    if OBJECT.match(path) or ASSOCIATE.match(path):
        return not_found("Object not found")
    return not_found(f"No route for {method} {path}")


def create(state: HubSpotState, obj_type: str, body: Any) -> Reply:
    try:
        if not isinstance(body, dict):
            raise Invalid("Invalid input JSON: expected an object with properties")
        props = clean_properties(obj_type, body.get("properties"))
        associations = parse_associations(obj_type, body.get("associations", []), state.targets())
    except Invalid as exc:
        return hs_error(400, "VALIDATION_ERROR", str(exc))
    now, record_id = iso(state.clock()), str(state.next_id)
    state.next_id += 1
    props |= {"hs_createdate": now, "hs_lastmodifieddate": now, "hs_object_id": record_id}
    record = Record(record_id, props, now, now, associations)
    state.objects(obj_type)[record_id] = record
    return json_reply(201, record.public())


def associate(
    state: HubSpotState, record: Record, obj_type: str, to_type: str, to_id: str, type_id: str
) -> Reply:
    try:
        association = check_association(obj_type, to_type, to_id, type_id, state.targets())
    except Invalid as exc:
        return hs_error(400, "VALIDATION_ERROR", str(exc))
    if association not in record.associations:
        record.associations.append(association)
    record.updated_at = record.properties["hs_lastmodifieddate"] = iso(state.clock())
    return json_reply(200, record.public())
