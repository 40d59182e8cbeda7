"""The OAuth flows in a real browser against the live server and the HubSpot sandbox: install-first
(consent, sign up, claim) and connect / revoked refresh token / reconnect / disconnect."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from conduit.tenancy import system_scope
from integrations.models import CrmConnection, PendingInstall
from integrations.sandbox.server import start_sandbox
from tests.conftest import PASSWORD, Tenant, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
HUBSPOT_KEY = "4400001"


@pytest.fixture
def hubspot(settings: Any, live_server: Any) -> Iterator[str]:
    sandbox = start_sandbox("hubspot", port=0)
    base = sandbox.base_url
    requests.post(f"{base}/_sandbox/reset", timeout=5)
    settings.CONDUIT_PUBLIC_URL = live_server.url
    settings.HUBSPOT_API_BASE_URL = base
    settings.HUBSPOT_AUTHORIZE_URL = f"{base}/oauth/authorize"
    yield base
    sandbox.stop()


def wait_for_prefix(page: Any, prefix: str) -> None:
    """Wait until the page is at a URL starting with `prefix` (a glob's `*` stops at `/`)."""
    page.wait_for_url(lambda current: current.startswith(prefix))


def allow_on_consent_page(page: Any, sandbox: str) -> None:
    wait_for_prefix(page, f"{sandbox}/oauth/authorize?")
    page.get_by_role("button", name="Allow").click()


def hubspot_card(page: Any) -> Any:
    return page.locator("section.card[data-crm=hubspot]")


def test_install_first_consent_sign_up_and_claim(
    page: Any, live_server: Any, hubspot: str, tmp_path: Path
) -> None:
    url = live_server.url
    page.goto(f"{url}/integrations/install/hubspot/")
    allow_on_consent_page(page, hubspot)

    # not signed in: the claim link sends us to the login page, which keeps ?next=
    wait_for_prefix(page, f"{url}/accounts/login/?next=")
    assert "claim-install" in page.url
    page.get_by_role("link", name="Create a workspace").click()
    wait_for_prefix(page, f"{url}/signup/?next=")
    page.fill("input[name=email]", "owner@globex.example")
    page.fill("input[name=workspace_name]", "Globex")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Create workspace").click()

    wait_for_prefix(page, f"{url}/claim-install?")
    assert page.get_by_role("heading", name="Connect HubSpot to a workspace").is_visible()
    assert HUBSPOT_KEY in page.locator("dl.facts").inner_text()
    assert page.get_by_text("Claim before").is_visible()
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", page.locator("dl.facts").inner_text())
    assert page.get_by_role("radio", name="Globex").is_checked()
    shot(page, tmp_path, "oauth-01-claim-install")

    page.get_by_role("button", name="Claim install").click()
    page.wait_for_url(f"{url}/settings/integrations/")
    card = hubspot_card(page)
    assert card.locator("[data-status=connected]").inner_text() == "Connected"
    assert card.get_by_text("Dry run", exact=True).is_visible()
    assert "is now connected" in page.locator(".flash").inner_text()
    shot(page, tmp_path, "oauth-02-integrations-claimed")

    with system_scope():
        pending = PendingInstall.objects.select_related("connection", "claimed_workspace").get()
        assert pending.status == "claimed"
        assert pending.claimed_workspace is not None and pending.claimed_workspace.name == "Globex"
        assert pending.claimed_by is not None and pending.claimed_by.email == "owner@globex.example"
        conn = pending.connection
        assert conn is not None
        assert (conn.status, conn.workspace_id, conn.external_account_key, conn.dry_run) == (
            "connected",
            pending.claimed_workspace.pk,
            HUBSPOT_KEY,
            True,
        )


def test_connect_revoked_refresh_token_reconnect_and_disconnect(
    page: Any,
    live_server: Any,
    hubspot: str,
    make_workspace: Callable[..., Tenant],
    tmp_path: Path,
) -> None:
    from integrations.connections.tokens import refresh_connection

    alice = make_workspace("alice")
    url = live_server.url
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=username]", alice.user.username)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/settings/")

    page.get_by_role("navigation").get_by_role("link", name="Integrations").click()
    page.wait_for_url(f"{url}/settings/integrations/")
    card = hubspot_card(page)
    assert card.locator("[data-status]").inner_text() == "Not connected"
    card.get_by_role("button", name="Connect HubSpot").click()
    allow_on_consent_page(page, hubspot)
    page.wait_for_url(f"{url}/settings/integrations/")
    assert card.locator("[data-status]").inner_text() == "Connected"
    assert card.get_by_text("Dry run", exact=True).is_visible()
    shot(page, tmp_path, "oauth-03-connected")

    with system_scope():
        conn = CrmConnection.objects.get(workspace=alice.workspace, crm="hubspot")
    requests.post(f"{hubspot}/_sandbox/faults", json={"kind": "invalid_grant"}, timeout=5).raise_for_status()
    revoked = refresh_connection(conn.pk, force=True)  # what a worker would do
    assert (revoked.status, revoked.last_error) == ("error", "refresh_token_revoked")

    page.reload()
    assert card.locator("[data-status]").inner_text() == "Needs attention"
    assert "no longer accepts Conduit's access" in card.get_by_role("alert").inner_text()
    assert card.get_by_role("button", name="Reconnect").is_visible()
    assert card.get_by_role("button", name="Disconnect").is_visible()
    shot(page, tmp_path, "oauth-04-needs-attention")

    card.get_by_role("button", name="Reconnect").click()
    allow_on_consent_page(page, hubspot)
    page.wait_for_url(f"{url}/settings/integrations/")
    assert card.locator("[data-status]").inner_text() == "Connected"
    assert card.get_by_role("alert").count() == 0
    shot(page, tmp_path, "oauth-05-reconnected")
    with system_scope():
        again = CrmConnection.objects.exclude(status="disconnected").get(
            workspace=alice.workspace, crm="hubspot"
        )
    assert (again.pk, again.status, again.last_error) == (conn.pk, "connected", "")

    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        card.get_by_role("button", name="Disconnect").click()
    page.wait_for_url(f"{url}/settings/integrations/")
    assert card.locator("[data-status]").inner_text() == "Not connected"
    assert "HubSpot disconnected" in page.locator(".flash").inner_text()
    assert card.get_by_role("button", name="Connect HubSpot").is_visible()
    shot(page, tmp_path, "oauth-06-disconnected")
    with system_scope():
        conn.refresh_from_db()
    assert (conn.status, conn.access_token, conn.refresh_token) == ("disconnected", "", "")
