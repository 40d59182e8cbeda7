"""Triage and controls: admin actions, go live / back to dry run, the Integrations page counts,
the commands and the tasks, the contact -> deal cache, and delivery's edge cases."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from conduit.models import AuditEvent, Membership
from conduit.tenancy import system_scope
from integrations.models import CrmConnection
from integrations.providers.errors import MissingScope, Transient
from reconcile import dispatch, tasks
from reconcile.curation import plan_messages
from reconcile.delivery import claim, deliver_write
from reconcile.mapping import resolve, resolve_targets
from reconcile.models import CrmWriteLog, DealMapping
from reconcile.queue import reconcile_crm_writes
from reconcile.services import CannotGoLive, do_go_live, do_retry_writes, do_skip_writes
from tests.conftest import Tenant
from tests.reconcile_helpers import (
    CUSTOMER,
    connect_crm,
    created_records,
    sandbox_fault,
    store_message,
    writes,
)

pytestmark = pytest.mark.django_db
Status = CrmWriteLog.Status


def events(name: str) -> list[AuditEvent]:
    with system_scope():
        return list(AuditEvent.objects.filter(event=name).order_by("id"))


def planned(
    tenant: Tenant, crm_env: Any, *, live: bool = True, crm: str = "hubspot", n: int = 1
) -> list[CrmWriteLog]:
    connect_crm(tenant, crm, live=live)
    messages = [store_message(tenant.workspace, f"t{i}@x") for i in range(n)]
    plan_messages(tenant.workspace, [m.pk for m in messages])
    return writes()


def test_go_live_sends_the_planned_writes_when_asked(crm_env: Any, alice: Tenant) -> None:
    rows = planned(alice, crm_env, live=False, n=2)
    assert {r.status for r in rows} == {Status.DRY_RUN}
    client = alice.client()
    page = client.get("/settings/integrations/")
    assert page.status_code == 200 and b"Dry run" in page.content
    assert rows[0].marker.encode() in page.content and b"hs_note_body" in page.content
    assert b"SECRET-BODY-TEXT" not in page.content
    assert client.post("/settings/integrations/hubspot/go-live/", {}).status_code == 302
    assert {r.status for r in writes()} == {Status.DRY_RUN}  # no choice made: nothing changed
    response = client.post("/settings/integrations/hubspot/go-live/", {"send_planned": "yes"}, follow=True)
    assert b"is live" in response.content and b"2 planned write(s) will be sent" in response.content
    assert {r.status for r in writes()} == {Status.PLANNED}
    [event] = events("crm_connection_went_live")
    assert event.payload_json == {"crm": "hubspot", "dry_run_writes": 2, "sent": True}
    again = client.post("/settings/integrations/hubspot/go-live/", {"send_planned": "no"}, follow=True)
    assert b"already live" in again.content
    back = client.post("/settings/integrations/hubspot/dry-run/", follow=True)
    assert b"back in dry run" in back.content and b"2 queued write(s) held" in back.content
    assert {r.status for r in writes()} == {Status.DRY_RUN}
    assert len(events("crm_connection_dry_run_enabled")) == 1


def test_go_live_without_sending_skips_the_planned_writes(crm_env: Any, alice: Tenant) -> None:
    planned(alice, crm_env, live=False)
    response = alice.client().post(
        "/settings/integrations/hubspot/go-live/", {"send_planned": "no"}, follow=True
    )
    assert b"1 planned write(s) skipped" in response.content
    [row] = writes()
    assert row.status == Status.SKIPPED and row.last_error_code == "skipped_at_go_live"


def test_go_live_is_refused_when_forced_dry_run_or_not_connected(
    crm_env: Any, alice: Tenant, settings: Any
) -> None:
    connect_crm(alice, "hubspot", live=False)
    with system_scope():
        conn = CrmConnection.objects.get(workspace=alice.workspace)
    settings.CONDUIT_FORCE_DRY_RUN = True
    page = alice.client().get("/settings/integrations/")
    assert b"switched every connection to dry run" in page.content and b"Go live" not in page.content
    with pytest.raises(CannotGoLive, match="forced"):
        do_go_live(conn, send_planned=True, actor="t")
    settings.CONDUIT_FORCE_DRY_RUN = False
    with system_scope():
        CrmConnection.objects.filter(pk=conn.pk).update(status="error")
    refused = alice.client().post(
        "/settings/integrations/hubspot/go-live/", {"send_planned": "yes"}, follow=True
    )
    assert b"reconnect it first" in refused.content
    with system_scope():
        assert CrmConnection.objects.get(pk=conn.pk).dry_run


def test_go_live_and_dry_run_need_an_admin_and_a_connection(crm_env: Any, make_workspace: Any) -> None:
    member = make_workspace("memb", role=Membership.Role.MEMBER)
    assert (
        member.client().post("/settings/integrations/hubspot/go-live/", {"send_planned": "yes"}).status_code
        == 404
    )
    owner = make_workspace("own")
    for path in ("go-live", "dry-run"):
        response = owner.client().post(
            f"/settings/integrations/hubspot/{path}/", {"send_planned": "yes"}, follow=True
        )
        assert b"HubSpot is not connected" in response.content


def test_page_shows_counts_last_error_and_pause(crm_env: Any, alice: Tenant) -> None:
    [row] = planned(alice, crm_env)
    sandbox_fault(crm_env["hubspot"], kind="validation", count=1, path_contains="/objects/notes")
    assert deliver_write(row.pk).code == "permanent_failure"
    with system_scope():
        conn = CrmConnection.objects.get(workspace=alice.workspace)
    from integrations.connections.pauses import do_pause_sync, target_for

    do_pause_sync(target_for(connection=conn), reason="investigating duplicates", actor="ops")
    page = alice.client().get("/settings/integrations/").content.decode()
    assert 'data-count="permanent" class="bad">1<' in page
    assert "Last error:" in page and "investigating duplicates" in page
    assert "Back to dry run" in page


def test_admin_retry_now_and_skip_are_audited(crm_env: Any, alice: Tenant, admin_client: Client) -> None:
    [row] = planned(alice, crm_env)
    sandbox_fault(crm_env["hubspot"], kind="validation", count=1, path_contains="/objects/notes")
    deliver_write(row.pk)
    url = "/admin/reconcile/crmwritelog/"
    listing = admin_client.get(f"{url}?permanent_failure__exact=1&provider=hubspot")
    assert listing.status_code == 200 and CUSTOMER.encode() in listing.content
    detail = admin_client.get(f"{url}{row.pk}/change/")
    assert (
        detail.status_code == 200
        and row.marker.encode() in detail.content
        and b"associationTypeId" in detail.content
    )
    assert b"SECRET-BODY-TEXT" not in detail.content
    admin_client.post(url, {"action": "retry_now", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert not row.permanent_failure and row.retry_count == 0 and row.status == Status.FAILED
    [event] = events("crm_write_retry_requested")
    assert event.payload_json["permanent_failure"] is True and event.payload_json["was"] == "failed"
    assert deliver_write(row.pk).code == "succeeded"
    admin_client.post(url, {"action": "retry_now", "_selected_action": [row.pk]})  # succeeded: left alone
    assert len(events("crm_write_retry_requested")) == 1
    admin_client.post(url, {"action": "skip", "_selected_action": [row.pk]})
    assert events("crm_write_skipped") == []


def test_skip_gives_up_on_queued_writes(crm_env: Any, alice: Tenant) -> None:
    [row] = planned(alice, crm_env)
    assert do_skip_writes([row], actor="ops", reason="customer asked") == 1
    row.refresh_from_db()
    assert row.status == Status.SKIPPED and events("crm_write_skipped")[0].payload_json["was"] == "planned"
    assert do_retry_writes([row], actor="ops") == 0


def test_reconcile_command_prints_counts_and_refuses_bad_input(crm_env: Any, alice: Tenant) -> None:
    planned(alice, crm_env, n=2)
    out = StringIO()
    call_command("reconcile_crm_writes", "--dry-run", stdout=out)
    assert "dry run: would claim; due 2, claimed 0" in out.getvalue()
    assert {r.status for r in writes()} == {Status.PLANNED}
    call_command("reconcile_crm_writes", "--inline", "--workspace", "alice", "--limit", "5", stdout=out)
    assert "claimed 2" in out.getvalue() and "succeeded: 2" in out.getvalue()
    with pytest.raises(CommandError, match="no workspace"):
        call_command("reconcile_crm_writes", "--workspace", "nope")
    with pytest.raises(CommandError, match="positive"):
        call_command("reconcile_crm_writes", "--limit", "0")


def test_reconcile_command_hands_claims_to_celery(
    crm_env: Any, alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    planned(alice, crm_env)
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        dispatch.deliver_crm_writes, "delay", lambda ids, token: sent.extend((i, token) for i in ids)
    )
    call_command("reconcile_crm_writes", stdout=StringIO())
    [(write_id, token)] = sent
    assert deliver_write(write_id, token).code == "succeeded"
    assert tasks.reconcile_crm_writes() == 0


def test_plan_command_replans_since_a_time(
    crm_env: Any, alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect_crm(alice, "hubspot", live=False)
    store_message(alice.workspace, "late@x")
    monkeypatch.setattr(dispatch.resolve_dry_run_targets, "delay", lambda ids: resolve_targets(ids))
    out = StringIO()
    call_command("plan_crm_writes", "--workspace", "alice", "--since", "24h", stdout=out)
    assert "planned 0 live and 1 dry-run write(s)" in out.getvalue()
    call_command("plan_crm_writes", "--workspace", "alice", "--since", "2020-01-01", stdout=out)
    assert "1 already planned" in out.getvalue()
    with system_scope():
        assert DealMapping.objects.get().contact_id == "101"  # looked up for the preview (a read)
    for bad, message in (("yesterday", "not a date"), ("7x", "not a date")):
        with pytest.raises(CommandError, match=message):
            call_command("plan_crm_writes", "--workspace", "alice", "--since", bad)
    with pytest.raises(CommandError, match="no workspace"):
        call_command("plan_crm_writes", "--workspace", "nope", "--since", "7d")


def test_deliver_task_requeues_short_waits_only(
    crm_env: Any, alice: Tenant, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    [row] = planned(alice, crm_env)
    requeued: list[Any] = []
    monkeypatch.setattr(
        dispatch.deliver_crm_write, "apply_async", lambda args, countdown: requeued.append((args, countdown))
    )
    sandbox_fault(
        crm_env["hubspot"], kind="rate_limit", count=1, retry_after=5, path_contains="/objects/notes"
    )
    assert dispatch.deliver_crm_write(row.pk) == "rate_limited"
    assert requeued == [((row.pk,), pytest.approx(6, abs=0.5))]
    settings.CONDUIT_WRITE_REQUEUE_MAX_SECONDS = 2
    with system_scope():
        CrmWriteLog.objects.filter(pk=row.pk).update(next_retry_at=timezone.now())
    sandbox_fault(
        crm_env["hubspot"], kind="rate_limit", count=1, retry_after=30, path_contains="/objects/notes"
    )
    assert dispatch.deliver_crm_write(row.pk) == "rate_limited"
    assert len(requeued) == 1  # a long wait is left to reconcile


def test_operator_overrides_win_over_lookups_and_stale_cache_is_refreshed(
    crm_env: Any, alice: Tenant
) -> None:
    conn = connect_crm(alice, "hubspot")
    first = resolve(conn, CUSTOMER.upper())
    assert first.contact_id == "101" and first.deal_id and first.source == "provider"
    with system_scope():
        DealMapping.objects.filter(pk=first.pk).update(
            deal_id="999", refreshed_at=timezone.now() - timedelta(days=3)
        )
    assert resolve(conn, CUSTOMER).deal_id == first.deal_id  # stale: looked up again
    with system_scope():
        DealMapping.objects.filter(pk=first.pk).update(
            deal_id="777", source="operator", refreshed_at=timezone.now() - timedelta(days=300)
        )
    assert resolve(conn, CUSTOMER).deal_id == "777"


def test_admin_override_of_a_mapping_marks_it_as_operator_set(
    crm_env: Any, alice: Tenant, admin_client: Client
) -> None:
    conn = connect_crm(alice, "hubspot")
    mapping = resolve(conn, CUSTOMER)
    response = admin_client.post(
        f"/admin/reconcile/dealmapping/{mapping.pk}/change/", {"contact_id": "101", "deal_id": "555"}
    )
    assert response.status_code == 302, response.content
    mapping.refresh_from_db()
    assert mapping.source == "operator" and mapping.deal_id == "555"
    assert admin_client.get("/admin/reconcile/dealmapping/add/").status_code == 403


def test_the_mapped_deal_is_what_the_write_associates(crm_env: Any, alice: Tenant) -> None:
    conn = connect_crm(alice, "hubspot")
    with system_scope():
        DealMapping.objects.create(
            workspace=alice.workspace,
            connection=conn,
            email=CUSTOMER,
            contact_id="101",
            deal_id="201",
            source="operator",
        )
    message = store_message(alice.workspace, "deal@x")
    plan_messages(alice.workspace, [message.pk])
    [row] = writes()
    assert deliver_write(row.pk).code == "succeeded"
    [note] = created_records("hubspot", crm_env["hubspot"])
    assert "201" in json.dumps(note)


def test_a_write_whose_connection_went_back_to_dry_run_is_held(crm_env: Any, alice: Tenant) -> None:
    [row] = planned(alice, crm_env)
    with system_scope():
        CrmConnection.objects.filter(pk=row.connection_id).update(dry_run=True)
    assert deliver_write(row.pk).code == "dry_run"
    row.refresh_from_db()
    assert row.status == Status.DRY_RUN and row.next_retry_at is None


def test_missing_scope_at_write_time_flips_the_connection_and_keeps_the_write(
    crm_env: Any, alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    [row] = planned(alice, crm_env)

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise MissingScope(
            "hubspot", ["crm.objects.contacts.write"], "This app hasn't been granted all required scopes"
        )

    resolve(row.connection, CUSTOMER)  # cached, so the write call is the first provider call
    monkeypatch.setattr("integrations.providers.hubspot.HubSpotProvider.write", refuse)
    assert deliver_write(row.pk).code == "waiting_for_connection"
    row.refresh_from_db()
    assert row.retry_count == 0 and not row.permanent_failure and not row.outcome_unknown
    with system_scope():
        conn = CrmConnection.objects.get(pk=row.connection_id)
    assert conn.status == "error" and conn.last_error == "missing_scope"
    assert conn.external_account_json["missing_scopes"] == ["crm.objects.contacts.write"]


def test_attempts_are_bounded_then_permanent_with_an_audit(
    crm_env: Any, alice: Tenant, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.CONDUIT_WRITE_MAX_ATTEMPTS = 3
    [row] = planned(alice, crm_env)
    resolve(row.connection, CUSTOMER)

    def flaky(*args: Any, **kwargs: Any) -> str:
        raise Transient("hubspot", "http_503", "Service Unavailable")

    monkeypatch.setattr("integrations.providers.hubspot.HubSpotProvider.write", flaky)
    codes = []
    for _ in range(4):
        row.refresh_from_db()
        at = (row.next_retry_at or timezone.now()) + timedelta(seconds=1)
        codes.append(deliver_write(row.pk, now=lambda at=at: at).code)
    assert codes == ["retry_scheduled", "retry_scheduled", "permanent_failure", "not_claimed"]
    row.refresh_from_db()
    assert row.permanent_failure and row.retry_count == 3 and row.last_error_code == "max_attempts"
    [event] = events("crm_write_marked_permanent_failure")
    assert event.payload_json["reason"] == "max_attempts" and event.payload_json["retry_count"] == 3
    assert len(events("crm_write_retry_scheduled")) == 2


def test_a_lost_lease_never_overwrites_the_new_holder(crm_env: Any, alice: Tenant) -> None:
    [row] = planned(alice, crm_env)
    held = claim(row.pk, now=timezone.now())
    assert held is not None and claim(row.pk, now=timezone.now()) is None
    with system_scope():
        CrmWriteLog.objects.filter(pk=row.pk).update(lease_token="someone-else")
    from reconcile.delivery import succeed

    assert succeed(held, "123", timezone.now()).code == "succeeded"
    row.refresh_from_db()
    assert row.status == Status.SENDING and row.lease_token == "someone-else" and not row.external_id


def test_no_token_or_body_reaches_the_ledger_audit_or_logs(
    crm_env: Any, alice: Tenant, capture_json_logs: Any
) -> None:
    rows = planned(alice, crm_env, n=2)
    sandbox_fault(crm_env["hubspot"], kind="server_error", count=1, path_contains="/objects/notes")
    for row in rows:
        deliver_write(row.pk)
    with system_scope():
        conn = CrmConnection.objects.get(workspace=alice.workspace)
        ledger = json.dumps(list(CrmWriteLog.objects.values()), default=str)
        audit = json.dumps(list(AuditEvent.objects.values("payload_json")), default=str)
    logs = json.dumps(capture_json_logs())
    records = json.dumps(created_records("hubspot", crm_env["hubspot"]))
    for secret in (conn.access_token, conn.refresh_token, "SECRET-BODY-TEXT"):
        assert secret and secret not in ledger + audit + logs + records


def test_an_unexpected_error_costs_an_attempt_instead_of_looping(
    crm_env: Any, alice: Tenant, monkeypatch: pytest.MonkeyPatch, capture_json_logs: Any
) -> None:
    [row] = planned(alice, crm_env)

    def bug(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("id")

    monkeypatch.setattr("integrations.providers.hubspot.HubSpotProvider.write", bug)
    assert deliver_write(row.pk).code == "retry_scheduled"
    row.refresh_from_db()
    assert row.retry_count == 1 and row.last_error_code == "internal_error" and row.status == Status.FAILED
    assert any(line.get("error_code") == "internal_error" for line in capture_json_logs())


def test_an_unknown_outcome_is_not_rechecked_before_the_search_index_can_see_it(
    crm_env: Any, alice: Tenant, settings: Any
) -> None:
    settings.CONDUIT_WRITE_RECHECK_DELAY_SECONDS = 120
    [row] = planned(alice, crm_env)
    sandbox_fault(crm_env["hubspot"], kind="server_error", count=1, path_contains="/objects/notes")
    before = timezone.now()
    assert deliver_write(row.pk).code == "retry_scheduled"
    row.refresh_from_db()
    assert row.outcome_unknown and row.next_retry_at >= before + timedelta(seconds=120)


def test_a_skipped_permanent_failure_no_longer_counts_as_one(crm_env: Any, alice: Tenant) -> None:
    from reconcile.services import counts_for

    [row] = planned(alice, crm_env)
    sandbox_fault(crm_env["hubspot"], kind="validation", count=1, path_contains="/objects/notes")
    deliver_write(row.pk)
    assert counts_for(row.connection).permanent == 1
    assert do_skip_writes([row], actor="ops") == 1
    counts = counts_for(row.connection)
    assert (counts.permanent, counts.skipped) == (0, 1)


def test_retry_of_a_no_contact_write_looks_the_person_up_again(crm_env: Any, alice: Tenant) -> None:
    conn = connect_crm(alice, "hubspot")
    message = store_message(alice.workspace, "nocontact@x", sender="Lee <lee.new@northwind.example>")
    plan_messages(alice.workspace, [message.pk])
    [row] = writes()
    assert deliver_write(row.pk).code == "no_matching_contact"
    with system_scope():
        assert DealMapping.objects.get(connection=conn, email="lee.new@northwind.example").contact_id == ""
    assert do_retry_writes([row], actor="ops", reason="contact added") == 1
    with system_scope():
        assert not DealMapping.objects.filter(email="lee.new@northwind.example").exists()
    row.refresh_from_db()
    assert row.status == Status.FAILED and row.next_retry_at is not None


def test_writes_of_a_connection_that_is_not_live_are_parked_then_resumed(crm_env: Any, alice: Tenant) -> None:
    rows = planned(alice, crm_env, n=2)
    with system_scope():
        CrmConnection.objects.filter(pk=rows[0].connection_id).update(status="error")
    result = reconcile_crm_writes(dispatch=lambda i, t: None)
    assert (result.parked, result.unparked, result.claimed) == (2, 0, 0)
    assert all(w.next_retry_at is None and w.status == Status.PLANNED for w in writes())
    with system_scope():
        CrmConnection.objects.filter(pk=rows[0].connection_id).update(status="connected")
    claimed: list[int] = []
    result = reconcile_crm_writes(dispatch=lambda i, t: claimed.append(i))
    assert (result.parked, result.unparked) == (0, 2) and sorted(claimed) == sorted(r.pk for r in rows)
