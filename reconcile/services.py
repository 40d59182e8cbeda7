"""Actions on writes and their connections (do_<verb>_<noun>, audited in the same transaction),
and the plain reads the pages, admin and API show."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Count, Q
from django.utils import timezone

from conduit.audit import record_audit
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from integrations.ledger import WriteCounts
from integrations.models import CrmConnection
from integrations.providers import get_provider
from reconcile.delivery import activity_for
from reconcile.models import CrmWriteLog, DealMapping
from reconcile.queue import dispatch_after_commit

Actor = AbstractBaseUser | str
Status = CrmWriteLog.Status


class CannotGoLive(ConduitError):
    error_code = "cannot_go_live"


def do_go_live(conn: CrmConnection, *, send_planned: bool, actor: Actor) -> int:
    """Switch a connection from dry run to live. The writes planned during dry run are sent
    (status planned, due now) or skipped; returns how many. Audited."""
    if settings.CONDUIT_FORCE_DRY_RUN:
        raise CannotGoLive("Dry run is forced for every connection by the operators (CONDUIT_FORCE_DRY_RUN).")
    now = timezone.now()
    with system_scope():
        conn = (
            CrmConnection.objects.select_for_update(of=("self",)).select_related("workspace").get(pk=conn.pk)
        )
        if conn.status != CrmConnection.Status.CONNECTED:
            raise CannotGoLive(
                f"The {conn.get_crm_display()} connection is {conn.status}; reconnect it first."
            )
        if not conn.dry_run:
            raise CannotGoLive(f"The {conn.get_crm_display()} connection is already live.")
        conn.dry_run = False
        conn.save(update_fields=["dry_run", "updated_at"])
        held = CrmWriteLog.objects.filter(connection=conn, status=Status.DRY_RUN)
        if send_planned:
            moved = held.update(status=Status.PLANNED, next_retry_at=now, updated_at=now)
        else:
            moved = held.update(
                status=Status.SKIPPED,
                last_error_code="skipped_at_go_live",
                last_error_message="planned during dry run; not sent when the connection went live",
                updated_at=now,
            )
        record_audit(
            "crm_connection_went_live",
            actor=actor,
            workspace=conn.workspace,
            target=conn,
            payload={"crm": conn.crm, "dry_run_writes": moved, "sent": send_planned},
        )
    if send_planned and moved:
        dispatch_after_commit([conn.pk])  # sent at once, not at the next ten-minute run
    return moved


def do_enable_dry_run(conn: CrmConnection, *, actor: Actor) -> int:
    """Back to dry run: nothing more is sent; queued writes wait as dry-run rows. Audited."""
    now = timezone.now()
    with system_scope():
        conn = (
            CrmConnection.objects.select_for_update(of=("self",)).select_related("workspace").get(pk=conn.pk)
        )
        if conn.dry_run:
            return 0
        conn.dry_run = True
        conn.save(update_fields=["dry_run", "updated_at"])
        held = CrmWriteLog.objects.filter(
            connection=conn, status__in=[Status.PLANNED, Status.FAILED], permanent_failure=False
        ).update(status=Status.DRY_RUN, next_retry_at=None, updated_at=now)
        record_audit(
            "crm_connection_dry_run_enabled",
            actor=actor,
            workspace=conn.workspace,
            target=conn,
            payload={"crm": conn.crm, "queued_writes_held": held},
        )
    return held


# failed (incl. permanent) writes, and writes skipped because no contact matched (the person
# may have been added to the CRM since: the cached "no contact" answer is dropped on retry)
RETRYABLE = Q(status=Status.FAILED) | Q(status=Status.SKIPPED, last_error_code="no_matching_contact")
SKIPPABLE = Q(status__in=[Status.PLANNED, Status.FAILED, Status.DRY_RUN])


def _lock(writes: Iterable[CrmWriteLog], allowed: Q) -> list[CrmWriteLog]:
    """The allowed ones among these writes, locked for the caller's transaction."""
    ids = [w.pk for w in writes]
    return list(
        CrmWriteLog.objects.select_for_update(of=("self",))
        .select_related("workspace")
        .filter(allowed, pk__in=ids)
    )


def _audit_each(event: str, rows: list[CrmWriteLog], actor: Actor, **payload: Any) -> None:
    for row in rows:
        record_audit(
            event,
            actor=actor,
            workspace=row.workspace,
            target=row,
            payload={
                "write_id": row.pk,
                "was": row.status,
                "retry_count": row.retry_count,
                "permanent_failure": row.permanent_failure,
                "last_error_code": row.last_error_code,
                **payload,
            },
        )


def do_retry_writes(
    writes: Iterable[CrmWriteLog], *, actor: Actor, reason: str = "", dispatch: bool = True
) -> int:
    """Requeue failed or permanently failed writes now: attempts reset, failure cleared, audited
    per write, and (unless a caller that retries in chunks dispatches once itself) sent at once
    after commit. A write whose outcome was unknown is still looked up before it is resent."""
    now = timezone.now()
    with system_scope():
        rows = _lock(writes, RETRYABLE)
        if misses := [r for r in rows if r.status == Status.SKIPPED]:
            # look the person up again: drop the cached "no contact" answers in one statement
            pairs = Q()
            for r in misses:
                pairs |= Q(connection_id=r.connection_id, email=r.target)
            DealMapping.objects.filter(pairs, contact_id="", source=DealMapping.Source.PROVIDER).delete()
        CrmWriteLog.objects.filter(pk__in=[r.pk for r in rows]).update(
            status=Status.FAILED, permanent_failure=False, retry_count=0, next_retry_at=now, updated_at=now
        )
        _audit_each("crm_write_retry_requested", rows, actor, reason=reason)
    if dispatch and rows:
        dispatch_after_commit({r.connection_id for r in rows})
    return len(rows)


def do_skip_writes(writes: Iterable[CrmWriteLog], *, actor: Actor, reason: str = "") -> int:
    """Give up on queued or failed writes on purpose (they are kept, marked skipped, audited).

    A skipped permanent failure leaves the permanent-failure queue: `permanent_failure` is
    cleared, and the crm_write_skipped event keeps what it was (the admin's "Skipped" filter)."""
    now = timezone.now()
    with system_scope():
        rows = _lock(writes, SKIPPABLE)
        CrmWriteLog.objects.filter(pk__in=[r.pk for r in rows]).update(
            status=Status.SKIPPED, permanent_failure=False, next_retry_at=None, updated_at=now
        )
        _audit_each("crm_write_skipped", rows, actor, reason=reason)
    return len(rows)


def counts_for(conn: CrmConnection) -> WriteCounts:
    rows = (
        CrmWriteLog.objects.filter(connection=conn)
        .values("status", "permanent_failure")
        .annotate(n=Count("id"))
        .order_by()
    )
    by: dict[str, int] = {}
    for r in rows:
        key = "permanent" if r["permanent_failure"] and r["status"] == Status.FAILED else r["status"]
        by[key] = by.get(key, 0) + r["n"]
    last = (
        CrmWriteLog.objects.filter(connection=conn)
        .exclude(last_error_code="")
        .exclude(status__in=[Status.SUCCEEDED, Status.SKIPPED])
        .order_by("-updated_at")
        .values("last_error_code", "last_error_message", "updated_at")
        .first()
    )
    return WriteCounts(
        dry_run=by.get(Status.DRY_RUN, 0),
        planned=by.get(Status.PLANNED, 0) + by.get(Status.SENDING, 0),
        failed=by.get(Status.FAILED, 0),
        permanent=by.get("permanent", 0),
        succeeded=by.get(Status.SUCCEEDED, 0),
        skipped=by.get(Status.SKIPPED, 0),
        last_error=f"{last['last_error_code']}: {last['last_error_message']}".rstrip(": ") if last else "",
        last_error_at=last["updated_at"] if last else None,
    )


def provider_payload(row: CrmWriteLog, mapping: DealMapping | None = None) -> dict[str, Any]:
    """The exact request body this write sends (or would send) to the CRM. Before the contact
    is resolved the ids come from the lookup cache, or a placeholder naming the email."""
    contact, deal = row.payload.get("contact_id"), row.payload.get("deal_id")
    if not contact:
        if mapping is None:
            mapping = DealMapping.objects.filter(connection_id=row.connection_id, email=row.target).first()
        if mapping is not None and mapping.contact_id:
            contact, deal = mapping.contact_id, mapping.deal_id
    contact = str(contact or f"<the {row.get_provider_display()} contact with email {row.target}>")
    return get_provider(row.provider).write_payload(
        row.operation, activity_for(row, contact, str(deal or ""))
    )


def payload_or_none(row: CrmWriteLog, mapping: DealMapping | None = None) -> dict[str, Any] | None:
    """provider_payload, or None for a row whose curated content lacks a field (one planned by an
    older version): pages show what they can instead of failing."""
    try:
        return provider_payload(row, mapping)
    except (KeyError, ValueError, TypeError):
        return None
