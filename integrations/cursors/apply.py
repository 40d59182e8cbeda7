"""What a pulled change does to Conduit: cached contact -> deal lookups that name a changed
record are looked up again before their next write (through integrations.ledger)."""

from __future__ import annotations

from integrations.ledger import ledger
from integrations.models import CrmConnection
from integrations.providers.changes import Changed


def apply_changes(conn: CrmConnection, object: str, records: list[Changed]) -> int:
    """Mark the lookups the changed records touch stale; returns the lookups changed.

    A changed contact: lookups of its id or its (possibly new) email. A changed deal: lookups
    of its id, and every lookup that found no deal, since a new deal may answer it."""
    if not records:
        return 0
    if object == "contact":
        return ledger().records_changed(
            conn, contact_ids=[r.id for r in records], emails=[r.email for r in records]
        )
    return ledger().records_changed(conn, deal_ids=[r.id for r in records]) + ledger().records_created(
        conn, object="deal"
    )
