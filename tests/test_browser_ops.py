"""Operations in a real browser: an operator makes a token in Settings (shown once, then only its
prefix), the customer's Integrations card says when operators switched the integration off, and
the API reference renders offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from conduit.models import Membership
from conduit.tenancy import system_scope
from integrations.connections.tenant_switch import do_set_integration_enabled
from tests.conftest import PASSWORD, Tenant, shot, sign_in
from tests.ops_helpers import make_connection

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_operator_creates_a_token_that_is_shown_once(
    page: Any, live_server: Any, alice: Tenant, tmp_path: Path
) -> None:
    with system_scope():
        User.objects.filter(pk=alice.user.pk).update(is_staff=True)
    url = live_server.url
    sign_in(page, url, alice)
    assert page.title().startswith("Settings")
    tokens = page.locator("#operator-tokens")
    assert "No operator tokens yet." in tokens.inner_text()
    tokens.locator("input[name=name]").fill("pager")
    tokens.get_by_role("button", name="Create operator token").click()
    page.wait_for_load_state()
    raw = page.locator("#operator-tokens code.token").inner_text()
    assert raw.startswith("cds_")
    shot(page, tmp_path, "ops-01-operator-token")
    page.reload()
    assert raw not in page.content() and raw[:10] in page.locator("#operator-tokens").inner_text()


def test_a_member_never_sees_operator_tokens(page: Any, live_server: Any, make_workspace: Any) -> None:
    member = make_workspace("carol", role=Membership.Role.MEMBER)
    sign_in(page, live_server.url, member)
    assert page.locator("#operator-tokens").count() == 0
    assert PASSWORD  # the fixture's password signed in


def test_the_card_says_when_operators_switched_the_integration_off(
    page: Any, live_server: Any, alice: Tenant, tmp_path: Path
) -> None:
    make_connection(alice.workspace, "hubspot")
    do_set_integration_enabled(alice.workspace, "hubspot", False, actor="user:1", reason="retry storm, INC-7")
    url = live_server.url
    sign_in(page, url, alice)
    page.goto(f"{url}/settings/integrations/")
    notice = page.locator("section.card[data-crm=hubspot] [data-switched-off]")
    assert "switched this integration off: retry storm, INC-7" in notice.inner_text()
    assert page.locator("section.card[data-crm=salesforce] [data-switched-off]").count() == 0
    shot(page, tmp_path, "ops-02-switched-off")


def test_the_api_reference_renders_offline(
    page: Any, live_server: Any, alice: Tenant, tmp_path: Path
) -> None:
    sign_in(page, live_server.url, alice)
    page.goto(f"{live_server.url}/api/docs/")
    page.get_by_text("/api/v1/admin/replay-webhook").first.wait_for(timeout=15000)
    assert "Conduit API" in page.locator(".information-container").inner_text()
    shot(page, tmp_path, "ops-03-api-docs")
