"""The operator console in a real browser at 1,280 px: every list fits the screen with long values
in every column, the home page starts the day, and a permanent failure is skipped from its own
page and leaves the queue."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.utils import timezone

from conduit.models import (
    ApiToken,
    Attachment,
    AuditEvent,
    Heartbeat,
    Invitation,
    Message,
    PeriodicRun,
    Profile,
    StaffToken,
)
from conduit.tenancy import system_scope
from integrations.models import (
    ConnectionHealth,
    CrmConnection,
    IntegrationSetting,
    OAuthState,
    PendingInstall,
    SyncCursor,
    SyncLog,
    SyncPause,
    WebhookEvent,
)
from reconcile.models import CrmWriteLog, WritePolicy
from retention.models import RetentionPolicy
from tests.conftest import Tenant, shot
from tests.ops_helpers import make_connection, make_mapping, make_write

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDTH = 1280
LONG = "northwind-traders-international-holdings-emea-renewals-and-customer-success"
PAYLOAD = {
    "subject": "Re: renewal",
    "text": "Renewal call summary",
    "occurred_at": "2026-11-02T09:30:00+00:00",
}


def fill_every_table(tenant: Tenant) -> CrmWriteLog:
    """At least one row with long values in every console list; returns a permanent failure."""
    now = timezone.now()
    ws = tenant.workspace
    with system_scope():
        ws.name = "Northwind Traders International Holdings — EMEA Renewals and Customer Success"
        ws.save()
        Profile.objects.filter(user=tenant.user).update(display_name="Alexandra Montgomery-Featherstonehaugh")
        message = Message.objects.create(
            workspace=ws,
            message_id=f"<{LONG}@mail.example>",
            subject="Quarterly business review follow-up: pricing, renewal terms and the 2027 migration plan",
            from_address=f"Alexandra Montgomery <{LONG}@customer.example>",
            to_addresses=[f"{LONG}@acme.example"] * 3,
        )
        Attachment.objects.create(
            workspace=ws,
            message=message,
            filename=f"{LONG}-signed-order-form.pdf",
            content_type="application/pdf",
        )
        AuditEvent.objects.create(
            workspace=ws,
            actor=f"user:1 ({LONG}@acme.example)",
            event="crm_write_skipped",
            payload_json={"a": LONG},
        )
        ApiToken.objects.create(workspace=ws, name=LONG[:100], prefix="cdt_abcd1234", token_hash="a" * 64)
        StaffToken.objects.create(
            user=tenant.user, name=LONG[:100], prefix="cds_abcd1234", token_hash="b" * 64
        )
        Heartbeat.objects.create(name="beat", beat_at=now)
        PeriodicRun.objects.create(
            job="integrations.reconcile_connections", slot=1, sent_at=now, sent_by=f"{LONG}:4242"
        )
        Invitation.objects.create(
            workspace=ws,
            email=f"{LONG[:60]}@acme.example",
            token_hash="c" * 64,
            expires_at=now + timedelta(days=7),
        )
        IntegrationSetting.objects.create(
            workspace=ws, provider="hubspot", enabled=False, reason=LONG * 3, changed_by=LONG
        )
        WritePolicy.objects.create(workspace=ws)
        RetentionPolicy.objects.create(
            workspace=ws, message_days=90, attachment_days=30, sync_log_days=30, updated_by=f"user:1 {LONG}"
        )
    conn = make_connection(
        ws,
        "salesforce",
        status=CrmConnection.Status.ERROR,
        last_error="refresh_token_revoked_" + "x" * 70,
        external_account_key="00D" + "9" * 60,
        external_account_json={"instance_url": f"https://{LONG}.my.salesforce.com", "scopes": [LONG] * 6},
    )
    with system_scope():
        ConnectionHealth.objects.create(
            workspace=ws,
            crm="salesforce",
            connection=conn,
            status="error",
            reason="auth_failed_" + "y" * 80,
            last_checked_at=now,
            details_json={"granted": [LONG] * 8, "missing": ["api", "refresh_token"]},
        )
        PendingInstall.objects.create(
            crm="hubspot",
            external_account_key="7" * 90,
            expires_at=now + timedelta(hours=2),
            metadata={"account_name": LONG, "installing_user_email": f"{LONG}@acme.example"},
        )
        OAuthState.objects.create(
            state_hash=hashlib.sha256(b"s").hexdigest(),
            crm="zoho",
            workspace=ws,
            environment=f"https://accounts.{LONG}.zoho.eu",
            expires_at=now,
        )
        SyncLog.objects.create(
            workspace=ws,
            provider="salesforce",
            operation="create_note",
            status="FAILED",
            http_status=400,
            error_code="field_custom_validation_exception_" + "z" * 60,
            summary=LONG,
        )
        SyncPause.objects.create(scope="workspace", workspace=ws, reason=LONG * 5, actor=f"user:1 {LONG}")
        WebhookEvent.objects.create(
            provider="hubspot",
            event_id="9" * 90,
            event_type=f"contact.propertyChange.{LONG}",
            workspace=ws,
            status="failed",
            payload={"properties": {f"p{n}": LONG for n in range(30)}},
        )
        SyncCursor.objects.create(
            workspace=ws, connection=conn, provider="salesforce", object="contact", since_ts=now
        )
    make_mapping(conn, f"{LONG}@customer.example", "003" + "1" * 40, "006" + "2" * 40)
    target = f"{LONG}.with.a.very.long.local.part@customer.example"
    make_write(conn, "failed", "timeout_" + "w" * 80, target=target, payload=PAYLOAD)
    return make_write(
        conn,
        "failed",
        "required_field_missing",
        permanent_failure=True,
        next_retry_at=None,
        target=target,
        last_error_message="The CRM refused the record: " + LONG,
        payload={**PAYLOAD, "text": "Renewal call summary " * 40},
    )


def sign_in_to_admin(page: Any, url: str) -> None:
    with system_scope():
        User.objects.create_superuser("ops@conduit.example", "ops@conduit.example", "ops-password-123")
    page.goto(f"{url}/admin/login/")
    page.fill("input[name=username]", "ops@conduit.example")
    page.fill("input[name=password]", "ops-password-123")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/admin/")


def page_width(page: Any) -> int:
    """How wide the page's content is: the page, or a list's table when it scrolls in its box."""
    return int(
        page.evaluate(
            """() => {
              const results = document.querySelector('.results');
              const overflow = results ? results.scrollWidth - results.clientWidth : 0;
              return document.documentElement.scrollWidth + Math.max(overflow, 0);
            }"""
        )
    )


def test_every_list_fits_a_1280px_screen_and_the_home_page_starts_the_day(
    page: Any, live_server: Any, alice: Tenant, tmp_path: Path
) -> None:
    fill_every_table(alice)
    url = live_server.url
    sign_in_to_admin(page, url)
    assert page.title() == "Start of the day | Conduit operations"
    assert page.locator("#site-name").inner_text() == "Conduit operations"
    failures = page.locator("[data-panel=permanent-failures]")
    assert "1\nSalesforce" in failures.inner_text()
    assert page_width(page) <= WIDTH
    shot(page, tmp_path, "admin-01-home")

    too_wide = {}
    for model in admin.site._registry:
        if model._meta.app_label not in ("conduit", "integrations", "reconcile", "retention"):
            continue
        path = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        page.goto(url + path)
        assert page.locator("#result_list, .paginator").first.is_visible(), path
        if page_width(page) > WIDTH:
            too_wide[path] = page_width(page)
        shot(page, tmp_path, f"admin-list-{model._meta.app_label}-{model._meta.model_name}")
    assert too_wide == {}
    page.goto(f"{url}/admin/reconcile/crmwritelog/")
    clipped = page.locator("#result_list span.clip").first
    assert clipped.get_attribute("title").endswith("@customer.example")
    shot(page, tmp_path, "admin-02-writes")
    page.goto(f"{url}/admin/integrations/webhookevent/")
    page.locator("#result_list a[href*='/change/']").first.click()
    payload = page.locator(".field-payload pre.json")
    payload.wait_for()
    assert payload.evaluate("box => box.scrollHeight > box.clientHeight")  # long JSON scrolls in its box
    assert page_width(page) <= WIDTH
    shot(page, tmp_path, "admin-03-webhook-event")


def test_a_permanent_failure_is_skipped_from_its_page_and_leaves_the_queue(
    page: Any, live_server: Any, alice: Tenant, tmp_path: Path
) -> None:
    write = fill_every_table(alice)
    url = live_server.url
    sign_in_to_admin(page, url)
    page.locator("[data-panel=permanent-failures] a", has_text="Salesforce").click()
    assert "1 CRM write" in page.locator(".paginator").inner_text()
    page.locator(f"#result_list a[href*='/{write.pk}/change/']").click()
    triage = page.locator("section.triage")
    assert "Conduit gave up on this write (required_field_missing)" in triage.inner_text()
    outcome = page.locator(".field-outcome_unknown .readonly")
    assert outcome.inner_text() == "No"
    assert page.locator(".field-permanent_failure .readonly").inner_text() == "Yes"
    body = page.locator(".field-request_body pre.json")
    assert body.is_visible() and body.bounding_box()["width"] < WIDTH - 200
    assert page_width(page) <= WIDTH
    shot(page, tmp_path, "admin-04-write-triage")

    triage.get_by_role("button", name="Skip").click()
    page.wait_for_load_state()
    assert "Skipped: the write will not be sent" in page.locator(".messagelist").inner_text()
    assert "Nothing to triage: this write is skipped." in page.locator("section.triage").inner_text()
    shot(page, tmp_path, "admin-05-write-skipped")
    write.refresh_from_db()
    assert write.status == "skipped" and not write.permanent_failure

    page.goto(f"{url}/admin/")
    assert (
        page.locator("[data-panel=permanent-failures] a", has_text="Salesforce")
        .locator(".figure-value")
        .inner_text()
        == "0"
    )
    page.goto(f"{url}/admin/reconcile/crmwritelog/?skipped=was_permanent")
    assert "1 CRM write" in page.locator(".paginator").inner_text()
    page.goto(f"{url}/admin/integrations/crmconnection/")
    page.locator("#result_list a[href*='/change/']").first.click()
    page.locator(".field-external_account_json pre.json").wait_for()
    assert page_width(page) <= WIDTH
    shot(page, tmp_path, "admin-06-connection")
