"""A real browser (Debian chromium via Playwright): sign up, log in, settings, a message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conduit.ingest import ingest_one, parse_raw
from conduit.models import Workspace
from integrations.models import CRM_CHOICES
from tests.conftest import PASSWORD, raw_email, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sign_up_log_in_open_settings_and_a_message(page: Any, live_server: Any, tmp_path: Path) -> None:
    url = live_server.url
    page.goto(f"{url}/signup/")
    page.fill("input[name=email]", "weak@example.com")
    page.fill("input[name=workspace_name]", "Northwind Traders")
    page.fill("input[name=password]", "123")
    page.click("button[type=submit]")
    assert page.locator(".field-error").first.is_visible()
    shot(page, tmp_path, "01-signup-error")

    page.fill("input[name=email]", "owner@northwind.example")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/settings/")
    assert page.locator("h1").inner_text() == "Northwind Traders"
    shot(page, tmp_path, "02-settings")

    page.fill("input[name=name]", "mail-gateway")
    page.click("text=Create token")
    assert page.locator("code.token").inner_text().startswith("cdt_")
    shot(page, tmp_path, "03-token-created")

    page.click("text=Log out")
    page.wait_for_url(f"{url}/accounts/login/")
    page.fill("input[name=username]", "owner@northwind.example")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/settings/")

    workspace = Workspace.objects.get(slug="northwind-traders")
    ingest_one(workspace, parse_raw(raw_email("browser@x", attachment=("quote.csv", "text/csv", b"a,b\n"))))
    page.click("nav >> text=Messages")
    shot(page, tmp_path, "04-messages")
    page.click("text=Quarterly review")
    assert "see you Tuesday" in page.locator("pre.body").inner_text()
    assert page.locator("text=quote.csv").is_visible()
    shot(page, tmp_path, "05-message-detail")

    page.click("nav >> text=Integrations")
    assert page.locator("text=Not connected").count() == len(CRM_CHOICES)  # one card per CRM
    shot(page, tmp_path, "06-integrations")
