"""Pause switches (kill switch): service, command, API, admin. Paused work stays queued."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from conduit.models import AuditEvent
from conduit.tenancy import system_scope
from integrations.connections.pauses import (
    InvalidPause,
    active_pauses,
    do_pause_sync,
    do_resume_sync,
    pause_for,
    target_for,
)
from integrations.models import CrmConnection, SyncPause
from reconcile.curation import plan_messages
from reconcile.delivery import deliver_write
from reconcile.models import CrmWriteLog
from reconcile.queue import reconcile_crm_writes
from tests.conftest import Tenant
from tests.reconcile_helpers import store_message, writes

pytestmark = pytest.mark.django_db


def live_conn(tenant: Tenant, crm: str = "hubspot") -> CrmConnection:
    with system_scope():
        return CrmConnection.objects.create(
            workspace=tenant.workspace, crm=crm, status="connected", dry_run=False, external_account_key="k"
        )


def events(name: str) -> list[AuditEvent]:
    with system_scope():
        return list(AuditEvent.objects.filter(event=name))


def test_each_scope_pauses_only_what_it_names(alice: Tenant, bob: Tenant) -> None:
    a_hub, a_sf, b_hub = live_conn(alice), live_conn(alice, "salesforce"), live_conn(bob)
    assert pause_for(a_hub) is None
    do_pause_sync(target_for(provider="hubspot"), reason="HubSpot incident", actor="ops")
    assert pause_for(a_hub) and pause_for(b_hub) and pause_for(a_sf) is None
    do_resume_sync(target_for(provider="hubspot"), actor="ops")
    do_pause_sync(target_for(workspace=alice.workspace), reason="customer asked", actor="ops")
    assert pause_for(a_hub) and pause_for(a_sf) and pause_for(b_hub) is None
    do_resume_sync(target_for(workspace=alice.workspace), actor="ops")
    do_pause_sync(target_for(connection=a_sf), reason="bad data", actor="ops")
    assert pause_for(a_sf) and pause_for(a_hub) is None
    do_pause_sync(target_for(everything=True), reason="SEV-1", actor="ops")
    assert all(pause_for(c) for c in (a_hub, a_sf, b_hub))
    assert active_pauses().everything is not None
    assert len(events("crm_sync_paused")) == 4 and len(events("crm_sync_resumed")) == 2


def test_pausing_twice_changes_nothing_and_bad_targets_are_refused(alice: Tenant) -> None:
    target = target_for(provider="salesforce")
    _, created = do_pause_sync(target, reason="one", actor="ops")
    again, created_again = do_pause_sync(target, reason="two", actor="ops")
    assert created and not created_again and again.reason == "one"
    assert not do_resume_sync(target_for(provider="hubspot"), actor="ops")
    with pytest.raises(InvalidPause, match="exactly one"):
        target_for()
    with pytest.raises(InvalidPause, match="exactly one"):
        target_for(provider="hubspot", everything=True)
    with pytest.raises(InvalidPause, match="Unknown provider"):
        target_for(provider="pipedrive")
    with pytest.raises(InvalidPause, match="reason"):
        do_pause_sync(target_for(provider="hubspot"), reason="  ", actor="ops")


def test_paused_writes_stay_queued_and_burn_no_attempts(alice: Tenant) -> None:
    conn = live_conn(alice)
    message = store_message(alice.workspace, "paused@x")
    plan_messages(alice.workspace, [message.pk])
    [row] = writes()
    do_pause_sync(target_for(connection=conn), reason="hold", actor="ops")
    assert reconcile_crm_writes(dispatch=lambda i, t: None).claimed == 0
    assert deliver_write(row.pk).code == "paused"  # a direct delivery is held too
    row.refresh_from_db()
    assert row.status == CrmWriteLog.Status.PLANNED and row.retry_count == 0 and not row.lease_token
    do_pause_sync(target_for(everything=True), reason="SEV-1", actor="ops")
    result = reconcile_crm_writes(dispatch=lambda i, t: None)
    assert result.paused.startswith("all CRM sync") and result.due == 0


def test_pause_sync_command_pauses_lists_and_resumes(alice: Tenant) -> None:
    conn = live_conn(alice)
    out = StringIO()
    call_command("pause_sync", "--provider", "hubspot", "--reason", "incident 42", stdout=out)
    call_command("pause_sync", "--connection", str(conn.pk), "--reason", "x", stdout=out)
    call_command("pause_sync", "--workspace", "alice", "--reason", "x", stdout=out)
    call_command("pause_sync", "--all", "--reason", "x", stdout=out)
    call_command("pause_sync", "--provider", "hubspot", "--reason", "again", stdout=out)
    call_command("pause_sync", "--list", stdout=out)
    text = out.getvalue()
    assert "paused scope=provider, provider=hubspot (reason: incident 42)" in text
    assert "already paused" in text and "incident 42" in text.split("already paused")[1]
    call_command("pause_sync", "--provider", "hubspot", "--resume", stdout=out)
    call_command("pause_sync", "--provider", "hubspot", "--resume", stdout=out)
    assert "resumed scope=provider" in out.getvalue() and "was not paused" in out.getvalue()
    with system_scope():
        SyncPause.objects.all().delete()
    call_command("pause_sync", "--list", stdout=out)
    assert "no pauses in force" in out.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "hubspot"], "reason"),
        (["--workspace", "nope", "--reason", "x"], "no workspace"),
        (["--connection", "999999", "--reason", "x"], "no CRM connection"),
        (["--reason", "x"], "exactly one"),
    ],
)
def test_pause_sync_command_refuses_bad_input(alice: Tenant, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("pause_sync", *args)
    with system_scope():
        assert not SyncPause.objects.exists()


def staff_client(tenant: Tenant) -> Client:
    tenant.user.is_staff = True
    tenant.user.save()
    return tenant.client()


def test_pause_sync_api_follows_the_runbook_shape(alice: Tenant) -> None:
    client = staff_client(alice)
    url = "/api/v1/admin/pause-sync"
    paused = client.post(f"{url}?provider=hubspot&pause=true")
    assert paused.status_code == 200, paused.content
    assert paused.json()["paused"] is True and paused.json()["changed"] is True
    assert "paused through the API" in paused.json()["reason"]
    assert client.post(f"{url}?provider=hubspot&pause=true").json()["changed"] is False
    resumed = client.post(f"{url}?provider=hubspot&pause=false")
    assert resumed.json() == {"scope": "provider", "provider": "hubspot", "paused": False, "changed": True}
    conn = live_conn(alice)
    body = {"connection_id": conn.pk, "pause": "true", "reason": "bad mapping"}
    assert client.post(url, body, content_type="application/json").json()["connection_id"] == conn.pk
    ws = client.post(f"{url}?workspace_id={alice.workspace.pk}&pause=true").json()
    assert ws["scope"] == "workspace"
    assert client.post(f"{url}?all=true&pause=true").json()["scope"] == "global"


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("provider=hubspot", 400, "invalid"),
        ("provider=pipedrive&pause=true", 400, "invalid_pause"),
        ("pause=true", 400, "invalid_pause"),
        ("workspace_id=abc&pause=true", 404, "not_found"),  # an id or a slug: no workspace "abc"
        ("workspace_id=%00&pause=true", 400, "invalid"),
        ("workspace_id=999999&pause=true", 404, "not_found"),
        ("connection_id=999999&pause=true", 404, "not_found"),
    ],
)
def test_pause_sync_api_refuses_bad_input_clearly(alice: Tenant, query: str, status: int, code: str) -> None:
    response = staff_client(alice).post(f"/api/v1/admin/pause-sync?{query}")
    assert response.status_code == status and response.json()["code"] == code, response.content
    with system_scope():
        assert not SyncPause.objects.exists()


def test_pause_sync_api_is_for_staff_only(alice: Tenant) -> None:
    assert Client().post("/api/v1/admin/pause-sync?provider=hubspot&pause=true").status_code in (401, 403)
    assert alice.client().post("/api/v1/admin/pause-sync?provider=hubspot&pause=true").status_code == 403
    with system_scope():
        assert not SyncPause.objects.exists()


def test_admin_adds_and_deletes_pauses_through_the_audited_services(
    admin_client: Client, alice: Tenant
) -> None:
    added = admin_client.post(
        "/admin/integrations/syncpause/add/",
        {"scope": "provider", "provider": "salesforce", "reason": "incident"},
    )
    assert added.status_code == 302, added.content
    with system_scope():
        pause = SyncPause.objects.get()
    assert pause.actor.startswith("user:") and len(events("crm_sync_paused")) == 1
    refused = admin_client.post("/admin/integrations/syncpause/add/", {"scope": "provider", "reason": "x"})
    assert refused.status_code == 200 and b"exactly one" in refused.content
    again = admin_client.post(
        "/admin/integrations/syncpause/add/", {"scope": "provider", "provider": "salesforce", "reason": "dup"}
    )
    assert again.status_code == 200 and "already paused" in again.content.decode()  # one pause per scope
    deleted = admin_client.post(f"/admin/integrations/syncpause/{pause.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302 and len(events("crm_sync_resumed")) == 1
    do_pause_sync(target_for(provider="hubspot"), reason="x", actor="ops")
    with system_scope():
        ids = [str(p.pk) for p in SyncPause.objects.all()]
    bulk = admin_client.post(
        "/admin/integrations/syncpause/",
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
    )
    assert bulk.status_code == 302 and len(events("crm_sync_resumed")) == 2
    with system_scope():
        assert not SyncPause.objects.exists()


def test_admin_pause_page_renders(admin_client: Client) -> Any:
    assert admin_client.get("/admin/integrations/syncpause/").status_code == 200
    assert admin_client.get("/admin/integrations/syncpause/add/").status_code == 200
