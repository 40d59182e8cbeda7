"""State changes of crm_connections: connect (or reconnect) with a fresh grant, disconnect; and
whether another workspace connects the same CRM account.

Every change is audited in the caller's transaction. Callers hold the row lock.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Exists, OuterRef
from django.utils import timezone

from conduit.audit import record_audit
from conduit.models import Workspace
from integrations.connections import health_rows as health_state
from integrations.connections.tokens import clear_grant, context_of, store_tokens
from integrations.ledger import ledger
from integrations.models import CrmConnection
from integrations.providers import get_provider
from integrations.providers.base import ExternalAccount, TokenSet
from integrations.providers.errors import ProviderError
from integrations.providers.synclog import NO_CONTEXT

log = logging.getLogger("conduit.integrations")
Actor = AbstractBaseUser | str | None
LIVE_STATUSES = (CrmConnection.Status.CONNECTED, CrmConnection.Status.ERROR)


def account_details(account: ExternalAccount, environment: str) -> dict[str, Any]:
    details = {**account.details, "environment": environment}
    if account.user_email:
        details["authorized_by"] = account.user_email
    return details


def live_connection(workspace: Workspace | int, crm: str) -> CrmConnection | None:
    """The workspace's non-disconnected connection to this CRM, locked."""
    return (
        CrmConnection.objects.select_for_update()
        .filter(workspace=workspace, crm=crm)
        .exclude(status=CrmConnection.Status.DISCONNECTED)
        .first()
    )


def apply_grant(
    conn: CrmConnection,
    tokens: TokenSet,
    account: ExternalAccount,
    *,
    environment: str,
    status: str,
    now: datetime,
) -> None:
    conn.external_account_key = account.key
    conn.external_account_json = account_details(account, environment)
    conn.granted_scopes = list(account.scopes or tokens.scopes)
    conn.refresh_token = ""
    store_tokens(conn, tokens, now)
    conn.status = status
    conn.last_error = ""
    if status == CrmConnection.Status.CONNECTED:
        conn.connected_at = now
    conn.save()


def do_connect(
    workspace: Workspace,
    crm: str,
    tokens: TokenSet,
    account: ExternalAccount,
    *,
    environment: str,
    actor: Actor,
    now: datetime,
    existing: CrmConnection | None,
) -> CrmConnection:
    """Connect, or reconnect the workspace's existing connection in place (same row)."""
    conn = existing or CrmConnection(workspace=workspace, crm=crm, dry_run=True)
    previous = (
        {"status": conn.status, "external_account_key": conn.external_account_key} if existing else None
    )
    apply_grant(
        conn, tokens, account, environment=environment, status=CrmConnection.Status.CONNECTED, now=now
    )
    payload: dict[str, Any] = {"crm": crm, "external_account_key": account.key, "environment": environment}
    if previous:
        payload["previous"] = previous
        if previous["external_account_key"] not in ("", account.key):
            # another account: the old one's contact and deal ids would name nothing, or the
            # wrong records, there
            payload["lookups_dropped"] = ledger().account_switched(conn)
    record_audit(
        "crm_reconnected" if existing else "crm_connected",
        actor=actor,
        workspace=workspace,
        target=conn,
        payload=payload,
    )
    record_connected(conn, now=now, actor=actor)
    return conn


def record_connected(conn: CrmConnection, *, now: datetime, actor: Actor) -> None:
    """The health verdict of a fresh connection (a connect, reconnect or claimed install): the
    grant has just passed identify(), an authenticated call, so that is a passing check."""
    health_state.record(conn, health_state.Verdict(health_state.Status.OK, "connected"), now=now, actor=actor)


def same_account_elsewhere() -> Exists:
    """True for a connection whose CRM account (crm + external account key) another workspace
    also holds a live (connected or error) connection to (an admin list filter)."""
    return Exists(
        CrmConnection.objects.filter(
            crm=OuterRef("crm"),
            external_account_key=OuterRef("external_account_key"),
            workspace__isnull=False,
            status__in=LIVE_STATUSES,
        )
        .exclude(external_account_key="")
        .exclude(workspace_id=OuterRef("workspace_id"))
    )


def workspaces_sharing_account(conn: CrmConnection) -> int:
    """How many other workspaces hold a live connection to the same CRM account: the same
    portal, org or instance written to from two workspaces (the caller holds system scope, which
    sees every workspace). Never names them: a customer learns only that there are some."""
    if not conn.external_account_key:
        return 0
    others = CrmConnection.objects.filter(
        crm=conn.crm,
        external_account_key=conn.external_account_key,
        workspace__isnull=False,
        status__in=LIVE_STATUSES,
    )
    if conn.workspace_id is not None:
        others = others.exclude(workspace_id=conn.workspace_id)
    return others.values("workspace_id").distinct().count()


def do_record_missing_scopes(
    workspace: Workspace,
    crm: str,
    account: ExternalAccount,
    missing: list[str],
    *,
    environment: str,
    actor: Actor,
    existing: CrmConnection | None,
) -> CrmConnection:
    """A grant without the scopes Conduit needs is not kept: error, missing_scope, no tokens."""
    conn = existing or CrmConnection(workspace=workspace, crm=crm, dry_run=True)
    conn.external_account_key = account.key
    conn.external_account_json = {**account_details(account, environment), "missing_scopes": missing}
    conn.granted_scopes = list(account.scopes)
    clear_grant(conn)
    conn.status = CrmConnection.Status.ERROR
    conn.last_error = "missing_scope"
    conn.save()
    record_audit(
        "crm_connection_error",
        actor=actor,
        workspace=workspace,
        target=conn,
        payload={"crm": crm, "last_error": "missing_scope", "missing_scopes": missing},
    )
    health_state.record(
        conn,
        health_state.Verdict.error("missing_scope", {"scopes": {"missing": missing}}),
        now=timezone.now(),
        actor=actor,
    )
    return conn


def revoke_quietly(crm: str, token: str, *, environment: str, conn: CrmConnection | None = None) -> bool:
    """Revoke at the provider where it can be done; a failure never blocks clearing our copy."""
    if not token:
        return False
    try:
        get_provider(crm).revoke(
            token, environment=environment, context=context_of(conn) if conn else NO_CONTEXT
        )
    except ProviderError as exc:
        log.info("revoke failed: %s", exc.code, extra={"category": "oauth", "error_code": exc.code})
        return False
    return True


def do_disconnect(conn: CrmConnection, *, actor: Actor, reason: str = "requested") -> bool:
    """Revoke where supported, always clear the tokens, status disconnected, audited."""
    revoked = revoke_quietly(
        conn.crm, conn.refresh_token or conn.access_token, environment=conn.environment, conn=conn
    )
    clear_grant(conn)
    conn.status = CrmConnection.Status.DISCONNECTED
    conn.last_error = ""
    conn.save()
    health_state.forget(conn)
    record_audit(
        "crm_disconnected",
        actor=actor,
        workspace=conn.workspace,
        target=conn,
        payload={
            "crm": conn.crm,
            "external_account_key": conn.external_account_key,
            "revoked": revoked,
            "reason": reason,
        },
    )
    return revoked
