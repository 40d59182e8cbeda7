"""The sync-cursor operator doors: `pull_sync_cursors` (the beat task's twin), `reset_sync_cursor`
(audited, refuses bad input and changes nothing) and the runbook's reset SQL, after which the
next pull reads again what changed since the new since_ts."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from conduit.models import AuditEvent
from conduit.tenancy import system_scope
from integrations.cursors import tasks
from integrations.cursors.pull import pull_sync_cursors
from integrations.models import CrmConnection, SyncCursor
from reconcile.models import DealMapping
from tests.conftest import Tenant
from tests.test_sync_cursors import CONTACT_IDS, MAYA, cached, change, cursor, fast_hubspot, is_stale
from tests.test_tenancy import PROBE_ROLE, _grant_probe_role
from tests.test_tokens import connected

RUNBOOK_RESET = (
    "UPDATE crm_sync_cursors SET since_ts = NOW() - INTERVAL '24 hours' "
    "WHERE provider = 'hubspot' AND object = 'contact';"
)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def resets() -> list[dict[str, Any]]:
    with system_scope():
        return [
            {"workspace": e.workspace_id, "actor": e.actor, **e.payload_json}
            for e in AuditEvent.objects.filter(event="sync_cursor_reset").order_by("id")
        ]


def caught_up(conn: CrmConnection, hours_ago: float = 0) -> None:
    """The cursor has read everything: nothing changed since it."""
    with system_scope():
        SyncCursor.objects.filter(connection=conn).update(
            since_ts=timezone.now() - timedelta(hours=hours_ago)
        )


def refresh(row: DealMapping) -> None:
    with system_scope():
        DealMapping.objects.filter(pk=row.pk).update(refreshed_at=timezone.now())


@pytest.fixture
def hubspot_pulled(crm_env: dict[str, str], alice: Tenant) -> tuple[CrmConnection, DealMapping]:
    """Maya changed at the CRM, pulled, her lookup fresh again, the cursor caught up to now."""
    conn = connected(alice.workspace, "hubspot", crm_env["hubspot"])
    fast_hubspot(crm_env["hubspot"])
    maya = cached(conn, MAYA, CONTACT_IDS["hubspot"], "201")
    change(crm_env, "hubspot", "contact", CONTACT_IDS["hubspot"], firstname="M.")
    pull_sync_cursors()
    assert is_stale(maya)
    refresh(maya)
    caught_up(conn)
    assert pull_sync_cursors().records == 0 and not is_stale(maya)
    return conn, maya


@pytest.mark.django_db
def test_pull_command_prints_the_counts(crm_env: dict[str, str], alice: Tenant) -> None:
    connected(alice.workspace, "salesforce", crm_env["salesforce"])
    assert run("pull_sync_cursors") == (
        "pulled 2 cursor(s) of 1 connection(s): 0 record(s), 0 error(s), 0 skipped (busy)"
    )


@pytest.mark.django_db
def test_the_beat_task_runs_the_pull_and_returns_its_counts(crm_env: dict[str, str], alice: Tenant) -> None:
    connected(alice.workspace, "salesforce", crm_env["salesforce"])
    assert tasks.pull_sync_cursors.name == "integrations.pull_sync_cursors"
    assert tasks.pull_sync_cursors() == {
        "connections": 1,
        "cursors": 2,
        "records": 0,
        "errors": 0,
        "skipped": 0,
    }


@pytest.mark.django_db
def test_reset_command_moves_matching_cursors_back_and_the_next_pull_rereads(
    hubspot_pulled: tuple[CrmConnection, DealMapping],
) -> None:
    conn, maya = hubspot_pulled
    deal_since = cursor(conn, "deal").since_ts
    before = timezone.now()
    assert run("reset_sync_cursor", "--provider", "hubspot", "--object", "contact", "--hours", "24") == (
        "reset 1 hubspot contact cursor(s) to 24 h ago"
    )
    since = cursor(conn, "contact").since_ts
    assert before - timedelta(hours=24) <= since <= timezone.now() - timedelta(hours=24)
    assert cursor(conn, "deal").since_ts == deal_since
    assert resets() == [
        {
            "workspace": conn.workspace_id,
            "actor": "system:reset_sync_cursor",
            "provider": "hubspot",
            "object": "contact",
            "hours": 24,
            "cursors": 1,
        }
    ]
    assert pull_sync_cursors().records == 1 and is_stale(maya)


@pytest.mark.django_db
def test_reset_is_audited_per_workspace_and_can_name_one(
    crm_env: dict[str, str], alice: Tenant, bob: Tenant
) -> None:
    a = connected(alice.workspace, "salesforce", crm_env["salesforce"])
    b = connected(bob.workspace, "salesforce", crm_env["salesforce"])
    pull_sync_cursors()
    caught_up(a)
    caught_up(b)
    run(
        "reset_sync_cursor",
        "--provider",
        "salesforce",
        "--object",
        "deal",
        "--hours",
        "2",
        "--workspace",
        "bob",
    )
    assert cursor(a, "deal").since_ts > cursor(b, "deal").since_ts
    by_id = str(alice.workspace.pk)
    out = run(
        "reset_sync_cursor",
        "--provider",
        "salesforce",
        "--object",
        "deal",
        "--hours",
        "3",
        "--workspace",
        by_id,
    )
    assert out == "reset 1 salesforce deal cursor(s) to 3 h ago"
    run("reset_sync_cursor", "--provider", "salesforce", "--object", "deal", "--hours", "1")
    assert [(e["workspace"], e["hours"], e["cursors"]) for e in resets()] == [
        (bob.workspace.pk, 2, 1),
        (alice.workspace.pk, 3, 1),
        *sorted([(alice.workspace.pk, 1, 1), (bob.workspace.pk, 1, 1)]),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "pipedrive", "--object", "contact", "--hours", "24"], "Unknown provider 'pipedrive'"),
        (["--provider", "hubspot", "--object", "lead", "--hours", "24"], "Unknown object 'lead'"),
        (["--provider", "hubspot", "--object", "contact", "--hours", "0"], "--hours must be a whole number"),
        (["--provider", "hubspot", "--object", "contact", "--hours", "-3"], "--hours must be a whole number"),
        (
            ["--provider", "hubspot", "--object", "contact", "--hours", "1.5"],
            "--hours must be a whole number",
        ),
        (
            ["--provider", "hubspot", "--object", "contact", "--hours", "soon"],
            "--hours must be a whole number",
        ),
        (["--provider", "hubspot", "--object", "contact", "--hours", "8761"], "from 1 to 8760"),
        (
            ["--provider", "hubspot", "--object", "contact", "--hours", "24", "--workspace", "nope"],
            "No workspace with id or slug 'nope'",
        ),
        (["--provider", "hubspot", "--object", "deal", "--hours", "24"], "No hubspot deal sync cursor"),
        (
            ["--provider", "hubspot", "--object", "contact", "--hours", "24", "--workspace", "bob"],
            "No hubspot contact sync cursor in workspace bob; nothing was reset.",
        ),
    ],
)
@pytest.mark.django_db
def test_reset_refuses_bad_input_with_one_line_and_changes_nothing(
    crm_env: dict[str, str], alice: Tenant, bob: Tenant, args: list[str], message: str
) -> None:
    conn = connected(alice.workspace, "hubspot", crm_env["hubspot"])
    with system_scope():
        SyncCursor.objects.create(
            workspace=alice.workspace,
            connection=conn,
            provider="hubspot",
            object="contact",
            since_ts=timezone.now(),
        )
    before = cursor(conn, "contact").since_ts
    with pytest.raises(CommandError) as caught:
        run("reset_sync_cursor", *args)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert cursor(conn, "contact").since_ts == before and resets() == []
    with system_scope():
        assert SyncCursor.objects.count() == 1


@pytest.mark.django_db
def test_reset_audit_and_cursor_never_hold_a_token(hubspot_pulled: tuple[CrmConnection, DealMapping]) -> None:
    conn, _ = hubspot_pulled
    run("reset_sync_cursor", "--provider", "hubspot", "--object", "contact", "--hours", "24")
    stored = json.dumps(resets()) + cursor(conn, "contact").last_error
    assert conn.access_token not in stored and conn.refresh_token not in stored


@pytest.mark.postgres
@pytest.mark.django_db
def test_runbook_reset_sql_works_as_written_and_the_next_pull_rereads(
    hubspot_pulled: tuple[CrmConnection, DealMapping],
) -> None:
    conn, maya = hubspot_pulled
    with connection.cursor() as cur:
        cur.execute(RUNBOOK_RESET)
        assert cur.rowcount == 1
    assert cursor(conn, "contact").since_ts < timezone.now() - timedelta(hours=23)
    assert cursor(conn, "deal").since_ts > timezone.now() - timedelta(hours=1)
    assert pull_sync_cursors().records == 1 and is_stale(maya)


@pytest.mark.postgres
@pytest.mark.django_db
def test_runbook_reset_sql_as_the_app_role_needs_the_system_scope(
    hubspot_pulled: tuple[CrmConnection, DealMapping],
) -> None:
    """Row-level security: outside a scope the UPDATE matches nothing; in system scope it works."""
    conn, _ = hubspot_pulled
    _grant_probe_role()
    with connection.cursor() as cur:
        cur.execute(f"SET ROLE {PROBE_ROLE}")
        try:
            cur.execute(RUNBOOK_RESET)
            assert cur.rowcount == 0
            cur.execute("SELECT set_config('conduit.system', 'on', true)")
            cur.execute(RUNBOOK_RESET)
            assert cur.rowcount == 1
            cur.execute("SELECT set_config('conduit.system', '', true)")
        finally:
            cur.execute("RESET ROLE")
    assert cursor(conn, "contact").since_ts < timezone.now() - timedelta(hours=23)
