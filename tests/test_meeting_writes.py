"""Meeting writes to the CRMs: a HubSpot meeting, a Salesforce Event, a note elsewhere; their
request bodies and previews in words; end to end against the sandbox CRMs (dry run, go live,
delivered once, found by its marker after an unknown outcome), never an event description."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.conf import settings

from conduit.models import Profile
from conduit.tenancy import system_scope
from integrations.calendars.processing import process_connection_events
from integrations.ledger import ledger
from integrations.models import ExternalCalendarConnection, ExternalCalendarEvent
from integrations.pages.previews import preview_cards, sent_for, where_it_goes
from integrations.providers import get_provider
from integrations.providers.base import Account, Activity
from reconcile.delivery import deliver_write
from reconcile.models import CrmWriteLog
from reconcile.services import do_go_live
from tests.conftest import Tenant
from tests.provider_helpers import MARKER, activity, hubspot_account, salesforce_account
from tests.reconcile_helpers import CUSTOMER, connect_crm, created_records, sandbox_state
from tests.test_provider_base import Recorder

pytestmark = pytest.mark.django_db
START = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)
END = START + timedelta(minutes=45)
CRMS = ["hubspot", "salesforce", "zoho", "odoo"]
Status = CrmWriteLog.Status
PAYLOAD_KEYS = {
    "subject",
    "text",
    "occurred_at",
    "ends_at",
    "all_day",
    "organizer",
    "attendees",
    "link",
    "contact_email",
}


def meeting(contact_id: str = "101", deal_id: str | None = "201", **kw: Any) -> Activity:
    return activity(
        contact_id,
        deal_id,
        subject=kw.pop("subject", "Meeting: Renewal call"),
        text=kw.pop("text", "Meeting: Renewal call\nWhen: 2026-05-04 14:00-14:45 UTC"),
        occurred_at=kw.pop("occurred_at", START),
        ends_at=kw.pop("ends_at", END),
        attendees=kw.pop("attendees", ("alice@example.com", CUSTOMER)),
        **kw,
    )


# --- the providers' request bodies ---


def test_hubspot_meeting_payload_is_a_scheduled_meeting_with_the_marker() -> None:
    body = get_provider("hubspot").write_payload("create_meeting", meeting())
    props = body["properties"]
    assert props["hs_timestamp"] == str(int(START.timestamp() * 1000))
    assert props["hs_meeting_title"] == "Meeting: Renewal call"
    assert props["hs_meeting_start_time"] == "2026-05-04T14:00:00.000Z"
    assert props["hs_meeting_end_time"] == "2026-05-04T14:45:00.000Z"
    assert props["hs_meeting_outcome"] == "SCHEDULED"
    assert props["hs_meeting_body"].endswith(f" [{MARKER}]")
    types = [(a["to"]["id"], a["types"][0]["associationTypeId"]) for a in body["associations"]]
    assert types == [("101", 200), ("201", 212)]
    no_end = get_provider("hubspot").write_payload("create_meeting", meeting(deal_id=None, ends_at=None))
    assert no_end["properties"]["hs_meeting_end_time"] == "2026-05-04T14:00:00.000Z"
    assert len(no_end["associations"]) == 1


@responses.activate
def test_hubspot_creates_and_finds_a_meeting_by_its_marker() -> None:
    api = settings.HUBSPOT_API_BASE_URL
    responses.post(f"{api}/crm/v3/objects/meetings", json={"id": "555"}, status=201)
    responses.post(f"{api}/crm/v3/objects/meetings/search", json={"results": [{"id": "555"}]})
    hubspot = get_provider("hubspot")
    assert hubspot.write(hubspot_account(), "create_meeting", meeting()) == "555"
    assert hubspot.find_write(hubspot_account(), "create_meeting", meeting()) == "555"
    search = json.loads(responses.calls[1].request.body or b"{}")
    [flt] = search["filterGroups"][0]["filters"]
    assert flt == {"propertyName": "hs_meeting_body", "operator": "CONTAINS_TOKEN", "value": MARKER}


def test_salesforce_event_payload_marks_the_subject_and_bounds_the_duration() -> None:
    salesforce = get_provider("salesforce")
    body = salesforce.write_payload("create_meeting", meeting("003X", "006X"))
    assert body == {
        "Subject": f"Meeting: Renewal call [{MARKER}]",
        "Description": f"Meeting: Renewal call\nWhen: 2026-05-04 14:00-14:45 UTC [{MARKER}]",
        "WhoId": "003X",
        "WhatId": "006X",
        "StartDateTime": "2026-05-04T14:00:00Z",
        "EndDateTime": "2026-05-04T14:45:00Z",
    }
    long = salesforce.write_payload(
        "create_meeting", meeting("003X", None, ends_at=START + timedelta(days=30))
    )
    assert long["EndDateTime"] == "2026-05-18T14:00:00Z" and "WhatId" not in long
    backwards = salesforce.write_payload(
        "create_meeting", meeting("003X", ends_at=START - timedelta(hours=1))
    )
    assert backwards["EndDateTime"] == backwards["StartDateTime"]


@responses.activate
def test_salesforce_creates_an_event_and_finds_it_with_soql_on_the_subject() -> None:
    base = "https://acme.my.salesforce.com/services/data/v66.0"
    responses.post(f"{base}/sobjects/Event", json={"id": "00U1", "success": True, "errors": []}, status=201)
    responses.get(f"{base}/query", json={"records": [{"Id": "00U1"}]})
    salesforce = get_provider("salesforce")
    assert salesforce.write(salesforce_account(), "create_meeting", meeting("003X")) == "00U1"
    assert salesforce.find_write(salesforce_account(), "create_meeting", meeting("003X")) == "00U1"
    soql = parse_qs(urlsplit(str(responses.calls[1].request.url)).query)["q"][0]
    assert soql == f"SELECT Id FROM Event WHERE WhoId = '003X' AND Subject LIKE '%{MARKER}%' LIMIT 1"


@pytest.mark.parametrize("crm", ["zoho", "odoo"])
def test_other_crms_write_a_meeting_as_a_note(crm: str) -> None:
    provider = get_provider(crm)
    assert provider.write_payload("create_meeting", meeting("7")) == provider.write_payload(
        "create_note", meeting("7")
    )


def test_the_base_provider_writes_a_meeting_as_a_note() -> None:
    assert Recorder().write(Account("x", "t", "k"), "create_meeting", meeting()) == f"note {MARKER}"


# --- previews in words ---


def test_previews_name_the_record_in_each_crms_words() -> None:
    assert sent_for("hubspot", "create_meeting").what == "A meeting"
    assert sent_for("salesforce", "create_meeting").what == "An Event"
    assert sent_for("zoho", "create_meeting").what == "A note about the meeting"
    assert sent_for("odoo", "create_meeting").what == "A log note about the meeting"
    assert sent_for("somecrm", "create_meeting").what == "A meeting"
    assert sent_for("hubspot", "create_task").what == "A task"
    assert sent_for("salesforce", "create_note").what == "A completed Task"


# --- end to end against the sandbox CRMs ---


def calendar_event(tenant: Tenant, **fields: Any) -> tuple[ExternalCalendarConnection, ExternalCalendarEvent]:
    with system_scope():
        profile = Profile.objects.get(user=tenant.user)
        cal = ExternalCalendarConnection.objects.create(
            workspace=tenant.workspace, profile=profile, provider="microsoft", account_email=profile.email
        )
        ev = ExternalCalendarEvent.objects.create(
            workspace=tenant.workspace,
            profile=profile,
            connection=cal,
            external_id="evt-1",
            title=fields.pop("title", "Renewal call"),
            starts_at=START,
            ends_at=END,
            organizer=profile.email,
            attendees=[profile.email, CUSTOMER],
            **fields,
        )
    return cal, ev


def meetings_in(crm: str, base_url: str) -> list[dict[str, Any]]:
    state = sandbox_state(base_url)
    if crm == "hubspot":
        return list(state["meetings"])
    if crm == "salesforce":
        return list(state["events"])
    return created_records(crm, base_url)  # a note describing the meeting


def rows() -> list[CrmWriteLog]:
    with system_scope():
        return list(CrmWriteLog.objects.order_by("id"))


@pytest.mark.parametrize("crm", CRMS)
def test_a_meeting_is_planned_in_dry_run_then_delivered_once_after_go_live(
    crm: str, crm_env: Any, alice: Tenant
) -> None:
    conn = connect_crm(alice, crm, live=False)
    cal, ev = calendar_event(alice)
    assert process_connection_events(cal.pk).planned == 1
    [row] = rows()
    assert row.status == Status.DRY_RUN and row.operation == "create_meeting" and row.target == CUSTOMER
    assert set(row.payload) == PAYLOAD_KEYS
    assert meetings_in(crm, crm_env[crm]) == []

    # the card's preview, in the CRM's words
    [preview] = ledger().previews(conn)
    [card] = preview_cards(crm, [preview])
    assert card["what"] == sent_for(crm, "create_meeting").what
    assert CUSTOMER in str(where_it_goes(crm, preview))
    assert MARKER not in card["payload_json"] and row.marker in card["payload_json"]

    assert do_go_live(conn, send_planned=True, actor="test") == 1
    assert deliver_write(row.pk).code == "succeeded"
    row.refresh_from_db()
    assert row.status == Status.SUCCEEDED and row.external_id
    [record] = meetings_in(crm, crm_env[crm])
    text = json.dumps(record)
    assert row.marker in text and "Renewal call" in text
    assert deliver_write(row.pk).code == "not_claimed"  # delivered twice: nothing more
    # processed again (the sync changed the event): no new write
    with system_scope():
        ExternalCalendarEvent.objects.filter(pk=ev.pk).update(sync_status="CREATED")
    process_connection_events(cal.pk)
    assert len(rows()) == 1 and len(meetings_in(crm, crm_env[crm])) == 1


@pytest.mark.parametrize("crm", ["hubspot", "salesforce"])
def test_an_unknown_outcome_finds_the_meeting_by_its_marker(crm: str, crm_env: Any, alice: Tenant) -> None:
    connect_crm(alice, crm)
    cal, _ = calendar_event(alice)
    process_connection_events(cal.pk)
    [row] = rows()
    assert row.status == Status.PLANNED
    assert deliver_write(row.pk).code == "succeeded"
    row.refresh_from_db()
    first_id = row.external_id
    with system_scope():  # as if the reply had been lost: the row waits with outcome_unknown
        CrmWriteLog.objects.filter(pk=row.pk).update(
            status=Status.FAILED, outcome_unknown=True, external_id="", next_retry_at=None
        )
    assert deliver_write(row.pk).code == "found_existing"
    row.refresh_from_db()
    assert row.status == Status.SUCCEEDED and row.external_id == first_id
    assert len(meetings_in(crm, crm_env[crm])) == 1


def test_neither_the_payload_nor_the_crm_record_carries_a_description(crm_env: Any, alice: Tenant) -> None:
    assert "description" not in {f.name for f in ExternalCalendarEvent._meta.get_fields()}
    connect_crm(alice, "hubspot")
    cal, _ = calendar_event(alice, title="Pricing")
    process_connection_events(cal.pk)
    [row] = rows()
    assert set(row.payload) == PAYLOAD_KEYS
    assert deliver_write(row.pk).code == "succeeded"
    [record] = meetings_in("hubspot", crm_env["hubspot"])
    props = record["properties"]
    body_lines = props["hs_meeting_body"].splitlines()
    assert [line.split(":", 1)[0] for line in body_lines] == [
        "Meeting",
        "When",
        "Organizer",
        "Attendees",
        "In Conduit",
    ]
    assert {a["to_id"] for a in record.get("associations", [])} >= {"101"}


def test_the_hubspot_sandbox_checks_meetings() -> None:
    from integrations.sandbox import hubspot_crm as crm

    state = crm.HubSpotState()
    good = {"hs_timestamp": "1", "hs_meeting_start_time": "2026-05-04T14:00:00.000Z"}
    contact = [
        {"to": {"id": "101"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 200}]}
    ]
    assert crm.create(state, "meetings", {"properties": good, "associations": contact}).status == 201
    for props, associations, words in [
        ({**good, "hs_meeting_outcome": "MAYBE"}, [], "not a valid option"),
        ({**good, "hs_meeting_end_time": "soon"}, [], "hs_meeting_end_time 'soon' is not a date"),
        ({**good, "hs_meeting_body": "x" * 65537}, [], "hs_meeting_body is longer"),
        (
            good,
            [{**contact[0], "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]}],
            "200",
        ),
    ]:
        reply = crm.create(state, "meetings", {"properties": props, "associations": associations})
        assert reply.status == 400 and words in json.dumps(json.loads(reply.body)), words
    assert len(state.meetings) == 1 and state.as_json()["meetings"][0]["id"] == next(iter(state.meetings))


def test_the_salesforce_sandbox_checks_events() -> None:
    from integrations.sandbox import salesforce_rest as sf

    state = sf.SalesforceState()
    contact = sf.CONTACTS[0][0]
    good = {
        "Subject": "Meeting [cdw1]",
        "WhoId": contact,
        "StartDateTime": "2026-05-04T14:00:00Z",
        "EndDateTime": "2026-05-04T15:00:00Z",
    }
    status, created = sf.rest(state, "POST", "66.0", "sobjects/Event", {}, good)
    assert status == 201
    assert sf.rest(state, "GET", "66.0", f"sobjects/Event/{created['id']}", {}, None)[0] == 200
    query = f"SELECT Id FROM Event WHERE WhoId = '{contact}' AND Subject LIKE '%cdw1%' LIMIT 1"
    assert sf.run_query(state, "66.0", query)[1]["totalSize"] == 1
    for body, code in [
        ("not an object", "JSON_PARSER_ERROR"),
        ({**good, "Color": "red"}, "INVALID_FIELD"),
        ({**good, "Subject": 5}, "JSON_PARSER_ERROR"),
        ({**good, "Subject": "x" * 256}, "STRING_TOO_LONG"),
        ({**good, "WhoId": "003nope"}, "MALFORMED_ID"),
        ({**good, "WhatId": "006nope"}, "MALFORMED_ID"),
        ({**good, "StartDateTime": None}, "REQUIRED_FIELD_MISSING"),
        ({**good, "EndDateTime": "tomorrow"}, "JSON_PARSER_ERROR"),
        ({**good, "EndDateTime": "2026-05-04T15:00:00"}, "JSON_PARSER_ERROR"),
        ({**good, "EndDateTime": "2026-05-04T13:00:00Z"}, "FIELD_INTEGRITY_EXCEPTION"),
        ({**good, "EndDateTime": "2026-05-18T14:00:01Z"}, "FIELD_INTEGRITY_EXCEPTION"),
    ]:
        status, error = sf.rest(state, "POST", "66.0", "sobjects/Event", {}, body)
        assert status == 400 and error[0]["errorCode"] == code, body
    assert len(state.as_json()["events"]) == 1
