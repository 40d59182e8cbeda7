"""The dry-run -> live flow on the Integrations page in a real browser, against the HubSpot
sandbox: previews of the planned writes in words with their exact request bodies, going live with
the planned writes, delivery counts, a permanent failure, and back to dry run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from reconcile.curation import plan_messages
from reconcile.delivery import deliver_write, deliver_writes
from reconcile.dispatch import deliver_crm_writes
from reconcile.models import CrmWriteLog
from reconcile.queue import reconcile_crm_writes
from tests.conftest import Tenant, shot, sign_in
from tests.reconcile_helpers import connect_crm, sandbox_fault, sandbox_state, store_message, writes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
Status = CrmWriteLog.Status
BODY = "SECRET-BODY-TEXT please do not leak"


def deliver_due() -> None:
    """What the workers would do: claim every due write and deliver it, in this process."""
    reconcile_crm_writes(dispatch=lambda write_id, token: deliver_write(write_id, token))


def count(card: Any, name: str) -> str:
    return str(card.locator(f"[data-count={name}]").inner_text()).strip()


def test_dry_run_previews_go_live_delivery_failure_and_back_to_dry_run(
    page: Any,
    live_server: Any,
    crm_env: dict[str, str],
    settings: Any,
    alice: Tenant,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hubspot = crm_env["hubspot"]
    connect_crm(alice, "hubspot", live=False)  # the test client's callback is on http://testserver
    settings.CONDUIT_PUBLIC_URL = live_server.url  # from here on Conduit's links point at the live server
    first = store_message(alice.workspace, "w1@x", body=BODY)
    second = store_message(alice.workspace, "w2@x", subject="Delivery schedule", body=BODY)
    planned = plan_messages(alice.workspace, [first.pk, second.pk])
    assert planned.dry_run == 2
    held = writes()
    assert [w.status for w in held] == [Status.DRY_RUN, Status.DRY_RUN]

    # 1. dry run: the badge, the count and the exact request bodies, never the email body
    url = live_server.url
    sign_in(page, url, alice)
    page.goto(f"{url}/settings/integrations/")
    card = page.locator("section.card[data-crm=hubspot]")
    assert card.locator("[data-status]").inner_text() == "Connected"
    assert card.locator(".badge", has_text="Dry run").is_visible()
    assert count(card, "dry_run") == "2"
    previews = card.locator("details.previews")
    assert previews.is_visible()
    assert "What Conduit would write (2 latest of 2)" in previews.locator("summary").first.inner_text()
    # each planned write in words: what HubSpot gets, on whom, the text; the request body folded
    assert previews.locator("[data-what]").all_inner_texts() == ["A note", "A note"]
    where = previews.locator("[data-where]").first.inner_text()
    assert where.startswith("On the contact ") and "maya.lopez@" in where and " deal" in where
    texts = previews.locator("[data-text]").all_inner_texts()
    assert sorted(t.splitlines()[0] for t in texts) == [
        "Email (inbound): Delivery schedule",
        "Email (inbound): Renewal terms",
    ]
    assert (
        previews.locator("pre.payload").count() == 2
        and not previews.locator("pre.payload").first.is_visible()
    )
    bodies = previews.locator("pre.payload").all_text_contents()
    assert all("hs_note_body" in b and "associationTypeId" in b for b in bodies)
    assert f"{url}/messages/{first.pk}/" in "".join(bodies)  # the note links back to the message in Conduit
    assert sorted(w.marker in "".join(bodies) for w in held) == [True, True]
    assert "SECRET-BODY-TEXT" not in page.content()
    assert card.get_by_role("radio", name="Also send the 2 planned write(s)").is_checked()
    shot(page, tmp_path, "writes-01-dry-run-previews")
    # the exact request body, one click away, pretty-printed and wrapped
    previews.locator("details.request summary").first.click()
    assert previews.locator("pre.payload").first.is_visible()
    shot(page, tmp_path, "writes-02-dry-run-request-body")

    # 2. go live sending the planned writes: they are dispatched at once (a worker at hand here
    # delivers in this process), not at the next ten-minute reconcile run
    monkeypatch.setattr(
        deliver_crm_writes, "delay", lambda write_ids, token: deliver_writes(write_ids, token)
    )
    card.get_by_role("radio", name="Also send the 2 planned write(s)").check()
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        card.get_by_role("button", name="Go live").click()
    page.wait_for_url(f"{url}/settings/integrations/")
    flash = page.locator(".flash").inner_text()
    assert "HubSpot is live" in flash and "2 planned write(s) will be sent" in flash
    assert card.locator(".badge", has_text="Dry run").count() == 0
    assert card.locator("[data-count=dry_run]").count() == 0
    assert card.locator("details.previews").count() == 0
    assert card.get_by_role("button", name="Back to dry run").is_visible()
    shot(page, tmp_path, "writes-03-went-live-sent-at-once")
    assert [w.status for w in writes()] == [Status.SUCCEEDED, Status.SUCCEEDED]
    deliver_due()  # the reconcile run finds nothing left to send
    page.reload()
    assert (count(card, "planned"), count(card, "succeeded"), count(card, "permanent")) == ("0", "2", "0")
    notes = sandbox_state(hubspot)["notes"]
    assert len(notes) == 2
    assert sorted(w.marker in str(notes) for w in held) == [True, True]
    assert BODY not in str(notes)
    assert card.get_by_text("Last error").count() == 0
    shot(page, tmp_path, "writes-04-live-written")

    # 3. a permanent failure is counted, highlighted and explained; then back to dry run
    third = store_message(alice.workspace, "w3@x", subject="Invoice question", body=BODY)
    assert plan_messages(alice.workspace, [third.pk]).planned == 1
    sandbox_fault(hubspot, kind="validation", count=1, path_contains="/objects/notes")
    deliver_due()
    failed = writes(status=Status.FAILED)
    assert len(failed) == 1 and failed[0].permanent_failure
    page.reload()
    assert (count(card, "permanent"), count(card, "succeeded"), count(card, "failed")) == ("1", "2", "0")
    assert card.locator("[data-count=permanent]").get_attribute("class") == "bad"
    last_error = card.locator("p", has_text="Last error:")
    assert last_error.is_visible()
    assert failed[0].last_error_code in last_error.inner_text()
    assert re.search(r" at \d{4}-\d\d-\d\d \d\d:\d\d UTC$", last_error.inner_text())
    assert len(sandbox_state(hubspot)["notes"]) == 2
    shot(page, tmp_path, "writes-05-permanent-failure")

    with page.expect_navigation():
        card.get_by_role("button", name="Back to dry run").click()
    page.wait_for_url(f"{url}/settings/integrations/")
    assert "HubSpot is back in dry run" in page.locator(".flash").inner_text()
    assert card.locator(".badge", has_text="Dry run").is_visible()
    assert card.get_by_role("button", name="Go live").is_visible()
    assert count(card, "dry_run") == "0"
    assert count(card, "permanent") == "1"  # a permanent failure stays as it is, not held
    shot(page, tmp_path, "writes-06-back-to-dry-run")
