"""What failed and why, and the runbook's "retry failed syncs" (001 §4): the failure summary of a
workspace's writes to one CRM, grouped by error code, and requeueing them by error code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Min, Q, QuerySet

from conduit.audit import record_audit
from conduit.models import Workspace
from conduit.tenancy import system_scope
from integrations.models import SyncLog
from reconcile.models import CrmWriteLog
from reconcile.services import Actor, do_retry_writes

Status = CrmWriteLog.Status
RETRY_CHUNK = 500


def failed_writes(workspace: Workspace, provider: str, error_codes: list[str] | None = None) -> QuerySet[Any]:
    """Failed writes (retrying or permanent) of a workspace to one CRM, by error code when given."""
    rows = CrmWriteLog.objects.filter(workspace=workspace, provider=provider, status=Status.FAILED)
    return rows.filter(last_error_code__in=error_codes) if error_codes else rows


def _groups(
    rows: QuerySet[Any], code: str, when: str, sample: str, permanent: Q | None
) -> list[dict[str, Any]]:
    aggregates: dict[str, Any] = {"count": Count("id"), "first_seen": Min(when), "last_seen": Max(when)}
    if permanent is not None:
        aggregates["permanent_failures"] = Count("id", filter=permanent)
    grouped = list(rows.values(code).annotate(**aggregates).order_by("-count", code))
    for group in grouped:
        latest = rows.filter(**{code: group[code]}).order_by(f"-{when}").values_list(sample, flat=True)
        group["error_code"] = group.pop(code) or "unknown"
        group["sample_message"] = latest.first() or ""
    return grouped


@dataclass(frozen=True)
class FailureSummary:
    failed: int
    permanent_failures: int
    writes: list[dict[str, Any]]
    provider_calls: list[dict[str, Any]]


def failure_summary(workspace: Workspace, provider: str, *, calls_since: datetime) -> FailureSummary:
    """Failed writes grouped by error code (count, first / last seen, a sample message, how many
    are permanent), and the failed provider calls of the sync log since `calls_since`."""
    with system_scope():
        writes = failed_writes(workspace, provider)
        groups = _groups(
            writes, "last_error_code", "updated_at", "last_error_message", Q(permanent_failure=True)
        )
        calls = SyncLog.objects.filter(
            workspace=workspace,
            provider=provider,
            status=SyncLog.Status.FAILED,
            created_at__gte=calls_since,
        )
        call_groups = _groups(calls, "error_code", "created_at", "summary", None)
    return FailureSummary(
        failed=sum(g["count"] for g in groups),
        permanent_failures=sum(g["permanent_failures"] for g in groups),
        writes=groups,
        provider_calls=call_groups,
    )


def do_retry_failed(
    workspace: Workspace, provider: str, *, error_codes: list[str] | None = None, actor: Actor
) -> int:
    """Requeue a workspace's failed and permanently failed writes to one CRM (optionally only
    these error codes), due now with their attempts reset. Each write is audited
    (crm_write_retry_requested) and the request once (crm_writes_retry_failed). Returns how many."""
    with system_scope():
        ids = list(
            failed_writes(workspace, provider, error_codes).order_by("id").values_list("id", flat=True)
        )
    retried = 0
    for start in range(0, len(ids), RETRY_CHUNK):
        chunk = [CrmWriteLog(pk=pk) for pk in ids[start : start + RETRY_CHUNK]]
        retried += do_retry_writes(chunk, actor=actor, reason="retry-failed")
    with system_scope():
        record_audit(
            "crm_writes_retry_failed",
            actor=actor,
            workspace=workspace,
            payload={"crm": provider, "error_codes": error_codes or [], "requeued": retried},
        )
    return retried
