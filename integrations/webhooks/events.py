"""What a HubSpot webhook delivery holds: a JSON array of events, each parsed into the fields
webhook_events keeps. A delivery that is not that shape is refused whole."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from conduit.safe_json import SafeJsonError, loads_bounded


class MalformedDelivery(ValueError):
    """The body is not a JSON array of HubSpot events; the message says what is wrong."""


@dataclass(frozen=True)
class ParsedEvent:
    event_id: str
    event_type: str
    account_key: str
    object_id: str
    occurred_at: datetime | None
    payload: dict[str, Any]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def without_nul(value: Any) -> Any:
    """The value with what Postgres cannot store taken out of every string (NUL characters; lone
    UTF-16 surrogates become "?"): refusing the delivery would lose the event, since HubSpot
    retries it unchanged."""
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    return value


def _occurred_at(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):  # out of range for a date
        return None


def parse_event(index: int, item: Any) -> ParsedEvent:
    if not isinstance(item, dict):
        raise MalformedDelivery(f"event {index} is not a JSON object")
    if any("\x00" in _text(item.get(key)) for key in ("eventId", "subscriptionType")):
        raise MalformedDelivery(f"event {index} has a NUL character in its eventId or subscriptionType")
    item = without_nul(item)
    event_id = _text(item.get("eventId")).strip()
    if not event_id or len(event_id) > 100:
        raise MalformedDelivery(f"event {index} has no eventId (or one longer than 100 characters)")
    event_type = _text(item.get("subscriptionType")).strip()
    if not event_type or len(event_type) > 100:
        raise MalformedDelivery(f"event {index} has no subscriptionType")
    return ParsedEvent(
        event_id=event_id,
        event_type=event_type,
        account_key=_text(item.get("portalId"))[:100],
        object_id=_text(item.get("objectId"))[:100],
        occurred_at=_occurred_at(item.get("occurredAt")),
        payload=item,
    )


def parse_delivery(body: bytes) -> list[ParsedEvent]:
    try:
        # lone surrogates are kept here and replaced by without_nul: HubSpot retries unchanged
        data = loads_bounded(body, text_only=False)
    except SafeJsonError as exc:
        raise MalformedDelivery(str(exc)) from None
    if not isinstance(data, list):
        raise MalformedDelivery("the body must be a JSON array of events")
    first: dict[str, ParsedEvent] = {}
    for index, item in enumerate(data):
        event = parse_event(index, item)
        first.setdefault(event.event_id, event)  # an event named twice in one delivery counts once
    return list(first.values())
