"""Runbook 001's customer controls in a real browser: a workspace admin pauses sync from Settings →
Integrations, sees the paused banner (who, since when, why, what it means), sees an operator's
pause it cannot lift, resumes, and edits the write settings (a refusal first, then a save)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conduit.models import Membership
from conduit.tenancy import system_scope
from integrations.connections.pauses import do_pause_sync, do_resume_sync, target_for
from integrations.models import CrmConnection, SyncPause
from reconcile.models import WritePolicy
from tests.conftest import Tenant, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def workspace_pauses(tenant: Tenant) -> list[SyncPause]:
    with system_scope():
        return list(SyncPause.objects.filter(workspace=tenant.workspace))


def test_an_admin_pauses_and_resumes_sync_and_edits_the_write_settings(
    page: Any, live_server: Any, alice: Tenant, make_workspace: Callable[..., Tenant], tmp_path: Path
) -> None:
    with system_scope():
        CrmConnection.objects.create(
            workspace=alice.workspace,
            crm="hubspot",
            status="connected",
            dry_run=False,
            external_account_key="hub-1",
            external_account_json={"hub_domain": "alice.hubspot.example"},
        )
    url = live_server.url
    sign_in(page, url, alice)
    page.goto(f"{url}/settings/integrations/")
    sync = page.locator("#sync")
    assert sync.get_attribute("data-sync") == "running"
    assert sync.locator("[data-sync-status]").inner_text() == "Running"
    shot(page, tmp_path, "controls-01-sync-running")

    # 1. pause, with a reason: the banner says who, since when, why and what it means
    sync.get_by_label("Reason (optional)").fill("CRM data migration this weekend")
    with page.expect_navigation():
        sync.get_by_role("button", name="Pause sync").click()
    assert "Sync paused for Alice" in page.locator(".flash").inner_text()
    assert sync.get_attribute("data-sync") == "paused"
    banner = sync.locator("[data-paused-banner]")
    assert banner.is_visible() and "nothing is lost and no retry attempts are used" in banner.inner_text()
    pause = sync.locator("[data-pause=workspace]")
    assert pause.locator("[data-paused-by]").inner_text() == "alice@example.com"
    assert pause.locator("[data-reason]").inner_text() == "CRM data migration this weekend"
    assert "UTC" in pause.inner_text()
    card_note = page.locator("section.card[data-crm=hubspot] [data-paused=workspace]")
    assert "paused for this workspace by alice@example.com" in card_note.inner_text()
    assert len(workspace_pauses(alice)) == 1
    shot(page, tmp_path, "controls-02-sync-paused")

    # 2. an operator's provider pause is shown with its reason; the admin cannot lift it
    do_pause_sync(
        target_for(provider="hubspot"), reason="HubSpot incident INC-123", actor="system:pause_sync"
    )
    page.reload()
    operators = sync.locator("[data-pause=provider]")
    assert operators.locator("[data-paused-by]").inner_text() == "Conduit's operators"
    assert "Only Conduit's operators can lift this pause" in operators.inner_text()
    shot(page, tmp_path, "controls-03-operator-pause-shown")

    # 3. resume: the workspace's own pause is lifted, the operator's stays
    with page.expect_navigation():
        sync.get_by_role("button", name="Resume sync").click()
    assert "Sync resumed for Alice" in page.locator(".flash").inner_text()
    assert workspace_pauses(alice) == []
    assert sync.locator("[data-pause=workspace]").count() == 0
    assert sync.locator("[data-pause=provider]").is_visible()
    assert sync.get_by_role("button", name="Also pause this workspace").is_visible()
    shot(page, tmp_path, "controls-04-resumed-operator-pause-stays")
    do_resume_sync(target_for(provider="hubspot"), actor="system:pause_sync")
    page.reload()
    assert sync.get_attribute("data-sync") == "running"

    # 4. a bad reason is refused on the page, nothing paused
    sync.get_by_label("Reason (optional)").evaluate("input => { input.maxLength = 1000; }")
    sync.get_by_label("Reason (optional)").fill("x" * 501)
    with page.expect_navigation():
        sync.get_by_role("button", name="Pause sync").click()
    assert "Keep the reason to 500 characters or fewer." in sync.locator("[data-form-error]").inner_text()
    assert workspace_pauses(alice) == []
    shot(page, tmp_path, "controls-05-bad-reason-refused")

    # 5. the write settings: a refusal names each bad entry; then a save
    page.goto(f"{url}/settings/integrations/")
    page.get_by_role("link", name="Edit write settings").click()
    page.wait_for_url(f"{url}/settings/integrations/write-settings/")
    assert "Now: example.com." in page.locator("[data-field=internal_domains]").inner_text()
    shot(page, tmp_path, "controls-06-write-settings-defaults")
    page.locator("[data-field=outbound_operation]").get_by_label("A task").check()
    page.get_by_label("Internal domains").fill("example.com\nsam@acme.com\nintranet")
    page.get_by_label("Task due after (days)").fill("45")
    with page.expect_navigation():
        page.get_by_role("button", name="Save write settings").click()
    errors = page.locator("[data-field=internal_domains] .field-error").all_inner_texts()
    assert errors == [
        "“sam@acme.com”: enter the domain only, without “@” (acme.com).",
        "“intranet” is not a domain (like example.com: letters, digits, hyphens and dots).",
    ]
    assert "from 0 to 30" in page.locator("[data-field=task_due_days] .field-error").inner_text()
    assert "Nothing was saved." in page.locator("[data-form-error]").inner_text()
    with system_scope():
        assert not WritePolicy.objects.exists()
    shot(page, tmp_path, "controls-07-write-settings-refused")

    page.get_by_label("Internal domains").fill("example.com, Example.org")
    page.get_by_label("Task due after (days)").fill("5")
    with page.expect_navigation():
        page.get_by_role("button", name="Save write settings").click()
    assert "Write settings saved" in page.locator(".flash").inner_text()
    assert page.get_by_label("Internal domains").input_value() == "example.com\nexample.org"
    assert page.locator("[data-field=outbound_operation]").get_by_label("A task").is_checked()
    with system_scope():
        saved = WritePolicy.objects.get(workspace=alice.workspace)
    assert (saved.outbound_operation, saved.task_due_days) == ("create_task", 5)
    shot(page, tmp_path, "controls-08-write-settings-saved")

    # 6. a member sees the pause and the settings, and no button to change them
    alice.client().post("/settings/integrations/pause/", {"reason": "quarter-end freeze"})
    member = make_workspace("mo", role="member")
    with system_scope():
        Membership.objects.filter(user=member.user).update(workspace=alice.workspace)
    page.context.clear_cookies()
    sign_in(page, url, member)
    page.goto(f"{url}/settings/integrations/")
    assert sync.get_attribute("data-sync") == "paused"
    assert sync.locator("[data-reason]").inner_text() == "quarter-end freeze"
    assert sync.get_by_role("button").count() == 0
    assert "Only workspace owners and admins can pause or resume sync." in sync.inner_text()
    shot(page, tmp_path, "controls-09-member-sees-pause")
    page.get_by_role("link", name="View write settings").click()
    page.wait_for_url(f"{url}/settings/integrations/write-settings/")
    facts = page.locator("[data-read-only]").inner_text()
    assert "a task" in facts and "example.com, example.org" in facts and "5 days after the email" in facts
    assert page.get_by_role("button", name="Save write settings").count() == 0
    shot(page, tmp_path, "controls-10-member-reads-write-settings")
