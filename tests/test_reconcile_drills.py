"""Drills on Postgres: a worker SIGKILLed mid-delivery, two reconcile runs at once, fault storms.
Nothing lost, nothing doubled, attempts counted only for real failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from conduit.models import AuditEvent, Message
from conduit.tenancy import system_scope
from reconcile.curation import plan_messages
from reconcile.delivery import deliver_write, deliver_writes
from reconcile.models import CrmWriteLog, DealMapping
from reconcile.queue import reconcile_crm_writes
from tests.conftest import Tenant
from tests.reconcile_helpers import (
    connect_crm,
    created_records,
    sandbox_fault,
    seed_writes,
    store_message,
    worker_child_env,
    writes,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
Status = CrmWriteLog.Status
ROOT = Path(__file__).resolve().parents[1]


def seed_due_rows(tenant: Tenant, conn: Any, count: int) -> list[int]:
    return seed_writes(tenant, conn, count, Status.PLANNED, due=timezone.now() - timedelta(minutes=1))


def test_two_reconcile_runs_at_once_claim_each_of_10000_rows_once(crm_env: Any, alice: Tenant) -> None:
    conn = connect_crm(alice, "hubspot")
    ids = seed_due_rows(alice, conn, 10_000)
    claims: list[list[tuple[int, str]]] = [[], []]
    start = threading.Barrier(2)

    def run(slot: int) -> None:
        try:
            start.wait()
            reconcile_crm_writes(
                dispatch=lambda write_id, token: claims[slot].append((write_id, token)), limit=10_000
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [write_id for slot in claims for write_id, _ in slot]
    assert len(claimed) == len(set(claimed)) == 10_000 and set(claimed) == set(ids)
    assert all(claims), "both runs claimed a share (they skip each other's locked rows, they do not wait)"
    with system_scope():
        assert CrmWriteLog.objects.filter(status=Status.SENDING).count() == 10_000
    # a delivery holding the wrong lease token is refused: one holder per row
    write_id, _ = claims[0][0]
    assert deliver_write(write_id, "f" * 32).code == "not_claimed"
    assert deliver_write(write_id, "").code == "not_claimed"


@pytest.mark.parametrize("groups", [False, True], ids=["one-by-one", "in-groups"])
def test_two_reconcile_runs_at_once_deliver_each_write_once_to_the_sandbox(
    crm_env: Any, alice: Tenant, groups: bool
) -> None:
    conn = connect_crm(alice, "hubspot")
    ids = seed_due_rows(alice, conn, 60)
    with system_scope():
        DealMapping.objects.bulk_create(
            [
                DealMapping(
                    workspace=alice.workspace,
                    connection=conn,
                    email=f"p{i}@customer.example",
                    contact_id="101",
                )
                for i in range(60)
            ]
        )
    outcomes: Counter[str] = Counter()

    def run() -> None:
        try:
            if groups:  # as the Celery tasks get them
                reconcile_crm_writes(
                    dispatch_group=lambda ids, token: outcomes.update(
                        o.code for o in deliver_writes(ids, token).values()
                    ),
                    limit=200,
                )
            else:
                reconcile_crm_writes(
                    dispatch=lambda write_id, token: outcomes.update([deliver_write(write_id, token).code]),
                    limit=200,
                )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == {"succeeded": 60}
    records = created_records("hubspot", crm_env["hubspot"])
    markers = Counter(r.marker for r in writes())
    bodies = [str(r) for r in records]
    assert len(records) == 60
    assert all(sum(m in b for b in bodies) == 1 for m in markers)
    assert len(ids) == 60


CHILD = """
import os, sys
import django
django.setup()
from reconcile.delivery import deliver_write, deliver_writes
print(deliver_write(int(sys.argv[1])).code, flush=True)
"""


def test_a_worker_killed_mid_delivery_leaves_exactly_one_record(crm_env: Any, alice: Tenant) -> None:
    conn = connect_crm(alice, "hubspot")
    message = store_message(alice.workspace, "killed@x")
    plan_messages(alice.workspace, [message.pk])
    [row] = writes()
    sandbox_fault(
        crm_env["hubspot"], kind="commit_then_hang", count=1, hang_seconds=60, path_contains="/objects/notes"
    )
    env = worker_child_env(crm_env)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(row.pk)], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        while not created_records("hubspot", crm_env["hubspot"]):
            assert time.monotonic() < deadline, "the child never reached the provider"
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)  # the provider committed; the worker never learns it
    finally:
        child.wait(timeout=10)
    row.refresh_from_db()
    assert row.status == Status.SENDING and row.outcome_unknown
    after_lease = row.lease_expires_at + timedelta(seconds=1)
    outcomes: list[str] = []
    result = reconcile_crm_writes(
        now=lambda: after_lease,
        dispatch=lambda i, t: outcomes.append(deliver_write(i, t, now=lambda: after_lease).code),
    )
    assert result.swept == 1 and outcomes == ["found_existing"]
    row.refresh_from_db()
    assert row.status == Status.SUCCEEDED and row.external_id
    assert len(created_records("hubspot", crm_env["hubspot"])) == 1
    assert conn.pk == row.connection_id


def storm_round(at: Any, seen: Counter[str]) -> None:
    def clock() -> Any:
        return at

    reconcile_crm_writes(now=clock, dispatch=lambda i, t: seen.update([deliver_write(i, t, now=clock).code]))


@pytest.mark.parametrize("crm", ["hubspot", "salesforce", "zoho"])
def test_fault_storms_lose_nothing_double_nothing_and_count_only_real_failures(
    crm: str, crm_env: Any, alice: Tenant, settings: Any
) -> None:
    settings.CONDUIT_WRITE_MAX_ATTEMPTS = 50
    settings.CONDUIT_PROVIDER_TIMEOUT = (2.0, 0.4)
    connect_crm(alice, crm)
    messages = [store_message(alice.workspace, f"storm{i}@x", subject=f"Storm {i}") for i in range(12)]
    plan_messages(alice.workspace, [m.pk for m in messages])
    assert len(writes()) == 12
    base = crm_env[crm]
    write_path = {"hubspot": "/objects/notes", "salesforce": "sobjects/Task", "zoho": "/crm/v7/Notes"}[crm]
    for fault in (
        {"kind": "rate_limit", "rate": 0.25, "retry_after": 0},
        {"kind": "server_error", "rate": 0.2, "path_contains": write_path},
        {"kind": "commit_then_hang", "rate": 0.15, "hang_seconds": 1, "path_contains": write_path},
        {"kind": "unavailable", "rate": 0.1},
        {"kind": "invalid_session", "count": 1},  # an expired token: refreshed, retried
    ):
        sandbox_fault(base, **fault)
    clock = [timezone.now()]
    seen: Counter[str] = Counter()
    for _ in range(60):
        clock[0] += timedelta(days=1)  # past any backoff or Retry-After
        storm_round(clock[0], seen)
        if all(w.status == Status.SUCCEEDED for w in writes()):
            break
        time.sleep(0.05)
    rows = writes()
    assert [w.status for w in rows] == [Status.SUCCEEDED] * 12, seen
    assert not any(w.permanent_failure for w in rows)
    records = [str(r) for r in created_records(crm, base)]
    assert len(records) == 12
    assert all(sum(w.marker in r for r in records) == 1 for w in rows)
    with system_scope():
        retries = AuditEvent.objects.filter(event="crm_write_retry_scheduled").count()
    assert sum(w.retry_count for w in rows) == retries == seen["retry_scheduled"]
    assert seen["rate_limited"] > 0 and seen["retry_scheduled"] > 0  # the storm really blew
    with system_scope():
        assert Message.objects.count() == 12
    assert connection.vendor == "postgresql"


def test_a_revoked_grant_parks_writes_without_attempts_until_reconnect(crm_env: Any, alice: Tenant) -> None:
    connect_crm(alice, "hubspot")
    messages = [store_message(alice.workspace, f"revoked{i}@x") for i in range(3)]
    plan_messages(alice.workspace, [m.pk for m in messages])
    sandbox_fault(crm_env["hubspot"], kind="invalid_session", count=1)
    sandbox_fault(crm_env["hubspot"], kind="invalid_grant", count=1)
    outcomes: Counter[str] = Counter()
    reconcile_crm_writes(dispatch=lambda i, t: outcomes.update([deliver_write(i, t).code]))
    assert outcomes == {"waiting_for_connection": 3}
    rows = writes()
    assert all(
        w.retry_count == 0 and not w.permanent_failure and w.status in ("failed", "planned") for w in rows
    )
    assert (
        reconcile_crm_writes(dispatch=lambda i, t: None).claimed == 0
    )  # held while the connection is in error
    connect_crm(alice, "hubspot")  # the customer reconnects: the same connection row comes back
    outcomes.clear()
    reconcile_crm_writes(dispatch=lambda i, t: outcomes.update([deliver_write(i, t).code]))
    assert outcomes == {"succeeded": 3}
    assert len(created_records("hubspot", crm_env["hubspot"])) == 3
