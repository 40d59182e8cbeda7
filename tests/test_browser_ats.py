"""Connecting the ATS in a real browser against the live server and the Greenhouse, Lever and
Workday sandboxes, with screenshots of the forms (errors included) and the cards: the card's
Connect link, a refused key (nothing stored, typed fields kept, secret fields empty), the right
credentials connecting with only the last 4 characters shown, the error card after the key was
rotated at the sandbox with its "Update credentials", and the update bringing it back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from conduit.tenancy import system_scope
from integrations.health.checks import check_connection
from integrations.models import CrmConnection
from integrations.sandbox.server import start_sandbox
from tests.ats_helpers import ATS, good_fields, rotate, secrets_of
from tests.conftest import Tenant, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WRONG = "typed-but-wrong-0123456789abcdef"
BAD_FIELD = {
    "greenhouse": ("client_secret", WRONG),
    "lever": ("api_key", WRONG),
    "workday": ("tenant", "nobody_here"),
}
ERROR_WORDS = {
    "greenhouse": "Greenhouse refused these credentials",
    "lever": "Lever refused this API key",
    "workday": "no tenant by this name",
}


@pytest.fixture
def sandboxes(settings: Any, live_server: Any) -> Iterator[dict[str, str]]:
    running = {name: start_sandbox(name, port=0) for name in ATS}
    env = {name: sandbox.base_url for name, sandbox in running.items()}
    for base in env.values():
        requests.post(f"{base}/_sandbox/reset", timeout=5)
    settings.CONDUIT_PUBLIC_URL = live_server.url
    settings.GREENHOUSE_API_BASE_URL = env["greenhouse"]
    settings.GREENHOUSE_TOKEN_URL = f"{env['greenhouse']}/token"
    settings.LEVER_API_BASE_URL = f"{env['lever']}/v1"
    settings.WORKDAY_EXTRA_ORIGINS = [env["workday"]]
    yield env
    for sandbox in running.values():
        sandbox.stop()


def fill(page: Any, fields: dict[str, str]) -> None:
    for name, value in fields.items():
        page.fill(f"input[name={name}]", value)


@pytest.mark.parametrize("crm", ATS)
def test_connect_an_ats_in_the_browser(
    crm: str, page: Any, live_server: Any, sandboxes: dict[str, str], alice: Tenant, tmp_path: Path
) -> None:
    url = live_server.url
    label = crm.capitalize()
    sign_in(page, url, alice)
    page.goto(f"{url}/settings/integrations/")
    card = page.locator(f"section.card[data-crm={crm}]")
    assert card.locator("[data-status]").inner_text() == "Not connected"
    card.get_by_role("link", name=f"Connect {label}").click()
    page.wait_for_url(f"{url}/settings/integrations/{crm}/credentials/")
    assert page.get_by_role("heading", name=f"Connect {label}").is_visible()
    seeded = good_fields(crm, sandboxes)
    for name in secrets_of(crm, {k: k for k in seeded}):
        assert page.locator(f"input[name={name}]").get_attribute("type") == "password"
    shot(page, tmp_path, f"{crm}-01-form")

    field, bad = BAD_FIELD[crm]
    fill(page, {**seeded, field: bad})
    page.get_by_role("button", name="Check and connect").click()
    page.wait_for_load_state()
    assert ERROR_WORDS[crm] in page.locator(f"[data-field={field}] .field-error").inner_text()
    assert "Nothing was saved" in page.locator("[data-form-error]").inner_text()
    for name in secrets_of(crm, {k: k for k in seeded}):
        assert page.locator(f"input[name={name}]").input_value() == ""  # never sent back
    assert WRONG not in page.content()
    shot(page, tmp_path, f"{crm}-02-form-error")
    with system_scope():
        assert not CrmConnection.objects.filter(crm=crm).exists()

    fill(page, seeded)
    page.get_by_role("button", name="Check and connect").click()
    page.wait_for_url(f"{url}/settings/integrations/")
    card = page.locator(f"section.card[data-crm={crm}]")
    last4 = secrets_of(crm, seeded)[0][-4:]
    assert f"secret …{last4}" in card.locator("[data-key-last4]").inner_text()
    assert card.get_by_role("link", name="Update credentials").is_visible()
    assert not any(secret in page.content() for secret in secrets_of(crm, seeded))
    shot(page, tmp_path, f"{crm}-03-card-connected")

    fresh = rotate(crm, sandboxes)
    with system_scope():
        conn = CrmConnection.objects.get(crm=crm)
    assert check_connection(conn.pk).status == "error"
    page.goto(f"{url}/settings/integrations/")
    card = page.locator(f"section.card[data-crm={crm}]")
    assert "Update the credentials to resume" in card.locator("[data-guidance]").inner_text()
    shot(page, tmp_path, f"{crm}-04-card-credentials-invalid")
    card.locator("[data-guidance]").get_by_role("link", name="Update credentials").click()
    page.wait_for_url(f"{url}/settings/integrations/{crm}/credentials/")
    assert page.get_by_role("heading", name=f"Update {label} credentials").is_visible()
    fill(page, fresh)
    page.get_by_role("button", name="Check and save").click()
    page.wait_for_url(f"{url}/settings/integrations/")
    card = page.locator(f"section.card[data-crm={crm}]")
    assert card.locator("[data-status]").inner_text() == "Connected"
    shot(page, tmp_path, f"{crm}-05-card-updated")
