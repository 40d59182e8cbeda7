"""Settings > Calendar and a customer's timeline in a real browser, with screenshots: a connected
card with the next meetings (a private one as "Busy"), a card in error with Reconnect beside the
words, the page with the calendar flags off (buttons disabled, the reason at the top), and the
timeline of one customer with email and meetings interleaved; long addresses stay in their card."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.conftest import Tenant, make_message, shot, sign_in
from tests.test_calendar_pages import CUSTOMER, make_calendar, make_event

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
LONG_ADDRESS = "procurement.north-east.region@a-very-long-subsidiary-name.acme-logistics.example"


def inside(inner: Any, outer: Any) -> bool:
    a, b = inner.bounding_box(), outer.bounding_box()
    return bool(a["x"] >= b["x"] - 1 and a["x"] + a["width"] <= b["x"] + b["width"] + 1)


def test_calendar_cards_and_meetings(page: Any, live_server: Any, alice: Tenant, tmp_path: Path) -> None:
    now = timezone.now()
    google = make_calendar(alice, account_email=LONG_ADDRESS, last_synced_at=now - timedelta(minutes=7))
    make_event(
        google,
        "e1",
        title="Renewal call with Acme",
        starts_at=now + timedelta(hours=2),
        customer_emails=[CUSTOMER],
    )
    make_event(google, "e2", title="Dentist", starts_at=now + timedelta(hours=4), is_private=True)
    make_event(
        google,
        "e3",
        title="Quarterly planning",
        starts_at=now + timedelta(days=1),
        attendees=["alice@example.com"],
    )
    make_calendar(
        alice, "microsoft", status="error", last_error="refresh_token_revoked", error_count=3,
        last_synced_at=now - timedelta(days=2), account_email="alice@contoso.example",
    )  # fmt: skip
    url = live_server.url
    sign_in(page, url, alice)
    page.goto(f"{url}/settings/calendar/")
    card = page.locator("section[data-calendar=google]")
    assert card.locator("[data-status]").inner_text() == "Connected"
    assert inside(card.locator("[data-account]"), card)
    assert card.locator("button[data-sync-now]").is_enabled()
    error = page.locator("section[data-calendar=microsoft]")
    assert error.locator("[data-status]").inner_text() == "Needs reconnect"
    assert "Microsoft no longer accepts Conduit's access" in error.locator("[role=alert]").inner_text()
    assert error.locator("[role=alert] button[data-reconnect]").is_visible()
    meetings = page.locator("[data-upcoming] li[data-meeting]")
    assert meetings.count() == 3
    assert meetings.nth(1).locator("[data-title]").inner_text() == "Busy"
    assert "Dentist" not in page.content()
    shot(page, tmp_path, "calendar-01-connected-and-error")
    page.set_viewport_size({"width": 390, "height": 844})
    assert inside(card.locator("[data-account]"), card)
    shot(page, tmp_path, "calendar-02-phone")


def test_calendar_flags_off(
    page: Any, live_server: Any, alice: Tenant, settings: Any, tmp_path: Path
) -> None:
    settings.CALENDAR_OAUTH_ENABLED = False
    settings.CALENDAR_ALLOWLIST_CONNECTION_IDS = ["0"]
    make_calendar(alice, "microsoft", last_synced_at=timezone.now() - timedelta(hours=1))
    url = live_server.url
    sign_in(page, url, alice)
    page.goto(f"{url}/settings/calendar/")
    top = page.locator("[data-refusals]")
    assert "Connecting calendars is turned off (CALENDAR_OAUTH_ENABLED=false)." in top.inner_text()
    assert page.locator("section[data-calendar=google] button[data-connect]").is_disabled()
    microsoft = page.locator("section[data-calendar=microsoft]")
    for marker in ("data-sync-now", "data-reconnect"):
        assert microsoft.locator(f"button[{marker}]").is_disabled(), marker
    assert microsoft.locator("button[data-disconnect]").is_enabled()
    assert "Sync now is unavailable" in microsoft.locator("[data-refused]").inner_text()
    shot(page, tmp_path, "calendar-03-flags-off")


def test_customer_timeline(page: Any, live_server: Any, alice: Tenant, tmp_path: Path) -> None:
    now = timezone.now()
    conn = make_calendar(alice)
    make_message(
        alice.workspace, "t1", subject="Re: renewal pricing for 2027", from_address=f"Ann Lee <{CUSTOMER}>",
        to_addresses=["alice@example.com"], sent_at=now - timedelta(hours=1),
    )  # fmt: skip
    make_event(
        conn, "m1", title="Renewal call with Acme", starts_at=now - timedelta(hours=3),
        attendees=["alice@example.com", CUSTOMER, LONG_ADDRESS], sync_status="PROCESSED",
    )  # fmt: skip
    make_message(
        alice.workspace, "t2", subject="Proposal " + "and annexes " * 20, from_address="alice@example.com",
        to_addresses=[CUSTOMER], cc_addresses=[LONG_ADDRESS], sent_at=now - timedelta(days=1),
    )  # fmt: skip
    make_event(conn, "m2", title="Private", starts_at=now - timedelta(days=2), is_private=True)
    make_event(conn, "m3", title="Intro meeting", starts_at=now - timedelta(days=3))
    url = live_server.url
    sign_in(page, url, alice)
    page.goto(f"{url}/customers/{CUSTOMER}/")
    items = page.locator("li[data-kind]")
    assert [items.nth(i).get_attribute("data-kind") for i in range(items.count())] == [
        "email",
        "meeting",
        "email",
        "meeting",
    ]
    timeline = page.locator("[data-timeline]")
    for i in range(items.count()):
        assert inside(items.nth(i), timeline)
    assert "Linked to this customer" in items.nth(1).inner_text()
    shot(page, tmp_path, "calendar-04-customer-timeline")
    items.nth(0).locator("a.tl-title").click()
    page.wait_for_url(f"{url}/messages/**")
    page.get_by_text(f"Meetings with {CUSTOMER}").click()
    page.wait_for_url(f"{url}/customers/{CUSTOMER}/")
