"""Connecting Odoo with typed credentials (integrations/connections/credentials.py): checked with
one authenticated call before anything is stored, the key encrypted and never shown again (but
its last four characters), saving and updating audited, disconnect the shared one, and the key
in no log line, sync-log row, audit payload, error or CRM write."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from django.db import connection

from conduit.models import AuditEvent, Membership
from conduit.tenancy import system_scope
from integrations.connections.credentials import (
    CredentialsRefused,
    NotWorkspaceAdmin,
    do_save_odoo_credentials,
)
from integrations.connections.lifecycle import do_disconnect
from integrations.connections.tokens import account_for, call_with_token, refresh_connection
from integrations.health.checks import check_connection
from integrations.models import ConnectionHealth, CrmConnection, SyncLog
from integrations.providers import get_provider
from integrations.providers.base import Account
from integrations.sandbox.odoo_data import DATABASE, LOGIN, SEEDED_API_KEY
from integrations.sandbox.server import RunningSandbox
from tests.conftest import Tenant
from tests.odoo_helpers import (
    MAYA,
    TASK_MARKER,
    activity,
    connect_spy,
    fake_dns,
    inject,
    production_settings,
    reset,
    sandbox_settings,
    start_odoo,
    state,
    tiny_server,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def server() -> Iterator[RunningSandbox]:
    running = start_odoo()
    yield running
    running.stop()


@pytest.fixture
def odoo(server: RunningSandbox, settings: Any) -> str:
    sandbox_settings(settings)
    reset(server.base_url)
    return server.base_url


def save(tenant: Tenant, base: str, **fields: Any) -> CrmConnection:
    values = {"url": base, "database": DATABASE, "login": LOGIN, "api_key": SEEDED_API_KEY, **fields}
    return do_save_odoo_credentials(tenant.workspace, actor=tenant.user, **values)


def refused(tenant: Tenant, base: str, **fields: Any) -> CredentialsRefused:
    with pytest.raises(CredentialsRefused) as caught:
        save(tenant, base, **fields)
    with system_scope():
        assert not CrmConnection.objects.exists()
        assert not AuditEvent.objects.filter(event__startswith="odoo_").exists()
    return caught.value


def audit_events(event: str) -> list[AuditEvent]:
    with system_scope():
        return list(AuditEvent.objects.filter(event=event).order_by("id"))


def sync_rows() -> list[SyncLog]:
    with system_scope():
        return list(SyncLog.objects.order_by("id"))


# --- saving ------------------------------------------------------------------------------------


def test_saving_checks_the_credentials_then_connects_with_the_key_encrypted(alice: Tenant, odoo: str) -> None:
    conn = save(alice, f"  {odoo}/ ")
    port = odoo.rsplit(":", 1)[1]
    assert (conn.crm, conn.status, conn.dry_run, conn.last_error) == ("odoo", "connected", True, "")
    assert conn.external_account_key == f"127.0.0.1:{port}/{DATABASE}"
    details = conn.external_account_json
    assert {k: v for k, v in details.items() if k != "address_check"} == {
        "database": DATABASE,
        "login": LOGIN,
        "api": "json2",
        "version": "19.0",
        "uid": 2,
        "instance_url": odoo,
        "url": odoo,
        "key_last4": SEEDED_API_KEY[-4:],
    }
    assert details["address_check"]["address"] == "127.0.0.1"
    assert conn.account_label == f"127.0.0.1:{port} ({conn.external_account_key})"  # the host, not the URL
    with system_scope():
        stored = CrmConnection.objects.get(pk=conn.pk)
        assert (stored.access_token, stored.refresh_token, stored.token_expires_at) == (
            SEEDED_API_KEY,
            "",
            None,
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT access_token FROM crm_connections WHERE id = %s", [conn.pk])
            (raw,) = cursor.fetchone()
        health = ConnectionHealth.objects.get(workspace=alice.workspace, crm="odoo")
    assert SEEDED_API_KEY not in raw and raw.startswith("gAAAAA")
    assert (health.status, health.reason) == ("ok", "connected")
    (saved,) = audit_events("odoo_credentials_saved")
    assert saved.payload_json == {
        "crm": "odoo",
        "external_account_key": conn.external_account_key,
        "url": odoo,
        "database": DATABASE,
        "login": LOGIN,
        "api": "json2",
        "version": "19.0",
        "key_last4": SEEDED_API_KEY[-4:],
    }
    assert (saved.actor, saved.workspace_id) == (f"user:{alice.user.pk}", alice.workspace.pk)
    rows = sync_rows()
    assert [(r.operation, r.status, r.workspace_id) for r in rows] == [
        ("detect_version", "SUCCESS", alice.workspace.pk),
        ("identify", "SUCCESS", alice.workspace.pk),
    ]


def test_an_older_odoo_is_saved_for_xmlrpc_and_its_calls_work(alice: Tenant, odoo: str) -> None:
    reset(odoo, major_version=17)
    conn = save(alice, odoo)
    assert (conn.external_account_json["api"], conn.external_account_json["uid"]) == ("xmlrpc", 2)
    account = account_for(conn)
    assert (account.instance_url, account.details["database"], account.details["uid"]) == (odoo, DATABASE, 2)
    provider = get_provider("odoo")
    assert call_with_token(conn.pk, lambda a: provider.find_contact(a, MAYA)) == "7"
    with system_scope():
        assert [r.operation for r in SyncLog.objects.filter(connection=conn)] == ["find_contact"]


def test_saving_again_updates_the_same_row_and_is_audited(alice: Tenant, odoo: str) -> None:
    first = save(alice, odoo)
    with system_scope():
        CrmConnection.objects.filter(pk=first.pk).update(status="error", last_error="access_token_rejected")
    new_key = requests.post(f"{odoo}/_sandbox/tokens", json={}, timeout=5).json()["api_key"]
    second = save(alice, odoo, api_key=new_key, login="  other@acme.example ")
    assert second.pk == first.pk
    assert (second.status, second.last_error, second.access_token) == ("connected", "", new_key)
    assert second.external_account_json["key_last4"] == new_key[-4:]
    assert second.external_account_json["login"] == "other@acme.example"
    (updated,) = audit_events("odoo_credentials_updated")
    assert updated.payload_json["previous"] == {
        "status": "error",
        "external_account_key": first.external_account_key,
        "key_last4": SEEDED_API_KEY[-4:],
    }
    assert updated.payload_json["key_last4"] == new_key[-4:]


def test_a_live_connection_stays_live_when_its_key_changes(alice: Tenant, odoo: str) -> None:
    first = save(alice, odoo)
    with system_scope():
        CrmConnection.objects.filter(pk=first.pk).update(dry_run=False)
    assert save(alice, odoo).dry_run is False


# --- refusals: nothing is stored ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"url": "", "database": " ", "login": "", "api_key": ""}, {"url", "database", "login", "api_key"}),
        ({"database": "-acme"}, {"database"}),
        ({"database": "a"}, {"database"}),
        ({"database": "acme db"}, {"database"}),
        ({"database": "x" * 64}, {"database"}),
        ({"login": "bot\x00@acme.example"}, {"login"}),
        ({"login": "x" * 255}, {"login"}),
        ({"api_key": "short"}, {"api_key"}),
        ({"api_key": "has a space in the middle of it"}, {"api_key"}),
        ({"api_key": "k" * 257}, {"api_key"}),
        ({"url": "https://" + "a" * 300 + ".example"}, {"url"}),
        ({"url": 42, "login": None}, {"url", "login"}),
    ],
)
def test_each_field_is_checked_before_anything_is_sent(
    fields: dict[str, Any], errors: set[str], alice: Tenant, odoo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = connect_spy(monkeypatch)
    refusal = refused(alice, odoo, **fields)
    assert set(refusal.errors) == errors
    assert refusal.error_code == "credentials_refused"
    assert spy.targets == []
    assert sync_rows() == []


@pytest.mark.parametrize(
    ("url", "answers", "wording"),
    [
        ("https://169.254.169.254", {}, "private or reserved network"),
        (
            "https://odoo.internal.example",
            {"odoo.internal.example": ["10.1.2.3"]},
            "private or reserved network",
        ),
        (
            "https://metadata.example",
            {"metadata.example": ["169.254.169.254"]},
            "private or reserved network",
        ),
        ("https://acme.odoo.com@169.254.169.254", {}, "'@'"),
        ("https://acme.odoo.com:8069", {}, "port (443)"),
        ("http://acme.odoo.com", {}, "https://"),
        ("https://acme.odoo.com/web#home", {}, "without a path"),
        ("https://nowhere.example", {"nowhere.example": []}, "could not resolve"),
    ],
)
def test_an_unsafe_or_unknown_address_is_refused_with_no_request(
    url: str,
    answers: dict[str, list[str]],
    wording: str,
    alice: Tenant,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    production_settings(settings)
    fake_dns(monkeypatch, answers)
    spy = connect_spy(monkeypatch)
    refusal = refused(alice, url)
    assert list(refusal.errors) == ["url"]
    assert wording in refusal.errors["url"]
    assert spy.targets == []
    assert sync_rows() == []


@pytest.mark.parametrize(("major", "what"), [(19, "API key"), (17, "login and API key")])
def test_a_wrong_key_is_refused_and_nothing_is_stored(
    major: int, what: str, alice: Tenant, odoo: str
) -> None:
    reset(odoo, major_version=major)
    refusal = refused(alice, odoo, api_key="f" * 40)
    assert refusal.errors == {
        "api_key": f"Odoo refused this {what}. Check it, and that the key has not expired."
    }
    assert refusal.error_code == {19: "api_key_rejected", 17: "invalid_credentials"}[major]
    assert sync_rows()[-1].status == "FAILED"


@pytest.mark.parametrize("major", [19, 17])
def test_an_unknown_database_is_named(major: int, alice: Tenant, odoo: str) -> None:
    reset(odoo, major_version=major)
    refusal = refused(alice, odoo, database="nope")
    assert list(refusal.errors) == ["database"]
    assert "no database named 'nope'" in refusal.errors["database"]
    assert refusal.error_code == "unknown_database"


def test_an_unreachable_server_is_named(alice: Tenant, settings: Any) -> None:
    sandbox_settings(settings)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refusal = refused(alice, f"http://127.0.0.1:{port}")
    assert refusal.errors["url"].startswith(f"Conduit could not connect to 127.0.0.1:{port}.")
    assert refusal.error_code == "network_error"


@pytest.mark.parametrize(
    ("status", "headers", "code", "wording"),
    [
        (404, {}, "not_odoo", "did not answer like Odoo"),
        (200, {}, "not_odoo", "did not answer like Odoo"),
        (302, {"Location": "https://acme.odoo.com/"}, "unexpected_redirect", "does not follow"),
    ],
)
def test_a_server_that_is_not_odoo_or_redirects_is_named(
    status: int, headers: dict[str, str], code: str, wording: str, alice: Tenant, settings: Any
) -> None:
    sandbox_settings(settings)
    with tiny_server(status, headers) as other:
        refusal = refused(alice, other["url"])
    assert refusal.error_code == code
    assert wording in refusal.errors["url"]


def test_a_host_that_turns_private_between_form_and_call_is_refused(
    alice: Tenant, odoo: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = odoo.rsplit(":", 1)[1]
    dns = fake_dns(
        monkeypatch, {"odoo.flip.test": [["127.0.0.1"], ["10.0.0.1"]], "odoo.gone.test": [["127.0.0.1"], []]}
    )
    refusal = refused(alice, f"http://odoo.flip.test:{port}")
    assert (refusal.error_code, list(refusal.errors)) == ("unsafe_url", ["url"])
    assert "private or reserved network" in refusal.errors["url"]
    refusal = refused(alice, f"http://odoo.gone.test:{port}")
    assert (refusal.error_code, refusal.errors["url"]) == (
        "dns_error",
        "Conduit could not resolve this host name.",
    )
    assert dns.lookups == {"odoo.flip.test": 2, "odoo.gone.test": 2}


@pytest.mark.parametrize(
    ("fault", "code", "wording"),
    [
        ("server_error", "http_500", "did not answer properly (http_500)"),
        ("missing_scope", "missing_scope", "lacks the access rights"),
        ("validation", "validation_error", "Odoo refused the check (validation_error)."),
    ],
)
def test_other_failures_of_the_check_say_so_in_one_sentence(
    fault: str, code: str, wording: str, alice: Tenant, odoo: str
) -> None:
    inject(odoo, fault, path_contains="context_get")
    refusal = refused(alice, odoo)
    assert refusal.error_code == code
    assert refusal.errors == {"": refusal.errors[""]}
    assert wording in refusal.errors[""]


def test_a_rate_limited_check_asks_to_try_again(alice: Tenant, odoo: str) -> None:
    requests.post(f"{odoo}/_sandbox/config", json={"requests_per_second": 0}, timeout=5)
    refusal = refused(alice, odoo)
    assert refusal.errors == {"": "Odoo asked Conduit to slow down. Try again in a minute."}


@pytest.mark.parametrize("role", [Membership.Role.MEMBER, None])
def test_only_owners_and_admins_save_credentials(
    role: str | None, make_workspace: Callable[..., Tenant], alice: Tenant, odoo: str
) -> None:
    if role is None:
        actor = make_workspace("mallory").user  # a member of another workspace
    else:
        actor = make_workspace("carol", role=role).user
        with system_scope():
            Membership.objects.create(workspace=alice.workspace, user=actor, role=role)
    with pytest.raises(NotWorkspaceAdmin):
        do_save_odoo_credentials(
            alice.workspace, url=odoo, database=DATABASE, login=LOGIN, api_key=SEEDED_API_KEY, actor=actor
        )
    assert sync_rows() == []


def test_an_admin_may_save(make_workspace: Callable[..., Tenant], odoo: str) -> None:
    admin = make_workspace("dora", role=Membership.Role.ADMIN)
    assert save(admin, odoo).status == "connected"


# --- disconnect, health, and the key kept secret ------------------------------------------------


def test_disconnect_forgets_the_key_and_says_it_was_not_revoked(
    alice: Tenant, odoo: str, capture_json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    conn = save(alice, odoo)
    with system_scope():
        revoked = do_disconnect(CrmConnection.objects.get(pk=conn.pk), actor=alice.user)
        conn.refresh_from_db()
        assert not ConnectionHealth.objects.filter(workspace=alice.workspace, crm="odoo").exists()
    assert revoked is False
    assert (conn.status, conn.access_token, conn.refresh_token) == ("disconnected", "", "")
    (event,) = audit_events("crm_disconnected")
    assert event.payload_json == {
        "crm": "odoo",
        "external_account_key": conn.external_account_key,
        "revoked": False,
        "reason": "requested",
    }
    assert any(line.get("error_code") == "revoke_not_supported" for line in capture_json_logs())
    assert save(alice, odoo).pk != conn.pk  # a new connection after a disconnect


def test_a_forced_refresh_leaves_an_api_key_connection_alone(alice: Tenant, odoo: str) -> None:
    conn = save(alice, odoo)
    assert get_provider("odoo").uses_oauth is False
    refreshed = refresh_connection(conn.pk, force=True)
    assert (refreshed.status, refreshed.access_token, refreshed.last_error) == (
        "connected",
        SEEDED_API_KEY,
        "",
    )
    assert audit_events("crm_connection_error") == []


def test_the_hourly_check_reaches_odoo(alice: Tenant, odoo: str) -> None:
    conn = save(alice, odoo)
    result = check_connection(conn.pk)
    assert (result.status, result.reason) == ("ok", "ok")
    requests.post(f"{odoo}/_sandbox/revoke", json={"api_key": SEEDED_API_KEY}, timeout=5)
    result = check_connection(conn.pk)
    assert (result.status, result.reason) == ("warning", "auth_failed")


def test_the_key_appears_in_no_log_row_payload_error_or_crm_write(
    alice: Tenant, odoo: str, capture_json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    key = requests.post(f"{odoo}/_sandbox/tokens", json={}, timeout=5).json()["api_key"]
    errors: list[str] = []
    with pytest.raises(CredentialsRefused) as caught:
        save(alice, odoo, api_key=key, database="nope")
    errors.append(str(caught.value))
    inject(odoo, "validation", path_contains="context_get")
    with pytest.raises(CredentialsRefused) as caught:
        save(alice, odoo, api_key=key)
    errors.append(str(caught.value))
    conn = save(alice, odoo, api_key=key)
    provider = get_provider("odoo")
    account: Account = account_for(conn)
    assert key not in repr(account) and key not in repr(conn.external_account_json)
    provider.write(account, "create_note", activity("7", "21"))
    provider.write(account, "create_task", activity("7", marker=TASK_MARKER))
    check_connection(conn.pk)
    with system_scope():
        do_disconnect(CrmConnection.objects.get(pk=conn.pk), actor=alice.user)
        payloads = json.dumps([e.payload_json for e in AuditEvent.objects.all()])
        sync = json.dumps([[r.summary, r.error_code] for r in SyncLog.objects.all()])
        stored = json.dumps([c.external_account_json for c in CrmConnection.objects.all()])
    written = json.dumps(state(odoo)["messages"] + state(odoo)["activities"])
    logs = json.dumps(capture_json_logs())
    assert len(sync_rows()) >= 8
    places = {
        "errors": " ".join(errors),
        "audit": payloads,
        "sync logs": sync,
        "connection": stored,
        "crm writes": written,
        "logs": logs,
    }
    for where, text in places.items():
        assert key not in text, where
        assert key[:-4] not in text, where
