"""The write ledger's panel on the console's home page: permanent failures per CRM."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count

from conduit.admin_console import Panel, changelist, count_figure, register_panel
from integrations.models import CRM_CHOICES
from reconcile.models import CrmWriteLog


@register_panel(order=10, perm="reconcile.view_crmwritelog")
def permanent_failures(now: datetime) -> Panel:
    # the same rows as the Integrations card's "Permanent failures" (services.counts_for)
    rows = (
        CrmWriteLog.objects.filter(status=CrmWriteLog.Status.FAILED, permanent_failure=True)
        .values("provider")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = {r["provider"]: r["n"] for r in rows}
    return Panel(
        title="Permanent failures",
        figures=[
            count_figure(
                label,
                counts.get(crm, 0),
                changelist(
                    "reconcile.crmwritelog",
                    status__exact="failed",
                    permanent_failure__exact=1,
                    provider__exact=crm,
                ),
            )
            for crm, label in CRM_CHOICES
        ],
        hint="Writes handed to a human: Retry now or Skip, on the list or on each write's page.",
    )
