"""The Integrations card in a real browser against the sandbox CRMs: Salesforce's dry-run previews
in words (a completed Task, a Task due on a date) with long subjects and addresses cut to one line
and the exact request body one click away, the org's name as the account; a connection in error
with Reconnect beside its alert and a health block that says why it has no verdict; a warning
that asks for a reconnect with the button beside it; the same card on a phone-sized screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conduit.tenancy import system_scope
from integrations.connections.tokens import refresh_connection
from integrations.health.checks import check_connection
from reconcile.curation import plan_messages
from reconcile.models import WritePolicy
from tests.conftest import Tenant, shot, sign_in
from tests.reconcile_helpers import connect_crm, sandbox_fault, store_message

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
BODY = "SECRET-BODY-TEXT please do not leak"
LONG_SUBJECT = "Renewal of the north-east logistics framework agreement and its annexes " * 3
LONG_ADDRESS = "procurement.north-east.region@a-very-long-subsidiary-name.acme-logistics.example"


def overflows(locator: Any) -> bool:
    return bool(locator.evaluate("el => el.scrollWidth > el.clientWidth + 1"))


def inside(inner: Any, outer: Any) -> bool:
    a, b = inner.bounding_box(), outer.bounding_box()
    return bool(
        a["x"] >= b["x"] - 1
        and a["y"] >= b["y"] - 1
        and a["x"] + a["width"] <= b["x"] + b["width"] + 1
        and a["y"] + a["height"] <= b["y"] + b["height"] + 1
    )


def test_salesforce_previews_in_words_with_the_request_body_one_click_away(
    page: Any, live_server: Any, crm_env: dict[str, str], alice: Tenant, tmp_path: Path
) -> None:
    conn = connect_crm(alice, "salesforce", live=False)
    with system_scope():
        WritePolicy.objects.create(workspace=alice.workspace, outbound_operation="create_task")
    inbound = store_message(alice.workspace, "in@x", subject=LONG_SUBJECT, body=BODY)
    outbound = store_message(
        alice.workspace,
        "out@x",
        sender=f"Alice <{alice.user.email}>",
        to=[LONG_ADDRESS],
        subject="Delivery schedule",
        body=BODY,
    )
    plan_messages(alice.workspace, [inbound.pk, outbound.pk])

    url = live_server.url
    sign_in(page, url, alice)
    page.goto(f"{url}/settings/integrations/")
    card = page.locator("section.card[data-crm=salesforce]")
    assert card.locator("[data-account]").inner_text() == f"Sandbox Demo Inc. ({conn.external_account_key})"
    assert "Conduit writes Tasks (a note is a completed Task)" in card.locator("[data-sends]").inner_text()
    previews = card.locator("details.previews li.preview")
    assert previews.count() == 2
    said = sorted(previews.locator("[data-what]").all_inner_texts())
    assert said[0] == "A Task due " + said[0].removeprefix("A Task due ") and said[1] == "A completed Task"
    task = card.locator("li.preview[data-preview=create_task]")
    note = card.locator("li.preview[data-preview=create_note]")
    # the long address and the long subject stay on one line each, the whole of them in a title
    address = task.locator("[data-where] .addr")
    assert address.get_attribute("title") == LONG_ADDRESS and overflows(address)
    subject_line = note.locator("[data-text] .cut").first
    assert subject_line.inner_text().startswith("Email (inbound): Renewal of the") and overflows(subject_line)
    assert LONG_SUBJECT[:150] in (note.locator("[data-text]").get_attribute("title") or "")
    shot(page, tmp_path, "card-01-salesforce-previews")
    for preview in (task, note):
        assert preview.bounding_box()["height"] < 250  # a few lines, not a wall of JSON
        assert not preview.locator("pre.payload").is_visible()
    assert not overflows(card) and "SECRET-BODY-TEXT" not in page.content()

    task.locator("details.request summary").click()
    body = task.locator("pre.payload")
    assert body.is_visible() and '"Status": "Not Started"' in body.inner_text()
    assert '"WhoId": "<the Salesforce contact with email' in body.inner_text()
    assert not overflows(body)  # wrapped, not scrolled sideways
    shot(page, tmp_path, "card-02-salesforce-request-body")

    page.set_viewport_size({"width": 400, "height": 860})
    page.reload()
    card = page.locator("section.card[data-crm=salesforce]")
    assert not overflows(card) and not overflows(page.locator("main"))
    shot(page, tmp_path, "card-03-salesforce-previews-phone")


def test_the_action_sits_beside_the_message_that_asks_for_it(
    page: Any, live_server: Any, crm_env: dict[str, str], settings: Any, alice: Tenant, tmp_path: Path
) -> None:
    hubspot = connect_crm(alice, "hubspot", live=False)
    salesforce = connect_crm(alice, "salesforce", live=False)
    settings.CONDUIT_PUBLIC_URL = live_server.url  # the reconnect below comes back to the live server
    sandbox_fault(crm_env["hubspot"], kind="invalid_grant")
    refresh_connection(hubspot.pk, force=True)  # HubSpot no longer accepts the grant: error
    with system_scope():
        salesforce.granted_scopes = ["id"]  # Salesforce's grant now lacks what Conduit needs
        salesforce.save(update_fields=["granted_scopes"])
    check_connection(salesforce.pk)

    url = live_server.url
    sign_in(page, url, alice)
    page.goto(f"{url}/settings/integrations/")
    hs = page.locator("section.card[data-crm=hubspot]")
    assert hs.locator("[data-status]").inner_text() == "Needs attention"
    alert = hs.locator("[data-guidance]")
    assert alert.inner_text().startswith("HubSpot no longer accepts Conduit's access")
    reconnect = hs.get_by_role("button", name="Reconnect")
    assert reconnect.count() == 1 and inside(reconnect, alert)
    # the health block says why there is no new verdict instead of standing empty
    health = hs.locator("[data-health]")
    assert health.locator("[data-health-status]").inner_text() == "Error"
    assert "does not check a connection that needs attention" in health.locator(".health-words").inner_text()

    sf = page.locator("section.card[data-crm=salesforce]")
    warning = sf.locator("[data-health] .notice")
    assert "Salesforce has not granted permissions Conduit now needs: api" in warning.inner_text()
    assert "for want" not in page.content()
    fix = sf.get_by_role("button", name="Reconnect")
    assert fix.count() == 1 and inside(fix, warning)
    shot(page, tmp_path, "card-04-reconnect-beside-the-message")

    reconnect.click()  # to the sandbox's consent page, and back connected
    page.wait_for_url(lambda current: current.startswith(f"{crm_env['hubspot']}/oauth/authorize?"))
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{url}/settings/integrations/")
    hs = page.locator("section.card[data-crm=hubspot]")
    assert hs.locator("[data-status]").inner_text() == "Connected"
    assert hs.locator("[data-guidance]").count() == 0
    assert hs.locator(".health-words").inner_text().startswith("Connected on ")
    shot(page, tmp_path, "card-05-reconnected")
