"""Connecting Zoho CRM in a real browser against the live server and the Zoho sandbox: the card,
the consent page at the accounts server, the callback naming the EU data centre, the card
connected in dry run with its data centre shown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from conduit.tenancy import system_scope
from integrations.models import CrmConnection
from integrations.sandbox.server import start_sandbox
from tests.conftest import PASSWORD, Tenant, shot, zoho_sandbox

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ZOHO_ORG = "7700000000000010001"


@pytest.fixture
def zoho(settings: Any, live_server: Any) -> Iterator[str]:
    sandbox = start_sandbox("zoho", port=0)
    requests.post(f"{sandbox.base_url}/_sandbox/reset", timeout=5)
    settings.CONDUIT_PUBLIC_URL = live_server.url
    zoho_sandbox(settings, sandbox.base_url)  # consent at localhost, the data centre at 127.0.0.1
    yield sandbox.base_url
    sandbox.stop()


def test_connect_zoho_in_the_browser(
    page: Any, live_server: Any, zoho: str, make_workspace: Callable[..., Tenant], tmp_path: Path
) -> None:
    alice = make_workspace("alice")
    url = live_server.url
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=username]", alice.user.username)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/settings/")

    page.goto(f"{url}/settings/integrations/")
    card = page.locator("section.card[data-crm=zoho]")
    assert card.get_by_role("heading", name="Zoho CRM").is_visible()
    assert card.locator("[data-status]").inner_text() == "Not connected"
    assert "ZohoCRM.coql.READ" in card.inner_text()  # the scopes Conduit will ask for
    card.get_by_role("button", name="Connect Zoho CRM").click()

    consent = zoho.replace("://127.0.0.1:", "://localhost:")
    page.wait_for_url(lambda current: current.startswith(f"{consent}/oauth/v2/auth?"))
    assert page.get_by_text("ZohoCRM.modules.notes.CREATE").is_visible()
    shot(page, tmp_path, "zoho-01-consent")
    page.get_by_role("button", name="Allow").click()

    page.wait_for_url(f"{url}/settings/integrations/")
    assert card.locator("[data-status]").inner_text() == "Connected"
    assert card.get_by_text("Dry run", exact=True).is_visible()
    facts = card.locator("dl.facts").inner_text()
    assert f"Sandbox Demo GmbH ({ZOHO_ORG})" in facts and zoho.removeprefix("http://") in facts
    assert "Zoho CRM connected" in page.locator(".flash").inner_text()
    shot(page, tmp_path, "zoho-02-connected")

    with system_scope():
        conn = CrmConnection.objects.get(workspace=alice.workspace, crm="zoho")
    assert (conn.status, conn.external_account_key, conn.dry_run) == ("connected", ZOHO_ORG, True)
    assert conn.environment == zoho and conn.external_account_json["instance_url"] == zoho
