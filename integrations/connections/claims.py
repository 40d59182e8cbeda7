"""Install-first (Plan 007): pending installs, claiming one into a workspace (by an owner or
admin of it, or by an operator for a customer who cannot), expiring the rest.

A repeated install of the same external account updates the one pending row (its metadata,
expiry and grant), so whoever claims it gets the latest grant: ownership stays deterministic.
An expired install never keeps tokens.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from conduit.audit import record_audit
from conduit.models import Membership, Workspace
from conduit.secrets_scan import looks_secret_value
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from integrations.connections.lifecycle import (
    apply_grant,
    do_disconnect,
    live_connection,
    record_connected,
    revoke_quietly,
)
from integrations.connections.tokens import clear_grant
from integrations.models import CrmConnection, OAuthState, PendingInstall
from integrations.providers.base import ExternalAccount, TokenSet

log = logging.getLogger("conduit.integrations")
EXPIRE_BATCH = 100
OPERATOR_REASON_MAX = 200
OPERATOR_REPLACE_HINT = (
    "An operator does not replace a live connection: an owner or admin of the workspace "
    "disconnects it first, or claims the install and chooses to replace it."
)


class ClaimRefused(ConduitError):
    error_code = "claim_refused"


class InstallNotFound(ClaimRefused):
    error_code = "install_not_found"


class InstallExpired(ClaimRefused):
    error_code = "install_expired"


class InstallAlreadyClaimed(ClaimRefused):
    error_code = "install_already_claimed"


class NotWorkspaceAdmin(ClaimRefused):
    error_code = "not_workspace_admin"


class WorkspaceAlreadyConnected(ClaimRefused):
    error_code = "workspace_already_connected"


class NotOperator(ClaimRefused):
    error_code = "not_operator"


class InvalidClaimReason(ClaimRefused):
    error_code = "invalid_reason"


def install_metadata(account: ExternalAccount, tokens: TokenSet, environment: str) -> dict[str, Any]:
    details = account.details
    return {
        "account_name": details.get("hub_domain")
        or details.get("org_name")
        or details.get("username")
        or details.get("instance_url")
        or "",
        "installing_user_email": account.user_email,
        "scopes": list(account.scopes or tokens.scopes),
        "environment": environment,
    }


def upsert_pending_install(
    crm: str, tokens: TokenSet, account: ExternalAccount, *, environment: str, now: datetime
) -> PendingInstall:
    """Create the pending install and its pending_claim connection, or refresh the pending one."""
    expires_at = now + timedelta(hours=settings.CONDUIT_PENDING_INSTALL_TTL_HOURS)
    metadata = install_metadata(account, tokens, environment)
    pending = (
        PendingInstall.objects.select_for_update()
        .filter(crm=crm, external_account_key=account.key, status=PendingInstall.Status.PENDING)
        .first()
    )
    created = pending is None
    if pending is None:
        try:
            with transaction.atomic():
                pending = PendingInstall.objects.create(
                    crm=crm, external_account_key=account.key, expires_at=expires_at, metadata=metadata
                )
        except IntegrityError:  # a concurrent install of the same account won the insert
            created = False
            pending = PendingInstall.objects.select_for_update().get(
                crm=crm, external_account_key=account.key, status=PendingInstall.Status.PENDING
            )
    conn = pending.connection or CrmConnection(crm=crm, workspace=None)
    apply_grant(
        conn, tokens, account, environment=environment, status=CrmConnection.Status.PENDING_CLAIM, now=now
    )
    pending.connection = conn
    pending.metadata = metadata
    pending.expires_at = expires_at
    pending.save()
    record_audit(
        "install_pending_created" if created else "install_pending_updated",
        actor="system:oauth_callback",
        target=pending,
        payload={"crm": crm, "external_account_key": account.key, "expires_at": expires_at.isoformat()},
    )
    return pending


def find_install(install_id: str, crm: str) -> PendingInstall:
    """The pending install for a claim link (caller is in system scope)."""
    pending = (
        PendingInstall.objects.select_for_update(of=("self",))
        .select_related("connection", "claimed_workspace")
        .filter(install_id=install_id, crm=crm)
        .first()
    )
    if pending is None:
        raise InstallNotFound("No install matches this link. Install Conduit again from the marketplace.")
    return pending


def check_claimable(pending: PendingInstall, now: datetime) -> None:
    label = pending.get_crm_display()
    if pending.status == PendingInstall.Status.CLAIMED:
        when = pending.claimed_at.strftime("%Y-%m-%d %H:%M UTC") if pending.claimed_at else "earlier"
        raise InstallAlreadyClaimed(f"This {label} install was already claimed ({when}).")
    if pending.status == PendingInstall.Status.EXPIRED or pending.expires_at <= now:
        raise InstallExpired(
            f"This {label} install expired at {pending.expires_at:%Y-%m-%d %H:%M} UTC. "
            f"Install Conduit again from the {label} marketplace to get a new link."
        )
    if pending.connection is None or not pending.connection.access_token:
        raise InstallExpired(f"This {label} install no longer holds a grant. Install Conduit again.")


def admin_workspaces(user: User) -> list[Workspace]:
    """Workspaces where the user is an owner or admin: where they may claim an install."""
    with system_scope():
        return [
            m.workspace
            for m in Membership.objects.select_related("workspace")
            .filter(user=user, role__in=[Membership.Role.OWNER, Membership.Role.ADMIN])
            .order_by("workspace__name")
        ]


def do_claim_install(
    install_id: str,
    crm: str,
    workspace_id: int,
    *,
    actor: User,
    replace_existing: bool = False,
    now: datetime | None = None,
) -> CrmConnection:
    """Bind a pending install and its connection to a workspace the actor administers."""
    now = now or timezone.now()
    with system_scope():
        pending = find_install(install_id, crm)
        check_claimable(pending, now)
        workspace = next((w for w in admin_workspaces(actor) if w.pk == workspace_id), None)
        if workspace is None:
            raise NotWorkspaceAdmin(
                "You can claim an install only into a workspace where you are an owner or admin."
            )
        return bind_install(pending, workspace, actor=actor, replace_existing=replace_existing, now=now)


def do_operator_claim(
    pending: PendingInstall,
    workspace: Workspace,
    *,
    operator: User,
    reason: str,
    now: datetime | None = None,
) -> CrmConnection:
    """Claim an install into a named workspace for a customer who cannot: the customer claim's
    checks and writes, less the membership check (the operator is staff, the reason is audited).
    An operator never replaces a live connection: the workspace's owner or admin disconnects it."""
    now = now or timezone.now()
    if not (operator.is_active and operator.is_staff):
        raise NotOperator("Only Conduit operators (staff) can claim an install for a customer.")
    reason = operator_reason(reason)
    with system_scope():
        locked = find_install(pending.install_id, pending.crm)
        check_claimable(locked, now)
        return bind_install(
            locked,
            workspace,
            actor=operator,
            replace_existing=False,
            now=now,
            audit={"by_operator": True, "reason": reason},
            replace_hint=OPERATOR_REPLACE_HINT,
        )


def operator_reason(reason: str) -> str:
    """The reason an operator gives, as stored in the audit row: one bounded line, no secret."""
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidClaimReason("Give the reason for claiming on the customer's behalf (e.g. the ticket).")
    if len(reason) > OPERATOR_REASON_MAX:
        raise InvalidClaimReason(f"Keep the reason to {OPERATOR_REASON_MAX} characters.")
    if "\x00" in reason or looks_secret_value(reason):
        raise InvalidClaimReason("The reason looks like it holds a secret; describe the request without it.")
    return reason


def bind_install(
    pending: PendingInstall,
    workspace: Workspace,
    *,
    actor: User,
    replace_existing: bool,
    now: datetime,
    audit: dict[str, Any] | None = None,
    replace_hint: str = "Choose to replace that connection, or pick another workspace.",
) -> CrmConnection:
    """Bind a locked, claimable install and its connection to the workspace; `install_claimed`,
    and its health row (ok / connected), as a connect from settings records it. The caller holds
    system scope and has checked who may claim into this workspace."""
    crm = pending.crm
    existing = live_connection(workspace, crm)
    if existing is not None and not replace_existing:
        raise WorkspaceAlreadyConnected(
            f"{workspace.name} is already connected to {pending.get_crm_display()} "
            f"{existing.account_label}. {replace_hint}"
        )
    if existing is not None:
        do_disconnect(existing, actor=actor, reason="replaced_by_install")
    conn = pending.connection
    assert conn is not None  # check_claimable
    conn.workspace = workspace
    conn.status = CrmConnection.Status.CONNECTED
    conn.connected_at = now
    conn.save(update_fields=["workspace", "status", "connected_at", "updated_at"])
    pending.status = PendingInstall.Status.CLAIMED
    pending.claimed_workspace = workspace
    pending.claimed_by = actor
    pending.claimed_at = now
    pending.save(update_fields=["status", "claimed_workspace", "claimed_by", "claimed_at", "updated_at"])
    record_audit(
        "install_claimed",
        actor=actor,
        workspace=workspace,
        target=pending,
        payload={
            "crm": crm,
            "external_account_key": pending.external_account_key,
            "connection_id": conn.pk,
            "replaced_connection_id": existing.pk if existing else None,
            **(audit or {}),
        },
    )
    record_connected(conn, now=now, actor=actor)  # as a connect from settings: "Healthy" at once
    return conn


def expire_pending_installs(*, now: datetime | None = None) -> int:
    """Expire every stale pending install, a short transaction per batch; prune used-up states."""
    now = now or timezone.now()
    total = 0
    while batch := expire_batch(now=now):
        total += batch
    prune_oauth_states(now)
    return total


def prune_oauth_states(now: datetime) -> int:
    """States are single-use and short-lived: drop those a day past their expiry."""
    with system_scope():
        deleted, _ = OAuthState.objects.filter(expires_at__lt=now - timedelta(days=1)).delete()
    return deleted


def expire_batch(*, now: datetime, limit: int = EXPIRE_BATCH) -> int:
    """Expire up to `limit` stale pending installs: revoke and clear their grants, audit each."""
    with system_scope():
        stale = list(
            PendingInstall.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("connection")
            .filter(status=PendingInstall.Status.PENDING, expires_at__lte=now)
            .order_by("expires_at")[:limit]
        )
        for pending in stale:
            conn = pending.connection
            revoked = False
            if conn is not None:
                token = conn.refresh_token or conn.access_token
                revoked = revoke_quietly(conn.crm, token, environment=conn.environment, conn=conn)
                clear_grant(conn)
                conn.status = CrmConnection.Status.DISCONNECTED
                conn.last_error = "install_expired"
                conn.save()
            pending.status = PendingInstall.Status.EXPIRED
            pending.save(update_fields=["status", "updated_at"])
            record_audit(
                "install_expired",
                actor="system:expire_pending_installs",
                target=pending,
                payload={
                    "crm": pending.crm,
                    "external_account_key": pending.external_account_key,
                    "revoked": revoked,
                },
            )
    if stale:
        log.info("expired %d pending installs", len(stale), extra={"category": "oauth"})
    return len(stale)
