"""The sync of one calendar connection (integrations/calendars/sync.py) against a fake provider."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from conduit.models import Profile, Workspace
from conduit.tenancy import system_scope
from integrations.calendars import sync, tokens
from integrations.calendars.sync import sync_connection
from integrations.models import ExternalCalendarConnection, ExternalCalendarEvent
from integrations.pages.calendar_cards import error_words, state_of
from integrations.providers.base import Account
from integrations.providers.calendar_base import CalendarEvent, CursorExpired, EventPage
from integrations.providers.errors import AuthRevoked, Permanent, RateLimited
from tests.conftest import Tenant

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
ACCESS_TOKEN = "ya29.a0AfH6SMBsecretaccesstokenvalue1234567890"
Listing = Callable[[str | None, str | None, tuple[datetime, datetime]], EventPage]


class FakeCalendar:
    """A calendar provider whose answers a test scripts: listing(cursor, page, window)."""

    name = "google"

    def __init__(self, listing: Listing) -> None:
        self.listing = listing
        self.calls: list[tuple[str | None, str | None, tuple[datetime, datetime]]] = []
        self.accounts: list[Account] = []

    def list_events(
        self, account: Account, *, cursor: str | None, page: str | None, window: tuple[datetime, datetime]
    ) -> EventPage:
        self.calls.append((cursor, page, window))
        self.accounts.append(account)
        return self.listing(cursor, page, window)


def use_provider(monkeypatch: pytest.MonkeyPatch, listing: Listing) -> FakeCalendar:
    fake = FakeCalendar(listing)
    monkeypatch.setattr(sync, "get_calendar_provider", lambda name: fake)

    def call_with_token(connection_id: int, call: Callable[[Account], Any]) -> Any:
        return call(Account("google", ACCESS_TOKEN, "member@alice.example"))

    monkeypatch.setattr(tokens, "call_with_token", call_with_token)
    return fake


def make_profile(email: str | None = None) -> Profile:
    email = email or f"member-{secrets.token_hex(4)}@alice.example"
    with system_scope():
        user = User.objects.create_user(username=email, email=email)
        return Profile.objects.create(user=user, email=email)


def make_calendar(
    workspace: Workspace, profile: Profile | None = None, **fields: Any
) -> ExternalCalendarConnection:
    fields = {
        "provider": "google",
        "access_token": ACCESS_TOKEN,
        "refresh_token": "1//refresh-" + secrets.token_hex(8),
        "account_email": "member@alice.example",
        **fields,
    }
    with system_scope():
        return ExternalCalendarConnection.objects.create(
            workspace=workspace, profile=profile or make_profile(), **fields
        )


def event(external_id: str, **fields: Any) -> CalendarEvent:
    start = fields.pop("starts_at", NOW + timedelta(days=1))
    return CalendarEvent(
        external_id=external_id,
        ical_uid=fields.pop("ical_uid", f"{external_id}@google.com"),
        title=fields.pop("title", f"Meeting {external_id}"),
        starts_at=start,
        ends_at=fields.pop("ends_at", start + timedelta(hours=1)),
        organizer=fields.pop("organizer", "member@alice.example"),
        attendees=fields.pop("attendees", ("member@alice.example", "Maya@Acme.example")),
        updated_at=fields.pop("updated_at", NOW),
        **fields,
    )


def pages(*script: EventPage) -> Listing:
    """Answer page tokens "p1", "p2", ... with the script in order (the first page has none)."""

    def listing(cursor: str | None, page: str | None, window: tuple[datetime, datetime]) -> EventPage:
        return script[0 if page is None else int(page[1:])]

    return listing


def reload(conn: ExternalCalendarConnection) -> ExternalCalendarConnection:
    with system_scope():
        return ExternalCalendarConnection.objects.get(pk=conn.pk)


def stored(conn: ExternalCalendarConnection) -> dict[str, ExternalCalendarEvent]:
    with system_scope():
        return {e.external_id: e for e in ExternalCalendarEvent.objects.filter(connection=conn)}


def event_writes(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith(
            ('UPDATE "external_calendar_events"', 'INSERT INTO "external_calendar_events"')
        )
    ]


@pytest.fixture
def calendar(alice: Tenant) -> ExternalCalendarConnection:
    return make_calendar(alice.workspace)


def test_full_sync_pages_through_the_window_and_stores_the_cursor(
    calendar: ExternalCalendarConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = use_provider(
        monkeypatch,
        pages(
            EventPage([event("e1"), event("e2")], next_page="p1"),
            EventPage([event("e3")], sync_cursor="cursor-1"),
        ),
    )
    outcome = sync_connection(calendar.pk, now=NOW)
    assert outcome.ok and outcome.full and (outcome.created, outcome.pages) == (3, 2)
    window = (NOW - timedelta(days=30), NOW + timedelta(days=90))
    assert fake.calls == [(None, None, window), (None, "p1", window)]
    conn = reload(calendar)
    assert conn.sync_cursor == "cursor-1" and conn.last_synced_at == NOW and not conn.sync_needed
    assert conn.full_sync_count == 1 and conn.error_count == 0
    rows = stored(calendar)
    assert sorted(rows) == ["e1", "e2", "e3"]
    e1 = rows["e1"]
    assert e1.attendees == ["maya@acme.example", "member@alice.example"]
    assert e1.sync_status == ExternalCalendarEvent.SyncStatus.CREATED
    assert (e1.workspace_id, e1.profile_id) == (calendar.workspace_id, calendar.profile_id)


def test_incremental_sync_counts_created_updated_and_deleted(
    calendar: ExternalCalendarConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_provider(monkeypatch, pages(EventPage([event("e1"), event("e2"), event("e3")], sync_cursor="c1")))
    sync_connection(calendar.pk, now=NOW)
    with system_scope():
        ExternalCalendarEvent.objects.filter(connection=calendar).update(
            sync_status=ExternalCalendarEvent.SyncStatus.PROCESSED
        )
    fake = use_provider(
        monkeypatch,
        pages(
            EventPage(
                [
                    event("e1", updated_at=NOW + timedelta(minutes=1)),  # unchanged content
                    event("e2", title="Renamed"),
                    CalendarEvent("e3", cancelled=True),
                    event("e4"),
                    CalendarEvent("e5", cancelled=True),  # never stored: not stored now
                    CalendarEvent("e3", cancelled=True),  # the same id twice in a page: the last wins
                ],
                sync_cursor="c2",
            )
        ),
    )
    outcome = sync_connection(calendar.pk, now=NOW + timedelta(hours=1))
    assert not outcome.full and fake.calls[0][:2] == ("c1", None)
    assert (outcome.created, outcome.updated, outcome.deleted) == (1, 1, 1)
    rows = stored(calendar)
    assert sorted(rows) == ["e1", "e2", "e3", "e4"]
    again = use_provider(
        monkeypatch, pages(EventPage([CalendarEvent("e3", cancelled=True)], sync_cursor="c2"))
    )
    assert sync_connection(calendar.pk, now=NOW + timedelta(hours=1)).deleted == 0  # already cancelled
    assert again.calls[0][0] == "c2"
    processed, created = ExternalCalendarEvent.SyncStatus.PROCESSED, ExternalCalendarEvent.SyncStatus.CREATED
    assert rows["e1"].sync_status == processed
    assert rows["e2"].sync_status == created and rows["e2"].title == "Renamed"
    assert rows["e3"].cancelled and rows["e3"].sync_status == created
    assert rows["e3"].title == "Meeting e3"  # a cancellation keeps what was stored
    conn = reload(calendar)
    assert conn.sync_cursor == "c2" and conn.full_sync_count == 1


def test_unchanged_events_are_not_written_again(
    calendar: ExternalCalendarConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [event(f"e{i}") for i in range(20)]
    use_provider(monkeypatch, pages(EventPage(events, sync_cursor="c1")))
    with CaptureQueriesContext(connection) as first:
        sync_connection(calendar.pk, now=NOW)
    assert len(event_writes(first)) == 1  # one INSERT for the page, not one per event
    changed = [*events[:19], event("e19", attendees=("someone@else.example",))]
    use_provider(monkeypatch, pages(EventPage(changed, sync_cursor="c2")))
    with CaptureQueriesContext(connection) as second:
        outcome = sync_connection(calendar.pk, now=NOW)
    writes = event_writes(second)
    assert outcome.updated == 1 and len(writes) == 1 and writes[0].startswith("UPDATE")
    use_provider(monkeypatch, pages(EventPage(changed, sync_cursor="c3")))
    with CaptureQueriesContext(connection) as third:
        outcome = sync_connection(calendar.pk, now=NOW)
    assert (outcome.created, outcome.updated, outcome.deleted) == (0, 0, 0)
    assert event_writes(third) == []


def test_expired_cursor_clears_it_and_resyncs_in_full_without_doubles(
    calendar: ExternalCalendarConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_provider(monkeypatch, pages(EventPage([event("e1"), event("e2"), event("e3")], sync_cursor="old")))
    sync_connection(calendar.pk, now=NOW)

    def listing(cursor: str | None, page: str | None, window: tuple[datetime, datetime]) -> EventPage:
        if cursor == "old":
            raise CursorExpired("google")
        return EventPage([event("e1"), event("e2", title="Moved")], sync_cursor="new")

    fake = use_provider(monkeypatch, listing)
    outcome = sync_connection(calendar.pk, now=NOW)
    assert [c[0] for c in fake.calls] == ["old", None]
    assert outcome.ok and outcome.full and (outcome.created, outcome.updated, outcome.deleted) == (0, 1, 1)
    rows = stored(calendar)
    assert len(rows) == 3 and rows["e3"].cancelled and not rows["e1"].cancelled
    conn = reload(calendar)
    assert conn.sync_cursor == "new" and conn.full_sync_count == 2


def test_expired_cursor_is_cleared_even_when_the_full_sync_then_fails(
    calendar: ExternalCalendarConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    with system_scope():
        ExternalCalendarConnection.objects.filter(pk=calendar.pk).update(sync_cursor="old")

    def listing(cursor: str | None, page: str | None, window: tuple[datetime, datetime]) -> EventPage:
        raise CursorExpired("google")

    use_provider(monkeypatch, listing)
    outcome = sync_connection(calendar.pk, now=NOW)
    assert outcome.error_code == "full_sync_required"
    assert reload(calendar).sync_cursor is None


def test_events_outside_the_window_are_not_cancelled_by_a_full_listing(
    calendar: ExternalCalendarConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = event("old", starts_at=NOW - timedelta(days=200))
    use_provider(monkeypatch, pages(EventPage([old, event("e1")], sync_cursor="c1")))
    sync_connection(calendar.pk, now=NOW)
    with system_scope():
        ExternalCalendarConnection.objects.filter(pk=calendar.pk).update(sync_cursor=None)
    use_provider(monkeypatch, pages(EventPage([], sync_cursor="c2")))
    outcome = sync_connection(calendar.pk, now=NOW)
    rows = stored(calendar)
    assert outcome.deleted == 1 and rows["e1"].cancelled and not rows["old"].cancelled


def test_rate_limit_grows_the_backoff_and_success_clears_it(
    calendar: ExternalCalendarConnection, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.CALENDAR_BACKOFF_BASE_SECONDS, settings.CALENDAR_BACKOFF_CAP_SECONDS = 60, 3600
    retry_after = [5.0]

    def limited(cursor: str | None, page: str | None, window: tuple[datetime, datetime]) -> EventPage:
        raise RateLimited("google", retry_after=retry_after[0])

    use_provider(monkeypatch, limited)
    outcome = sync_connection(calendar.pk, now=NOW)
    assert outcome.error_code == "rate_limited"
    conn = reload(calendar)
    assert conn.error_count == 1 and conn.backoff_until == NOW + timedelta(seconds=60)
    assert conn.last_error == "rate_limited: rate limited; retry after 5s" and conn.sync_needed
    assert "Google asked Conduit to slow down" in error_words(conn.last_error, "google")  # the card's words
    sync_connection(calendar.pk, now=NOW)
    assert reload(calendar).backoff_until == NOW + timedelta(seconds=120)
    retry_after[0] = 900
    sync_connection(calendar.pk, now=NOW)
    conn = reload(calendar)
    assert conn.error_count == 3 and conn.backoff_until == NOW + timedelta(seconds=900)
    for _ in range(5):
        sync_connection(calendar.pk, now=NOW)
    assert reload(calendar).backoff_until == NOW + timedelta(seconds=3600)  # the cap

    use_provider(monkeypatch, pages(EventPage([event("e1")], sync_cursor="c1")))
    assert sync_connection(calendar.pk, now=NOW).ok
    conn = reload(calendar)
    assert (conn.error_count, conn.last_error, conn.backoff_until) == (0, None, None)
    assert conn.last_synced_at == NOW and not conn.sync_needed


def test_private_events_are_stored_as_busy_only(
    calendar: ExternalCalendarConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_provider(monkeypatch, pages(EventPage([event("p1", private=True, title="Doctor")], sync_cursor="c")))
    sync_connection(calendar.pk, now=NOW)
    row = stored(calendar)["p1"]
    assert row.is_private and row.title == "" and row.attendees == [] and row.organizer == ""
    assert row.starts_at == NOW + timedelta(days=1)


def test_a_sync_that_hits_the_page_cap_keeps_the_cursor_and_stays_due(
    calendar: ExternalCalendarConnection, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.CALENDAR_SYNC_MAX_PAGES = 2

    def endless(cursor: str | None, page: str | None, window: tuple[datetime, datetime]) -> EventPage:
        n = 0 if page is None else int(page[1:])
        return EventPage([event(f"e{n}")], next_page=f"p{n + 1}")

    fake = use_provider(monkeypatch, endless)
    outcome = sync_connection(calendar.pk, now=NOW)
    assert outcome.ok and outcome.pages == 2 and len(fake.calls) == 2
    conn = reload(calendar)
    assert conn.sync_cursor is None and conn.sync_needed and conn.full_sync_count == 0
    assert sorted(stored(calendar)) == ["e0", "e1"]
    outcome = sync_connection(calendar.pk, now=NOW)  # starts again; nothing doubled
    assert outcome.created == 0 and len(stored(calendar)) == 2


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"status": ExternalCalendarConnection.Status.ERROR}, "not_connected"),
        ({"sync_enabled": False}, "sync_disabled"),
    ],
)
def test_a_connection_not_ready_is_refused_without_a_provider_call(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any], code: str
) -> None:
    conn = make_calendar(alice.workspace, **fields)
    fake = use_provider(monkeypatch, pages(EventPage([], sync_cursor="c")))
    assert sync_connection(conn.pk, now=NOW).error_code == code
    assert fake.calls == [] and reload(conn).error_count == 0
    assert sync_connection(10**9, now=NOW).error_code == "not_found"


def test_flags_and_allowlists_refuse_a_sync(
    calendar: ExternalCalendarConnection, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    fake = use_provider(monkeypatch, pages(EventPage([], sync_cursor="c")))
    settings.CALENDAR_SYNC_ENABLED = False
    assert sync_connection(calendar.pk, now=NOW).error_code == "calendar_disabled"
    settings.CALENDAR_SYNC_ENABLED = True
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = [str(calendar.profile_id + 1)]
    assert sync_connection(calendar.pk, now=NOW).error_code == "calendar_not_allowlisted"
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = ["*"]
    settings.CALENDAR_ALLOWLIST_CONNECTION_IDS = [str(calendar.pk)]
    assert sync_connection(calendar.pk, now=NOW).ok
    assert len(fake.calls) == 1


def test_revoked_grant_puts_the_connection_in_error_without_backoff(
    calendar: ExternalCalendarConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    def revoked(cursor: str | None, page: str | None, window: tuple[datetime, datetime]) -> EventPage:
        raise AuthRevoked("google", None, "invalid_grant")

    use_provider(monkeypatch, revoked)
    outcome = sync_connection(calendar.pk, now=NOW)
    assert outcome.error_code == "refresh_token_revoked"
    conn = reload(calendar)
    assert conn.status == ExternalCalendarConnection.Status.ERROR and conn.backoff_until is None
    assert conn.last_error == "refresh_token_revoked"  # the bare code: the card offers Reconnect
    assert state_of(conn) == "needs_reconnect"


def test_a_grant_error_recorded_by_tokens_is_kept(
    calendar: ExternalCalendarConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    def revoked(cursor: str | None, page: str | None, window: tuple[datetime, datetime]) -> EventPage:
        with system_scope():  # what tokens.mark_grant_error does before raising
            ExternalCalendarConnection.objects.filter(pk=calendar.pk).update(
                status=ExternalCalendarConnection.Status.ERROR, last_error="access_token_rejected"
            )
        raise AuthRevoked("google", "access_token_rejected")

    use_provider(monkeypatch, revoked)
    sync_connection(calendar.pk, now=NOW)
    assert reload(calendar).last_error == "access_token_rejected"


def test_conduit_bug_is_recorded_with_backoff_and_no_text(
    calendar: ExternalCalendarConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(cursor: str | None, page: str | None, window: tuple[datetime, datetime]) -> EventPage:
        raise ValueError(f"bad value {ACCESS_TOKEN}")

    use_provider(monkeypatch, broken)
    outcome = sync_connection(calendar.pk, now=NOW)
    assert outcome.error_code == "internal_error"
    conn = reload(calendar)
    assert conn.last_error == "internal_error: ValueError (details in the logs)"
    assert conn.backoff_until is not None


def test_not_connected_from_tokens_is_recorded_by_its_code(
    calendar: ExternalCalendarConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrations.connections.tokens import NotConnected

    def gone(cursor: str | None, page: str | None, window: tuple[datetime, datetime]) -> EventPage:
        raise NotConnected("The Google calendar is error; reconnect it first.")

    use_provider(monkeypatch, gone)
    assert sync_connection(calendar.pk, now=NOW).error_code == "not_connected"
    assert reload(calendar).last_error == "not_connected: The Google calendar is error; reconnect it first."


def test_no_token_in_log_lines_or_last_error(
    calendar: ExternalCalendarConnection,
    monkeypatch: pytest.MonkeyPatch,
    capture_json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    use_provider(monkeypatch, pages(EventPage([event("e1")], sync_cursor="c1")))
    sync_connection(calendar.pk, now=NOW)

    def leaky(cursor: str | None, page: str | None, window: tuple[datetime, datetime]) -> EventPage:
        raise Permanent("google", "http_400", f"Invalid Credentials Bearer {ACCESS_TOKEN}")

    use_provider(monkeypatch, leaky)
    outcome = sync_connection(calendar.pk, now=NOW)
    lines = [line for line in capture_json_logs() if line.get("category") == "calendar_sync"]
    assert [line["level"] for line in lines] == ["INFO", "ERROR"]
    ok, failed = lines[0], lines[-1]
    assert ok["metadata"]["created"] == 1 and ok["metadata"]["connection_id"] == calendar.pk
    assert failed["error_code"] == "http_400" and failed["metadata"]["provider"] == "google"
    conn = reload(calendar)
    assert ACCESS_TOKEN not in str(lines) and ACCESS_TOKEN not in (conn.last_error or "")
    assert ACCESS_TOKEN not in (outcome.error_message or "")
    assert conn.last_error is not None and conn.last_error.startswith("http_400: Invalid Credentials")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_syncs_of_one_connection_never_run_at_once(
    make_workspace: Callable[..., Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = make_calendar(make_workspace("alice").workspace)
    inside, release = threading.Event(), threading.Event()

    def slow(cursor: str | None, page: str | None, window: tuple[datetime, datetime]) -> EventPage:
        inside.set()
        release.wait(timeout=10)
        return EventPage([event("e1")], sync_cursor="c1")

    fake = use_provider(monkeypatch, slow)
    results: list[sync.SyncOutcome] = []

    def first() -> None:
        try:
            results.append(sync_connection(conn.pk, now=NOW))
        finally:
            connections.close_all()

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(timeout=10)
    second = sync_connection(conn.pk, now=NOW)
    release.set()
    thread.join(timeout=10)
    assert second.error_code == "sync_in_progress" and len(fake.calls) == 1
    assert results[0].ok and results[0].created == 1
    assert sync_connection(conn.pk, now=NOW).ok  # the lock was released


def test_without_postgres_the_sync_runs_without_a_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    monkeypatch.setattr(sync, "db", SimpleNamespace(vendor="sqlite"))
    with sync.claimed(1) as got:
        assert got
