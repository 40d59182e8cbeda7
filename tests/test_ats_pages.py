"""The ATS on the Integrations page (integrations/pages/views.py ats_credentials, cards.py,
templates/integrations/ats_credentials.html): one admin-only credentials form per provider
driven by its fields (secrets are password inputs, never typed back), 400 with the errors and
nothing stored on bad input, 403 with a reason for a member; the cards show the account, the
secret's last 4 characters and when it was set, Update credentials and Disconnect, the
guidance of credentials_invalid, and Workday's "writes are not available"."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.http import Http404
from django.test import Client, RequestFactory

from conduit.models import Membership
from conduit.tenancy import system_scope
from integrations.models import ConnectionHealth, CrmConnection
from integrations.pages.cards import ats_facts, guidance_for, health_for
from integrations.pages.views import ats_admin_connection
from tests.ats_helpers import (
    ATS,
    FORM_URL,
    ats_env,
    ats_sandboxes,
    connect_ats,
    good_fields,
    live_conn,
    secrets_of,
)
from tests.conftest import Tenant
from tests.ops_helpers import flash

__all__ = ["ats_env", "ats_sandboxes"]
pytestmark = pytest.mark.django_db
PAGE = "/settings/integrations/"


def card_html(client: Client, crm: str) -> str:
    page = client.get(PAGE).content.decode()
    start = page.index(f'<section class="card" data-crm="{crm}">')
    return page[start : page.index("</section>", start)]


@pytest.mark.parametrize("crm", ATS)
def test_a_not_connected_card_links_to_its_form(crm: str, alice: Tenant) -> None:
    card = card_html(alice.client(), crm)
    assert FORM_URL.format(crm=crm) in card and "Connects with" in card and "API credentials" in card


@pytest.mark.parametrize("crm", ATS)
def test_the_form_shows_every_field_and_secrets_as_passwords(crm: str, alice: Tenant) -> None:
    response = alice.client().get(FORM_URL.format(crm=crm))
    assert response.status_code == 200
    html = response.content.decode()
    for name in good_fields(crm, {"workday": "https://x.workday.com"}):
        assert f'name="{name}"' in html
    assert html.count('type="password"') == len(secrets_of(crm, good_fields(crm, {"workday": ""})))


@pytest.mark.parametrize("crm", ATS)
def test_a_member_gets_403_with_the_reason(crm: str, alice: Tenant, make_workspace: Any) -> None:
    member = make_workspace("carol", role=Membership.Role.MEMBER)
    client = member.client()
    for response in (client.get(FORM_URL.format(crm=crm)), client.post(FORM_URL.format(crm=crm), {})):
        assert response.status_code == 403
        assert "only workspace owners and admins can connect" in response.content.decode().lower()
    assert FORM_URL.format(crm=crm) not in card_html(client, crm)


def test_an_unknown_provider_has_no_form(alice: Tenant) -> None:
    request = RequestFactory().get("/")
    with pytest.raises(Http404):
        ats_admin_connection(request, "odoo")


@pytest.mark.parametrize(("crm", "field"), [("greenhouse", "client_secret"), ("lever", "api_key")])
def test_a_refused_key_is_a_400_with_the_error_and_nothing_echoed(
    crm: str, field: str, alice: Tenant, ats_env: dict[str, str]
) -> None:
    wrong = "typed-but-wrong-0123456789abcdef"
    fields = {**good_fields(crm, ats_env), field: wrong}
    response = alice.client().post(FORM_URL.format(crm=crm), fields)
    assert response.status_code == 400
    html = response.content.decode()
    assert "Nothing was saved" in html and "refused" in html and 'aria-invalid="true"' in html
    assert wrong not in html
    with system_scope():
        assert not CrmConnection.objects.exists()


def test_a_bad_workday_tenant_keeps_the_typed_values_but_not_the_secrets(
    alice: Tenant, ats_env: dict[str, str]
) -> None:
    fields = {**good_fields("workday", ats_env), "tenant": "nobody_here"}
    response = alice.client().post(FORM_URL.format(crm="workday"), fields)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'value="nobody_here"' in html and "no tenant by this name" in html
    assert not any(secret in html for secret in secrets_of("workday", fields))


def test_a_form_level_error_is_shown_above_the_form(alice: Tenant, ats_env: dict[str, str]) -> None:
    import requests

    requests.post(f"{ats_env['lever']}/_sandbox/faults", json={"kind": "server_error", "count": 5}, timeout=5)
    response = alice.client().post(FORM_URL.format(crm="lever"), good_fields("lever", ats_env))
    assert response.status_code == 400
    assert "did not answer properly" in response.content.decode()


@pytest.mark.parametrize("crm", ATS)
def test_connecting_shows_the_card_with_last4_and_when(
    crm: str, alice: Tenant, ats_env: dict[str, str]
) -> None:
    fields = good_fields(crm, ats_env)
    client = alice.client()
    response = client.post(FORM_URL.format(crm=crm), fields, follow=True)
    assert response.status_code == 200
    said = " ".join(flash(response))
    assert "connected" in said and secrets_of(crm, fields)[0][-4:] in said
    card = card_html(client, crm)
    assert f"secret …{secrets_of(crm, fields)[0][-4:]}" in card and "data-credentials-set-at" in card
    assert "Update credentials" in card and "Disconnect" in card and "Check now" in card
    assert not any(secret in response.content.decode() + card for secret in secrets_of(crm, fields))
    again = client.get(FORM_URL.format(crm=crm)).content.decode()
    assert "Update" in again and "Saved now" in again
    assert not any(secret in again for secret in secrets_of(crm, fields))


def test_workday_says_writes_are_not_available(alice: Tenant, ats_env: dict[str, str]) -> None:
    connect_ats(alice, "workday", ats_env)
    card = card_html(alice.client(), "workday")
    assert "Writes are not available for Workday" in card and "Go live" not in card
    assert "Writes are not available" in alice.client().get(FORM_URL.format(crm="workday")).content.decode()


def test_greenhouse_card_names_the_organization(alice: Tenant, ats_env: dict[str, str]) -> None:
    conn = connect_ats(alice, "greenhouse", ats_env)
    card = card_html(alice.client(), "greenhouse")
    assert conn.external_account_json["organization_name"] in card and "service account" in card
    assert "Go live" in card


def test_the_facts_of_each_kind_of_card(alice: Tenant) -> None:
    lever = CrmConnection(crm="lever", external_account_json={"api_host": "api.lever.co", "users": 3})
    assert ats_facts("lever", lever)["rows"] == [("API", "api.lever.co"), ("Users the key reads", "3")]
    gh = CrmConnection(crm="greenhouse", external_account_json={"acting_as": "user", "user_id": "42"})
    assert ats_facts("greenhouse", gh)["rows"] == [
        ("Organization", "not named"),
        ("Notes written as", "user 42"),
    ]
    assert ats_facts("workday", None) == {
        "rows": [("Host", ""), ("Tenant", "")],
        "key_last4": "",
        "set_at": None,
    }


@pytest.mark.parametrize("crm", ATS)
def test_an_error_card_asks_to_update_the_credentials(
    crm: str, alice: Tenant, ats_env: dict[str, str]
) -> None:
    conn = connect_ats(alice, crm, ats_env)
    with system_scope():
        CrmConnection.objects.filter(pk=conn.pk).update(status="error", last_error="credentials_invalid")
    card = card_html(alice.client(), crm)
    assert "refused Conduit&#x27;s credentials: they were rotated, revoked or deleted" in card
    assert "Update the credentials to resume" in card and FORM_URL.format(crm=crm) in card


def test_the_ats_guidance_and_health_words(alice: Tenant) -> None:
    conn = CrmConnection(crm="lever", status="error", last_error="access_token_rejected")
    assert "twice in a row" in guidance_for(conn, "Lever", uses_oauth=False)
    conn.last_error = "missing_scope"
    conn.external_account_json = {"missing_scopes": ["notes:write:admin"]}
    assert "notes:write:admin" in guidance_for(conn, "Lever", uses_oauth=False)
    conn.last_error = "something_new"
    assert "(something_new). Update the credentials" in guidance_for(conn, "Lever", uses_oauth=False)


def test_a_sustained_refusal_in_health_words(alice: Tenant, ats_env: dict[str, str]) -> None:
    conn = connect_ats(alice, "lever", ats_env)
    with system_scope():
        ConnectionHealth.objects.filter(connection=conn).update(status="warning", reason="auth_failed")
        row = ConnectionHealth.objects.get(connection=conn)
    words = health_for(row, "Lever", uses_oauth=False, conn=conn)
    assert words is not None and "refused Conduit's credentials on the last check" in words["words"]


@pytest.mark.parametrize("crm", ATS)
def test_disconnect_says_conduit_cannot_revoke(crm: str, alice: Tenant, ats_env: dict[str, str]) -> None:
    connect_ats(alice, crm, ats_env)
    response = alice.client().post(f"/settings/integrations/{crm}/disconnect/", follow=True)
    said = " ".join(flash(response))
    assert "deleted its copy of the credentials" in said and "cannot revoke" in said
    with system_scope():
        assert CrmConnection.objects.get(crm=crm).status == "disconnected"


@pytest.mark.parametrize("crm", ATS)
def test_the_admin_change_page_shows_no_secret(crm: str, alice: Tenant, ats_env: dict[str, str]) -> None:
    conn = connect_ats(alice, crm, ats_env)
    with system_scope():
        user = User.objects.create_superuser("ops@example.com", "ops@example.com", "pw-ops-123456")
    staff = Client()
    staff.force_login(user)
    pages = [
        staff.get("/admin/integrations/crmconnection/"),
        staff.get(f"/admin/integrations/crmconnection/{conn.pk}/change/"),
        staff.get("/admin/integrations/synclog/"),
        staff.get("/admin/conduit/auditevent/"),
    ]
    assert [p.status_code for p in pages] == [200, 200, 200, 200]
    html = "".join(p.content.decode() for p in pages)
    fresh = live_conn(alice, crm)
    tokens = [t for t in (fresh.access_token, fresh.refresh_token) if t]
    assert not any(secret in html for secret in [*secrets_of(crm, good_fields(crm, ats_env)), *tokens])
