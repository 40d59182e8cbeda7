"""The retention purge: redaction, attachment files, sync logs, failures, the command and task,
and (on Postgres) two purges at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.db import DatabaseError, OperationalError, connection, connections, transaction
from django.utils import timezone

from conduit.models import Attachment, AuditEvent, Message
from conduit.tenancy import system_scope
from integrations.models import SyncLog
from retention import purge
from retention.policy import PolicyValues, do_update_policy
from retention.purge import PurgeDisabled, purge_retention, purge_workspace
from retention.tasks import PurgeFailed
from retention.tasks import purge_retention as purge_task
from tests.conftest import Tenant, make_message

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.get_fixed_timezone(0))
BODY = "CONFIDENTIAL BODY: the merger closes Friday"
POLICY = {"purge_enabled": True, "message_days": 30, "attachment_days": 10, "sync_log_days": 7}


def at_now() -> datetime:
    return NOW


def enable(tenant: Tenant, **overrides: Any) -> None:
    do_update_policy(tenant.workspace, {**POLICY, **overrides}, actor="system:test")


def old_message(tenant: Tenant, mid: str, age: timedelta, **fields: Any) -> Message:
    return make_message(
        tenant.workspace,
        mid,
        received_at=NOW - age,
        body_text=fields.pop("body_text", BODY),
        body_html=fields.pop("body_html", f"<p>{BODY}</p>"),
        raw=fields.pop("raw", BODY.encode()),
        **fields,
    )


def attach(message: Message, name: str = "deck.pdf", content: bytes = b"%PDF-1.4 quarterly") -> Attachment:
    with system_scope():
        row = Attachment(
            workspace_id=message.workspace_id,
            message=message,
            filename=name,
            content_type="application/pdf",
            size=len(content),
        )
        row.file.name = default_storage.save(
            f"attachments/{message.workspace_id}/{name}", ContentFile(content)
        )
        row.save()
    return row


def sync_log(tenant: Tenant | None, age: timedelta) -> SyncLog:
    with system_scope():
        return SyncLog.objects.create(
            workspace=tenant.workspace if tenant else None,
            provider="hubspot",
            operation="create_note",
            status="SUCCESS",
            created_at=NOW - age,
        )


def fresh(row: Any) -> Any:
    with system_scope():
        row.refresh_from_db()
    return row


def events(name: str) -> list[AuditEvent]:
    with system_scope():
        return list(AuditEvent.objects.filter(event=name).order_by("id"))


def run(**kw: Any) -> purge.PurgeRun:
    return purge_retention(now=at_now, **kw)


# --- messages -------------------------------------------------------------------------------


def test_old_bodies_are_redacted_with_flag_and_timestamp(alice: Tenant) -> None:
    enable(alice)
    old = old_message(alice, "old@x", timedelta(days=45), subject="Renewal")
    young = old_message(alice, "young@x", timedelta(days=5))
    [result] = run().results
    assert result.status == "completed" and result.messages_redacted == 1
    old, young = fresh(old), fresh(young)
    assert (old.body_text, old.body_html, old.raw) == (None, None, None)
    assert old.is_redacted and old.redacted_at == NOW
    assert old.subject == "Renewal" and old.message_id == "old@x"  # headers stay
    assert not young.is_redacted and young.body_text == BODY and young.redacted_at is None


@pytest.mark.django_db(transaction=True)
def test_a_redaction_batch_commits_without_waiting_for_the_disk_and_only_that_batch(
    alice: Tenant,
) -> None:
    from django.test.utils import CaptureQueriesContext

    enable(alice)
    old_message(alice, "old@x", timedelta(days=45))
    with CaptureQueriesContext(connection) as seen:
        assert run().results[0].messages_redacted == 1
    sql = [q["sql"].strip() for q in seen.captured_queries]
    redactions = [i for i, q in enumerate(sql) if q.startswith("UPDATE messages SET body_text = NULL")]
    assert redactions and all(sql[i - 1] == "SET LOCAL synchronous_commit TO OFF" for i in redactions)
    assert sql.count("SET LOCAL synchronous_commit TO OFF") == len(redactions)  # no other batch
    with connection.cursor() as cur:  # LOCAL: it ended with the batch's transaction
        cur.execute("SHOW synchronous_commit")
        assert cur.fetchone()[0] == "on"


def test_cutoff_is_strict_a_message_exactly_n_days_old_stays(alice: Tenant) -> None:
    enable(alice)
    edge = old_message(alice, "edge@x", timedelta(days=30))
    past = old_message(alice, "past@x", timedelta(days=30, microseconds=1))
    assert run().results[0].messages_redacted == 1
    assert not fresh(edge).is_redacted and fresh(past).is_redacted


def test_batches_walk_every_old_message_once_and_report_progress(alice: Tenant) -> None:
    enable(alice)
    ids = [old_message(alice, f"m{n}@x", timedelta(days=40 + n % 3, seconds=n)).pk for n in range(7)]
    old_message(alice, "keep@x", timedelta(days=1))
    ticks: list[tuple[str, int, int]] = []
    [result] = run(batch_size=3, progress=lambda kind, done, total: ticks.append((kind, done, total))).results
    assert result.messages_redacted == 7 and result.batches == 5  # 3 + 3 + 1, one attachment, one sync
    assert [t for t in ticks if t[0] == "messages"] == [
        ("messages", 3, 7),
        ("messages", 6, 7),
        ("messages", 7, 7),
    ]
    assert {t[0] for t in ticks} == {"messages", "attachments", "sync_logs"}
    with system_scope():
        assert set(Message.objects.filter(is_redacted=True).values_list("id", flat=True)) == set(ids)


def test_disabled_and_other_workspaces_are_untouched(alice: Tenant, bob: Tenant, make_workspace: Any) -> None:
    enable(alice)
    do_update_policy(bob.workspace, {**POLICY, "purge_enabled": False}, actor="system:test")
    carol = make_workspace("carol")  # no policy row at all
    bobs = old_message(bob, "bob@x", timedelta(days=400))
    carols = old_message(carol, "carol@x", timedelta(days=400))
    bob_file = attach(bobs, "bob.pdf")
    bob_log = sync_log(bob, timedelta(days=400))
    old_message(alice, "alice@x", timedelta(days=400))
    result = run()
    assert [r.workspace_slug for r in result.results] == ["alice"]
    assert not fresh(bobs).is_redacted and not fresh(carols).is_redacted
    assert fresh(bob_file).removed_at is None and default_storage.exists(bob_file.file.name)
    with system_scope():
        assert SyncLog.objects.filter(pk=bob_log.pk).exists()


def test_a_second_run_changes_nothing(alice: Tenant, django_capture_on_commit_callbacks: Any) -> None:
    enable(alice)
    message = old_message(alice, "twice@x", timedelta(days=60))
    attach(message)
    sync_log(alice, timedelta(days=60))
    with django_capture_on_commit_callbacks(execute=True):
        first = run().results[0]
    assert first.counts() == {
        "messages_redacted": 1,
        "attachments_removed": 1,
        "attachment_bytes_freed": 18,
        "files_missing": 0,
        "sync_logs_deleted": 1,
    }
    stamp = fresh(message).redacted_at
    second = purge_retention(now=lambda: NOW + timedelta(hours=1)).results[0]
    assert set(second.counts().values()) == {0}
    assert fresh(message).redacted_at == stamp


# --- attachments ----------------------------------------------------------------------------


def test_attachment_files_are_deleted_only_after_the_batch_commits(
    alice: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    enable(alice)
    old = attach(old_message(alice, "a@x", timedelta(days=20)), "old.pdf", b"x" * 1000)
    young = attach(old_message(alice, "b@x", timedelta(days=5)), "young.pdf", b"y" * 10)
    name = old.file.name
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        [result] = run().results
    row = fresh(old)
    assert row.removed_at == NOW and row.file.name == ""
    assert default_storage.exists(name), "the file waits for the commit"
    assert len(callbacks) == 1
    callbacks[0]()
    assert not default_storage.exists(name)
    assert result.attachments_removed == 1 and result.attachment_bytes_freed == 1000
    assert fresh(young).removed_at is None and default_storage.exists(young.file.name)
    assert not fresh(Message.objects.get(pk=old.message_id)).is_redacted  # 20 days < 30: body stays


def test_a_missing_file_is_counted_not_an_error(
    alice: Tenant,
    django_capture_on_commit_callbacks: Any,
    capture_json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    enable(alice)
    message = old_message(alice, "gone@x", timedelta(days=20))
    gone = attach(message, "gone.pdf", b"z" * 50)
    default_storage.delete(gone.file.name)
    with system_scope():
        empty = Attachment.objects.create(
            workspace=alice.workspace,
            message=message,
            filename="nofile.txt",
            content_type="text/plain",
            size=7,
        )
    with django_capture_on_commit_callbacks(execute=True):
        [result] = run().results
    assert result.status == "completed" and result.attachments_removed == 2
    assert result.files_missing == 2 and result.attachment_bytes_freed == 57
    assert fresh(gone).removed_at == NOW and fresh(empty).removed_at == NOW
    lines = [line for line in capture_json_logs() if line.get("error_code") == "attachment_file_missing"]
    assert lines and lines[0]["category"] == "retention" and lines[0]["level"] == "INFO"


def test_attachment_batches_use_the_keyset(alice: Tenant, django_capture_on_commit_callbacks: Any) -> None:
    enable(alice)
    for n in range(3):
        message = old_message(alice, f"k{n}@x", timedelta(days=20))
        attach(message, f"a{n}.pdf")
        attach(message, f"b{n}.pdf")
    with django_capture_on_commit_callbacks(execute=True):
        [result] = run(batch_size=4).results
    assert result.attachments_removed == 6 and result.files_missing == 0
    with system_scope():
        assert not Attachment.objects.filter(removed_at__isnull=True).exists()
        assert set(Attachment.objects.values_list("file", flat=True)) == {""}


# --- sync logs ------------------------------------------------------------------------------


def test_old_sync_logs_of_the_workspace_are_pruned(alice: Tenant, bob: Tenant) -> None:
    enable(alice)
    old = [sync_log(alice, timedelta(days=8 + n)) for n in range(5)]
    kept = sync_log(alice, timedelta(days=6))
    edge = sync_log(alice, timedelta(days=7))
    bobs = sync_log(bob, timedelta(days=100))
    global_row = sync_log(None, timedelta(days=100))
    [result] = run(batch_size=2).results
    assert result.sync_logs_deleted == 5
    with system_scope():
        left = set(SyncLog.objects.values_list("id", flat=True))
    assert left == {kept.pk, edge.pk, bobs.pk, global_row.pk}
    assert not left & {r.pk for r in old}


# --- dry run --------------------------------------------------------------------------------


def test_dry_run_counts_and_changes_nothing(alice: Tenant) -> None:
    enable(alice)
    message = old_message(alice, "d@x", timedelta(days=60))
    file_row = attach(message, "d.pdf", b"d" * 300)
    sync_log(alice, timedelta(days=60))
    [result] = run(dry_run=True).results
    assert result.status == "dry_run" and result.dry_run
    assert (result.messages_redacted, result.attachments_removed, result.attachment_bytes_freed) == (
        1,
        1,
        300,
    )
    assert result.sync_logs_deleted == 1 and "would redact 1 message(s)" in result.line()
    assert not fresh(message).is_redacted and fresh(message).body_text == BODY
    assert fresh(file_row).removed_at is None and default_storage.exists(file_row.file.name)
    with system_scope():
        assert SyncLog.objects.count() == 1
        assert not AuditEvent.objects.filter(event__startswith="retention_purge").exists()


# --- audit ----------------------------------------------------------------------------------


def test_completed_audit_has_counts_and_policy_and_no_body(
    alice: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    enable(alice)
    attach(old_message(alice, "au@x", timedelta(days=60)), "au.pdf", b"a" * 10)
    with django_capture_on_commit_callbacks(execute=True):
        run()
    [event] = events("retention_purge_completed")
    payload = event.payload_json
    assert event.workspace == alice.workspace and event.actor == "system:purge_retention"
    assert payload["messages_redacted"] == 1 and payload["attachments_removed"] == 1
    assert payload["attachment_bytes_freed"] == 10 and payload["sync_logs_deleted"] == 0
    assert payload["policy"] == POLICY
    assert payload["cutoffs"]["messages"] == (NOW - timedelta(days=30)).isoformat()
    assert {"duration_ms", "batches", "slowest_batch_ms"} <= set(payload)
    text = json.dumps(payload)
    assert BODY not in text and "body" not in text.lower()


# --- failures -------------------------------------------------------------------------------


def boom(*args: Any, **kwargs: Any) -> Any:
    raise DatabaseError(f"could not extend file\nDETAIL: Failing row contains ({BODY})")


def test_a_failure_is_audited_logged_and_the_next_run_finishes(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch, capture_json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    enable(alice)
    messages = [old_message(alice, f"f{n}@x", timedelta(days=60 + n)) for n in range(3)]
    logs = [sync_log(alice, timedelta(days=60)) for _ in range(2)]
    monkeypatch.setattr(purge, "delete_sync_logs_batch", boom)
    [result] = run().results
    assert result.failed and result.failed_step == "sync_logs" and result.error_class == "DatabaseError"
    assert result.error_message == "could not extend file"  # detail lines (row values) are dropped
    assert "FAILED at sync_logs" in result.line()
    assert all(fresh(m).is_redacted for m in messages), "committed batches stay done"
    [failed] = events("retention_purge_failed")
    assert failed.payload_json["step"] == "sync_logs" and failed.payload_json["messages_redacted"] == 3
    assert failed.payload_json["error_class"] == "DatabaseError"
    assert BODY not in json.dumps(failed.payload_json) and events("retention_purge_completed") == []
    [line] = [x for x in capture_json_logs() if x.get("error_code") == "retention_purge_failed"]
    assert line["category"] == "retention" and line["level"] == "ERROR" and BODY not in json.dumps(line)
    assert "in boom" in line["trace"]  # the frames, for operators

    monkeypatch.undo()
    [again] = run().results
    assert again.status == "completed" and again.messages_redacted == 0 and again.sync_logs_deleted == 2
    with system_scope():
        assert not SyncLog.objects.filter(pk__in=[r.pk for r in logs]).exists()


@pytest.mark.django_db(transaction=True)
def test_a_file_that_cannot_be_deleted_is_put_back_for_the_next_run(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    enable(alice)
    stuck = attach(old_message(alice, "s@x", timedelta(days=20)), "stuck.pdf", b"s" * 40)
    other = attach(old_message(alice, "t@x", timedelta(days=20)), "fine.pdf", b"f" * 5)
    log_row = sync_log(alice, timedelta(days=60))
    name, real_delete = stuck.file.name, default_storage.delete

    def refuse(path: str) -> None:
        if path == name:
            raise PermissionError(13, "Permission denied")
        real_delete(path)

    monkeypatch.setattr(default_storage, "delete", refuse)
    [result] = run().results  # no outer transaction: each batch really commits
    assert result.failed and result.error_class == "FileDeleteFailed" and result.failed_step == "attachments"
    assert result.attachments_removed == 1 and result.attachment_bytes_freed == 5
    row = fresh(stuck)
    assert row.removed_at is None and row.file.name == name and default_storage.exists(name)
    assert fresh(other).removed_at == NOW
    assert events("retention_purge_failed")[0].payload_json["attachments_removed"] == 1
    assert result.sync_logs_deleted == 1, "one stuck file does not stop the sync-log step"
    with system_scope():
        assert not SyncLog.objects.filter(pk=log_row.pk).exists()
    monkeypatch.undo()
    [again] = run().results
    assert again.status == "completed" and again.attachments_removed == 1 and again.files_missing == 0
    assert not default_storage.exists(name)


def test_a_failing_dry_run_is_logged_but_writes_no_audit_row(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch, capture_json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    enable(alice)
    monkeypatch.setattr(purge._Run, "count", boom)
    [result] = run(dry_run=True).results
    assert result.failed and result.failed_step == "count"
    assert events("retention_purge_failed") == []
    assert [x["error_code"] for x in capture_json_logs() if x.get("category") == "retention"] == [
        "retention_purge_failed"
    ]


def test_one_failing_workspace_does_not_stop_the_others(
    alice: Tenant, bob: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    enable(alice)
    enable(bob)
    bobs = old_message(bob, "b@x", timedelta(days=90))
    real = purge.redact_messages_batch

    def fail_for_alice(workspace_id: int, *args: Any) -> Any:
        if workspace_id == alice.workspace.pk:
            raise DatabaseError("deadlock detected")
        return real(workspace_id, *args)

    monkeypatch.setattr(purge, "redact_messages_batch", fail_for_alice)
    result = run()
    assert [r.workspace_slug for r in result.failed] == ["alice"]
    assert fresh(bobs).is_redacted
    assert "2 workspace(s), 1 failed" in result.summary()
    assert [e.workspace for e in events("retention_purge_completed")] == [bob.workspace]


def test_a_secret_looking_error_message_is_withheld(alice: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    enable(alice)

    def leak(*args: Any) -> Any:
        raise DatabaseError("refresh_token=abcdefgh12345678 rejected")

    monkeypatch.setattr(purge, "redact_messages_batch", leak)
    [result] = run().results
    assert "abcdefgh12345678" not in result.error_message
    assert "abcdefgh12345678" not in json.dumps(events("retention_purge_failed")[0].payload_json)


def test_an_error_without_a_message_and_a_lost_audit_are_survived(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch, capture_json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    enable(alice)
    monkeypatch.setattr(purge, "redact_messages_batch", lambda *a: (_ for _ in ()).throw(DatabaseError()))
    monkeypatch.setattr(purge, "record_audit", boom)
    [result] = run().results
    assert result.failed and result.error_message == ""
    assert any(x.get("error_code") == "retention_audit_failed" for x in capture_json_logs())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_lost_database_connection_still_gets_its_failure_audited(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    enable(alice)

    def drop_connection(*args: Any) -> Any:
        connection.connection.close()  # the server went away mid-run
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(purge, "redact_messages_batch", drop_connection)
    [result] = run().results
    assert result.failed and result.error_class == "OperationalError"
    assert events("retention_purge_failed")[0].payload_json["step"] == "messages"


def test_a_soft_time_limit_is_recorded_then_stops_the_run(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    enable(alice)

    def out_of_time(*args: Any) -> Any:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(purge, "redact_messages_batch", out_of_time)
    with pytest.raises(SoftTimeLimitExceeded):
        run()
    assert events("retention_purge_failed")[0].payload_json["error_class"] == "SoftTimeLimitExceeded"


def test_an_explicit_workspace_with_purge_off_is_refused_unless_dry_run(alice: Tenant) -> None:
    old_message(alice, "off@x", timedelta(days=400))
    with pytest.raises(PurgeDisabled, match="Retention purge is off for alice"):
        run(workspace=alice.workspace)
    [result] = run(workspace=alice.workspace, dry_run=True).results
    assert result.messages_redacted == 1 and result.policy == PolicyValues(False, 365, 180, 30)
    enable(alice)
    assert run(workspace=alice.workspace).results[0].messages_redacted == 1


def test_purge_workspace_takes_any_policy(alice: Tenant) -> None:
    message = old_message(alice, "pw@x", timedelta(days=3))
    result = purge_workspace(alice.workspace, PolicyValues(True, 2, 2, 2), now=at_now)
    assert result.messages_redacted == 1 and fresh(message).is_redacted


# --- command and task -----------------------------------------------------------------------


def test_command_prints_policy_progress_and_summary(alice: Tenant, bob: Tenant) -> None:
    enable(alice)
    for n in range(3):
        make_message(alice.workspace, f"c{n}@x", received_at=timezone.now() - timedelta(days=90))
    out = StringIO()
    call_command("purge_retention", stdout=out)
    text = out.getvalue()
    assert "alice: purge on; keeps message bodies 30 d, attachments 10 d, sync logs 7 d" in text
    assert "  messages: 3/3" in text and "alice: redacted 3 message(s)" in text
    assert "1 workspace(s), 0 failed; 3 message(s) redacted" in text
    out = StringIO()
    call_command("purge_retention", "--workspace", str(alice.workspace.pk), "--dry-run", stdout=out)
    assert "dry run: alice: would redact 0 message(s)" in out.getvalue()
    assert "dry run: 1 workspace(s), 0 failed; 0 message(s) would be redacted" in out.getvalue()
    assert "messages:" not in out.getvalue()


def test_command_refusals_are_one_line(alice: Tenant) -> None:
    with pytest.raises(CommandError, match="no workspace with slug or id 'nope'"):
        call_command("purge_retention", "--workspace", "nope")
    with pytest.raises(CommandError, match="Retention purge is off for alice"):
        call_command("purge_retention", "--workspace", "alice")
    out = StringIO()
    call_command("purge_retention", "--workspace", "alice", "--dry-run", stdout=out)
    assert "dry run: alice: purge off" in out.getvalue()
    out = StringIO()
    call_command("purge_retention", stdout=out)
    assert "nothing to do" in out.getvalue()


def test_command_exits_non_zero_when_a_workspace_failed(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    enable(alice)
    monkeypatch.setattr(purge, "delete_sync_logs_batch", boom)
    out = StringIO()
    with pytest.raises(CommandError, match="retention purge failed for alice"):
        call_command("purge_retention", stdout=out)
    assert "FAILED at sync_logs: DatabaseError" in out.getvalue()


def test_task_purges_every_enabled_workspace_and_fails_loudly(
    alice: Tenant, bob: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    enable(alice)
    make_message(alice.workspace, "t@x", received_at=timezone.now() - timedelta(days=90))
    assert purge_task.apply().get() == (
        "1 workspace(s), 0 failed; 1 message(s) redacted, 0 attachment(s) removed (0 bytes), "
        "0 sync log(s) deleted"
    )
    enable(bob)
    monkeypatch.setattr(purge, "delete_sync_logs_batch", boom)
    outcome = purge_task.apply()
    assert outcome.failed()
    with pytest.raises(PurgeFailed, match="retention purge failed for alice, bob"):
        outcome.get()


# --- Postgres: two purges at once -----------------------------------------------------------


def seed_messages(tenant: Tenant, count: int) -> None:
    with system_scope():
        Message.objects.bulk_create(
            [
                Message(
                    workspace=tenant.workspace,
                    message_id=f"bulk{n}@x",
                    received_at=NOW - timedelta(days=100, seconds=n),
                    body_text=BODY,
                    raw=BODY.encode(),
                )
                for n in range(count)
            ],
            batch_size=1000,
        )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_purges_at_once_redact_each_message_exactly_once(make_workspace: Any) -> None:
    tenant = make_workspace("para")
    enable(tenant)
    seed_messages(tenant, 3000)
    start = threading.Barrier(2)
    results: list[purge.PurgeResult] = []

    def one() -> None:
        try:
            start.wait()
            results.extend(purge_retention(now=at_now, batch_size=50).results)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [r.status for r in results] == ["completed", "completed"]
    assert sum(r.messages_redacted for r in results) == 3000
    assert all(r.messages_redacted for r in results), "both runs did a share (they skip, not wait)"
    with system_scope():
        assert Message.objects.filter(is_redacted=True).count() == 3000
        assert Message.objects.filter(redacted_at=NOW).count() == 3000


@contextmanager
def rows_held(lock_sql: str, params: list[Any]) -> Iterator[None]:
    """Another transaction (a thread with its own connection) holds these row locks meanwhile."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(lock_sql, params)
                locked.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        yield
    finally:
        release.set()
        holder.join(timeout=30)


def timed_purge(**kw: Any) -> tuple[purge.PurgeResult, float]:
    started = time.monotonic()
    [result] = purge_retention(now=at_now, **kw).results
    return result, time.monotonic() - started


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_purge_skips_rows_another_transaction_holds_and_never_waits(make_workspace: Any) -> None:
    tenant = make_workspace("held")
    enable(tenant)
    seed_messages(tenant, 20)
    with system_scope():
        held_ids = list(Message.objects.order_by("received_at").values_list("id", flat=True)[:5])
    with rows_held("SELECT id FROM messages WHERE id = ANY(%s) FOR UPDATE", [held_ids]):
        result, elapsed = timed_purge(batch_size=4)
    assert elapsed < 5 and result.messages_redacted == 15
    with system_scope():
        assert set(Message.objects.filter(is_redacted=False).values_list("id", flat=True)) == set(held_ids)
    assert purge_retention(now=at_now).results[0].messages_redacted == 5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_foreign_key_check_on_an_old_message_neither_blocks_nor_skips_it(make_workspace: Any) -> None:
    """An insert pointing at a message (its FK check holds FOR KEY SHARE) does not conflict with
    the purge's FOR NO KEY UPDATE: the message is redacted at once, not skipped."""
    tenant = make_workspace("fk")
    enable(tenant)
    seed_messages(tenant, 3)
    with system_scope():
        target = Message.objects.order_by("id").values_list("id", flat=True).first()
    with rows_held("SELECT id FROM messages WHERE id = %s FOR KEY SHARE", [target]):
        result, elapsed = timed_purge()
    assert elapsed < 5 and result.messages_redacted == 3


def test_an_unexpected_error_while_deleting_files_puts_the_unreached_rows_back(
    alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retention.batches import RemovedFile, delete_files

    enable(alice)
    first = attach(old_message(alice, "u1@x", timedelta(days=20)), "one.pdf")
    second = attach(old_message(alice, "u2@x", timedelta(days=20)), "two.pdf")
    names = [first.file.name, second.file.name]
    with system_scope():
        Attachment.objects.filter(pk__in=[first.pk, second.pk]).update(file="", removed_at=NOW)

    def broken(path: str) -> None:
        raise ValueError("storage backend bug")

    monkeypatch.setattr(default_storage, "delete", broken)
    with pytest.raises(ValueError):
        delete_files([RemovedFile(first.pk, names[0], 18), RemovedFile(second.pk, names[1], 18)], NOW)
    for row, name in zip((first, second), names, strict=True):
        back = fresh(row)
        assert back.removed_at is None and back.file.name == name and default_storage.exists(name)
