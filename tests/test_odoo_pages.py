"""Odoo on the Integrations page: the card of a CRM connected with an API key (Connect is a link
to the credentials form, Update credentials instead of Reconnect, the API and version, database,
login and the key's last 4 characters, the hint to delete the key in Odoo), the credentials form
(admins only, errors next to each field, the key never rendered back), and the OAuth doors
(connect, install, callback) refusing Odoo clearly. Against the Odoo sandbox (crm_env)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from django.test import Client

from conduit.models import AuditEvent
from conduit.tenancy import system_scope
from integrations.models import ConnectionHealth, CrmConnection, OAuthState
from integrations.pages.cards import credentials_facts, guidance_for, health_for
from integrations.sandbox.odoo_data import DATABASE, LOGIN, SEEDED_API_KEY
from tests.conftest import Tenant
from tests.odoo_helpers import inject
from tests.ops_helpers import make_connection, make_health
from tests.reconcile_helpers import odoo_form

pytestmark = pytest.mark.django_db
FORM = "/settings/integrations/odoo/credentials/"
PAGE = "/settings/integrations/"
WRONG_KEY = "0badc0de" * 5


def odoo_card(client: Client) -> str:
    page = client.get(PAGE).content.decode()
    start = page.index('<section class="card" data-crm="odoo">')
    return page[start : page.index("</section>", start)]


def connections() -> list[CrmConnection]:
    with system_scope():
        return list(CrmConnection.objects.filter(crm="odoo"))


def events(prefix: str = "odoo_") -> list[str]:
    with system_scope():
        rows = AuditEvent.objects.filter(event__startswith=prefix).order_by("id")
        return list(rows.values_list("event", flat=True))


# --- the card -----------------------------------------------------------------------------------


def test_the_card_of_an_unconnected_odoo_links_to_the_credentials_form(alice: Tenant) -> None:
    card = odoo_card(alice.client())
    assert f'href="{FORM}"' in card and "Connect Odoo" in card
    assert "/settings/integrations/odoo/connect/" not in card  # no OAuth button
    assert "API key" in card and "Conduit will ask" not in card


def test_a_member_sees_the_card_but_no_buttons(make_workspace: Callable[..., Tenant]) -> None:
    member = make_workspace("carol", role="member")
    card = odoo_card(member.client())
    assert "Not connected" in card and FORM not in card


def test_a_connected_card_shows_the_api_version_database_login_and_last_4(
    crm_env: dict[str, str], alice: Tenant
) -> None:
    client = alice.client()
    assert client.post(FORM, odoo_form()).status_code == 302
    card = odoo_card(client)
    assert "Connected" in card and 'data-api="json2"' in card and "JSON-2</span> (Odoo 19.0)" in card
    assert crm_env["odoo"] in card and DATABASE in card
    assert f'{LOGIN}, <span class="nowrap">key …{SEEDED_API_KEY[-4:]}</span>' in card
    assert SEEDED_API_KEY not in card and SEEDED_API_KEY[:-4] not in card
    assert "Update credentials" in card and "Reconnect" not in card
    assert "delete the key in Odoo too (Preferences → Account Security)" in card
    assert "Conduit deletes its copy of the API key" in card  # the Disconnect confirmation


def test_an_older_odoo_is_shown_as_xmlrpc(crm_env: dict[str, str], alice: Tenant) -> None:
    requests.post(f"{crm_env['odoo']}/_sandbox/config", json={"major_version": 17}, timeout=5)
    client = alice.client()
    saved = client.post(FORM, odoo_form(), follow=True)
    assert "over XML-RPC (Odoo 17.0)" in str([str(m) for m in saved.context["messages"]])
    card = odoo_card(client)
    assert 'data-api="xmlrpc"' in card and "XML-RPC</span> (Odoo 17.0)" in card


def test_a_rejected_key_says_odoo_keys_expire_and_asks_for_new_credentials(alice: Tenant) -> None:
    make_connection(
        alice.workspace, "odoo", status="error", last_error="access_token_rejected", access_token=""
    )
    card = odoo_card(alice.client())
    assert "Odoo refused Conduit&#x27;s API key. Odoo API keys expire" in card
    assert "New API Key" in card and "Reconnect" not in card
    assert f'class="button primary" href="{FORM}"' in card and "Update credentials" in card


def test_missing_rights_ask_for_the_rights_in_odoo(alice: Tenant) -> None:
    conn = make_connection(
        alice.workspace,
        "odoo",
        status="error",
        last_error="missing_scope",
        external_account_json={"missing_scopes": ["mail.activity access"]},
    )
    assert "The Odoo user lacks access rights Conduit needs (mail.activity access)" in guidance_for(
        conn, "Odoo", uses_oauth=False
    )
    assert (
        "Odoo did not grant the permissions Conduit needs: mail.activity access. Reconnect"
        in guidance_for(conn, "Odoo", uses_oauth=True)
    )


@pytest.mark.parametrize(
    ("reason", "key_words", "oauth_words"),
    [
        ("auth_failed", "refused Conduit's API key on the last check", "refused Conduit's access token"),
        ("missing_scope", "Grant them to the Odoo user", "Reconnect and grant them"),
        ("check_rejected", "update the credentials", "reconnect"),
        ("ok", "Conduit's access works", "Conduit's access works"),
    ],
)
def test_health_words_for_an_api_key_connection(
    alice: Tenant, reason: str, key_words: str, oauth_words: str
) -> None:
    conn = make_connection(alice.workspace, "odoo")
    row = make_health(conn, "ok" if reason == "ok" else "warning", reason)
    with system_scope():
        ConnectionHealth.objects.filter(pk=row.pk).update(consecutive_auth_failures=1)
        row.refresh_from_db()
    key = health_for(row, "Odoo", uses_oauth=False)
    oauth = health_for(row, "Odoo")
    assert key is not None and oauth is not None
    assert key_words in key["words"] and oauth_words in oauth["words"]


def test_guidance_and_facts_without_a_connection() -> None:
    assert guidance_for(None, "Odoo", uses_oauth=False) == ""
    assert credentials_facts(None) == {
        "url": "",
        "database": "",
        "login": "",
        "api": "",
        "api_label": "",
        "version": "",
        "key_last4": "",
    }


# --- the form -----------------------------------------------------------------------------------


def test_the_form_asks_for_four_fields_and_never_fills_the_key(
    crm_env: dict[str, str], alice: Tenant
) -> None:
    page = alice.client().get(FORM)
    assert page.status_code == 200
    html = page.content.decode()
    for name in ("url", "database", "login"):
        assert f'name="{name}" value=""' in html
    assert 'type="password" id="odoo-api-key" name="api_key" value=""' in html
    assert 'autocomplete="off"' in html and "Check and connect" in html
    assert crm_env["odoo"] in html  # the development hint names the sandbox


def test_the_sandbox_hint_is_only_shown_in_development(alice: Tenant, settings: Any) -> None:
    settings.ODOO_SANDBOX_URL = ""
    assert b"data-sandbox" not in alice.client().get(FORM).content


def test_only_owners_and_admins_reach_the_form(make_workspace: Callable[..., Tenant], crm_env: Any) -> None:
    member = make_workspace("carol", role="member")
    client = member.client()
    assert client.get(FORM).status_code == 404
    assert client.post(FORM, odoo_form()).status_code == 404
    assert connections() == [] and events() == []
    admin = make_workspace("dave", role="admin")
    assert admin.client().post(FORM, odoo_form()).status_code == 302
    assert Client().get(FORM).status_code == 302  # signed out: to the sign-in page


def test_the_form_takes_only_get_and_post(alice: Tenant) -> None:
    assert alice.client().put(FORM).status_code == 405


def test_a_wrong_key_is_named_next_to_its_field_and_nothing_is_stored(
    crm_env: dict[str, str], alice: Tenant
) -> None:
    answer = alice.client().post(FORM, odoo_form(api_key=WRONG_KEY))
    assert answer.status_code == 400
    html = answer.content.decode()
    field = html[html.index('data-field="api_key"') :]
    assert "Odoo refused this API key" in field[: field.index("</label>")]
    assert f'name="url" value="{crm_env["odoo"]}"' in html
    assert f'name="database" value="{DATABASE}"' in html and f'name="login" value="{LOGIN}"' in html
    assert 'name="api_key" value=""' in html and WRONG_KEY not in html
    assert "Nothing was saved. Fix the highlighted field and try again." in html
    assert connections() == [] and events() == []


def test_every_field_at_fault_is_named_at_once(alice: Tenant) -> None:
    answer = alice.client().post(FORM, {"url": "", "database": "-bad", "login": "x", "api_key": "short"})
    assert answer.status_code == 400
    errors = answer.context["errors"]
    assert set(errors) == {"url", "database", "api_key"}
    html = answer.content.decode()
    assert "Enter the instance URL." in html and "fields and try again" in html
    assert html.count('aria-invalid="true"') == 3


def test_a_refusal_of_the_whole_form_is_said_once_at_the_top(crm_env: dict[str, str], alice: Tenant) -> None:
    inject(crm_env["odoo"], "rate_limit", retry_after=1)
    answer = alice.client().post(FORM, odoo_form())
    assert answer.status_code == 400
    html = answer.content.decode()
    assert "Nothing was saved. Odoo asked Conduit to slow down. Try again in a minute." in html
    assert 'aria-invalid="true"' not in html and connections() == []


def test_saving_connects_then_updates_and_says_which(crm_env: dict[str, str], alice: Tenant) -> None:
    client = alice.client()
    first = client.post(FORM, odoo_form(), follow=True)
    said = [str(m) for m in first.context["messages"]]
    assert said == [
        f"Odoo connected: {crm_env['odoo']}, database {DATABASE}, over JSON-2 (Odoo 19.0), key …"
        f"{SEEDED_API_KEY[-4:]}. New connections start in dry-run mode: Conduit plans the writes and "
        "shows them on this page, and sends nothing until you choose Go live."
    ]
    [conn] = connections()
    assert (conn.status, conn.dry_run, conn.access_token) == ("connected", True, SEEDED_API_KEY)

    form = client.get(FORM).content.decode()  # the saved values come back, the key does not
    assert "Update Odoo credentials" in form and f"key …{SEEDED_API_KEY[-4:]}" in form
    assert f'name="database" value="{DATABASE}"' in form and 'name="api_key" value=""' in form
    assert SEEDED_API_KEY not in form and "Check and save" in form

    new_key = requests.post(f"{crm_env['odoo']}/_sandbox/tokens", json={}, timeout=5).json()["api_key"]
    second = client.post(FORM, odoo_form(api_key=new_key), follow=True)
    said = [str(m) for m in second.context["messages"]]
    assert said[0].startswith("Odoo credentials updated: ")
    assert said[0].endswith(
        f"key …{new_key[-4:]}. It is still in dry run: Conduit sends nothing until you choose Go live."
    )
    [again] = connections()
    assert (again.pk, again.access_token) == (conn.pk, new_key)
    assert events() == ["odoo_credentials_saved", "odoo_credentials_updated"]


def test_disconnect_says_the_key_must_be_deleted_in_odoo(crm_env: dict[str, str], alice: Tenant) -> None:
    client = alice.client()
    client.post(FORM, odoo_form(), follow=True)
    done = client.post("/settings/integrations/odoo/disconnect/", follow=True)
    [said] = [str(m) for m in done.context["messages"]]
    assert said == (
        "Odoo disconnected: Conduit deleted its copy of the API key. Conduit cannot revoke the key "
        "itself: delete it in Odoo (Preferences → Account Security)."
    )
    [conn] = connections()
    assert (conn.status, conn.access_token) == ("disconnected", "")
    assert events("crm_disconnected") == ["crm_disconnected"]


# --- the OAuth doors refuse Odoo -------------------------------------------------------------


def test_the_oauth_connect_button_refuses_odoo_with_a_message(alice: Tenant) -> None:
    answer = alice.client().post("/settings/integrations/odoo/connect/", follow=True)
    assert answer.redirect_chain == [(PAGE, 302)]
    [said] = [str(m) for m in answer.context["messages"]]
    assert said.startswith("Odoo connects with an API key: an admin enters it on the Integrations page")
    with system_scope():
        assert not OAuthState.objects.exists()


def test_a_marketplace_install_link_refuses_odoo(client: Client) -> None:
    answer = client.get("/integrations/install/odoo/")
    assert answer.status_code == 400 and b"Odoo connects with an API key" in answer.content
    with system_scope():
        assert not OAuthState.objects.exists()


def test_an_oauth_callback_for_odoo_is_refused(alice: Tenant) -> None:
    answer = alice.client().get("/integrations/oauth/callback/odoo/?state=made-up&code=x")
    assert answer.status_code == 400 and b"not one Conduit issued" in answer.content
