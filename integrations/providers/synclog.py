"""Writes one crm_sync_logs row and one log line per provider operation.

A log row must never break or roll back the call it describes: it is written in its own
savepoint under the scope of its workspace, and a database error is logged and swallowed.
The log line carries the answer's rate-limit headers (ratelimit_headers.py) for runbook 14.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, transaction

from conduit.context import current_workspace_id
from conduit.prepared import insert_row
from conduit.secrets_scan import redact_text
from conduit.tenancy import system_scope, workspace_scope
from integrations.models import SyncLog
from integrations.providers.ratelimit_headers import as_text

log = logging.getLogger("conduit.integrations")
SUMMARY_MAX = 300


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
    try:
        with _scope_for(context.workspace_id):
            insert_row(row)  # a row per provider call: no signals, no id read back
    except DatabaseError as exc:
        log.warning(
            "sync log not written: %s",
            type(exc).__name__,
            extra={"category": "sync_log", "error_code": "sync_log_write_failed"},
        )


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
