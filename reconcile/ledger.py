"""Reconcile's side of integrations.ledger: the write counts, previews and queue numbers that
integrations shows, and what a changed CRM record does to the cached lookups (mapping.py).
Registered in ReconcileConfig.ready()."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from integrations.ledger import CrmObject, WriteCounts
from integrations.models import CrmConnection
from reconcile import mapping, queue, services


class ReconcileLedger:
    def counts(self, conn: CrmConnection) -> WriteCounts:
        return services.counts_for(conn)

    def previews(self, conn: CrmConnection) -> list[dict[str, Any]]:
        return services.preview_writes(conn)

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

    def records_created(self, conn: CrmConnection, *, object: CrmObject) -> int:
        return mapping.expire_empty(conn, field="contact_id" if object == "contact" else "deal_id")

    def records_deleted(
        self, conn: CrmConnection, *, contact_ids: Iterable[str] = (), deal_ids: Iterable[str] = ()
    ) -> int:
        return mapping.forget(conn, contact_ids=contact_ids, deal_ids=deal_ids)
