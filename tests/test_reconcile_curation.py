"""The planner (Plan 007 curation) and the backoff schedule, without a CRM."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conduit.ingest import ingest_batch, parse_raw
from conduit.tenancy import system_scope, workspace_scope
from integrations.models import CrmConnection
from reconcile import backoff
from reconcile.curation import addresses, idempotency_key, plan_messages, plan_since
from reconcile.models import CrmWriteLog, WritePolicy
from tests.conftest import Tenant, raw_email
from tests.reconcile_helpers import store_message, writes

pytestmark = pytest.mark.django_db
Status = CrmWriteLog.Status


def connection(
    tenant: Tenant, crm: str = "hubspot", *, dry_run: bool = False, status: str = "connected"
) -> CrmConnection:
    with system_scope():
        return CrmConnection.objects.create(
            workspace=tenant.workspace,
            crm=crm,
            status=status,
            dry_run=dry_run,
            external_account_key=f"{crm}-1",
        )


def test_backoff_is_full_jitter_bounded_by_the_cap(settings: Any) -> None:
    settings.CONDUIT_WRITE_BACKOFF_BASE_SECONDS = 30
    settings.CONDUIT_WRITE_BACKOFF_CAP_SECONDS = 600
    assert [backoff.ceiling(n) for n in range(6)] == [30, 60, 120, 240, 480, 600]
    assert backoff.ceiling(500) == 600  # no overflow for absurd attempt numbers
    assert backoff.full_jitter(3, draw=lambda: 0.0) == 0
    assert backoff.full_jitter(3, draw=lambda: 0.5) == 120
    delays = [backoff.full_jitter(4) for _ in range(500)]
    assert all(0 <= d <= 480 for d in delays) and max(delays) > 240  # spread over the whole range
    now = datetime(2026, 11, 23, tzinfo=UTC)
    assert backoff.next_retry_at(0, now, draw=lambda: 1.0) == now + timedelta(seconds=30)


def test_idempotency_key_is_deterministic_and_distinguishes_each_part() -> None:
    key = idempotency_key(1, 2, 3, "create_note", "A@X.example")
    assert key == idempotency_key(1, 2, 3, "create_note", "a@x.example") and len(key) == 64
    others = {
        idempotency_key(9, 2, 3, "create_note", "a@x.example"),
        idempotency_key(1, 9, 3, "create_note", "a@x.example"),
        idempotency_key(1, 2, 9, "create_note", "a@x.example"),
        idempotency_key(1, 2, 3, "create_task", "a@x.example"),
        idempotency_key(1, 2, 3, "create_note", "b@x.example"),
    }
    assert key not in others and len(others) == 5


def test_addresses_are_bare_lowercase_and_unique() -> None:
    assert addresses(
        ["Maya <Maya@Acme.example>, lee@x.example", "maya@acme.example", "", "not-an-address"]
    ) == [
        "maya@acme.example",
        "lee@x.example",
    ]


def test_one_write_per_external_participant_and_connection_never_internal(alice: Tenant) -> None:
    hub, sf = connection(alice, "hubspot"), connection(alice, "salesforce", dry_run=True)
    message = store_message(
        alice.workspace,
        "multi@x",
        sender="Maya <maya@acme.example>",
        to=["Owner <alice@example.com>", "Lee <lee@northwind.example>"],
        cc=["Colleague <someone@example.com>"],
    )
    result = plan_messages(alice.workspace, [message.pk])
    assert (result.planned, result.dry_run) == (2, 2)
    rows = writes()
    assert {(r.connection_id, r.target, r.status) for r in rows} == {
        (hub.pk, "maya@acme.example", Status.PLANNED),
        (hub.pk, "lee@northwind.example", Status.PLANNED),
        (sf.pk, "maya@acme.example", Status.DRY_RUN),
        (sf.pk, "lee@northwind.example", Status.DRY_RUN),
    }
    assert all(r.operation == "create_note" for r in rows)
    assert {r.provider for r in rows} == {"hubspot", "salesforce"}
    assert all(r.next_retry_at is not None for r in rows if r.status == Status.PLANNED)
    assert all(r.next_retry_at is None for r in rows if r.status == Status.DRY_RUN)


def test_payload_has_metadata_and_a_link_but_never_the_body(alice: Tenant, settings: Any) -> None:
    settings.CONDUIT_PUBLIC_URL = "https://conduit.example"
    connection(alice)
    message = store_message(alice.workspace, "meta@x", subject="Renewal terms", body="TOP-SECRET-BODY")
    plan_messages(alice.workspace, [message.pk])
    [row] = writes()
    p = row.payload
    assert p["subject"] == "Email: Renewal terms" and p["direction"] == "inbound"
    assert p["link"] == f"https://conduit.example/messages/{message.pk}/"
    assert p["participants"]["from"] == ["maya.lopez@acme-logistics.example"]
    assert "Time: " in p["text"] and p["link"] in p["text"]
    assert "TOP-SECRET-BODY" not in json.dumps(p)
    assert "due_at" not in p


def test_a_workspace_rule_turns_outbound_mail_into_tasks_with_a_due_date(alice: Tenant) -> None:
    connection(alice)
    with system_scope():
        WritePolicy.objects.create(
            workspace=alice.workspace,
            outbound_operation="create_task",
            task_due_days=3,
            internal_domains=["example.com"],
        )
    message = store_message(
        alice.workspace, "out@x", sender="Alice <alice@example.com>", to=["Maya <maya@acme.example>"]
    )
    plan_messages(alice.workspace, [message.pk])
    [row] = writes()
    assert row.operation == "create_task" and row.payload["direction"] == "outbound"
    due = datetime.fromisoformat(row.payload["due_at"]) - datetime.fromisoformat(row.payload["occurred_at"])
    assert due == timedelta(days=3)


def test_writes_per_message_are_capped(alice: Tenant, settings: Any) -> None:
    settings.CONDUIT_MAX_WRITES_PER_MESSAGE = 3
    connection(alice)
    message = store_message(alice.workspace, "mass@x", to=[f"p{i}@customer.example" for i in range(20)])
    assert plan_messages(alice.workspace, [message.pk]).planned == 3


def test_no_connection_or_a_broken_one_plans_nothing(alice: Tenant) -> None:
    message = store_message(alice.workspace, "none@x")
    assert plan_messages(alice.workspace, [message.pk]).planned == 0
    connection(alice, status="error")
    assert plan_messages(alice.workspace, [message.pk]).planned == 0
    assert plan_messages(alice.workspace, []).messages == 0
    assert writes() == []


def test_force_dry_run_setting_plans_everything_as_dry_run(alice: Tenant, settings: Any) -> None:
    settings.CONDUIT_FORCE_DRY_RUN = True
    connection(alice)
    message = store_message(alice.workspace, "forced@x")
    assert plan_messages(alice.workspace, [message.pk]).dry_run == 1


def test_ingest_plans_after_the_storing_transaction_commits(
    alice: Tenant, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection(alice, dry_run=True)
    with system_scope():
        WritePolicy.objects.create(
            workspace=alice.workspace, internal_domains=["alice.example", "@Example.com "]
        )
    dispatched: list[Any] = []
    monkeypatch.setattr("reconcile.planning.dispatch_planned", dispatched.append)
    with django_capture_on_commit_callbacks(execute=True), workspace_scope(alice.workspace):
        ingest_batch(alice.workspace, [parse_raw(raw_email("ingested@x"))])
        assert writes() == []  # nothing before the commit
    [row] = writes()
    assert row.target == "maya@acme.example" and row.status == Status.DRY_RUN
    assert dispatched and dispatched[0].dry_run_ids == [row.pk]


def test_a_planning_failure_never_fails_the_ingest(
    alice: Tenant,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
    capture_json_logs: Any,
) -> None:
    connection(alice)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr("reconcile.planning.plan_messages", broken)
    with django_capture_on_commit_callbacks(execute=True), workspace_scope(alice.workspace):
        [result] = ingest_batch(alice.workspace, [parse_raw(raw_email("kept@x"))])
    assert result.created
    assert any(line.get("error_code") == "planning_failed" for line in capture_json_logs())


def test_plan_since_replans_idempotently_in_batches(alice: Tenant) -> None:
    connection(alice)
    for i in range(5):
        store_message(alice.workspace, f"old{i}@x")
    since = datetime.now(UTC) - timedelta(hours=1)
    first = plan_since(alice.workspace, since, batch_size=2)
    assert (first.messages, first.planned) == (5, 5)
    again = plan_since(alice.workspace, since, batch_size=2)
    assert (again.planned, again.already_planned) == (0, 5)
