"""Operations accept Odoo like every provider: pause switches, the health matrix (and the
playbook's loop over it), sync logs, status, failures and retry-failed, the write_date pull and
the cursor reset, the hourly checks, delivery through the reconcile queue, and the metrics and
alert rules carry provider="odoo". Rows are made directly where the flow is tested elsewhere;
the pull, the checks and delivery run against the Odoo sandbox."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from django.core.management import call_command
from django.test import Client

from conduit.tenancy import system_scope
from integrations.connections.pauses import pause_for
from integrations.models import ConnectionHealth, CrmConnection, SyncCursor, SyncPause
from integrations.providers import get_provider
from integrations.providers.errors import RateLimited
from integrations.providers.odoo import OdooProvider
from integrations.sandbox.odoo_data import SEEDED_API_KEY
from reconcile.curation import plan_messages
from reconcile.delivery import deliver_write
from reconcile.queue import reconcile_crm_writes
from tests.conftest import Tenant
from tests.odoo_helpers import MOCK_KEY, ODOO_HOST, ODOO_URL, PUBLIC_IP, activity, fake_dns, odoo_account
from tests.ops_helpers import (
    bearer,
    get,
    make_connection,
    make_health,
    make_log,
    make_write,
    send,
    staff_token,
    workspace_token,
)
from tests.provider_helpers import metric_value
from tests.reconcile_helpers import connect_crm, created_records, odoo_form, store_message, writes

pytestmark = pytest.mark.django_db
ACCOUNT = f"{ODOO_HOST}/acme"
MAYA_PARTNER, MAYA_OPPORTUNITY = "7", "21"  # the sandbox's seeded partner and her open opportunity
PLAYBOOK_LOOP = """
for provider in hubspot zoho odoo; do
  echo "Testing $provider..."
  curl -s -H "Authorization: Bearer $OPS_TOKEN" "$CONDUIT/api/v1/health?provider=$provider" | jq '.status'
done
"""


@pytest.fixture
def ops() -> str:
    return staff_token()


@pytest.fixture
def odoo_conn(alice: Tenant) -> Any:
    details = {"url": ODOO_URL, "instance_url": ODOO_URL, "database": "acme", "api": "json2", "uid": 2}
    return make_connection(
        alice.workspace,
        "odoo",
        external_account_key=ACCOUNT,
        access_token=MOCK_KEY,
        refresh_token="",
        external_account_json={**details, "version": "19.0", "key_last4": MOCK_KEY[-4:]},
    )


def test_pause_sync_pauses_and_resumes_odoo(ops: str, odoo_conn: Any) -> None:
    paused = Client().post("/api/v1/admin/pause-sync?provider=odoo&pause=true", **bearer(ops))
    assert paused.status_code == 200, paused.content
    assert paused.json()["provider"] == "odoo" and paused.json()["paused"] is True
    pause = pause_for(odoo_conn)
    assert pause is not None and pause.scope == "provider"
    resumed = Client().post("/api/v1/admin/pause-sync?provider=odoo&pause=false", **bearer(ops))
    assert resumed.json()["paused"] is False and pause_for(odoo_conn) is None
    out = StringIO()
    call_command("pause_sync", "--provider", "odoo", "--reason", "key rotation", stdout=out)
    with system_scope():
        assert SyncPause.objects.get().provider == "odoo"


def test_health_matrix_has_an_odoo_row(ops: str, odoo_conn: Any) -> None:
    make_health(odoo_conn, "error", "auth_failed")
    body = get("/api/v1/health", ops, provider="odoo").json()
    assert [row["provider"] for row in body["providers"]] == ["odoo"]
    assert body["providers"][0]["counts"] == {"ok": 0, "warning": 0, "error": 1} and body["status"] == "down"
    every = {row["provider"] for row in get("/api/v1/health", ops).json()["providers"]}
    assert "odoo" in every


def test_an_unknown_provider_names_odoo_among_the_known_ones(ops: str) -> None:
    answer = get("/api/v1/health", ops, provider="pipedrive")
    assert answer.status_code in (400, 404) and "odoo" in answer.content.decode()


def test_the_playbook_health_matrix_loop_over_the_api_returns_a_status_for_each(
    ops: str, odoo_conn: Any, alice: Tenant
) -> None:
    """The loop as the playbook writes it, one request per provider (Django's client)."""
    make_health(odoo_conn, "ok")
    zoho = make_connection(alice.workspace, "zoho", external_account_key="7700000000000010001")
    make_health(zoho, "warning", "rate_limited")
    statuses = {}
    for provider in ["hubspot", "zoho", "odoo"]:
        answer = get(f"/api/v1/health?provider={provider}", ops)
        assert answer.status_code == 200, answer.content
        statuses[provider] = answer.json()["status"]
    # no HubSpot connection: nothing is failing; Zoho's only connection is in warning: down
    assert statuses == {"hubspot": "ok", "zoho": "down", "odoo": "ok"}


@pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("jq")), reason="the playbook needs curl and jq"
)
@pytest.mark.django_db(transaction=True)
def test_the_playbook_health_matrix_loop_runs_as_written(live_server: Any, alice: Tenant) -> None:
    """The playbook's bash loop, run by bash with curl and jq against a live Conduit."""
    token = staff_token()
    conn = make_connection(alice.workspace, "odoo", external_account_key=ACCOUNT, refresh_token="")
    make_health(conn, "error", "auth_failed")
    run = subprocess.run(
        ["bash", "-c", PLAYBOOK_LOOP],
        env={"PATH": "/usr/bin:/bin", "CONDUIT": live_server.url, "OPS_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert run.stdout.split("\n") == [
        "Testing hubspot...",
        '"ok"',
        "Testing zoho...",
        '"ok"',
        "Testing odoo...",
        '"down"',
        "",
    ]


def test_sync_logs_of_odoo_for_the_operator_and_the_customer(alice: Tenant, ops: str) -> None:
    failed = make_log(alice.workspace, "odoo", ok=False, code="api_key_rejected", operation="create_task")
    make_log(alice.workspace, "zoho", ok=False, code="credits_exhausted")
    system = get("/api/v1/sync/logs", ops, provider="odoo").json()
    assert system["count"] == 1 and "api_key_rejected" in system["results"][0]["message"]
    token = workspace_token(alice)
    mine = get("/api/v1/integrations/odoo/sync-logs", token, status="failed").json()
    assert [row["id"] for row in mine["results"]] == [failed.pk]
    one = get(f"/api/v1/integrations/odoo/sync-logs/{failed.pk}", token)
    assert one.status_code == 200 and one.json()["provider"] == "odoo"


def test_status_of_odoo(alice: Tenant, odoo_conn: Any) -> None:
    token = workspace_token(alice)
    one = get("/api/v1/integrations/odoo/status", token).json()
    assert (one["provider"], one["status"], one["external_account_key"]) == ("odoo", "connected", ACCOUNT)
    assert MOCK_KEY not in str(one)
    every = get("/api/v1/integrations/status", token).json()["integrations"]
    assert "odoo" in [row["provider"] for row in every]


def test_failures_and_retry_failed_of_odoo(alice: Tenant, odoo_conn: Any) -> None:
    make_write(odoo_conn, "failed", "http_503")
    make_write(odoo_conn, "failed", "validation_error", permanent_failure=True)
    token = workspace_token(alice)
    body = get("/api/v1/integrations/odoo/failures", token).json()
    assert body["failed"] == 2 and body["permanent_failures"] == 1
    retried = send("post", "/api/v1/integrations/odoo/retry-failed", token)
    assert retried.status_code == 200, retried.content
    assert retried.json()["provider"] == "odoo" and retried.json()["requeued"] == 2


def test_a_forced_refresh_leaves_an_odoo_key_as_it_is_and_says_so(alice: Tenant, odoo_conn: Any) -> None:
    answer = send("post", "/api/v1/integrations/odoo/refresh", workspace_token(alice))
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "connected" and MOCK_KEY not in answer.content.decode()
    out = StringIO()
    call_command("refresh_crm_token", "--workspace", alice.workspace.slug, "--crm", "odoo", stdout=out)
    assert out.getvalue().strip() == (
        "alice odoo: an API key has no refresh; nothing changed "
        "(save a new key with Update credentials on the Integrations page)"
    )
    odoo_conn.refresh_from_db()
    assert (odoo_conn.status, odoo_conn.access_token) == ("connected", MOCK_KEY)


def test_the_pull_reads_odoo_changes_by_write_date_and_a_cursor_can_be_reset(
    crm_env: dict[str, str], alice: Tenant
) -> None:
    from integrations.cursors.pull import pull_sync_cursors
    from reconcile import mapping
    from tests.ops_helpers import make_mapping
    from tests.test_sync_cursors import past_the_index_lag

    conn = connect_crm(alice, "odoo")
    maya = make_mapping(conn, "maya.lopez@acme-logistics.example", MAYA_PARTNER, MAYA_OPPORTUNITY)
    lee = make_mapping(conn, "lee@northwind.example", "9", "")
    first = pull_sync_cursors()
    assert (first.connections, first.cursors, first.records, first.errors) == (1, 2, 0, 0)
    base = crm_env["odoo"]
    changed = requests.post(
        f"{base}/_sandbox/records",
        json={"object": "contact", "id": MAYA_PARTNER, "fields": {"name": "M."}},
        timeout=5,
    ).json()
    requests.post(
        f"{base}/_sandbox/records",
        json={"object": "deal", "fields": {"name": "Expansion"}, "contact": "9"},
        timeout=5,
    )
    counts = pull_sync_cursors(now=past_the_index_lag)
    assert (counts.cursors, counts.records, counts.errors) == (2, 2, 0)
    with system_scope():
        cursors = {c.object: c for c in SyncCursor.objects.filter(connection=conn)}
        maya.refresh_from_db()
        lee.refresh_from_db()
    # Odoo's write_date is UTC in whole seconds; the cursor keeps that instant
    assert cursors["contact"].since_ts == OdooProvider.parse_time(changed["write_date"])
    assert cursors["contact"].provider == "odoo" and cursors["contact"].last_status == "ok"
    assert maya.refreshed_at == mapping.STALE and lee.refreshed_at == mapping.STALE  # a new deal
    out = StringIO()
    call_command("reset_sync_cursor", "--provider", "odoo", "--object", "deal", "--hours", "2", stdout=out)
    assert out.getvalue().strip() == "reset 1 odoo deal cursor(s) to 2 h ago"


def test_the_hourly_checks_reach_odoo_and_a_sustained_refusal_asks_for_a_new_key(
    crm_env: dict[str, str], alice: Tenant, settings: Any
) -> None:
    settings.CONDUIT_HEALTH_AUTH_FAILURES_TO_ERROR = 2
    settings.CONDUIT_HEALTH_AUTH_RUN_SPACING_SECONDS = 0  # two checks a moment apart count as two
    conn = connect_crm(alice, "odoo")
    out = StringIO()
    call_command("reconcile_connections", "--crm", "odoo", stdout=out)
    assert "odoo" in out.getvalue() and " ok " in out.getvalue()
    requests.post(f"{crm_env['odoo']}/_sandbox/revoke", json={"api_key": SEEDED_API_KEY}, timeout=5)
    for _ in range(2):
        call_command("reconcile_connections", "--crm", "odoo", stdout=StringIO())
    with system_scope():
        conn.refresh_from_db()
        health = ConnectionHealth.objects.get(connection=conn)
    assert (conn.status, conn.last_error, conn.access_token) == ("error", "access_token_rejected", "")
    assert health.status == "error"
    page = alice.client().get("/settings/integrations/").content.decode()
    assert "Odoo refused Conduit&#x27;s API key. Odoo API keys expire" in page
    assert "Update credentials" in page


def test_a_write_is_delivered_to_odoo_through_the_reconcile_queue(
    crm_env: dict[str, str], alice: Tenant
) -> None:
    conn = connect_crm(alice, "odoo")
    messages = [store_message(alice.workspace, f"odoo{i}@x", subject=f"Renewal {i}") for i in range(3)]
    plan_messages(alice.workspace, [m.pk for m in messages])
    outcomes: Counter[str] = Counter()
    result = reconcile_crm_writes(dispatch=lambda i, t: outcomes.update([deliver_write(i, t).code]))
    assert result.claimed == 3 and outcomes == {"succeeded": 3}
    rows = writes()
    assert {(w.provider, w.connection_id, w.status) for w in rows} == {("odoo", conn.pk, "succeeded")}
    records = created_records("odoo", crm_env["odoo"])
    assert len(records) == 3 and all(sum(w.marker in str(r) for r in records) == 1 for w in rows)
    assert all(r["model"] == "res.partner" and r["res_id"] == int(MAYA_PARTNER) for r in records)
    assert reconcile_crm_writes(dispatch=lambda i, t: None).claimed == 0  # nothing twice


def test_a_rejected_key_parks_odoo_writes_until_new_credentials_are_saved(
    crm_env: dict[str, str], alice: Tenant
) -> None:
    connect_crm(alice, "odoo")
    plan_messages(alice.workspace, [store_message(alice.workspace, "rejected@x").pk])
    requests.post(f"{crm_env['odoo']}/_sandbox/revoke", json={"api_key": SEEDED_API_KEY}, timeout=5)
    [row] = writes()
    assert deliver_write(row.pk).code == "waiting_for_connection"
    row.refresh_from_db()
    assert (row.status, row.retry_count, row.permanent_failure) == ("failed", 0, False)
    assert row.last_error_code == "api_key_rejected" and row.next_retry_at is None
    new_key = requests.post(f"{crm_env['odoo']}/_sandbox/tokens", json={}, timeout=5).json()["api_key"]
    saved = alice.client().post("/settings/integrations/odoo/credentials/", odoo_form(api_key=new_key))
    assert saved.status_code == 302
    outcomes: Counter[str] = Counter()
    reconcile_crm_writes(dispatch=lambda i, t: outcomes.update([deliver_write(i, t).code]))
    assert outcomes == {"succeeded": 1}
    assert len(created_records("odoo", crm_env["odoo"])) == 1


@responses.activate
def test_odoo_calls_carry_the_provider_label_in_the_metrics(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CONDUIT_ODOO_ALLOW_INSECURE = False
    settings.CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS = []
    fake_dns(monkeypatch, {ODOO_HOST: [PUBLIC_IP]})
    account = odoo_account(ODOO_URL, key=MOCK_KEY, database="acme")
    responses.post(
        f"https://{PUBLIC_IP}/json/2/res.partner/message_post",
        status=429,
        json={"name": "werkzeug.exceptions.TooManyRequests", "message": "slow down"},
        headers={"Retry-After": "1"},
    )
    errors = metric_value("crm_sync_errors_total", provider="odoo", operation="create_note")
    hits = metric_value("crm_rate_limit_hits_total", provider="odoo")
    with pytest.raises(RateLimited):
        get_provider("odoo").create_note(account, activity(MAYA_PARTNER))
    assert metric_value("crm_sync_errors_total", provider="odoo", operation="create_note") == errors + 1
    assert metric_value("crm_rate_limit_hits_total", provider="odoo") == hits + 1
    assert metric_value("crm_sync_duration_seconds_count", provider="odoo", operation="create_note") >= 1


def test_the_alert_rules_test_odoo() -> None:
    tests = (
        Path(__file__).resolve().parent.parent / "ops" / "prometheus" / "conduit-alerts.test.yml"
    ).read_text()
    assert 'provider="odoo"' in tests and "odoo: more than 10 rate-limit answers in a minute" in tests


def test_an_odoo_connection_is_listed_with_its_account_in_the_admin_checks(
    crm_env: dict[str, str], alice: Tenant
) -> None:
    conn = connect_crm(alice, "odoo", live=False)
    with system_scope():
        assert CrmConnection.objects.get(pk=conn.pk).dry_run is True
    out = StringIO()
    call_command("reconcile_connections", stdout=out)
    assert conn.external_account_key in out.getvalue()
