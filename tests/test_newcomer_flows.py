"""The flows that made a newcomer wait or misled them: Go live and Retry now dispatch at
once (after commit, through the reconcile run's claim, each write sent once), the card says when
a waiting write is tried next, a claimed install records its health, the connect messages say
what happened, a CRM account connected in two workspaces is said, and Salesforce's sync log
names the Task it sends."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses
from django.contrib.auth.models import User
from django.db import connections, transaction
from django.template.loader import render_to_string
from django.test import Client
from django.utils import timezone

from conduit.models import AuditEvent
from conduit.tenancy import system_scope
from integrations.connections import claims
from integrations.connections.pauses import do_pause_sync, target_for
from integrations.ledger import ledger
from integrations.models import ConnectionHealth, CrmConnection, SyncLog
from integrations.providers import get_provider
from reconcile import dispatch
from reconcile.curation import plan_messages
from reconcile.delivery import deliver_write
from reconcile.failures import do_retry_failed
from reconcile.models import CrmWriteLog, DealMapping
from reconcile.queue import dispatch_after_commit, dispatch_due_now, reconcile_crm_writes
from tests.conftest import Tenant
from tests.ops_helpers import events, workspace_token
from tests.provider_helpers import activity, salesforce_account
from tests.reconcile_helpers import (
    connect_crm,
    created_records,
    sandbox_fault,
    seed_writes,
    store_message,
    writes,
)
from tests.test_oauth_flow import KEYS, connect, pending_install

Status = CrmWriteLog.Status
GO_LIVE = "/settings/integrations/hubspot/go-live/"
PAGE = "/settings/integrations/"


def planned_in_dry_run(tenant: Tenant, n: int) -> CrmConnection:
    conn = connect_crm(tenant, "hubspot", live=False)
    messages = [store_message(tenant.workspace, f"t{i}@x") for i in range(n)]
    plan_messages(tenant.workspace, [m.pk for m in messages])
    assert {w.status for w in writes()} == {Status.DRY_RUN}
    return conn


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """What was handed to the broker: (write id, lease token) per write of each
    reconcile.deliver_crm_writes group."""
    sent: list[tuple[int, str]] = []
    monkeypatch.setattr(
        dispatch.deliver_crm_writes, "delay", lambda ids, token: sent.extend((i, token) for i in ids)
    )
    return sent


def said(client: Client) -> list[str]:
    """The flash messages the next page shows."""
    return [str(m) for m in client.get(PAGE).context["messages"]]


# --- Go live and Retry now dispatch at once -------------------------------------------------


@pytest.mark.django_db
def test_go_live_dispatches_the_planned_writes_on_commit_and_each_is_sent_once(
    crm_env: Any,
    alice: Tenant,
    enqueued: list[tuple[int, str]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    planned_in_dry_run(alice, 2)
    client = alice.client()
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(GO_LIVE, {"send_planned": "yes"}, follow=True)
        assert enqueued == []  # nothing leaves before the change has committed
        assert {w.status for w in writes()} == {Status.PLANNED}
    assert b"2 planned write(s) will be sent now" in response.content
    for callback in callbacks:  # the commit
        callback()
    assert sorted(write_id for write_id, _ in enqueued) == sorted(w.pk for w in writes())
    assert {w.status for w in writes()} == {Status.SENDING}  # leased through the reconcile claim
    # the ten-minute run finds nothing left to claim: a write has one sender
    run: list[tuple[int, str]] = []
    assert reconcile_crm_writes(dispatch=lambda *a: run.append(a)).claimed == 0 and run == []
    assert [deliver_write(write_id, token).code for write_id, token in enqueued] == ["succeeded"] * 2
    assert [deliver_write(write_id, token).code for write_id, token in enqueued] == ["not_claimed"] * 2
    assert len(created_records("hubspot", crm_env["hubspot"])) == 2


@pytest.mark.django_db
def test_go_live_dispatches_one_batch_at_once_and_leaves_the_rest_to_the_run(
    crm_env: Any,
    alice: Tenant,
    enqueued: list[tuple[int, str]],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.CONDUIT_RECONCILE_BATCH_SIZE = 2
    planned_in_dry_run(alice, 3)
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.client().post(GO_LIVE, {"send_planned": "yes"}, follow=True)
    assert b"3 planned write(s) will be sent: 2 now, the rest within about 10 minutes" in response.content
    assert len(enqueued) == 2
    assert Counter(w.status for w in writes()) == {Status.SENDING: 2, Status.PLANNED: 1}
    run: list[tuple[int, str]] = []
    assert reconcile_crm_writes(dispatch=lambda *a: run.append(a)).claimed == 1
    assert {i for i, _ in run}.isdisjoint({i for i, _ in enqueued})


@pytest.mark.django_db
def test_go_live_without_sending_and_a_paused_connection_say_what_happens(
    crm_env: Any,
    alice: Tenant,
    enqueued: list[tuple[int, str]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    conn = planned_in_dry_run(alice, 1)
    do_pause_sync(target_for(connection=conn), reason="checking duplicates", actor="ops")
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.client().post(GO_LIVE, {"send_planned": "yes"}, follow=True)
    assert b"1 planned write(s) will be sent when sync resumes (it is paused)" in response.content
    assert enqueued == [] and [w.status for w in writes()] == [Status.PLANNED]  # the pause holds it


@pytest.mark.django_db
def test_a_rolled_back_change_dispatches_nothing(
    crm_env: Any, alice: Tenant, enqueued: list[tuple[int, str]], django_capture_on_commit_callbacks: Any
) -> None:
    conn = connect_crm(alice, "hubspot")
    plan_messages(alice.workspace, [store_message(alice.workspace, "t@x").pk])
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        dispatch_after_commit([conn.pk])
        raise RuntimeError("the change failed")
    assert callbacks == [] and enqueued == [] and [w.status for w in writes()] == [Status.PLANNED]


@pytest.mark.django_db
def test_a_broker_failure_releases_the_claims_and_leaves_them_to_the_run(
    crm_env: Any,
    alice: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
    capture_json_logs: Any,
) -> None:
    conn = connect_crm(alice, "hubspot")
    plan_messages(alice.workspace, [store_message(alice.workspace, f"t{i}@x").pk for i in range(2)])

    def broker_down(*args: Any) -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(dispatch.deliver_crm_writes, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        dispatch_after_commit([conn.pk])  # raises nothing: the change has committed
    rows = writes()
    assert {(w.status, w.lease_token, w.lease_expires_at) for w in rows} == {(Status.PLANNED, "", None)}
    assert any(line.get("error_code") == "dispatch_failed" for line in capture_json_logs())
    run: list[tuple[int, str]] = []
    assert reconcile_crm_writes(dispatch=lambda *a: run.append(a)).claimed == 2  # the safety net


@pytest.mark.django_db
def test_nothing_is_dispatched_under_a_global_pause_or_forced_dry_run(
    crm_env: Any, alice: Tenant, enqueued: list[tuple[int, str]], settings: Any
) -> None:
    conn = connect_crm(alice, "hubspot")
    plan_messages(alice.workspace, [store_message(alice.workspace, "t@x").pk])
    settings.CONDUIT_FORCE_DRY_RUN = True
    assert dispatch_due_now([conn.pk]) == 0
    settings.CONDUIT_FORCE_DRY_RUN = False
    do_pause_sync(target_for(everything=True), reason="incident", actor="ops")
    assert dispatch_due_now([conn.pk]) == 0
    assert enqueued == [] and [w.status for w in writes()] == [Status.PLANNED]
    assert dispatch_due_now([]) == 0


def permanent_failure(crm_env: Any, tenant: Tenant) -> CrmWriteLog:
    connect_crm(tenant, "hubspot")
    plan_messages(tenant.workspace, [store_message(tenant.workspace, "t@x").pk])
    [row] = writes()
    sandbox_fault(crm_env["hubspot"], kind="validation", count=1, path_contains="/objects/notes")
    assert deliver_write(row.pk).code == "permanent_failure"
    row.refresh_from_db()
    return row


@pytest.mark.django_db
def test_admin_retry_now_dispatches_the_write_on_commit(
    crm_env: Any,
    alice: Tenant,
    admin_client: Client,
    enqueued: list[tuple[int, str]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    row = permanent_failure(crm_env, alice)
    with django_capture_on_commit_callbacks() as callbacks:
        admin_client.post(
            "/admin/reconcile/crmwritelog/", {"action": "retry_now", "_selected_action": [row.pk]}
        )
    assert enqueued == []
    [event] = events("crm_write_retry_requested")  # audited, as before
    assert event.payload_json["permanent_failure"] is True
    for callback in callbacks:
        callback()
    [(write_id, token)] = enqueued
    assert write_id == row.pk and deliver_write(write_id, token).code == "succeeded"
    assert reconcile_crm_writes(dispatch=lambda *a: pytest.fail("claimed twice")).claimed == 0


@pytest.mark.django_db
def test_retry_failed_of_the_api_dispatches_on_commit(
    crm_env: Any, alice: Tenant, enqueued: list[tuple[int, str]], django_capture_on_commit_callbacks: Any
) -> None:
    row = permanent_failure(crm_env, alice)
    with django_capture_on_commit_callbacks(execute=True):
        answer = Client().post(
            "/api/v1/integrations/hubspot/retry-failed",
            {},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {workspace_token(alice)}",
        )
    assert answer.status_code == 200 and answer.json()["requeued"] == 1
    [(write_id, token)] = enqueued
    assert write_id == row.pk and deliver_write(write_id, token).code == "succeeded"
    assert [e.payload_json["requeued"] for e in events("crm_writes_retry_failed")] == [1]
    enqueued.clear()
    with django_capture_on_commit_callbacks(execute=True):  # nothing failed: nothing to dispatch
        assert do_retry_failed(alice.workspace, "hubspot", actor="ops") == 0
    assert enqueued == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_go_live_and_a_reconcile_run_at_once_claim_each_write_once(
    crm_env: Any, alice: Tenant, enqueued: list[tuple[int, str]], settings: Any
) -> None:
    settings.CONDUIT_RECONCILE_BATCH_SIZE = 100
    conn = connect_crm(alice, "hubspot", live=False)
    ids = seed_writes(alice, conn, 1500, Status.DRY_RUN)
    client = alice.client()
    by_run: list[tuple[int, str]] = []
    start = threading.Barrier(2)
    live = threading.Event()

    def go_live() -> None:
        try:
            start.wait()
            assert client.post(GO_LIVE, {"send_planned": "yes"}).status_code == 302
        finally:
            live.set()
            connections.close_all()

    def ten_minute_run() -> None:
        try:
            start.wait()
            while not live.is_set() or len(by_run) + len(enqueued) < len(ids):
                reconcile_crm_writes(dispatch=lambda *a: by_run.append(a), limit=100)
                if live.is_set() and not reconcile_crm_writes(dry_run=True).due:
                    break
        finally:
            connections.close_all()

    threads = [threading.Thread(target=go_live), threading.Thread(target=ten_minute_run)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [write_id for write_id, _ in enqueued + by_run]
    assert len(claimed) == len(set(claimed)) == len(ids) and set(claimed) == set(ids)
    assert 0 < len(enqueued) <= 100  # Go live's own dispatch: one batch at most
    with system_scope():
        assert CrmWriteLog.objects.filter(status=Status.SENDING).count() == len(ids)


# --- when the next attempt is ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_card_knows_when_a_waiting_write_is_tried_next(crm_env: Any, alice: Tenant) -> None:
    conn = connect_crm(alice, "hubspot")
    ids = seed_writes(alice, conn, 5, Status.FAILED)
    now = timezone.now()
    soon, later = now + timedelta(minutes=7), now + timedelta(hours=2)
    with system_scope():
        for write_id, due in zip(ids, [later, soon, now - timedelta(minutes=1), None], strict=False):
            CrmWriteLog.objects.filter(pk=write_id).update(next_retry_at=due)
        # a permanent failure is not tried again, whenever it says
        CrmWriteLog.objects.filter(pk=ids[4]).update(
            permanent_failure=True, next_retry_at=now + timedelta(minutes=1)
        )
    assert ledger().next_attempt_at(conn, now=now) == soon  # not the due one, nor the parked one
    [card] = [c for c in alice.client().get(PAGE).context["cards"] if c["crm"] == "hubspot"]
    assert card["next_attempt_at"] == soon
    with system_scope():
        CrmWriteLog.objects.filter(pk__in=ids[:2]).update(next_retry_at=now)
    assert ledger().next_attempt_at(conn, now=now + timedelta(seconds=1)) is None
    with system_scope():
        CrmWriteLog.objects.filter(pk=ids[0]).update(next_retry_at=later)
        CrmConnection.objects.filter(pk=conn.pk).update(dry_run=True)
    [card] = [c for c in alice.client().get(PAGE).context["cards"] if c["crm"] == "hubspot"]
    assert card["next_attempt_at"] is None  # in dry run nothing is tried
    assert all(c["next_attempt_at"] is None for c in alice.client().get(PAGE).context["cards"])


def test_the_next_attempt_include_says_the_time() -> None:
    at = datetime(2031, 3, 4, 10, 42, 30, tzinfo=UTC)
    html = render_to_string("integrations/cards/next_attempt.html", {"next_attempt_at": at})
    assert "Next attempt at" in html and ">10:42 UTC</time>" in html and "2031-03-04" in html
    assert 'datetime="2031-03-04T10:42:30+00:00"' in html
    assert render_to_string("integrations/cards/next_attempt.html", {"next_attempt_at": None}).strip() == ""


# --- a claimed install records its health ------------------------------------------------------


def health_of(tenant: Tenant, crm: str = "hubspot") -> ConnectionHealth:
    with system_scope():
        return ConnectionHealth.objects.get(workspace=tenant.workspace, crm=crm)


@pytest.mark.django_db
def test_a_customer_claim_records_the_connection_healthy(alice: Tenant) -> None:
    pending = pending_install()
    client = alice.client()
    claimed = client.post(
        "/claim-install",
        {"crm": "hubspot", "install_id": pending.install_id, "workspace_id": alice.workspace.pk},
    )
    assert claimed.status_code == 302
    row = health_of(alice)
    assert (row.status, row.reason, row.connection_id) == ("ok", "connected", pending.connection_id)
    assert row.last_checked_at is not None and row.last_ok_at is not None
    [changed] = events("connection_health_changed")
    assert changed.actor == f"user:{alice.user.pk}" and changed.payload_json["to"] == "ok"
    page = client.get(PAGE).content.decode()
    assert "Connection health" in page and 'data-health="ok"' in page


@pytest.mark.django_db
def test_an_operator_claim_records_the_connection_healthy(alice: Tenant) -> None:
    with system_scope():
        operator = User.objects.create_user("ops@conduit.example", "ops@conduit.example", is_staff=True)
    conn = claims.do_operator_claim(pending_install(), alice.workspace, operator=operator, reason="ticket 42")
    row = health_of(alice)
    assert (row.status, row.reason, row.connection_id) == ("ok", "connected", conn.pk)
    assert events("connection_health_changed")[0].actor == f"user:{operator.pk}"


@pytest.mark.django_db
def test_a_claim_that_replaces_a_connection_starts_a_fresh_health_row(alice: Tenant) -> None:
    with system_scope():
        old = CrmConnection.objects.create(
            workspace=alice.workspace, crm="hubspot", status="error", external_account_key="111"
        )
        ConnectionHealth.objects.create(
            workspace=alice.workspace,
            crm="hubspot",
            connection=old,
            status="error",
            reason="auth_failed",
            last_checked_at=timezone.now(),
        )
    conn = claims.do_claim_install(
        pending_install().install_id, "hubspot", alice.workspace.pk, actor=alice.user, replace_existing=True
    )
    row = health_of(alice)
    assert (row.status, row.reason, row.connection_id) == ("ok", "connected", conn.pk)


# --- the connect messages say what happened ----------------------------------------------------


@pytest.mark.django_db
def test_a_new_connection_says_it_starts_in_dry_run(crm_env: Any, alice: Tenant) -> None:
    client = alice.client()
    connect(client, "hubspot")
    [message] = said(client)
    assert message.startswith("HubSpot connected to ") and KEYS["hubspot"] in message
    assert "New connections start in dry-run mode" in message and "Go live" in message


@pytest.mark.django_db
def test_reconnecting_a_live_connection_says_it_is_still_live(crm_env: Any, alice: Tenant) -> None:
    client = alice.client()
    conn = connect_crm(alice, "hubspot", live=True)
    said(client)  # the first connect's message
    connect(client, "hubspot")
    [message] = said(client)
    assert message.startswith("HubSpot reconnected to ") and "It is still live" in message
    assert "dry-run" not in message and "dry run" not in message
    with system_scope():
        assert not CrmConnection.objects.get(pk=conn.pk).dry_run


@pytest.mark.django_db
def test_reconnecting_a_dry_run_connection_says_it_is_still_in_dry_run(crm_env: Any, alice: Tenant) -> None:
    client = alice.client()
    connect(client, "hubspot")
    said(client)
    connect(client, "hubspot")
    [message] = said(client)
    assert message.startswith("HubSpot reconnected to ") and "It is still in dry run" in message
    assert "New connections" not in message


@pytest.mark.django_db
@pytest.mark.parametrize("dry_run", [True, False])
def test_switching_to_another_account_says_which_replaced_which(
    crm_env: Any, alice: Tenant, dry_run: bool
) -> None:
    client = alice.client()
    connect(client, "hubspot")
    said(client)
    with system_scope():
        CrmConnection.objects.update(external_account_key="111", external_account_json={}, dry_run=dry_run)
    held = connect(client, "hubspot")
    client.post(held["Location"], {"decision": "replace"})
    [message] = said(client)
    assert message.startswith("HubSpot now connected to ") and KEYS["hubspot"] in message
    assert "instead of 111" in message and "writes to this account from now on" in message
    assert ("It is still in dry run" if dry_run else "It is still live") in message


@pytest.mark.django_db
def test_switching_accounts_drops_the_old_accounts_lookups_and_a_reconnect_keeps_them(
    crm_env: Any, alice: Tenant
) -> None:
    client = alice.client()
    connect(client, "hubspot")
    with system_scope():
        conn = CrmConnection.objects.get(workspace=alice.workspace, crm="hubspot")
        DealMapping.objects.create(
            workspace=alice.workspace, connection=conn, email="maya@customer.example", contact_id="501"
        )
    connect(client, "hubspot")  # the same account again: its lookups still hold
    with system_scope():
        assert DealMapping.objects.filter(connection=conn).count() == 1
        CrmConnection.objects.filter(pk=conn.pk).update(external_account_key="111")
    held = connect(client, "hubspot")
    client.post(held["Location"], {"decision": "replace"})
    with system_scope():
        # contact 501 of account 111 names nothing (or someone else) in the new account
        assert not DealMapping.objects.filter(connection=conn).exists()
        audit = AuditEvent.objects.filter(event="crm_reconnected").latest("id")
    assert audit.payload_json["lookups_dropped"] == 1
    assert audit.payload_json["previous"]["external_account_key"] == "111"


# --- one CRM account, two workspaces -----------------------------------------------------------


@pytest.mark.django_db
def test_connecting_an_account_another_workspace_holds_warns_without_naming_it(
    crm_env: Any, alice: Tenant, bob: Tenant
) -> None:
    first = bob.client()
    connect(first, "hubspot")
    assert len(said(first)) == 1  # the first workspace: no warning
    client = alice.client()
    connect(client, "hubspot")
    page = client.get(PAGE)
    levels = {m.level_tag: str(m) for m in page.context["messages"]}
    warning = levels["warning"]
    assert warning.startswith("Another Conduit workspace already connects this HubSpot account")
    assert KEYS["hubspot"] in warning
    for secret in (bob.workspace.name, bob.workspace.slug, bob.user.email):
        assert secret not in warning


@pytest.mark.django_db
def test_claiming_an_account_another_workspace_holds_warns_too(
    crm_env: Any, alice: Tenant, bob: Tenant
) -> None:
    connect(bob.client(), "hubspot")  # the sandbox's hub: KEYS["hubspot"], as the pending install
    pending = pending_install()
    client = alice.client()
    client.post(
        "/claim-install",
        {"crm": "hubspot", "install_id": pending.install_id, "workspace_id": alice.workspace.pk},
    )
    messages = said(client)
    assert "is now connected. New connections start in dry-run mode" in messages[0]
    assert messages[1].startswith("Another Conduit workspace already connects this HubSpot account")


@pytest.mark.django_db
def test_operators_see_the_accounts_connected_in_several_workspaces(
    crm_env: Any, alice: Tenant, bob: Tenant, make_workspace: Any, admin_client: Client
) -> None:
    connect(alice.client(), "hubspot")
    connect(bob.client(), "hubspot")
    carol = make_workspace("carol")
    with system_scope():
        lone = CrmConnection.objects.create(
            workspace=carol.workspace, crm="hubspot", status="connected", external_account_key="999"
        )
        gone = CrmConnection.objects.create(
            workspace=carol.workspace, crm="salesforce", status="disconnected", external_account_key="999"
        )
        shared = list(CrmConnection.objects.filter(external_account_key=KEYS["hubspot"]))
    url = "/admin/integrations/crmconnection/"
    listing = admin_client.get(f"{url}?shared_account=yes")
    assert listing.status_code == 200
    assert {c.pk for c in listing.context["cl"].result_list} == {c.pk for c in shared}
    detail = admin_client.get(f"{url}{shared[0].pk}/change/").content.decode()
    assert "Also connected in" in detail and "1 other workspace(s)" in detail
    assert f"?q={KEYS['hubspot']}" in detail
    assert "no other workspace" in admin_client.get(f"{url}{lone.pk}/change/").content.decode()
    assert gone.pk not in {c.pk for c in listing.context["cl"].result_list}


# --- Salesforce: the sync log names the Task it sends ------------------------------------------


@responses.activate
@pytest.mark.django_db
def test_salesforce_sync_logs_name_the_task_each_write_sends(alice: Tenant) -> None:
    sf = get_provider("salesforce")
    rest = "https://acme.my.salesforce.com/services/data/v66.0"
    responses.post(f"{rest}/sobjects/Task", status=201, json={"id": "00T1", "success": True, "errors": []})
    account = salesforce_account(workspace_id=alice.workspace.pk)
    sf.write(account, "create_note", activity("003A"))
    sf.write(account, "create_task", activity("003A"))
    sent = [json.loads(call.request.body)["Status"] for call in responses.calls]
    assert sent == ["Completed", "Not Started"]
    with system_scope():
        logged = list(SyncLog.objects.order_by("id").values_list("operation", "summary"))
    assert logged == [
        ("create_completed_task", "create_completed_task ok"),
        ("create_task", "create_task ok"),
    ]


@pytest.mark.django_db
def test_a_salesforce_write_delivered_end_to_end_logs_a_completed_task(crm_env: Any, alice: Tenant) -> None:
    connect_crm(alice, "salesforce")
    plan_messages(alice.workspace, [store_message(alice.workspace, "t@x").pk])
    [row] = writes()
    assert row.operation == "create_note" and deliver_write(row.pk).code == "succeeded"
    with system_scope():
        operations = set(SyncLog.objects.filter(provider="salesforce").values_list("operation", flat=True))
    assert "create_completed_task" in operations and "create_note" not in operations
