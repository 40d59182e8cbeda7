"""Rows for the operations API tests, made directly (the flows that make them are tested elsewhere)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from conduit.models import AuditEvent, Membership, Workspace
from conduit.services import do_create_api_token, do_create_staff_token
from conduit.tenancy import system_scope
from integrations.models import ConnectionHealth, CrmConnection, SyncLog
from reconcile.models import CrmWriteLog, DealMapping
from tests.conftest import Tenant


def workspace_token(tenant: Tenant) -> str:
    return do_create_api_token(tenant.workspace, "ops", actor=tenant.user).raw


def make_staff(username: str = "ops@conduit.example") -> User:
    with system_scope():
        return User.objects.create_user(username=username, email=username, password="x" * 12, is_staff=True)


def staff_token(user: User | None = None) -> str:
    return do_create_staff_token(user or make_staff(), "pager").raw


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def get(path: str, token: str | None = None, **params: Any) -> Any:
    return Client().get(path, params, **(bearer(token) if token else {}))


def send(method: str, path: str, token: str | None, body: Any = None, **params: Any) -> Any:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    url = f"{path}?{query}" if query else path
    call = getattr(Client(), method)
    return call(
        url, data=body if body is not None else {}, content_type="application/json", **bearer(token or "")
    )


def make_connection(workspace: Workspace, crm: str = "hubspot", **fields: Any) -> CrmConnection:
    defaults: dict[str, Any] = {
        "status": CrmConnection.Status.CONNECTED,
        "external_account_key": str(4400000 + secrets.randbelow(99999)),
        "access_token": "at-" + secrets.token_hex(8),
        "refresh_token": "rt-" + secrets.token_hex(8),
        "connected_at": timezone.now(),
        "dry_run": False,
    }
    with system_scope():
        return CrmConnection.objects.create(workspace=workspace, crm=crm, **{**defaults, **fields})


def make_health(conn: CrmConnection, status: str, reason: str = "ok") -> ConnectionHealth:
    with system_scope():
        return ConnectionHealth.objects.create(
            workspace_id=conn.workspace_id,
            crm=conn.crm,
            connection=conn,
            status=status,
            reason=reason,
            last_checked_at=timezone.now(),
        )


def make_write(conn: CrmConnection, status: str = "failed", code: str = "", **fields: Any) -> CrmWriteLog:
    defaults: dict[str, Any] = {
        "workspace_id": conn.workspace_id,
        "provider": conn.crm,
        "operation": "create_note",
        "target": f"{secrets.token_hex(4)}@customer.example",
        "idempotency_key": secrets.token_hex(16),
        "status": status,
        "last_error_code": code,
        "last_error_message": f"{code} happened" if code else "",
        "retry_count": 3 if status == "failed" else 0,
        "next_retry_at": timezone.now() if status in ("failed", "planned") else None,
    }
    with system_scope():
        return CrmWriteLog.objects.create(connection=conn, **{**defaults, **fields})


def make_log(
    workspace: Workspace | None,
    provider: str = "hubspot",
    *,
    ok: bool = True,
    operation: str = "create_note",
    code: str = "",
    at: datetime | None = None,
    summary: str = "",
) -> SyncLog:
    with system_scope():
        return SyncLog.objects.create(
            workspace=workspace,
            provider=provider,
            operation=operation,
            status=SyncLog.Status.SUCCESS if ok else SyncLog.Status.FAILED,
            http_status=200 if ok else 400,
            error_code=code,
            duration_ms=12,
            summary=summary or ("ok" if ok else f"{code}: rejected"),
            created_at=at or timezone.now(),
        )


def make_mapping(
    conn: CrmConnection, email: str, contact_id: str, deal_id: str = "", **fields: Any
) -> DealMapping:
    """A cached contact -> deal lookup of the connection, fresh unless `refreshed_at` says otherwise."""
    with system_scope():
        return DealMapping.objects.create(
            workspace_id=conn.workspace_id,
            connection=conn,
            email=email,
            contact_id=contact_id,
            deal_id=deal_id,
            refreshed_at=fields.pop("refreshed_at", timezone.now()),
            **fields,
        )


def events(name: str) -> list[AuditEvent]:
    """The audit rows of one event, oldest first."""
    with system_scope():
        return list(AuditEvent.objects.filter(event=name).order_by("id"))


def member_client(tenant: Tenant, make_workspace: Callable[..., Tenant], role: str = "member") -> Client:
    """A second user of the tenant's workspace with `role` (and no workspace of their own), signed in."""
    other = make_workspace(f"{tenant.workspace.slug}-{role}", role=role)
    with system_scope():
        Membership.objects.create(workspace=tenant.workspace, user=other.user, role=role)
        Membership.objects.filter(workspace=other.workspace).delete()
    client = Client()
    client.force_login(other.user)
    return client


def flash(response: Any) -> list[str]:
    """The messages a rendered page shows."""
    return [str(m) for m in response.context["messages"]] if response.context else []
