"""What a delivered CRM write costs in SQL (at most 12 statements a write), and the
checks that got cheaper while staying as strict: the pause and tenant switch read with the write,
the connection's token taken from that same read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from conduit.tenancy import system_scope
from integrations.connections.pauses import do_pause_sync, pause_for, target_for
from integrations.connections.tenant_switch import do_set_integration_enabled, is_enabled
from integrations.connections.tokens import NotConnected, call_with_token, valid_account
from integrations.models import CrmConnection
from integrations.providers import get_provider
from reconcile.curation import plan_messages
from reconcile.delivery import claim, deliver_write, new_lease_token
from reconcile.mapping import resolve
from reconcile.models import CrmWriteLog
from reconcile.queue import reconcile_crm_writes
from tests.conftest import Tenant
from tests.reconcile_helpers import CUSTOMER, connect_crm, created_records, store_message, writes
from tests.test_tokens import connected, refreshes

# outside a test transaction: a delivery runs in none, and its statements are counted as they run
pytestmark = pytest.mark.django_db(transaction=True)
MAX_STATEMENTS_PER_WRITE = 12
Status = CrmWriteLog.Status


@contextmanager
def recorded() -> Iterator[list[str]]:
    """Every SQL statement this connection sends inside the block, in order."""
    statements: list[str] = []

    def record(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        statements.append(" ".join(sql.split()))
        return execute(sql, *args)

    with connection.execute_wrapper(record):
        yield statements


def listing(statements: list[str]) -> str:
    return "\n".join(f"{n:2}. {sql[:160]}" for n, sql in enumerate(statements, 1))


def plan_to_customer(tenant: Tenant, count: int, *, prefix: str = "cost") -> None:
    messages = [
        store_message(tenant.workspace, f"{prefix}-{n}@x", subject=f"Renewal {n}") for n in range(count)
    ]
    assert plan_messages(tenant.workspace, [m.pk for m in messages]).planned == count


def run_counting(per_write: list[list[str]], outcomes: list[str]) -> list[str]:
    """One reconcile run delivering inline; each delivery's statements go to `per_write`, and the
    run's own statements (sweep, park, count, pauses, claims) are returned."""

    def dispatch(write_id: int, token: str) -> None:
        with recorded() as statements:
            outcomes.append(deliver_write(write_id, token).code)
        per_write.append(statements)

    with recorded() as run:
        reconcile_crm_writes(dispatch=dispatch)
    for statements in per_write:  # the wrappers nest: the run's saw the deliveries' too
        for sql in statements:
            run.remove(sql)
    return run


@pytest.fixture
def hubspot(crm_env: Any, alice: Tenant) -> CrmConnection:
    """A live HubSpot connection whose mapping of CUSTOMER is cached, as in steady delivery."""
    conn = connect_crm(alice, "hubspot")
    assert resolve(conn, CUSTOMER).contact_id
    return conn


def test_a_delivered_write_makes_at_most_twelve_statements(
    hubspot: CrmConnection, crm_env: Any, alice: Tenant
) -> None:
    plan_to_customer(alice, 1)
    per_write: list[list[str]] = []
    outcomes: list[str] = []
    run_counting(per_write, outcomes)
    assert outcomes == ["succeeded"]
    [statements] = per_write
    assert len(statements) <= MAX_STATEMENTS_PER_WRITE, (
        f"a delivered write made {len(statements)} SQL statements (at most {MAX_STATEMENTS_PER_WRITE}):\n"
        + listing(statements)
    )
    # what must stay: outcome_unknown committed before the send, the send's sync log row, and the
    # lease-guarded final update, in that order
    step = [n for n, sql in enumerate(statements) if "outcome_unknown" in sql and sql.startswith("UPDATE")]
    log = [n for n, sql in enumerate(statements) if sql.startswith('INSERT INTO "crm_sync_logs"')]
    assert len(step) == 2 and len(log) == 1 and step[0] < log[0] < step[1], listing(statements)
    assert all('"lease_token" = ' in statements[n] for n in step), listing(statements)
    [row] = writes()
    assert row.status == Status.SUCCEEDED and row.external_id and not row.outcome_unknown
    assert len(created_records("hubspot", crm_env["hubspot"])) == 1


def test_the_cached_mapping_is_read_with_the_leased_row(
    hubspot: CrmConnection, crm_env: Any, alice: Tenant
) -> None:
    plan_to_customer(alice, 1)
    per_write: list[list[str]] = []
    run_counting(per_write, [])
    [statements] = per_write
    reads = [sql for sql in statements if '"crm_deal_mappings"' in sql]
    assert len(reads) == 1 and '"crm_write_log"' in reads[0], listing(statements)  # one statement
    assert len(statements) <= 8, listing(statements)  # was 10 with the mapping read on its own
    [row] = writes()
    assert row.payload["contact_id"] == resolve(hubspot, CUSTOMER).contact_id


def test_a_stale_mapping_read_with_the_row_is_looked_up_again(
    hubspot: CrmConnection, crm_env: Any, alice: Tenant
) -> None:
    with system_scope():
        hubspot.deal_mappings.update(refreshed_at=timezone.now() - timedelta(days=30))
    plan_to_customer(alice, 1)
    per_write: list[list[str]] = []
    outcomes: list[str] = []
    run_counting(per_write, outcomes)
    assert outcomes == ["succeeded"]
    with system_scope():
        [mapping] = hubspot.deal_mappings.all()
    assert timezone.now() - mapping.refreshed_at < timedelta(minutes=1)  # looked up, stored again


def test_the_runs_own_statements_do_not_grow_with_the_writes_it_claims(
    hubspot: CrmConnection, alice: Tenant
) -> None:
    runs = []
    for planned in (1, 4):
        plan_to_customer(alice, planned, prefix=f"batch{planned}")
        per_write: list[list[str]] = []
        outcomes: list[str] = []
        runs.append(run_counting(per_write, outcomes))
        assert outcomes == ["succeeded"] * planned
        assert max(len(s) for s in per_write) <= MAX_STATEMENTS_PER_WRITE, listing(max(per_write, key=len))
    assert len(runs[0]) == len(runs[1]), f"one write:\n{listing(runs[0])}\nfour writes:\n{listing(runs[1])}"


def test_a_pause_set_during_a_batch_holds_the_writes_not_yet_sent(
    hubspot: CrmConnection, crm_env: Any, alice: Tenant
) -> None:
    plan_to_customer(alice, 3)
    outcomes: list[str] = []

    def dispatch(write_id: int, token: str) -> None:
        outcomes.append(deliver_write(write_id, token).code)
        if len(outcomes) == 1:
            do_pause_sync(target_for(connection=hubspot), reason="incident", actor="ops")

    assert reconcile_crm_writes(dispatch=dispatch).claimed == 3
    assert outcomes == ["succeeded", "paused", "paused"]
    held = [w for w in writes() if w.status != Status.SUCCEEDED]
    assert len(held) == 2 and all(w.status == Status.PLANNED and not w.lease_token for w in held)
    assert len(created_records("hubspot", crm_env["hubspot"])) == 1


def leased(tenant: Tenant, conn: CrmConnection, n: int) -> tuple[int, str]:
    """A write of `conn` held by this test's lease: (id, lease token)."""
    token = new_lease_token()
    with system_scope():
        row = CrmWriteLog.objects.create(
            workspace=tenant.workspace,
            connection=conn,
            provider=conn.crm,
            operation="create_note",
            target=CUSTOMER,
            idempotency_key=f"held-{conn.pk}-{n}",
            payload={"subject": "s", "text": "t", "occurred_at": timezone.now().isoformat()},
            status=Status.SENDING,
            lease_token=token,
        )
    return row.pk, token


def plain_conn(tenant: Tenant, crm: str) -> CrmConnection:
    with system_scope():
        return CrmConnection.objects.create(
            workspace=tenant.workspace, crm=crm, status="connected", dry_run=False, external_account_key="k"
        )


def test_the_holds_read_with_the_write_agree_with_pause_for_and_is_enabled(
    alice: Tenant, bob: Tenant
) -> None:
    conns = [plain_conn(alice, "hubspot"), plain_conn(alice, "salesforce"), plain_conn(bob, "hubspot")]
    held = [leased(alice if c.workspace_id == alice.workspace.pk else bob, c, n) for n, c in enumerate(conns)]

    def agree() -> None:
        for conn, (write_id, token) in zip(conns, held, strict=True):
            row = claim(write_id, now=timezone.now(), lease_token=token)
            assert row is not None
            assert row.paused == (pause_for(conn) is not None), (conn.crm, conn.workspace_id)
            assert row.switched_off == (not is_enabled(conn.workspace_id, conn.crm))

    agree()
    do_set_integration_enabled(alice.workspace, "salesforce", False, actor="ops")
    agree()
    for target in (
        target_for(connection=conns[2]),
        target_for(workspace=alice.workspace),
        target_for(provider="salesforce"),
        target_for(everything=True),
    ):
        do_pause_sync(target, reason="drill", actor="ops")
        agree()


def test_delivery_uses_the_token_it_read_and_takes_a_newer_one_without_refreshing(
    crm_env: Any, alice: Tenant
) -> None:
    conn = connected(alice.workspace, "salesforce", crm_env["salesforce"])
    read_earlier = _copy(conn)
    read_earlier.access_token = "00Dstale!refreshed-since"  # another worker refreshed after our read

    def find(account: Any) -> str | None:
        return get_provider("salesforce").find_contact(account, CUSTOMER)

    with recorded() as statements:
        assert call_with_token(conn.pk, find, loaded=read_earlier) == "0035g00000SbxC1AAJ"
    assert refreshes(conn) == 0  # the stored token was taken, not a new refresh
    assert any("FOR UPDATE" in sql for sql in statements)  # ... read under the connection's lock
    with system_scope():
        conn.refresh_from_db()
    assert conn.status == "connected" and conn.access_token != read_earlier.access_token


def test_a_loaded_connection_must_be_connected_and_the_one_named(crm_env: Any, alice: Tenant) -> None:
    conn = connected(alice.workspace, "hubspot", crm_env["hubspot"])
    with recorded() as statements:
        assert valid_account(conn.pk, loaded=conn).access_token == conn.access_token
    assert statements == []  # nothing read again
    other = connected(alice.workspace, "salesforce", crm_env["salesforce"])
    with pytest.raises(ValueError, match="is not connection"):
        valid_account(conn.pk, loaded=other)
    conn.status = "error"
    with pytest.raises(NotConnected):
        valid_account(conn.pk, loaded=conn)
    expiring = _copy(other)
    expiring.token_expires_at = timezone.now() + timedelta(seconds=5)
    # a read that looks due for a refresh is checked again under the lock: the stored row decides
    assert valid_account(other.pk, loaded=expiring).access_token == other.access_token
    assert refreshes(other) == 0


def _copy(conn: CrmConnection) -> CrmConnection:
    with system_scope():
        return CrmConnection.objects.get(pk=conn.pk)
