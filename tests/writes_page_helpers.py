"""Writes in every state for the writes-page tests, made directly in the ledger (no provider):
a connection, and a write with a curated payload like the planner's, optionally from a stored
message whose body must never show."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.utils import timezone

from conduit.tenancy import system_scope
from integrations.models import CrmConnection
from reconcile.models import CrmWriteLog
from tests.conftest import Tenant, make_message

Status = CrmWriteLog.Status
BODY = "SECRET-BODY-TEXT never shown"
CUSTOMER = "maya.lopez@acme-logistics.example"
WHEN = timezone.now().replace(microsecond=0) - timedelta(days=1)


def live_conn(tenant: Tenant, crm: str = "hubspot", **fields: Any) -> CrmConnection:
    values: dict[str, Any] = {"status": "connected", "dry_run": False, "external_account_key": f"k-{crm}"}
    with system_scope():
        return CrmConnection.objects.create(workspace=tenant.workspace, crm=crm, **{**values, **fields})


def make_write(
    conn: CrmConnection,
    *,
    status: str = Status.FAILED,
    permanent: bool = False,
    code: str = "",
    message: str = "",
    retry_count: int = 0,
    next_retry_at: Any = None,
    subject: str = "Renewal terms",
    target: str = CUSTOMER,
    operation: str = "create_note",
    age: timedelta = timedelta(0),
    with_message: bool = False,
    resolved: dict[str, str] | None = None,
) -> CrmWriteLog:
    message_pk = (
        make_message(conn.workspace, uuid.uuid4().hex, subject=subject, body_text=BODY).pk
        if with_message
        else None
    )
    payload: dict[str, Any] = {
        "subject": f"Email: {subject}",
        "text": f"Email (inbound): {subject}\nFrom: {target}\nTo: sam@alice.example\n"
        f"Time: 2026-11-16 09:12 UTC\nIn Conduit: http://testserver/messages/{message_pk or 0}/",
        "occurred_at": "2026-11-16T09:12:00+00:00",
        "direction": "inbound",
        "participants": {"from": [target], "to": ["sam@alice.example"], "cc": []},
        "link": f"http://testserver/messages/{message_pk or 0}/",
        "contact_email": target,
        **(resolved or {}),
    }
    if operation == "create_task":
        payload["due_at"] = "2026-11-18T09:12:00+00:00"
    with system_scope():
        row = CrmWriteLog.objects.create(
            workspace_id=conn.workspace_id,
            connection=conn,
            message_id=message_pk,
            provider=conn.crm,
            operation=operation,
            target=target,
            idempotency_key=uuid.uuid4().hex + uuid.uuid4().hex,
            payload=payload,
            status=status,
            permanent_failure=permanent,
            retry_count=retry_count,
            next_retry_at=next_retry_at,
            last_error_code=code,
            last_error_message=message,
            created_at=WHEN - age,
        )
    return row


def reload(row: CrmWriteLog) -> CrmWriteLog:
    with system_scope():
        return CrmWriteLog.objects.get(pk=row.pk)
