"""Conduit's calendar sync against both sandboxes over real sockets: a full listing of the window,
an incremental read (Google syncToken, Graph deltaLink) that brings only the change, an expired
cursor (410) answered by a full resync that stores nothing twice, and a 429 that backs the
connection off until a later success clears it."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.utils import timezone

from conduit.tenancy import system_scope
from integrations.calendars.sync import sync_connection
from integrations.models import ExternalCalendarConnection, ExternalCalendarEvent
from tests.conftest import Tenant
from tests.test_calendar_oauth import make_connection, switch_on

pytestmark = pytest.mark.django_db
MEMBER = "alice@example.com"
SCOPES = {
    "google": ["openid", "email", "https://www.googleapis.com/auth/calendar.readonly"],
    "microsoft": ["openid", "email", "offline_access", "Calendars.Read"],
}


def control(base: str, path: str, body: Any) -> Any:
    answer = requests.post(f"{base}{path}", json=body, timeout=5)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def connected(tenant: Tenant, provider: str, base: str) -> ExternalCalendarConnection:
    minted = control(base, "/_sandbox/tokens", {"email": MEMBER, "scopes": SCOPES[provider]})
    return make_connection(
        tenant,
        provider,
        access_token=minted["access_token"],
        refresh_token=minted.get("refresh_token", ""),
        token_expiry=timezone.now() + timedelta(seconds=int(minted["expires_in"])),
        account_email=MEMBER,
        granted_scopes=SCOPES[provider],
    )


def add_event(base: str, summary: str, days: int) -> dict[str, Any]:
    start = timezone.now().replace(microsecond=0) + timedelta(days=days)
    times = {"start": start.isoformat(), "end": (start + timedelta(minutes=30)).isoformat()}
    return dict(control(base, "/_sandbox/events", {"email": MEMBER, "summary": summary, **times}))


def stored(conn: ExternalCalendarConnection) -> list[str]:
    with system_scope():
        return sorted(ExternalCalendarEvent.objects.filter(connection=conn).values_list("title", flat=True))


def reload(conn: ExternalCalendarConnection) -> ExternalCalendarConnection:
    with system_scope():
        return ExternalCalendarConnection.objects.get(pk=conn.pk)


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_full_then_incremental_then_expired_cursor_then_rate_limit(
    alice: Tenant, calendar_env: dict[str, str], settings: Any, provider: str
) -> None:
    switch_on(settings)
    base = calendar_env[provider]
    for n in range(3):
        add_event(base, f"Meeting {n}", days=n + 1)
    add_event(base, "Far future", days=400)  # outside the window of a full listing
    conn = connected(alice, provider, base)

    full = sync_connection(conn.pk)
    assert full.ok and full.full and full.created == 3, full
    assert stored(conn) == ["Meeting 0", "Meeting 1", "Meeting 2"]
    cursor = reload(conn).sync_cursor
    assert cursor

    add_event(base, "Added later", days=5)
    incremental = sync_connection(conn.pk)
    assert incremental.ok and not incremental.full and (incremental.created, incremental.updated) == (1, 0)
    assert "Added later" in stored(conn) and reload(conn).sync_cursor not in ("", None, cursor)

    control(base, "/_sandbox/cursors/invalidate", {"email": MEMBER})  # the next read answers 410
    resync = sync_connection(conn.pk)
    assert resync.ok and resync.full and resync.created == 0, resync
    assert stored(conn) == ["Added later", "Meeting 0", "Meeting 1", "Meeting 2"]  # nothing doubled
    assert reload(conn).full_sync_count == 2

    settings.CALENDAR_BACKOFF_BASE_SECONDS = 300
    control(base, "/_sandbox/faults", {"kind": "rate_limit", "retry_after": 1})
    limited = sync_connection(conn.pk)
    assert limited.error_code == "rate_limited"
    row = reload(conn)
    assert row.error_count == 1 and row.sync_needed and row.last_error.startswith("rate_limited")
    assert row.backoff_until is not None and row.backoff_until >= timezone.now() + timedelta(seconds=290)

    time.sleep(1.2)  # the shared limiter holds the account's bucket for the Retry-After
    assert sync_connection(conn.pk).ok  # the fault fired once: the next read succeeds
    row = reload(conn)
    assert (row.error_count, row.last_error, row.backoff_until, row.sync_needed) == (0, None, None, False)
