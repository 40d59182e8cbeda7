"""Calendar sync end to end, over real sockets: a member connects Google Calendar through the sandbox's
consent page, the operator's job pass syncs it, a meeting with a sandbox CRM contact is linked to
the customer, shown on their timeline and planned in dry run; after go live exactly one meeting
reaches the HubSpot sandbox, and a later change at the calendar syncs incrementally without a
second write. A private meeting and the event descriptions never leave Conduit."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from django.utils import timezone

from conduit.tenancy import system_scope
from integrations.models import ExternalCalendarConnection, ExternalCalendarEvent
from reconcile.delivery import deliver_write
from reconcile.models import CrmWriteLog
from reconcile.services import do_go_live
from tests.conftest import Tenant
from tests.ops_helpers import make_staff, send, staff_token
from tests.reconcile_helpers import CUSTOMER, connect_crm, sandbox_state
from tests.sandbox_helpers import answer_consent
from tests.test_calendar_oauth import switch_on

pytestmark = pytest.mark.django_db
RUN = "/api/v1/admin/calendar/jobs/run"
AGENDA = "AGENDA-never-leaves-conduit: the discount we can offer"
Status = CrmWriteLog.Status


def connect_google(tenant: Tenant, settings: Any, google: str) -> ExternalCalendarConnection:
    settings.GOOGLE_CLIENT_SECRET = "conduit-test-google-secret"
    settings.GOOGLE_REDIRECT_URI = "http://testserver/settings/calendar/callback/google/"
    client = tenant.client()
    start = client.post("/settings/calendar/google/connect/")
    assert start.status_code == 302 and start["Location"].startswith(google)
    back = urlparse(answer_consent(start["Location"]))
    done = client.get(f"{back.path}?{back.query}")
    assert done.status_code == 302 and done["Location"] == "/settings/calendar/"
    with system_scope():
        return ExternalCalendarConnection.objects.get(profile__user=tenant.user, status="connected")


def add_event(google: str, email: str, **fields: Any) -> dict[str, Any]:
    answer = requests.post(f"{google}/_sandbox/events", json={"email": email, **fields}, timeout=5)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def run_pass(token: str) -> dict[str, Any]:
    answer = send("post", RUN, token)
    assert answer.status_code == 200, answer.content
    return dict(answer.json()["summary"])


def events() -> dict[str, ExternalCalendarEvent]:
    with system_scope():
        return {e.title or "(busy)": e for e in ExternalCalendarEvent.objects.all()}


def meeting_writes() -> list[CrmWriteLog]:
    with system_scope():
        return list(CrmWriteLog.objects.filter(operation="create_meeting").order_by("id"))


def test_connect_sync_plan_go_live_one_meeting_then_an_incremental_change(
    alice: Tenant, crm_env: Any, calendar_env: dict[str, str], settings: Any
) -> None:
    switch_on(settings)
    google, hubspot = calendar_env["google"], crm_env["hubspot"]
    operator = staff_token(make_staff())
    crm = connect_crm(alice, "hubspot", live=False)
    cal = connect_google(alice, settings, google)
    me = cal.account_email
    soon = timezone.now().replace(microsecond=0) + timedelta(days=2)
    times = {"start": soon.isoformat(), "end": (soon + timedelta(minutes=30)).isoformat()}
    made = add_event(
        google, me, summary="Renewal call with Maya", description=AGENDA, attendees=[me, CUSTOMER], **times
    )
    add_event(google, me, summary="Salary talk", private=True, attendees=[me, CUSTOMER], **times)
    add_event(google, me, summary="Team standup", attendees=[me, "bo@example.com"], **times)

    first = run_pass(operator)
    assert first["connections_synced"] == 1 and first["connections_failed"] == 0, first
    assert first["events_created"] == 3 and first["errors"] == []
    stored = events()
    renewal = stored["Renewal call with Maya"]
    assert renewal.customer_emails == [CUSTOMER]
    assert {e.sync_status for e in stored.values()} == {"PROCESSED"}
    assert not any(AGENDA in json.dumps(e.attendees) + e.title for e in stored.values())
    cal.refresh_from_db()
    assert cal.sync_cursor and cal.last_synced_at and cal.error_count == 0 and not cal.sync_needed

    [row] = meeting_writes()  # the private meeting and the internal one are never planned
    assert row.status == Status.DRY_RUN and row.calendar_event_id == renewal.pk and row.target == CUSTOMER
    assert AGENDA not in json.dumps(row.payload) and "Salary" not in json.dumps(row.payload)
    timeline = alice.client().get(f"/customers/{CUSTOMER}/").content.decode()
    assert "Renewal call with Maya" in timeline and "Salary talk" not in timeline
    assert sandbox_state(hubspot)["meetings"] == []

    assert do_go_live(crm, send_planned=True, actor="test") == 1
    assert deliver_write(row.pk).code == "succeeded"
    [meeting] = sandbox_state(hubspot)["meetings"]
    sent = json.dumps(meeting)
    assert "Renewal call with Maya" in sent and AGENDA not in sent and "Salary" not in sent

    calls_before = requests.get(f"{google}/_sandbox/calls", timeout=5).json()["calls"]
    moved = {"start": (soon + timedelta(hours=1)).isoformat(), "end": (soon + timedelta(hours=2)).isoformat()}
    patched = requests.patch(f"{google}/_sandbox/events/{made['id']}", json=moved, timeout=5)
    assert patched.status_code == 200, patched.text
    with system_scope():
        ExternalCalendarConnection.objects.filter(pk=cal.pk).update(sync_needed=True)
    second = run_pass(operator)
    assert second["connections_synced"] == 1 and second["events_updated"] == 1, second
    assert second["events_created"] == 0
    calls_after = requests.get(f"{google}/_sandbox/calls", timeout=5).json()["calls"]
    assert calls_after["events.list"] - calls_before["events.list"] == 1  # one incremental page
    renewal.refresh_from_db()
    assert renewal.starts_at == soon + timedelta(hours=1)
    assert len(meeting_writes()) == 1 and len(sandbox_state(hubspot)["meetings"]) == 1
