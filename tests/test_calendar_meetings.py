"""Processing stored calendar events: customers found through the ledger port, meeting writes
planned once per (CRM connection, event, customer), in dry run by default; private and cancelled
events never planned; failures recorded on the event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import OperationalError

from conduit.models import Profile
from conduit.tenancy import system_scope
from integrations.calendars import processing
from integrations.calendars.processing import ProcessResult, participants, process_connection_events
from integrations.models import CrmConnection, ExternalCalendarConnection, ExternalCalendarEvent
from reconcile import meetings
from reconcile.curation import PlanResult
from reconcile.models import CrmWriteLog, WritePolicy
from tests.conftest import Tenant

pytestmark = pytest.mark.django_db
CUSTOMER = "maya.lopez@acme-logistics.example"
OTHER = "jonas@brightfield-energy.example"
START = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)
Status = ExternalCalendarEvent.SyncStatus


def crm(tenant: Tenant, name: str = "hubspot", *, dry_run: bool = True) -> CrmConnection:
    with system_scope():
        return CrmConnection.objects.create(
            workspace=tenant.workspace,
            crm=name,
            status=CrmConnection.Status.CONNECTED,
            external_account_key=f"acct-{name}",
            dry_run=dry_run,
        )


def calendar(tenant: Tenant) -> ExternalCalendarConnection:
    with system_scope():
        profile = Profile.objects.get(user=tenant.user)
        return ExternalCalendarConnection.objects.create(
            workspace=tenant.workspace, profile=profile, provider="google", account_email=profile.email
        )


def event(conn: ExternalCalendarConnection, external_id: str, **fields: Any) -> ExternalCalendarEvent:
    values: dict[str, Any] = {
        "title": "Renewal call",
        "starts_at": START,
        "ends_at": START + timedelta(hours=1),
        "organizer": "alice@example.com",
        "attendees": ["alice@example.com", CUSTOMER],
    }
    with system_scope():
        return ExternalCalendarEvent.objects.create(
            workspace_id=conn.workspace_id,
            profile_id=conn.profile_id,
            connection=conn,
            external_id=external_id,
            **{**values, **fields},
        )


def reload(ev: ExternalCalendarEvent) -> ExternalCalendarEvent:
    with system_scope():
        return ExternalCalendarEvent.objects.get(pk=ev.pk)


def writes() -> list[CrmWriteLog]:
    with system_scope():
        return list(CrmWriteLog.objects.order_by("id"))


def test_an_external_attendee_becomes_one_dry_run_meeting_write_per_crm(alice: Tenant, settings: Any) -> None:
    hub, sf = crm(alice, "hubspot"), crm(alice, "salesforce")
    cal = calendar(alice)
    ev = event(cal, "e1")
    result = process_connection_events(cal.pk)
    assert result == ProcessResult(processed=1, planned=1, failed=0)
    ev = reload(ev)
    assert ev.sync_status == Status.PROCESSED and ev.customer_emails == [CUSTOMER] and not ev.last_error
    rows = writes()
    assert {r.connection_id for r in rows} == {hub.pk, sf.pk}
    for row in rows:
        assert row.operation == "create_meeting" and row.target == CUSTOMER
        assert row.status == CrmWriteLog.Status.DRY_RUN and row.next_retry_at is None
        assert row.calendar_event_id == ev.pk and row.message_id is None
        payload = row.payload
        assert payload["subject"] == "Meeting: Renewal call"
        assert payload["occurred_at"] == START.isoformat()
        assert payload["ends_at"] == (START + timedelta(hours=1)).isoformat()
        assert payload["attendees"] == ["alice@example.com", CUSTOMER]
        assert payload["contact_email"] == CUSTOMER
        assert payload["text"].splitlines() == [
            "Meeting: Renewal call",
            "When: 2026-05-04 14:00-15:00 UTC",
            "Organizer: alice@example.com",
            f"Attendees: alice@example.com, {CUSTOMER}",
            f"In Conduit: {settings.CONDUIT_PUBLIC_URL}/customers/{CUSTOMER}/",
        ]
        assert payload["link"] == f"{settings.CONDUIT_PUBLIC_URL}/customers/{CUSTOMER}/"


def test_a_live_connection_plans_due_writes_and_dispatches_them_after_commit(
    alice: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    crm(alice, "hubspot", dry_run=False)
    cal = calendar(alice)
    event(cal, "e1", attendees=[CUSTOMER, OTHER])
    with (
        mock.patch.object(meetings, "dispatch_planned") as dispatch,
        django_capture_on_commit_callbacks(execute=True),
    ):
        process_connection_events(cal.pk)
    rows = writes()
    assert [r.target for r in rows] == [CUSTOMER, OTHER]
    assert all(r.status == CrmWriteLog.Status.PLANNED and r.next_retry_at for r in rows)
    [result] = dispatch.call_args.args
    assert isinstance(result, PlanResult) and sorted(result.planned_ids) == sorted(r.pk for r in rows)


def test_forced_dry_run_keeps_live_connections_in_dry_run(alice: Tenant, settings: Any) -> None:
    settings.CONDUIT_FORCE_DRY_RUN = True
    crm(alice, "hubspot", dry_run=False)
    cal = calendar(alice)
    event(cal, "e1")
    process_connection_events(cal.pk)
    assert [r.status for r in writes()] == [CrmWriteLog.Status.DRY_RUN]


def test_a_dispatch_failure_after_commit_is_logged_not_raised(
    alice: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    crm(alice, "hubspot", dry_run=False)
    cal = calendar(alice)
    event(cal, "e1")
    with (
        mock.patch.object(meetings, "dispatch_planned", side_effect=ConnectionError("broker down")),
        mock.patch.object(meetings.log, "error") as logged,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert process_connection_events(cal.pk).planned == 1
    assert logged.call_args.kwargs["extra"]["error_code"] == "dispatch_failed"
    assert writes()[0].status == CrmWriteLog.Status.PLANNED  # the sweep sends it


def test_an_internal_only_meeting_is_processed_without_a_write(alice: Tenant, make_workspace: Any) -> None:
    crm(alice)
    cal = calendar(alice)
    with system_scope():
        WritePolicy.objects.create(
            workspace=alice.workspace, internal_domains=["example.com", "alice.example"]
        )
    ev = event(cal, "e1", organizer="alice@example.com", attendees=["sam@alice.example", "ALICE@example.com"])
    assert process_connection_events(cal.pk) == ProcessResult(processed=1, planned=0, failed=0)
    ev = reload(ev)
    assert ev.sync_status == Status.PROCESSED and ev.customer_emails == []
    assert writes() == []


def test_private_and_cancelled_events_are_never_planned(alice: Tenant) -> None:
    crm(alice)
    cal = calendar(alice)
    private = event(cal, "p", is_private=True, title="")
    cancelled = event(cal, "c", cancelled=True)
    assert process_connection_events(cal.pk) == ProcessResult(processed=2, planned=0, failed=0)
    for ev in (reload(private), reload(cancelled)):
        assert ev.sync_status == Status.PROCESSED and ev.customer_emails == []
    assert writes() == []
    # even when the ledger is asked about them directly
    assert meetings.plan_meetings(alice.workspace.pk, [private.pk, cancelled.pk]) == {
        private.pk: None,
        cancelled.pk: None,
    }
    assert writes() == []


def test_processing_again_never_doubles_a_write(alice: Tenant) -> None:
    crm(alice)
    cal = calendar(alice)
    ev = event(cal, "e1")
    process_connection_events(cal.pk)
    with system_scope():  # the sync stored a change: the event waits again
        ExternalCalendarEvent.objects.filter(pk=ev.pk).update(sync_status=Status.CREATED, title="Moved")
    assert process_connection_events(cal.pk) == ProcessResult(processed=1, planned=1, failed=0)
    [row] = writes()
    assert row.payload["subject"] == "Meeting: Renewal call"  # v1: meeting updates are not propagated
    assert process_connection_events(cal.pk) == ProcessResult()  # nothing waits


def test_only_events_whose_customers_changed_are_rewritten(alice: Tenant) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    crm(alice)
    cal = calendar(alice)
    linked = event(cal, "linked")
    gone = event(cal, "gone", attendees=["alice@example.com"], customer_emails=[OTHER])
    for n in range(5):  # internal: no customers before or after
        event(cal, f"internal-{n}", attendees=["alice@example.com"])
    with CaptureQueriesContext(connection) as seen:
        assert process_connection_events(cal.pk).processed == 7
    updates = [q["sql"] for q in seen.captured_queries if q["sql"].startswith("UPDATE")]
    [rewrite] = [sql for sql in updates if 'SET "customer_emails"' in sql]
    assert rewrite.count("WHEN") == 2  # `linked` gains its customer, `gone` loses its own
    assert reload(linked).customer_emails == [CUSTOMER] and reload(gone).customer_emails == []


def test_a_ledger_error_fails_the_event_with_a_short_error(alice: Tenant) -> None:
    crm(alice)
    cal = calendar(alice)
    ok, no_start = event(cal, "ok"), event(cal, "bad", starts_at=None, ends_at=None)
    result = process_connection_events(cal.pk)
    assert result == ProcessResult(processed=1, planned=1, failed=1)
    assert reload(ok).sync_status == Status.PROCESSED
    bad = reload(no_start)
    assert bad.sync_status == Status.FAILED and bad.last_error == "the event has no start time"
    assert [r.calendar_event_id for r in writes()] == [ok.pk]


def test_a_ledger_that_fails_as_a_whole_fails_every_event_and_is_logged(
    alice: Tenant, capture_json_logs: Any
) -> None:
    crm(alice)
    cal = calendar(alice)
    ev, internal = event(cal, "e1"), event(cal, "e2", attendees=["alice@example.com"])
    with mock.patch.object(meetings, "plan_meeting_rows", side_effect=OperationalError("db secret-ish text")):
        result = process_connection_events(cal.pk)
    assert result == ProcessResult(processed=1, planned=0, failed=1)
    failed = reload(ev)
    assert failed.sync_status == Status.FAILED
    assert failed.last_error == "planning the meeting writes failed (OperationalError)"
    assert failed.customer_emails == [CUSTOMER]
    assert reload(internal).sync_status == Status.PROCESSED
    lines = [line for line in capture_json_logs() if line.get("category") == "calendar_sync"]
    assert any(line.get("error_code") == "meeting_planning_failed" for line in lines)
    assert "secret-ish" not in str(lines)
    # cleared (runbook: back to CREATED) and processed again, it is planned once
    with system_scope():
        ExternalCalendarEvent.objects.filter(pk=ev.pk).update(sync_status=Status.CREATED, last_error=None)
    assert process_connection_events(cal.pk) == ProcessResult(processed=1, planned=1, failed=0)
    assert reload(ev).last_error is None and len(writes()) == 1


def test_batches_are_paged_and_rooms_are_not_customers(alice: Tenant) -> None:
    crm(alice)
    cal = calendar(alice)
    room = "c_123@resource.calendar.google.com"
    for i in range(5):
        event(cal, f"e{i}", attendees=[CUSTOMER, room])
    assert process_connection_events(cal.pk, batch_size=2) == ProcessResult(processed=5, planned=5)
    assert {r.target for r in writes()} == {CUSTOMER} and len(writes()) == 5


def test_no_crm_connection_plans_nothing_but_links_customers(alice: Tenant) -> None:
    cal = calendar(alice)
    ev = event(cal, "e1")
    assert process_connection_events(cal.pk) == ProcessResult(processed=1, planned=1)
    assert reload(ev).customer_emails == [CUSTOMER] and writes() == []


def test_an_unknown_connection_processes_nothing() -> None:
    assert process_connection_events(987654) == ProcessResult()


def test_participants_and_external_addresses(alice: Tenant) -> None:
    ev = ExternalCalendarEvent(
        organizer=" Alice@Example.com ", attendees=["x", "", CUSTOMER, "alice@example.com"]
    )
    assert participants(ev) == ["alice@example.com", CUSTOMER]
    assert meetings.external_addresses(alice.workspace.pk, []) == []
    found = meetings.external_addresses(
        alice.workspace.pk, ["alice@example.com", f"Maya <{CUSTOMER}>", CUSTOMER]
    )
    assert found == [CUSTOMER]
    assert processing.customers_of(alice.workspace.pk, []) == {}


def test_time_ranges_in_words() -> None:
    def words(**fields: Any) -> str:
        return meetings.time_range(ExternalCalendarEvent(**fields))

    assert words(starts_at=START, ends_at=None) == "2026-05-04 14:00 UTC"
    assert words(starts_at=START, ends_at=START + timedelta(days=1, hours=2)) == (
        "2026-05-04 14:00 - 2026-05-05 16:00 UTC"
    )
    assert words(starts_at=START, ends_at=START + timedelta(days=1), all_day=True) == "2026-05-04 (all day)"
    assert words(starts_at=START, ends_at=START + timedelta(days=3), all_day=True) == (
        "2026-05-04 to 2026-05-07 (all day)"
    )
    with pytest.raises(meetings.MeetingNotPlannable):
        words(starts_at=None)


def test_many_attendees_are_cut_and_a_blank_title_is_named(alice: Tenant) -> None:
    crm(alice)
    cal = calendar(alice)
    people = [f"p{i}@guests.example" for i in range(meetings.ATTENDEES_MAX + 3)]
    event(cal, "e1", title="  ", attendees=people, organizer="")
    process_connection_events(cal.pk)
    row = writes()[0]
    assert row.payload["subject"] == "Meeting: (no title)"
    assert "and 3 more" in row.payload["text"] and "Organizer: (unknown)" in row.payload["text"]
    assert len(row.payload["attendees"]) == meetings.ATTENDEES_MAX
