"""What a provider's incremental read (`Provider.changed_since`) returns: the contacts or deals
changed since a time, oldest first, a page at a time. The paging token is the provider's own
opaque string; only the provider that made it reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

# The objects a sync cursor follows (SyncCursor.Object values).
CHANGED_OBJECTS = ("contact", "deal")
PART_SEPARATOR = "|"


@dataclass(frozen=True)
class Changed:
    """One changed record: its CRM id, its email (contacts only) and when it last changed."""

    id: str
    modified_at: datetime
    email: str = ""


@dataclass(frozen=True)
class ChangedPage:
    """Records oldest first; `next` is the token for the following page, None after the last."""

    records: list[Changed] = field(default_factory=list)
    next: str | None = None


def parse_time(value: object) -> datetime:
    """A provider's timestamp as an aware datetime: epoch milliseconds or an ISO 8601 string
    (`...Z`, `...+00:00` or Salesforce's `...+0000`). Raises ValueError on anything else."""
    text = str(value or "").strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return parsed.astimezone(UTC)


def join_token(first: str, second: str) -> str:
    return f"{first}{PART_SEPARATOR}{second}"


def split_token(token: str) -> tuple[str, str]:
    first, _, second = token.partition(PART_SEPARATOR)
    return first, second


def check_object(name: str) -> str:
    if name not in CHANGED_OBJECTS:
        raise ValueError(f"unknown object {name!r}; expected one of {', '.join(CHANGED_OBJECTS)}")
    return name
