"""Shared pieces for the ATS wiring tests (Greenhouse, Lever, Workday): the three sandboxes on
free ports for the session, Conduit's settings pointing at them, the credentials forms filled in
with the sandboxes' seeded credentials, and rotating them at the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from conduit.tenancy import system_scope
from integrations.models import CrmConnection
from integrations.sandbox import greenhouse_data, lever_data, workday_data
from tests.conftest import Tenant

ATS = ("greenhouse", "lever", "workday")
TIMEOUT = 5
CANDIDATE = "maya.lopez@acme-logistics.example"  # a candidate in every ATS sandbox
FORM_URL = "/settings/integrations/{crm}/credentials/"


@pytest.fixture(scope="session")
def ats_sandboxes() -> Iterator[dict[str, str]]:
    """The ATS sandboxes on free ports for the whole run: {"greenhouse": base_url, ...}."""
    from integrations.sandbox.server import start_sandbox

    running = {name: start_sandbox(name, port=0) for name in ATS}
    yield {name: sandbox.base_url for name, sandbox in running.items()}
    for sandbox in running.values():
        sandbox.stop()


@pytest.fixture
def ats_env(settings: Any, ats_sandboxes: dict[str, str]) -> dict[str, str]:
    """Fresh ATS sandboxes, with Conduit's provider settings pointing at them."""
    for base in ats_sandboxes.values():
        requests.post(f"{base}/_sandbox/reset", timeout=TIMEOUT)
    settings.CONDUIT_PUBLIC_URL = "http://testserver"
    settings.GREENHOUSE_API_BASE_URL = ats_sandboxes["greenhouse"]
    settings.GREENHOUSE_TOKEN_URL = f"{ats_sandboxes['greenhouse']}/token"
    settings.LEVER_API_BASE_URL = f"{ats_sandboxes['lever']}/v1"
    settings.WORKDAY_EXTRA_ORIGINS = [ats_sandboxes["workday"]]
    return ats_sandboxes


def good_fields(crm: str, env: dict[str, str]) -> dict[str, str]:
    """The form filled in with the sandbox's seeded credentials."""
    if crm == "greenhouse":
        return {
            "client_id": greenhouse_data.SEEDED_CLIENT_ID,
            "client_secret": greenhouse_data.SEEDED_CLIENT_SECRET,
            "user_id": "",
        }
    if crm == "lever":
        return {"api_key": lever_data.SEEDED_API_KEY}
    return {
        "host": env["workday"],
        "tenant": workday_data.TENANT,
        "client_id": workday_data.CLIENT_ID,
        "client_secret": workday_data.SEEDED_CLIENT_SECRET,
        "refresh_token": workday_data.SEEDED_REFRESH_TOKEN,
    }


def secrets_of(crm: str, fields: dict[str, str]) -> list[str]:
    """The secret values of a filled-in form (what must never show anywhere)."""
    names = {
        "greenhouse": ("client_secret",),
        "lever": ("api_key",),
        "workday": ("client_secret", "refresh_token"),
    }
    return [fields[name] for name in names[crm]]


def rotate(crm: str, env: dict[str, str]) -> dict[str, str]:
    """Rotate the seeded credentials at the sandbox; the form fields of the new ones."""
    answer = requests.post(f"{env[crm]}/_sandbox/credentials/rotate", json={}, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    fields = good_fields(crm, env)
    if crm == "greenhouse":
        fields["client_secret"] = body["client_secret"]
    elif crm == "lever":
        fields["api_key"] = body["api_key"]
    else:
        fields["client_secret"], fields["refresh_token"] = body["client_secret"], body["refresh_token"]
    return fields


def sandbox_notes(crm: str, env: dict[str, str]) -> list[dict[str, Any]]:
    return list(requests.get(f"{env[crm]}/_sandbox/state", timeout=TIMEOUT).json().get("notes", []))


def live_conn(tenant: Tenant, crm: str) -> CrmConnection:
    with system_scope():
        return CrmConnection.objects.exclude(status="disconnected").get(workspace=tenant.workspace, crm=crm)


def connect_ats(tenant: Tenant, crm: str, env: dict[str, str], *, live: bool = False) -> CrmConnection:
    """Connect through the credentials form with the sandbox's seeded credentials."""
    response = tenant.client().post(FORM_URL.format(crm=crm), good_fields(crm, env))
    assert response.status_code == 302, response.content.decode()[:2000]
    conn = live_conn(tenant, crm)
    if live:
        with system_scope():
            conn.dry_run = False
            conn.save(update_fields=["dry_run"])
    return conn
