"""The calendar admin (runbook 004's triage and recovery): lists and filters of connections and
events, the three audited actions changing exactly the runbook's columns, and no token, channel
secret or sync cursor on any page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from conduit.models import AuditEvent
from conduit.tenancy import system_scope
from integrations.models import ExternalCalendarConnection, ExternalCalendarEvent
from tests.conftest import Tenant
from tests.test_calendar_pages import ACCESS, CHANNEL, REFRESH, make_calendar, make_event

CONNECTIONS = "/admin/integrations/externalcalendarconnection/"
EVENTS = "/admin/integrations/externalcalendarevent/"
RUNBOOK_COLUMNS = {"sync_cursor", "last_synced_at", "error_count", "last_error", "backoff_until"}
WATCHED = [
    "status",
    "sync_enabled",
    "last_synced_at",
    "error_count",
    "last_error",
    "backoff_until",
    "token_expiry",
    "sync_cursor",
    "sync_needed",
    "access_token",
    "refresh_token",
    "granted_scopes",
    "account_email",
    "channel_id",
    "channel_secret",
    "channel_expires_at",
    "full_sync_count",
    "updated_at",
]


@pytest.fixture
def staff(db: None) -> Client:
    user = User.objects.create_superuser("ops@example.com", "ops@example.com", "pw-ops-123456")
    client = Client()
    client.force_login(user)
    return client


def snapshot(conn: ExternalCalendarConnection) -> dict[str, Any]:
    with system_scope():
        fresh = ExternalCalendarConnection.objects.get(pk=conn.pk)
    return {name: getattr(fresh, name) for name in WATCHED}


def changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {name for name in WATCHED if before[name] != after[name]}


def troubled(tenant: Tenant, provider: str = "google", **fields: Any) -> ExternalCalendarConnection:
    defaults: dict[str, Any] = {
        "last_synced_at": timezone.now() - timedelta(hours=3),
        "error_count": 6,
        "last_error": "rate_limited",
        "backoff_until": timezone.now() + timedelta(hours=1),
        "sync_needed": False,
        "channel_id": "chan-1",
        "full_sync_count": 2,
        "granted_scopes": ["calendar.readonly"],
    }
    return make_calendar(tenant, provider, **{**defaults, **fields})


def audits(event: str) -> list[AuditEvent]:
    with system_scope():
        return list(AuditEvent.objects.filter(event=event).order_by("id"))


def act(staff: Client, url: str, action: str, ids: list[int]) -> str:
    response = staff.post(url, {"action": action, "_selected_action": [str(i) for i in ids]}, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def listing(staff: Client, url: str, **params: str) -> str:
    response = staff.get(url, params)
    assert response.status_code == 200
    return response.content.decode()


def test_connection_list_columns_filters_and_no_secrets(staff: Client, alice: Tenant, bob: Tenant) -> None:
    conn = troubled(alice)
    make_calendar(bob, "microsoft")
    html = listing(staff, CONNECTIONS)
    for column in ("provider", "member", "workspace", "status", "sync enabled", "last synced at"):
        assert column.lower() in html.lower(), column
    assert "alice@example.com" in html and "bob@example.com" in html
    for secret in (ACCESS, REFRESH, CHANNEL, "CURSOR-sync-token"):
        assert secret not in html
    page = listing(staff, f"{CONNECTIONS}{conn.pk}/change/")
    for secret in (ACCESS, REFRESH, CHANNEL, "CURSOR-sync-token", "gAAAAA"):
        assert secret not in page, secret
    assert "set (the next sync is incremental)" in page and "alice@example.com" in page


@pytest.mark.parametrize(
    ("params", "shown"),
    [
        ({"provider__exact": "google"}, {"g_backoff", "g_ok"}),
        ({"status__exact": "error"}, {"m_error"}),
        ({"in_backoff": "yes"}, {"g_backoff"}),
        ({"in_backoff": "no"}, {"g_ok", "m_error", "m_paused"}),
        ({"errors": "0"}, {"g_ok", "m_paused"}),
        ({"errors": "1-4"}, {"m_error"}),
        ({"errors": "5+"}, {"g_backoff"}),
        ({"sync_needed__exact": "1"}, {"g_ok", "m_error", "m_paused"}),
    ],
)
def test_connection_filters(
    staff: Client, make_workspace: Any, params: dict[str, str], shown: set[str]
) -> None:
    names = ("g_backoff", "g_ok", "m_error", "m_paused")
    tenants = {name: make_workspace(name.replace("_", "-")) for name in names}
    troubled(tenants["g_backoff"], account_email="g_backoff@cal.example")
    make_calendar(tenants["g_ok"], account_email="g_ok@cal.example")
    make_calendar(
        tenants["m_error"], "microsoft", status="error", error_count=2, last_error="http_500",
        backoff_until=timezone.now() - timedelta(minutes=1), account_email="m_error@cal.example",
    )  # fmt: skip
    make_calendar(tenants["m_paused"], "microsoft", sync_enabled=False, account_email="m_paused@cal.example")
    html = listing(staff, CONNECTIONS, **params)
    assert {name for name in names if f"{name.replace('_', '-')}@example.com" in html} == shown


def test_clear_backoff_changes_only_backoff_until_and_audits(
    staff: Client, alice: Tenant, bob: Tenant
) -> None:
    target, untouched, no_backoff = troubled(alice), troubled(bob), make_calendar(alice, "microsoft")
    before, other = snapshot(target), snapshot(untouched)
    calm = snapshot(no_backoff)
    html = act(staff, CONNECTIONS, "clear_backoff", [target.pk, no_backoff.pk])
    assert "Backoff cleared on 1 connection(s)" in html
    after = snapshot(target)
    assert changed(before, after) == {"backoff_until"} and after["backoff_until"] is None
    assert changed(other, snapshot(untouched)) == set() and changed(calm, snapshot(no_backoff)) == set()
    (row,) = audits("calendar_backoff_cleared")
    assert row.workspace_id == alice.workspace.pk and row.actor.startswith("user:")
    assert row.payload_json == {"connection_ids": [target.pk], "count": 1}


def test_reset_sync_state_changes_exactly_the_runbook_columns_and_sync_needed(
    staff: Client, alice: Tenant, bob: Tenant
) -> None:
    a, b, untouched = troubled(alice), troubled(bob, "microsoft"), troubled(alice, "microsoft")
    before = {c.pk: snapshot(c) for c in (a, b, untouched)}
    html = act(staff, CONNECTIONS, "reset_sync_state", [a.pk, b.pk])
    assert "Sync state reset on 2 connection(s)" in html
    for conn in (a, b):
        after = snapshot(conn)
        assert changed(before[conn.pk], after) == RUNBOOK_COLUMNS | {"sync_needed"}
        assert after["sync_cursor"] is None and after["last_synced_at"] is None
        assert after["error_count"] == 0 and after["last_error"] is None and after["backoff_until"] is None
        assert after["sync_needed"] is True
        assert after["access_token"] == ACCESS and after["refresh_token"] == REFRESH  # the grant stays
    assert changed(before[untouched.pk], snapshot(untouched)) == set()
    rows = audits("calendar_sync_state_reset")
    assert sorted((r.workspace_id, tuple(r.payload_json["connection_ids"])) for r in rows) == sorted(
        [(alice.workspace.pk, (a.pk,)), (bob.workspace.pk, (b.pk,))]
    )


def test_requeue_failed_events_of_connections(staff: Client, alice: Tenant, bob: Tenant) -> None:
    conn, other = make_calendar(alice), make_calendar(bob)
    failed = make_event(conn, "f1", sync_status="FAILED", last_error="ledger_unavailable")
    failed2 = make_event(conn, "f2", sync_status="FAILED", last_error="boom")
    done = make_event(conn, "p1", sync_status="PROCESSED")
    elsewhere = make_event(other, "f3", sync_status="FAILED", last_error="boom")
    before = snapshot(conn)
    html = act(staff, CONNECTIONS, "requeue_failed_events", [conn.pk])
    assert "Re-queued 2 failed event(s)" in html
    with system_scope():
        statuses = {
            e.pk: (e.sync_status, e.last_error)
            for e in ExternalCalendarEvent.objects.filter(
                pk__in=[failed.pk, failed2.pk, done.pk, elsewhere.pk]
            )
        }
    assert statuses == {
        failed.pk: ("CREATED", None),
        failed2.pk: ("CREATED", None),
        done.pk: ("PROCESSED", None),
        elsewhere.pk: ("FAILED", "boom"),
    }
    assert changed(before, snapshot(conn)) == set()
    (row,) = audits("calendar_failed_events_requeued")
    assert row.payload_json == {"connection_ids": [conn.pk], "count": 1, "events_requeued": 2}


def test_event_list_filters_private_titles_and_requeue(staff: Client, alice: Tenant) -> None:
    google, microsoft = make_calendar(alice), make_calendar(alice, "microsoft")
    make_event(google, "g1", title="Quarterly review with Acme")
    make_event(google, "g2", title="Therapy session", is_private=True)
    failed = make_event(microsoft, "m1", title="Graph meeting", sync_status="FAILED", last_error="boom")
    make_event(microsoft, "m2", title="Gone meeting", cancelled=True)
    html = listing(staff, EVENTS)
    assert "Quarterly review with Acme" in html and "(private)" in html and "Therapy session" not in html
    assert "Microsoft 365" in html and "Google Calendar" in html
    assert "Graph meeting" not in listing(staff, EVENTS, **{"connection__provider": "google"})
    assert "Graph meeting" in listing(staff, EVENTS, **{"connection__provider": "microsoft"})
    only_failed = listing(staff, EVENTS, sync_status__exact="FAILED")
    assert "Graph meeting" in only_failed and "Quarterly review" not in only_failed
    cancelled = listing(staff, EVENTS, cancelled__exact="1")
    assert "Gone meeting" in cancelled and "Graph meeting" not in cancelled
    with system_scope():
        private = ExternalCalendarEvent.objects.get(external_id="g2")
    page = listing(staff, f"{EVENTS}{private.pk}/change/")
    assert "Therapy session" not in page and "(private)" in page and 'name="_save"' not in page
    with system_scope():
        ids = list(ExternalCalendarEvent.objects.values_list("pk", flat=True))
    text = act(staff, EVENTS, "requeue_failed_events", ids)
    assert "Re-queued 1 failed event(s); 3 had not failed and were left alone." in text
    with system_scope():
        failed.refresh_from_db()
    assert failed.sync_status == "CREATED" and failed.last_error is None
    (row,) = audits("calendar_failed_events_requeued")
    assert row.payload_json == {"event_ids": [failed.pk], "count": 1}


def test_actions_need_change_permission(alice: Tenant) -> None:
    viewer = User.objects.create_user("viewer@example.com", "viewer@example.com", "pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_externalcalendarconnection"))
    client = Client()
    client.force_login(viewer)
    conn = troubled(alice)
    html = listing(client, CONNECTIONS)
    assert "alice@example.com" in html and "clear_backoff" not in html
    before = snapshot(conn)
    client.post(CONNECTIONS, {"action": "clear_backoff", "_selected_action": [str(conn.pk)]})
    assert changed(before, snapshot(conn)) == set() and audits("calendar_backoff_cleared") == []


def test_admin_requires_staff(alice: Tenant) -> None:
    response = alice.client().get(CONNECTIONS)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
