"""The seed runbooks as written: every curl and SQL statement of ../shared/seeds, copied from the
file and run against a live server and the migrated database.

Placeholders are filled from a seeded workspace whose slug is the playbook's own `ws_1`; a curl
without a token gets the header docs/runbook.md tells operators to add. Calendar statements
(runbook 004) run against rows made for them, each checked for what it answers or changes."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from conduit.tenancy import system_scope
from integrations.models import ExternalCalendarConnection, ExternalCalendarEvent, SyncCursor, WebhookEvent
from tests.conftest import Tenant
from tests.operator_role_helpers import drop_role, operator_connection, unique_role
from tests.ops_helpers import make_connection, make_log, staff_token, workspace_token
from tests.reconcile_helpers import connect_crm
from tests.seed_commands import SEEDS, SHARED_SEEDS, Curl, Sql, code_blocks, seed_commands

CURLS, SQLS = seed_commands()
PRODUCT_HOSTS = ("https://lineup.app", "https://api.agoralia.app")
OPERATOR_PATHS = ("/crm/", "/api/v1/admin/", "/api/v1/system-metrics/", "/api/v1/health", "/api/v1/sync/")
PLAYBOOK_LOOP = re.compile(r"for (\w+) in ([\w ]+); do")


def expand_loops() -> list[Curl]:
    """The playbook's `for provider in hubspot zoho odoo` loop is one curl per provider."""
    curls = []
    for curl in CURLS:
        if "$provider" not in curl.url:
            curls.append(curl)
            continue
        loop = next(
            PLAYBOOK_LOOP.search(body)
            for path in SEEDS.glob(curl.seed)
            for _, body in code_blocks(path.read_text(encoding="utf-8"))
            if curl.text in body and PLAYBOOK_LOOP.search(body)
        )
        assert loop is not None
        for value in loop.group(2).split():
            curls.append(Curl(curl.seed, curl.method, curl.url.replace("$provider", value), jq=curl.jq))
    return curls


def test_the_copy_of_the_seeds_is_the_shared_one() -> None:
    if not SHARED_SEEDS.is_dir():
        pytest.skip(f"{SHARED_SEEDS} is not beside this checkout (a clean CI clone); the copy is tested")
    shared = {p.name: p.read_bytes() for p in SHARED_SEEDS.glob("*.txt")}
    copied = {p.name: p.read_bytes() for p in SEEDS.glob("*.txt")}
    assert copied == shared


def test_every_curl_and_statement_of_the_seeds_is_found() -> None:
    for seed in ("001", "003"):
        text = next(SEEDS.glob(f"{seed}_*.txt")).read_text(encoding="utf-8")
        in_code = sum(body.count("curl ") for _, body in code_blocks(text))
        assert in_code == sum(c.seed.startswith(seed) for c in CURLS) > 0
    statements = [s.text for s in SQLS]
    assert any(s.startswith("SELECT expires_at, last_refreshed_at FROM integrations") for s in statements)
    assert any(s.startswith("UPDATE crm_sync_cursors SET since_ts") for s in statements)
    assert sum(s.seed.startswith("004") for s in SQLS) == 14
    assert len(expand_loops()) == len(CURLS) + 2


# --- curl ---


@pytest.fixture
def seeded(make_workspace: Callable[..., Tenant], crm_env: dict[str, str]) -> dict[str, Any]:
    """The playbook's `ws_1`: HubSpot connected through its sandbox, a sync log, a failed webhook
    event `event_123`, and the tokens of a workspace admin and an operator."""
    tenant = make_workspace("ws_1")
    conn = connect_crm(tenant, "hubspot")
    log = make_log(tenant.workspace, "hubspot", ok=False, code="http_503", summary="create_note: 503")
    with system_scope():
        WebhookEvent.objects.create(
            provider="hubspot",
            event_id="event_123",
            event_type="contact.creation",
            external_account_key=conn.external_account_key,
            object_id="101",
            workspace=tenant.workspace,
            status=WebhookEvent.Status.FAILED,
            payload={"eventId": "event_123", "subscriptionType": "contact.creation", "objectId": 101},
        )
    return {
        "tenant": tenant,
        "log": log,
        "TOKEN": workspace_token(tenant),
        "ADMIN_TOKEN": staff_token(),
    }


def command_line(curl: Curl, base: str, world: dict[str, Any]) -> list[str]:
    """The seed's curl, pointed at the live server, placeholders filled, a token added where the
    seed sends none (the operator's for operator paths, else the workspace's)."""
    url = curl.url
    for host in PRODUCT_HOSTS:
        url = url.replace(host, base)
    url = (
        url.replace("{tenantId}", str(world["tenant"].workspace.pk))
        .replace("{provider}", "hubspot")
        .replace("{logId}", str(world["log"].pk))
    )
    headers = [
        h.replace("$TOKEN", world["TOKEN"]).replace("$ADMIN_TOKEN", world["ADMIN_TOKEN"])
        for h in curl.headers
    ]
    if not any(h.lower().startswith("authorization:") for h in headers):
        path = url[len(base) :]
        token = world["ADMIN_TOKEN"] if path.startswith(OPERATOR_PATHS) else world["TOKEN"]
        headers.append(f"Authorization: Bearer {token}")
    args = ["curl", "-sS", "-X", curl.method, "-w", "\n%{http_code} %{content_type}"]
    for header in headers:
        args += ["-H", header]
    if curl.data is not None:
        args += ["-d", curl.data]  # as the seed sends it: no Content-Type of its own
    return [*args, url]


def run_curl(args: list[str]) -> tuple[int, str, str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    body, _, tail = done.stdout.rpartition("\n")
    status, _, content_type = tail.partition(" ")
    return int(status), content_type, body


def run_jq(program: str, body: str) -> list[Any]:
    done = subprocess.run(
        ["jq", "-c", program], input=body, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, (program, done.stderr)
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.postgres
def test_every_seed_curl_answers_as_written(live_server: Any, seeded: dict[str, Any]) -> None:
    external = []
    answered = {}
    for curl in expand_loops():
        if not curl.url.startswith(PRODUCT_HOSTS):
            external.append(curl.url)  # runbook 001's connectivity test from the server
            continue
        status, content_type, body = run_curl(command_line(curl, live_server.url, seeded))
        assert 200 <= status < 300, (curl.text, status, body[:300])
        if curl.url.endswith("/crm/metrics"):
            assert content_type.startswith("text/plain") and "crm_sync_errors_total" in body
            continue
        assert content_type == "application/json", (curl.text, content_type)
        answered[(curl.method, curl.url)] = json.loads(body)
        if curl.jq:
            rows = run_jq(curl.jq, body)
            assert rows and None not in rows, (curl.text, body[:300])
            if "{" in curl.jq:  # `.list[] | {a, b}`: every path read has a value
                keys = [k.strip() for k in curl.jq.split("{")[-1].rstrip("}").split(",")]
                assert all(row[k] is not None for row in rows for k in keys), (curl.text, rows)
    assert external == ["https://api.hubspot.com/health"]

    health = "https://api.agoralia.app/crm/health?provider="
    for provider in ("hubspot", "zoho", "odoo"):
        assert answered[("GET", health + provider)]["status"] in ("ok", "degraded", "down")
    switch = answered[("PATCH", "https://lineup.app/api/v1/admin/tenants/{tenantId}/integrations/{provider}")]
    assert switch["enabled"] is False and switch["provider"] == "hubspot"
    paused = answered[("POST", "https://api.agoralia.app/crm/admin/pause-sync?provider=odoo&pause=true")]
    assert paused["paused"] is True and paused["provider"] == "odoo"
    status = answered[("GET", "https://api.agoralia.app/crm/admin/sync-status?workspace_id=ws_1")]
    assert status["workspace_id"] == seeded["tenant"].workspace.pk
    assert [c["provider"] for c in status["connections"]] == ["hubspot"]
    assert (
        status["connections"][0]["kill_switch"] is True and status["connections"][0]["sync_enabled"] is False
    )
    assert [e["provider"] for e in status["webhook_events"]] == ["hubspot"]
    logs = answered[("GET", "https://api.agoralia.app/crm/sync/logs?provider=hubspot&limit=20")]
    assert isinstance(logs, list) and 0 < len(logs) <= 20
    replay = answered[
        ("POST", "https://api.agoralia.app/crm/admin/replay-webhook?provider=hubspot&event_id=event_123")
    ]
    assert replay["replayed"] == 1
    refreshed = answered[("POST", "https://lineup.app/api/v1/integrations/{provider}/refresh")]
    assert refreshed["status"] == "connected"


# --- SQL ---


@pytest.fixture
def operator_role(transactional_db: None) -> Iterator[str]:
    role = unique_role()
    call_command("create_operator_role", "--name", role)
    yield role
    drop_role(role)


def fill(sql: Sql, values: dict[str, str]) -> str:
    text = sql.text
    for column in ("tenant_id", "provider"):
        text = text.replace(f"{column} = '...'", f"{column} = '{values[column]}'")
    for name, value in values.items():
        text = text.replace(f"<{name}>", value)
    return text


@dataclass
class CalendarWorld:
    """Runbook 004's rows: alice's Google connection (`<connection_id>`: synced 10 minutes ago,
    rate-limited into a 30-minute backoff, token expired, a sync cursor), her stale Microsoft
    one, bob's Google one in a 2-hour backoff, and events FAILED / PROCESSED for each member."""

    profile: int
    google: ExternalCalendarConnection
    microsoft: ExternalCalendarConnection
    other: ExternalCalendarConnection
    failed: ExternalCalendarEvent
    processed: ExternalCalendarEvent
    others_failed: ExternalCalendarEvent


def calendar_world(alice: Tenant, bob: Tenant) -> CalendarWorld:
    now = timezone.now()
    with system_scope():
        mine, theirs = alice.user.profile, bob.user.profile
        google = ExternalCalendarConnection.objects.create(
            workspace=alice.workspace,
            profile=mine,
            provider="google",
            account_email=alice.user.email,
            last_synced_at=now - timedelta(minutes=10),
            error_count=2,
            last_error="rate_limited",
            backoff_until=now + timedelta(minutes=30),
            token_expiry=now - timedelta(minutes=5),
            sync_cursor="sync-token-1",
            sync_needed=False,
        )
        microsoft = ExternalCalendarConnection.objects.create(
            workspace=alice.workspace,
            profile=mine,
            provider="microsoft",
            last_synced_at=now - timedelta(hours=3),
            token_expiry=now + timedelta(minutes=50),
        )
        other = ExternalCalendarConnection.objects.create(
            workspace=bob.workspace,
            profile=theirs,
            provider="google",
            last_synced_at=now - timedelta(days=2),
            error_count=5,
            last_error="rate_limited",
            backoff_until=now + timedelta(hours=2),
            token_expiry=now + timedelta(minutes=30),
        )

        def event(conn: ExternalCalendarConnection, external_id: str, status: str) -> ExternalCalendarEvent:
            return ExternalCalendarEvent.objects.create(
                workspace=conn.workspace,
                profile=conn.profile,
                connection=conn,
                external_id=external_id,
                title="Quarterly review",
                sync_status=status,
                last_error="crm_write_failed" if status == "FAILED" else None,
            )

        return CalendarWorld(
            profile=mine.pk,
            google=google,
            microsoft=microsoft,
            other=other,
            failed=event(google, "ev-failed", "FAILED"),
            processed=event(microsoft, "ev-done", "PROCESSED"),
            others_failed=event(other, "ev-bob", "FAILED"),
        )


def rows_of(cur: Any) -> list[dict[str, Any]]:
    names = [column.name for column in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def fresh(row: Any) -> Any:
    with system_scope():
        return type(row).objects.get(pk=row.pk)


def check_calendar_statement(sql: Sql, cur: Any, world: CalendarWorld) -> str:
    """What runbook 004's statement must answer or change, by the step it belongs to; returns the
    step's name (each is met exactly once)."""
    text = " ".join(sql.text.split())
    g, ms, other = world.google, world.microsoft, world.other
    if sql.verb == "UPDATE":
        assert cur.rowcount == 1, text  # exactly the row the placeholder names
        if "SET backoff_until = NOW() + INTERVAL '1 hour'" in text:
            until = fresh(g).backoff_until
            assert timedelta(minutes=59) < until - timezone.now() <= timedelta(hours=1)
            assert fresh(other).backoff_until == other.backoff_until
            return "set backoff"
        if text.endswith("SET backoff_until = NULL WHERE id = " + f"'{g.pk}'"):
            assert fresh(g).backoff_until is None
            assert fresh(other).backoff_until == other.backoff_until  # only that row
            return "clear backoff"
        if "SET sync_cursor = NULL" in text:
            reset = fresh(g)
            assert (reset.sync_cursor, reset.last_synced_at, reset.error_count) == (None, None, 0)
            assert (reset.last_error, reset.backoff_until) == (None, None)
            untouched = fresh(other)
            assert (untouched.error_count, untouched.last_error) == (5, "rate_limited")
            return "reset sync state"
        if "UPDATE external_calendar_events" in text:
            assert (fresh(world.failed).sync_status, fresh(world.failed).last_error) == ("CREATED", None)
            assert fresh(world.processed).sync_status == "PROCESSED"
            assert fresh(world.others_failed).sync_status == "FAILED"  # another provider_id
            return "clear failed events"
        raise AssertionError(f"unexpected runbook 004 UPDATE: {text}")
    rows = rows_of(cur)
    ids = [row.get("id") for row in rows]
    if "FROM profiles" in text:
        assert [(r["id"], r["email"]) for r in rows] == [(world.profile, g.account_email)]
        return "get provider_id"
    if text.startswith("SELECT provider FROM"):
        assert rows == [{"provider": "google"}]
        return "check adapter type"
    if "token_expiry < NOW()" in text:
        assert ids == [g.pk] and rows[0]["provider_id"] == world.profile
        return "check token expiry"
    if "WHERE provider_id = " in text:
        assert {r["provider"] for r in rows} == {"google", "microsoft"}
        assert {r["provider_id"] for r in rows} == {world.profile}
        return "check sync status"
    if "INTERVAL '24 hours'" in text:
        assert [(r["provider_id"], r["provider"]) for r in rows] == [
            (world.profile, "google"),
            (world.profile, "microsoft"),
        ]
        return "recent activity"
    if "INTERVAL '1 hour'" in text:
        assert ids == [ms.pk]  # stale, enabled, not in backoff
        return "stuck syncs"
    if "error_count > 0" in text:
        assert [r["error_count"] for r in rows] == [5, 2]
        return "recent errors"
    if "WHERE backoff_until > NOW()" in text and "last_error" in text:
        assert ids == [other.pk, g.pk]  # before any backoff is cleared
        return "permanent backoff"
    if "WHERE backoff_until > NOW()" in text:
        assert ids == [other.pk]  # alice's was cleared by the steps before it
        return "rate limiting"
    raise AssertionError(f"unexpected runbook 004 SELECT: {text}")


@pytest.mark.postgres
def test_every_seed_statement_runs_as_the_operator_role(
    operator_role: str, alice: Tenant, bob: Tenant
) -> None:
    conn = make_connection(
        alice.workspace, "hubspot", token_expires_at=timezone.now(), last_refreshed_at=timezone.now()
    )
    with system_scope():
        SyncCursor.objects.create(
            workspace=alice.workspace,
            connection=conn,
            provider="hubspot",
            object="contact",
            since_ts=timezone.now(),
        )
    world = calendar_world(alice, bob)
    values = {
        "tenant_id": str(alice.workspace.pk),
        "provider": "hubspot",
        "provider_email": alice.user.email,
        "provider_id": str(world.profile),
        "connection_id": str(world.google.pk),
    }
    steps = []
    with operator_connection(operator_role) as cur:
        for sql in SQLS:
            cur.execute(fill(sql, values))
            if sql.seed.startswith("004"):
                steps.append(check_calendar_statement(Sql(sql.seed, fill(sql, values)), cur, world))
            elif sql.verb == "SELECT":
                assert cur.fetchall(), sql.text
            else:
                assert cur.rowcount >= 1, sql.text
    with system_scope():
        cursor = SyncCursor.objects.get(connection=conn)
    assert cursor.since_ts < timezone.now() - timedelta(hours=23)
    assert sorted(steps) == sorted(
        [
            "check sync status",
            "recent activity",
            "stuck syncs",
            "permanent backoff",
            "recent errors",
            "set backoff",
            "clear backoff",
            "get provider_id",
            "check token expiry",
            "clear backoff",
            "rate limiting",
            "check adapter type",
            "reset sync state",
            "clear failed events",
        ]
    )


def test_runbook_004_describes_tables_the_operator_role_can_read(operator_role: str) -> None:
    """The `\\d` meta-commands are psql's, not SQL (the statements above skip them): the tables
    they describe exist and the operator role may read them."""
    text = next(SEEDS.glob("004_*.txt")).read_text(encoding="utf-8")
    described = [
        line.split()[1]
        for _, body in code_blocks(text)
        for line in body.splitlines()
        if line.startswith("\\d ")
    ]
    assert described == ["external_calendar_connections", "external_calendar_events"]
    with operator_connection(operator_role) as cur:
        for table in described:
            cur.execute("SELECT has_any_column_privilege(current_user, %s, 'SELECT')", [table])
            assert cur.fetchone() == (True,), table
