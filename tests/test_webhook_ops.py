"""Operator tools around the webhook inbox and the integration switch: commands and admin."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from conduit.models import AuditEvent
from conduit.tenancy import system_scope
from integrations.models import CrmConnection, IntegrationSetting, SyncCursor, WebhookEvent
from tests.conftest import Tenant
from tests.ops_helpers import make_connection

pytestmark = pytest.mark.django_db


def make_event(conn: CrmConnection, event_id: str, status: str = "failed", **fields: Any) -> WebhookEvent:
    with system_scope():
        return WebhookEvent.objects.create(
            provider=conn.crm,
            event_id=event_id,
            event_type="contact.creation",
            external_account_key=conn.external_account_key,
            object_id="101",
            workspace_id=conn.workspace_id,
            status=status,
            payload={"eventId": event_id, "subscriptionType": "contact.creation", "objectId": 101},
            **fields,
        )


def run(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_replay_command_replays_one_event_or_a_range(alice: Tenant) -> None:
    conn = make_connection(alice.workspace, "hubspot")
    make_event(conn, "ev-1")
    make_event(conn, "ev-2")
    assert run("replay_webhooks", "--provider", "hubspot", "--event-id", "ev-1") == (
        "replayed 1 event(s): 1 processed\n"
    )
    out = run("replay_webhooks", "--provider", "hubspot", "--since", "2020-01-01T00:00:00Z")
    assert out == "replayed 1 event(s): 1 processed\n"
    assert AuditEvent.objects.filter(event="webhook_replayed", actor="system:replay_webhooks").count() == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--event-id", "missing"], "no hubspot webhook event with id missing"),
        ([], "give event_id, or since"),
        (["--since", "last tuesday"], "--since must be an ISO 8601 time"),
        (["--since", "2026-12-01T00:00:00"], "--since must be an ISO 8601 time with a zone"),
        (["--since", "2026-02-30T00:00:00Z"], "--since must be an ISO 8601 time"),
        (["--since", "2026-12-02T00:00:00Z", "--until", "2026-12-01T00:00:00Z"], "until must be later"),
    ],
)
def test_replay_command_bad_input_exits_with_one_line(alice: Tenant, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("replay_webhooks", "--provider", "hubspot", *args)
    assert not AuditEvent.objects.filter(event="webhook_replayed").exists()


def test_switch_command_turns_an_integration_off_and_on(alice: Tenant) -> None:
    out = run(
        "set_integration_enabled", "--workspace", alice.workspace.slug, "--provider", "hubspot", "--off"
    )
    assert out == f"hubspot for workspace {alice.workspace.slug}: switched off\n"
    again = run(
        "set_integration_enabled", "--workspace", str(alice.workspace.pk), "--provider", "hubspot", "--off"
    )
    assert again.endswith("already off\n")
    run("set_integration_enabled", "--workspace", alice.workspace.slug, "--provider", "hubspot", "--on")
    with system_scope():
        assert IntegrationSetting.objects.get(workspace=alice.workspace, provider="hubspot").enabled
    events = AuditEvent.objects.filter(event__in=["integration_disabled", "integration_enabled"])
    assert sorted(events.values_list("event", flat=True)) == ["integration_disabled", "integration_enabled"]


@pytest.mark.parametrize("workspace", ["nope", "²", "999999"])
def test_switch_command_refuses_an_unknown_workspace(alice: Tenant, workspace: str) -> None:
    with pytest.raises(CommandError, match=f"no workspace '{workspace}'"):
        run("set_integration_enabled", "--workspace", workspace, "--provider", "hubspot", "--off")
    assert not IntegrationSetting.objects.exists()


def test_reset_command_refuses_a_workspace_of_non_ascii_digits(alice: Tenant) -> None:
    with pytest.raises(CommandError, match="No workspace with id or slug '²'"):
        run(
            "reset_sync_cursor",
            "--provider",
            "hubspot",
            "--object",
            "contact",
            "--hours",
            "2",
            "--workspace",
            "²",
        )


@pytest.fixture
def staff() -> Client:
    user = User.objects.create_superuser("ops@example.com", "ops@example.com", "pw-ops-123456")
    client = Client()
    client.force_login(user)
    return client


def test_admin_lists_webhook_events_cursors_and_switches_and_replays(staff: Client, alice: Tenant) -> None:
    conn = make_connection(alice.workspace, "hubspot")
    event = make_event(conn, "ev-admin")
    with system_scope():
        SyncCursor.objects.create(
            workspace=alice.workspace,
            connection=conn,
            provider="hubspot",
            object="contact",
            since_ts=conn.connected_at,
        )
        IntegrationSetting.objects.create(
            workspace=alice.workspace, provider="hubspot", enabled=False, reason="storm"
        )
    for name in ("webhookevent", "synccursor", "integrationsetting"):
        page = staff.get(f"/admin/integrations/{name}/", {"q": "a"})
        assert page.status_code == 200, name
    listing = staff.get("/admin/integrations/webhookevent/")
    assert b"ev-admin" in listing.content
    assert (
        conn.access_token.encode()
        not in staff.get(f"/admin/integrations/webhookevent/{event.pk}/change/").content
    )
    response = staff.post(
        "/admin/integrations/webhookevent/",
        {"action": "replay_events", "_selected_action": [event.pk]},
        follow=True,
    )
    assert b"Replayed 1 event(s): 1 processed." in response.content
    event.refresh_from_db()
    assert event.status == "processed" and event.attempts == 1


def test_backlog_command_processes_what_the_tasks_left(alice: Tenant) -> None:
    from datetime import timedelta

    from django.utils import timezone

    conn = make_connection(alice.workspace, "hubspot")
    make_event(conn, "ev-lost", status="received", received_at=timezone.now() - timedelta(minutes=5))
    make_event(conn, "ev-failed", attempts=1)
    assert run("process_webhook_backlog") == "processed 2 webhook event(s): 2 processed\n"
    assert run("process_webhook_backlog") == "processed 0 webhook event(s): nothing to do\n"
    with pytest.raises(CommandError, match="--limit must be between 1 and 100000"):
        run("process_webhook_backlog", "--limit", "0")


def test_purge_command_names_workspaces_like_the_other_commands(alice: Tenant) -> None:
    with pytest.raises(CommandError, match="no workspace with slug or id '²'"):
        run("purge_retention", "--workspace", "²", "--dry-run")
