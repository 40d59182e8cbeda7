"""The connection health block on the Integrations page in a real browser, against the sandbox
CRMs: healthy after connecting, Check now, a warning in plain words, error after sustained auth
failure with Reconnect, and the rate-limited Check now."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from conduit.tenancy import system_scope
from integrations.health.checks import check_connection
from integrations.models import ConnectionHealth
from tests.conftest import Tenant, shot, sign_in
from tests.reconcile_helpers import connect_crm, sandbox_fault

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def age_checks(minutes: int) -> None:
    with system_scope():
        ConnectionHealth.objects.update(
            last_checked_at=timezone.now() - timedelta(minutes=minutes), manual_check_at=None
        )


def test_health_card_states_and_check_now(
    page: Any, live_server: Any, crm_env: dict[str, str], settings: Any, alice: Tenant, tmp_path: Path
) -> None:
    settings.CONDUIT_HEALTH_AUTH_FAILURES_TO_ERROR = 2
    settings.CONDUIT_HEALTH_AUTH_RUN_SPACING_SECONDS = 0  # two "hourly" checks, back to back
    hubspot = connect_crm(alice, "hubspot", live=False)
    salesforce = connect_crm(alice, "salesforce", live=False)
    age_checks(42)
    url = live_server.url
    sign_in(page, url, alice)
    page.goto(f"{url}/settings/integrations/")
    card = page.locator("section.card[data-crm=hubspot]")
    health = card.locator("[data-health]")
    assert health.locator("[data-health-status]").inner_text() == "Healthy"
    assert "Last checked 42\xa0minutes ago" in health.inner_text()
    assert "UTC" in health.inner_text()
    assert health.locator("time[data-last-checked]").get_attribute("title", timeout=2000)
    # the connect was the last check: the real connect time, not "just now" 42 minutes later
    connected = f"{hubspot.connected_at.day} {hubspot.connected_at:%b %Y, %H:%M} UTC"
    words = health.locator(".health-words").inner_text()
    assert words.startswith(f"Connected on {connected}: HubSpot accepted Conduit's access.")
    shot(page, tmp_path, "health-01-connected")

    # Check now: a real call to the sandbox, the verdict and its latency
    card.get_by_role("button", name="Check now").click()
    page.wait_for_load_state()
    assert "HubSpot checked in" in page.locator("ul.flash").inner_text()
    health = page.locator("section.card[data-crm=hubspot] [data-health]")
    assert "Last checked 0\xa0minutes ago" in health.inner_text() and "answered in" in health.inner_text()
    assert "access works" in health.locator(".health-words").inner_text()
    # pressed again at once: refused, nothing called
    page.locator("section.card[data-crm=hubspot]").get_by_role("button", name="Check now").click()
    page.wait_for_load_state()
    assert "checked moments ago; try again in" in page.content()
    shot(page, tmp_path, "health-02-check-now-cooldown")

    # Salesforce does not answer: a warning in plain words, the connection stays connected
    sandbox_fault(crm_env["salesforce"], kind="unavailable", path_contains="userinfo")
    check_connection(salesforce.pk)
    # HubSpot refuses Conduit's token on two hourly checks in a row: warning, then error
    sandbox_fault(crm_env["hubspot"], kind="invalid_session", count=2, path_contains="account-info")
    check_connection(hubspot.pk)
    page.goto(f"{url}/settings/integrations/")
    sf = page.locator("section.card[data-crm=salesforce] [data-health]")
    assert sf.locator("[data-health-status]").inner_text() == "Warning"
    assert "Salesforce did not answer properly (HTTP 503)" in sf.inner_text()
    hs = page.locator("section.card[data-crm=hubspot]")
    assert "refused Conduit's access token on the last check" in hs.inner_text()
    assert hs.get_by_role("button", name="Reconnect").is_visible()
    shot(page, tmp_path, "health-03-warnings")

    sandbox_fault(crm_env["hubspot"], kind="invalid_session", count=2, path_contains="account-info")
    check_connection(hubspot.pk)
    page.goto(f"{url}/settings/integrations/")
    hs = page.locator("section.card[data-crm=hubspot]")
    assert hs.locator("[data-status]").inner_text() == "Needs attention"
    assert hs.locator("[data-health-status]").inner_text() == "Error"
    assert "refused Conduit's access token twice" in hs.inner_text()
    assert "Last healthy" in hs.inner_text()
    assert hs.get_by_role("button", name="Reconnect").is_visible()
    assert hs.get_by_role("button", name="Check now").count() == 0
    shot(page, tmp_path, "health-04-error-reconnect")
