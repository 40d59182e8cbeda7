"""The operator console (Django admin): branding and names, the home page's panels, triage on a
write's own page, skip leaving the permanent-failure queue, and values shown readably."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from conduit.models import PeriodicRun
from conduit.tenancy import system_scope
from integrations.models import CrmConnection, PendingInstall, SyncPause, WebhookEvent
from reconcile.failures import failure_summary
from reconcile.models import CrmWriteLog
from reconcile.queue import queue_stats
from reconcile.services import counts_for, do_skip_writes
from tests.conftest import Tenant
from tests.ops_helpers import events, make_connection, make_write

pytestmark = pytest.mark.django_db
WRITES = "/admin/reconcile/crmwritelog/"
FIGURE = re.compile(
    r'<a href="(?P<url>[^"]+)" class="console-figure tone-(?P<tone>\w+)">\s*'
    r'<span class="figure-value">(?P<value>[^<]+)</span>\s*<span class="figure-label">(?P<label>[^<]+)</span>'
)


def panel(html: str, slug: str) -> dict[str, tuple[str, str]]:
    """label -> (value, url) of one panel of the home page."""
    found = re.search(
        rf'data-panel="{slug}">(.*?)</div>\s*(?:<div class="module console-panel"|</section>)', html, re.S
    )
    assert found, f"no panel {slug}"
    return {m["label"]: (m["value"], m["url"].replace("&amp;", "&")) for m in FIGURE.finditer(found.group(1))}


def staff_with(*codenames: str) -> Client:
    with system_scope():
        user = User.objects.create_user("viewer@conduit.example", password="x" * 12, is_staff=True)
        user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


PAYLOAD = {
    "subject": "Re: renewal",
    "text": "Renewal call summary",
    "occurred_at": "2026-11-02T09:30:00+00:00",
}


def permanent(conn: CrmConnection, **fields: Any) -> CrmWriteLog:
    fields.setdefault("payload", PAYLOAD)
    return make_write(
        conn, "failed", "validation_error", permanent_failure=True, next_retry_at=None, **fields
    )


def test_the_console_is_branded_and_every_model_has_a_proper_name(admin_client: Client) -> None:
    html = admin_client.get("/admin/").content.decode()
    assert "<title>Start of the day | Conduit operations</title>" in html
    assert ">Conduit operations</a>" in html and "Django administration" not in html
    for name in (
        "OAuth states",
        "CRM writes",
        "API tokens",
        "Operator tokens",
        "CRM connections",
        "Sync logs",
        "Webhook events",
        "Sync cursors",
        "Sync pauses",
        "Connection health",
        "Pending installs",
        "Write policies",
        "Retention policies",
        "Deal mappings",
        "Integration switches",
        "Beat job runs",
    ):
        assert f">{name}</a>" in html, name
    for stock in (
        "O auth",
        "Crm write",
        "Api token",
        "Staff token",
        "Workspace integrations",
        "Crm connection",
    ):
        assert stock not in html, stock
    for app in ("conduit", "integrations", "reconcile", "retention"):
        for model in apps.get_app_config(app).get_models():
            if not model.__module__.startswith(f"{app}."):
                continue  # a model a test defines under the app's label (tests/test_crypto.py)
            assert {"verbose_name", "verbose_name_plural"} <= set(model._meta.original_attrs), model


def test_the_home_page_counts_link_into_the_filtered_lists(
    admin_client: Client, alice: Tenant, bob: Tenant
) -> None:
    now = timezone.now()
    hubspot = make_connection(alice.workspace, "hubspot")
    salesforce = make_connection(bob.workspace, "salesforce", status=CrmConnection.Status.ERROR)
    permanent(hubspot), permanent(hubspot), permanent(salesforce)
    do_skip_writes([permanent(hubspot)], actor="ops")  # skipped: no longer a permanent failure
    make_write(hubspot, "failed", "timeout")  # still retrying: not permanent
    with system_scope():
        for key, hours in (("soon", 3), ("later", 10), ("gone", -1)):
            PendingInstall.objects.create(
                crm="hubspot", external_account_key=key, expires_at=now + timedelta(hours=hours)
            )
        for n, status in enumerate(["received", "received", "failed", "processed"]):
            WebhookEvent.objects.create(provider="hubspot", event_id=f"e{n}", status=status)
        SyncPause.objects.create(scope="provider", provider="zoho", reason="incident", actor="ops")
    html = admin_client.get("/admin/").content.decode()

    failures = panel(html, "permanent-failures")
    assert failures["HubSpot"][0] == "2" and failures["Salesforce"][0] == "1" and failures["Odoo"][0] == "0"
    assert "tone-bad" in html and "tone-ok" in html
    listing = admin_client.get(failures["HubSpot"][1]).content.decode()
    assert "2 CRM writes" in listing
    assert counts_for(hubspot).permanent == 2  # the customer card agrees with the console

    errors = panel(html, "connections-in-error")
    assert errors["Salesforce"][0] == "1" and errors["HubSpot"][0] == "0"
    assert "1 CRM connection" in admin_client.get(errors["Salesforce"][1]).content.decode()

    installs = panel(html, "pending-installs")
    assert installs["expire within 6 hours"][0] == "1" and installs["waiting to be claimed"][0] == "2"
    soon = admin_client.get(installs["expire within 6 hours"][1]).content.decode()
    assert "soon" in soon and "later" not in soon and "gone" not in soon

    webhooks = panel(html, "webhook-backlog")
    assert webhooks["received, not processed yet"][0] == "2" and webhooks["failed"][0] == "1"
    assert "2 webhook events" in admin_client.get(webhooks["received, not processed yet"][1]).content.decode()

    pauses = panel(html, "paused-sync")
    assert pauses == {"One CRM": ("1", "/admin/integrations/syncpause/?scope__exact=provider")}
    assert "1 sync pause" in admin_client.get(pauses["One CRM"][1]).content.decode()


def test_the_home_page_costs_the_same_queries_however_many_rows(admin_client: Client, alice: Tenant) -> None:
    conn = make_connection(alice.workspace, "hubspot")
    permanent(conn)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get("/admin/").status_code == 200
        return len(captured)

    few = queries()
    for crm in ("salesforce", "zoho", "odoo"):
        other = make_connection(alice.workspace, crm, status=CrmConnection.Status.ERROR)
        for _ in range(3):
            permanent(other)
    with system_scope():
        for n in range(5):
            WebhookEvent.objects.create(provider="hubspot", event_id=f"w{n}")
            PeriodicRun.objects.create(job=f"job{n}", slot=n, sent_at=timezone.now(), sent_by="beat")
    assert queries() == few


def test_beat_jobs_show_their_last_run_and_late_ones_stand_out(admin_client: Client) -> None:
    with system_scope():
        jobs = {job.task: job for job in PeriodicTask.objects.filter(interval__isnull=False)}
    reconcile_job = jobs["reconcile.reconcile_crm_writes"]  # every 10 minutes
    on_time = timezone.now() - timedelta(minutes=4)
    late = timezone.now() - timedelta(hours=3)
    with system_scope():
        PeriodicRun.objects.create(job=reconcile_job.task, slot=1, sent_at=late, sent_by="beat")
        PeriodicRun.objects.create(job=reconcile_job.task, slot=2, sent_at=on_time, sent_by="beat")
        other = next(job for task, job in jobs.items() if task != reconcile_job.task)
        PeriodicRun.objects.create(job=other.task, slot=1, sent_at=late, sent_by="beat")
    html = admin_client.get("/admin/").content.decode()
    beat = panel(html, "beat-jobs-last-run")
    assert beat[reconcile_job.name][0] == "4\xa0minutes ago"
    assert beat[reconcile_job.name][1] == f"/admin/conduit/periodicrun/?job={reconcile_job.task}"
    assert beat[other.name][0] == "3\xa0hours ago"
    pattern = (
        rf'tone-(\w+)">\s*<span class="figure-value">[^<]+</span>\s*<span class="figure-label">{other.name}<'
    )
    late_row = re.search(pattern, html)
    assert late_row and late_row.group(1) == "bad"
    assert "4 beat job runs" not in admin_client.get(beat[reconcile_job.name][1]).content.decode()


def test_panels_follow_the_staff_users_permissions(alice: Tenant) -> None:
    viewer = staff_with("view_crmwritelog")
    html = viewer.get("/admin/").content.decode()
    assert 'data-panel="permanent-failures"' in html
    assert 'data-panel="connections-in-error"' not in html and 'data-panel="beat-jobs-last-run"' not in html


def test_a_skipped_write_leaves_the_permanent_failure_queue_and_stays_findable(
    admin_client: Client, alice: Tenant
) -> None:
    conn = make_connection(alice.workspace, "hubspot")
    row, kept = permanent(conn), permanent(conn)
    planned = make_write(conn, "planned")
    assert do_skip_writes([row, planned], actor="ops", reason="customer asked") == 2
    row.refresh_from_db()
    assert (
        row.status == CrmWriteLog.Status.SKIPPED and not row.permanent_failure and row.next_retry_at is None
    )
    assert row.last_error_code == "validation_error"  # why it failed is kept
    [event] = [e for e in events("crm_write_skipped") if e.target_id == str(row.pk)]
    assert event.payload_json["permanent_failure"] is True and event.payload_json["was"] == "failed"

    queue = admin_client.get(f"{WRITES}?permanent_failure__exact=1").content.decode()
    assert f"{WRITES}{kept.pk}/change/" in queue and f"{WRITES}{row.pk}/change/" not in queue
    was_permanent = admin_client.get(f"{WRITES}?skipped=was_permanent").content.decode()
    assert (
        f"{WRITES}{row.pk}/change/" in was_permanent and f"{WRITES}{planned.pk}/change/" not in was_permanent
    )
    by_operator = admin_client.get(f"{WRITES}?skipped=operator").content.decode()
    assert f"{WRITES}{row.pk}/change/" in by_operator and f"{WRITES}{planned.pk}/change/" in by_operator

    counts = counts_for(conn)
    assert (counts.permanent, counts.skipped) == (1, 2)
    assert failure_summary(alice.workspace, "hubspot", calls_since=timezone.now()).permanent_failures == 1
    with system_scope():
        assert queue_stats(now=timezone.now())["permanent_failures"] == 1


def test_a_writes_page_has_the_triage_buttons_and_they_are_audited(
    admin_client: Client, alice: Tenant
) -> None:
    conn = make_connection(alice.workspace, "hubspot")
    row, other = permanent(conn), permanent(conn)
    page = admin_client.get(f"{WRITES}{row.pk}/change/").content.decode()
    assert f'formaction="{WRITES}{row.pk}/retry/"' in page and f'formaction="{WRITES}{row.pk}/skip/"' in page
    assert "Conduit gave up on this write (validation_error)" in page

    done = admin_client.post(f"{WRITES}{row.pk}/retry/", follow=True)
    assert "Requeued: the write is due now" in done.content.decode()
    row.refresh_from_db()
    assert row.status == "failed" and not row.permanent_failure and row.retry_count == 0
    [retried] = events("crm_write_retry_requested")
    assert retried.payload_json["reason"] == "admin: retry now" and retried.actor.startswith("user:")

    skipped = admin_client.post(f"{WRITES}{other.pk}/skip/", follow=True)
    assert "Skipped: the write will not be sent" in skipped.content.decode()
    other.refresh_from_db()
    assert other.status == "skipped" and not other.permanent_failure
    assert events("crm_write_skipped")[0].payload_json["reason"] == "admin: skip"
    after = admin_client.get(f"{WRITES}{other.pk}/change/").content.decode()
    assert "Nothing to triage: this write is skipped." in after and "/skip/" not in after


def test_triage_refuses_what_it_cannot_do_and_changes_nothing(admin_client: Client, alice: Tenant) -> None:
    conn = make_connection(alice.workspace, "hubspot")
    done = make_write(conn, "succeeded", external_id="n-1", next_retry_at=None, payload=PAYLOAD)
    assert admin_client.get(f"{WRITES}{done.pk}/retry/").status_code == 405
    refused = admin_client.post(f"{WRITES}{done.pk}/skip/", follow=True).content.decode()
    assert "Not skipped: the write is succeeded; nothing changed." in refused
    assert "Not retried" in admin_client.post(f"{WRITES}{done.pk}/retry/", follow=True).content.decode()
    assert admin_client.post(f"{WRITES}999999/skip/").status_code == 404
    done.refresh_from_db()
    assert (
        done.status == "succeeded"
        and events("crm_write_skipped") == events("crm_write_retry_requested") == []
    )

    row = permanent(conn)
    viewer = staff_with("view_crmwritelog")
    page = viewer.get(f"{WRITES}{row.pk}/change/").content.decode()
    assert "Triage" not in page and "/retry/" not in page
    assert viewer.post(f"{WRITES}{row.pk}/skip/").status_code == 403
    listing = viewer.get(WRITES).content.decode()
    assert 'value="skip"' not in listing and 'value="retry_now"' not in listing
    viewer.post(WRITES, {"action": "skip", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.permanent_failure and row.status == "failed" and events("crm_write_skipped") == []


def test_change_pages_wrap_json_and_say_booleans_in_words(admin_client: Client, alice: Tenant) -> None:
    conn = make_connection(
        alice.workspace,
        "salesforce",
        external_account_json={"instance_url": "https://acme.my.salesforce.com", "org_id": "00D"},
    )
    row = permanent(conn, outcome_unknown=False)
    page = admin_client.get(f"{WRITES}{row.pk}/change/").content.decode()
    outcome = re.search(r"Outcome unknown:?</label>\s*<div class=\"readonly\">(\w+)</div>", page)
    assert outcome and outcome.group(1) == "No"
    assert "icon-no.svg" not in page and "icon-yes.svg" not in page
    assert '<pre class="json">' in page
    conn_page = admin_client.get(f"/admin/integrations/crmconnection/{conn.pk}/change/").content.decode()
    assert (
        '<pre class="json">{\n  &quot;instance_url&quot;: &quot;https://acme.my.salesforce.com&quot;'
        in conn_page
    )
    assert "access_token" not in conn_page


def test_long_cells_are_clipped_with_the_full_value_on_hover(admin_client: Client, alice: Tenant) -> None:
    conn = make_connection(alice.workspace, "hubspot")
    target = "a.very.long.participant.address." + "x" * 60 + "@customer.example"
    permanent(conn, target=target)
    listing = admin_client.get(WRITES).content.decode()
    assert f'<span class="clip" title="{target}">{target}</span>' in listing
    assert "Failed, <strong>permanent</strong>" in listing
    assert "icon-yes.svg" not in listing and "icon-no.svg" not in listing
    assert "conduit-admin.css" in listing


def test_lists_cost_the_same_queries_however_many_rows(
    admin_client: Client, alice: Tenant, bob: Tenant
) -> None:
    """Cells that name a related object (workspace, user) do not query once per row."""
    conn = make_connection(alice.workspace, "hubspot")
    permanent(conn)
    lists = [
        "/admin/reconcile/crmwritelog/",
        "/admin/conduit/membership/",
        "/admin/integrations/crmconnection/",
    ]

    def queries(path: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(path).status_code == 200
        return len(captured)

    few = {path: queries(path) for path in lists}
    for other in (make_connection(bob.workspace, "salesforce"), make_connection(alice.workspace, "zoho")):
        permanent(other), permanent(other)
    assert {path: queries(path) for path in lists} == few


@pytest.mark.parametrize(
    ("crm", "operation", "sent"),
    [
        ("salesforce", "create_note", "A completed Task"),
        ("salesforce", "create_task", "A Task"),
        ("hubspot", "create_note", "A note"),
        ("odoo", "create_task", "A To-Do activity"),
    ],
)
def test_a_writes_page_names_what_the_crm_receives(
    admin_client: Client, alice: Tenant, crm: str, operation: str, sent: str
) -> None:
    row = make_write(make_connection(alice.workspace, crm), operation=operation)
    page = admin_client.get(f"{WRITES}{row.pk}/change/").content.decode()
    assert re.search(rf"Sent as:?</label>\s*<div class=\"readonly\">{sent}</div>", page), page[:200]
