"""The members' calendars both calendar sandboxes (Google, Microsoft) serve: users keyed by the
email chosen at consent, their events with a change sequence (what sync tokens and delta links
point into), cheap deterministic bulk seeding for benches, opaque cursors (server-side page
snapshots, self-describing sync tokens bound to a reset epoch and the user's generation), per-user
rate windows and per-endpoint call counters. HTTP shapes live in google_calendar.py and
microsoft_graph.py; push deliveries in calendar_push.py."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from integrations.sandbox.calendar_push import Outbox
from integrations.sandbox.common import SandboxState
from integrations.sandbox.faults import RollingWindow

DEFAULT_EMAIL = "member@example.com"
SEED_DAYS = (-25, 75)  # seeded events fall in [today - 25 days, today + 75 days)
EVENT_KEYS = frozenset(
    {
        "email",
        "id",
        "summary",
        "description",
        "start",
        "end",
        "all_day",
        "attendees",
        "organizer",
        "private",
        "cancelled",
        "ical_uid",
    }
)


@dataclass(slots=True)
class CalEvent:
    id: str
    owner: str
    ical_uid: str
    summary: str
    description: str
    start: datetime
    end: datetime
    all_day: bool
    organizer: str
    attendees: list[tuple[str, str]]  # (email, responseStatus)
    private: bool = False
    cancelled: bool = False  # the organizer cancelled it (Google status, Graph isCancelled)
    deleted: bool = False  # gone from the calendar (Google status cancelled, Graph @removed)
    created: float = 0.0
    updated: float = 0.0
    seq: int = 0


@dataclass
class CalUser:
    email: str
    id: str
    index: int
    gen: int = 0  # bumped by /_sandbox/cursors/invalidate: older tokens answer 410
    events: dict[str, CalEvent] = field(default_factory=dict)
    pending: tuple[int, int, tuple[str, ...], float] | None = None  # (count, seq, domains, anchor)
    rate: RollingWindow = field(default_factory=lambda: RollingWindow(60))


@dataclass
class PageCursor:
    """One listing in progress: the ids it covers (snapshotted at its first page) and where it is."""

    email: str
    ids: list[str]
    offset: int
    size: int
    sync_seq: int  # the next sync token / delta link starts here
    gen: int
    incremental: bool
    window: tuple[str, str] = ("", "")


def parse_time(value: Any, name: str) -> tuple[datetime, bool]:
    """An RFC 3339 date-time (naive means UTC) or a bare date (all day) -> (aware datetime, is_date)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be an ISO date or date-time string")
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC), True
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} is not an ISO date or date-time: {value!r}") from None
    return (parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)), False


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _attendees(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        raise ValueError("attendees must be a list of emails or {email, responseStatus} objects")
    out = []
    for item in value:
        if isinstance(item, str) and "@" in item:
            out.append((item.lower(), "needsAction"))
        elif isinstance(item, dict) and isinstance(item.get("email"), str) and "@" in item["email"]:
            out.append((item["email"].lower(), str(item.get("responseStatus") or "needsAction")))
        else:
            raise ValueError(f"attendee {item!r} is not an email")
    return out


def seeded_events(user: CalUser, count: int, seq: int, domains: tuple[str, ...], anchor: float) -> None:
    """`count` events for `user`, the same for the same inputs: spread over SEED_DAYS around the
    anchor day, every other one with an external attendee from `domains`."""
    day0 = datetime.fromtimestamp(anchor, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    span = SEED_DAYS[1] - SEED_DAYS[0]
    home = user.email.partition("@")[2]
    for i in range(count):
        start = day0 + timedelta(days=SEED_DAYS[0] + (i * 37 + user.index) % span, hours=8 + (i * 5) % 9)
        attendees = [(user.email, "accepted"), (f"colleague{i % 5}@{home}", "accepted")]
        if domains and i % 2 == 0:
            attendees.append((f"contact{(user.index + i) % 50}@{domains[i % len(domains)]}", "needsAction"))
        event_id = f"{user.index:06x}e{i:06x}"
        user.events[event_id] = CalEvent(
            event_id,
            user.email,
            f"{event_id}@sandbox.example",
            f"Meeting {i + 1}",
            f"Agenda for meeting {i + 1} (seeded description)",
            start,
            start + timedelta(minutes=30),
            False,
            user.email,
            attendees,
            private=i % 10 == 9,
            created=anchor,
            updated=anchor,
            seq=seq,
        )


class CalendarState(SandboxState):
    """Users, events, cursors, tokens' owners, counters and the push outbox of one calendar sandbox.
    Subclasses add their push channels and `on_change`."""

    DEFAULT_CONFIG = {
        "access_token_ttl": 3600,
        "user_rate_limit": 600,
        "rate_window_seconds": 60,
        "delivery_timeout": 3,
    }
    cursor_prefix = "sbx"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.outbox = Outbox()
        super().__init__(clock)
        self.outbox.bind(self.lock, self.stopping)

    def seed(self) -> None:
        self.epoch = secrets.token_hex(4)
        self.users: dict[str, CalUser] = {}
        self.event_owner: dict[str, str] = {}
        self.seq = 0
        self.pages: dict[str, PageCursor] = {}
        self.owners: dict[str, str] = {}  # code / refresh token / access token -> email
        self.offline: set[str] = set()  # codes whose consent asked for a refresh token
        self.calls: Counter[str] = Counter()
        self.outbox.clear()
        self.seed_channels()

    def seed_channels(self) -> None:
        raise NotImplementedError

    def on_change(self, user: CalUser, event: CalEvent, change: str) -> None:
        """Push a change ("created" | "updated" | "deleted") to the user's channels."""
        raise NotImplementedError

    # users and events

    def user(self, email: str) -> CalUser:
        email = email.strip().lower()
        found = self.users.get(email)
        if found is None:
            found = self.users[email] = CalUser(email, secrets.token_hex(8), len(self.users) + 1)
        if found.pending:
            count, seq, domains, anchor = found.pending
            found.pending = None
            seeded_events(found, count, seq, domains, anchor)
            self.event_owner.update(dict.fromkeys(found.events, found.email))
        return found

    def seed_user(self, email: str, count: int, domains: tuple[str, ...]) -> CalUser:
        """Bulk seeding: the events are made when the user is first read (benches seed thousands)."""
        user = self.user(email)
        self.seq += 1
        for event_id in user.events:
            self.event_owner.pop(event_id, None)
        user.events = {}
        user.pending = (count, self.seq, domains, self.clock())
        return user

    def put_event(self, data: Any, event_id: str | None = None) -> tuple[CalEvent, str]:
        """Create or update an event from a control body -> (event, "created" | "updated").
        With `event_id` (PATCH) the event must exist; a body "id" updates that event when it
        exists and otherwise creates one with that id. Raises KeyError (no such event) or
        ValueError (bad body)."""
        if not isinstance(data, dict) or set(data) - EVENT_KEYS:
            raise ValueError(f"body must be an object with keys among {sorted(EVENT_KEYS)}")
        target = event_id or data.get("id")
        if target is not None and (not isinstance(target, str) or not target.isalnum()):
            raise ValueError("id must be letters and digits")
        owner = self.event_owner.get(target) if target else None
        if event_id and owner is None:
            raise KeyError(event_id)
        if owner is not None:
            user = self.user(owner)
            event, change = user.events[str(target)], "updated"
            if event.deleted:
                raise KeyError(target)
        else:
            email = data.get("email") or DEFAULT_EMAIL
            if not isinstance(email, str) or "@" not in email:
                raise ValueError("email must be the member's email address")
            user, new_id, now = self.user(email), str(target or secrets.token_hex(13)), self.clock()
            start = datetime.fromtimestamp(now, UTC).replace(minute=0, second=0, microsecond=0)
            start += timedelta(hours=1)
            event = CalEvent(
                new_id, user.email, f"{new_id}@sandbox.example", "", "", start, start + timedelta(minutes=30),
                False, user.email, [(user.email, "accepted")], created=now,
            )  # fmt: skip
            change = "created"
        event = replace(event)  # a bad body changes nothing
        self._apply(event, data)
        user.events[event.id] = event
        self.event_owner[event.id] = user.email
        self.touch(user, event, change)
        return event, change

    def _apply(self, event: CalEvent, data: dict[str, Any]) -> None:
        texts = ("summary", "description", "organizer", "ical_uid")
        for key in texts:
            if key in data:
                if not isinstance(data[key], str):
                    raise ValueError(f"{key} must be a string")
                setattr(event, key, data[key].lower() if key == "organizer" else data[key])
        for key in ("private", "cancelled", "all_day"):
            if key in data:
                if not isinstance(data[key], bool):
                    raise ValueError(f"{key} must be true or false")
                setattr(event, key, data[key])
        if "start" in data:
            event.start, is_date = parse_time(data["start"], "start")
            event.all_day = data.get("all_day", is_date)
        if "end" in data:
            event.end = parse_time(data["end"], "end")[0]
        elif "start" in data and event.end <= event.start:
            event.end = event.start + (timedelta(days=1) if event.all_day else timedelta(minutes=30))
        if event.end <= event.start:
            raise ValueError("end must be after start")
        if "attendees" in data:
            event.attendees = _attendees(data["attendees"])

    def delete_event(self, event_id: str) -> CalEvent:
        owner = self.event_owner.get(event_id)
        if owner is None:
            raise KeyError(event_id)
        user = self.user(owner)
        event = user.events[event_id]
        if event.deleted:
            raise KeyError(event_id)
        event.deleted = True
        self.touch(user, event, "deleted")
        return event

    def touch(self, user: CalUser, event: CalEvent, change: str) -> None:
        self.seq += 1
        event.seq, event.updated = self.seq, self.clock()
        self.on_change(user, event, change)

    # listings and cursors

    def full_listing(
        self,
        user: CalUser,
        window: tuple[datetime | None, datetime | None],
        *,
        deleted: bool,
        cancelled: bool,
    ) -> list[str]:
        """Ids of the events overlapping `window`, by start; deleted / cancelled ones only if asked."""
        low, high = window
        found = [
            e
            for e in user.events.values()
            if (deleted or not e.deleted)
            and (cancelled or not e.cancelled)
            and (low is None or e.end > low)
            and (high is None or e.start < high)
        ]
        found.sort(key=lambda e: (e.start, e.id))
        return [e.id for e in found]

    def changes_since(self, user: CalUser, seq: int) -> list[str]:
        changed = sorted((e for e in user.events.values() if e.seq > seq), key=lambda e: (e.seq, e.id))
        return [e.id for e in changed]

    def open_listing(self, cursor: PageCursor) -> str:
        token = secrets.token_urlsafe(18)
        self.pages[token] = cursor
        return token

    def sync_token(self, user: CalUser, seq: int, *extra: str) -> str:
        raw = json.dumps([self.epoch, user.email, user.gen, seq, *extra], separators=(",", ":"))
        return self.cursor_prefix + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def read_sync_token(self, token: str, user: CalUser) -> tuple[int, list[str]] | None:
        """(seq, extra) of a token this epoch issued to `user` at its current generation, else None."""
        if not token.startswith(self.cursor_prefix):
            return None
        body = token[len(self.cursor_prefix) :]
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(data, list) or len(data) < 4 or data[:3] != [self.epoch, user.email, user.gen]:
            return None
        if not isinstance(data[3], int) or not all(isinstance(x, str) for x in data[4:]):
            return None
        return data[3], data[4:]

    def invalidate(self, email: str) -> CalUser:
        user = self.user(email)
        user.gen += 1
        return user

    # tokens and limits

    def access_owner(self, token: str | None) -> CalUser | None:
        """The user of a live access token."""
        found = self.tokens.access.get(token) if token else None
        if found is None or found.expires_at <= self.clock() or token not in self.owners:
            return None
        return self.user(self.owners[token])

    def revoke_user(self, email: str) -> int:
        email = email.strip().lower()
        grants = [t for t, owner in self.owners.items() if owner == email and t in self.tokens.grants]
        for grant in grants:
            self.tokens.revoke_grant(grant)
        for token in [t for t, owner in self.owners.items() if owner == email and t in self.tokens.access]:
            self.tokens.revoke_access(token)
        return len(grants)

    def over_limit(self, user: CalUser) -> bool:
        user.rate.seconds = max(self.config["rate_window_seconds"], 1)
        return not user.rate.try_hit(self.clock(), self.config["user_rate_limit"])

    def as_json(self) -> dict[str, Any]:
        return {
            **super().as_json(),
            "users": len(self.users),
            "events": sum(len(u.events) + (u.pending[0] if u.pending else 0) for u in self.users.values()),
            "calls": dict(self.calls),
            "deliveries": len(self.outbox.deliveries),
        }
