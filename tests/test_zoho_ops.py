"""Operations accept Zoho like every provider: pause switches, the health matrix, sync logs,
status, failures and retry-failed, the cursor reset, and the metrics and alert rules carry
provider="zoho". Rows are made directly; the Zoho flows themselves are tested elsewhere."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import responses
from django.core.management import call_command
from django.test import Client

from conduit.tenancy import system_scope
from integrations.connections.pauses import pause_for
from integrations.models import SyncCursor, SyncPause
from integrations.providers import get_provider
from integrations.providers.base import Account
from integrations.providers.errors import RateLimited
from tests.conftest import Tenant
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
from tests.provider_helpers import activity, metric_value

pytestmark = pytest.mark.django_db
ORG = "7700000000000010001"
CONTACT, DEAL = "5725767000000410001", "5725767000000420001"


@pytest.fixture
def ops() -> str:
    return staff_token()


@pytest.fixture
def zoho_conn(alice: Tenant) -> Any:
    return make_connection(alice.workspace, "zoho", external_account_key=ORG)


def test_pause_sync_pauses_and_resumes_zoho(ops: str, zoho_conn: Any) -> None:
    paused = Client().post("/api/v1/admin/pause-sync?provider=zoho&pause=true", **bearer(ops))
    assert paused.status_code == 200, paused.content
    assert paused.json()["provider"] == "zoho" and paused.json()["paused"] is True
    pause = pause_for(zoho_conn)
    assert pause is not None and pause.scope == "provider"
    resumed = Client().post("/api/v1/admin/pause-sync?provider=zoho&pause=false", **bearer(ops))
    assert resumed.json()["paused"] is False and pause_for(zoho_conn) is None
    out = StringIO()
    call_command("pause_sync", "--provider", "zoho", "--reason", "credits incident", stdout=out)
    with system_scope():
        assert SyncPause.objects.get().provider == "zoho"


def test_health_matrix_has_a_zoho_row(ops: str, zoho_conn: Any) -> None:
    make_health(zoho_conn, "error", "auth_failed")
    body = get("/api/v1/health", ops, provider="zoho").json()
    assert [row["provider"] for row in body["providers"]] == ["zoho"]
    assert body["providers"][0]["counts"] == {"ok": 0, "warning": 0, "error": 1} and body["status"] == "down"
    every = {row["provider"] for row in get("/api/v1/health", ops).json()["providers"]}
    assert "zoho" in every


def test_sync_logs_of_zoho_for_the_operator_and_the_customer(alice: Tenant, ops: str) -> None:
    failed = make_log(alice.workspace, "zoho", ok=False, code="credits_exhausted", operation="create_task")
    make_log(alice.workspace, "hubspot", ok=False, code="rate_limited")
    system = get("/api/v1/sync/logs", ops, provider="zoho").json()
    assert system["count"] == 1 and "credits_exhausted" in system["results"][0]["message"]
    token = workspace_token(alice)
    mine = get("/api/v1/integrations/zoho/sync-logs", token, status="failed").json()
    assert [row["id"] for row in mine["results"]] == [failed.pk]
    one = get(f"/api/v1/integrations/zoho/sync-logs/{failed.pk}", token)
    assert one.status_code == 200 and one.json()["provider"] == "zoho"


def test_status_of_zoho(alice: Tenant, zoho_conn: Any) -> None:
    token = workspace_token(alice)
    one = get("/api/v1/integrations/zoho/status", token).json()
    assert (one["provider"], one["status"], one["external_account_key"]) == ("zoho", "connected", ORG)
    every = get("/api/v1/integrations/status", token).json()["integrations"]
    assert "zoho" in [row["provider"] for row in every]


def test_failures_and_retry_failed_of_zoho(alice: Tenant, zoho_conn: Any) -> None:
    make_write(zoho_conn, "failed", "credits_exhausted")
    make_write(zoho_conn, "failed", "invalid_data", permanent_failure=True)
    token = workspace_token(alice)
    body = get("/api/v1/integrations/zoho/failures", token).json()
    assert body["failed"] == 2 and body["permanent_failures"] == 1
    retried = send("post", "/api/v1/integrations/zoho/retry-failed", token)
    assert retried.status_code == 200, retried.content


def test_the_pull_reads_zoho_changes_by_modified_time_and_a_cursor_can_be_reset(
    crm_env: dict[str, str], alice: Tenant
) -> None:
    import requests

    from integrations.cursors.pull import pull_sync_cursors
    from integrations.providers.changes import parse_time
    from reconcile import mapping
    from tests.ops_helpers import make_mapping
    from tests.test_sync_cursors import past_the_index_lag
    from tests.test_tokens import connected

    conn = connected(alice.workspace, "zoho", crm_env["zoho"])
    maya = make_mapping(conn, "maya.lopez@acme-logistics.example", CONTACT, DEAL)
    nobody = make_mapping(conn, "lee@northwind.example", "5725767000000410003", "")
    first = pull_sync_cursors()
    assert (first.connections, first.cursors, first.records, first.errors) == (1, 2, 0, 0)
    body = {"object": "contact", "id": CONTACT, "fields": {"First_Name": "M."}}
    changed = requests.post(f"{crm_env['zoho']}/_sandbox/records", json=body, timeout=5).json()
    new_deal = {"object": "deal", "fields": {"Deal_Name": "Expansion"}, "contact": "5725767000000410003"}
    requests.post(f"{crm_env['zoho']}/_sandbox/records", json=new_deal, timeout=5)
    counts = pull_sync_cursors(now=past_the_index_lag)
    assert (counts.cursors, counts.records, counts.errors) == (2, 2, 0)
    with system_scope():
        cursors = {c.object: c for c in SyncCursor.objects.filter(connection=conn)}
        maya.refresh_from_db()
        nobody.refresh_from_db()
    # Zoho answers in the org's time zone (+01:00); the cursor keeps the same instant in UTC
    assert cursors["contact"].since_ts == parse_time(changed["Modified_Time"])
    assert cursors["contact"].provider == "zoho" and cursors["contact"].last_status == "ok"
    assert maya.refreshed_at == mapping.STALE and nobody.refreshed_at == mapping.STALE  # a new deal
    out = StringIO()
    call_command("reset_sync_cursor", "--provider", "zoho", "--object", "contact", "--hours", "2", stdout=out)
    assert out.getvalue().strip() == "reset 1 zoho contact cursor(s) to 2 h ago"


@responses.activate
def test_zoho_calls_carry_the_provider_label_in_the_metrics(settings: Any) -> None:
    settings.ZOHO_EXTRA_ORIGINS = []
    account = Account("zoho", "1000.tok", ORG, instance_url="https://www.zohoapis.eu")
    body = {"code": "TOO_MANY_REQUESTS", "details": {}, "message": "concurrency", "status": "error"}
    responses.post(
        "https://www.zohoapis.eu/crm/v7/Notes", status=429, json=body, headers={"Retry-After": "1"}
    )
    errors = metric_value("crm_sync_errors_total", provider="zoho", operation="create_note")
    hits = metric_value("crm_rate_limit_hits_total", provider="zoho")
    with pytest.raises(RateLimited):
        get_provider("zoho").create_note(account, activity(CONTACT))
    assert metric_value("crm_sync_errors_total", provider="zoho", operation="create_note") == errors + 1
    assert metric_value("crm_rate_limit_hits_total", provider="zoho") == hits + 1
    assert metric_value("crm_sync_duration_seconds_count", provider="zoho", operation="create_note") >= 1


def test_the_alert_rules_test_zoho() -> None:
    tests = (
        Path(__file__).resolve().parent.parent / "ops" / "prometheus" / "conduit-alerts.test.yml"
    ).read_text()
    assert 'provider="zoho"' in tests and "zoho: more than 10 rate-limit answers in a minute" in tests
