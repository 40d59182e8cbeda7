"""Valid access tokens for a connection: refresh ahead of expiry (HubSpot) or after a 401
(Salesforce gives no expiry), one refresh at a time per connection.

The lock is the connection row itself (SELECT ... FOR UPDATE): concurrent workers queue on it,
and the ones that get it after a refresh see the new token and do not refresh again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.utils import timezone

from conduit.audit import record_audit
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from integrations.connections import health_rows as health_state
from integrations.models import CrmConnection
from integrations.providers import get_provider
from integrations.providers.base import Account, TokenSet
from integrations.providers.errors import AuthRevoked, TokenExpired
from integrations.providers.synclog import CallContext

log = logging.getLogger("conduit.integrations")
T = TypeVar("T")
Clock = Callable[[], datetime]


class NotConnected(ConduitError):
    error_code = "not_connected"


def context_of(conn: CrmConnection) -> CallContext:
    secrets = tuple(t for t in (conn.access_token, conn.refresh_token) if t)
    return CallContext(workspace_id=conn.workspace_id, connection_id=conn.pk, secrets=secrets)


def account_for(conn: CrmConnection) -> Account:
    return Account(
        conn.crm,
        conn.access_token,
        conn.external_account_key,
        instance_url=str(conn.external_account_json.get("instance_url") or ""),
        environment=conn.environment,
        context=context_of(conn),
        details=dict(conn.external_account_json),
    )


def needs_refresh(conn: CrmConnection, now: datetime) -> bool:
    if not conn.access_token:
        return True
    if conn.token_expires_at is None:  # Salesforce: refresh only after a 401
        return False
    return conn.token_expires_at - now <= timedelta(seconds=settings.CONDUIT_TOKEN_REFRESH_MARGIN_SECONDS)


def store_tokens(conn: CrmConnection, tokens: TokenSet, now: datetime) -> None:
    """Keep the new access token, and the refresh token when the provider sent a new one."""
    conn.access_token = tokens.access_token
    if tokens.refresh_token:
        conn.refresh_token = tokens.refresh_token
    conn.token_expires_at = tokens.expires_at
    if tokens.instance_url:
        conn.external_account_json = {**conn.external_account_json, "instance_url": tokens.instance_url}
    conn.last_refreshed_at = now


def clear_grant(conn: CrmConnection) -> None:
    """Forget the tokens (the caller saves): an unusable or ended grant is never kept."""
    conn.access_token = conn.refresh_token = ""
    conn.token_expires_at = None


def mark_revoked(
    conn: CrmConnection, reason: str, *, actor: str, health_details: dict[str, Any] | None = None
) -> None:
    """The grant is gone: error, tokens cleared, health error, audited (caller holds the
    transaction and the row lock)."""
    conn.status = CrmConnection.Status.ERROR
    conn.last_error = reason
    clear_grant(conn)
    conn.save(
        update_fields=[
            "status",
            "last_error",
            "access_token",
            "refresh_token",
            "token_expires_at",
            "updated_at",
        ]
    )
    record_audit(
        "crm_connection_error",
        actor=actor,
        workspace=conn.workspace,
        target=conn,
        payload={"crm": conn.crm, "last_error": reason, "external_account_key": conn.external_account_key},
    )
    health_state.record(
        conn,
        health_state.Verdict.error(reason, health_details, auth_failure=True),
        now=timezone.now(),
        actor=actor,
    )
    log.warning(
        "%s connection %s: %s", conn.crm, conn.pk, reason, extra={"category": "oauth", "error_code": reason}
    )


def connected(conn: CrmConnection) -> CrmConnection:
    if conn.status != CrmConnection.Status.CONNECTED:
        raise NotConnected(f"The {conn.get_crm_display()} connection is {conn.status}; reconnect it first.")
    return conn


def locked_connection(connection_id: int) -> CrmConnection:
    """The connection row, locked until the caller's transaction ends (one change at a time)."""
    return (
        CrmConnection.objects.select_for_update(of=("self",))
        .select_related("workspace")
        .get(pk=connection_id)
    )


def refresh_connection(
    connection_id: int,
    *,
    force: bool = False,
    rejected_token: str | None = None,
    actor: str = "system:token_refresh",
    now: Clock = timezone.now,
) -> CrmConnection:
    """Refresh under the connection's row lock; return the connection with a usable token.

    Without `force`, a token that another worker refreshed meanwhile is used as it is.
    `rejected_token` is the token a provider just answered 401 to: refresh only if it is
    still the stored one."""
    with system_scope():
        conn = locked_connection(connection_id)
        connected(conn)
        if rejected_token is not None and conn.access_token and conn.access_token != rejected_token:
            return conn  # someone refreshed after that 401
        if not force and rejected_token is None and not needs_refresh(conn, now()):
            return conn
        if not get_provider(conn.crm).refreshes_tokens:
            return conn  # an API key (Odoo, Lever) has no refresh: a new one is saved by its admin
        if not conn.refresh_token:
            mark_revoked(conn, "refresh_token_missing", actor=actor)
            return conn
        provider = get_provider(conn.crm)
        try:
            tokens = provider.refresh(
                conn.refresh_token, environment=conn.environment, context=context_of(conn)
            )
        except AuthRevoked:
            # typed credentials (Greenhouse, Workday) refused: the admin updates them
            reason = "refresh_token_revoked" if provider.uses_oauth else "credentials_invalid"
            mark_revoked(conn, reason, actor=actor)
            return conn
        store_tokens(conn, tokens, now())
        conn.last_error = ""
        conn.save(
            update_fields=[
                "access_token",
                "refresh_token",
                "token_expires_at",
                "external_account_json",
                "last_refreshed_at",
                "last_error",
                "updated_at",
            ]
        )
        return conn


def valid_account(
    connection_id: int, *, now: Clock = timezone.now, loaded: CrmConnection | None = None
) -> Account:
    """An Account with a token that is not about to expire (refreshed first when it is).

    `loaded`: this connection's row as the caller read it in the same unit of work (delivery reads
    it with the write); its token is used without reading the row again. A token refreshed by
    another worker since then is at worst answered 401, and call_with_token then takes the stored
    one without refreshing (rejected_token)."""
    if loaded is None:
        with system_scope():
            loaded = CrmConnection.objects.get(pk=connection_id)
    elif loaded.pk != connection_id:
        raise ValueError(f"loaded connection {loaded.pk} is not connection {connection_id}")
    conn = connected(loaded)
    if needs_refresh(conn, now()):
        conn = connected(refresh_connection(connection_id, now=now))
    return account_for(conn)


def call_with_token(
    connection_id: int,
    call: Callable[[Account], T],
    *,
    now: Clock = timezone.now,
    revoke_on_reject: bool = True,
    loaded: CrmConnection | None = None,
) -> T:
    """Run a provider call with a valid token; after a 401, refresh once and retry once.

    A second 401 means the provider refuses the grant: the connection goes to error, unless
    `revoke_on_reject` is False (the health check wants a sustained run of refusals first).
    `loaded`: as for valid_account."""
    account = valid_account(connection_id, now=now, loaded=loaded)
    try:
        return call(account)
    except TokenExpired:
        conn = connected(refresh_connection(connection_id, rejected_token=account.access_token, now=now))
    try:
        return call(account_for(conn))
    except TokenExpired as exc:
        if not revoke_on_reject:
            raise AuthRevoked(exc.provider, "access_token_rejected", exc.message, http_status=401) from None
        with system_scope():
            locked = locked_connection(connection_id)
            # only if nothing changed meanwhile: a reconnect or disconnect wins over this verdict
            if locked.status == CrmConnection.Status.CONNECTED and locked.access_token == conn.access_token:
                mark_revoked(locked, "access_token_rejected", actor="system:token_refresh")
        raise AuthRevoked(exc.provider, "access_token_rejected", exc.message) from None


def mark_scope_missing(connection_id: int, missing: list[str], *, actor: str) -> None:
    """The CRM refused a call for want of scopes: the connection needs a reconnect (audited).
    The grant is kept; the customer reconnects and grants what is listed."""
    with system_scope():
        conn = locked_connection(connection_id)
        if conn.status != CrmConnection.Status.CONNECTED:
            return
        conn.status = CrmConnection.Status.ERROR
        conn.last_error = "missing_scope"
        conn.external_account_json = {**conn.external_account_json, "missing_scopes": sorted(missing)}
        conn.save(update_fields=["status", "last_error", "external_account_json", "updated_at"])
        health_state.record(
            conn,
            health_state.Verdict.error("missing_scope", {"scopes": {"missing": sorted(missing)}}),
            now=timezone.now(),
            actor=actor,
        )
        record_audit(
            "crm_connection_error",
            actor=actor,
            workspace=conn.workspace,
            target=conn,
            payload={"crm": conn.crm, "last_error": "missing_scope", "missing_scopes": sorted(missing)},
        )
