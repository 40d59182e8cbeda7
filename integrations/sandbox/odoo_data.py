"""Odoo's data in the sandbox: one seeded database and a small ORM over it (search_read with Odoo
domains, message_post, mail.activity create, res.users context_get). Both protocols in odoo.py
call `OdooState.execute`; an `OdooError` says which Odoo exception the real server would raise."""

from __future__ import annotations

import html
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from integrations.sandbox.common import Reply, SandboxState, json_reply
from integrations.sandbox.faults import RollingWindow
from integrations.sandbox.records import parse_change

DATABASE = "sandbox-demo"
LOGIN = "admin@sandbox-demo.example"
UID = 2
SEEDED_API_KEY = "5a4db0c0ffee5a4db0c0ffee5a4db0c0ffee5a4d"  # 40 hex digits, like Odoo's keys
SEEDED_AT = "2026-01-05 09:00:00"
ODOO_DATETIME = "%Y-%m-%d %H:%M:%S"
PARTNERS = [  # id, name, email
    (7, "Maya Lopez", "maya.lopez@acme-logistics.example"),
    (8, "Jonas Weber", "jonas@brightfield-energy.example"),
    (9, "Lee Park", "lee@northwind.example"),
]
LEADS = [  # id, name, partner, stage, active, last written
    (21, "Acme Logistics - Annual plan", 7, 1, True, "2026-03-02 10:00:00"),
    (22, "Acme Logistics - Pilot", 7, 4, True, "2026-03-05 16:30:00"),
    (23, "Brightfield rollout", 8, 1, True, "2026-02-20 08:15:00"),
    (24, "Northwind renewal (lost)", 9, 1, False, "2026-02-01 12:00:00"),
]
STAGES = {1: {"id": 1, "name": "New", "is_won": False}, 4: {"id": 4, "name": "Won", "is_won": True}}
IR_MODELS = {85: "res.partner", 281: "crm.lead", 95: "mail.message", 96: "mail.activity"}
TODO_TYPE = 4
MANY2ONE = {"partner_id": "res.partner", "stage_id": "crm.stage", "activity_type_id": "mail.activity.type"}
# The fields each model answers (and may be searched on); `id` always.
FIELDS = {
    "res.partner": {"id", "name", "email", "is_company", "active", "write_date", "create_date"},
    "crm.lead": {"id", "name", "partner_id", "type", "stage_id", "active", "probability", "write_date"},
    "crm.stage": {"id", "name", "is_won"},
    "mail.message": {"id", "model", "res_id", "body", "subject", "message_type", "subtype_xmlid", "date"},
    "mail.activity": {
        "id",
        "res_model_id",
        "res_model",
        "res_id",
        "activity_type_id",
        "summary",
        "note",
        "date_deadline",
        "active",
        "user_id",
        "write_date",
    },
    "mail.activity.type": {"id", "name"},
    "ir.model": {"id", "model", "name"},
    "ir.model.data": {"id", "module", "name", "model", "res_id"},
    "res.users": {"id", "login", "name"},
}
MESSAGE_MODELS = ("res.partner", "crm.lead")  # the models Conduit posts notes on (mail.thread)
SUBTYPES = ("mail.mt_note", "mail.mt_comment")


class OdooError(Exception):
    """An error the real server raises. `kind`: validation (ValidationError), missing_record
    (MissingError), access_denied, access_error, missing_model, missing_method, server (any other
    exception: a 500, or fault 1)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def like_match(pattern: str, text: str) -> bool:
    """SQL ILIKE: % any run, _ one character, backslash escapes the next character."""
    out, escaped = [], False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.fullmatch("".join(out), text, re.I | re.S) is not None


def compare(op: str, have: Any, want: Any) -> bool:
    if op in ("=", "!="):
        same = (have in (None, False, "") and want in (None, False, "")) or have == want
        return same if op == "=" else not same
    if op in ("in", "not in"):
        if not isinstance(want, list):
            raise OdooError("server", f"the value of {op!r} must be a list")
        return (have in want) == (op == "in")
    if op in ("ilike", "=ilike"):
        text = "" if have in (None, False) else str(have)
        return like_match(f"%{want}%" if op == "ilike" else str(want), text)
    if op in (">", ">=", "<", "<="):
        if have in (None, False) or want in (None, False):
            return False
        ordered = {">": have > want, ">=": have >= want, "<": have < want, "<=": have <= want}
        return bool(ordered[op])
    raise OdooError("server", f"Invalid operator {op!r}")


def sort_key(name: str) -> Callable[[dict[str, Any]], tuple[bool, Any]]:
    """Order by a field, empty values first (False and None never meet a value in a comparison)."""
    return lambda record: (record.get(name) in (None, False), record.get(name) or 0)


class OdooState(SandboxState):
    DEFAULT_CONFIG = {"major_version": 19, "requests_per_second": 20}

    def __init__(self, major_version: int = 19, clock: Callable[[], float] = time.time) -> None:
        self.initial_major = major_version
        super().__init__(clock)

    def reset(self) -> None:
        super().reset()
        self.config["major_version"] = self.initial_major
        self.window = RollingWindow(1.0)

    def now(self) -> str:
        return datetime.fromtimestamp(int(self.clock()), tz=UTC).strftime(ODOO_DATETIME)

    def seed(self) -> None:
        self.api_keys: dict[str, int] = {SEEDED_API_KEY: UID}
        self.next_id = 1000
        self.tables: dict[str, dict[int, dict[str, Any]]] = {
            "res.partner": {pid: self.partner(pid, name, email) for pid, name, email in PARTNERS},
            "crm.lead": {row[0]: self.lead(*row) for row in LEADS},
            "crm.stage": {k: dict(v) for k, v in STAGES.items()},
            "mail.message": {},
            "mail.activity": {},
            "mail.activity.type": {TODO_TYPE: {"id": TODO_TYPE, "name": "To-Do"}},
            "ir.model": {k: {"id": k, "model": v, "name": v} for k, v in IR_MODELS.items()},
            "ir.model.data": {
                1: {
                    "id": 1,
                    "module": "mail",
                    "name": "mail_activity_data_todo",
                    "model": "mail.activity.type",
                    "res_id": TODO_TYPE,
                }
            },
            "res.users": {UID: {"id": UID, "login": LOGIN, "name": "Sandbox Admin"}},
        }

    @staticmethod
    def partner(pid: int, name: str, email: str) -> dict[str, Any]:
        return {
            "id": pid,
            "name": name,
            "email": email,
            "is_company": False,
            "active": True,
            "write_date": SEEDED_AT,
            "create_date": SEEDED_AT,
        }

    @staticmethod
    def lead(lid: int, name: str, partner: int, stage: int, active: bool, written: str) -> dict[str, Any]:
        return {
            "id": lid,
            "name": name,
            "partner_id": partner,
            "type": "opportunity",
            "stage_id": stage,
            "active": active,
            "probability": 100 if STAGES[stage]["is_won"] else 10,
            "write_date": written,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            **super().as_json(),
            "partners": list(self.tables["res.partner"].values()),
            "leads": list(self.tables["crm.lead"].values()),
            "messages": list(self.tables["mail.message"].values()),
            "activities": list(self.tables["mail.activity"].values()),
            "api_keys": len(self.api_keys),
        }

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def mint_key(self) -> str:
        key = secrets.token_hex(20)
        self.api_keys[key] = UID
        return key

    # --- the ORM ---
    def execute(
        self, uid: int, model: str, method: str, ids: list[int] | None, params: dict[str, Any]
    ) -> Any:
        """Run one model method as the user; `params` are its named arguments (and `context`)."""
        if model not in self.tables:
            raise OdooError("missing_model", f"the model {model!r} does not exist")
        context = params.pop("context", None) or {}
        if method == "context_get" and model == "res.users":
            return {"lang": "en_US", "tz": "Europe/Brussels", "uid": uid}
        if method == "search_read":
            return self.search_read(model, context=context, **params)
        if method == "message_post" and model in MESSAGE_MODELS:
            return self.message_post(model, ids or [], **params)
        if method == "create" and model == "mail.activity":
            return self.create_activities(params.get("vals_list"), uid)
        raise OdooError("missing_method", f"The method '{method}' does not exist on the model '{model}'")

    def value(self, model: str, record: dict[str, Any], path: str) -> Any:
        name, _, rest = path.partition(".")
        if name not in FIELDS[model]:
            raise OdooError("server", f"Invalid field {name!r} on model {model!r}")
        have = record.get(name, False)
        if not rest:
            return have
        related = MANY2ONE.get(name)
        target = self.tables[related].get(have) if related and have else None
        return self.value(related, target, rest) if related and target else False

    def matches(self, model: str, record: dict[str, Any], domain: list[Any]) -> bool:
        position = 0

        def term() -> bool:
            nonlocal position
            if position >= len(domain):
                raise OdooError("server", f"Invalid domain {domain!r}")
            item = domain[position]
            position += 1
            if item in ("&", "|"):
                left, right = term(), term()
                return (left and right) if item == "&" else (left or right)
            if item == "!":
                return not term()
            if not isinstance(item, list | tuple) or len(item) != 3:
                raise OdooError("server", f"Invalid leaf {item!r}")
            field, op, want = item
            return compare(str(op), self.value(model, record, str(field)), want)

        results = []
        while position < len(domain):
            results.append(term())
        return all(results)

    def read(self, model: str, record: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": record["id"]}
        for name in fields or sorted(FIELDS[model]):
            have = self.value(model, record, name)
            related = MANY2ONE.get(name)
            if related and have:
                out[name] = [have, str(self.tables[related].get(have, {}).get("name", ""))]
            else:
                out[name] = False if have is None else have
        return out

    def search_read(
        self,
        model: str,
        domain: list[Any] | None = None,
        fields: list[str] | None = None,
        offset: int = 0,
        limit: int | None = None,
        order: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        domain = list(domain or [])
        table = self.tables[model]
        active_test = (context or {}).get("active_test", True)
        mentions_active = any(isinstance(t, list | tuple) and t and t[0] == "active" for t in domain)
        rows = [
            r
            for r in table.values()
            if not (active_test and "active" in FIELDS[model] and not mentions_active and not r.get("active"))
            and self.matches(model, r, domain)
        ]
        for part in reversed([p.strip() for p in (order or "id asc").split(",") if p.strip()]):
            name, _, direction = part.partition(" ")
            rows.sort(key=sort_key(name), reverse=direction.strip().lower() == "desc")
        rows = rows[offset : offset + limit if limit else None]
        return [self.read(model, r, list(fields or [])) for r in rows]

    def message_post(
        self,
        model: str,
        ids: list[int],
        body: str = "",
        subject: str | None = None,
        message_type: str = "notification",
        subtype_xmlid: str | None = None,
        **_others: Any,
    ) -> int:
        if len(ids) != 1:
            raise OdooError("server", "Expected singleton")
        if ids[0] not in self.tables[model]:
            raise OdooError("missing_record", "Record does not exist or has been deleted.")
        if message_type not in ("comment", "notification") or (
            subtype_xmlid and subtype_xmlid not in SUBTYPES
        ):
            raise OdooError("validation", "Invalid message type or subtype.")
        message_id = self.new_id()
        self.tables["mail.message"][message_id] = {
            "id": message_id,
            "model": model,
            "res_id": ids[0],
            "body": f"<p>{html.escape(str(body))}</p>",  # Odoo escapes a plain-text body
            "subject": subject or False,
            "message_type": message_type,
            "subtype_xmlid": subtype_xmlid or False,
            "date": self.now(),
        }
        return message_id

    def create_activities(self, vals_list: Any, uid: int) -> list[int] | int:
        single = isinstance(vals_list, dict)
        created = [self.create_activity(v, uid) for v in ([vals_list] if single else list(vals_list or []))]
        return created[0] if single else created

    def create_activity(self, vals: Any, uid: int) -> int:
        if not isinstance(vals, dict) or set(vals) - FIELDS["mail.activity"]:
            raise OdooError("server", "Invalid field on model 'mail.activity'")
        model = IR_MODELS.get(vals.get("res_model_id"))  # type: ignore[arg-type]
        if model not in MESSAGE_MODELS or vals.get("res_id") not in self.tables[model]:
            raise OdooError("validation", "The activity's document model or record is missing.")
        type_id = vals.get("activity_type_id", TODO_TYPE)
        if type_id not in self.tables["mail.activity.type"]:
            raise OdooError("validation", "Unknown activity type.")
        try:
            deadline = date.fromisoformat(str(vals.get("date_deadline")))
        except ValueError:
            raise OdooError("validation", "The activity needs a due date (YYYY-MM-DD).") from None
        activity_id = self.new_id()
        self.tables["mail.activity"][activity_id] = {
            "id": activity_id,
            "res_model_id": vals["res_model_id"],
            "res_model": model,
            "res_id": vals["res_id"],
            "activity_type_id": type_id,
            "summary": str(vals.get("summary") or ""),
            "note": f"<p>{html.escape(str(vals.get('note') or ''))}</p>",
            "date_deadline": deadline.isoformat(),
            "active": True,
            "user_id": uid,
            "write_date": self.now(),
        }
        return activity_id

    def upsert(self, data: Any) -> Reply:
        """POST /_sandbox/records: change a partner ("contact") or an opportunity ("deal") now."""
        try:
            change = parse_change(data, "fields")
        except ValueError as exc:
            return json_reply(400, {"error": str(exc)})
        model = "res.partner" if change.object == "contact" else "crm.lead"
        unknown = set(change.values) - FIELDS[model]
        if unknown:
            return json_reply(400, {"error": f"unknown fields: {sorted(unknown)}"})
        table = self.tables[model]
        record_id = int(change.id) if change.id.isdigit() else 0
        record = table.get(record_id)
        if record is None:
            record_id = record_id or self.new_id()
            blank: dict[str, Any] = {
                "name": "",
                "email": False,
                "is_company": False,
                "create_date": self.now(),
            }
            if model == "crm.lead":
                blank = {
                    "name": "",
                    "partner_id": False,
                    "type": "opportunity",
                    "stage_id": 1,
                    "probability": 10,
                }
            record = table[record_id] = {"id": record_id, "active": True, **blank}
        record |= change.values
        if change.contact.isdigit():
            record["partner_id"] = int(change.contact)
        record["write_date"] = self.now()
        return json_reply(200, record)
