"""The retention purge with several workers (Postgres): the messages cut into slices, each worker
on its own thread and connection, counts, progress and the one audit event still right."""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection
from django.utils import timezone

from conduit.models import Attachment, AuditEvent, Message
from conduit.tenancy import system_scope
from integrations.models import SyncLog
from retention import purge
from retention.batches import message_slices, redact_messages_batch
from retention.policy import do_update_policy
from retention.purge import purge_retention
from tests.conftest import Tenant

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.get_fixed_timezone(0))
CUTOFF = NOW - timedelta(days=30)
POLICY = {"purge_enabled": True, "message_days": 30, "attachment_days": 10, "sync_log_days": 7}


def at_now() -> datetime:
    return NOW


def seed(tenant: Tenant, old: int, *, young: int = 0, same_time_every: int = 1) -> None:
    """`old` messages past the cutoff (runs of `same_time_every` share one received_at, so slice
    ends fall inside ties) and `young` ones that stay."""
    do_update_policy(tenant.workspace, POLICY, actor="system:test")
    rows = [
        Message(
            workspace=tenant.workspace,
            message_id=f"m{n}@x",
            received_at=NOW - timedelta(days=40, seconds=n // same_time_every),
            body_text="CONFIDENTIAL",
            raw=b"CONFIDENTIAL",
        )
        for n in range(old)
    ] + [
        Message(workspace=tenant.workspace, message_id=f"y{n}@x", received_at=NOW - timedelta(days=1))
        for n in range(young)
    ]
    with system_scope():
        Message.objects.bulk_create(rows, batch_size=1000)


def redacted() -> int:
    with system_scope():
        return Message.objects.filter(is_redacted=True).count()


@contextmanager
def watched_batches(slow: float = 0.0) -> Iterator[list[tuple[str, int, int]]]:
    """Every redaction batch as (thread name, database backend pid, rows redacted)."""
    seen: list[tuple[str, int, int]] = []
    real = purge.redact_messages_batch

    def watch(*args: Any) -> Any:
        count, key = real(*args)
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            seen.append((threading.current_thread().name, cur.fetchone()[0], count))
        time.sleep(slow)
        return count, key

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(purge, "redact_messages_batch", watch)
        yield seen


def test_workers_redact_every_old_message_exactly_once_on_their_own_connections(
    make_workspace: Any,
) -> None:
    tenant = make_workspace("par")
    seed(tenant, 3000, young=50, same_time_every=7)
    ticks: list[tuple[str, int, int]] = []
    with watched_batches(slow=0.01) as seen:
        [result] = purge_retention(
            now=at_now, batch_size=100, workers=2, progress=lambda *t: ticks.append(t)
        ).results
    assert result.status == "completed" and result.messages_redacted == 3000
    assert {name for name, _, _ in seen} == {"purge-0", "purge-1"}, "both workers took slices"
    assert len({pid for _, pid, _ in seen}) == 2, "each worker on its own connection"
    assert sum(count for _, _, count in seen) == 3000
    done = [d for kind, d, _ in ticks if kind == "messages"]
    assert done == sorted(done) and done[-1] == 3000, "progress counts all workers' batches"
    assert all(total == 3000 for kind, _, total in ticks if kind == "messages")
    with system_scope():
        assert Message.objects.filter(is_redacted=True, redacted_at=NOW).count() == 3000
        assert not Message.objects.filter(received_at__gt=CUTOFF, is_redacted=True).exists()
        [event] = AuditEvent.objects.filter(event="retention_purge_completed")
    assert event.payload_json["messages_redacted"] == 3000 and event.payload_json["batches"] == result.batches
    assert not [t for t in threading.enumerate() if t.name.startswith("purge-")]
    again = purge_retention(now=at_now, batch_size=100, workers=2).results[0]
    assert set(again.counts().values()) == {0}


def test_the_setting_chooses_how_many_workers(make_workspace: Any, settings: Any) -> None:
    settings.CONDUIT_PURGE_WORKERS = 3
    seed(make_workspace("three"), 1200)
    with watched_batches(slow=0.02) as seen:
        [result] = purge_retention(now=at_now, batch_size=50).results
    assert result.messages_redacted == 1200
    assert {name for name, _, _ in seen} == {"purge-0", "purge-1", "purge-2"}


def test_slices_split_ties_and_cover_every_due_message_once(make_workspace: Any) -> None:
    tenant = make_workspace("slices")
    seed(tenant, 1000, young=10, same_time_every=9)  # 9 messages share each received_at
    slices = message_slices(tenant.workspace.pk, CUTOFF, 1000, 4)
    assert len(slices) == 4 and slices[0][0] is None and slices[-1][1] is None
    assert all(a[1] == b[0] for a, b in itertools.pairwise(slices)), "contiguous"
    sizes = []
    for after, until in slices:
        count, _ = redact_messages_batch(tenant.workspace.pk, CUTOFF, NOW, 10_000, after, until)
        sizes.append(count)
    assert sizes == [250, 250, 250, 250]  # keys (received_at, id), so a tie splits exactly
    assert redacted() == 1000
    assert message_slices(tenant.workspace.pk, CUTOFF, 1000, 1) == [(None, None)]


def test_a_failing_worker_stops_the_run_with_its_step_and_one_audit_event(
    make_workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = make_workspace("fail")
    seed(tenant, 2000)
    with system_scope():
        SyncLog.objects.create(
            workspace=tenant.workspace,
            provider="hubspot",
            operation="create_note",
            status="SUCCESS",
            created_at=NOW - timedelta(days=60),
        )
    real, calls = purge.redact_messages_batch, []

    def fail_third(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise DatabaseError("could not extend file")
        return real(*args)

    monkeypatch.setattr(purge, "redact_messages_batch", fail_third)
    [result] = purge_retention(now=at_now, batch_size=100, workers=2).results
    assert result.failed and result.failed_step == "messages" and result.error_class == "DatabaseError"
    assert result.messages_redacted == redacted() < 2000, "counts what the workers committed"
    assert len(calls) < 20, "the other worker stopped after its batch"
    with system_scope():
        [event] = AuditEvent.objects.filter(event="retention_purge_failed")
        assert not AuditEvent.objects.filter(event="retention_purge_completed").exists()
    assert event.payload_json["step"] == "messages"
    assert event.payload_json["messages_redacted"] == result.messages_redacted
    monkeypatch.undo()
    again = purge_retention(now=at_now, batch_size=100, workers=2).results[0]
    assert again.status == "completed" and again.messages_redacted == 2000 - result.messages_redacted
    assert redacted() == 2000


def test_a_soft_time_limit_in_the_calling_thread_stops_every_worker(make_workspace: Any) -> None:
    tenant = make_workspace("late")
    seed(tenant, 3000)

    def out_of_time(signum: int, frame: Any) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, out_of_time)  # as Celery raises it: in the main thread
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with watched_batches(slow=0.05), pytest.raises(SoftTimeLimitExceeded):
            purge_retention(now=at_now, batch_size=50, workers=2)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not [t for t in threading.enumerate() if t.name.startswith("purge-")], "workers joined"
    stopped_at = redacted()
    time.sleep(0.3)
    assert 0 < redacted() == stopped_at < 3000, "nothing runs on after the run stopped"
    with system_scope():
        [event] = AuditEvent.objects.filter(event="retention_purge_failed")
    assert event.payload_json["error_class"] == "SoftTimeLimitExceeded"
    assert event.payload_json["messages_redacted"] == stopped_at


def test_attachment_files_go_on_their_own_thread_and_a_stuck_one_is_put_back(
    make_workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = make_workspace("files")
    seed(tenant, 600)
    with system_scope():
        messages = list(Message.objects.order_by("id")[:3])
        rows = [
            Attachment.objects.create(
                workspace=tenant.workspace,
                message=m,
                filename=f"f{n}.pdf",
                content_type="application/pdf",
                size=10,
                file=default_storage.save(
                    f"attachments/{tenant.workspace.pk}/f{n}.pdf", ContentFile(b"x" * 10)
                ),
            )
            for n, m in enumerate(messages)
        ]
    stuck, real_delete, deleters = rows[0].file.name, default_storage.delete, set()

    def refuse(path: str) -> None:
        deleters.add(threading.current_thread().name)
        if path == stuck:
            raise PermissionError(13, "Permission denied")
        real_delete(path)

    monkeypatch.setattr(default_storage, "delete", refuse)
    [result] = purge_retention(now=at_now, batch_size=100, workers=2).results
    assert deleters == {"purge-files"}, "no worker waits on the disk"
    assert result.failed and result.failed_step == "attachments" and result.error_class == "FileDeleteFailed"
    assert result.messages_redacted == 600, "the message slices all ran"
    assert result.attachments_removed == 2 and result.attachment_bytes_freed == 20
    with system_scope():
        back = Attachment.objects.get(pk=rows[0].pk)
        assert back.removed_at is None and back.file.name == stuck and default_storage.exists(stuck)
        assert Attachment.objects.filter(removed_at=NOW).count() == 2
    assert not any(default_storage.exists(r.file.name) for r in rows[1:])


@pytest.mark.django_db(transaction=False)
def test_inside_a_transaction_the_purge_stays_on_the_callers_connection(make_workspace: Any) -> None:
    """Uncommitted rows are seen only by the caller's connection, so no worker threads then."""
    seed(make_workspace("atomic"), 600)
    with watched_batches() as seen:
        [result] = purge_retention(now=at_now, batch_size=100, workers=4).results
    assert result.messages_redacted == 600
    assert {name for name, _, _ in seen} == {threading.current_thread().name}
