"""Token refresh: ahead of expiry (HubSpot), after a 401 (Salesforce), once under concurrency;
the API, command and admin doors; no token in any log line across the flow."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from conduit.models import AuditEvent
from conduit.services import do_create_api_token
from conduit.tenancy import system_scope
from integrations.connections.tokens import NotConnected, call_with_token, refresh_connection, valid_account
from integrations.models import CrmConnection, SyncLog
from integrations.providers import get_provider
from integrations.providers.base import Account
from integrations.providers.errors import AuthRevoked, TokenExpired
from tests.conftest import Tenant

KEYS = {"hubspot": "4400001", "salesforce": "00D5g000004SbxAEAS", "zoho": "7700000000000010001"}


def connected(workspace: Any, crm: str, base: str, **fields: Any) -> CrmConnection:
    """A connection holding a real sandbox grant (minted through the sandbox's token endpoint)."""
    grant = requests.post(f"{base}/_sandbox/tokens", json={}, timeout=5).json()
    details: dict[str, Any] = {"environment": "login"}
    if crm == "salesforce":
        details["instance_url"] = grant["instance_url"]
    if crm == "zoho":  # the sandbox is the account's data centre: its accounts server and API domain
        details = {"environment": base, "instance_url": grant["api_domain"]}
    with system_scope():
        return CrmConnection.objects.create(
            workspace=workspace,
            crm=crm,
            status="connected",
            external_account_key=KEYS[crm],
            external_account_json=details,
            access_token=fields.pop("access_token", grant["access_token"]),
            refresh_token=grant["refresh_token"],
            token_expires_at=fields.pop(
                "token_expires_at", timezone.now() + timedelta(minutes=30) if crm != "salesforce" else None
            ),
            **fields,
        )


def refreshes(conn: CrmConnection) -> int:
    with system_scope():
        return SyncLog.objects.filter(connection=conn, operation="refresh", status="SUCCESS").count()


@pytest.mark.django_db
def test_hubspot_token_is_refreshed_ahead_of_expiry_not_before(crm_env: Any, alice: Tenant) -> None:
    conn = connected(alice.workspace, "hubspot", crm_env["hubspot"])
    assert valid_account(conn.pk).access_token == conn.access_token
    assert refreshes(conn) == 0
    with system_scope():
        CrmConnection.objects.filter(pk=conn.pk).update(
            token_expires_at=timezone.now() + timedelta(seconds=60)
        )
    account = valid_account(conn.pk)
    assert account.access_token != conn.access_token
    assert refreshes(conn) == 1
    with system_scope():
        conn.refresh_from_db()
    assert conn.token_expires_at is not None and conn.token_expires_at > timezone.now() + timedelta(
        minutes=20
    )
    assert conn.last_refreshed_at is not None
    assert get_provider("hubspot").check_health(account).details["portal_id"] == 4400001


@pytest.mark.django_db
def test_salesforce_refreshes_after_a_401_and_retries_once(crm_env: Any, alice: Tenant) -> None:
    conn = connected(
        alice.workspace, "salesforce", crm_env["salesforce"], access_token="00Dstale!expired-token"
    )
    result = call_with_token(
        conn.pk,
        lambda account: get_provider("salesforce").find_contact(account, "maya.lopez@acme-logistics.example"),
    )
    assert result == "0035g00000SbxC1AAJ"
    assert refreshes(conn) == 1
    with system_scope():
        conn.refresh_from_db()
    assert conn.access_token != "00Dstale!expired-token" and conn.status == "connected"


@pytest.mark.django_db
def test_zoho_refreshes_at_its_data_centre_after_a_401_and_retries_once(crm_env: Any, alice: Tenant) -> None:
    conn = connected(alice.workspace, "zoho", crm_env["zoho"])
    # the call answers 401 INVALID_TOKEN once; the refresh must go to the data centre (127.0.0.1),
    # not to ZOHO_ACCOUNTS_URL (localhost), whose answer the sandbox refuses as another centre's
    requests.post(f"{crm_env['zoho']}/_sandbox/faults", json={"kind": "invalid_session"}, timeout=5)
    result = call_with_token(conn.pk, lambda account: get_provider("zoho").check_health(account))
    assert result.details["org_id"] == KEYS["zoho"] and refreshes(conn) == 1
    with system_scope():
        conn.refresh_from_db()
    assert conn.status == "connected" and conn.external_account_json["instance_url"] == crm_env["zoho"]
    requests.post(
        f"{crm_env['zoho']}/_sandbox/faults", json={"kind": "invalid_session", "count": 2}, timeout=5
    )
    with pytest.raises(AuthRevoked):
        call_with_token(conn.pk, lambda account: get_provider("zoho").check_health(account))
    with system_scope():
        conn.refresh_from_db()
    assert (conn.status, conn.last_error) == ("error", "access_token_rejected")


@pytest.mark.django_db
def test_a_second_401_after_refresh_marks_the_connection_error(crm_env: Any, alice: Tenant) -> None:
    conn = connected(alice.workspace, "hubspot", crm_env["hubspot"])

    def always_401(account: Account) -> None:
        raise TokenExpired("hubspot", "token_expired")

    with pytest.raises(AuthRevoked):
        call_with_token(conn.pk, always_401)
    with system_scope():
        conn.refresh_from_db()
    assert (conn.status, conn.last_error, conn.access_token) == ("error", "access_token_rejected", "")
    with pytest.raises(NotConnected):
        valid_account(conn.pk)


@pytest.mark.django_db
def test_revoked_refresh_token_clears_tokens_and_audits(crm_env: Any, alice: Tenant) -> None:
    conn = connected(alice.workspace, "salesforce", crm_env["salesforce"])
    requests.post(f"{crm_env['salesforce']}/_sandbox/faults", json={"kind": "invalid_grant"}, timeout=5)
    after = refresh_connection(conn.pk, force=True)
    assert (after.status, after.last_error, after.access_token, after.refresh_token) == (
        "error",
        "refresh_token_revoked",
        "",
        "",
    )
    with system_scope():
        event = AuditEvent.objects.get(event="crm_connection_error")
    assert (
        event.workspace_id == alice.workspace.pk
        and event.payload_json["last_error"] == "refresh_token_revoked"
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_cause_exactly_one_refresh(crm_env: Any, make_workspace: Any) -> None:
    tenant = make_workspace("threads")
    conn = connected(tenant.workspace, "hubspot", crm_env["hubspot"], token_expires_at=timezone.now())
    tokens: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            tokens.append(valid_account(conn.pk).access_token)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(tokens) == 6 and len(set(tokens)) == 1 and tokens[0] != conn.access_token
    assert refreshes(conn) == 1


@pytest.mark.django_db
def test_refresh_api_command_and_admin_action(crm_env: Any, alice: Tenant) -> None:
    conn = connected(alice.workspace, "hubspot", crm_env["hubspot"])
    issued = do_create_api_token(alice.workspace, "ops", actor=alice.user)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {issued.raw}")
    answer = api.post("/api/v1/integrations/hubspot/refresh")
    assert answer.status_code == 200 and answer.json()["status"] == "connected"
    assert api.post("/api/v1/integrations/salesforce/refresh").json()["code"] == "not_connected"
    assert api.post("/api/v1/integrations/pipedrive/refresh").status_code == 404
    out = StringIO()
    call_command("refresh_crm_token", "--workspace", "alice", "--crm", "hubspot", stdout=out)
    assert out.getvalue().startswith("alice hubspot: token refreshed; expires ")
    with pytest.raises(CommandError, match="no workspace with slug 'nope'"):
        call_command("refresh_crm_token", "--workspace", "nope", "--crm", "hubspot")
    with pytest.raises(CommandError, match="alice has no salesforce connection"):
        call_command("refresh_crm_token", "--workspace", "alice", "--crm", "salesforce")
    staff = User.objects.create_superuser("ops@conduit.example", "ops@conduit.example", "pw-ops-123456")
    admin = Client()
    admin.force_login(staff)
    done = admin.post(
        "/admin/integrations/crmconnection/",
        {"action": "force_token_refresh", "_selected_action": [conn.pk]},
        follow=True,
    )
    assert b"token refreshed" in done.content
    assert refreshes(conn) == 3
    requests.post(f"{crm_env['hubspot']}/_sandbox/faults", json={"kind": "invalid_grant"}, timeout=5)
    refused = api.post("/api/v1/integrations/hubspot/refresh")
    assert refused.status_code == 409 and refused.json()["code"] == "refresh_token_revoked"
    with pytest.raises(CommandError, match="reconnect it first"):
        call_command("refresh_crm_token", "--workspace", "alice", "--crm", "hubspot")


@pytest.mark.django_db
def test_disconnect_and_claim_api(crm_env: Any, alice: Tenant, bob: Tenant) -> None:
    connected(alice.workspace, "salesforce", crm_env["salesforce"])
    issued = do_create_api_token(alice.workspace, "ops", actor=alice.user)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {issued.raw}")
    done = api.post("/api/v1/integrations/salesforce/disconnect")
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["revoked_at_provider"]) == ("disconnected", True)
    assert api.post("/api/v1/integrations/salesforce/disconnect").status_code == 409
    session = bob.client()
    missing = session.post("/api/v1/claim-install", {"crm": "hubspot"}, content_type="application/json")
    assert missing.status_code == 400 and missing.json()["code"] == "invalid"
    unknown = session.post(
        "/api/v1/claim-install",
        {"crm": "hubspot", "install_id": "nope", "workspace_id": bob.workspace.pk},
        content_type="application/json",
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == "install_not_found"
    anonymous = Client().post("/api/v1/claim-install", {}, content_type="application/json")
    assert anonymous.status_code == 403 and anonymous.json()["code"] == "not_authenticated"


@pytest.mark.django_db
def test_claim_api_binds_the_install(crm_env: Any, bob: Tenant) -> None:
    from tests.test_oauth_flow import pending_install

    pending = pending_install("salesforce")
    body = {"crm": "salesforce", "install_id": pending.install_id, "workspace_id": bob.workspace.pk}
    answer = bob.client().post("/api/v1/claim-install", body, content_type="application/json")
    assert answer.status_code == 200
    assert (answer.json()["status"], answer.json()["workspace_id"]) == ("connected", bob.workspace.pk)
    again = bob.client().post("/api/v1/claim-install", body, content_type="application/json")
    assert again.status_code == 409 and again.json()["code"] == "install_already_claimed"


@pytest.mark.django_db
@pytest.mark.parametrize("crm", ["hubspot", "zoho"])
def test_no_token_in_logs_audit_or_sync_logs_across_the_flow(
    crm_env: Any, alice: Tenant, capture_json_logs: Any, settings: Any, crm: str
) -> None:
    import logging

    from tests.test_oauth_flow import connect

    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    try:
        client = alice.client()
        connect(client, crm)
        with system_scope():
            conn = CrmConnection.objects.get(crm=crm)
        secrets = [conn.access_token, conn.refresh_token, settings.ZOHO_CLIENT_SECRET]
        refresh_connection(conn.pk, force=True)
        with system_scope():
            conn.refresh_from_db()
        secrets += [conn.access_token]
        client.post(f"/settings/integrations/{crm}/disconnect/")
    finally:
        logging.getLogger("urllib3").setLevel(logging.WARNING)
    with system_scope():
        audit = [str(e.payload_json) for e in AuditEvent.objects.all()]
        summaries = list(SyncLog.objects.values_list("summary", flat=True))
    haystack = "\n".join([*audit, *summaries, *(str(line) for line in capture_json_logs())])
    assert len(summaries) == 4  # exchange_code, identify, refresh, revoke
    for secret in secrets:
        assert secret and secret not in haystack
