"""Curated writes end to end against the sandbox CRMs: planning, dry run, delivery, outcomes."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from conduit.models import AuditEvent
from conduit.tenancy import system_scope
from reconcile.curation import plan_messages
from reconcile.delivery import deliver_write
from reconcile.models import CrmWriteLog
from reconcile.queue import reconcile_crm_writes
from tests.conftest import Tenant
from tests.reconcile_helpers import (
    CUSTOMER,
    STRANGER,
    connect_crm,
    created_records,
    sandbox_fault,
    store_message,
    writes,
)

pytestmark = pytest.mark.django_db
CRMS = ["hubspot", "salesforce", "zoho", "odoo"]
Status = CrmWriteLog.Status


def run_inline(**kw: Any) -> dict[str, int]:
    outcomes: dict[str, int] = {}

    def dispatch(write_id: int, token: str) -> None:
        code = deliver_write(write_id, token).code
        outcomes[code] = outcomes.get(code, 0) + 1

    reconcile_crm_writes(dispatch=dispatch, **kw)
    return outcomes


@pytest.mark.parametrize("crm", CRMS)
def test_a_stored_message_is_delivered_once_with_contact_and_deal(
    crm: str, crm_env: Any, alice: Tenant
) -> None:
    conn = connect_crm(alice, crm)
    message = store_message(alice.workspace, "m1@x")
    result = plan_messages(alice.workspace, [message.pk])
    assert result.planned == 1 and result.dry_run == 0
    [row] = writes()
    assert row.status == Status.PLANNED and row.target == CUSTOMER and row.connection_id == conn.pk
    assert deliver_write(row.pk).code == "succeeded"
    row.refresh_from_db()
    assert row.status == Status.SUCCEEDED and row.external_id and not row.outcome_unknown
    [record] = created_records(crm, crm_env[crm])
    text = json.dumps(record)
    assert row.marker in text and "SECRET-BODY-TEXT" not in text
    assert row.payload["deal_id"]  # the seeded contact has an open deal / opportunity
    # a second delivery or plan changes nothing
    assert deliver_write(row.pk).code == "not_claimed"
    assert plan_messages(alice.workspace, [message.pk]).already_planned == 1
    assert len(created_records(crm, crm_env[crm])) == 1


def test_dry_run_plans_but_never_sends(crm_env: Any, alice: Tenant) -> None:
    connect_crm(alice, "hubspot", live=False)
    message = store_message(alice.workspace, "m2@x")
    assert plan_messages(alice.workspace, [message.pk]).dry_run == 1
    assert run_inline() == {}
    [row] = writes()
    assert row.status == Status.DRY_RUN
    assert created_records("hubspot", crm_env["hubspot"]) == []


def test_a_participant_without_a_contact_is_skipped_not_failed(crm_env: Any, alice: Tenant) -> None:
    connect_crm(alice, "hubspot")
    message = store_message(alice.workspace, "m3@x", sender=STRANGER)
    plan_messages(alice.workspace, [message.pk])
    [row] = writes()
    assert deliver_write(row.pk).code == "no_matching_contact"
    row.refresh_from_db()
    assert row.status == Status.SKIPPED and not row.permanent_failure


def test_transient_failures_back_off_then_succeed_and_count_attempts(crm_env: Any, alice: Tenant) -> None:
    connect_crm(alice, "hubspot")
    message = store_message(alice.workspace, "m4@x")
    plan_messages(alice.workspace, [message.pk])
    [row] = writes()
    sandbox_fault(crm_env["hubspot"], kind="server_error", count=1, path_contains="/objects/notes")
    assert deliver_write(row.pk).code == "retry_scheduled"
    row.refresh_from_db()
    assert row.status == Status.FAILED and row.retry_count == 1 and row.outcome_unknown
    assert row.next_retry_at is not None
    with system_scope():
        assert AuditEvent.objects.filter(event="crm_write_retry_scheduled").count() == 1
    later = row.next_retry_at + timedelta(seconds=1)
    assert deliver_write(row.pk, now=lambda: later).code == "succeeded"
    assert len(created_records("hubspot", crm_env["hubspot"])) == 1


def test_rate_limits_wait_without_burning_attempts(crm_env: Any, alice: Tenant) -> None:
    connect_crm(alice, "hubspot")
    message = store_message(alice.workspace, "m5@x")
    plan_messages(alice.workspace, [message.pk])
    [row] = writes()
    sandbox_fault(
        crm_env["hubspot"], kind="rate_limit", count=1, retry_after=7, path_contains="/objects/notes"
    )
    outcome = deliver_write(row.pk)
    assert outcome.code == "rate_limited" and outcome.retry_in == pytest.approx(7, abs=0.5)
    row.refresh_from_db()
    assert row.retry_count == 0 and row.status == Status.FAILED and not row.outcome_unknown


def test_validation_errors_are_permanent_and_audited(crm_env: Any, alice: Tenant) -> None:
    connect_crm(alice, "hubspot")
    message = store_message(alice.workspace, "m6@x")
    plan_messages(alice.workspace, [message.pk])
    [row] = writes()
    sandbox_fault(crm_env["hubspot"], kind="validation", count=1, path_contains="/objects/notes")
    assert deliver_write(row.pk).code == "permanent_failure"
    row.refresh_from_db()
    assert row.permanent_failure and row.status == Status.FAILED
    with system_scope():
        event = AuditEvent.objects.get(event="crm_write_marked_permanent_failure")
    assert event.payload_json["write_id"] == row.pk and event.payload_json["reason"]
    assert run_inline() == {}


def test_reconcile_sweeps_a_lost_lease_and_finds_the_write_by_marker(
    crm_env: Any, alice: Tenant, settings: Any
) -> None:
    connect_crm(alice, "hubspot")
    message = store_message(alice.workspace, "m7@x")
    plan_messages(alice.workspace, [message.pk])
    [row] = writes()
    settings.CONDUIT_PROVIDER_TIMEOUT = (2.0, 0.5)
    sandbox_fault(
        crm_env["hubspot"], kind="commit_then_hang", count=1, hang_seconds=2, path_contains="/objects/notes"
    )
    assert deliver_write(row.pk).code == "retry_scheduled"  # the reply never came
    assert len(created_records("hubspot", crm_env["hubspot"])) == 1
    row.refresh_from_db()
    later = row.next_retry_at + timedelta(seconds=1)
    assert deliver_write(row.pk, now=lambda: later).code == "found_existing"
    assert len(created_records("hubspot", crm_env["hubspot"])) == 1
    row.refresh_from_db()
    assert row.status == Status.SUCCEEDED and row.external_id
