"""Connecting an ATS with typed credentials (integrations/connections/ats_credentials.py) against
the Greenhouse, Lever and Workday sandboxes over real sockets: checked before anything is stored,
refusals named per field, saved encrypted and audited without a secret, updated in place (the old
credentials untouched by a refusal), refreshed under the lock, disconnected; and the wiring the
three providers need elsewhere (registration, planning, cursors, secret scanning)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.db import connection
from django.utils import timezone

from conduit.models import AuditEvent, Membership
from conduit.secrets_scan import looks_secret_value, redact_text
from conduit.tenancy import system_scope
from integrations.connections.ats_credentials import (
    FORMS,
    ats_providers,
    do_save_ats_credentials,
    field_named_in,
    refusal_for,
)
from integrations.connections.credentials import CredentialsRefused, NotWorkspaceAdmin
from integrations.connections.lifecycle import do_disconnect
from integrations.connections.tokens import refresh_connection
from integrations.cursors.pull import connections_to_pull
from integrations.cursors.reset import InvalidReset, check_target
from integrations.models import CRM_CHOICES, REAUTH_REASONS, ConnectionHealth, CrmConnection, SyncLog
from integrations.providers import PROVIDERS, get_provider
from integrations.providers.errors import MissingScope, Permanent, RateLimited, Transient
from integrations.sandbox.server import APPS
from tests.ats_helpers import ATS, ats_env, ats_sandboxes, good_fields, rotate, secrets_of
from tests.conftest import Tenant

__all__ = ["ats_env", "ats_sandboxes"]
pytestmark = pytest.mark.django_db


def save(tenant: Tenant, crm: str, fields: dict[str, str]) -> CrmConnection:
    return do_save_ats_credentials(tenant.workspace, crm, fields, actor=tenant.user)


def refused(tenant: Tenant, crm: str, fields: dict[str, str]) -> CredentialsRefused:
    with pytest.raises(CredentialsRefused) as caught:
        save(tenant, crm, fields)
    return caught.value


def audit_events(prefix: str = "integration_credentials") -> list[AuditEvent]:
    with system_scope():
        return list(AuditEvent.objects.filter(event__startswith=prefix).order_by("id"))


def raw_columns(conn: CrmConnection) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM crm_connections WHERE id = %s", [conn.pk])
        return " ".join(str(v) for v in cursor.fetchone())


# --- registration -------------------------------------------------------------------------


def test_the_three_ats_are_registered_everywhere() -> None:
    for crm in ATS:
        provider = get_provider(crm)
        assert crm in PROVIDERS and crm in dict(CRM_CHOICES) and crm in APPS and crm in FORMS
        assert (provider.uses_oauth, provider.pulls_changes, provider.supports_tasks) == (False, False, False)
        assert [f.name for f in FORMS[crm].fields] == list(provider.credential_fields)
    assert get_provider("workday").supports_writes is False
    assert get_provider("greenhouse").supports_writes and get_provider("lever").supports_writes
    assert ats_providers() == list(ATS)
    assert "credentials_invalid" in REAUTH_REASONS


def test_the_settings_budget_the_ats_calls(settings: Any) -> None:
    settings.GREENHOUSE_TEN_SECOND_LIMIT, settings.WORKDAY_REQUESTS_PER_SECOND = 20, 4
    assert get_provider("greenhouse").api_bucket().window == 10
    assert get_provider("workday").api_bucket().limit < 4
    assert get_provider("lever").api_bucket().window == 1


def test_the_ats_have_no_sync_cursors(alice: Tenant, ats_env: dict[str, str]) -> None:
    save(alice, "lever", good_fields("lever", ats_env))
    assert connections_to_pull() == []
    with pytest.raises(InvalidReset, match="no incremental pull"):
        check_target("greenhouse", "contact")


def test_basic_credentials_look_secret_and_are_redacted() -> None:
    import base64

    basic = "Basic " + base64.b64encode(b"lvr-sandbox-key-0123456789:").decode()
    assert looks_secret_value(basic) and basic.split()[1] not in redact_text(f"sent {basic}")
    assert not looks_secret_value("basic information about the plan")
    assert redact_text("the Basic plan") == "the Basic plan"


# --- connecting -----------------------------------------------------------------------------


@pytest.mark.parametrize("crm", ATS)
def test_good_credentials_connect_in_dry_run_encrypted_and_audited(
    crm: str, alice: Tenant, ats_env: dict[str, str]
) -> None:
    fields = good_fields(crm, ats_env)
    conn = save(alice, crm, fields)
    assert (conn.status, conn.dry_run, conn.last_error) == ("connected", True, "")
    assert conn.access_token and conn.external_account_key
    details = conn.external_account_json
    secret = secrets_of(crm, fields)[0]
    assert details["key_last4"] == secret[-4:] and details["credentials_set_at"]
    assert not any(s in json.dumps(details) for s in secrets_of(crm, fields))
    assert not any(s in raw_columns(conn) for s in secrets_of(crm, fields))  # encrypted at rest
    [event] = audit_events()
    assert event.event == "integration_credentials_set"
    assert event.payload_json == {
        "crm": crm,
        "external_account_key": conn.external_account_key,
        "key_last4": secret[-4:],
    }
    with system_scope():
        health = ConnectionHealth.objects.get(connection=conn)
    assert (health.status, health.reason) == ("ok", "connected")


def test_greenhouse_token_and_bundle_are_kept_for_refresh(alice: Tenant, ats_env: dict[str, str]) -> None:
    conn = save(alice, "greenhouse", good_fields("greenhouse", ats_env))
    bundle = json.loads(conn.refresh_token)
    assert set(bundle) == {"client_id", "client_secret", "user_id"} and conn.token_expires_at
    assert conn.external_account_json["organization_name"]
    assert conn.account_label.startswith(conn.external_account_json["organization_name"])


def test_workday_keeps_its_host_and_tenant(alice: Tenant, ats_env: dict[str, str]) -> None:
    conn = save(alice, "workday", good_fields("workday", ats_env))
    details = conn.external_account_json
    assert details["tenant"] == "conduit_sandbox" and details["instance_url"] == ats_env["workday"]
    assert conn.external_account_key.startswith("conduit_sandbox@")


@pytest.mark.parametrize(
    ("crm", "field", "value", "sentence"),
    [
        ("greenhouse", "client_id", "", "Enter the client ID."),
        ("greenhouse", "user_id", "abc", "The user ID is the number"),
        ("lever", "api_key", "", "Enter the Lever API key."),
        ("lever", "api_key", "has space in it 0123456789", "one word"),
        ("workday", "host", "evil.example.com", "The Workday host must be a name under"),
        ("workday", "tenant", "bad tenant!", "The tenant is the name after"),
        ("workday", "refresh_token", "", "Enter the refresh token."),
    ],
)
def test_a_bad_field_is_named_and_nothing_is_stored(
    crm: str, field: str, value: str, sentence: str, alice: Tenant, ats_env: dict[str, str]
) -> None:
    exc = refused(alice, crm, {**good_fields(crm, ats_env), field: value})
    assert list(exc.errors) == [field] and sentence in exc.errors[field]
    assert exc.error_code == "invalid_field"
    with system_scope():
        assert not CrmConnection.objects.exists() and not SyncLog.objects.exists()
    assert audit_events() == []


@pytest.mark.parametrize(("crm", "field"), [("greenhouse", "client_secret"), ("lever", "api_key")])
def test_a_refused_key_is_a_form_error_on_the_secret(
    crm: str, field: str, alice: Tenant, ats_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-secret-0123456789abcdef0123"
    exc = refused(alice, crm, {**good_fields(crm, ats_env), field: wrong})
    assert list(exc.errors) == [field] and "refused" in exc.errors[field]
    assert exc.error_code == "credentials_invalid" and wrong not in str(exc)
    with system_scope():
        assert not CrmConnection.objects.exists()
        logged = json.dumps(list(SyncLog.objects.values()), default=str)
    assert "credentials_invalid" in logged  # the refused check is in the sync logs, without the secret
    assert wrong not in logged and wrong not in caplog.text
    assert audit_events() == []


def test_an_unknown_workday_tenant_is_an_error_on_the_tenant(alice: Tenant, ats_env: dict[str, str]) -> None:
    exc = refused(alice, "workday", {**good_fields("workday", ats_env), "tenant": "nobody_here"})
    assert list(exc.errors) == ["tenant"] and exc.error_code == "unknown_tenant"


def test_a_refused_workday_secret_is_an_error_on_the_secret(alice: Tenant, ats_env: dict[str, str]) -> None:
    exc = refused(
        alice, "workday", {**good_fields("workday", ats_env), "client_secret": "not-the-secret-0000"}
    )
    assert list(exc.errors) == ["client_secret"] and exc.error_code == "credentials_invalid"


@pytest.mark.parametrize(
    ("exc", "field", "words"),
    [
        (MissingScope("lever", ["notes:write:admin"]), "api_key", "notes:write:admin"),
        (RateLimited("lever", retry_after=30.0), "", "slow down"),
        (Transient("lever", "http_503", "down"), "", "did not answer properly (http_503)"),
        (Permanent("lever", "account_unidentified", "too many users"), "", "refused the check"),
    ],
)
def test_other_refusals_name_the_problem(exc: Any, field: str, words: str) -> None:
    refusal = refusal_for("lever", exc)
    assert list(refusal.errors) == [field] and words in refusal.errors[field]


def test_the_field_of_a_sentence() -> None:
    assert field_named_in("workday", "The client secret is one word") == "client_secret"
    assert field_named_in("workday", "Something else entirely") == ""


def test_only_admins_save_credentials(alice: Tenant, make_workspace: Any, ats_env: dict[str, str]) -> None:
    member = make_workspace("carol", role=Membership.Role.MEMBER)
    with pytest.raises(NotWorkspaceAdmin):
        do_save_ats_credentials(member.workspace, "lever", good_fields("lever", ats_env), actor=member.user)
    with pytest.raises(ValueError, match="not connected with a credentials form"):
        do_save_ats_credentials(alice.workspace, "odoo", {}, actor=alice.user)


# --- updating, rotation, refresh, disconnect ------------------------------------------------


@pytest.mark.parametrize("crm", ATS)
def test_a_refused_update_leaves_the_old_credentials_working(
    crm: str, alice: Tenant, ats_env: dict[str, str]
) -> None:
    fields = good_fields(crm, ats_env)
    conn = save(alice, crm, fields)
    before = (conn.access_token, conn.refresh_token, dict(conn.external_account_json))
    secret_field = FORMS[crm].refused_field
    refused(alice, crm, {**fields, secret_field: "not-the-right-one-0123456789"})
    conn.refresh_from_db()
    assert (conn.access_token, conn.refresh_token, conn.external_account_json) == before
    assert conn.status == "connected"
    assert get_provider(crm).check_health(account_of(conn)).latency_ms >= 0
    assert [e.event for e in audit_events()] == ["integration_credentials_set"]


def account_of(conn: CrmConnection) -> Any:
    from integrations.connections.tokens import account_for

    return account_for(conn)


@pytest.mark.parametrize("crm", ATS)
def test_rotated_credentials_update_the_connection_in_place(
    crm: str, alice: Tenant, ats_env: dict[str, str]
) -> None:
    conn = save(alice, crm, good_fields(crm, ats_env))
    fresh = rotate(crm, ats_env)
    updated = save(alice, crm, fresh)
    assert updated.pk == conn.pk and updated.status == "connected"
    assert updated.external_account_json["key_last4"] == secrets_of(crm, fresh)[0][-4:]
    rotated = audit_events()[-1]
    assert rotated.event == "integration_credentials_rotated"
    assert rotated.payload_json["previous"]["key_last4"] == secrets_of(crm, good_fields(crm, ats_env))[0][-4:]
    dumped = json.dumps([e.payload_json for e in audit_events()])
    assert not any(
        s in dumped for s in [*secrets_of(crm, fresh), *secrets_of(crm, good_fields(crm, ats_env))]
    )


@pytest.mark.parametrize("crm", ["greenhouse", "workday"])
def test_a_token_refresh_with_rotated_credentials_marks_credentials_invalid(
    crm: str, alice: Tenant, ats_env: dict[str, str]
) -> None:
    conn = save(alice, crm, good_fields(crm, ats_env))
    refreshed = refresh_connection(conn.pk, force=True)
    assert refreshed.status == "connected" and refreshed.access_token
    rotate(crm, ats_env)
    failed = refresh_connection(conn.pk, force=True)
    assert (failed.status, failed.last_error, failed.access_token) == ("error", "credentials_invalid", "")
    assert failed.runbook_status == "needs_reauth"


def test_an_expiring_greenhouse_token_is_refreshed_before_a_call(
    alice: Tenant, ats_env: dict[str, str]
) -> None:
    from integrations.connections.tokens import call_with_token

    conn = save(alice, "greenhouse", good_fields("greenhouse", ats_env))
    with system_scope():
        CrmConnection.objects.filter(pk=conn.pk).update(
            token_expires_at=timezone.now() - timedelta(minutes=1)
        )
    result = call_with_token(conn.pk, get_provider("greenhouse").check_health)
    conn.refresh_from_db()
    assert result.latency_ms >= 0
    assert conn.token_expires_at is not None and conn.token_expires_at > timezone.now()


def test_a_lever_key_is_not_refreshed(alice: Tenant, ats_env: dict[str, str]) -> None:
    conn = save(alice, "lever", good_fields("lever", ats_env))
    assert refresh_connection(conn.pk, force=True).access_token == conn.access_token


@pytest.mark.parametrize("crm", ATS)
def test_disconnect_forgets_the_credentials(crm: str, alice: Tenant, ats_env: dict[str, str]) -> None:
    conn = save(alice, crm, good_fields(crm, ats_env))
    with system_scope():
        do_disconnect(conn, actor=alice.user)
    conn.refresh_from_db()
    assert (conn.status, conn.access_token, conn.refresh_token) == ("disconnected", "", "")
    again = save(alice, crm, good_fields(crm, ats_env))
    assert again.pk != conn.pk and audit_events()[-1].event == "integration_credentials_set"


def test_the_refresh_command_says_a_lever_key_has_no_refresh(alice: Tenant, ats_env: dict[str, str]) -> None:
    from io import StringIO

    from django.core.management import call_command

    save(alice, "lever", good_fields("lever", ats_env))
    out = StringIO()
    call_command("refresh_crm_token", "--workspace", alice.workspace.slug, "--crm", "lever", stdout=out)
    assert "has no refresh" in out.getvalue()
    save(alice, "greenhouse", good_fields("greenhouse", ats_env))
    out = StringIO()
    call_command("refresh_crm_token", "--workspace", alice.workspace.slug, "--crm", "greenhouse", stdout=out)
    assert "token refreshed" in out.getvalue()


def test_sandbox_rotation_revokes_the_old_lever_key(ats_env: dict[str, str]) -> None:
    old = good_fields("lever", ats_env)["api_key"]
    new = rotate("lever", ats_env)["api_key"]
    assert new != old
    answer = requests.get(f"{ats_env['lever']}/v1/users", auth=(old, ""), timeout=5)
    assert answer.status_code == 401
