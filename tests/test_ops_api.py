"""Customer endpoints of the operations API: status, sync logs, failure summary, retry-failed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from conduit.models import AuditEvent, Membership
from conduit.tenancy import system_scope
from integrations.connections.pauses import do_pause_sync, target_for
from integrations.models import CRM_CHOICES
from reconcile.models import CrmWriteLog
from tests.conftest import Tenant
from tests.ops_helpers import get, make_connection, make_health, make_log, make_write, send, workspace_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(alice: Tenant) -> str:
    return workspace_token(alice)


def test_status_lists_every_crm_with_health_switches_and_counts(alice: Tenant, token: str) -> None:
    conn = make_connection(alice.workspace, "hubspot", external_account_key="4401")
    make_health(conn, "warning", "rate_limited")
    make_write(conn, "failed", "transient_error")
    make_write(conn, "failed", "validation_failed", permanent_failure=True)
    make_write(conn, "succeeded")
    do_pause_sync(target_for(provider="hubspot"), reason="incident 42", actor="test")

    response = get("/api/v1/integrations/status", token)

    assert response.status_code == 200, response.content
    hubspot, salesforce, *others = response.json()["integrations"]
    assert [row["provider"] for row in others] == [name for name, _ in CRM_CHOICES[2:]]
    assert hubspot["provider"] == "hubspot" and hubspot["status"] == "connected"
    assert hubspot["external_account_key"] == "4401" and hubspot["sync_enabled"] is True
    assert hubspot["kill_switch"]["scope"] == "provider" and hubspot["kill_switch"]["reason"] == "incident 42"
    assert hubspot["health"]["status"] == "warning" and hubspot["health"]["reason"] == "rate_limited"
    assert hubspot["writes"] == {
        "dry_run": 0,
        "planned": 0,
        "failed": 1,
        "permanent": 1,
        "succeeded": 1,
        "skipped": 0,
    }
    assert salesforce == {
        **salesforce,
        "status": "not_connected",
        "connection_status": "not_connected",
        "connection_id": None,
        "health": None,
    }
    assert conn.access_token not in response.content.decode()
    assert conn.refresh_token not in response.content.decode()


def test_provider_status_and_its_errors(alice: Tenant, token: str) -> None:
    make_connection(alice.workspace, "salesforce", status="error", last_error="refresh_token_revoked")
    one = get("/api/v1/integrations/salesforce/status", token)
    assert one.status_code == 200
    assert one.json()["status"] == "needs_reauth" and one.json()["last_error"] == "refresh_token_revoked"
    assert one.json()["connection_status"] == "error"

    unknown = get("/api/v1/integrations/pipedrive/status", token)
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_provider"
    missing = get("/api/v1/integrations/salesforce/status")
    assert missing.status_code == 401 and missing.json()["code"] == "not_authenticated"
    wrong = get("/api/v1/integrations/salesforce/status", "cdt_not-a-real-token")
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_token"


def test_status_never_shows_another_workspace(alice: Tenant, bob: Tenant, token: str) -> None:
    make_connection(bob.workspace, "hubspot", external_account_key="bob-portal")
    response = get("/api/v1/integrations/hubspot/status", token)
    assert response.json()["status"] == "not_connected"
    assert "bob-portal" not in response.content.decode()


def test_sync_logs_filter_by_status_operation_code_and_since(alice: Tenant, token: str) -> None:
    old = make_log(alice.workspace, ok=False, code="rate_limited", at=timezone.now() - timedelta(days=3))
    failed = make_log(alice.workspace, ok=False, code="validation_failed", operation="create_task")
    make_log(alice.workspace, ok=True)
    make_log(alice.workspace, "salesforce", ok=False, code="validation_failed")

    every = get("/api/v1/integrations/hubspot/sync-logs", token).json()
    assert every["count"] == 3
    failures = get("/api/v1/integrations/hubspot/sync-logs", token, status="failed").json()
    assert [r["id"] for r in failures["results"]] == [failed.pk, old.pk]
    assert failures["results"][0]["level"] == "error" and failures["results"][0]["message"]
    by_code = get("/api/v1/integrations/hubspot/sync-logs", token, error_code="rate_limited").json()
    assert [r["id"] for r in by_code["results"]] == [old.pk]
    by_op = get("/api/v1/integrations/hubspot/sync-logs", token, operation="create_task").json()
    assert [r["id"] for r in by_op["results"]] == [failed.pk]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    recent = get("/api/v1/integrations/hubspot/sync-logs", token, status="FAILED", since=since).json()
    assert [r["id"] for r in recent["results"]] == [failed.pk]


def test_sync_logs_are_paginated(alice: Tenant, token: str) -> None:
    for _ in range(5):
        make_log(alice.workspace, ok=False, code="x")
    page = get("/api/v1/integrations/hubspot/sync-logs", token, limit=2, offset=2).json()
    assert page["count"] == 5 and len(page["results"]) == 2
    assert "offset=4" in page["next"] and page["previous"]


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"status": "BROKEN"}, "status: use SUCCESS or FAILED"),
        ({"since": "yesterday"}, "since:"),
        ({"limit": "many"}, "limit must be an integer"),
        ({"limit": "0"}, "limit must be at least 1"),
        ({"offset": "-1"}, "offset must be at least 0"),
    ],
)
def test_sync_logs_bad_filters_are_refused(
    alice: Tenant, token: str, params: dict[str, str], text: str
) -> None:
    response = get("/api/v1/integrations/hubspot/sync-logs", token, **params)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid" and text in response.json()["message"]


def test_sync_log_detail_only_for_its_own_workspace_and_provider(
    alice: Tenant, bob: Tenant, token: str
) -> None:
    mine = make_log(alice.workspace, ok=False, code="validation_failed", summary="Property email is invalid")
    theirs = make_log(bob.workspace, ok=False, code="validation_failed")
    detail = get(f"/api/v1/integrations/hubspot/sync-logs/{mine.pk}", token)
    assert detail.status_code == 200
    assert detail.json()["summary"] == "Property email is invalid" and detail.json()["http_status"] == 400
    assert get(f"/api/v1/integrations/hubspot/sync-logs/{theirs.pk}", token).status_code == 404
    assert get(f"/api/v1/integrations/salesforce/sync-logs/{mine.pk}", token).status_code == 404
    assert get("/api/v1/integrations/hubspot/sync-logs", token).json()["count"] == 1


def test_failure_summary_groups_by_error_code(alice: Tenant, bob: Tenant, token: str) -> None:
    conn = make_connection(alice.workspace)
    make_write(conn, "failed", "validation_failed", permanent_failure=True, last_error_message="first")
    make_write(conn, "failed", "validation_failed", last_error_message="latest sample")
    make_write(conn, "failed", "transient_error")
    make_write(conn, "succeeded")
    make_write(make_connection(bob.workspace), "failed", "bob_only")
    make_log(alice.workspace, ok=False, code="rate_limited")
    make_log(alice.workspace, ok=False, code="rate_limited", at=timezone.now() - timedelta(days=2))

    response = get("/api/v1/integrations/hubspot/failures", token)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["failed"] == 3 and body["permanent_failures"] == 1
    top, other = body["by_error_code"]
    assert top["error_code"] == "validation_failed" and top["count"] == 2
    assert top["permanent_failures"] == 1 and top["sample_message"] == "latest sample"
    assert top["first_seen"] <= top["last_seen"]
    assert other["error_code"] == "transient_error" and other["permanent_failures"] == 0
    assert [g["count"] for g in body["provider_call_failures"]] == [1]
    assert "bob_only" not in response.content.decode()
    week = get("/api/v1/integrations/hubspot/failures", token, hours=72).json()
    assert [g["count"] for g in week["provider_call_failures"]] == [2]
    bad = get("/api/v1/integrations/hubspot/failures", token, hours=0)
    assert bad.status_code == 400 and "hours" in bad.json()["message"]


def test_retry_failed_requeues_by_error_code_and_audits(alice: Tenant, bob: Tenant, token: str) -> None:
    conn = make_connection(alice.workspace)
    permanent = make_write(conn, "failed", "validation_failed", permanent_failure=True, retry_count=8)
    retrying = make_write(
        conn, "failed", "validation_failed", next_retry_at=timezone.now() + timedelta(hours=5)
    )
    other = make_write(conn, "failed", "transient_error")
    done = make_write(conn, "succeeded")
    bobs = make_write(make_connection(bob.workspace), "failed", "validation_failed", permanent_failure=True)

    response = send(
        "post", "/api/v1/integrations/hubspot/retry-failed", token, {"error_code": "validation_failed"}
    )

    assert response.status_code == 200, response.content
    assert response.json() == {"provider": "hubspot", "requeued": 2, "error_codes": ["validation_failed"]}
    with system_scope():
        rows = {w.pk: w for w in CrmWriteLog.objects.all()}
        audits = list(
            AuditEvent.objects.filter(event__startswith="crm_write").values_list("event", flat=True)
        )
    for write in (permanent, retrying):
        row = rows[write.pk]
        assert row.status == "failed" and not row.permanent_failure and row.retry_count == 0
        assert row.next_retry_at is not None and row.next_retry_at <= timezone.now()
    assert rows[other.pk].retry_count == 3 and rows[done.pk].status == "succeeded"
    assert rows[bobs.pk].permanent_failure is True
    assert sorted(audits) == [
        "crm_write_retry_requested",
        "crm_write_retry_requested",
        "crm_writes_retry_failed",
    ]

    everything = send("post", "/api/v1/integrations/hubspot/retry-failed", token)
    assert everything.json()["requeued"] == 3


def test_retry_failed_refuses_members_and_bad_input(make_workspace, alice: Tenant, token: str) -> None:  # type: ignore[no-untyped-def]
    conn = make_connection(alice.workspace)
    write = make_write(conn, "failed", "validation_failed", permanent_failure=True)
    member = make_workspace("carol", role=Membership.Role.MEMBER)
    refused = member.client().post("/api/v1/integrations/hubspot/retry-failed")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    bad = send("post", "/api/v1/integrations/hubspot/retry-failed", token, {"error_code": {"a": 1}})
    assert bad.status_code == 400 and bad.json()["message"].startswith("error_code")
    assert send("post", "/api/v1/integrations/hubspot/retry-failed", None).status_code == 401
    with system_scope():
        write.refresh_from_db()
    assert write.permanent_failure is True
