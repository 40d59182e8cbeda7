"""Connection health: verdicts ok / warning / error against the sandbox CRMs, the sustained
auth-failure rule, scope drift, recovery after reconnect, the hourly waves, the command twin,
"check now" and the card; never a token in the verdict or its audit."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import requests
from django.core.management import CommandError, call_command
from django.utils import timezone

from conduit.models import AuditEvent
from conduit.tenancy import system_scope
from integrations.connections import health_rows as health_state
from integrations.health import checks as health
from integrations.health import tasks
from integrations.health.checks import check_connection, do_check_now, run_checks, wave_plan
from integrations.models import ConnectionHealth, CrmConnection, SyncLog
from integrations.providers import get_provider
from tests.conftest import Tenant
from tests.provider_helpers import metric_value
from tests.reconcile_helpers import connect_crm, sandbox_fault
from tests.test_tokens import connected


def healthy(tenant: Tenant, crm: str, base: str, **fields: Any) -> CrmConnection:
    """A connected connection with every scope Conduit needs (a sandbox grant)."""
    status = fields.pop("status", "connected")
    conn = connected(
        tenant.workspace, crm, base, granted_scopes=list(get_provider(crm).required_scopes), **fields
    )
    if status != "connected":
        with system_scope():
            CrmConnection.objects.filter(pk=conn.pk).update(status=status)
        conn.status = status
    return conn


def row(conn: CrmConnection) -> ConnectionHealth:
    with system_scope():
        return ConnectionHealth.objects.get(workspace=conn.workspace_id, crm=conn.crm)


def reload(conn: CrmConnection) -> CrmConnection:
    with system_scope():
        conn.refresh_from_db()
    return conn


def transitions(conn: CrmConnection) -> list[tuple[Any, Any, Any]]:
    with system_scope():
        events = AuditEvent.objects.filter(event="connection_health_changed", workspace=conn.workspace_id)
        return [
            (e.payload_json["from"], e.payload_json["to"], e.payload_json["reason"])
            for e in events.order_by("id")
        ]


HEALTH_PATH = {"hubspot": "account-info", "salesforce": "userinfo"}


@pytest.fixture(autouse=True)
def _refusals_count_at_once(settings: Any) -> None:
    """These tests check back to back; the spacing rule has its own test."""
    settings.CONDUIT_HEALTH_AUTH_RUN_SPACING_SECONDS = 0


@pytest.mark.django_db
@pytest.mark.parametrize("crm", ["hubspot", "salesforce"])
def test_a_passing_check_is_ok_with_details_and_no_secret(crm_env: Any, alice: Tenant, crm: str) -> None:
    conn = healthy(alice, crm, crm_env[crm])
    result = check_connection(conn.pk)
    assert (result.status, result.reason, result.previous) == ("ok", "ok", "")
    health_row = row(conn)
    assert health_row.status == "ok" and health_row.last_ok_at == health_row.last_checked_at
    assert health_row.consecutive_failures == 0
    details = health_row.details_json
    assert details["http_status"] == 200 and details["latency_ms"] >= 0
    assert details["scopes"]["missing"] == [] and details["scopes"]["required"]
    budget = details["rate_limit"]
    assert budget["blocked_for_seconds"] == 0
    if crm == "hubspot":  # Salesforce is paced by its daily allocation (in account.api_usage), not a window
        assert budget["limit"] > 0 and 0 < budget["remaining"] <= budget["limit"]
    assert ("token_expires_at" in details) and details["account"]
    conn = reload(conn)
    stored = json.dumps(details) + json.dumps([e.payload_json for e in AuditEvent.objects.all()])
    assert conn.access_token not in stored and conn.refresh_token not in stored
    assert transitions(conn) == [(None, "ok", "ok")]


@pytest.mark.django_db
def test_rate_limit_and_unreachable_are_warnings_and_recover(crm_env: Any, alice: Tenant) -> None:
    conn = healthy(alice, "hubspot", crm_env["hubspot"])
    failures = metric_value("crm_connection_failures_total", provider="hubspot", status="warning")
    sandbox_fault(crm_env["hubspot"], kind="rate_limit", retry_after=7, path_contains=HEALTH_PATH["hubspot"])
    assert check_connection(conn.pk).status == "warning"
    assert metric_value("crm_connection_failures_total", provider="hubspot", status="warning") == failures + 1
    assert (row(conn).reason, row(conn).details_json["retry_after_seconds"]) == ("rate_limited", 7.0)
    sandbox_fault(crm_env["hubspot"], kind="server_error", count=5, path_contains=HEALTH_PATH["hubspot"])
    assert check_connection(conn.pk).reason == "unreachable"
    assert row(conn).consecutive_failures == 2 and row(conn).details_json["http_status"] >= 500
    requests.delete(f"{crm_env['hubspot']}/_sandbox/faults", timeout=5)
    assert check_connection(conn.pk).status == "ok"
    assert row(conn).consecutive_failures == 0
    assert reload(conn).status == "connected"
    assert transitions(conn) == [
        (None, "warning", "rate_limited"),
        ("warning", "warning", "unreachable"),
        ("warning", "ok", "ok"),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("crm", ["hubspot", "salesforce"])
def test_sustained_auth_failure_flips_the_connection_to_error(
    crm_env: Any, alice: Tenant, crm: str, settings: Any
) -> None:
    settings.CONDUIT_HEALTH_AUTH_FAILURES_TO_ERROR = 2
    conn = healthy(alice, crm, crm_env[crm])
    # each check: a 401, a refresh that works, a second 401
    sandbox_fault(crm_env[crm], kind="invalid_session", count=2, path_contains=HEALTH_PATH[crm])
    first = check_connection(conn.pk)
    assert (first.status, first.reason) == ("warning", "auth_failed")
    assert reload(conn).status == "connected" and row(conn).consecutive_auth_failures == 1
    sandbox_fault(crm_env[crm], kind="invalid_session", count=2, path_contains=HEALTH_PATH[crm])
    second = check_connection(conn.pk)
    assert (second.status, second.reason) == ("error", "access_token_rejected")
    conn = reload(conn)
    assert (conn.status, conn.last_error, conn.access_token) == ("error", "access_token_rejected", "")
    assert row(conn).details_json["auth_failures_in_a_row"] == 2
    assert transitions(conn) == [
        (None, "warning", "auth_failed"),
        ("warning", "error", "access_token_rejected"),
    ]
    # an errored connection is not called again
    calls = SyncLog.objects.filter(operation="health_check").count()
    assert check_connection(conn.pk).status == "error"
    assert SyncLog.objects.filter(operation="health_check").count() == calls


@pytest.mark.django_db
def test_an_auth_failure_between_passing_checks_does_not_accumulate(crm_env: Any, alice: Tenant) -> None:
    conn = healthy(alice, "hubspot", crm_env["hubspot"])
    for _ in range(3):
        sandbox_fault(crm_env["hubspot"], kind="invalid_session", count=2, path_contains="account-info")
        assert check_connection(conn.pk).reason == "auth_failed"
        assert check_connection(conn.pk).status == "ok"
    assert reload(conn).status == "connected" and row(conn).consecutive_auth_failures == 0


@pytest.mark.django_db
def test_an_outage_between_two_refusals_neither_ends_nor_extends_the_run(crm_env: Any, alice: Tenant) -> None:
    conn = healthy(alice, "hubspot", crm_env["hubspot"])
    sandbox_fault(crm_env["hubspot"], kind="invalid_session", count=2, path_contains="account-info")
    assert check_connection(conn.pk).reason == "auth_failed"
    sandbox_fault(crm_env["hubspot"], kind="unavailable", path_contains="account-info")
    assert check_connection(conn.pk).reason == "unreachable"
    assert row(conn).consecutive_auth_failures == 1 and row(conn).consecutive_failures == 2
    sandbox_fault(crm_env["hubspot"], kind="invalid_session", count=2, path_contains="account-info")
    assert check_connection(conn.pk).status == "error"
    assert reload(conn).last_error == "access_token_rejected"


@pytest.mark.django_db
def test_refusals_closer_than_the_spacing_count_once(crm_env: Any, alice: Tenant, settings: Any) -> None:
    settings.CONDUIT_HEALTH_AUTH_RUN_SPACING_SECONDS = 1800
    conn = healthy(alice, "hubspot", crm_env["hubspot"])
    start = timezone.now()
    for minutes in (0, 1, 20):  # one outage, checked three times within half an hour
        sandbox_fault(crm_env["hubspot"], kind="invalid_session", count=2, path_contains="account-info")
        at = start + timedelta(minutes=minutes)
        assert check_connection(conn.pk, now=lambda at=at: at).reason == "auth_failed"
        assert row(conn).consecutive_auth_failures == 1 and reload(conn).status == "connected"
    sandbox_fault(crm_env["hubspot"], kind="invalid_session", count=2, path_contains="account-info")
    later = start + timedelta(minutes=51)
    assert check_connection(conn.pk, now=lambda: later).status == "error"
    assert reload(conn).last_error == "access_token_rejected"


@pytest.mark.django_db
def test_a_verdict_about_a_replaced_grant_is_dropped(crm_env: Any, alice: Tenant, settings: Any) -> None:
    settings.CONDUIT_HEALTH_AUTH_FAILURES_TO_ERROR = 1
    conn = healthy(alice, "hubspot", crm_env["hubspot"], connected_at=timezone.now() - timedelta(days=1))
    before = conn
    with system_scope():  # a reconnect happens while the check's call is on the wire
        CrmConnection.objects.filter(pk=conn.pk).update(connected_at=timezone.now())
    refused = health_state.Verdict(
        health_state.Status.WARNING, "auth_failed", failure=True, auth_failure=True
    )
    assert health.conclude(before, refused, now=timezone.now(), actor="test") is None
    assert reload(conn).status == "connected" and reload(conn).access_token
    with system_scope():
        assert not ConnectionHealth.objects.filter(workspace=alice.workspace).exists()


@pytest.mark.django_db
def test_invalid_grant_on_refresh_is_an_error_at_once(crm_env: Any, alice: Tenant) -> None:
    conn = healthy(alice, "hubspot", crm_env["hubspot"], token_expires_at=timezone.now())
    sandbox_fault(crm_env["hubspot"], kind="invalid_grant")
    result = check_connection(conn.pk)
    assert (result.status, result.reason) == ("error", "refresh_token_revoked")
    conn = reload(conn)
    assert (conn.status, conn.last_error) == ("error", "refresh_token_revoked")
    assert row(conn).consecutive_auth_failures == 1


@pytest.mark.django_db
def test_missing_scopes_are_a_warning_that_names_them(crm_env: Any, alice: Tenant) -> None:
    conn = healthy(alice, "hubspot", crm_env["hubspot"])
    with system_scope():
        conn.granted_scopes = ["oauth", "crm.objects.contacts.read"]
        conn.save(update_fields=["granted_scopes"])
    result = check_connection(conn.pk)
    assert (result.status, result.reason) == ("warning", "scope_drift")
    missing = row(conn).details_json["scopes"]["missing"]
    assert "crm.objects.contacts.write" in missing or missing, missing
    assert reload(conn).status == "connected"
    page = alice.client().get("/settings/integrations/").content.decode()
    assert "HubSpot has not granted permissions Conduit now needs" in page and missing[0] in page
    assert "Reconnect" in page

    sandbox_fault(crm_env["hubspot"], kind="missing_scope", path_contains="account-info")
    assert check_connection(conn.pk).reason == "missing_scope"
    assert row(conn).details_json["scopes"]["missing"]


@pytest.mark.django_db
def test_recovery_after_reconnect_and_disconnect_forgets(crm_env: Any, alice: Tenant, settings: Any) -> None:
    settings.CONDUIT_HEALTH_AUTH_FAILURES_TO_ERROR = 1
    conn = connect_crm(alice, "hubspot")
    assert (row(conn).status, row(conn).reason) == ("ok", "connected")
    sandbox_fault(crm_env["hubspot"], kind="invalid_session", count=2, path_contains="account-info")
    assert check_connection(conn.pk).status == "error"
    page = alice.client().get("/settings/integrations/").content.decode()
    assert 'data-health-status="error"' in page and "Reconnect" in page
    again = connect_crm(alice, "hubspot")
    assert again.pk == conn.pk and reload(again).status == "connected"
    assert (row(again).status, row(again).reason) == ("ok", "connected")
    assert check_connection(again.pk).status == "ok"
    response = alice.client().post("/settings/integrations/hubspot/disconnect/")
    assert response.status_code == 302
    with system_scope():
        assert not ConnectionHealth.objects.filter(workspace=alice.workspace).exists()


@pytest.mark.django_db
def test_errored_connections_get_an_error_row_once(crm_env: Any, alice: Tenant) -> None:
    conn = healthy(
        alice, "salesforce", crm_env["salesforce"], status="error", last_error="refresh_token_revoked"
    )
    assert health.record_errored() == 1
    assert (row(conn).status, row(conn).reason) == ("error", "refresh_token_revoked")
    assert health.record_errored() == 0
    assert len(transitions(conn)) == 1


@pytest.mark.django_db
def test_hourly_run_queues_stable_jittered_waves(
    crm_env: Any, make_workspace: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CONDUIT_HEALTH_WAVES, settings.CONDUIT_HEALTH_SPREAD_SECONDS = 4, 2400
    conns = [healthy(make_workspace(f"w{i}"), "hubspot", crm_env["hubspot"]) for i in range(9)]
    healthy(make_workspace("gone"), "hubspot", crm_env["hubspot"], status="disconnected")
    queued: list[tuple[list[int], float]] = []
    monkeypatch.setattr(
        tasks.check_connections, "apply_async", lambda args, countdown: queued.append((args[0], countdown))
    )
    assert tasks.reconcile_connections() == 9
    assert sorted(i for members, _ in queued for i in members) == sorted(c.pk for c in conns)
    for members, countdown in queued:
        wave = members[0] % 4
        assert all(i % 4 == wave for i in members)
        assert wave * 600 <= countdown <= wave * 600 + 300
    plan = wave_plan(list(range(1, 101)), waves=12, spread=3000)
    assert len(plan) == 12 and max(c for _, c in plan) < 3000


@pytest.mark.django_db
def test_wave_task_counts_verdicts_and_survives_a_bug(
    crm_env: Any, alice: Tenant, bob: Tenant, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.CONDUIT_HEALTH_CONCURRENCY = 1  # threads would not see this test's transaction
    good = healthy(alice, "hubspot", crm_env["hubspot"])
    bad = healthy(bob, "hubspot", crm_env["hubspot"])
    real = health.check_connection

    def flaky(connection_id: int, **kw: Any) -> Any:
        if connection_id == bad.pk:
            raise RuntimeError("bug")
        return real(connection_id, **kw)

    monkeypatch.setattr(health, "check_connection", flaky)
    assert tasks.check_connections([good.pk, bad.pk]) == {"ok": 1, "failed": 1}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_checks_run_concurrently_in_threads(crm_env: Any, make_workspace: Any) -> None:
    conns = [healthy(make_workspace(f"t{i}"), "hubspot", crm_env["hubspot"]) for i in range(6)]
    results = run_checks([c.pk for c in conns], concurrency=3)
    assert [r.connection_id for r in results] == [c.pk for c in conns]
    assert {r.status for r in results} == {"ok"}
    with system_scope():
        assert ConnectionHealth.objects.filter(status="ok").count() == 6


@pytest.mark.django_db
def test_command_prints_a_table_and_refuses_bad_input(
    crm_env: Any, alice: Tenant, bob: Tenant, settings: Any
) -> None:
    settings.CONDUIT_HEALTH_CONCURRENCY = 1
    healthy(alice, "hubspot", crm_env["hubspot"])
    healthy(bob, "salesforce", crm_env["salesforce"])
    out = StringIO()
    call_command("reconcile_connections", "--workspace", alice.workspace.slug, stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:6] == ["connection", "workspace", "crm", "account", "was", "now"]
    assert "alice" in lines[1] and "hubspot" in lines[1] and " ok " in lines[1]
    assert lines[-1] == "checked 1: 1 ok"
    out = StringIO()
    call_command("reconcile_connections", "--crm", "salesforce", stdout=out)
    assert "salesforce" in out.getvalue() and "hubspot" not in out.getvalue()
    with pytest.raises(CommandError, match="unknown CRM 'pipedrive'"):
        call_command("reconcile_connections", "--crm", "pipedrive")
    with pytest.raises(CommandError, match="no workspace with slug 'nope'"):
        call_command("reconcile_connections", "--workspace", "nope")
    with pytest.raises(CommandError, match="--concurrency"):
        call_command("reconcile_connections", "--concurrency", "0")
    out = StringIO()
    call_command(
        "reconcile_connections", "--workspace", alice.workspace.slug, "--crm", "salesforce", stdout=out
    )
    assert out.getvalue().strip() == "no connected connections to check"


@pytest.mark.django_db
def test_command_exits_non_zero_when_a_check_broke(
    crm_env: Any, alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    healthy(alice, "hubspot", crm_env["hubspot"])
    healthy(alice, "salesforce", crm_env["salesforce"])
    monkeypatch.setattr(health, "check_connection", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(CommandError, match="2 check\\(s\\) failed inside Conduit"):
        call_command("reconcile_connections", "--concurrency", "1", stdout=StringIO())


@pytest.mark.django_db
def test_check_now_runs_once_per_cooldown(crm_env: Any, alice: Tenant, settings: Any) -> None:
    settings.CONDUIT_HEALTH_CHECK_NOW_COOLDOWN_SECONDS = 60
    conn = connect_crm(alice, "hubspot")
    client = alice.client()
    response = client.post("/settings/integrations/hubspot/check/", follow=True)
    assert "HubSpot checked in" in response.content.decode() and "healthy" in response.content.decode()
    calls = SyncLog.objects.filter(operation="health_check").count()
    response = client.post("/settings/integrations/hubspot/check/", follow=True)
    assert "checked moments ago; try again in" in response.content.decode()
    assert SyncLog.objects.filter(operation="health_check").count() == calls
    later = timezone.now() + timedelta(seconds=61)
    assert do_check_now(conn, actor="test", now=lambda: later).status == "ok"
    sandbox_fault(crm_env["hubspot"], kind="server_error", path_contains="account-info")
    even_later = later + timedelta(seconds=61)
    assert do_check_now(conn, actor="test", now=lambda: even_later).status == "warning"


@pytest.mark.django_db
def test_check_now_refuses_members_and_missing_connections(
    crm_env: Any, alice: Tenant, make_workspace: Any
) -> None:
    member = make_workspace("crew", role="member")
    assert member.client().post("/settings/integrations/hubspot/check/").status_code == 404
    response = alice.client().post("/settings/integrations/hubspot/check/", follow=True)
    assert "HubSpot is not connected; there is nothing to check." in response.content.decode()
    assert alice.client().post("/settings/integrations/pipedrive/check/").status_code == 404
    assert alice.client().get("/settings/integrations/hubspot/check/").status_code == 405


@pytest.mark.django_db
def test_check_now_warns_when_the_crm_fails(crm_env: Any, alice: Tenant) -> None:
    connect_crm(alice, "salesforce")
    sandbox_fault(crm_env["salesforce"], kind="unavailable", path_contains="userinfo")
    response = alice.client().post("/settings/integrations/salesforce/check/", follow=True)
    page = response.content.decode()
    assert "Salesforce checked" in page and "warning" in page
    assert 'data-health-reason="unreachable"' in page and "did not answer properly" in page


@pytest.mark.django_db
def test_card_shows_state_and_last_checked(crm_env: Any, alice: Tenant) -> None:
    conn = healthy(alice, "hubspot", crm_env["hubspot"])
    check_connection(conn.pk)
    with system_scope():
        ConnectionHealth.objects.filter(pk=row(conn).pk).update(
            last_checked_at=timezone.now() - timedelta(minutes=5)
        )
    page = alice.client().get("/settings/integrations/").content.decode()
    assert 'data-health-status="ok"' in page and "Healthy" in page
    assert "5\xa0minutes ago" in page and "UTC" in page
    assert "Conduit&#x27;s access works" in page and "Check now" in page
    member_page = Tenant(alice.workspace, alice.user, alice.password).client().get("/settings/integrations/")
    assert member_page.status_code == 200


@pytest.mark.django_db
def test_admin_lists_verdicts_and_checks_now(crm_env: Any, alice: Tenant, admin_client: Any) -> None:
    conn = healthy(alice, "hubspot", crm_env["hubspot"])
    check_connection(conn.pk)
    listing = admin_client.get("/admin/integrations/connectionhealth/?status__exact=ok").content.decode()
    assert "alice" in listing.lower() and ">ok<" in listing
    sandbox_fault(crm_env["hubspot"], kind="server_error", path_contains="account-info")
    response = admin_client.post(
        "/admin/integrations/connectionhealth/",
        {"action": "check_now", "_selected_action": [row(conn).pk]},
        follow=True,
    )
    assert "hubspot" in response.content.decode() and "warning (unreachable)" in response.content.decode()
    assert row(conn).reason == "unreachable"
    assert admin_client.get(f"/admin/integrations/connectionhealth/{row(conn).pk}/change/").status_code == 200
