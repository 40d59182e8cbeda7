"""Building blocks for the write tests: a connected CRM (through the real connect flow against
the sandbox), stored messages, and reading what the sandbox CRMs hold."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from typing import Any

import requests
from django.conf import settings
from django.utils import timezone

from conduit.models import Message, Workspace
from conduit.tenancy import system_scope
from integrations.models import CrmConnection
from reconcile.models import CrmWriteLog
from tests.conftest import Tenant

CUSTOMER = "maya.lopez@acme-logistics.example"  # a contact in every sandbox, with an open deal
STRANGER = "nobody@unknown.example"  # no contact anywhere


def connect_crm(tenant: Tenant, crm: str, *, live: bool = True) -> CrmConnection:
    from tests.test_oauth_flow import connect

    client = tenant.client()
    if crm == "odoo":  # an API key through the credentials form, against the sandbox of crm_env
        response = client.post("/settings/integrations/odoo/credentials/", odoo_form())
    else:
        response = connect(client, crm)
    assert response.status_code == 302, response.content
    with system_scope():
        conn = CrmConnection.objects.exclude(status="disconnected").get(workspace=tenant.workspace, crm=crm)
        if live:
            conn.dry_run = False
            conn.save(update_fields=["dry_run"])
    return conn


def odoo_form(**fields: str) -> dict[str, str]:
    """The credentials form filled in for the Odoo sandbox (conftest.odoo_sandbox sets its URL)."""
    from django.conf import settings

    from integrations.sandbox.odoo_data import DATABASE, LOGIN, SEEDED_API_KEY

    values = {"url": settings.ODOO_SANDBOX_URL, "database": DATABASE, "login": LOGIN}
    return {**values, "api_key": SEEDED_API_KEY, **fields}


def store_message(
    workspace: Workspace,
    message_id: str,
    *,
    sender: str = f"Maya Lopez <{CUSTOMER}>",
    to: list[str] | None = None,
    cc: list[str] | None = None,
    subject: str = "Renewal terms",
    body: str = "SECRET-BODY-TEXT please do not leak",
) -> Message:
    with system_scope():
        return Message.objects.create(
            workspace=workspace,
            message_id=message_id,
            subject=subject,
            from_address=sender,
            to_addresses=to if to is not None else [f"Owner <{workspace.slug}@example.com>"],
            cc_addresses=cc or [],
            body_text=body,
            body_html=f"<p>{body}</p>",
            raw=body.encode(),
        )


def writes(**filters: Any) -> list[CrmWriteLog]:
    with system_scope():
        return list(CrmWriteLog.objects.filter(**filters).order_by("id"))


def sandbox_state(base_url: str) -> dict[str, Any]:
    return requests.get(f"{base_url}/_sandbox/state", timeout=5).json()


def sandbox_fault(base_url: str, **fault: Any) -> None:
    answer = requests.post(f"{base_url}/_sandbox/faults", json=fault, timeout=5)
    assert answer.status_code in (200, 201), answer.text


def created_records(crm: str, base_url: str) -> list[dict[str, Any]]:
    """Notes and tasks (HubSpot, Zoho) or Tasks (Salesforce) the sandbox holds; Odoo: the notes
    logged on partners (not their copies on opportunities) and the To-Do activities."""
    state = sandbox_state(base_url)
    if crm in ("hubspot", "zoho"):
        return [*state.get("notes", []), *state.get("tasks", [])]
    if crm == "odoo":
        notes = [m for m in state.get("messages", []) if m.get("model") == "res.partner"]
        return [*notes, *state.get("activities", [])]
    return list(state.get("tasks", []))


def seed_writes(
    tenant: Tenant, conn: CrmConnection, count: int, status: str, *, due: datetime | None = None
) -> list[int]:
    """`count` writes of one message in one set-based insert (the planner is tested elsewhere)."""
    message = store_message(tenant.workspace, f"seed-{status}@x")
    now = timezone.now()
    with system_scope():
        rows = CrmWriteLog.objects.bulk_create(
            [
                CrmWriteLog(
                    workspace=tenant.workspace,
                    connection=conn,
                    message=message,
                    provider=conn.crm,
                    operation="create_note",
                    target=f"p{i}@customer.example",
                    idempotency_key=hashlib.sha256(f"seed-{conn.pk}-{i}".encode()).hexdigest(),
                    payload={"subject": "s", "text": "t", "occurred_at": now.isoformat()},
                    status=status,
                    next_retry_at=due,
                )
                for i in range(count)
            ],
            batch_size=2000,
        )
    return [r.pk for r in rows]


def worker_child_env(crm_env: dict[str, str]) -> dict[str, str]:
    """The environment of a child process that delivers as a worker would, against this test's
    database and HubSpot sandbox (a drill SIGKILLs it mid-send: a long read timeout)."""
    db = settings.DATABASES["default"]
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "HUBSPOT_API_BASE_URL": crm_env["hubspot"],
        "CONDUIT_VAR_DIR": str(settings.VAR_DIR),
        "DJANGO_SETTINGS_MODULE": "conduit.settings",
        "CONDUIT_PROVIDER_READ_TIMEOUT": "120",
    }
