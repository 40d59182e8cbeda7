"""The writes page of a connection in a real browser: an owner sees which writes failed and why,
reads what Conduit writes, retries a permanent failure, skips another, finds it under Skipped;
a member sees the same list read-only; a narrow screen still reads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from conduit.models import AuditEvent, Membership
from conduit.tenancy import system_scope
from reconcile import services
from reconcile.models import CrmWriteLog, DealMapping
from tests.conftest import Tenant, shot, sign_in
from tests.writes_page_helpers import BODY, live_conn, make_write, reload

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
Status = CrmWriteLog.Status
LONG_SUBJECT = (
    "Renewal terms for the 2027 logistics contract, the warehouse annex and the revised pricing schedule"
)


def seed(tenant: Tenant) -> dict[str, CrmWriteLog]:
    conn = live_conn(tenant, external_account_json={"hub_domain": "alice.hubspot.example"})
    with system_scope():
        DealMapping.objects.create(
            workspace=tenant.workspace,
            connection=conn,
            email="lee@beta.example",
            contact_id="5123",
            deal_id="88",
        )
    soon = timezone.now() + timedelta(minutes=12)
    return {
        "refused": make_write(
            conn,
            permanent=True,
            code="validation_error",
            message="Property values were not valid: hs_timestamp must be a date",
            retry_count=1,
            subject=LONG_SUBJECT,
            with_message=True,
            resolved={"contact_id": "9001", "deal_id": "7007"},
            age=timedelta(minutes=5),
        ),
        "retrying": make_write(
            conn,
            code="http_503",
            message="Service Unavailable",
            retry_count=2,
            next_retry_at=soon,
            subject="Delivery schedule",
            target="lee@beta.example",
            operation="create_task",
            with_message=True,
        ),
        "reconnect": make_write(
            conn,
            code="token_expired",
            message="waiting for the connection to be reconnected",
            subject="Quarterly review",
            target="ana@gamma.example",
            age=timedelta(minutes=20),
        ),
        "gave_up": make_write(
            conn,
            permanent=True,
            code="max_attempts",
            message="8 failed attempts; last: timeout",
            retry_count=8,
            subject="Invoice 4471 question",
            target="billing@delta.example",
            age=timedelta(hours=2),
        ),
        "no_contact": make_write(
            conn,
            status=Status.SKIPPED,
            code="no_matching_contact",
            message="no HubSpot contact has this email",
            subject="Intro call",
            target="new.person@epsilon.example",
            age=timedelta(hours=3),
        ),
    }


def test_an_owner_sees_why_writes_failed_retries_and_skips_them(
    page: Any,
    live_server: Any,
    alice: Tenant,
    make_workspace: Callable[..., Tenant],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dispatched: list[list[int]] = []
    monkeypatch.setattr(services, "dispatch_after_commit", lambda ids: dispatched.append(list(ids)))
    rows = seed(alice)
    url = live_server.url
    sign_in(page, url, alice)
    page.goto(f"{url}/settings/integrations/hubspot/writes/")

    # 1. the counts, the failed writes newest first, each with its reason in plain words
    assert page.locator("h1").inner_text() == "HubSpot writes that need attention"
    assert page.locator("[data-count=retrying]").inner_text() == "2"
    assert page.locator("[data-count=permanent]").inner_text() == "2"
    assert page.locator("[data-count=skipped]").inner_text() == "1"
    items = page.locator("li.write-item")
    order = [rows[k].pk for k in ("retrying", "refused", "reconnect", "gave_up")]
    assert [int(items.nth(i).get_attribute("data-write") or 0) for i in range(items.count())] == order
    refused = page.locator(f"li[data-write='{rows['refused'].pk}']")
    subject = refused.locator("[data-subject]")
    assert subject.get_attribute("title") == LONG_SUBJECT
    assert subject.evaluate("el => el.scrollWidth > el.clientWidth")  # cut with an ellipsis
    assert subject.evaluate("el => getComputedStyle(el).textOverflow") == "ellipsis"
    assert (
        "HubSpot refused the data: Property values were not valid"
        in refused.locator(".write-reason").inner_text()
    )
    assert "HubSpot contact 9001, deal 7007" in refused.inner_text()
    assert refused.locator("[data-state]").inner_text() == "Permanent failure"
    retrying = page.locator(f"li[data-write='{rows['retrying'].pk}']")
    assert "HubSpot was unavailable (server error 503)" in retrying.inner_text()
    assert "UTC" in retrying.locator("[data-next-attempt]").inner_text()
    assert retrying.locator("[data-operation]").inner_text() == "Task"
    reconnect = page.locator(f"li[data-write='{rows['reconnect'].pk}']")
    assert "reconnect HubSpot" in reconnect.locator(".write-reason").inner_text()
    assert reconnect.locator("[data-next-attempt]").inner_text() == "After HubSpot is reconnected"
    gave_up = page.locator(f"li[data-write='{rows['gave_up'].pk}']")
    assert "unavailable on all 8 attempts (last: it did not answer in time)" in gave_up.inner_text()
    assert BODY not in page.content()
    shot(page, tmp_path, "customer-writes-01-failed")

    # 2. what Conduit writes: the curated summary, the exact request body one level further
    refused.locator("summary", has_text="What Conduit writes").click()
    assert refused.locator("[data-summary]").is_visible()
    assert not refused.locator("[data-request-body]").is_visible()
    refused.locator("summary", has_text="Exact request body").click()
    body = refused.locator("[data-request-body]")
    assert (
        body.is_visible()
        and "hs_note_body" in body.inner_text()
        and rows["refused"].marker in body.inner_text()
    )
    shot(page, tmp_path, "customer-writes-02-details")

    # 3. retry the permanent failure: queued again, audited with the owner as actor
    with page.expect_navigation():
        refused.get_by_role("button", name="Retry now").click()
    assert (
        "is queued again with its attempts reset: Conduit sends it to HubSpot now."
        in page.locator(".flash").inner_text()
    )
    assert page.locator("[data-count=permanent]").inner_text() == "1"
    assert page.locator("[data-count=retrying]").inner_text() == "3"
    assert page.locator(f"li[data-write='{rows['refused'].pk}'] [data-state]").inner_text() == "Retrying"
    after = reload(rows["refused"])
    assert (after.status, after.permanent_failure, after.retry_count) == (Status.FAILED, False, 0)
    with system_scope():
        event = AuditEvent.objects.get(event="crm_write_retry_requested")
    assert event.actor == f"user:{alice.user.pk}"
    assert dispatched == [[after.connection_id]]
    shot(page, tmp_path, "customer-writes-03-retried")

    # 4. skip the one that gave up (after a confirmation), and find it under Skipped
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.locator(f"li[data-write='{rows['gave_up'].pk}']").get_by_role("button", name="Skip").click()
    assert "skipped: Conduit will not send it" in page.locator(".flash").inner_text()
    assert page.locator("[data-count=permanent]").inner_text() == "0"
    assert page.locator("[data-count=skipped]").inner_text() == "2"
    assert reload(rows["gave_up"]).status == Status.SKIPPED
    page.locator("[data-tab=skipped]").click()
    page.wait_for_url("**/writes/?show=skipped")
    skipped = page.locator("li.write-item")
    assert skipped.count() == 2
    assert page.locator(f"li[data-write='{rows['gave_up'].pk}'] [data-state]").inner_text() == "Skipped"
    no_contact = page.locator(f"li[data-write='{rows['no_contact'].pk}']")
    assert "No HubSpot contact has this email address" in no_contact.inner_text()
    assert no_contact.get_by_role("button", name="Retry now").is_visible()  # the contact may exist now
    assert no_contact.get_by_role("button", name="Skip").count() == 0
    shot(page, tmp_path, "customer-writes-04-skipped-tab")

    # 5. the permanent tab, now empty, says so
    page.locator("[data-tab=permanent]").click()
    page.wait_for_url("**/writes/?show=permanent")
    assert "Nothing to fix: no permanent failures." in page.locator("[data-empty]").inner_text()
    shot(page, tmp_path, "customer-writes-05-empty")

    # 6. a member reads the same list without buttons
    member = make_workspace("alice-member", role=Membership.Role.MEMBER)
    with system_scope():
        Membership.objects.create(workspace=alice.workspace, user=member.user, role=Membership.Role.MEMBER)
        Membership.objects.filter(workspace=member.workspace).delete()
    page.context.clear_cookies()
    sign_in(page, url, member)
    page.goto(f"{url}/settings/integrations/hubspot/writes/")
    assert page.locator("li.write-item").count() == 3
    assert page.get_by_role("button", name="Retry now").count() == 0
    assert page.get_by_role("button", name="Skip").count() == 0
    assert (
        "Only workspace owners and admins can retry or skip a write."
        in page.locator("[data-read-only]").inner_text()
    )
    shot(page, tmp_path, "customer-writes-06-member")

    # 7. a narrow screen
    page.set_viewport_size({"width": 420, "height": 860})
    page.reload()
    assert page.locator("li.write-item").first.is_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 420, f"the page scrolls sideways: {width}px"
    shot(page, tmp_path, "customer-writes-07-narrow")
