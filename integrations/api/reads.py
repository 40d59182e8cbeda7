"""Plain reads behind the operations API (runbooks 001 and 003): a workspace's integration
status, its sync logs, the per-provider health matrix and an operator's sync-status overview.
Every function opens system scope and filters by workspace itself, so the same read serves a
workspace token and an operator."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet

from conduit.models import Workspace
from conduit.tenancy import system_scope
from integrations.connections.pauses import ActivePauses, active_pauses
from integrations.connections.tenant_switch import disabled_pairs
from integrations.models import CRM_CHOICES, ConnectionHealth, CrmConnection, SyncLog, WebhookEvent

PROVIDERS = [name for name, _ in CRM_CHOICES]


def current_connection(workspace: Workspace, provider: str) -> CrmConnection | None:
    """The workspace's live connection to this CRM, else its latest disconnected one."""
    rows = CrmConnection.objects.filter(workspace=workspace, crm=provider)
    live = rows.exclude(status=CrmConnection.Status.DISCONNECTED).first()
    return live or rows.order_by("-updated_at").first()


def kill_switch(pauses: ActivePauses, conn: CrmConnection | None, workspace: Workspace, provider: str) -> Any:
    """The pause in force over this workspace's CRM, described, else None."""
    pause = pauses.everything or pauses.providers.get(provider) or pauses.workspaces.get(workspace.pk)
    if pause is None and conn is not None:
        pause = pauses.connections.get(conn.pk)
    if pause is None:
        return None
    return {"scope": pause.scope, "reason": pause.reason, "since": pause.paused_at, "by": pause.actor}


def integration_status(workspace: Workspace, provider: str) -> dict[str, Any]:
    pauses, disabled = active_pauses(), disabled_pairs()
    with system_scope():
        conn = current_connection(workspace, provider)
        health = ConnectionHealth.objects.filter(workspace=workspace, crm=provider).first()
    return {
        "provider": provider,
        "status": conn.runbook_status if conn else "not_connected",
        "connection_status": conn.status if conn else "not_connected",
        "connection_id": conn.pk if conn else None,
        "external_account_key": conn.external_account_key if conn else "",
        "last_error": conn.last_error if conn else "",
        "dry_run": conn.dry_run if conn else True,
        "connected_at": conn.connected_at if conn else None,
        "token_expires_at": conn.token_expires_at if conn else None,
        "last_refreshed_at": conn.last_refreshed_at if conn else None,
        "sync_enabled": (workspace.pk, provider) not in disabled,
        "kill_switch": kill_switch(pauses, conn, workspace, provider),
        "health": {
            "status": health.status,
            "reason": health.reason,
            "last_checked_at": health.last_checked_at,
            "last_ok_at": health.last_ok_at,
            "consecutive_failures": health.consecutive_failures,
        }
        if health
        else None,
    }


@dataclass(frozen=True)
class SyncLogFilter:
    provider: str | None = None
    workspace: Workspace | None = None
    status: str | None = None
    operation: str | None = None
    error_code: str | None = None
    since: datetime | None = None


def sync_logs(filters: SyncLogFilter) -> QuerySet[SyncLog]:
    """Newest first. The caller evaluates it inside system_scope()."""
    query = Q()
    for field, value in (
        ("provider", filters.provider),
        ("workspace", filters.workspace),
        ("status", filters.status),
        ("operation", filters.operation),
        ("error_code", filters.error_code),
    ):
        if value is not None:
            query &= Q(**{field: value})
    if filters.since is not None:
        query &= Q(created_at__gte=filters.since)
    return SyncLog.objects.filter(query).order_by("-created_at", "-id")


def health_verdict(counts: dict[str, int]) -> str:
    """ok: every checked connection passed; down: none did; degraded: some did not."""
    checked = sum(counts.values())
    if checked == 0 or counts.get("ok", 0) == checked:
        return "ok"
    return "down" if counts.get("ok", 0) == 0 else "degraded"


def health_matrix(provider: str | None = None) -> list[dict[str, Any]]:
    """Per provider: ok / degraded / down, from the latest health verdict of each live connection,
    with counts by health status, connections not yet checked, and the pause in force."""
    pauses = active_pauses()
    providers = [provider] if provider else PROVIDERS
    with system_scope():
        live = CrmConnection.objects.filter(crm__in=providers, workspace__isnull=False).exclude(
            status=CrmConnection.Status.DISCONNECTED
        )
        connections = dict(live.values("crm").annotate(n=Count("id")).values_list("crm", "n"))
        rows = (
            ConnectionHealth.objects.filter(crm__in=providers, connection__in=live)
            .values("crm", "status")
            .annotate(n=Count("id"))
            .order_by()
        )
        by_provider: dict[str, dict[str, int]] = {p: {} for p in providers}
        for row in rows:
            by_provider[row["crm"]][row["status"]] = row["n"]
    matrix = []
    for name in providers:
        counts = {status: by_provider[name].get(status, 0) for status in ConnectionHealth.Status.values}
        paused = pauses.everything or pauses.providers.get(name)
        matrix.append(
            {
                "provider": name,
                "status": health_verdict(counts),
                "connections": connections.get(name, 0),
                "unchecked": max(connections.get(name, 0) - sum(counts.values()), 0),
                "counts": counts,
                "paused": paused is not None,
            }
        )
    return matrix


def sync_status(workspace: Workspace, *, webhook_limit: int = 50) -> dict[str, Any]:
    """Runbook 003's sync-status: each connection with sync_enabled and kill_switch, and the
    workspace's latest webhook events."""
    pauses, disabled = active_pauses(), disabled_pairs()
    with system_scope():
        conns = list(
            CrmConnection.objects.filter(workspace=workspace)
            .exclude(status=CrmConnection.Status.DISCONNECTED)
            .order_by("crm")
        )
        events = list(
            WebhookEvent.objects.filter(workspace=workspace)
            .order_by("-received_at", "-id")
            .values(
                "provider", "event_id", "event_type", "status", "attempts", "received_at", "processed_at"
            )[:webhook_limit]
        )
    return {
        "workspace_id": workspace.pk,
        "connections": [
            {
                "provider": c.crm,
                "connection_id": c.pk,
                "status": c.status,
                "dry_run": c.dry_run,
                "sync_enabled": (workspace.pk, c.crm) not in disabled,
                "kill_switch": switch is not None,
                "kill_switch_reason": (switch or {}).get("reason", ""),
            }
            for c in conns
            for switch in [kill_switch(pauses, c, workspace, c.crm)]
        ],
        "webhook_events": events,
    }
