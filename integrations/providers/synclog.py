"""Writes one crm_sync_logs row and one log line per provider operation.

A log row must never break or roll back the call it describes: it is written in its own
savepoint under the scope of its workspace, and a database error is logged and swallowed.
Inside `held_rows()` (a delivery group) the rows wait in memory and `write_held` stores them all
in one statement when the group finishes, under the same rule.
The log line carries the answer's rate-limit headers (ratelimit_headers.py) for runbook 14.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, transaction

from conduit.context import current_workspace_id
from conduit.prepared import insert_row, insert_rows
from conduit.secrets_scan import redact_text
from conduit.tenancy import system_scope, workspace_scope
from integrations.models import SyncLog
from integrations.providers.ratelimit_headers import as_text

log = logging.getLogger("conduit.integrations")
SUMMARY_MAX = 300
_held: ContextVar[list[SyncLog] | None] = ContextVar("conduit_sync_logs_held", default=None)


@dataclass(frozen=True)
class CallContext:
    """Whose call this is, for the sync log. `secrets` are the connection's own tokens, which an
    error message is scrubbed of even when the call did not send them (a CRM may quote the
    refresh token in a data call's error); they are never shown, compared or stored."""

    workspace_id: int | None = None
    connection_id: int | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)


NO_CONTEXT = CallContext()


def clean_summary(text: str) -> str:
    text = redact_text(" ".join(text.split()))
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def _scope_for(workspace_id: int | None) -> AbstractContextManager[None]:
    if workspace_id is None:
        return system_scope()
    if current_workspace_id.get() == workspace_id:
        return transaction.atomic()  # already in that workspace's scope: a savepoint is enough
    return workspace_scope(workspace_id)


def record_sync(
    context: CallContext,
    *,
    provider: str,
    operation: str,
    ok: bool,
    http_status: int | None,
    error_code: str,
    duration_ms: int,
    summary: str,
) -> None:
    row = SyncLog(
        workspace_id=context.workspace_id,
        connection_id=context.connection_id,
        provider=provider,
        operation=operation,
        status=SyncLog.Status.SUCCESS if ok else SyncLog.Status.FAILED,
        http_status=http_status,
        error_code=error_code,
        duration_ms=duration_ms,
        summary=clean_summary(summary),
    )
    if (held := _held.get()) is not None:
        held.append(row)
        return
    try:
        with _scope_for(context.workspace_id):
            insert_row(row)  # a row per provider call: no signals, no id read back
    except DatabaseError as exc:
        _not_written(exc, 1)


def _not_written(exc: DatabaseError, count: int) -> None:
    log.warning(
        "%d sync log(s) not written: %s",
        count,
        type(exc).__name__,
        extra={"category": "sync_log", "error_code": "sync_log_write_failed"},
    )


@contextmanager
def held_rows() -> Iterator[list[SyncLog]]:
    """Hold the rows of the calls made inside (in this thread or task) instead of writing each
    at once; the caller writes them with `write_held`, also when the block raises."""
    rows: list[SyncLog] = []
    token = _held.set(rows)
    try:
        yield rows
    finally:
        _held.reset(token)


def write_held(rows: list[SyncLog]) -> None:
    """Store held rows in one INSERT (several workspaces' rows: system scope, as the delivery
    that made the calls; row by row when that fails); never raises for a database error, like
    record_sync."""
    if not rows:
        return
    try:
        with system_scope():
            insert_rows(rows)
        return
    except DatabaseError:
        pass  # one bad row (its connection deleted meanwhile, say) must not cost the others
    for row in rows:
        try:
            with system_scope():
                insert_row(row)
        except DatabaseError as exc:
            _not_written(exc, 1)


def log_call(
    *,
    provider: str,
    operation: str,
    http_status: int | None,
    error_code: str | None,
    duration_ms: int,
    rate_limit: dict[str, str],
) -> None:
    """One INFO line per provider call, sent or held back: its outcome and the answer's
    rate-limit headers, in the text (for a plain grep) and as the `rate_limit` field."""
    parts = [provider, operation, "ok" if error_code is None else f"failed error_code={error_code}"]
    if http_status is not None:
        parts.append(f"http_status={http_status}")
    if rate_limit:
        parts.append(as_text(rate_limit))
    extra: dict[str, Any] = {
        "category": "provider",
        "error_code": error_code,
        "http_status": http_status,
        "duration_ms": duration_ms,
    }
    if rate_limit:
        extra["rate_limit"] = rate_limit
    log.info("%s", " ".join(parts), extra=extra)
