"""What failed and why, and the runbook's "retry failed syncs" (001 §4): the failure summary of a
workspace's writes to one CRM, grouped by error code, and requeueing them by error code. Also
what triage may do with one write, and which skipped writes an operator gave up on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import (
    BooleanField,
    CharField,
    Count,
    Exists,
    ExpressionWrapper,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Cast

from conduit.audit import record_audit
from conduit.models import AuditEvent, Workspace
from conduit.tenancy import system_scope
from integrations.models import SyncLog
from reconcile.models import CrmWriteLog
from reconcile.queue import dispatch_after_commit
from reconcile.services import RETRYABLE, SKIPPABLE, Actor, do_retry_writes

Status = CrmWriteLog.Status
RETRY_CHUNK = 500


def failed_writes(workspace: Workspace, provider: str, error_codes: list[str] | None = None) -> QuerySet[Any]:
    """Failed writes (retrying or permanent) of a workspace to one CRM, by error code when given."""
    rows = CrmWriteLog.objects.filter(workspace=workspace, provider=provider, status=Status.FAILED)
    return rows.filter(last_error_code__in=error_codes) if error_codes else rows


def _groups(
    rows: QuerySet[Any], code: str, when: str, sample: str, permanent: Q | None
) -> list[dict[str, Any]]:
    # the group's latest sample, as a subquery: one query whatever the number of groups
    latest = rows.filter(**{code: OuterRef(code)}).order_by(f"-{when}").values(sample)[:1]
    aggregates: dict[str, Any] = {
        "count": Count("id"),
        "first_seen": Min(when),
        "last_seen": Max(when),
        "sample_message": Subquery(latest),
    }
    if permanent is not None:
        aggregates["permanent_failures"] = Count("id", filter=permanent)
    grouped = list(rows.values(code).annotate(**aggregates).order_by("-count", code))
    for group in grouped:
        group["error_code"] = group.pop(code) or "unknown"
        group["sample_message"] = group["sample_message"] or ""
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
    (crm_write_retry_requested) and the request once (crm_writes_retry_failed). Once that commits,
    they are dispatched at once (one batch; the reconcile run sends the rest). Returns how many."""
    with system_scope():
        found = list(
            failed_writes(workspace, provider, error_codes).order_by("id").values_list("id", "connection_id")
        )
    ids = [pk for pk, _ in found]
    retried = 0
    for start in range(0, len(ids), RETRY_CHUNK):
        chunk = [CrmWriteLog(pk=pk) for pk in ids[start : start + RETRY_CHUNK]]
        retried += do_retry_writes(chunk, actor=actor, reason="retry-failed", dispatch=False)
    with system_scope():
        record_audit(
            "crm_writes_retry_failed",
            actor=actor,
            workspace=workspace,
            payload={"crm": provider, "error_codes": error_codes or [], "requeued": retried},
        )
    if retried:
        dispatch_after_commit(conn_id for _, conn_id in found)
    return retried


@dataclass(frozen=True)
class TriageChoices:
    retry: bool
    skip: bool


def triage_choices(write: CrmWriteLog) -> TriageChoices:
    """Whether Retry now and Skip would take this write (the services' own rules, one query)."""
    found = (
        CrmWriteLog.objects.filter(pk=write.pk)
        .annotate(
            can_retry=ExpressionWrapper(RETRYABLE, output_field=BooleanField()),
            can_skip=ExpressionWrapper(SKIPPABLE, output_field=BooleanField()),
        )
        .values("can_retry", "can_skip")
        .first()
    )
    return TriageChoices(retry=bool(found and found["can_retry"]), skip=bool(found and found["can_skip"]))


def operator_skipped(rows: QuerySet[Any], *, was_permanent: bool = False) -> QuerySet[Any]:
    """The skipped writes among `rows` that an operator gave up on (their crm_write_skipped
    event); with `was_permanent`, only those that were permanent failures then."""
    events = AuditEvent.objects.filter(
        event="crm_write_skipped",
        target_type=CrmWriteLog._meta.model_name,
        target_id=Cast(OuterRef("pk"), output_field=CharField()),
    )
    if was_permanent:
        events = events.filter(payload_json__permanent_failure=True)
    return rows.filter(Exists(events), status=Status.SKIPPED)
