"""The retention purge: redact old message bodies, delete aged attachment files, prune sync logs,
workspace by workspace, batch by batch (the statements and their rule: retention/batches.py).

A failure stops that workspace only: committed batches stay done, the failure is audited
(`retention_purge_failed`) and logged, and the next run carries on where this one stopped.
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from conduit.audit import record_audit
from conduit.models import Workspace
from conduit.secrets_scan import looks_secret_value, redact_text
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from retention.batches import (
    RemovedFile,
    count_due,
    delete_files,
    delete_sync_logs_batch,
    redact_messages_batch,
    remove_attachments_batch,
)
from retention.models import RetentionPolicy
from retention.policy import PolicyValues, defaults, values_of

log = logging.getLogger("conduit.retention")
ACTOR = "system:purge_retention"


class Progress(Protocol):
    def __call__(self, kind: str, done: int, total: int) -> None: ...


class PurgeDisabled(ConduitError):
    error_code = "retention_purge_disabled"


class FileDeleteFailed(Exception):
    """Some attachment files could not be deleted; their rows were put back for the next run."""


@dataclass(frozen=True)
class Cutoffs:
    messages: datetime
    attachments: datetime
    sync_logs: datetime

    def as_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in asdict(self).items()}


def cutoffs_for(policy: PolicyValues, now: datetime) -> Cutoffs:
    """Rows strictly older than now - N days go; a row exactly N days old stays."""
    return Cutoffs(
        messages=now - timedelta(days=policy.message_days),
        attachments=now - timedelta(days=policy.attachment_days),
        sync_logs=now - timedelta(days=policy.sync_log_days),
    )


@dataclass
class PurgeResult:
    workspace_id: int
    workspace_slug: str
    policy: PolicyValues
    cutoffs: Cutoffs
    dry_run: bool = False
    status: str = "running"  # completed | failed | dry_run
    messages_redacted: int = 0
    attachments_removed: int = 0
    attachment_bytes_freed: int = 0
    files_missing: int = 0
    sync_logs_deleted: int = 0
    duration_ms: int = 0
    batches: int = 0
    batch_ms: list[tuple[str, float]] = field(default_factory=list, repr=False)  # (kind, ms) per batch
    file_delete_ms: list[float] = field(default_factory=list, repr=False)  # per batch, after its commit
    failed_step: str = ""
    error_class: str = ""
    error_message: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def counts(self) -> dict[str, int]:
        return {
            "messages_redacted": self.messages_redacted,
            "attachments_removed": self.attachments_removed,
            "attachment_bytes_freed": self.attachment_bytes_freed,
            "files_missing": self.files_missing,
            "sync_logs_deleted": self.sync_logs_deleted,
        }

    @property
    def slowest_batch_ms(self) -> int:
        return round(max((ms for _, ms in self.batch_ms), default=0.0))

    def line(self) -> str:
        verb = "would redact" if self.dry_run else "redacted"
        text = (
            f"{verb} {self.messages_redacted} message(s), "
            f"{'would remove' if self.dry_run else 'removed'} {self.attachments_removed} attachment(s) "
            f"({self.attachment_bytes_freed} bytes"
            + ("" if self.dry_run else f", {self.files_missing} file(s) already missing")
            + f"), {'would delete' if self.dry_run else 'deleted'} {self.sync_logs_deleted} sync log(s)"
        )
        if not self.dry_run:
            text += f" in {self.duration_ms} ms, {self.batches} batch(es), slowest {self.slowest_batch_ms} ms"
        if self.failed:
            text += f"; FAILED at {self.failed_step}: {self.error_class}: {self.error_message}"
        return text


def _short_message(exc: BaseException) -> str:
    """The first line of the error, at most 200 characters, never secret-looking (a database
    error's detail lines can quote row values, so they are dropped)."""
    lines = str(exc).strip().splitlines()
    text = redact_text(lines[0] if lines else "")[:200]
    return "(message withheld)" if looks_secret_value(text) else text


class _Run:
    """One workspace's purge; each step walks its rows batch by batch."""

    def __init__(self, result: PurgeResult, at: datetime, batch_size: int, progress: Progress | None) -> None:
        self.result, self.at, self.batch_size, self.progress = result, at, batch_size, progress
        self.step = "count"
        self.files_failed = 0

    def count(self) -> dict[str, int]:
        c = self.result.cutoffs
        return count_due(self.result.workspace_id, c.messages, c.attachments, c.sync_logs)

    def _tick(self, kind: str, started: float, done: int, total: int) -> None:
        """After a batch's transaction: time it (the lock-holding part) and report progress."""
        self.result.batches += 1
        self.result.batch_ms.append((kind, (time.perf_counter() - started) * 1000))
        if self.progress is not None:
            self.progress(kind, done, max(total, done))

    def messages(self, total: int) -> None:
        self.step = "messages"
        r, key = self.result, None
        while True:
            started = time.perf_counter()
            count, key = redact_messages_batch(
                r.workspace_id, r.cutoffs.messages, self.at, self.batch_size, key
            )
            if count == 0 and r.messages_redacted:  # the empty batch that ends the walk
                return
            r.messages_redacted += count
            self._tick("messages", started, r.messages_redacted, total)
            if count == 0:  # (a short batch may only have skipped rows another run holds)
                return

    def attachments(self, total: int) -> None:
        self.step = "attachments"
        r, key = self.result, None
        while True:
            started = time.perf_counter()
            batch = remove_attachments_batch(
                r.workspace_id, r.cutoffs.attachments, self.at, self.batch_size, key
            )
            if batch.seen == 0 and r.attachments_removed:  # the empty batch that ends the walk
                return
            key = batch.last_key
            r.attachments_removed += len(batch.removed)
            r.attachment_bytes_freed += sum(f.size for f in batch.removed)
            self._tick("attachments", started, r.attachments_removed, total)
            if batch.removed:
                # the files go only once the rows say so for good (after the batch's commit)
                transaction.on_commit(functools.partial(self._delete, batch.removed))
            if batch.seen == 0:
                return

    def _delete(self, removed: list[RemovedFile]) -> None:
        """Runs after the batch's commit (a commit hook never raises: failures are counted)."""
        started = time.perf_counter()
        missing, failed = delete_files(removed, self.at)
        self.result.file_delete_ms.append((time.perf_counter() - started) * 1000)
        self.result.files_missing += missing
        self.files_failed += len(failed)
        self.result.attachments_removed -= len(failed)
        self.result.attachment_bytes_freed -= sum(f.size for f in failed)

    def sync_logs(self, total: int) -> None:
        self.step = "sync_logs"
        r, key = self.result, None
        while True:
            started = time.perf_counter()
            count, key = delete_sync_logs_batch(r.workspace_id, r.cutoffs.sync_logs, self.batch_size, key)
            if count == 0 and r.sync_logs_deleted:  # the empty batch that ends the walk
                return
            r.sync_logs_deleted += count
            self._tick("sync_logs", started, r.sync_logs_deleted, total)
            if count == 0:
                return


def _audit_payload(result: PurgeResult) -> dict[str, Any]:
    return {
        **result.counts(),
        "duration_ms": result.duration_ms,
        "batches": result.batches,
        "slowest_batch_ms": result.slowest_batch_ms,
        "policy": result.policy.as_dict(),
        "cutoffs": result.cutoffs.as_dict(),
    }


def _reopen_if_lost() -> None:
    """A lost database connection is closed, so the failure's audit row gets a new one."""
    if not connection.in_atomic_block and connection.connection is not None and not connection.is_usable():
        connection.close()


def _record_failure(workspace: Workspace, result: PurgeResult, exc: Exception) -> None:
    result.status = "failed"
    result.error_class = type(exc).__name__
    result.error_message = _short_message(exc)
    trace = "".join(traceback.format_tb(exc.__traceback__))[-4000:]  # frames only, no values
    log.error(
        "retention purge failed for %s at %s: %s: %s",
        result.workspace_slug,
        result.failed_step,
        result.error_class,
        result.error_message,
        extra={
            "category": "retention",
            "error_code": "retention_purge_failed",
            "workspace_id": result.workspace_id,
            "trace": trace,
        },
    )
    if result.dry_run:
        return  # a dry run changes nothing, the audit trail included; the log line above says it
    _reopen_if_lost()
    try:
        with system_scope():
            record_audit(
                "retention_purge_failed",
                actor=ACTOR,
                workspace=workspace,
                payload={
                    **_audit_payload(result),
                    "step": result.failed_step,
                    "error_class": result.error_class,
                    "error_message": result.error_message,
                },
            )
    except DatabaseError as audit_exc:
        log.error(
            "retention purge failure for %s could not be audited: %s",
            result.workspace_slug,
            type(audit_exc).__name__,
            extra={"category": "retention", "error_code": "retention_audit_failed"},
        )


def purge_workspace(
    workspace: Workspace,
    policy: PolicyValues,
    *,
    now: Callable[[], datetime] = timezone.now,
    dry_run: bool = False,
    progress: Progress | None = None,
    batch_size: int | None = None,
) -> PurgeResult:
    """Purge one workspace by `policy` (counts only with dry_run). Never raises for a failure
    of the purge itself: the result says failed, and the failure is audited and logged."""
    at = now()
    result = PurgeResult(workspace.pk, workspace.slug, policy, cutoffs_for(policy, at), dry_run=dry_run)
    run = _Run(result, at, batch_size or settings.CONDUIT_PURGE_BATCH_SIZE, progress)
    started = time.perf_counter()
    try:
        totals = run.count()
        if dry_run:
            result.messages_redacted, result.sync_logs_deleted = totals["messages"], totals["sync_logs"]
            result.attachments_removed, result.attachment_bytes_freed = totals["attachments"], totals["bytes"]
            result.status = "dry_run"
            return result
        run.messages(totals["messages"])
        run.attachments(totals["attachments"])
        run.sync_logs(totals["sync_logs"])
        if run.files_failed:  # their rows were put back, and the sync logs still went: re-runnable
            run.step = "attachments"
            raise FileDeleteFailed(f"{run.files_failed} attachment file(s) could not be deleted")
        result.duration_ms = round((time.perf_counter() - started) * 1000)
        result.status = "completed"
        with system_scope():
            record_audit(
                "retention_purge_completed", actor=ACTOR, workspace=workspace, payload=_audit_payload(result)
            )
    except Exception as exc:  # the job's boundary for this workspace: record, then move on
        result.duration_ms = round((time.perf_counter() - started) * 1000)
        result.failed_step = run.step
        _record_failure(workspace, result, exc)
        if isinstance(exc, SoftTimeLimitExceeded):
            raise  # the worker's time is up: stop here, the next run carries on
        return result
    log.info(
        "retention purge %s for %s: %s",
        result.status,
        workspace.slug,
        result.line(),
        extra={"category": "retention", "workspace_id": workspace.pk},
    )
    return result


# --- every workspace ------------------------------------------------------------------------


@dataclass
class PurgeRun:
    results: list[PurgeResult] = field(default_factory=list)

    @property
    def failed(self) -> list[PurgeResult]:
        return [r for r in self.results if r.failed]

    def summary(self) -> str:
        """Totals over every workspace (a failed one counts what it committed before failing)."""
        would = "would be " if self.results and all(r.dry_run for r in self.results) else ""
        rs = self.results
        return (
            f"{len(rs)} workspace(s), {len(self.failed)} failed; "
            f"{sum(r.messages_redacted for r in rs)} message(s) {would}redacted, "
            f"{sum(r.attachments_removed for r in rs)} attachment(s) {would}removed "
            f"({sum(r.attachment_bytes_freed for r in rs)} bytes), "
            f"{sum(r.sync_logs_deleted for r in rs)} sync log(s) {would}deleted"
        )


def targets(
    workspace: Workspace | None = None, *, dry_run: bool = False
) -> list[tuple[Workspace, PolicyValues]]:
    """The workspaces to purge with their policies: every enabled one, or the one given (which
    must have purge on unless this is a dry run)."""
    with system_scope():
        if workspace is None:
            rows = RetentionPolicy.objects.filter(purge_enabled=True).select_related("workspace")
            return [(p.workspace, values_of(p)) for p in rows.order_by("workspace_id")]
        saved = RetentionPolicy.objects.filter(workspace=workspace).first()
    policy = values_of(saved) if saved else defaults()
    if not policy.purge_enabled and not dry_run:
        raise PurgeDisabled(
            f"Retention purge is off for {workspace.slug}; turn it on in its retention settings "
            "(or use --dry-run to see what it would remove)."
        )
    return [(workspace, policy)]


def purge_retention(
    *,
    workspace: Workspace | None = None,
    dry_run: bool = False,
    now: Callable[[], datetime] = timezone.now,
    progress: Progress | None = None,
    announce: Callable[[Workspace, PolicyValues], None] | None = None,
    batch_size: int | None = None,
) -> PurgeRun:
    """Purge every workspace with purge on (or the one given), each on its own: a workspace
    that fails is audited and logged, and the others still run."""
    run = PurgeRun()
    for target, policy in targets(workspace, dry_run=dry_run):
        if announce is not None:
            announce(target, policy)
        run.results.append(
            purge_workspace(
                target, policy, now=now, dry_run=dry_run, progress=progress, batch_size=batch_size
            )
        )
    return run
