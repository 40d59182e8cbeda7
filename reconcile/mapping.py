"""Which CRM contact a participant is, and its open deal / opportunity: a per-connection cache
(crm_deal_mappings) in front of the provider's lookups. Operator overrides are never replaced."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from django.conf import settings
from django.db.models import JSONField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import JSONObject, Lower
from django.utils import timezone

from conduit.prepared import Prepared
from conduit.tenancy import system_scope
from integrations.connections.tokens import NotConnected, call_with_token
from integrations.models import CrmConnection
from integrations.providers import get_provider
from integrations.providers.base import Account
from integrations.providers.errors import ProviderError
from reconcile.models import CrmWriteLog, DealMapping

log = logging.getLogger("conduit.reconcile")


def is_fresh(mapping: DealMapping, now: datetime) -> bool:
    if mapping.source == DealMapping.Source.OPERATOR:
        return True
    return now - mapping.refreshed_at < timedelta(hours=settings.CONDUIT_DEAL_MAPPING_TTL_HOURS)


def _mapping(connection_id: int, email: str) -> QuerySet[DealMapping]:
    return DealMapping.objects.filter(connection_id=connection_id, email=email).order_by("pk")[:1]


_MAPPING = Prepared(_mapping, connection_id=int, email=str)


def cached(conn: CrmConnection, email: str) -> DealMapping | None:
    with system_scope():
        return _MAPPING.first(connection_id=conn.pk, email=email.lower())


def look_up(conn: CrmConnection, email: str) -> tuple[str, str]:
    """(contact id, deal id) from the CRM; blanks when there is none."""
    provider = get_provider(conn.crm)

    def lookup(account: Account) -> tuple[str, str]:
        contact = provider.find_contact(account, email)
        if not contact:
            return "", ""
        return contact, provider.find_open_deal(account, contact) or ""

    return call_with_token(conn.pk, lookup)


MAPPING_COLUMNS = ("id", "contact_id", "deal_id", "source", "refreshed_at")


def cached_with(write: str = "") -> Subquery:
    """cached() as an expression of an outer query on writes (`write` is the path to the write,
    "" from CrmWriteLog itself): the write's cached mapping as one JSON object, or NULL, so
    delivery reads it with the write instead of in a transaction of its own."""
    rows = DealMapping.objects.filter(
        connection_id=OuterRef(f"{write}connection_id"), email=Lower(OuterRef(f"{write}target"))
    ).order_by("pk")
    return Subquery(
        rows.values(data=JSONObject(**{c: c for c in MAPPING_COLUMNS}))[:1], output_field=JSONField()
    )


def from_columns(conn: CrmConnection, email: str, data: dict[str, Any] | None) -> DealMapping | None:
    """The DealMapping that cached_with() read, None when there was none."""
    if not data:
        return None
    refreshed = datetime.fromisoformat(str(data["refreshed_at"]))
    mapping = DealMapping(
        id=data["id"],
        workspace_id=cast(int, conn.workspace_id),
        connection=conn,
        email=email.lower(),
        contact_id=data["contact_id"],
        deal_id=data["deal_id"],
        source=data["source"],
        refreshed_at=refreshed if refreshed.tzinfo else refreshed.replace(tzinfo=UTC),
    )
    mapping._state.adding = False
    return mapping


def resolve(
    conn: CrmConnection, email: str, *, now: datetime | None = None, known: DealMapping | None = None
) -> DealMapping:
    """The cached mapping (`known` when the caller read it already) when fresh, else a lookup
    at the CRM stored for next time. Provider errors propagate (the caller decides what they
    mean for the write)."""
    now = now or timezone.now()
    email = email.lower()
    mapping = known if known is not None else cached(conn, email)
    if mapping is not None and is_fresh(mapping, now):
        return mapping
    contact_id, deal_id = look_up(conn, email)
    with system_scope():
        mapping, _ = DealMapping.objects.update_or_create(
            connection=conn,
            email=email,
            defaults={
                "workspace_id": cast(int, conn.workspace_id),
                "contact_id": contact_id,
                "deal_id": deal_id,
                "source": DealMapping.Source.PROVIDER,
                "refreshed_at": now,
            },
        )
    return mapping


# A mapping marked stale is looked up again before the next write that needs it.
STALE = datetime(2000, 1, 1, tzinfo=UTC)


def _provider_rows(conn: CrmConnection) -> QuerySet[DealMapping]:
    return DealMapping.objects.filter(connection=conn, source=DealMapping.Source.PROVIDER)


def expire(
    conn: CrmConnection,
    *,
    contact_ids: Iterable[str] = (),
    deal_ids: Iterable[str] = (),
    emails: Iterable[str] = (),
) -> int:
    """A contact or deal changed at the CRM (webhook or incremental pull): every cached lookup
    that names it is looked up again before its next write. Operator overrides stay. One UPDATE."""
    match = Q(pk__in=[])
    if contact_ids := [c for c in contact_ids if c]:
        match |= Q(contact_id__in=contact_ids)
    if deal_ids := [d for d in deal_ids if d]:
        match |= Q(deal_id__in=deal_ids)
    if emails := [e.lower() for e in emails if e]:
        match |= Q(email__in=emails)
    with system_scope():
        return _provider_rows(conn).filter(match).update(refreshed_at=STALE)


def expire_empty(conn: CrmConnection, *, field: Literal["contact_id", "deal_id"]) -> int:
    """A contact or deal was created at the CRM: every cached lookup that found none (blank
    `field`) may now find it, so it is looked up again. Operator overrides stay. One UPDATE."""
    with system_scope():
        return _provider_rows(conn).filter(**{field: ""}).update(refreshed_at=STALE)


def forget(conn: CrmConnection, *, contact_ids: Iterable[str] = (), deal_ids: Iterable[str] = ()) -> int:
    """Contacts or deals deleted at the CRM: their lookups are dropped (a deleted deal leaves the
    contact, with no deal, to be looked up again). Operator overrides stay. Returns rows changed."""
    changed = 0
    with system_scope():
        if contact_ids := [c for c in contact_ids if c]:
            changed += _provider_rows(conn).filter(contact_id__in=contact_ids).delete()[0]
        if deal_ids := [d for d in deal_ids if d]:
            changed += (
                _provider_rows(conn).filter(deal_id__in=deal_ids).update(deal_id="", refreshed_at=STALE)
            )
    return changed


def forget_account(conn: CrmConnection) -> int:
    """The connection switched to another CRM account: none of its lookups, operator overrides
    included, names a record there. Returns rows dropped."""
    with system_scope():
        return int(DealMapping.objects.filter(connection=conn).delete()[0])


def store(conn: CrmConnection, email: str, contact_id: str, deal_id: str, *, now: datetime) -> None:
    """Record what the CRM just said about one email (an incremental pull that read the contact)."""
    email = email.lower()
    with system_scope():
        if DealMapping.objects.filter(
            connection=conn, email=email, source=DealMapping.Source.OPERATOR
        ).exists():
            return
        DealMapping.objects.update_or_create(
            connection=conn,
            email=email,
            defaults={
                "workspace_id": cast(int, conn.workspace_id),
                "contact_id": contact_id,
                "deal_id": deal_id,
                "source": DealMapping.Source.PROVIDER,
                "refreshed_at": now,
            },
        )


def resolve_targets(write_ids: list[int]) -> int:
    """Look up (reads only) the contacts of dry-run writes; returns how many were resolved.
    A lookup that fails leaves the write showing its email until the next lookup."""
    with system_scope():
        rows = list(
            CrmWriteLog.objects.select_related("connection").filter(
                pk__in=write_ids, status=CrmWriteLog.Status.DRY_RUN
            )
        )
    resolved = 0
    for row in rows:
        if row.connection.status != CrmConnection.Status.CONNECTED:
            continue
        try:
            resolve(row.connection, row.target)
        except (ProviderError, NotConnected) as exc:
            log.info(
                "contact lookup for a dry-run write failed",
                extra={
                    "category": "reconcile",
                    "error_code": exc.code if isinstance(exc, ProviderError) else exc.error_code,
                },
            )
            continue
        resolved += 1
    return resolved
