"""How the Integrations card presents a connection: dry-run previews in words, in each CRM's own
vocabulary (a Salesforce Task, an Odoo log note), with the exact request body one click away;
the action beside the message that asks for it; the real connect time; plain words for missing
permissions; a health block that says why it has no verdict; the Salesforce org's name (read at
connect) instead of a raw instance URL."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses
from django.utils import timezone

from conduit.tenancy import system_scope
from integrations.ledger import WritePreview, ledger
from integrations.models import ConnectionHealth, CrmConnection
from integrations.pages.cards import (
    GUIDANCE,
    HEALTH_WORDS,
    KEY_HEALTH_WORDS,
    account_text,
    guidance_for,
    health_for,
)
from integrations.pages.previews import TEXT_LINES, preview_card, preview_cards, what_is_sent, where_it_goes
from integrations.providers import get_provider
from integrations.providers.base import TokenSet
from reconcile.curation import plan_messages
from reconcile.models import DealMapping, WritePolicy
from reconcile.services import provider_payload
from tests.conftest import Tenant
from tests.ops_helpers import make_connection, make_health
from tests.reconcile_helpers import CUSTOMER, connect_crm, store_message, writes

pytestmark = pytest.mark.django_db
PAGE = "/settings/integrations/"
BODY = "SECRET-BODY-TEXT never on a page"
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
SF_INSTANCE = "https://acme.my.salesforce.com"
SF_ORG = "00D5g000004SbxAEAS"
CONTACT, DEAL = "0035g00000SbxC1AAJ", "0065g00000SbxO1AAJ"


def preview(operation: str = "create_note", **fields: Any) -> WritePreview:
    values: dict[str, Any] = {
        "id": 1,
        "operation": operation,
        "target": CUSTOMER,
        "created_at": NOW,
        "text": "Email (inbound): Renewal terms\nFrom: a@x\nTo: b@y\nTime: now\nIn Conduit: https://c/m/1/",
        "due_at": NOW + timedelta(days=2) if operation == "create_task" else None,
        "contact_id": "",
        "deal_id": "",
        "looked_up": False,
        "payload": {},
        "payload_json": "{}",
        **fields,
    }
    return WritePreview(**values)


def card_html(tenant: Tenant, crm: str) -> str:
    page = tenant.client().get(PAGE).content.decode()
    start = page.index(f'<section class="card" data-crm="{crm}">')
    return page[start : page.index("</section>", start)]


def plain(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


# --- previews in words ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("crm", "operation", "said"),
    [
        ("hubspot", "create_note", "A note"),
        ("hubspot", "create_task", "A task due 9 Dec"),
        ("salesforce", "create_note", "A completed Task"),
        ("salesforce", "create_task", "A Task due 9 Dec"),
        ("zoho", "create_note", "A note"),
        ("zoho", "create_task", "A task due 9 Dec"),
        ("odoo", "create_note", "A log note"),
        ("odoo", "create_task", "A To-Do activity due 9 Dec"),
    ],
)
def test_each_crm_names_what_it_receives_in_its_own_word(crm: str, operation: str, said: str) -> None:
    assert what_is_sent(crm, preview(operation), now=NOW) == said


def test_a_due_date_in_another_year_names_the_year() -> None:
    due = datetime(2027, 1, 9, 9, 0, tzinfo=UTC)
    assert what_is_sent("hubspot", preview("create_task", due_at=due), now=NOW) == "A task due 9 Jan 2027"


def test_where_names_the_contact_and_deal_in_each_crms_words() -> None:
    found = preview(contact_id=CONTACT, deal_id=DEAL, looked_up=True)
    assert plain(where_it_goes("salesforce", found)) == (
        f"On the Contact {CUSTOMER} (id {CONTACT}) and the Opportunity {DEAL}."
    )
    assert plain(where_it_goes("hubspot", preview())) == (
        f"On the contact with email {CUSTOMER} and its open deal, if any."
    )
    # a Zoho note hangs on the deal when there is one, else on the contact
    assert plain(where_it_goes("zoho", found)).startswith(f"On the deal {DEAL}, of the contact {CUSTOMER}")
    no_deal = preview(contact_id=CONTACT, looked_up=True)
    assert (
        plain(where_it_goes("zoho", no_deal)) == f"On the contact {CUSTOMER} (id {CONTACT}) (no open deal)."
    )
    assert "or on the contact when there is none" in plain(where_it_goes("zoho", preview()))
    # an Odoo To-Do is on the partner only; its log note reaches the opportunity too
    assert plain(where_it_goes("odoo", preview("create_task", **_ids()))) == (
        f"On the contact {CUSTOMER} (id {CONTACT})."
    )
    assert "and the opportunity" in plain(where_it_goes("odoo", preview(**_ids())))
    missing = preview(looked_up=True)
    assert plain(where_it_goes("hubspot", missing)).startswith(
        f"No HubSpot contact has the email {CUSTOMER} yet"
    )


def _ids() -> dict[str, Any]:
    return {"contact_id": CONTACT, "deal_id": DEAL, "looked_up": True}


def test_a_long_address_is_cut_to_one_line_with_the_whole_of_it_in_its_title() -> None:
    address = "a.very.long.local.part.that.goes.on.and.on@" + "sub." * 20 + "example.com"
    where = str(where_it_goes("hubspot", preview(target=address)))
    assert f'<span class="cut-inline addr" title="{address}">{address}</span>' in where


def test_where_escapes_what_it_shows() -> None:
    where = str(where_it_goes("hubspot", preview(target="<b>x</b>@y", contact_id="<i>", looked_up=True)))
    assert "<b>" not in where and "&lt;b&gt;x&lt;/b&gt;@y" in where and "&lt;i&gt;" in where


def test_the_text_is_cut_to_a_few_lines() -> None:
    text = "\n".join(f"line {n}" for n in range(7))
    shown = preview_card("hubspot", preview(text=text), now=NOW)
    assert shown["lines"] == [f"line {n}" for n in range(TEXT_LINES)]
    assert shown["more_lines"] == 7 - TEXT_LINES and shown["text"] == text
    assert preview_cards("hubspot", [preview(text="one")])[0]["more_lines"] == 0
    five = "\n".join(f"line {n}" for n in range(TEXT_LINES + 1))  # one more: shown, not announced
    assert preview_card("hubspot", preview(text=five), now=NOW)["lines"] == five.splitlines()


# --- previews through the ledger and on the page ---------------------------------------------------


def salesforce_dry_run(tenant: Tenant, **details: Any) -> CrmConnection:
    account = {"instance_url": SF_INSTANCE, "org_id": SF_ORG, "environment": "login", **details}
    return make_connection(
        tenant.workspace,
        "salesforce",
        dry_run=True,
        external_account_key=SF_ORG,
        external_account_json=account,
    )


def plan_note_and_task(tenant: Tenant, subject: str = "Renewal terms") -> None:
    """An inbound email (a note) and an outbound one (a task, by the write policy)."""
    with system_scope():
        WritePolicy.objects.create(workspace=tenant.workspace, outbound_operation="create_task")
    inbound = store_message(tenant.workspace, "in@x", subject=subject, body=BODY)
    outbound = store_message(
        tenant.workspace, "out@x", sender=f"Alice <{tenant.user.email}>", to=[CUSTOMER], body=BODY
    )
    plan_messages(tenant.workspace, [inbound.pk, outbound.pk])


def test_ledger_previews_carry_the_write_in_plain_values(alice: Tenant) -> None:
    conn = salesforce_dry_run(alice)
    plan_note_and_task(alice)
    with system_scope():
        DealMapping.objects.create(
            workspace=alice.workspace, connection=conn, email=CUSTOMER, contact_id=CONTACT, deal_id=DEAL
        )
        shown = {p.operation: p for p in ledger().previews(conn)}
        rows = {w.operation: w for w in writes()}
    task = shown["create_task"]
    assert (task.target, task.contact_id, task.deal_id, task.looked_up) == (CUSTOMER, CONTACT, DEAL, True)
    assert task.due_at is not None and task.due_at == datetime.fromisoformat(
        rows["create_task"].payload["due_at"]
    )
    assert shown["create_note"].due_at is None
    with system_scope():
        assert task.payload == provider_payload(rows["create_task"])
    assert json.loads(task.payload_json) == task.payload and "\n  " in task.payload_json  # pretty-printed
    assert task.payload["WhoId"] == CONTACT and task.payload["WhatId"] == DEAL
    assert BODY not in task.text + task.payload_json


def test_the_card_shows_each_planned_write_in_words_and_its_body_one_click_away(alice: Tenant) -> None:
    long_subject = "Quarterly renewal of the logistics contract " * 8
    salesforce_dry_run(alice)
    plan_note_and_task(alice, subject=long_subject)
    card = card_html(alice, "salesforce")
    said = re.findall(r"<strong data-what>([^<]+)</strong>", card)
    due = timezone.now() + timedelta(days=2)
    assert sorted(said) == ["A Task due " + f"{due.day} {due:%b}", "A completed Task"]
    assert (
        "Conduit writes Tasks (a note is a completed Task), on Contacts and their open Opportunities" in card
    )
    assert ">A note<" not in card and "Note about" not in card
    # the exact body, pretty-printed, folded in a <details>; the email body nowhere
    bodies = re.findall(r'<details class="request">.*?<pre class="payload wrap">(.*?)</pre>', card, re.S)
    assert len(bodies) == 2 and all("&quot;WhoId&quot;" in b and "\n  " in b for b in bodies)
    assert BODY not in card
    # the long subject: its line is cut to one line, the whole text is in the title
    assert f'<span class="cut">Email (inbound): {long_subject[:200]}</span>' in card
    assert f'title="Email (inbound): {long_subject[:200]}' in card


@pytest.mark.parametrize(("crm", "said"), [("zoho", "A note"), ("odoo", "A log note"), ("hubspot", "A note")])
def test_other_crms_previews_use_their_words(alice: Tenant, crm: str, said: str) -> None:
    make_connection(alice.workspace, crm, dry_run=True)
    message = store_message(alice.workspace, "in@x", body=BODY)
    plan_messages(alice.workspace, [message.pk])
    card = card_html(alice, crm)
    assert re.findall(r"<strong data-what>([^<]+)</strong>", card) == [said]
    assert "data-where>On the" in card and BODY not in card


# --- health words, the action beside the message ---------------------------------------------------


def test_the_connected_verdict_names_the_real_connect_time(alice: Tenant) -> None:
    then = timezone.now() - timedelta(days=3, hours=2)
    conn = make_connection(alice.workspace, "hubspot", connected_at=then)
    row = make_health(conn, "ok", "connected")
    with system_scope():
        ConnectionHealth.objects.filter(pk=row.pk).update(last_checked_at=then)
    card = card_html(alice, "hubspot")
    assert f"Connected on {then.day} {then:%b %Y, %H:%M} UTC: HubSpot accepted Conduit" in card
    assert "just now" not in card


def test_missing_permissions_are_said_plainly(alice: Tenant) -> None:
    texts = [*HEALTH_WORDS.values(), *KEY_HEALTH_WORDS.values(), *GUIDANCE.values()]
    assert not [t for t in texts if "for want" in t]
    conn = make_connection(alice.workspace, "hubspot")
    row = make_health(conn, "warning", "missing_scope")
    with system_scope():
        row.details_json = {"scopes": {"missing": ["crm.objects.contacts.write", "tickets"]}}
        row.save(update_fields=["details_json"])
    words = health_for(row, "HubSpot", conn=conn)
    assert words is not None and words["words"] == (
        "HubSpot did not grant the permissions Conduit needs: crm.objects.contacts.write, tickets. "
        "Reconnect and grant them."
    )


def test_an_error_card_has_reconnect_beside_its_alert_and_says_why_health_has_no_verdict(
    alice: Tenant,
) -> None:
    conn = salesforce_dry_run(alice, environment="test")
    with system_scope():
        CrmConnection.objects.filter(pk=conn.pk).update(status="error", last_error="refresh_token_revoked")
    make_health(conn, "error", "refresh_token_revoked")
    card = card_html(alice, "salesforce")
    alert = card[card.index('role="alert" data-guidance') :]
    alert = alert[: alert.index("</div>")]
    assert "Salesforce no longer accepts Conduit&#x27;s access" in alert
    assert "data-reconnect>Reconnect</button>" in alert
    assert '<input type="hidden" name="environment" value="test">' in alert  # same environment again
    assert card.count(">Reconnect</button>") == 1
    health = card[card.index('data-health="error"') :]
    assert "Conduit does not check a connection that needs attention" in health[: health.index("</div>")]
    assert 'data-health-status="error"' in card


def test_a_warning_that_asks_for_a_reconnect_carries_the_button(alice: Tenant) -> None:
    conn = make_connection(alice.workspace, "hubspot")
    make_health(conn, "warning", "scope_drift")
    card = card_html(alice, "hubspot")
    health = card[card.index('data-health="warning"') :]
    health = health[: health.index('<div class="writes"')]
    assert "HubSpot has not granted permissions Conduit now needs" in health
    assert "data-reconnect>Reconnect</button>" in health and card.count(">Reconnect</button>") == 1


def test_a_member_sees_the_messages_but_no_buttons(make_workspace: Any) -> None:
    member = make_workspace("carol", role="member")
    conn = make_connection(member.workspace, "hubspot", status="error", last_error="access_token_rejected")
    make_health(conn, "error", "access_token_rejected")
    card = card_html(member, "hubspot")
    assert "HubSpot refused Conduit&#x27;s access token twice" in card and "Reconnect</button>" not in card


def test_a_connection_not_checked_yet_says_so(alice: Tenant) -> None:
    make_connection(alice.workspace, "hubspot")
    card = card_html(alice, "hubspot")
    assert 'data-health="none"' in card and "Not checked yet" in card


def test_an_error_without_known_guidance_still_says_what_to_do(alice: Tenant) -> None:
    conn = make_connection(alice.workspace, "zoho", status="error", last_error="")
    assert guidance_for(conn, "Zoho CRM", uses_oauth=True) == (
        "Zoho CRM stopped working with this connection (no reason recorded). Reconnect to resume."
    )
    conn.last_error = "invalid_instance_url"
    assert "(invalid_instance_url). Update the credentials" in guidance_for(conn, "Odoo", uses_oauth=False)


# --- the Salesforce org's name ---------------------------------------------------------------------


def test_the_account_is_the_orgs_name_or_the_instance_host(alice: Tenant) -> None:
    named = salesforce_dry_run(alice, org_name="Acme Logistics Inc.")
    assert account_text(named) == f"Acme Logistics Inc. ({SF_ORG})"
    named.external_account_json = {"instance_url": SF_INSTANCE, "org_id": SF_ORG}  # connected before
    assert account_text(named) == f"acme.my.salesforce.com ({SF_ORG})"
    card = card_html(alice, "salesforce")
    assert f"<dd data-account>Acme Logistics Inc. ({SF_ORG})</dd>" in card


def test_an_older_salesforce_connection_shows_its_host_not_the_url(alice: Tenant) -> None:
    salesforce_dry_run(alice)
    card = card_html(alice, "salesforce")
    assert f"<dd data-account>acme.my.salesforce.com ({SF_ORG})</dd>" in card and SF_INSTANCE not in card


@pytest.fixture
def real_salesforce(settings: Any) -> None:
    settings.SALESFORCE_LOGIN_URL = "https://login.salesforce.com"


def identify_with(org_reply: dict[str, Any]) -> dict[str, Any]:
    responses.get(
        f"{SF_INSTANCE}/services/oauth2/userinfo", json={"preferred_username": "admin@acme.example"}
    )
    responses.get(f"{SF_INSTANCE}/services/data/v66.0/query", **org_reply)
    tokens = TokenSet(
        access_token="00Dsf!token",
        instance_url=SF_INSTANCE,
        identity_url=f"https://login.salesforce.com/id/{SF_ORG}/0055g00000SbxUsAAJ",
    )
    return get_provider("salesforce").identify(tokens).details


@responses.activate
def test_salesforce_identify_reads_the_orgs_name_with_one_query(real_salesforce: None) -> None:
    org = {
        "totalSize": 1,
        "done": True,
        "records": [{"attributes": {"type": "Organization"}, "Name": "Acme"}],
    }
    details = identify_with({"json": org})
    assert details["org_name"] == "Acme" and details["org_id"] == SF_ORG
    query = responses.calls[1].request
    assert query.params == {"q": "SELECT Name FROM Organization LIMIT 1"}
    assert query.headers["Authorization"] == "Bearer 00Dsf!token"


@responses.activate
def test_a_refused_org_query_does_not_stop_the_connect(real_salesforce: None) -> None:
    refused = [{"errorCode": "INVALID_TYPE", "message": "sObject type 'Organization' is not supported."}]
    details = identify_with({"json": refused, "status": 400})
    assert "org_name" not in details and details["org_id"] == SF_ORG


def test_connecting_salesforce_stores_and_shows_the_orgs_name(crm_env: dict[str, str], alice: Tenant) -> None:
    conn = connect_crm(alice, "salesforce", live=False)
    assert conn.external_account_json["org_name"] == "Sandbox Demo Inc."
    card = card_html(alice, "salesforce")
    assert f"<dd data-account>Sandbox Demo Inc. ({conn.external_account_key})</dd>" in card
    assert crm_env["salesforce"] not in card
