"""The install-first sign-in and sign-up pages name the install waiting to be claimed (CRM and
account), only while it is pending and unexpired; any other claim link gets a neutral line."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone

from conduit import install_notice
from conduit.install_notice import InstallNotice
from conduit.tenancy import system_scope
from integrations.connections.install_notice import PendingInstallDescriber, describe_pending_install
from integrations.models import CrmConnection, PendingInstall
from tests.conftest import PASSWORD, Tenant

pytestmark = pytest.mark.django_db
NEUTRAL = b"to continue with your marketplace install"


def pending_install(
    crm: str = "hubspot", key: str = "4400001", name: str = "acme.hubspot.com", **kw: Any
) -> PendingInstall:
    with system_scope():
        conn = CrmConnection.objects.create(
            crm=crm,
            status="pending_claim",
            external_account_key=key,
            access_token="a-tok",
            refresh_token="r-tok",
        )
        return PendingInstall.objects.create(
            crm=crm,
            external_account_key=key,
            expires_at=kw.pop("expires_at", timezone.now() + timedelta(hours=2)),
            connection=conn,
            metadata={"account_name": name, "installing_user_email": "it@acme.example"},
            **kw,
        )


def claim_link(crm: str, install_id: str) -> str:
    return "/claim-install?" + urlencode({"crm": crm, "install_id": install_id})


def sign_in_page(next_path: str, page: str = "/accounts/login/") -> Any:
    return Client().get(page, {"next": next_path})


def test_following_a_claim_link_signed_out_shows_the_install_on_the_sign_in_page(db: None) -> None:
    pending = pending_install()
    redirect = Client().get(claim_link("hubspot", pending.install_id))
    assert redirect.status_code == 302 and redirect["Location"].startswith("/accounts/login/?next=")
    page = Client().get(redirect["Location"])
    assert page.status_code == 200
    assert page.context["install_notice"] == InstallNotice("HubSpot portal 4400001 (acme.hubspot.com)")
    text = page.content.decode()
    assert "<strong>HubSpot portal 4400001 (acme.hubspot.com)</strong> is waiting to be connected" in text
    assert "Signing in claims it" in text


def test_the_sign_up_page_shows_it_too_and_points_at_members(db: None) -> None:
    pending = pending_install("salesforce", "00D5g000004xyzEAA", "Acme Corp")
    page = sign_in_page(claim_link("salesforce", pending.install_id), "/signup/")
    assert page.context["install_notice"].description == "Salesforce org 00D5g000004xyzEAA (Acme Corp)"
    assert b"Creating your workspace claims it" in page.content
    assert b"Settings \xe2\x86\x92 Members" in page.content and b"invite teammates later" not in page.content


def test_an_account_without_a_name_is_named_by_its_key(db: None) -> None:
    pending = pending_install("zoho", "889900", "")
    assert describe_pending_install("zoho", pending.install_id) == "Zoho CRM org 889900"


@pytest.mark.parametrize(
    "state", ["expired_by_time", "expired", "claimed", "no_grant", "other_crm", "unknown"]
)
def test_any_other_install_gets_only_the_neutral_line(alice: Tenant, state: str) -> None:
    pending = pending_install()
    crm, install_id = "hubspot", pending.install_id
    with system_scope():
        if state == "expired_by_time":
            PendingInstall.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        elif state == "expired":
            PendingInstall.objects.update(status="expired")
        elif state == "claimed":
            PendingInstall.objects.update(status="claimed", claimed_workspace=alice.workspace)
        elif state == "no_grant":
            conn = CrmConnection.objects.get()
            conn.access_token = ""
            conn.save()
    if state == "other_crm":
        crm = "salesforce"
    if state == "unknown":
        install_id = "not-an-install"
    for url in ("/accounts/login/", "/signup/"):
        page = sign_in_page(claim_link(crm, install_id), url)
        assert page.status_code == 200
        assert page.context["install_notice"] == InstallNotice("")
        assert NEUTRAL in page.content
        for leak in (b"4400001", b"acme.hubspot.com", b"HubSpot", b"it@acme.example"):
            assert leak not in page.content


@pytest.mark.parametrize(
    "next_path",
    [
        "/claim-install?crm=hubspot&install_id=" + "x" * 65,
        "/claim-install?crm=hubspot&install_id=a%00b",
        "/claim-install?crm=nosuchcrm&install_id=abc",
        "/claim-install?crm=hubspot",
        "/claim-install",
    ],
)
def test_odd_claim_links_get_the_neutral_line_without_an_error(db: None, next_path: str) -> None:
    page = sign_in_page(next_path)
    assert page.status_code == 200 and page.context["install_notice"] == InstallNotice("")


@pytest.mark.parametrize(
    "next_path", ["", "/settings/", "/invite/", "https://evil.example/claim-install?crm=hubspot"]
)
def test_no_notice_unless_next_is_a_claim_link(db: None, next_path: str) -> None:
    pending_install()
    for url in ("/accounts/login/", "/signup/"):
        page = sign_in_page(next_path, url)
        assert page.context["install_notice"] is None
        assert b"install-notice" not in page.content


def test_without_a_registered_describer_the_core_shows_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install_notice, "_describers", [])
    assert install_notice.install_notice("/claim-install?crm=hubspot&install_id=abc") is None
    install_notice.register_install_describer(PendingInstallDescriber())
    install_notice.register_install_describer(PendingInstallDescriber())  # once per kind
    assert len(install_notice._describers) == 1


def test_signing_in_from_the_notice_still_lands_on_the_claim_page(alice: Tenant) -> None:
    pending = pending_install()
    link = claim_link("hubspot", pending.install_id)
    client = Client()
    page = client.get("/accounts/login/", {"next": link})
    assert page.context["next"] == link
    signed_in = client.post(
        "/accounts/login/", {"username": "alice@example.com", "password": PASSWORD, "next": link}
    )
    assert signed_in.status_code == 302 and signed_in["Location"] == link
    claim = client.get(link)
    assert claim.status_code == 200 and b"Connect HubSpot to a workspace" in claim.content
    assert client.get("/accounts/login/").status_code == 302  # already signed in


def test_reading_the_notice_changes_nothing(db: None) -> None:
    pending = pending_install()
    before = PendingInstall.objects.values_list("status", "expires_at", "updated_at").get()
    sign_in_page(claim_link("hubspot", pending.install_id))
    sign_in_page(claim_link("hubspot", pending.install_id), "/signup/")
    assert PendingInstall.objects.values_list("status", "expires_at", "updated_at").get() == before
