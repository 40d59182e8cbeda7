"""Operator endpoints of the operations API, operator tokens, and what switching a tenant's
integration off stops."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from conduit.models import AuditEvent, StaffToken
from conduit.services import NotStaff, do_create_staff_token, do_revoke_staff_token
from conduit.tenancy import system_scope
from integrations.connections.pauses import do_pause_sync, target_for
from integrations.health.checks import connections_to_check
from integrations.models import IntegrationSetting, WebhookEvent
from reconcile.delivery import claim, deliver_write
from reconcile.queue import reconcile_crm_writes
from tests.conftest import Tenant
from tests.ops_helpers import (
    bearer,
    get,
    make_connection,
    make_health,
    make_log,
    make_staff,
    make_write,
    send,
    staff_token,
    workspace_token,
)

pytestmark = pytest.mark.django_db
SWITCH = "/api/v1/admin/tenants/{}/integrations/{}"


@pytest.fixture
def ops() -> str:
    return staff_token()


def switch(tenant: Any, provider: str, token: str | None, body: Any) -> Any:
    return send("patch", SWITCH.format(tenant, provider), token, body)


def test_disable_and_enable_a_tenants_integration_is_audited_once(alice: Tenant, ops: str) -> None:
    conn = make_connection(alice.workspace)
    off = switch(alice.workspace.pk, "hubspot", ops, {"enabled": False, "reason": "cascading 5xx"})
    assert off.status_code == 200, off.content
    assert off.json() | {"changed_at": None} == {
        "tenant_id": alice.workspace.pk,
        "provider": "hubspot",
        "enabled": False,
        "changed": True,
        "reason": "cascading 5xx",
        "changed_by": off.json()["changed_by"],
        "changed_at": None,
    }
    again = switch(alice.workspace.slug, "hubspot", ops, {"enabled": False})
    assert again.json()["changed"] is False
    on = switch(alice.workspace.pk, "hubspot", ops, {"enabled": True})
    assert on.json()["enabled"] is True and on.json()["changed"] is True
    with system_scope():
        events = list(AuditEvent.objects.filter(event__startswith="integration_").order_by("id"))
    assert [e.event for e in events] == ["integration_disabled", "integration_enabled"]
    assert events[0].payload_json["connection_id"] == conn.pk and events[0].workspace == alice.workspace


@pytest.mark.parametrize(
    ("tenant", "provider", "body", "status", "code"),
    [
        ("{ws}", "hubspot", {"enabled": "false"}, 400, "invalid"),
        ("{ws}", "hubspot", {}, 400, "invalid"),
        ("{ws}", "hubspot", ["enabled"], 400, "invalid"),
        ("999999", "hubspot", {"enabled": False}, 404, "not_found"),
        ("nobody-here", "hubspot", {"enabled": False}, 404, "not_found"),
        ("{ws}", "pipedrive", {"enabled": False}, 404, "unknown_provider"),
    ],
)
def test_switch_bad_input_changes_nothing(
    alice: Tenant, ops: str, tenant: str, provider: str, body: Any, status: int, code: str
) -> None:
    response = switch(tenant.format(ws=alice.workspace.pk), provider, ops, body)
    assert response.status_code == status, response.content
    assert response.json()["code"] == code and response.json()["message"]
    with system_scope():
        assert not IntegrationSetting.objects.exists()


def test_operator_endpoints_refuse_everyone_but_operators(alice: Tenant, ops: str) -> None:
    paths = ["/api/v1/health", "/api/v1/sync/logs", "/api/v1/system-metrics/queues"]
    customer = workspace_token(alice)
    for path in paths:
        assert get(path).status_code == 401
        assert get(path, customer).status_code == 401
        assert get(path, "cds_forged").json()["code"] == "invalid_token"
        assert get(path, ops).status_code == 200
    assert switch(alice.workspace.pk, "hubspot", customer, {"enabled": False}).status_code == 401
    refused = alice.client().get("/api/v1/health")
    assert refused.status_code == 403 and "operators only" in refused.json()["message"]
    staff = make_staff("staff-session@conduit.example")
    client = Client()
    client.force_login(staff)
    assert client.get("/api/v1/health").status_code == 200


def test_operator_token_stops_with_revocation_or_lost_staff(ops: str) -> None:
    with system_scope():
        token = StaffToken.objects.get()
    assert get("/api/v1/health", ops).status_code == 200
    token.user.is_staff = False
    token.user.save()
    assert get("/api/v1/health", ops).status_code == 401
    token.user.is_staff = True
    token.user.save()
    do_revoke_staff_token(token, actor=token.user)
    do_revoke_staff_token(token, actor=token.user)  # twice: nothing more happens
    assert get("/api/v1/health", ops).status_code == 401
    with system_scope():
        events = list(
            AuditEvent.objects.filter(event__startswith="staff_token").values_list("event", flat=True)
        )
    assert sorted(events) == ["staff_token_created", "staff_token_revoked"]


def test_only_staff_can_hold_operator_tokens(alice: Tenant) -> None:
    with pytest.raises(NotStaff):
        do_create_staff_token(alice.user, "nope")


def test_settings_page_creates_shows_once_and_revokes_operator_tokens(alice: Tenant) -> None:
    client = alice.client()
    assert client.post("/settings/operator-tokens/", {"name": "x"}).status_code == 404
    assert b"Operator tokens" not in client.get("/settings/").content
    with system_scope():
        User.objects.filter(pk=alice.user.pk).update(is_staff=True)
    assert client.post("/settings/operator-tokens/", {"name": ""}).status_code == 302
    assert client.post("/settings/operator-tokens/", {"name": "pager"}).status_code == 302
    page = client.get("/settings/").content.decode()
    with system_scope():
        token = StaffToken.objects.get()
    assert "Operator tokens" in page and "cds_" in page and token.prefix in page
    assert "cds_" not in client.get("/settings/").content.decode().replace(token.prefix, "")
    assert client.post(f"/settings/operator-tokens/{token.pk}/revoke/").status_code == 302
    with system_scope():
        token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_disabled_integration_sends_no_writes_and_gets_no_health_checks(alice: Tenant, ops: str) -> None:
    conn = make_connection(alice.workspace)
    write = make_write(conn, "planned", next_retry_at=timezone.now() - timedelta(minutes=1))
    switch(alice.workspace.pk, "hubspot", ops, {"enabled": False, "reason": "retry storm INC-7"})
    card = alice.client().get("/settings/integrations/").content.decode()
    assert "data-switched-off" in card and "retry storm INC-7" in card

    dispatched: list[int] = []
    result = reconcile_crm_writes(dispatch=lambda pk, token: dispatched.append(pk))
    assert result.due == 0 and dispatched == []
    assert connections_to_check() == []
    leased = claim(write.pk, now=timezone.now())
    assert leased is not None
    assert deliver_write(write.pk, leased.lease_token).code == "integration_disabled"
    status = get("/api/v1/admin/sync-status", ops, workspace_id=alice.workspace.pk).json()
    assert status["connections"][0]["sync_enabled"] is False

    switch(alice.workspace.pk, "hubspot", ops, {"enabled": True})
    assert "data-switched-off" not in alice.client().get("/settings/integrations/").content.decode()
    assert connections_to_check() == [conn.pk]
    result = reconcile_crm_writes(dispatch=lambda pk, token: dispatched.append(pk))
    assert dispatched == [write.pk]


def test_sync_status_shows_connections_switches_and_webhooks(alice: Tenant, bob: Tenant, ops: str) -> None:
    hubspot = make_connection(alice.workspace, "hubspot")
    make_connection(alice.workspace, "salesforce")
    do_pause_sync(target_for(connection=hubspot), reason="bad mapping", actor="test")
    with system_scope():
        WebhookEvent.objects.create(
            provider="hubspot", event_id="e1", workspace=alice.workspace, status="failed"
        )
        WebhookEvent.objects.create(provider="hubspot", event_id="e2", workspace=bob.workspace)

    response = get("/api/v1/admin/sync-status", ops, workspace_id=alice.workspace.slug)

    assert response.status_code == 200, response.content
    body = response.json()
    assert [(c["provider"], c["kill_switch"], c["sync_enabled"]) for c in body["connections"]] == [
        ("hubspot", True, True),
        ("salesforce", False, True),
    ]
    assert body["connections"][0]["kill_switch_reason"] == "bad mapping"
    assert [(e["event_id"], e["status"]) for e in body["webhook_events"]] == [("e1", "failed")]
    assert get("/api/v1/admin/sync-status", ops).status_code == 400
    assert get("/api/v1/admin/sync-status", ops, workspace_id="424242").status_code == 404


def test_health_matrix_reports_ok_degraded_and_down(
    alice: Tenant, bob: Tenant, make_workspace, ops: str
) -> None:  # type: ignore[no-untyped-def]
    carol = make_workspace("carol")
    make_health(make_connection(alice.workspace, "hubspot"), "ok")
    make_health(make_connection(bob.workspace, "hubspot"), "error", "access_token_rejected")
    make_connection(carol.workspace, "hubspot")  # not checked yet
    make_health(make_connection(alice.workspace, "salesforce"), "error", "unreachable")

    body = get("/api/v1/health", ops).json()

    rows = {row["provider"]: row for row in body["providers"]}
    assert rows["hubspot"]["status"] == "degraded"
    assert rows["hubspot"]["counts"] == {"ok": 1, "warning": 0, "error": 1}
    assert rows["hubspot"]["connections"] == 3 and rows["hubspot"]["unchecked"] == 1
    assert rows["salesforce"]["status"] == "down" and body["status"] == "down"
    one = get("/api/v1/health", ops, provider="hubspot").json()
    assert [r["provider"] for r in one["providers"]] == ["hubspot"] and one["status"] == "degraded"
    assert get("/api/v1/health", ops, provider="pipedrive").status_code == 404


def test_health_matrix_of_a_quiet_provider_is_ok(ops: str) -> None:
    body = get("/api/v1/health", ops, provider="salesforce").json()
    assert body["providers"][0] | {"paused": False} == {
        "provider": "salesforce",
        "status": "ok",
        "connections": 0,
        "unchecked": 0,
        "counts": {"ok": 0, "warning": 0, "error": 0},
        "paused": False,
    }


def test_system_sync_logs_across_workspaces_with_limit(alice: Tenant, bob: Tenant, ops: str) -> None:
    make_log(alice.workspace, ok=False, code="rate_limited")
    make_log(bob.workspace, ok=True)
    make_log(None, ok=True, operation="oauth_token")
    make_log(bob.workspace, "salesforce", ok=True)

    hubspot = get("/api/v1/sync/logs", ops, provider="hubspot", limit=2).json()
    assert hubspot["count"] == 3 and len(hubspot["results"]) == 2
    assert {"timestamp", "level", "message"} <= set(hubspot["results"][0])
    alice_only = get("/api/v1/sync/logs", ops, workspace_id=alice.workspace.pk).json()
    assert alice_only["count"] == 1 and alice_only["results"][0]["level"] == "error"
    assert get("/api/v1/sync/logs", ops, provider="pipedrive").status_code == 404
    assert get("/api/v1/sync/logs", ops, limit="x").status_code == 400


def test_queue_metrics_count_due_backlog_and_oldest(alice: Tenant, ops: str) -> None:
    conn = make_connection(alice.workspace)
    make_write(conn, "planned", next_retry_at=timezone.now() - timedelta(minutes=10))
    make_write(conn, "failed", "transient_error", next_retry_at=timezone.now() + timedelta(hours=1))
    make_write(conn, "failed", "not_connected", next_retry_at=None)
    make_write(conn, "failed", "validation_failed", permanent_failure=True)
    make_write(conn, "sending", lease_expires_at=timezone.now() - timedelta(minutes=1))
    with system_scope():
        WebhookEvent.objects.create(
            provider="hubspot", event_id="w1", received_at=timezone.now() - timedelta(minutes=3)
        )

    body = get("/api/v1/system-metrics/queues", ops).json()

    writes = body["writes"]
    assert writes | {"oldest_due_age_seconds": 0} == {
        "due": 1,
        "backlog": 3,
        "parked": 1,
        "sending": 1,
        "expired_leases": 1,
        "permanent_failures": 1,
        "oldest_due_age_seconds": 0,
    }
    assert 590 <= writes["oldest_due_age_seconds"] <= 700
    assert body["webhooks"]["received"] == 1 and body["webhooks"]["oldest_received_age_seconds"] >= 170
    assert body["broker"]["queue"] == "celery" and isinstance(body["broker"]["length"], int)


def test_queue_metrics_report_an_unreachable_broker(ops: str, settings: Any) -> None:
    from conduit.celery import app

    previous = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        broker = get("/api/v1/system-metrics/queues", ops).json()["broker"]
    finally:
        app.conf.broker_url = previous
    assert broker["length"] is None and broker["error"]


def test_pause_sync_takes_an_operator_token(ops: str) -> None:
    response = Client().post("/api/v1/admin/pause-sync?provider=hubspot&pause=true", **bearer(ops))
    assert response.status_code == 200 and response.json()["paused"] is True
