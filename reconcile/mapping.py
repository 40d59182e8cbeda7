"""Which CRM contact a participant is, and its open deal / opportunity: a per-connection cache
(crm_deal_mappings) in front of the provider's lookups. Operator overrides are never replaced."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from django.conf import settings
from django.utils import timezone

from conduit.tenancy import system_scope
from integrations.models import CrmConnection
from integrations.providers import get_provider
from integrations.providers.base import Account
from integrations.tokens import call_with_token
from reconcile.models import DealMapping


def is_fresh(mapping: DealMapping, now: datetime) -> bool:
    if mapping.source == DealMapping.Source.OPERATOR:
        return True
    return now - mapping.refreshed_at < timedelta(hours=settings.CONDUIT_DEAL_MAPPING_TTL_HOURS)


def cached(conn: CrmConnection, email: str) -> DealMapping | None:
    with system_scope():
        return DealMapping.objects.filter(connection=conn, email=email.lower()).first()


def look_up(conn: CrmConnection, email: str) -> tuple[str, str]:
    """(contact id, deal id) from the CRM; blanks when there is none."""
    provider = get_provider(conn.crm)

    def lookup(account: Account) -> tuple[str, str]:
        contact = provider.find_contact(account, email)
        if not contact:
            return "", ""
        return contact, provider.find_open_deal(account, contact) or ""

    return call_with_token(conn.pk, lookup)


def resolve(conn: CrmConnection, email: str, *, now: datetime | None = None) -> DealMapping:
    """The cached mapping when fresh, else a lookup at the CRM stored for next time.
    Provider errors propagate (the caller decides what they mean for the write)."""
    now = now or timezone.now()
    email = email.lower()
    mapping = cached(conn, email)
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
