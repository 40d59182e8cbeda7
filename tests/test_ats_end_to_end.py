"""The ATS flow end to end against the Greenhouse, Lever and Workday sandboxes over real sockets:
connect with a bad then a good key, an email with a candidate planned in dry run, go live,
exactly one note at the sandbox, rotate the key at the sandbox (the old one revoked), the hourly
health check's error `credentials_invalid` with the card's guidance, update the credentials, ok
again; Workday: connect, validate, health, rotate, update, and never a write planned. The runbook
001 APIs (status, sync logs, failures, retry-failed) accept the three provider names, and no
credential shows in logs, audit payloads, sync logs or pages."""

from __future__ import annotations

import json
import logging
from collections import Counter
from io import StringIO
from typing import Any

import pytest
import requests
from django.core.management import call_command

from conduit.models import AuditEvent
from conduit.tenancy import system_scope
from integrations.health.checks import check_connection
from integrations.models import ConnectionHealth, CrmConnection, SyncLog
from reconcile import dispatch
from reconcile.curation import plan_messages
from reconcile.delivery import deliver_write
from reconcile.models import CrmWriteLog, WritePolicy
from reconcile.queue import reconcile_crm_writes
from tests.ats_helpers import (
    CANDIDATE,
    FORM_URL,
    ats_env,
    ats_sandboxes,
    connect_ats,
    good_fields,
    live_conn,
    rotate,
    sandbox_notes,
    secrets_of,
)
from tests.conftest import Tenant
from tests.ops_helpers import get, make_log, make_write, send, staff_token, workspace_token
from tests.reconcile_helpers import store_message, writes

__all__ = ["ats_env", "ats_sandboxes"]
pytestmark = pytest.mark.django_db
PAGE = "/settings/integrations/"
WRONG = "wrong-key-0123456789abcdef01234567"


def card_html(tenant: Tenant, crm: str) -> str:
    page = tenant.client().get(PAGE).content.decode()
    start = page.index(f'<section class="card" data-crm="{crm}">')
    return page[start : page.index("</section>", start)]


def health_of(conn: CrmConnection) -> ConnectionHealth:
    with system_scope():
        return ConnectionHealth.objects.get(connection=conn)


def hourly_check(crm: str) -> str:
    out = StringIO()
    call_command("reconcile_connections", "--crm", crm, stdout=out)
    return out.getvalue()


def everything_recorded() -> str:
    """Audit payloads and sync-log rows, as text."""
    with system_scope():
        audit = list(AuditEvent.objects.values("event", "payload_json"))
        logs = list(SyncLog.objects.values())
    return json.dumps([audit, logs], default=str)


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    sent: list[tuple[int, str]] = []
    monkeypatch.setattr(
        dispatch.deliver_crm_writes, "delay", lambda ids, token: sent.extend((i, token) for i in ids)
    )
    return sent


@pytest.mark.parametrize(("crm", "secret_field"), [("greenhouse", "client_secret"), ("lever", "api_key")])
def test_connect_plan_go_live_write_rotate_fail_update_recover(
    crm: str,
    secret_field: str,
    alice: Tenant,
    ats_env: dict[str, str],
    enqueued: list[tuple[int, str]],
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = alice.client()
    form = FORM_URL.format(crm=crm)
    seeded = good_fields(crm, ats_env)
    # a bad key, then a good one
    bad = client.post(form, {**seeded, secret_field: WRONG})
    assert bad.status_code == 400 and "refused" in bad.content.decode()
    with system_scope():
        assert not CrmConnection.objects.exists()
    assert client.post(form, seeded).status_code == 302
    conn = live_conn(alice, crm)
    assert (conn.status, conn.dry_run) == ("connected", True)

    # an email with a candidate, planned in dry run (a task policy still gives a note)
    with system_scope():
        WritePolicy.objects.create(workspace=alice.workspace, inbound_operation="create_task")
    message = store_message(alice.workspace, f"{crm}-1@x", subject="Interview follow-up")
    plan_messages(alice.workspace, [message.pk])
    [row] = writes()
    assert (row.provider, row.operation, row.status, row.target) == (crm, "create_note", "dry_run", CANDIDATE)
    assert "Interview follow-up" in card_html(alice, crm) and "note" in card_html(alice, crm)
    assert sandbox_notes(crm, ats_env) == [] or all(
        row.marker not in str(n) for n in sandbox_notes(crm, ats_env)
    )

    # go live, sending the planned write: exactly one note at the sandbox
    before = len(sandbox_notes(crm, ats_env))
    with django_capture_on_commit_callbacks(execute=True):
        live = client.post(f"/settings/integrations/{crm}/go-live/", {"send_planned": "yes"})
    assert live.status_code == 302 and len(enqueued) == 1
    assert [deliver_write(i, t).code for i, t in enqueued] == ["succeeded"]
    assert reconcile_crm_writes(dispatch=lambda *a: None).claimed == 0
    notes = sandbox_notes(crm, ats_env)
    assert len(notes) == before + 1
    row.refresh_from_db()
    assert row.status == "succeeded" and sum(row.marker in str(n) for n in notes) == 1
    assert "SECRET-BODY-TEXT" not in str(notes)  # never the email body

    # the hourly check is ok; rotate at the sandbox: the old key is revoked there
    assert " ok " in hourly_check(crm)
    fresh = rotate(crm, ats_env)
    # the hourly check: error credentials_invalid, and the card's guidance
    hourly_check(crm)
    conn.refresh_from_db()
    assert (conn.status, conn.last_error) == ("error", "credentials_invalid")
    assert conn.runbook_status == "needs_reauth"
    assert health_of(conn).status == "error"
    card = card_html(alice, crm)
    assert "they were rotated, revoked or deleted. Update the credentials to resume." in card
    assert form in card
    # the old key does not work for an update either; the new one does, in place
    assert client.post(form, seeded).status_code == 400
    assert client.post(form, fresh).status_code == 302
    conn.refresh_from_db()
    assert (conn.status, conn.last_error, conn.dry_run) == ("connected", "", False)
    assert " ok " in hourly_check(crm)
    assert health_of(conn).status == "ok"
    with system_scope():
        audit = AuditEvent.objects.filter(event__startswith="integration_credentials").order_by("id")
        events = [e.event for e in audit]
    assert events == ["integration_credentials_set", "integration_credentials_rotated"]

    # secret hygiene: no key in logs, audit, sync logs or the pages
    secrets = [*secrets_of(crm, seeded), *secrets_of(crm, fresh), WRONG]
    recorded = everything_recorded()
    pages = card + client.get(form).content.decode() + client.get(PAGE).content.decode()
    for secret in secrets:
        assert secret not in caplog.text and secret not in recorded and secret not in pages


def test_workday_connect_validate_health_rotate_update_and_no_write(
    alice: Tenant, ats_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = alice.client()
    form = FORM_URL.format(crm="workday")
    seeded = good_fields("workday", ats_env)
    bad = client.post(form, {**seeded, "tenant": "not_a_tenant"})
    assert bad.status_code == 400 and "no tenant by this name" in bad.content.decode()
    assert client.post(form, seeded).status_code == 302
    conn = live_conn(alice, "workday")
    # no write is ever planned for Workday, live or not
    with system_scope():
        CrmConnection.objects.filter(pk=conn.pk).update(dry_run=False)
    plan_messages(alice.workspace, [store_message(alice.workspace, "wd-1@x").pk])
    assert writes() == []
    assert " ok " in hourly_check("workday")
    fresh = rotate("workday", ats_env)
    result = check_connection(conn.pk)
    conn.refresh_from_db()
    assert (conn.status, conn.last_error) == ("error", "credentials_invalid")
    assert result.status == "error"
    assert "Update the credentials to resume" in card_html(alice, "workday")
    assert client.post(form, fresh).status_code == 302
    assert check_connection(conn.pk).status == "ok"
    secrets = [*secrets_of("workday", seeded), *secrets_of("workday", fresh)]
    recorded = everything_recorded()
    for secret in secrets:
        assert secret not in caplog.text and secret not in recorded


def test_a_lever_key_refused_at_the_check_errors_at_once(alice: Tenant, ats_env: dict[str, str]) -> None:
    """Lever answers a revoked key 401 on the API call itself (no token to refresh): one check
    is enough, the connection goes to error credentials_invalid."""
    conn = connect_ats(alice, "lever", ats_env)
    rotate("lever", ats_env)
    result = check_connection(conn.pk)
    conn.refresh_from_db()
    assert (result.status, conn.status, conn.last_error, conn.access_token) == (
        "error",
        "error",
        "credentials_invalid",
        "",
    )


def test_a_write_to_a_rotated_lever_key_waits_for_new_credentials(
    alice: Tenant, ats_env: dict[str, str]
) -> None:
    connect_ats(alice, "lever", ats_env, live=True)
    plan_messages(alice.workspace, [store_message(alice.workspace, "lv-1@x").pk])
    fresh = rotate("lever", ats_env)
    [row] = writes()
    outcomes: Counter[str] = Counter()
    reconcile_crm_writes(dispatch=lambda i, t: outcomes.update([deliver_write(i, t).code]))
    row.refresh_from_db()
    assert row.status != "succeeded" and not row.permanent_failure
    assert alice.client().post(FORM_URL.format(crm="lever"), fresh).status_code == 302
    with system_scope():
        CrmWriteLog.objects.filter(pk=row.pk).update(status="planned", next_retry_at=None)
    reconcile_crm_writes(dispatch=lambda i, t: outcomes.update([deliver_write(i, t).code]))
    row.refresh_from_db()
    assert row.status == "succeeded"
    assert len([n for n in sandbox_notes("lever", ats_env) if row.marker in str(n)]) == 1


@pytest.mark.parametrize("crm", ["greenhouse", "lever", "workday"])
def test_the_runbook_apis_accept_the_ats_names(crm: str, alice: Tenant, ats_env: dict[str, str]) -> None:
    conn = connect_ats(alice, crm, ats_env)
    token, ops = workspace_token(alice), staff_token()
    status = get(f"/api/v1/integrations/{crm}/status", token)
    assert status.status_code == 200, status.content
    assert (status.json()["provider"], status.json()["status"]) == (crm, "connected")
    assert conn.access_token not in status.content.decode()
    every = get("/api/v1/integrations/status", token).json()["integrations"]
    assert crm in [row["provider"] for row in every]
    failed = make_log(alice.workspace, crm, ok=False, code="credentials_invalid", operation="create_note")
    mine = get(f"/api/v1/integrations/{crm}/sync-logs", token, status="failed").json()
    assert [row["id"] for row in mine["results"]] == [failed.pk]
    system = get("/api/v1/sync/logs", ops, provider=crm).json()
    assert system["count"] >= 1
    make_write(conn, "failed", "http_503")
    body = get(f"/api/v1/integrations/{crm}/failures", token).json()
    assert body["failed"] == 1
    retried = send("post", f"/api/v1/integrations/{crm}/retry-failed", token)
    assert retried.status_code == 200 and retried.json()["requeued"] == 1
    health = get("/api/v1/health", ops, provider=crm)
    assert health.status_code == 200 and [r["provider"] for r in health.json()["providers"]] == [crm]


def test_sandbox_rotation_revokes_the_old_greenhouse_secret(ats_env: dict[str, str]) -> None:
    old = good_fields("greenhouse", ats_env)
    rotate("greenhouse", ats_env)
    answer = requests.post(
        f"{ats_env['greenhouse']}/token",
        data={"grant_type": "client_credentials"},
        auth=(old["client_id"], old["client_secret"]),
        timeout=5,
    )
    assert answer.status_code == 401
