"""A calendar connection's valid access token: refreshed ahead of expiry, one refresh at a time.

The lock is the connection row (SELECT ... FOR UPDATE): concurrent workers queue on it, and the
ones that get it after a refresh see the new token and do not refresh again. Microsoft rotates
the refresh token on every use (the new one is stored); Google sends none back (the old one is
kept). A grant the provider refuses puts the connection in error, so its card asks for a
reconnect; the tokens of a refused grant are not kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.utils import timezone

from conduit.audit import record_audit
from conduit.tenancy import system_scope
from integrations.calendars.logs import calendar_log
from integrations.connections.tokens import NotConnected
from integrations.models import ExternalCalendarConnection
from integrations.providers import get_calendar_provider
from integrations.providers.base import Account
from integrations.providers.errors import AuthRevoked, TokenExpired
from integrations.providers.synclog import CallContext

T = TypeVar("T")
Clock = Callable[[], datetime]
Connection = ExternalCalendarConnection
ACTOR = "system:calendar_token_refresh"


def context_of(conn: Connection) -> CallContext:
    """Whose call this is: the workspace, and the tokens an error message is scrubbed of (no
    crm_connections row: the sync log's connection column names CRM connections only)."""
    secrets = tuple(t for t in (conn.access_token, conn.refresh_token, conn.channel_secret) if t)
    return CallContext(workspace_id=conn.workspace_id, connection_id=None, secrets=secrets)


def account_for(conn: Connection) -> Account:
    return Account(
        provider=conn.provider,
        access_token=conn.access_token,
        account_key=f"{conn.provider}:{conn.pk}",
        context=context_of(conn),
    )


def connected(conn: Connection) -> Connection:
    if conn.status != Connection.Status.CONNECTED or not conn.access_token:
        raise NotConnected(
            f"The {conn.get_provider_display()} calendar is {conn.status}; reconnect it first."
        )
    return conn


def needs_refresh(conn: Connection, now: datetime) -> bool:
    if conn.token_expiry is None:
        return False  # no expiry given: refreshed only after a 401
    return conn.token_expiry - now <= timedelta(seconds=settings.CONDUIT_TOKEN_REFRESH_MARGIN_SECONDS)


def locked_connection(connection_id: int) -> Connection:
    """The connection row, locked until the caller's transaction ends."""
    return (
        Connection.objects.select_for_update(of=("self",)).select_related("workspace").get(pk=connection_id)
    )


def mark_grant_error(conn: Connection, reason: str) -> None:
    """The grant is refused: error with `reason`, tokens forgotten, audited, one error line
    (caller holds the row lock)."""
    conn.status = Connection.Status.ERROR
    conn.last_error = reason
    conn.access_token = conn.refresh_token = ""
    conn.token_expiry = None
    conn.save(
        update_fields=["status", "last_error", "access_token", "refresh_token", "token_expiry", "updated_at"]
    )
    record_audit(
        "calendar_connection_error",
        actor=ACTOR,
        workspace=conn.workspace,
        target=conn,
        payload={"provider": conn.provider, "connection_id": conn.pk, "last_error": reason},
    )
    calendar_log(
        logging.ERROR,
        "calendar grant refused; the member must reconnect",
        error_code=reason,
        connection_id=conn.pk,
        provider=conn.provider,
    )


def refresh_connection(
    connection_id: int, *, force: bool = False, rejected_token: str | None = None, now: Clock = timezone.now
) -> Connection:
    """Refresh under the row lock; return the connection with a usable token.

    Without `force`, a token another worker refreshed meanwhile is used as it is.
    `rejected_token` is the token a provider just answered 401 to: refresh only while it is still
    the stored one. AuthRevoked (the grant is gone) is raised after the error is committed."""
    revoked: AuthRevoked | None = None
    with system_scope():
        conn = connected(locked_connection(connection_id))
        if rejected_token is not None and conn.access_token != rejected_token:
            return conn  # someone refreshed after that 401
        if not force and rejected_token is None and not needs_refresh(conn, now()):
            return conn
        try:
            if not conn.refresh_token:
                raise AuthRevoked(conn.provider, "refresh_token_missing")
            tokens = get_calendar_provider(conn.provider).refresh(
                conn.refresh_token, context=context_of(conn)
            )
        except AuthRevoked as exc:
            mark_grant_error(conn, "refresh_token_revoked")
            revoked = exc
        else:
            conn.access_token = tokens.access_token
            if tokens.refresh_token:  # Microsoft rotates it; Google sends none
                conn.refresh_token = tokens.refresh_token
            conn.token_expiry = tokens.expires_at
            conn.save(update_fields=["access_token", "refresh_token", "token_expiry", "updated_at"])
            calendar_log(
                logging.INFO,
                "calendar access refreshed",
                connection_id=conn.pk,
                provider=conn.provider,
                rotated=bool(tokens.refresh_token),
            )
    if revoked is not None:
        raise AuthRevoked(revoked.provider, "refresh_token_revoked", revoked.message) from None
    return conn


def valid_account(connection_id: int, *, now: Clock = timezone.now) -> Account:
    """An Account whose token is not about to expire (refreshed first when it is).
    NotConnected when the connection is not connected; AuthRevoked when the grant is gone."""
    with system_scope():
        conn = connected(Connection.objects.get(pk=connection_id))
    if needs_refresh(conn, now()):
        conn = refresh_connection(connection_id, now=now)
    return account_for(conn)


def call_with_token(connection_id: int, call: Callable[[Account], T], *, now: Clock = timezone.now) -> T:
    """Run a provider call with a valid token; after a 401, refresh once and retry once.

    A second 401 means the provider refuses the grant: the connection goes to error
    (access_token_rejected) and AuthRevoked is raised."""
    account = valid_account(connection_id, now=now)
    try:
        return call(account)
    except TokenExpired:
        conn = refresh_connection(connection_id, rejected_token=account.access_token, now=now)
    try:
        return call(account_for(conn))
    except TokenExpired as exc:
        with system_scope():
            locked = locked_connection(connection_id)
            # only if nothing changed meanwhile: a reconnect or disconnect wins over this verdict
            if locked.status == Connection.Status.CONNECTED and locked.access_token == conn.access_token:
                mark_grant_error(locked, "access_token_rejected")
        raise AuthRevoked(exc.provider, "access_token_rejected", exc.message) from None
