"""Delivery in groups (reconcile hands claimed writes over CONDUIT_DELIVERY_GROUP_SIZE at a time,
one Celery task each): one read for the group, outcome_unknown still committed before each send,
the successes and the sync log rows stored in one transaction at the end, also when the group
stops early; a worker killed mid-group doubles nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from conduit.tenancy import system_scope
from integrations.connections.pauses import do_pause_sync, target_for
from integrations.models import CrmConnection, SyncLog, SyncPause
from integrations.providers import hubspot as hubspot_module
from integrations.providers import synclog
from reconcile import delivery, dispatch
from reconcile.curation import plan_messages
from reconcile.delivery import Outcome, deliver_writes
from reconcile.mapping import resolve
from reconcile.models import CrmWriteLog
from reconcile.planning import plan_and_dispatch
from reconcile.queue import dispatch_writes_now, reconcile_crm_writes
from tests.conftest import Tenant
from tests.reconcile_helpers import (
    CUSTOMER,
    connect_crm,
    created_records,
    store_message,
    worker_child_env,
    writes,
)
from tests.test_write_statements import listing, plan_to_customer, recorded

pytestmark = pytest.mark.django_db(transaction=True)
Status = CrmWriteLog.Status
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hubspot(crm_env: Any, alice: Tenant) -> CrmConnection:
    """A live HubSpot connection whose mapping of the customer is cached."""
    conn = connect_crm(alice, "hubspot")
    assert resolve(conn, CUSTOMER).contact_id
    return conn


def claimed(limit: int = 100) -> tuple[list[int], str]:
    """Claim the due writes as a reconcile run does; returns (ids, lease token) of its groups."""
    groups: list[tuple[list[int], str]] = []
    reconcile_crm_writes(limit=limit, dispatch_group=lambda ids, token: groups.append((ids, token)))
    ids = [i for group, _ in groups for i in group]
    tokens = {token for _, token in groups}
    assert len(tokens) <= 1
    return ids, tokens.pop() if tokens else ""


def after_success(monkeypatch: pytest.MonkeyPatch, write_id: int, then: Callable[[], Any]) -> None:
    """Run `then` right after delivery counts `write_id` a success (while its group goes on)."""
    real_succeed = delivery.succeed

    def succeed(row: CrmWriteLog, *args: Any, **kw: Any) -> Outcome:
        outcome = real_succeed(row, *args, **kw)
        if row.pk == write_id:
            then()
        return outcome

    monkeypatch.setattr(delivery, "succeed", succeed)


def sync_logs() -> list[SyncLog]:
    with system_scope():
        return list(SyncLog.objects.filter(operation="create_note"))


def test_a_group_is_read_once_and_stored_once(hubspot: CrmConnection, crm_env: Any, alice: Tenant) -> None:
    plan_to_customer(alice, 10)
    ids, token = claimed()
    with recorded() as statements:
        outcomes = deliver_writes(ids, token)
    assert Counter(o.code for o in outcomes.values()) == {"succeeded": 10}
    rows = writes()
    assert {(r.status, r.outcome_unknown, r.lease_token) for r in rows} == {(Status.SUCCEEDED, False, "")}
    assert all(r.external_id and r.sent_at for r in rows)
    assert len(created_records("hubspot", crm_env["hubspot"])) == 10
    # one read of the group; before each send, outcome_unknown committed by an update whose
    # condition checks the holds and the lease as they are then; the successes in one UPDATE,
    # then the sync logs in one INSERT at the end
    reads = [n for n, s in enumerate(statements) if s.startswith("SELECT") and '"crm_write_log"' in s]
    marks = [n for n, s in enumerate(statements) if s.startswith("UPDATE") and '"outcome_unknown" = ' in s]
    logs = [n for n, s in enumerate(statements) if s.startswith('INSERT INTO "crm_sync_logs"')]
    stored = [n for n, s in enumerate(statements) if s.startswith("WITH done")]
    assert len(reads) == 1 and "json" in statements[reads[0]], listing(statements)  # the ids: one parameter
    assert len(marks) == 10 and all("IN (SELECT" in statements[n] for n in marks), listing(statements)
    assert len(logs) == 1 and len(stored) == 1 and max(marks) < stored[0] < logs[0], listing(statements)
    assert len(statements) <= 3 * 10, listing(statements)
    assert len(sync_logs()) == 10 and {log.status for log in sync_logs()} == {SyncLog.Status.SUCCESS}


def test_ids_not_leased_under_the_token_are_not_claimed(hubspot: CrmConnection, alice: Tenant) -> None:
    plan_to_customer(alice, 2)
    ids, token = claimed()
    with system_scope():
        CrmWriteLog.objects.filter(pk=ids[1]).update(lease_token="someone-else")
    outcomes = deliver_writes([*ids, 999_999], token)
    assert outcomes == {
        ids[0]: Outcome("succeeded"),
        ids[1]: Outcome("not_claimed"),
        999_999: Outcome("not_claimed"),
    }
    assert [r.status for r in writes()] == [Status.SUCCEEDED, Status.SENDING]


def test_a_group_stopped_early_stores_what_it_sent_and_leaves_the_rest_unknown(
    hubspot: CrmConnection, crm_env: Any, alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_to_customer(alice, 3)
    ids, token = claimed()
    real_write = hubspot_module.HubSpotProvider.write
    calls = 0

    def write(self: Any, *args: Any) -> str:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise SoftTimeLimitExceeded()  # the task's time is up while the second write is sent
        return real_write(self, *args)

    monkeypatch.setattr(hubspot_module.HubSpotProvider, "write", write)
    with pytest.raises(SoftTimeLimitExceeded):
        deliver_writes(ids, token)
    first, second, third = writes()
    assert first.status == Status.SUCCEEDED and first.external_id and not first.outcome_unknown
    # counted as an attempt that may have gone out: looked up by its marker before any resend
    assert (second.status, second.retry_count, second.outcome_unknown) == (Status.FAILED, 1, True)
    assert third.status == Status.SENDING and not third.outcome_unknown  # its lease is swept later
    assert [log.status for log in sync_logs() if log.http_status == 201] == [SyncLog.Status.SUCCESS]


def test_a_success_whose_lease_was_lost_is_not_stored(
    hubspot: CrmConnection, alice: Tenant, monkeypatch: pytest.MonkeyPatch, capture_json_logs: Any
) -> None:
    plan_to_customer(alice, 2)
    ids, token = claimed()

    def taken() -> None:  # swept and taken by another worker before the group is stored
        with system_scope():
            CrmWriteLog.objects.filter(pk=ids[0]).update(lease_token="another-worker")

    after_success(monkeypatch, ids[0], taken)
    deliver_writes(ids, token)
    first, second = writes()
    assert (first.status, first.lease_token, first.external_id) == (Status.SENDING, "another-worker", "")
    assert second.status == Status.SUCCEEDED
    lost = [line for line in capture_json_logs() if line.get("error_code") == "lease_lost"]
    assert [line["message"] for line in lost] == [
        f"write {ids[0]}: lease lost before its outcome was recorded"
    ]


def test_a_pause_set_while_a_group_runs_holds_its_writes_not_yet_sent(
    hubspot: CrmConnection, crm_env: Any, alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_to_customer(alice, 3)
    ids, token = claimed()
    # an operator pauses the connection after the first send
    after_success(
        monkeypatch,
        ids[0],
        lambda: do_pause_sync(target_for(connection=hubspot), reason="wrong portal", actor="ops"),
    )
    outcomes = deliver_writes(ids, token)
    assert [outcomes[i].code for i in ids] == ["succeeded", "paused", "paused"]
    assert [(r.status, r.lease_token) for r in writes()] == [(Status.SUCCEEDED, "")] + [
        (Status.PLANNED, "")
    ] * 2
    assert len(created_records("hubspot", crm_env["hubspot"])) == 1


def test_a_group_never_sends_on_an_expired_lease_and_each_send_extends_its_own(
    hubspot: CrmConnection, crm_env: Any, alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_to_customer(alice, 2)
    ids, token = claimed()
    real_write = hubspot_module.HubSpotProvider.write
    leases: list[Any] = []

    def write(self: Any, *args: Any) -> str:
        with system_scope():
            leases.append(CrmWriteLog.objects.get(pk=ids[0]).lease_expires_at)
            # the second write's lease runs out while the first is sent (not swept yet)
            CrmWriteLog.objects.filter(pk=ids[1]).update(
                lease_expires_at=timezone.now() - timedelta(seconds=1)
            )
        return real_write(self, *args)

    monkeypatch.setattr(hubspot_module.HubSpotProvider, "write", write)
    started = timezone.now()
    outcomes = deliver_writes(ids, token)
    assert [outcomes[i].code for i in ids] == ["succeeded", "lease_lost"]
    lease = timedelta(seconds=settings.CONDUIT_WRITE_LEASE_SECONDS)
    assert leases and leases[0] >= started + lease  # extended at its outcome_unknown commit
    assert len(created_records("hubspot", crm_env["hubspot"])) == 1


def test_a_single_delivery_never_sends_on_an_expired_lease(
    hubspot: CrmConnection, crm_env: Any, alice: Tenant
) -> None:
    plan_to_customer(alice, 1)
    [write_id], token = claimed()
    with system_scope():  # the lease ran out while the task waited in the broker; not swept yet
        CrmWriteLog.objects.filter(pk=write_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert delivery.deliver_write(write_id, token).code == "lease_lost"
    assert created_records("hubspot", crm_env["hubspot"]) == []
    [row] = writes()
    assert row.status == Status.SENDING and not row.outcome_unknown  # the sweep brings it back


def test_a_lost_worker_does_not_requeue_its_group_at_once() -> None:
    # its sent writes are looked up only after their leases expire, when the CRM's search sees them
    assert dispatch.deliver_crm_writes.reject_on_worker_lost is False
    assert dispatch.deliver_crm_writes.acks_late is True


def test_one_failing_write_does_not_hold_back_the_group(
    hubspot: CrmConnection, crm_env: Any, alice: Tenant
) -> None:
    plan_to_customer(alice, 2)
    with system_scope():
        CrmWriteLog.objects.create(
            workspace=alice.workspace,
            connection=hubspot,
            provider="hubspot",
            operation="create_note",
            target="nobody@unknown.example",
            idempotency_key="group-stranger",
            payload={"subject": "s", "text": "t", "occurred_at": "2026-12-01T10:00:00+00:00"},
            next_retry_at=timezone.now() - timedelta(minutes=1),
        )
    ids, token = claimed()
    outcomes = deliver_writes(ids, token)
    assert Counter(o.code for o in outcomes.values()) == {"succeeded": 2, "no_matching_contact": 1}
    assert Counter(r.status for r in writes()) == {Status.SUCCEEDED: 2, Status.SKIPPED: 1}


def test_reconcile_hands_claims_over_in_groups_and_releases_what_the_broker_refused(
    hubspot: CrmConnection, alice: Tenant, settings: Any
) -> None:
    settings.CONDUIT_DELIVERY_GROUP_SIZE = 2
    plan_to_customer(alice, 5)
    handed: list[list[int]] = []

    def broker(ids: list[int], token: str) -> None:
        if len(handed) == 1:
            raise ConnectionError("the broker is down")
        handed.append(ids)

    with pytest.raises(ConnectionError):
        reconcile_crm_writes(dispatch_group=broker)
    [first] = handed
    assert len(first) == 2
    by_status = Counter((r.pk in first, r.status, bool(r.lease_token)) for r in writes())
    assert by_status == {(True, Status.SENDING, True): 2, (False, Status.PLANNED, False): 3}


def test_a_group_holds_one_connections_writes_where_it_can(
    hubspot: CrmConnection, crm_env: Any, alice: Tenant, settings: Any
) -> None:
    settings.CONDUIT_DELIVERY_GROUP_SIZE = 2
    salesforce = connect_crm(alice, "salesforce")
    messages = [store_message(alice.workspace, f"two-{n}@x", subject=f"Two {n}").pk for n in range(2)]
    assert plan_messages(alice.workspace, messages).planned == 4
    rows = writes()  # planned message by message: the two connections' writes alternate by id
    assert [r.connection_id for r in rows] != sorted(r.connection_id for r in rows)
    groups: list[list[int]] = []
    reconcile_crm_writes(dispatch_group=lambda ids, token: groups.append(ids))
    by_id = {r.pk: r.connection_id for r in rows}
    assert sorted({by_id[i] for i in group} for group in groups) == [{hubspot.pk}, {salesforce.pk}]


def test_newly_planned_live_writes_are_claimed_at_once_and_handed_over_in_groups(
    hubspot: CrmConnection, alice: Tenant, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.CONDUIT_DELIVERY_GROUP_SIZE = 2
    sent: list[tuple[list[int], str]] = []
    monkeypatch.setattr(dispatch.deliver_crm_writes, "delay", lambda ids, token: sent.append((ids, token)))
    messages = [store_message(alice.workspace, f"new-{n}@x", subject=f"New {n}").pk for n in range(3)]
    plan_and_dispatch(alice.workspace.pk, messages)
    rows = writes()
    assert [ids for ids, _ in sent] == [[r.pk for r in rows[:2]], [rows[2].pk]]
    assert {(r.status, r.lease_token) for r in rows} == {(Status.SENDING, sent[0][1])}
    assert Counter(o.code for o in deliver_writes(*sent[0]).values()) == {"succeeded": 2}


def test_newly_planned_writes_held_back_wait_for_the_reconcile_run(
    hubspot: CrmConnection, alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[Any] = []
    monkeypatch.setattr(dispatch.deliver_crm_writes, "delay", lambda *args: sent.append(args))
    do_pause_sync(target_for(connection=hubspot), reason="incident", actor="ops")
    plan_and_dispatch(alice.workspace.pk, [store_message(alice.workspace, "held@x").pk])
    with system_scope():
        SyncPause.objects.all().delete()
    do_pause_sync(target_for(everything=True), reason="freeze", actor="ops")
    plan_and_dispatch(alice.workspace.pk, [store_message(alice.workspace, "frozen@x").pk])
    assert sent == [] and {(r.status, r.lease_token) for r in writes()} == {(Status.PLANNED, "")}
    assert dispatch_writes_now([]) == 0


def test_the_group_task_requeues_short_waits_and_counts_outcomes(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = {
        1: Outcome("succeeded"),
        2: Outcome("rate_limited", retry_in=5.0),
        3: Outcome("retry_scheduled", retry_in=3600.0),
    }
    monkeypatch.setattr(delivery, "deliver_writes", lambda ids, token: outcomes)
    requeued: list[tuple[Any, float]] = []
    monkeypatch.setattr(
        dispatch.deliver_crm_write, "apply_async", lambda args, countdown: requeued.append((args, countdown))
    )
    counts = dispatch.deliver_crm_writes([1, 2, 3], "token")
    assert counts == {"succeeded": 1, "rate_limited": 1, "retry_scheduled": 1}
    assert requeued == [((2,), 6.0)]


def test_held_sync_logs_wait_for_write_held_and_a_failed_insert_is_logged(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch, capture_json_logs: Any
) -> None:
    context = synclog.CallContext(workspace_id=alice.workspace.pk)
    fields = {"provider": "hubspot", "ok": True, "http_status": 201, "error_code": "", "duration_ms": 5}
    with synclog.held_rows() as rows:
        synclog.record_sync(context, operation="create_note", summary="one", **fields)
        synclog.record_sync(context, operation="create_task", summary="two", **fields)
    assert [r.summary for r in rows] == ["one", "two"] and not sync_logs()

    def broken(instances: Any) -> None:
        raise DatabaseError("connection lost")

    monkeypatch.setattr(synclog, "insert_rows", broken)
    monkeypatch.setattr(synclog, "insert_row", broken)
    synclog.write_held(rows)  # never raises
    failed = [
        line["message"] for line in capture_json_logs() if line.get("error_code") == "sync_log_write_failed"
    ]
    assert failed == ["1 sync log(s) not written: DatabaseError"] * 2
    monkeypatch.undo()
    rows[0].connection_id = 999_999  # a connection deleted meanwhile: only its own row is lost
    synclog.write_held(rows)
    with system_scope():
        assert list(SyncLog.objects.filter(workspace=alice.workspace).values_list("summary", flat=True)) == [
            "two"
        ]


CHILD = """
import json, sys
import django
django.setup()
from reconcile import delivery
from tests.reconcile_helpers import sandbox_fault

real, done = delivery.succeed, []

def succeed(*args, **kw):
    outcome = real(*args, **kw)
    done.append(outcome)
    if len(done) == 2:  # the third send commits at the provider and never answers
        fault = {"kind": "commit_then_hang", "count": 1, "hang_seconds": 60, "path_contains": "/notes"}
        sandbox_fault(sys.argv[3], **fault)
    return outcome

delivery.succeed = succeed
delivery.deliver_writes(json.loads(sys.argv[1]), sys.argv[2])
"""


@pytest.mark.postgres
def test_a_worker_killed_mid_group_leaves_exactly_one_record_per_write(
    hubspot: CrmConnection, crm_env: Any, alice: Tenant
) -> None:
    plan_to_customer(alice, 5)
    ids, token = claimed()
    env = worker_child_env(crm_env)
    args = [sys.executable, "-c", CHILD, json.dumps(ids), token, crm_env["hubspot"]]
    child = subprocess.Popen(args, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        while len(created_records("hubspot", crm_env["hubspot"])) < 3:
            assert child.poll() is None, "the child ended before its third send"
            assert time.monotonic() < deadline, "the child never reached its third send"
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)  # two successes only in its memory, the third unanswered
    finally:
        child.wait(timeout=10)
    rows = writes()
    assert [(r.status, r.outcome_unknown) for r in rows] == [(Status.SENDING, True)] * 3 + [
        (Status.SENDING, False)
    ] * 2
    after_lease = max(r.lease_expires_at for r in rows if r.lease_expires_at) + timedelta(seconds=1)
    outcomes: Counter[str] = Counter()
    result = reconcile_crm_writes(
        now=lambda: after_lease,
        dispatch_group=lambda group, t: outcomes.update(
            o.code for o in deliver_writes(group, t, now=lambda: after_lease).values()
        ),
    )
    assert result.swept == 5 and outcomes == {"found_existing": 3, "succeeded": 2}
    rows = writes()
    assert {r.status for r in rows} == {Status.SUCCEEDED} and len({r.external_id for r in rows}) == 5
    bodies = [str(r) for r in created_records("hubspot", crm_env["hubspot"])]
    assert len(bodies) == 5 and all(sum(r.marker in b for b in bodies) == 1 for r in rows)
