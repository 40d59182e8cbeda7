"""The sandbox CRMs in a real browser: consent page with Allow / Deny, and the written-records page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from integrations.providers import get_provider
from integrations.sandbox.server import start_sandbox
from tests.conftest import shot
from tests.provider_helpers import activity

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never reached: the browser request is intercepted


@pytest.fixture
def hubspot_sandbox(settings: Any) -> Iterator[str]:
    sandbox = start_sandbox("hubspot", port=0)
    settings.HUBSPOT_API_BASE_URL = sandbox.base_url
    settings.HUBSPOT_AUTHORIZE_URL = f"{sandbox.base_url}/oauth/authorize"
    yield sandbox.base_url
    sandbox.stop()


def consent(page: Any, url: str, button: str) -> dict[str, list[str]]:
    """Open the consent page, press a button, return the query of the redirect to Conduit."""
    page.route(
        f"{REDIRECT_URI}*", lambda route: route.fulfill(body="back in Conduit", content_type="text/plain")
    )
    page.goto(url)
    with page.expect_request(lambda request: request.url.startswith(REDIRECT_URI)) as landed:
        page.get_by_role("button", name=button).click()
    page.wait_for_url(f"{REDIRECT_URI}*")
    assert "back in Conduit" in page.content()
    return parse_qs(urlsplit(landed.value.url).query)


def test_consent_allow_gives_a_code_that_exchanges_and_deny_gives_access_denied(
    page: Any, hubspot_sandbox: str, tmp_path: Path
) -> None:
    hs = get_provider("hubspot")
    url = hs.authorize_url(state="browser-state", redirect_uri=REDIRECT_URI)
    page.goto(url)
    assert page.get_by_role("button", name="Allow").is_visible()
    assert page.get_by_role("button", name="Deny").is_visible()
    shot(page, tmp_path, "sandbox-01-hubspot-consent")
    allowed = consent(page, url, "Allow")
    assert allowed["state"] == ["browser-state"]
    tokens = hs.exchange_code(code=allowed["code"][0], redirect_uri=REDIRECT_URI)
    assert tokens.account_key == "4400001"

    denied = consent(page, hs.authorize_url(state="second", redirect_uri=REDIRECT_URI), "Deny")
    assert denied["error"] == ["access_denied"] and denied["state"] == ["second"]

    from integrations.providers.base import Account

    account = Account("hubspot", tokens.access_token, tokens.account_key)
    hs.create_note(account, activity("101", "201", text="Email from Maya, inbound. [conduit:browser]"))
    page.goto(f"{hubspot_sandbox}/")
    assert page.get_by_text("[conduit:browser]").first.is_visible()
    assert page.get_by_text("maya.lopez@acme-logistics.example").first.is_visible()
    shot(page, tmp_path, "sandbox-02-hubspot-records")
    assert tokens.access_token not in page.content()
