"""`POST /_sandbox/records`: tests change a contact or deal "at the CRM" (what a user editing it
would do), so the record's modification time becomes the sandbox clock's now and the
incremental pull finds it. Body: {"object": "contact"|"deal", "id": optional, "properties"
(HubSpot) or "fields" (Salesforce): {...}, "contact": optional contact id a new deal belongs to}.
An unknown or missing id creates the record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integrations.sandbox.common import Reply, iso, json_reply
from integrations.sandbox.hubspot_crm import MODIFIED, Association, HubSpotState, Record
from integrations.sandbox.salesforce_rest import SalesforceState

SALESFORCE_PREFIXES = {"contact": "0035g00000", "deal": "0065g00000"}


@dataclass(frozen=True)
class Change:
    object: str
    id: str
    values: dict[str, Any]
    contact: str


def parse_change(data: Any, values_key: str) -> Change:
    if not isinstance(data, dict) or set(data) - {"object", "id", values_key, "contact"}:
        raise ValueError(f"body must be an object with 'object', optional 'id', '{values_key}' and 'contact'")
    if data.get("object") not in ("contact", "deal"):
        raise ValueError("object must be 'contact' or 'deal'")
    values = data.get(values_key) or {}
    if not isinstance(values, dict) or not all(
        v is None or isinstance(v, str | int | float | bool) for v in values.values()
    ):
        raise ValueError(f"{values_key} must be an object of names to values")
    return Change(data["object"], str(data.get("id") or ""), values, str(data.get("contact") or ""))


def upsert_hubspot(state: HubSpotState, data: Any) -> Reply:
    try:
        change = parse_change(data, "properties")
    except ValueError as exc:
        return json_reply(400, {"error": str(exc)})
    obj_type, now = f"{change.object}s", iso(state.clock())
    records = state.objects(obj_type)
    record = records.get(change.id)
    if record is None:
        record_id = change.id or str(state.next_id)
        state.next_id += 0 if change.id else 1
        created = "createdate" if change.object == "contact" else "hs_createdate"
        record = records[record_id] = Record(record_id, {"hs_object_id": record_id, created: now}, now, now)
    record.properties |= {k: "" if v is None else str(v) for k, v in change.values.items()}
    record.properties[MODIFIED[obj_type]] = record.updated_at = now
    if change.contact and not any(a.to_id == change.contact for a in record.associations):
        record.associations.append(Association("contact", change.contact, 3))
    return json_reply(200, record.public())


def salesforce_now(state: SalesforceState) -> str:
    """SystemModstamp as Salesforce shows it: whole seconds, "+0000"."""
    return iso(int(state.clock())).replace("Z", "+0000")


def upsert_salesforce(state: SalesforceState, data: Any) -> Reply:
    try:
        change = parse_change(data, "fields")
    except ValueError as exc:
        return json_reply(400, {"error": str(exc)})
    table = state.contacts if change.object == "contact" else state.opportunities
    record = table.get(change.id)
    if record is None:
        record_id = change.id or f"{SALESFORCE_PREFIXES[change.object]}{state.next_record:05d}AAJ"
        state.next_record += 0 if change.id else 1
        blank: dict[str, Any] = {"FirstName": "", "LastName": "", "Email": ""}
        if change.object == "deal":
            blank = {"Name": "", "StageName": "Prospecting", "IsClosed": False}
        record = table[record_id] = {"Id": record_id, **blank}
    record |= change.values
    record["SystemModstamp"] = now = salesforce_now(state)
    if change.object == "contact":
        record["Name"] = f"{record['FirstName']} {record['LastName']}".strip()
    else:
        record["LastModifiedDate"] = now
    if change.contact:
        role = f"00K5g00000{len(state.roles) + 1:05d}AAR"
        state.roles.append({"Id": role, "OpportunityId": record["Id"], "ContactId": change.contact})
    return json_reply(200, record)
