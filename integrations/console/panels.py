"""Integrations' panels on the console's home page: connections in error, installs about to
expire, the webhook backlog and what is paused. One aggregate query each."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Min, Q
from django.utils.timesince import timesince

from conduit.admin_console import Figure, Panel, changelist, count_figure, register_panel
from integrations.models import CRM_CHOICES, CrmConnection, PendingInstall, SyncPause, WebhookEvent

EXPIRING_WITHIN = timedelta(hours=6)  # the admin's "Expires: within 6 hours" filter uses it too


@register_panel(order=20, perm="integrations.view_crmconnection")
def connections_in_error(now: datetime) -> Panel:
    rows = (
        CrmConnection.objects.filter(status=CrmConnection.Status.ERROR).values("crm").annotate(n=Count("id"))
    )
    counts = {r["crm"]: r["n"] for r in rows.order_by()}
    return Panel(
        title="Connections in error",
        figures=[
            count_figure(
                label,
                counts.get(crm, 0),
                changelist("integrations.crmconnection", status__exact="error", crm__exact=crm),
            )
            for crm, label in CRM_CHOICES
        ],
        hint="Lost grants wait for the customer's reconnect; the last error says which.",
    )


@register_panel(order=30, perm="integrations.view_pendinginstall")
def pending_installs(now: datetime) -> Panel:
    pending = PendingInstall.objects.filter(status=PendingInstall.Status.PENDING, expires_at__gt=now)
    found = pending.aggregate(
        waiting=Count("id"), soon=Count("id", filter=Q(expires_at__lte=now + EXPIRING_WITHIN))
    )
    return Panel(
        title="Pending installs",
        figures=[
            count_figure(
                "expire within 6 hours",
                found["soon"],
                changelist("integrations.pendinginstall", expires="6h"),
                tone="warn",
            ),
            count_figure(
                "waiting to be claimed",
                found["waiting"],
                changelist("integrations.pendinginstall", expires="open"),
                tone="",
            ),
        ],
        hint="Marketplace installs nobody has claimed into a workspace yet.",
    )


@register_panel(order=40, perm="integrations.view_webhookevent")
def webhook_backlog(now: datetime) -> Panel:
    Status = WebhookEvent.Status
    found = WebhookEvent.objects.filter(status__in=[Status.RECEIVED, Status.FAILED]).aggregate(
        received=Count("id", filter=Q(status=Status.RECEIVED)),
        failed=Count("id", filter=Q(status=Status.FAILED)),
        oldest=Min("received_at", filter=Q(status=Status.RECEIVED)),
    )
    oldest = found["oldest"]
    return Panel(
        title="Webhook backlog",
        figures=[
            count_figure(
                "received, not processed yet",
                found["received"],
                changelist("integrations.webhookevent", status__exact=Status.RECEIVED),
                tone="warn",
                note=f"oldest {timesince(oldest, now, depth=1)} ago" if oldest and oldest < now else "",
            ),
            count_figure(
                "failed",
                found["failed"],
                changelist("integrations.webhookevent", status__exact=Status.FAILED),
            ),
        ],
    )


@register_panel(order=50, perm="integrations.view_syncpause")
def paused_scopes(now: datetime) -> Panel:
    rows = SyncPause.objects.values("scope").annotate(n=Count("id")).order_by()
    counts = {r["scope"]: r["n"] for r in rows}
    return Panel(
        title="Paused sync",
        figures=[
            Figure(
                label,
                str(counts[scope]),
                changelist("integrations.syncpause", scope__exact=scope),
                tone="warn",
            )
            for scope, label in SyncPause.Scope.choices
            if counts.get(scope)
        ],
        hint="Writes in a paused scope stay queued; delete the pause to resume.",
        empty="Nothing is paused.",
    )
