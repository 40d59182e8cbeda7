"""Runbook 001's customer controls on Settings → Integrations: a workspace admin's Pause Sync
(workspace scope, audited, shown on the page; operators' pauses shown, not liftable) and the
write settings (note or task per direction, internal domains, task due days)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from conduit.tenancy import system_scope
from integrations.connections.pauses import do_pause_sync, target_for
from integrations.models import SyncPause
from reconcile.curation import plan_messages
from reconcile.models import CrmWriteLog, WritePolicy
from reconcile.queue import reconcile_crm_writes
from tests.conftest import Tenant
from tests.ops_helpers import events, flash, member_client
from tests.reconcile_helpers import store_message, writes
from tests.writes_page_helpers import live_conn

pytestmark = pytest.mark.django_db
PAGE = "/settings/integrations/"
PAUSE = "/settings/integrations/pause/"
RESUME = "/settings/integrations/resume/"
WRITE_SETTINGS = "/settings/integrations/write-settings/"


def pauses() -> list[SyncPause]:
    with system_scope():
        return list(SyncPause.objects.order_by("id"))


# Pause Sync -----------------------------------------------------------------------------------


def test_an_admin_pauses_the_workspace_and_the_page_says_who_when_why_and_what_it_means(
    alice: Tenant, bob: Tenant
) -> None:
    live_conn(alice)
    client = alice.client()
    response = client.post(PAUSE, {"reason": "  CRM data migration this weekend "}, follow=True)
    assert response.status_code == 200
    assert any("Sync paused for Alice" in m for m in flash(response))
    [pause] = pauses()
    assert (pause.scope, pause.workspace_id, pause.reason) == (
        "workspace",
        alice.workspace.pk,
        "CRM data migration this weekend",
    )
    assert pause.actor == f"user:{alice.user.pk}"
    [event] = events("crm_sync_paused")
    assert event.actor == f"user:{alice.user.pk}" and event.workspace_id == alice.workspace.pk
    assert event.payload_json == {
        "scope": "workspace",
        "workspace_id": alice.workspace.pk,
        "reason": "CRM data migration this weekend",
    }
    page = response.content.decode()
    assert 'data-sync="paused"' in page and "CRM sync is paused" in page
    assert "nothing is lost and no retry attempts are used" in page
    assert "alice@example.com" in page and "CRM data migration this weekend" in page
    assert "data-resume" in page and "data-pause-button" not in page
    assert 'data-paused="workspace"' in page  # the HubSpot card says it too
    assert response.context["sync"]["pauses"][0]["since"] == pause.paused_at
    # bob's workspace is not paused, and his page says so
    assert 'data-sync="running"' in bob.client().get(PAGE).content.decode()


def test_a_blank_reason_gets_a_default_and_the_writes_stay_queued_until_resumed(alice: Tenant) -> None:
    live_conn(alice)
    planned = plan_messages(alice.workspace, [store_message(alice.workspace, "held@x").pk])
    assert planned.planned == 1
    alice.client().post(PAUSE, {"reason": ""})
    [pause] = pauses()
    assert pause.reason == "No reason given (paused on the Integrations page)"
    assert reconcile_crm_writes(dispatch=lambda i, t: None).claimed == 0
    [row] = writes()
    assert row.status == CrmWriteLog.Status.PLANNED and row.retry_count == 0
    alice.client().post(RESUME)
    assert reconcile_crm_writes(dispatch=lambda i, t: None).claimed == 1


def test_pausing_twice_keeps_one_pause_and_says_nothing_changed(alice: Tenant) -> None:
    client = alice.client()
    client.post(PAUSE, {"reason": "first"})
    response = client.post(PAUSE, {"reason": "second"}, follow=True)
    assert any("already paused" in m and "nothing changed" in m for m in flash(response))
    [pause] = pauses()
    assert pause.reason == "first"
    assert len(events("crm_sync_paused")) == 1


def test_an_admin_resumes_the_workspace_pause_and_it_is_audited(
    alice: Tenant, make_workspace: Callable[..., Tenant]
) -> None:
    live_conn(alice)
    admin = member_client(alice, make_workspace, role="admin")
    alice.client().post(PAUSE, {"reason": "migration"})
    response = admin.post(RESUME, follow=True)  # another admin of the workspace may lift it
    assert any("Sync resumed for Alice" in m for m in flash(response))
    assert pauses() == []
    [event] = events("crm_sync_resumed")
    assert event.workspace_id == alice.workspace.pk and event.payload_json["paused_for"] == "migration"
    assert event.actor.startswith("user:") and event.actor != f"user:{alice.user.pk}"
    assert 'data-sync="running"' in response.content.decode()
    again = admin.post(RESUME, follow=True)
    assert any("was not paused" in m and "nothing changed" in m for m in flash(again))
    assert len(events("crm_sync_resumed")) == 1


def test_a_pause_by_an_admin_since_removed_can_still_be_lifted(
    alice: Tenant, make_workspace: Callable[..., Tenant]
) -> None:
    former = make_workspace("former", role="admin")
    do_pause_sync(target_for(workspace=alice.workspace), reason="set by a former admin", actor=former.user)
    page = alice.client().get(PAGE)
    assert (
        page.context["sync"]["can_resume"] and page.context["sync"]["pauses"][0]["by"] == "former@example.com"
    )
    alice.client().post(RESUME)
    assert pauses() == []


def test_members_see_the_pause_but_cannot_pause_or_resume(
    alice: Tenant, make_workspace: Callable[..., Tenant]
) -> None:
    member = member_client(alice, make_workspace)
    page = member.get(PAGE).content.decode()
    assert 'data-sync="running"' in page and "data-pause-button" not in page
    assert "Only workspace owners and admins can pause or resume sync." in page
    assert member.post(PAUSE, {"reason": "x"}).status_code == 403
    assert pauses() == [] and events("crm_sync_paused") == []
    alice.client().post(PAUSE, {"reason": "migration"})
    page = member.get(PAGE).content.decode()
    assert 'data-sync="paused"' in page and "migration" in page and "data-resume" not in page
    assert member.post(RESUME).status_code == 403
    assert len(pauses()) == 1 and events("crm_sync_resumed") == []


@pytest.mark.parametrize(
    "operator",
    ["system:pause_sync", "staff"],  # the command; a staff user in the admin or the API
)
def test_an_operators_workspace_pause_is_shown_but_not_lifted_here(alice: Tenant, operator: str) -> None:
    actor: Any = operator
    if operator == "staff":
        with system_scope():
            actor = User.objects.create_user("ops@conduit.example", "ops@conduit.example", is_staff=True)
    do_pause_sync(target_for(workspace=alice.workspace), reason="abuse report INC-9", actor=actor)
    client = alice.client()
    page = client.get(PAGE)
    entry = page.context["sync"]["pauses"][0]
    assert (entry["by"], entry["own"]) == ("Conduit's operators", False)
    html = page.content.decode()
    assert "abuse report INC-9" in html and "Only Conduit's operators can lift this pause" in html
    assert "data-resume" not in html and "data-pause-button" not in html
    response = client.post(RESUME, follow=True)
    assert any("only they can lift that pause" in m for m in flash(response))
    assert len(pauses()) == 1 and events("crm_sync_resumed") == []
    assert "ops@conduit.example" not in response.content.decode()


def test_provider_and_global_pauses_are_shown_and_the_workspace_can_still_pause_itself(alice: Tenant) -> None:
    live_conn(alice)
    live_conn(alice, "salesforce")
    do_pause_sync(
        target_for(provider="hubspot"), reason="HubSpot incident INC-123", actor="system:pause_sync"
    )
    do_pause_sync(target_for(provider="zoho"), reason="not connected here", actor="system:pause_sync")
    do_pause_sync(target_for(everything=True), reason="SEV-1", actor="system:pause_sync")
    client = alice.client()
    page = client.get(PAGE)
    sync = page.context["sync"]
    assert [p["applies_to"] for p in sync["pauses"]] == [
        "Every CRM, for all of Conduit",
        "HubSpot, for all of Conduit",
    ]
    assert sync["operators_only"] and sync["can_pause"] and not sync["can_resume"]
    html = page.content.decode()
    assert "HubSpot incident INC-123" in html and "not connected here" not in html
    assert "Also pause this workspace" in html
    client.post(PAUSE, {"reason": "ours"})
    response = client.post(RESUME, follow=True)  # lifts only the workspace's own pause
    assert any("operators still hold a pause" in m for m in flash(response))
    assert sorted(p.scope for p in pauses()) == ["global", "provider", "provider"]


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("x" * 501, "Keep the reason to 500 characters or fewer."),
        ("before\x00after", "control characters"),
        ("bell\x07", "control characters"),
        ("two\nlines", "control characters"),
    ],
)
def test_a_bad_reason_is_a_form_error_and_nothing_changes(alice: Tenant, reason: str, message: str) -> None:
    response = alice.client().post(PAUSE, {"reason": reason})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Sync was not paused." in html and message in html
    assert 'data-sync="running"' in html
    assert pauses() == [] and events("crm_sync_paused") == []


def test_pause_and_resume_take_only_a_post_with_its_csrf_token(alice: Tenant) -> None:
    client = alice.client()
    assert client.get(PAUSE).status_code == 405 and client.get(RESUME).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice.user)
    assert strict.post(PAUSE, {"reason": "x"}).status_code == 403
    page = strict.get(PAGE)
    token = page.cookies["csrftoken"].value
    assert strict.post(PAUSE, {"reason": "x", "csrfmiddlewaretoken": token}).status_code == 302
    assert len(pauses()) == 1
    assert Client().post(PAUSE, {"reason": "x"}).status_code == 302  # signed out: to the login page
    assert len(pauses()) == 1


# Write settings -------------------------------------------------------------------------------

GOOD = {
    "inbound_operation": "create_note",
    "outbound_operation": "create_task",
    "internal_domains": "Alice.EXAMPLE, example.com\nexample.com;\n  acme-internal.co.uk.",
    "task_due_days": "5",
}


def policy(tenant: Tenant) -> WritePolicy | None:
    with system_scope():
        return WritePolicy.objects.filter(workspace=tenant.workspace).first()


def test_the_integrations_page_links_to_the_write_settings(alice: Tenant) -> None:
    html = alice.client().get(PAGE).content.decode()
    assert f'href="{WRITE_SETTINGS}"' in html and "Edit write settings" in html


def test_an_admin_sees_the_defaults_and_saves_write_settings_audited(alice: Tenant) -> None:
    client = alice.client()
    page = client.get(WRITE_SETTINGS)
    html = page.content.decode()
    assert page.status_code == 200 and "No write settings saved yet" in html
    assert "Email from outside (inbound)" in html and "Email from your team (outbound)" in html
    assert "Now: example.com." in html  # empty: the members' domains
    response = client.post(WRITE_SETTINGS, GOOD, follow=True)
    assert any("Write settings saved" in m for m in flash(response))
    saved = policy(alice)
    assert saved is not None
    assert (saved.inbound_operation, saved.outbound_operation, saved.task_due_days) == (
        "create_note",
        "create_task",
        5,
    )
    assert saved.internal_domains == ["alice.example", "example.com", "acme-internal.co.uk"]
    [event] = events("write_policy_updated")
    assert event.actor == f"user:{alice.user.pk}" and event.workspace_id == alice.workspace.pk
    assert event.payload_json == {
        "changed": {
            "outbound_operation": {"old": "create_note", "new": "create_task"},
            "internal_domains": {"old": [], "new": ["alice.example", "example.com", "acme-internal.co.uk"]},
            "task_due_days": {"old": 2, "new": 5},
        }
    }
    html = response.content.decode()
    assert "alice.example\nexample.com\nacme-internal.co.uk" in html and "Last changed" in html
    again = client.post(WRITE_SETTINGS, GOOD, follow=True)
    assert any(m == "Nothing changed." for m in flash(again))
    assert len(events("write_policy_updated")) == 1


def test_saving_the_defaults_unchanged_creates_nothing(alice: Tenant) -> None:
    defaults = {**GOOD, "outbound_operation": "create_note", "internal_domains": "", "task_due_days": "2"}
    response = alice.client().post(WRITE_SETTINGS, defaults, follow=True)
    assert any(m == "Nothing changed." for m in flash(response))
    assert policy(alice) is None and events("write_policy_updated") == []


def test_members_read_the_write_settings_but_cannot_change_them(
    alice: Tenant, make_workspace: Callable[..., Tenant]
) -> None:
    alice.client().post(WRITE_SETTINGS, GOOD)
    member = member_client(alice, make_workspace)
    page = member.get(WRITE_SETTINGS)
    html = page.content.decode()
    assert (
        page.status_code == 200
        and "data-read-only" in html
        and '<form method="post" class="stack' not in html
    )
    assert "a task" in html and "5 days after the email" in html and "acme-internal.co.uk" in html
    assert "Only workspace owners and admins can change the write settings." in html
    assert "View write settings" in member.get(PAGE).content.decode()
    response = member.post(WRITE_SETTINGS, {**GOOD, "task_due_days": "9"})
    assert response.status_code == 403
    saved = policy(alice)
    assert saved is not None and saved.task_due_days == 5
    assert len(events("write_policy_updated")) == 1


@pytest.mark.parametrize(
    ("field", "value", "messages"),
    [
        (
            "internal_domains",
            "sam@acme.com",
            ["“sam@acme.com”: enter the domain only, without “@” (acme.com)."],
        ),
        ("internal_domains", "@acme.com", ["“@acme.com”: enter the domain only, without “@” (acme.com)."]),
        (
            "internal_domains",
            "good.com, intranet, -bad.com, under_score.com",
            [
                "“intranet” is not a domain",
                "“-bad.com” is not a domain",
                "“under_score.com” is not a domain",
            ],
        ),
        ("internal_domains", "bücher.de", ["xn-- form"]),
        ("internal_domains", "a" * 64 + ".com", ["is not a domain"]),
        ("internal_domains", ".".join(["abcdefghij"] * 25) + ".com", ["longer than a domain can be"]),
        (
            "internal_domains",
            ", ".join(f"d{i}.example" for i in range(51)),
            ["at most 50 domains (you entered 51)"],
        ),
        ("internal_domains", "x" * 5001, ["Keep the list under 5000 characters"]),
        ("internal_domains", "acme.com\x00", ["may contain only domains"]),
        (
            "internal_domains",
            ", ".join(f"bad{i}" for i in range(15)),
            ["…and 5 more entries that are not domains."],
        ),
        ("task_due_days", "-1", ["a whole number from 0 to 30"]),
        ("task_due_days", "31", ["a whole number from 0 to 30"]),
        ("task_due_days", "2.5", ["a whole number from 0 to 30"]),
        ("task_due_days", "soon", ["a whole number from 0 to 30"]),
        ("task_due_days", "", ["a whole number from 0 to 30"]),
        ("outbound_operation", "create_deal", ["Choose a note or a task."]),
        ("inbound_operation", "", ["Choose a note or a task."]),
    ],
)
def test_bad_write_settings_are_refused_with_a_message_each_and_nothing_saved(
    alice: Tenant, field: str, value: str, messages: list[str]
) -> None:
    response = alice.client().post(WRITE_SETTINGS, {**GOOD, field: value})
    assert response.status_code == 400
    errors = " ".join(response.context["form"].errors[field])
    for message in messages:
        assert message in errors
    html = response.content.decode()
    assert "Nothing was saved." in html
    assert policy(alice) is None and events("write_policy_updated") == []


def test_write_settings_take_get_or_post_only(alice: Tenant) -> None:
    assert alice.client().put(WRITE_SETTINGS).status_code == 405


def test_saved_settings_change_the_next_plan(alice: Tenant) -> None:
    """Outbound -> task due in 5 days; inbound stays a note; a new internal domain is never written about."""
    conn = live_conn(alice)
    before = store_message(
        alice.workspace, "before@x", sender="Alice <alice@example.com>", to=["maya@acme.example"]
    )
    plan_messages(alice.workspace, [before.pk])
    assert [w.operation for w in writes()] == ["create_note"]
    alice.client().post(WRITE_SETTINGS, {**GOOD, "internal_domains": "example.com, partner.example"})
    outbound = store_message(
        alice.workspace,
        "out@x",
        sender="Alice <alice@example.com>",
        to=["Maya <maya@acme.example>", "pat@partner.example"],
    )
    inbound = store_message(
        alice.workspace, "in@x", sender="Maya <maya@acme.example>", to=["alice@example.com"]
    )
    plan_messages(alice.workspace, [outbound.pk, inbound.pk])
    task = writes(message=outbound)
    assert [(w.operation, w.target, w.connection_id) for w in task] == [
        ("create_task", "maya@acme.example", conn.pk)
    ]
    due = datetime.fromisoformat(task[0].payload["due_at"]) - datetime.fromisoformat(
        task[0].payload["occurred_at"]
    )
    assert due == timedelta(days=5)
    [note] = writes(message=inbound)
    assert note.operation == "create_note" and "due_at" not in note.payload
    assert [w.operation for w in writes(message=before)] == ["create_note"]  # planned before: kept


def test_an_unknown_operation_never_reaches_the_table(alice: Tenant) -> None:
    from reconcile.write_settings import WriteSettings, do_update_write_policy

    bad = WriteSettings("create_deal", "create_note", [], 2)
    with pytest.raises(ValueError, match="create_note or create_task"):
        do_update_write_policy(alice.workspace, bad, actor=alice.user)
    assert policy(alice) is None


def test_a_save_racing_another_admins_first_save_is_a_form_error(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    with system_scope():
        WritePolicy.objects.create(workspace=alice.workspace)  # the other admin's save, unseen below
    monkeypatch.setattr(
        "reconcile.write_settings.WritePolicy.objects.select_for_update",
        lambda: WritePolicy.objects.none(),
    )
    response = alice.client().post(WRITE_SETTINGS, GOOD)
    assert response.status_code == 400
    assert "Someone saved the write settings at the same moment" in response.content.decode()
    saved = policy(alice)
    assert saved is not None and saved.outbound_operation == "create_note"
    assert events("write_policy_updated") == []


def test_the_banner_names_what_an_operators_pause_holds(alice: Tenant) -> None:
    live_conn(alice)
    salesforce = live_conn(alice, "salesforce")
    do_pause_sync(target_for(provider="hubspot"), reason="HubSpot incident", actor="system:pause_sync")
    assert "sending nothing to HubSpot for now" in alice.client().get(PAGE).content.decode()
    do_pause_sync(target_for(connection=salesforce), reason="wrong org", actor="system:pause_sync")
    sync = alice.client().get(PAGE).context["sync"]
    assert sync["holds"] == "HubSpot or Salesforce"
    assert sync["pauses"][-1]["applies_to"] == "This workspace's Salesforce connection"


def test_the_console_checks_write_settings_as_the_page_does(admin_client: Client, alice: Tenant) -> None:
    with system_scope():
        policy = WritePolicy.objects.create(workspace=alice.workspace)
    url = f"/admin/reconcile/writepolicy/{policy.pk}/change/"
    form = {
        "workspace": alice.workspace.pk,
        "inbound_operation": "create_note",
        "outbound_operation": "create_task",
        "task_due_days": "3",
    }
    bad = admin_client.post(url, {**form, "internal_domains": '["sam@acme.com"]', "task_due_days": "400"})
    assert bad.status_code == 200
    assert "enter the domain only" in bad.content.decode() and "between 0 and 30 days" in bad.content.decode()
    good = admin_client.post(url, {**form, "internal_domains": '["ACME.com", "acme.com"]'})
    assert good.status_code == 302
    with system_scope():
        policy.refresh_from_db()
    assert (policy.internal_domains, policy.task_due_days) == (["acme.com"], 3)
