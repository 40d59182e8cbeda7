"""Per-workspace on / off switch of a CRM integration (workspace_integrations).

Runbook 001 §1 turns a tenant's integration off while it causes cascading failures:
`PATCH /api/v1/admin/tenants/{tenant_id}/integrations/{provider} {"enabled": false}`. While it is
off, that workspace's writes to that CRM stay queued (no attempt is counted), its connection is
not health-checked and its sync cursors are not pulled. Turning it on resumes all three.
This differs from a pause (integrations/connections/pauses.py), which operators use as a kill switch; the
sync-status API shows the two as sync_enabled and kill_switch."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from conduit.audit import actor_label, record_audit
from conduit.models import Workspace
from conduit.tenancy import system_scope
from integrations.models import CrmConnection, IntegrationSetting

Actor = AbstractBaseUser | str

# For SQL that joins crm_write_log w to crm_connections c.
DISABLED_SQL = """NOT EXISTS (
  SELECT 1 FROM workspace_integrations i
  WHERE i.workspace_id = c.workspace_id AND i.provider = c.crm AND NOT i.enabled)"""


def disabled_pairs() -> frozenset[tuple[int, str]]:
    """(workspace id, provider) of every integration that is switched off."""
    with system_scope():
        return frozenset(
            IntegrationSetting.objects.filter(enabled=False).values_list("workspace_id", "provider")
        )


def is_enabled(workspace_id: int | None, provider: str) -> bool:
    if workspace_id is None:
        return True
    with system_scope():
        return not IntegrationSetting.objects.filter(
            workspace_id=workspace_id, provider=provider, enabled=False
        ).exists()


def switched_off(connection: str) -> Exists:
    """The negation of is_enabled, as an expression of the outer query, for the connection at the
    path `connection` ("connection" from a write): delivery reads it with the write itself."""
    ref = f"{connection}__"
    return Exists(
        IntegrationSetting.objects.filter(
            workspace_id=OuterRef(f"{ref}workspace_id"), provider=OuterRef(f"{ref}crm"), enabled=False
        )
    )


def enabled_connections() -> Q:
    """A filter on CrmConnection: connections whose integration is not switched off."""
    off = IntegrationSetting.objects.filter(
        workspace_id=OuterRef("workspace_id"), provider=OuterRef("crm"), enabled=False
    )
    return ~Q(Exists(off))


def do_set_integration_enabled(
    workspace: Workspace, provider: str, enabled: bool, *, actor: Actor, reason: str = ""
) -> tuple[IntegrationSetting, bool]:
    """Switch one workspace's integration on or off; returns (row, changed). A change is audited
    as integration_disabled or integration_enabled; setting what is already set changes nothing."""
    with system_scope():
        row, _ = IntegrationSetting.objects.select_for_update().get_or_create(
            workspace=workspace, provider=provider
        )
        if row.enabled == enabled:
            return row, False
        row.enabled, row.reason = enabled, reason[:500]
        row.changed_by, row.changed_at = actor_label(actor), timezone.now()
        row.save()
        connection = (
            CrmConnection.objects.filter(workspace=workspace, crm=provider)
            .exclude(status=CrmConnection.Status.DISCONNECTED)
            .first()
        )
        record_audit(
            "integration_enabled" if enabled else "integration_disabled",
            actor=actor,
            workspace=workspace,
            target=row,
            payload={
                "crm": provider,
                "enabled": enabled,
                "reason": row.reason,
                "connection_id": connection.pk if connection else None,
            },
        )
    return row, True
