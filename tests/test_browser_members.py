"""Settings → Members and the install-first sign-in page in a real browser: invite, the link shown
once, the invitation page, a new account joining, a used link, role changes and the owner rule,
and the sign-in page naming the install waiting to be claimed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from conduit.models import Membership, Profile
from conduit.tenancy import system_scope
from integrations.models import CrmConnection, PendingInstall
from tests.conftest import PASSWORD, Tenant, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_invite_a_teammate_who_joins_with_a_new_account(
    page: Any, live_server: Any, alice: Tenant, settings: Any, tmp_path: Path
) -> None:
    url = live_server.url
    settings.CONDUIT_PUBLIC_URL = url
    with system_scope():
        lee = User.objects.create_user(
            username="lee@alice.example", email="lee@alice.example", password=PASSWORD
        )
        Profile.objects.create(user=lee, email="lee@alice.example")
        Membership.objects.create(workspace=alice.workspace, user=lee, role="member")
    sign_in(page, url, alice)
    page.goto(f"{url}/settings/members/")
    assert page.get_by_role("heading", name="Members of Alice").is_visible()
    assert page.locator("tr[data-member='lee@alice.example']").is_visible()
    assert page.get_by_text("Conduit sends no email").is_visible()
    shot(page, tmp_path, "members-01-page")

    page.fill("#invite input[name=email]", "not-an-email")
    page.get_by_role("button", name="Create invitation link").click()
    assert "valid email" in page.locator("#invite .field-error").inner_text()
    shot(page, tmp_path, "members-02-invite-error")

    page.fill("#invite input[name=email]", "sam@alice.example")
    page.select_option("#invite select[name=role]", "admin")
    page.get_by_role("button", name="Create invitation link").click()
    page.wait_for_url(f"{url}/settings/members/")
    link = page.locator("#invitation-link").input_value()
    assert link.startswith(f"{url}/invite/?token=cdi_")
    assert page.get_by_text("shown only this once").is_visible()
    shot(page, tmp_path, "members-03-link-shown-once")

    page.reload()
    assert page.locator("#invitation-link").count() == 0
    assert page.locator("tr[data-invitation='sam@alice.example']").is_visible()
    shot(page, tmp_path, "members-04-pending-invitation")

    page.get_by_role("button", name="Log out").click()
    page.goto(link)
    page.wait_for_url(f"{url}/invite/")  # the token left the address bar
    assert page.get_by_role("heading", name="Join Alice on Conduit").is_visible()
    assert "alice@example.com invited sam@alice.example" in page.locator(".invited-by").inner_text()
    shot(page, tmp_path, "members-05-invitation-page")

    page.fill("input[name=password]", "123")
    page.get_by_role("button", name="Create account and join").click()
    assert page.locator(".field-error").first.is_visible()
    shot(page, tmp_path, "members-06-invitation-weak-password")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Create account and join").click()
    page.wait_for_url(f"{url}/settings/")
    assert "Welcome to Alice" in page.locator(".flash").inner_text()
    shot(page, tmp_path, "members-07-joined")

    page.get_by_role("button", name="Log out").click()
    page.goto(link)
    assert page.get_by_role("heading", name="This invitation cannot be used").is_visible()
    assert "already used" in page.locator("p[role=alert]").inner_text()
    shot(page, tmp_path, "members-08-link-already-used")

    sign_in(page, url, alice)
    page.goto(f"{url}/settings/members/")
    sam_row = page.locator("tr[data-member='sam@alice.example']")
    sam_row.locator("select[name=role]").select_option("member")
    sam_row.get_by_role("button", name="Change").click()
    assert "Role changed to Member" in page.locator(".flash").inner_text()
    me = page.locator("tr[data-member='alice@example.com']")
    me.locator("select[name=role]").select_option("admin")
    me.get_by_role("button", name="Change").click()
    assert "needs an owner" in page.locator(".flash").inner_text()
    shot(page, tmp_path, "members-09-last-owner-refused")
    with system_scope():
        roles = dict(Membership.objects.filter(workspace=alice.workspace).values_list("user__email", "role"))
    assert roles == {
        "alice@example.com": "owner",
        "lee@alice.example": "member",
        "sam@alice.example": "member",
    }


def test_the_sign_in_page_names_the_install_waiting_to_be_claimed(
    page: Any, live_server: Any, tmp_path: Path
) -> None:
    url = live_server.url
    with system_scope():
        conn = CrmConnection.objects.create(
            crm="hubspot",
            status="pending_claim",
            external_account_key="4400001",
            access_token="a",
            refresh_token="r",
        )
        pending = PendingInstall.objects.create(
            crm="hubspot",
            external_account_key="4400001",
            expires_at=timezone.now() + timedelta(hours=2),
            connection=conn,
            metadata={"account_name": "acme.hubspot.com"},
        )
    page.goto(f"{url}/claim-install?{urlencode({'crm': 'hubspot', 'install_id': pending.install_id})}")
    page.wait_for_url(lambda current: current.startswith(f"{url}/accounts/login/?next="))
    notice = page.locator(".install-notice")
    assert "HubSpot portal 4400001 (acme.hubspot.com) is waiting to be connected" in notice.inner_text()
    shot(page, tmp_path, "members-10-install-sign-in")

    page.get_by_role("link", name="Create a workspace").click()
    page.wait_for_url(lambda current: current.startswith(f"{url}/signup/?next="))
    assert "Creating your workspace claims it" in page.locator(".install-notice").inner_text()
    assert page.get_by_text("Settings → Members").is_visible()
    shot(page, tmp_path, "members-11-install-sign-up")

    page.goto(f"{url}/accounts/login/?{urlencode({'next': '/claim-install?crm=hubspot&install_id=gone'})}")
    assert "continue with your marketplace install" in page.locator(".install-notice").inner_text()
    assert "4400001" not in page.content()
    shot(page, tmp_path, "members-12-install-sign-in-neutral")
