"""Connecting Odoo in a real browser against the live server and the Odoo sandbox: the card's
Connect link, the credentials form refusing a wrong key (nothing stored, the typed fields kept,
the key field empty), the right key connecting over JSON-2 with only the key's last 4 characters
shown, a rotated key saved through Update credentials, then Disconnect with the hint to delete
the key in Odoo."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from conduit.models import AuditEvent
from conduit.tenancy import system_scope
from integrations.models import CrmConnection
from integrations.sandbox.odoo_data import DATABASE, LOGIN, SEEDED_API_KEY
from integrations.sandbox.server import start_sandbox
from tests.conftest import PASSWORD, Tenant, odoo_sandbox, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WRONG_KEY = "0badc0de" * 5


@pytest.fixture
def odoo(settings: Any, live_server: Any) -> Iterator[str]:
    sandbox = start_sandbox("odoo", port=0)
    requests.post(f"{sandbox.base_url}/_sandbox/reset", timeout=5)
    settings.CONDUIT_PUBLIC_URL = live_server.url
    odoo_sandbox(settings, sandbox.base_url)
    yield sandbox.base_url
    sandbox.stop()


def fill_form(page: Any, odoo: str, key: str) -> None:
    page.fill("input[name=url]", odoo)
    page.fill("input[name=database]", DATABASE)
    page.fill("input[name=login]", LOGIN)
    page.fill("input[name=api_key]", key)


def test_connect_odoo_in_the_browser(
    page: Any, live_server: Any, odoo: str, make_workspace: Callable[..., Tenant], tmp_path: Path
) -> None:
    alice = make_workspace("alice")
    url = live_server.url
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=username]", alice.user.username)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/settings/")

    page.goto(f"{url}/settings/integrations/")
    card = page.locator("section.card[data-crm=odoo]")
    assert card.get_by_role("heading", name="Odoo").is_visible()
    assert card.locator("[data-status]").inner_text() == "Not connected"
    assert "API key" in card.inner_text()
    card.get_by_role("link", name="Connect Odoo").click()

    page.wait_for_url(f"{url}/settings/integrations/odoo/credentials/")
    assert page.get_by_role("heading", name="Connect Odoo").is_visible()
    assert page.locator("input[name=api_key]").get_attribute("type") == "password"
    assert page.locator("input[name=api_key]").get_attribute("autocomplete") == "off"
    shot(page, tmp_path, "odoo-01-form")

    fill_form(page, odoo, WRONG_KEY)
    page.get_by_role("button", name="Check and connect").click()
    page.wait_for_load_state()
    key_error = page.locator("[data-field=api_key] .field-error")
    assert "Odoo refused this API key" in key_error.inner_text()
    assert "Nothing was saved" in page.locator("[data-form-error]").inner_text()
    assert page.locator("input[name=url]").input_value() == odoo  # what was typed stays
    assert page.locator("input[name=database]").input_value() == DATABASE
    assert page.locator("input[name=login]").input_value() == LOGIN
    assert page.locator("input[name=api_key]").input_value() == ""  # the key is never sent back
    assert WRONG_KEY not in page.content()
    with system_scope():
        assert not CrmConnection.objects.filter(workspace=alice.workspace, crm="odoo").exists()
    shot(page, tmp_path, "odoo-02-wrong-key")

    page.fill("input[name=api_key]", SEEDED_API_KEY)
    page.get_by_role("button", name="Check and connect").click()
    page.wait_for_url(f"{url}/settings/integrations/")
    assert card.locator("[data-status]").inner_text() == "Connected"
    assert card.get_by_text("Dry run", exact=True).is_visible()
    facts = card.locator("dl.facts").inner_text()
    assert "JSON-2 (Odoo 19.0)" in facts and f"{LOGIN}, key …{SEEDED_API_KEY[-4:]}" in facts
    assert odoo in facts and DATABASE in facts
    assert "Odoo connected" in page.locator(".flash").inner_text()
    assert card.get_by_role("link", name="Update credentials").is_visible()
    assert "delete the key in Odoo" in card.inner_text()
    assert SEEDED_API_KEY not in page.content()
    shot(page, tmp_path, "odoo-03-connected")

    with system_scope():
        conn = CrmConnection.objects.get(workspace=alice.workspace, crm="odoo")
    assert (conn.status, conn.dry_run, conn.access_token) == ("connected", True, SEEDED_API_KEY)
    assert conn.external_account_json["api"] == "json2"

    # the key is rotated: a new one from Odoo, saved through the same form
    new_key = requests.post(f"{odoo}/_sandbox/tokens", json={}, timeout=5).json()["api_key"]
    card.get_by_role("link", name="Update credentials").click()
    page.wait_for_url(f"{url}/settings/integrations/odoo/credentials/")
    assert page.get_by_role("heading", name="Update Odoo credentials").is_visible()
    assert f"key …{SEEDED_API_KEY[-4:]}" in page.locator("[data-current]").inner_text()
    assert page.locator("input[name=url]").input_value() == odoo  # the saved values, not the key
    assert page.locator("input[name=api_key]").input_value() == ""
    shot(page, tmp_path, "odoo-04-update-form")
    page.fill("input[name=api_key]", new_key)
    page.get_by_role("button", name="Check and save").click()
    page.wait_for_url(f"{url}/settings/integrations/")
    assert "Odoo credentials updated" in page.locator(".flash").inner_text()
    assert f"key …{new_key[-4:]}" in card.locator("dl.facts").inner_text()
    assert new_key not in page.content() and SEEDED_API_KEY not in page.content()

    page.once("dialog", lambda dialog: dialog.accept())
    card.get_by_role("button", name="Disconnect").click()
    page.wait_for_load_state()
    assert card.locator("[data-status]").inner_text() == "Not connected"
    flash = page.locator(".flash").inner_text()
    assert "Odoo disconnected" in flash and "delete it in Odoo (Preferences → Account Security)" in flash
    shot(page, tmp_path, "odoo-05-disconnected")
    with system_scope():
        conn.refresh_from_db()
        events = list(AuditEvent.objects.filter(workspace=alice.workspace).values_list("event", flat=True))
    assert (conn.status, conn.access_token) == ("disconnected", "")
    assert {"odoo_credentials_saved", "odoo_credentials_updated", "crm_disconnected"} <= set(events)
