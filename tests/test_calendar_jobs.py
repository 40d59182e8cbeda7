"""The calendar job runner: due selection, a pass, "Sync now", the tasks, the endpoint and the command."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from conduit.models import Profile
from conduit.tenancy import system_scope
from integrations.calendars import jobs, processing, push, sync, tasks
from integrations.calendars.flags import CalendarForbidden
from integrations.calendars.jobs import due_connections, due_query, request_sync, run_pass
from integrations.calendars.processing import ProcessResult
from integrations.models import ExternalCalendarConnection
from integrations.providers.calendar_base import EventPage
from integrations.providers.errors import Transient
from tests.conftest import Tenant
from tests.ops_helpers import make_staff, send, staff_token, workspace_token
from tests.test_calendar_sync import ACCESS_TOKEN, NOW, event, make_calendar, pages, reload, use_provider

Connection = ExternalCalendarConnection
URL = "/api/admin/calendar/jobs/run"


def due(**fields: Any) -> dict[str, Any]:
    """Fields of a connection synced long enough ago to be due (stale)."""
    return {"last_synced_at": NOW - timedelta(hours=2), "sync_needed": False, **fields}


def fresh(**fields: Any) -> dict[str, Any]:
    return {"last_synced_at": NOW - timedelta(minutes=5), "sync_needed": False, **fields}


def test_due_selection_takes_pushed_stale_and_never_synced_oldest_first(alice: Tenant) -> None:
    ws = alice.workspace
    never = make_calendar(ws, last_synced_at=None)
    stale = make_calendar(ws, **due())
    older = make_calendar(ws, **due(last_synced_at=NOW - timedelta(days=2)))
    pushed = make_calendar(ws, **fresh(sync_needed=True))
    make_calendar(ws, **fresh())  # synced 5 minutes ago
    make_calendar(ws, **due(backoff_until=NOW + timedelta(minutes=1)))
    make_calendar(ws, **fresh(sync_needed=True, backoff_until=NOW + timedelta(minutes=1)))
    backoff_over = make_calendar(ws, **due(backoff_until=NOW - timedelta(minutes=1)))
    make_calendar(ws, **due(sync_enabled=False))
    make_calendar(ws, **due(status=Connection.Status.ERROR))
    make_calendar(ws, **due(status=Connection.Status.DISCONNECTED))
    assert due_connections(NOW, 100) == [never.pk, older.pk, stale.pk, backoff_over.pk, pushed.pk]
    assert due_connections(NOW, 2) == [never.pk, older.pk]


def test_due_selection_follows_the_allowlists(alice: Tenant, settings: Any) -> None:
    one, two = make_calendar(alice.workspace, **due()), make_calendar(alice.workspace, **due())
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = [str(one.profile_id), "not-a-number"]
    assert due_connections(NOW, 10) == [one.pk]
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = ["*"]
    settings.CALENDAR_ALLOWLIST_CONNECTION_IDS = [str(two.pk)]
    assert due_connections(NOW, 10) == [two.pk]
    settings.CALENDAR_ALLOWLIST_CONNECTION_IDS = []
    assert due_connections(NOW, 10) == []


@pytest.mark.postgres
def test_due_selection_is_an_index_scan_on_many_connections(alice: Tenant) -> None:
    count = 4000
    with system_scope():
        users = User.objects.bulk_create([User(username=f"m{i}@bench.example") for i in range(count)])
        profiles = Profile.objects.bulk_create(
            [Profile(user=u, email=u.username) for u in users], batch_size=1000
        )
        Connection.objects.bulk_create(
            [
                Connection(
                    workspace=alice.workspace,
                    profile=p,
                    provider="google",
                    last_synced_at=NOW - timedelta(minutes=i % 50),
                    sync_needed=i % 100 == 0,
                )
                for i, p in enumerate(profiles)
            ],
            batch_size=1000,
        )
        with connection.cursor() as cur:
            cur.execute("ANALYZE external_calendar_connections")
            query = due_query(NOW, 200)
            assert query is not None
            cur.execute("EXPLAIN " + query[0], query[1])
            plan = "\n".join(row[0] for row in cur.fetchall())
    assert "calendar_conn_pushed" in plan and "calendar_conn_stale" in plan, plan
    assert "Seq Scan on external_calendar_connections" not in plan, plan
    assert len(due_connections(NOW, 200)) == count // 100


def test_a_pass_syncs_the_due_connections_and_sums_them_up(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.CALENDAR_JOB_CONCURRENCY = 1
    good = make_calendar(alice.workspace, last_synced_at=None)
    bad = make_calendar(alice.workspace, **due(provider="microsoft"))
    make_calendar(alice.workspace, **fresh())

    use_provider(monkeypatch, pages(EventPage([event("e1"), event("e2")], sync_cursor="c1")))
    original = sync.read_events

    def read_events(conn: Connection, outcome: sync.SyncOutcome, now: datetime) -> tuple[str | None, bool]:
        if conn.pk == bad.pk:
            raise Transient("microsoft", None, "HTTP 503")
        return original(conn, outcome, now)

    monkeypatch.setattr(sync, "read_events", read_events)
    processed: list[int] = []

    def process(connection_id: int) -> ProcessResult:
        processed.append(connection_id)
        return ProcessResult()

    monkeypatch.setattr(processing, "process_connection_events", process)
    summary = run_pass(now=NOW)
    assert summary.as_dict() == {
        "connections_processed": 2,
        "connections_synced": 1,
        "connections_failed": 1,
        "events_created": 2,
        "events_updated": 0,
        "events_deleted": 0,
        "errors": [
            {
                "connection_id": bad.pk,
                "provider": "microsoft",
                "error_code": "transient",
                "message": "HTTP 503",
            }
        ],
    }
    assert processed == [good.pk]  # events are processed after a successful sync only
    assert reload(bad).error_count == 1 and due_connections(NOW, 10) == []


def test_a_processing_failure_does_not_fail_the_sync(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch, capture_json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    conn = make_calendar(alice.workspace)
    use_provider(monkeypatch, pages(EventPage([event("e1")], sync_cursor="c1")))

    def broken(connection_id: int) -> ProcessResult:
        raise RuntimeError("boom")

    monkeypatch.setattr(processing, "process_connection_events", broken)
    summary = run_pass(now=NOW)
    assert summary.connections_synced == 1 and summary.connections_failed == 0
    assert reload(conn).error_count == 0
    assert any(line.get("error_code") == "processing_failed" for line in capture_json_logs())


def test_a_crash_while_recording_is_a_failed_connection_not_a_failed_pass(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = make_calendar(alice.workspace)

    def crash(connection_id: int, *, now: datetime | None = None) -> sync.SyncOutcome:
        raise RuntimeError("database went away")

    monkeypatch.setattr(sync, "sync_connection", crash)
    summary = run_pass(now=NOW)
    assert summary.connections_failed == 1
    assert summary.errors[0]["connection_id"] == conn.pk
    assert summary.errors[0]["error_code"] == "internal_error"


def test_a_connection_another_sync_holds_is_skipped_not_failed(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_calendar(alice.workspace)
    monkeypatch.setattr(
        sync, "sync_connection", lambda cid, now=None: sync.SyncOutcome(error_code=jobs.SKIPPED)
    )
    assert run_pass(now=NOW).as_dict()["connections_processed"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_pass_runs_at_most_the_configured_number_of_syncs_at_once(
    make_workspace: Callable[..., Tenant], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.CALENDAR_JOB_CONCURRENCY = 2
    workspace = make_workspace("alice").workspace
    ids = [make_calendar(workspace, last_synced_at=None).pk for _ in range(5)]
    lock, running, peak = threading.Lock(), [0], [0]

    def slow(cursor: str | None, page: str | None, window: tuple[datetime, datetime]) -> EventPage:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return EventPage([event("e1")], sync_cursor="c1")

    use_provider(monkeypatch, slow)
    summary = run_pass(now=NOW)
    assert summary.connections_synced == 5 and summary.events_created == 5
    assert peak[0] == 2
    with system_scope():
        assert all(c.last_synced_at == NOW for c in Connection.objects.filter(pk__in=ids))


def test_a_pass_is_refused_while_a_flag_is_off(alice: Tenant, settings: Any) -> None:
    settings.CALENDAR_JOBS_ENABLED = False
    with pytest.raises(CalendarForbidden) as refused:
        run_pass()
    assert refused.value.code == "calendar_disabled"
    settings.CALENDAR_JOBS_ENABLED, settings.CALENDAR_SYNC_ENABLED = True, False
    with pytest.raises(CalendarForbidden):
        run_pass()


def test_sync_now_marks_the_connection_due_and_queues_its_sync_after_commit(
    alice: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    conn = make_calendar(alice.workspace, **fresh())
    queued: list[tuple[str, list[int]]] = []

    class Broker:
        def send_task(self, name: str, args: list[int]) -> None:
            queued.append((name, args))

    monkeypatch.setattr(jobs, "current_app", Broker())
    with django_capture_on_commit_callbacks(execute=True):
        request_sync(conn)
        assert queued == []
    assert queued == [("integrations.sync_calendar_connection", [conn.pk])] and reload(conn).sync_needed

    class BrokerDown:
        def send_task(self, name: str, args: list[int]) -> None:
            raise ConnectionError("broker down")

    monkeypatch.setattr(jobs, "current_app", BrokerDown())
    with django_capture_on_commit_callbacks(execute=True):
        request_sync(conn)  # the next pass runs it
    settings.CALENDAR_ALLOWLIST_CONNECTION_IDS = []
    with pytest.raises(CalendarForbidden):
        request_sync(conn)


def test_the_sync_task_syncs_and_processes_one_connection(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = make_calendar(alice.workspace)
    use_provider(monkeypatch, pages(EventPage([event("e1")], sync_cursor="c1")))
    result = tasks.sync_calendar_connection(conn.pk)
    assert result["created"] == 1 and result["error_code"] is None
    assert json.dumps(result)


def test_the_beat_task_runs_a_pass_or_skips_quietly(
    alice: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    capture_json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    make_calendar(alice.workspace)
    use_provider(monkeypatch, pages(EventPage([event("e1")], sync_cursor="c1")))
    result = tasks.run_calendar_jobs()
    assert result is not None and result["connections_synced"] == 1
    settings.CALENDAR_JOBS_ENABLED = False
    assert tasks.run_calendar_jobs() is None
    settings.CALENDAR_JOBS_ENABLED, settings.CALENDAR_SYNC_ENABLED = True, False
    assert tasks.run_calendar_jobs() is None
    skipped = [line for line in capture_json_logs() if "skipped" in line["message"]]
    assert [line["error_code"] for line in skipped] == ["calendar_disabled", "calendar_disabled"]


def test_the_renewal_task_renews_the_due_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push, "renew_due_channels", lambda: 3)
    assert tasks.renew_calendar_channels() == 3


def test_the_tasks_are_registered_by_their_beat_names() -> None:
    from conduit.celery import app

    app.loader.import_default_modules()
    for name in (
        "integrations.run_calendar_jobs",
        "integrations.renew_calendar_channels",
        "integrations.sync_calendar_connection",
    ):
        assert name in app.tasks


# --- the endpoint -------------------------------------------------------------------------------


@pytest.fixture
def operator(db: None) -> str:
    return staff_token(make_staff())


def test_the_endpoint_runs_a_pass_and_answers_its_summary(
    alice: Tenant, operator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_calendar(alice.workspace)
    make_calendar(alice.workspace)
    use_provider(monkeypatch, pages(EventPage([event("e1")], sync_cursor="c1")))
    response = send("post", URL, operator, {"limit": 1})
    assert response.status_code == 200, response.content
    summary = response.json()["summary"]
    assert summary["connections_processed"] == 1 and summary["events_created"] == 1
    assert set(summary) == {
        "connections_processed",
        "connections_synced",
        "connections_failed",
        "events_created",
        "events_updated",
        "events_deleted",
        "errors",
    }
    second = send("post", "/api/v1/admin/calendar/jobs/run", operator)
    assert second.status_code == 200 and second.json()["summary"]["connections_synced"] == 1


def test_the_endpoint_answers_403_while_the_runner_is_off(operator: str, settings: Any) -> None:
    settings.CALENDAR_JOBS_ENABLED = False
    response = send("post", URL, operator)
    assert response.status_code == 403
    assert response.json()["code"] == "calendar_disabled"
    assert "CALENDAR_JOBS_ENABLED" in response.json()["message"]


@pytest.mark.parametrize(
    "body", [{"limit": 0}, {"limit": 10001}, {"limit": "5"}, {"limit": True}, {"limit": 2.5}, [1]]
)
def test_the_endpoint_refuses_a_bad_limit(operator: str, body: Any) -> None:
    response = send("post", URL, operator, body)
    assert response.status_code == 400
    assert set(response.json()) >= {"code", "message"}


def test_the_endpoint_takes_operators_only(alice: Tenant) -> None:
    assert send("post", URL, None).status_code == 401
    assert send("post", URL, "cds_not-a-real-token").status_code == 401
    assert send("post", URL, workspace_token(alice)).status_code in (401, 403)
    staff = make_staff("ops2@conduit.example")
    assert send("get", URL, staff_token(staff)).status_code == 405


# --- the command --------------------------------------------------------------------------------


def test_the_command_prints_the_summary(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.CALENDAR_JOB_CONCURRENCY = 1  # threads would not see this test's uncommitted rows
    make_calendar(alice.workspace)
    failing = make_calendar(alice.workspace, provider="microsoft")
    original = sync.read_events

    def read_events(conn: Connection, outcome: sync.SyncOutcome, now: datetime) -> tuple[str | None, bool]:
        if conn.pk == failing.pk:
            raise Transient("microsoft", None, "HTTP 503")
        return original(conn, outcome, now)

    use_provider(monkeypatch, pages(EventPage([event("e1")], sync_cursor="c1")))
    monkeypatch.setattr(sync, "read_events", read_events)
    out = StringIO()
    call_command("run_calendar_jobs", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[:7] == [
        "connections_processed: 2",
        "connections_synced: 1",
        "connections_failed: 1",
        "events_created: 1",
        "events_updated: 0",
        "events_deleted: 0",
        "errors: 1",
    ]
    assert lines[7] == f"  connection {failing.pk} (microsoft): transient: HTTP 503"
    out = StringIO()
    call_command("run_calendar_jobs", "--json", "--limit", "5", stdout=out)
    assert json.loads(out.getvalue())["summary"]["connections_processed"] == 0  # synced, or in backoff


def test_the_command_fails_in_one_line_while_the_runner_is_off(settings: Any, db: None) -> None:
    settings.CALENDAR_JOBS_ENABLED = False
    with pytest.raises(CommandError) as refused:
        call_command("run_calendar_jobs")
    assert str(refused.value).startswith("calendar_disabled: ") and "\n" not in str(refused.value)
    with pytest.raises(CommandError):
        call_command("run_calendar_jobs", "--limit", "0")


def test_no_token_in_any_line_of_a_pass(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch, capture_json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    make_calendar(alice.workspace)
    use_provider(monkeypatch, pages(EventPage([event("e1")], sync_cursor="c1")))
    run_pass(now=timezone.now())
    lines = capture_json_logs()
    assert any(line.get("category") == "calendar_sync" for line in lines)
    assert ACCESS_TOKEN not in json.dumps(lines)
