"""Settings > Calendar (a member's calendar cards, why an action is unavailable, the next
meetings) and a customer's timeline (email and meetings interleaved, private and cancelled
meetings never shown, another workspace's rows never shown, constant query count), and the
message page's links to the timelines of its external participants."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conduit.models import Profile
from conduit.tenancy import system_scope
from integrations.models import ExternalCalendarConnection, ExternalCalendarEvent
from integrations.pages.calendar_cards import error_words, state_of
from tests.conftest import Tenant, make_message

ACCESS = "ya29.ACCESS-TOKEN-never-shown"
REFRESH = "1//REFRESH-TOKEN-never-shown"
CHANNEL = "CHANNEL-SECRET-never-shown"
CUSTOMER = "ann@acme.example"


def profile_of(tenant: Tenant) -> Profile:
    return Profile.objects.get(user=tenant.user)


def make_calendar(tenant: Tenant, provider: str = "google", **fields: Any) -> ExternalCalendarConnection:
    with system_scope():
        return ExternalCalendarConnection.objects.create(
            workspace=tenant.workspace,
            profile=profile_of(tenant),
            provider=provider,
            account_email=fields.pop("account_email", tenant.user.email),
            access_token=ACCESS,
            refresh_token=REFRESH,
            channel_secret=CHANNEL,
            sync_cursor=fields.pop("sync_cursor", "CURSOR-sync-token"),
            token_expiry=fields.pop("token_expiry", timezone.now() + timedelta(hours=1)),
            **fields,
        )


def make_event(conn: ExternalCalendarConnection, external_id: str, **fields: Any) -> ExternalCalendarEvent:
    starts = fields.pop("starts_at", timezone.now() + timedelta(days=1))
    with system_scope():
        return ExternalCalendarEvent.objects.create(
            workspace_id=conn.workspace_id,
            profile_id=conn.profile_id,
            connection=conn,
            external_id=external_id,
            title=fields.pop("title", f"Meeting {external_id}"),
            starts_at=starts,
            ends_at=fields.pop("ends_at", starts + timedelta(minutes=30)),
            organizer=fields.pop("organizer", "alice@example.com"),
            attendees=fields.pop("attendees", ["alice@example.com", CUSTOMER]),
            **fields,
        )


def card_html(html: str, provider: str) -> str:
    found = re.search(rf'<section class="card cal-card" data-calendar="{provider}".*?</section>', html, re.S)
    assert found, provider
    return found.group(0)


def button(html: str, marker: str) -> str:
    found = re.search(rf"<button[^>]*{marker}[^>]*>", html)
    assert found, marker
    return found.group(0)


# --- Settings > Calendar -------------------------------------------------------------------


def test_calendar_pages_require_sign_in(client: Any) -> None:
    for url in ("/settings/calendar/", f"/customers/{CUSTOMER}/"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_not_connected_cards_offer_connect_for_each_provider(alice: Tenant) -> None:
    html = alice.client().get("/settings/calendar/").content.decode()
    for provider, label in (("google", "Google Calendar"), ("microsoft", "Microsoft 365")):
        card = card_html(html, provider)
        assert 'data-state="not_connected"' in card and "Not connected" in card
        assert f'action="/settings/calendar/{provider}/connect/"' in card
        assert f"Connect {label}" in card and "disabled" not in button(card, "data-connect")
    assert "data-refusals" not in html
    assert "Connect a calendar to see your next meetings here." in html


def test_connected_card_shows_account_sync_time_count_and_buttons(alice: Tenant) -> None:
    synced = timezone.now() - timedelta(minutes=5)
    conn = make_calendar(alice, account_email="alice.cal@example.com", last_synced_at=synced)
    make_event(conn, "e1")
    make_event(conn, "e2", cancelled=True)
    html = alice.client().get("/settings/calendar/").content.decode()
    card = card_html(html, "google")
    assert "Connected" in card and "alice.cal@example.com" in card
    assert "5\xa0minutes ago" in card and synced.strftime("%H:%M") in card
    assert re.search(r"data-events-stored>2<", card)
    assert f'action="/settings/calendar/{conn.pk}/sync/"' in card
    assert f'action="/settings/calendar/{conn.pk}/disconnect/"' in card and "confirm(" in card
    assert 'action="/settings/calendar/google/connect/"' in card  # Reconnect
    for marker in ("data-sync-now", "data-reconnect", "data-disconnect"):
        assert "disabled" not in button(card, marker)
    for secret in (ACCESS, REFRESH, CHANNEL, "CURSOR-sync-token"):
        assert secret not in html
    assert 'data-state="not_connected"' in card_html(html, "microsoft")


def test_never_synced_card_says_never(alice: Tenant) -> None:
    make_calendar(alice, "microsoft")
    card = card_html(alice.client().get("/settings/calendar/").content.decode(), "microsoft")
    assert re.search(r"data-last-synced>never<", card)


def test_error_card_needs_reconnect_with_words_and_reconnect_beside_them(alice: Tenant) -> None:
    make_calendar(alice, status="error", last_error="refresh_token_revoked", error_count=3)
    card = card_html(alice.client().get("/settings/calendar/").content.decode(), "google")
    assert "Needs reconnect" in card and 'data-error="refresh_token_revoked"' in card
    assert "Google no longer accepts Conduit&#x27;s access" in card and "Reconnect to resume." in card
    alert = card[card.index('role="alert"') : card.index("</div>", card.index('role="alert"'))]
    assert "data-reconnect" in alert and "data-sync-now" not in card  # no Sync now while in error


def test_backoff_card_shows_backoff_until(alice: Tenant) -> None:
    until = timezone.now() + timedelta(minutes=30)
    make_calendar(alice, last_error="rate_limited", error_count=2, backoff_until=until)
    card = card_html(alice.client().get("/settings/calendar/").content.decode(), "google")
    assert "backoff until" in card and until.strftime("%H:%M") in card and "2 failed attempts" in card
    assert "Waiting to retry" in card and "Google asked Conduit to slow down" in card
    assert "Connected" in card  # a rate limit is not an error state


def test_past_backoff_is_not_shown(alice: Tenant) -> None:
    make_calendar(alice, backoff_until=timezone.now() - timedelta(minutes=1))
    card = card_html(alice.client().get("/settings/calendar/").content.decode(), "google")
    assert "backoff until" not in card and "Waiting to retry" not in card


def test_paused_by_an_operator(alice: Tenant) -> None:
    make_calendar(alice, sync_enabled=False)
    card = card_html(alice.client().get("/settings/calendar/").content.decode(), "google")
    assert "Paused by an operator" in card and "data-paused" in card and "data-sync-now" not in card


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("refresh_token_revoked", "Google no longer accepts Conduit's access"),
        ("access_token_rejected", "Google refused Conduit's access token twice. Reconnect to resume."),
        ("refresh_token_missing", "Conduit holds no refresh token for this calendar. Reconnect"),
        ("token_expired", "Google says Conduit's access has expired. Reconnect to resume."),
        ("missing_scope", "Google did not grant the calendar permission Conduit needs. Reconnect"),
        ("rate_limited", "Google asked Conduit to slow down (rate limit)."),
        ("full_sync_required", "Google asked Conduit to read the calendar again from the start"),
        ("network_error", "Conduit could not reach Google."),
        ("transient", "Google did not answer properly."),
        ("http_503", "Google had a problem on its side (HTTP 503)."),
        ("weird_thing", "Google stopped syncing this calendar (weird_thing). If it goes on, reconnect."),
        ("http_418", "Google stopped syncing this calendar (HTTP 418)."),
    ],
)
def test_each_error_code_in_plain_words(code: str, words: str) -> None:
    assert words in error_words(code, "google")


def test_a_stored_error_with_its_message_reads_by_its_code() -> None:
    assert "asked Conduit to slow down" in error_words("rate_limited: rate limited; retry after 5s", "google")
    assert "HTTP 503" in error_words("http_503: Service Unavailable", "microsoft")
    conn = ExternalCalendarConnection(status="error", last_error="missing_scope: Calendars.Read not granted")
    assert state_of(conn) == "needs_reconnect"


def test_no_error_no_words() -> None:
    assert error_words(None, "google") == "" and error_words("", "microsoft") == ""
    assert error_words("rate_limited", "microsoft").startswith("Microsoft asked")


def test_state_of_each_connection() -> None:
    conn = ExternalCalendarConnection(status="connected", sync_enabled=True)
    assert state_of(None) == "not_connected" and state_of(conn) == "connected"
    conn.sync_enabled = False
    assert state_of(conn) == "paused"
    conn.status, conn.last_error = "error", "http_500"
    assert state_of(conn) == "error"
    conn.last_error = "missing_scope"
    assert state_of(conn) == "needs_reconnect"
    conn.status = "disconnected"
    assert state_of(conn) == "not_connected"


def test_flag_off_disables_connect_and_says_why(alice: Tenant, settings: Any) -> None:
    settings.CALENDAR_OAUTH_ENABLED = False
    make_calendar(alice, "microsoft")
    html = alice.client().get("/settings/calendar/").content.decode()
    top = html[html.index("data-refusals") : html.index('<div class="grid cards">')]
    assert "Connecting calendars is turned off (CALENDAR_OAUTH_ENABLED=false)." in top
    google = card_html(html, "google")
    assert "disabled" in button(google, "data-connect")
    assert "Connect</strong> is unavailable: Connecting calendars is turned off" in google
    microsoft = card_html(html, "microsoft")
    assert "disabled" in button(microsoft, "data-reconnect")
    assert "disabled" not in button(microsoft, "data-disconnect")  # withdrawing access is never refused
    assert "disabled" not in button(microsoft, "data-sync-now")  # sync has its own flag


def test_sync_flag_off_disables_sync_now_only(alice: Tenant, settings: Any) -> None:
    settings.CALENDAR_SYNC_ENABLED = False
    make_calendar(alice)
    html = alice.client().get("/settings/calendar/").content.decode()
    assert "Calendar sync is turned off (CALENDAR_SYNC_ENABLED=false)." in html
    card = card_html(html, "google")
    assert "disabled" in button(card, "data-sync-now") and "disabled" not in button(card, "data-reconnect")
    assert "Sync now</strong> is unavailable" in card


def test_member_not_allowlisted_sees_every_action_disabled(alice: Tenant, settings: Any) -> None:
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = ["999999"]
    make_calendar(alice)
    html = alice.client().get("/settings/calendar/").content.decode()
    assert "Calendar sync is not open to this member yet (not in CALENDAR_ALLOWLIST_PROVIDER_IDS)." in html
    card = card_html(html, "google")
    for marker in ("data-sync-now", "data-reconnect"):
        assert "disabled" in button(card, marker)
    assert "disabled" not in button(card, "data-disconnect")
    assert "disabled" in button(card_html(html, "microsoft"), "data-connect")


def test_connection_not_allowlisted_disables_its_sync_now(alice: Tenant, settings: Any) -> None:
    settings.CALENDAR_ALLOWLIST_CONNECTION_IDS = ["999999"]
    make_calendar(alice)
    html = alice.client().get("/settings/calendar/").content.decode()
    assert "This calendar connection is not open yet (not in CALENDAR_ALLOWLIST_CONNECTION_IDS)." in html
    card = card_html(html, "google")
    assert "disabled" in button(card, "data-sync-now")
    assert "disabled" not in button(card, "data-reconnect") and "disabled" not in button(
        card, "data-disconnect"
    )
    assert "disabled" not in button(card_html(html, "microsoft"), "data-connect")


def test_upcoming_meetings_private_as_busy_and_only_this_members(
    alice: Tenant, make_workspace: Any, bob: Tenant
) -> None:
    conn = make_calendar(alice)
    soon = timezone.now() + timedelta(hours=2)
    make_event(conn, "public", title="Renewal call", starts_at=soon, customer_emails=[CUSTOMER])
    make_event(
        conn, "private", title="Doctor appointment", starts_at=soon + timedelta(hours=1), is_private=True
    )
    make_event(conn, "cancelled", title="Cancelled sync", starts_at=soon, cancelled=True)
    make_event(conn, "past", title="Yesterday's call", starts_at=soon - timedelta(days=2))
    for n in range(12):
        make_event(conn, f"later{n}", title=f"Later {n}", starts_at=soon + timedelta(days=3 + n))
    make_event(make_calendar(bob), "bobs", title="Bob's meeting", starts_at=soon)
    html = alice.client().get("/settings/calendar/").content.decode()
    upcoming = html[html.index("data-upcoming") :]
    assert "Renewal call" in upcoming and f'href="/customers/{CUSTOMER}/"' in upcoming
    assert "Doctor appointment" not in html and "data-busy" in upcoming and ">Busy<" in upcoming
    for hidden in ("Cancelled sync", "Yesterday&#x27;s call", "Bob&#x27;s meeting", "Later 8"):
        assert hidden not in upcoming, hidden
    assert upcoming.count("data-meeting=") == 10 and "Later 7" in upcoming


def test_connected_but_no_meetings(alice: Tenant) -> None:
    make_calendar(alice)
    assert (
        "No upcoming meetings in your synced calendars."
        in alice.client().get("/settings/calendar/").content.decode()
    )


def test_another_members_and_another_workspaces_calendars_are_not_shown(
    alice: Tenant, bob: Tenant, make_workspace: Any
) -> None:
    make_calendar(bob, account_email="bob.cal@example.com")
    colleague = make_workspace("carol")
    with system_scope():
        colleague.workspace.delete()
        colleague.workspace = alice.workspace
        from conduit.models import Membership

        Membership.objects.create(workspace=alice.workspace, user=colleague.user, role="member")
    make_calendar(colleague, account_email="carol.cal@example.com")
    html = alice.client().get("/settings/calendar/").content.decode()
    assert "bob.cal@example.com" not in html and "carol.cal@example.com" not in html
    assert 'data-state="not_connected"' in card_html(html, "google")


def test_disconnected_connection_shows_as_not_connected(alice: Tenant) -> None:
    make_calendar(alice, status="disconnected", account_email="old@example.com")
    html = alice.client().get("/settings/calendar/").content.decode()
    assert "old@example.com" not in html and 'data-state="not_connected"' in card_html(html, "google")


def test_settings_home_links_to_calendar(alice: Tenant) -> None:
    html = alice.client().get("/settings/").content.decode()
    assert 'href="/settings/calendar/"' in html


# --- the customer timeline -----------------------------------------------------------------


def at(hours_ago: int) -> datetime:
    return timezone.now() - timedelta(hours=hours_ago)


def test_timeline_interleaves_email_and_meetings_newest_first(alice: Tenant) -> None:
    conn = make_calendar(alice)
    make_message(
        alice.workspace, "m-from", subject="Inbound hello", from_address=f"Ann <{CUSTOMER}>", sent_at=at(1)
    )
    make_event(conn, "meet1", title="Kickoff", starts_at=at(2), organizer="alice@example.com")
    make_message(
        alice.workspace,
        "m-to",
        subject="Outbound reply",
        from_address="alice@example.com",
        to_addresses=["Ann@Acme.example"],
        sent_at=at(3),
    )
    make_message(
        alice.workspace,
        "m-cc",
        subject="Copied",
        to_addresses=["x@y.example"],
        cc_addresses=[CUSTOMER],
        sent_at=at(4),
    )
    make_event(conn, "meet2", title="Demo", starts_at=at(5), sync_status="PROCESSED")
    html = alice.client().get(f"/customers/{CUSTOMER}/").content.decode()
    order = re.findall(r'data-kind="(email|meeting)"', html)
    assert order == ["email", "meeting", "email", "email", "meeting"]
    positions = [html.index(s) for s in ("Inbound hello", "Kickoff", "Outbound reply", "Copied", "Demo")]
    assert positions == sorted(positions)
    assert ">Email<" in html and ">Meeting<" in html and "5 items" in html
    assert "From the customer" in html and "To the customer" in html
    assert "Linked to this customer" in html and "Waiting to be linked" in html
    assert "alice@example.com, ann@acme.example" in html  # attendees
    assert "on alice@example.com's Google calendar" in html


def test_timeline_never_shows_private_cancelled_or_other_peoples_rows(alice: Tenant, bob: Tenant) -> None:
    conn = make_calendar(alice)
    make_event(conn, "private", title="Private lunch", is_private=True)
    make_event(conn, "cancelled", title="Called off", cancelled=True)
    make_event(conn, "other", title="Not with Ann", attendees=["zed@acme.example"])
    make_event(conn, "lookalike", title="Lookalike", attendees=[f"x{CUSTOMER}"])
    make_message(alice.workspace, "lookalike", subject="Lookalike mail", from_address=f"x{CUSTOMER}")
    make_message(bob.workspace, "bobs", subject="Bob's mail with Ann", from_address=CUSTOMER)
    make_event(make_calendar(bob), "bobs-meeting", title="Bob meets Ann")
    make_event(conn, "visible", title="Visible one")
    html = alice.client().get(f"/customers/{CUSTOMER}/").content.decode()
    assert "Visible one" in html and "1 item" in html
    for hidden in (
        "Private lunch",
        "Called off",
        "Not with Ann",
        "Lookalike",
        "Bob&#x27;s mail",
        "Bob meets Ann",
    ):
        assert hidden not in html, hidden


def test_timeline_empty_and_bad_address(alice: Tenant) -> None:
    client = alice.client()
    assert (
        "No stored email or meetings with nobody@acme.example yet."
        in client.get("/customers/nobody@acme.example/").content.decode()
    )
    for bad in ("not-an-email", "a@b@c", "%20"):
        assert client.get(f"/customers/{bad}/").status_code == 404, bad


def test_timeline_paginates_fifty_a_page(alice: Tenant) -> None:
    for n in range(53):
        make_message(
            alice.workspace, f"m{n}", subject=f"Mail {n:02d}", from_address=CUSTOMER, sent_at=at(n + 1)
        )
    client = alice.client()
    first = client.get(f"/customers/{CUSTOMER}/").content.decode()
    assert first.count('data-kind="email"') == 50 and "53 items, page 1 of 2" in first and "Mail 00" in first
    second = client.get(f"/customers/{CUSTOMER}/", {"page": 2}).content.decode()
    assert second.count('data-kind="email"') == 3 and "Mail 52" in second and 'rel="prev"' in second


def timeline_queries(tenant: Tenant) -> int:
    client = tenant.client()
    client.get("/settings/")  # warm the session
    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"/customers/{CUSTOMER}/").status_code == 200
    return len(queries)


def test_timeline_query_count_does_not_grow_with_rows(alice: Tenant) -> None:
    conn = make_calendar(alice)
    make_message(alice.workspace, "one", from_address=CUSTOMER)
    make_event(conn, "one")
    few = timeline_queries(alice)
    for n in range(30):
        make_message(alice.workspace, f"m{n}", from_address=CUSTOMER, sent_at=at(n))
        make_event(conn, f"e{n}", starts_at=at(n))
    assert timeline_queries(alice) == few


def test_calendar_page_query_count_does_not_grow_with_events(alice: Tenant) -> None:
    conn = make_calendar(alice)
    client = alice.client()
    client.get("/settings/")
    with CaptureQueriesContext(connection) as before:
        client.get("/settings/calendar/")
    for n in range(30):
        make_event(conn, f"e{n}", starts_at=timezone.now() + timedelta(hours=n + 1))
    with CaptureQueriesContext(connection) as after:
        client.get("/settings/calendar/")
    assert len(after) == len(before)


# --- the message page links to its customers' timelines --------------------------------------


def test_message_page_links_each_external_participant_to_its_timeline(alice: Tenant) -> None:
    message = make_message(
        alice.workspace,
        "mx",
        from_address=f"Ann <{CUSTOMER}>",
        to_addresses=["alice@example.com", "teammate@example.com", "Bo@Other.example"],
        cc_addresses=[CUSTOMER],
    )
    html = alice.client().get(f"/messages/{message.pk}/").content.decode()
    links = re.findall(r'href="/customers/([^"]+)/" data-customer-link>Meetings with ([^<]+)<', html)
    assert links == [(CUSTOMER, CUSTOMER), ("bo@other.example", "bo@other.example")]


def test_message_page_without_external_participants_has_no_customer_box(alice: Tenant) -> None:
    message = make_message(alice.workspace, "internal", from_address="alice@example.com", to_addresses=[])
    html = alice.client().get(f"/messages/{message.pk}/").content.decode()
    assert "data-customers" not in html


def test_a_member_without_a_profile_gets_404(alice: Tenant) -> None:
    with system_scope():
        Profile.objects.filter(user=alice.user).delete()
    assert alice.client().get("/settings/calendar/").status_code == 404
