"""Reconcile's side of integrations.ledger: the write counts, previews, next attempt and queue
numbers that integrations shows, what a changed CRM record does to the cached lookups (mapping.py),
and the calendar's meetings: which addresses are customers, and their planned writes
(meetings.py). Registered in ReconcileConfig.ready()."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.utils import timezone

from integrations.ledger import CrmObject, WriteCounts, WritePreview
from integrations.models import CrmConnection
from reconcile import mapping, meetings, queue, services
from reconcile.models import CrmWriteLog, DealMapping

PREVIEWS = 5  # the latest dry-run writes a card shows


def preview_of(row: CrmWriteLog, cached: DealMapping | None) -> WritePreview | None:
    """The write in plain values, and the exact body it would send (services.provider_payload:
    the contact from the write, else from the lookup cache, else a placeholder naming the email);
    None for a row whose curated content cannot make one."""
    contact, deal = str(row.payload.get("contact_id") or ""), str(row.payload.get("deal_id") or "")
    looked_up = bool(contact)
    if not contact and cached is not None:
        contact, deal, looked_up = cached.contact_id, cached.deal_id, True
    body = services.payload_or_none(row, cached)
    due = row.payload.get("due_at")
    if body is None:
        return None
    return WritePreview(
        id=row.pk,
        operation=row.operation,
        target=row.target,
        created_at=row.created_at,
        text=str(row.payload.get("text") or ""),
        due_at=datetime.fromisoformat(due) if due else None,
        contact_id=contact,
        deal_id=deal,
        looked_up=looked_up,
        payload=body,
        payload_json=json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False),
    )


class ReconcileLedger:
    def counts(self, conn: CrmConnection) -> WriteCounts:
        return services.counts_for(conn)

    def previews(self, conn: CrmConnection) -> list[WritePreview]:
        """The latest dry-run writes, newest first."""
        rows = list(
            CrmWriteLog.objects.filter(connection=conn, status=CrmWriteLog.Status.DRY_RUN).order_by(
                "-created_at", "-id"
            )[:PREVIEWS]
        )
        emails = [r.target for r in rows]
        cached = {m.email: m for m in DealMapping.objects.filter(connection=conn, email__in=emails)}
        previews = (preview_of(row, cached.get(row.target)) for row in rows)
        return [preview for preview in previews if preview is not None]

    def next_attempt_at(self, conn: CrmConnection, *, now: datetime | None = None) -> datetime | None:
        return queue.next_attempt_at(conn.pk, now=now or timezone.now())

    def queue_stats(self, *, now: datetime) -> dict[str, Any]:
        return queue.queue_stats(now=now)

    def records_changed(
        self,
        conn: CrmConnection,
        *,
        contact_ids: Iterable[str] = (),
        deal_ids: Iterable[str] = (),
        emails: Iterable[str] = (),
    ) -> int:
        return mapping.expire(conn, contact_ids=contact_ids, deal_ids=deal_ids, emails=emails)

    def account_switched(self, conn: CrmConnection) -> int:
        return mapping.forget_account(conn)

    def records_created(self, conn: CrmConnection, *, object: CrmObject) -> int:
        return mapping.expire_empty(conn, field="contact_id" if object == "contact" else "deal_id")

    def records_deleted(
        self, conn: CrmConnection, *, contact_ids: Iterable[str] = (), deal_ids: Iterable[str] = ()
    ) -> int:
        return mapping.forget(conn, contact_ids=contact_ids, deal_ids=deal_ids)

    def external_addresses(self, workspace_id: int, addresses: Iterable[str]) -> list[str]:
        return meetings.external_addresses(workspace_id, addresses)

    def plan_meetings(self, workspace_id: int, event_ids: list[int]) -> dict[int, str | None]:
        return meetings.plan_meetings(workspace_id, event_ids)
