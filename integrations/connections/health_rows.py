"""connection_health rows: the latest verdict per workspace + CRM, each change audited.

Everything that decides a verdict writes it here: the hourly check (integrations/health/checks.py),
a connect or reconnect (the identify call just succeeded: ok), a revoked grant or a refused
scope (error). Callers hold a transaction; the row is locked while it changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet

from conduit.audit import record_audit
from integrations.models import ConnectionHealth, CrmConnection
from integrations.providers import metrics

Status = ConnectionHealth.Status


@dataclass(frozen=True)
class Verdict:
    status: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    failure: bool = False  # the check itself failed (counts toward consecutive_failures)
    # True: the CRM refused Conduit's access (extends the run toward error); False: it accepted
    # or answered otherwise (ends the run); None: no answer about access (429, 5xx): run unchanged
    auth_failure: bool | None = False

    @classmethod
    def error(
        cls, reason: str, details: dict[str, Any] | None = None, *, auth_failure: bool = False
    ) -> Verdict:
        return cls(
            Status.ERROR,
            reason,
            {"error_code": reason, **(details or {})},
            failure=True,
            auth_failure=auth_failure,
        )


def rows_of(conn: CrmConnection) -> QuerySet[ConnectionHealth]:
    """The connection's workspace + CRM row (none for an unclaimed install)."""
    if conn.workspace_id is None:
        return ConnectionHealth.objects.none()
    return ConnectionHealth.objects.filter(workspace_id=conn.workspace_id, crm=conn.crm)


def locked_row(conn: CrmConnection) -> ConnectionHealth | None:
    return rows_of(conn).select_for_update().first()


def auth_run(row: ConnectionHealth | None, now: datetime) -> int:
    """The length of the refusal run if the CRM refuses Conduit's token now."""
    if row is None or not row.consecutive_auth_failures:
        return 1
    spacing = timedelta(seconds=settings.CONDUIT_HEALTH_AUTH_RUN_SPACING_SECONDS)
    if row.last_auth_failure_at and now - row.last_auth_failure_at < spacing:
        return row.consecutive_auth_failures  # the same outage seen again
    return row.consecutive_auth_failures + 1


def record(
    conn: CrmConnection, verdict: Verdict, *, now: datetime, actor: AbstractBaseUser | str | None
) -> ConnectionHealth | None:
    """Store the verdict for the connection's workspace + CRM; audit when status or reason change."""
    if conn.workspace_id is None:  # an unclaimed install has no workspace to report to
        return None
    row, created = ConnectionHealth.objects.select_for_update().get_or_create(
        workspace_id=conn.workspace_id,
        crm=conn.crm,
        defaults={"status": verdict.status, "last_checked_at": now},
    )
    before = None if created else (row.status, row.reason)
    row.connection = conn
    row.status = verdict.status
    row.reason = verdict.reason
    row.details_json = verdict.details
    row.last_checked_at = now
    if verdict.status == Status.OK:
        row.last_ok_at = now
    row.consecutive_failures = row.consecutive_failures + 1 if verdict.failure else 0
    if verdict.auth_failure:
        row.consecutive_auth_failures = auth_run(row, now)
        row.last_auth_failure_at = now
    elif verdict.auth_failure is not None:
        row.consecutive_auth_failures = 0
    row.save()
    if before != (row.status, row.reason):
        record_audit(
            "connection_health_changed",
            actor=actor,
            workspace=conn.workspace,
            target=row,
            payload={
                "crm": conn.crm,
                "connection_id": conn.pk,
                "from": before[0] if before else None,
                "to": row.status,
                "previous_reason": before[1] if before else None,
                "reason": row.reason,
                "consecutive_failures": row.consecutive_failures,
            },
        )
    metrics.set_connection_status(conn.crm, conn.workspace_id, ok=row.status == Status.OK)
    if row.status != Status.OK:
        metrics.CONNECTION_FAILURES.labels(provider=conn.crm, status=row.status).inc()
    return row


def forget(conn: CrmConnection) -> None:
    """A disconnected CRM has no health to report (the next connect starts a new row)."""
    rows_of(conn).delete()
