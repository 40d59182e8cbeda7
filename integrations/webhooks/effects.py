"""What a HubSpot event changes in Conduit: the contact -> deal mappings that CRM writes use.

Changes mark the cached lookups that name the record stale (looked up again before the next
write); deletions drop them; a new contact or deal can answer a lookup that found nothing, so
those empty lookups go stale too. Every effect is idempotent, so replaying an event is safe, and
takes all the events of its kind for one connection at once (one statement, not one per event).
Unknown event types are stored and ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from integrations.ledger import ledger
from integrations.models import CrmConnection, WebhookEvent

Payloads = Sequence[dict[str, Any]]
# HubSpot's generic object events name the type: 0-1 contacts, 0-3 deals.
OBJECT_TYPES = {"0-1": "contact", "0-3": "deal"}


def _ids(*values: Any) -> list[str]:
    found: list[str] = []
    for value in values:
        if isinstance(value, list):
            found.extend(str(v) for v in value if v is not None)
        elif value not in (None, ""):
            found.append(str(value))
    return found


def _all_ids(events: Payloads, *fields: str) -> list[str]:
    """The ids the events name in `fields`, each once, in order."""
    return list(dict.fromkeys(i for event in events for i in _ids(*(event.get(f) for f in fields))))


def contact_created(conn: CrmConnection, events: Payloads) -> int:
    return ledger().records_created(conn, object="contact") + ledger().records_changed(
        conn, contact_ids=_all_ids(events, "objectId")
    )


def contact_changed(conn: CrmConnection, events: Payloads) -> int:
    emails = [
        str(event["propertyValue"])
        for event in events
        if event.get("propertyName") == "email" and event.get("propertyValue")
    ]
    return ledger().records_changed(conn, contact_ids=_all_ids(events, "objectId"), emails=emails)


def contact_deleted(conn: CrmConnection, events: Payloads) -> int:
    return ledger().records_deleted(conn, contact_ids=_all_ids(events, "objectId"))


def contacts_merged(conn: CrmConnection, events: Payloads) -> int:
    gone = [
        i
        for event in events
        for i in _ids(event.get("mergedObjectIds"))
        if i != str(event.get("primaryObjectId"))
    ]
    return ledger().records_deleted(conn, contact_ids=gone) + ledger().records_changed(
        conn, contact_ids=_all_ids(events, "primaryObjectId", "objectId")
    )


def deal_created(conn: CrmConnection, events: Payloads) -> int:
    return ledger().records_created(conn, object="deal")


def deal_changed(conn: CrmConnection, events: Payloads) -> int:
    return ledger().records_changed(conn, deal_ids=_all_ids(events, "objectId"))


def deal_deleted(conn: CrmConnection, events: Payloads) -> int:
    return ledger().records_deleted(conn, deal_ids=_all_ids(events, "objectId"))


def association_changed(conn: CrmConnection, events: Payloads) -> int:
    """A contact gained or lost a deal: both ends are looked up again."""
    ends = _all_ids(events, "fromObjectId", "toObjectId")
    return ledger().records_changed(conn, contact_ids=ends, deal_ids=ends)


# An effect takes every event of one kind that a batch holds for one connection: each marks
# cached lookups stale or drops them, so applying a kind's events together, and the kinds in any
# order, leaves the same lookups as applying the events one by one.
Effect = Callable[[CrmConnection, Payloads], int]
EFFECTS: dict[tuple[str, str], Effect] = {
    ("contact", "creation"): contact_created,
    ("contact", "restore"): contact_created,
    ("contact", "propertyChange"): contact_changed,
    ("contact", "deletion"): contact_deleted,
    ("contact", "privacyDeletion"): contact_deleted,
    ("contact", "merge"): contacts_merged,
    ("contact", "associationChange"): association_changed,
    ("deal", "creation"): deal_created,
    ("deal", "restore"): deal_created,
    ("deal", "propertyChange"): deal_changed,
    ("deal", "deletion"): deal_deleted,
    ("deal", "merge"): deal_changed,
    ("deal", "associationChange"): association_changed,
}


def effect_of(event: WebhookEvent) -> Effect | None:
    """contact.propertyChange -> contact_changed; object.creation with objectTypeId 0-3 -> deal_created."""
    kind, _, action = event.event_type.partition(".")
    if kind == "object":
        kind = OBJECT_TYPES.get(str(event.payload.get("objectTypeId", "")), "")
    return EFFECTS.get((kind, action))
