"""An operator claims a pending install into a named workspace from the admin, for a customer who
cannot: the customer claim's checks and writes, audited with the operator as the actor."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from conduit.models import AuditEvent
from conduit.tenancy import system_scope
from integrations.connections import claims
from integrations.models import CrmConnection, PendingInstall
from tests.conftest import Tenant
from tests.test_oauth_flow import pending_install

pytestmark = pytest.mark.django_db
REASON = "Ticket 4711: the customer's admin cannot sign in from the install browser"


def claim_url(pending: PendingInstall) -> str:
    return f"/admin/integrations/pendinginstall/{pending.pk}/claim/"


def change_url(pending: PendingInstall) -> str:
    return f"/admin/integrations/pendinginstall/{pending.pk}/change/"


@pytest.fixture
def operator(db: None) -> User:
    return User.objects.create_superuser("ops@example.com", "ops@example.com", "pw-ops-123456")


def login(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def staff_user(email: str, *perms: str) -> User:
    user = User.objects.create_user(email, email, "pw-staff-123456", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    return user


def snapshot(pending: PendingInstall) -> tuple[Any, ...]:
    """Everything a claim changes: the install, its connection, live connections, audit rows."""
    with system_scope():
        row = PendingInstall.objects.select_related("connection").get(pk=pending.pk)
        conn = row.connection
        assert conn is not None
        return (
            row.status,
            row.claimed_workspace_id,
            row.claimed_by_id,
            row.claimed_at,
            conn.workspace_id,
            conn.status,
            sorted(CrmConnection.objects.values_list("pk", "workspace_id", "status")),
            AuditEvent.objects.count(),
        )


@pytest.mark.parametrize("by", ["slug", "id"])
def test_operator_claims_an_install_into_a_named_workspace_audited_as_the_operator(
    operator: User, alice: Tenant, by: str
) -> None:
    pending = pending_install()
    client = login(operator)
    form = client.get(claim_url(pending))
    assert form.status_code == 200 and b"Claim install" in form.content
    ref = alice.workspace.slug if by == "slug" else str(alice.workspace.pk)
    done = client.post(claim_url(pending), {"workspace": ref, "reason": REASON}, follow=True)
    assert done.redirect_chain == [(change_url(pending), 302)]
    assert b"Claimed the HubSpot install 4400001 into Alice (alice)" in done.content
    with system_scope():
        pending.refresh_from_db()
        conn = CrmConnection.objects.get(pk=pending.connection_id)
        [event] = AuditEvent.objects.filter(event="install_claimed")
    assert (conn.workspace_id, conn.status, conn.dry_run) == (alice.workspace.pk, "connected", True)
    assert (pending.status, pending.claimed_workspace_id, pending.claimed_by_id) == (
        "claimed",
        alice.workspace.pk,
        operator.pk,
    )
    assert (event.actor, event.workspace_id, event.target_id) == (
        f"user:{operator.pk}",
        alice.workspace.pk,
        str(pending.pk),
    )
    assert event.payload_json == {
        "crm": "hubspot",
        "external_account_key": "4400001",
        "connection_id": conn.pk,
        "replaced_connection_id": None,
        "by_operator": True,
        "reason": REASON,
    }
    stored = json.dumps(event.payload_json)
    assert "a-tok" not in stored and "r-tok" not in stored and pending.install_id not in stored


def test_staff_with_the_change_permission_may_claim(alice: Tenant) -> None:
    pending = pending_install()
    user = staff_user("ops2@example.com", "view_pendinginstall", "change_pendinginstall")
    done = login(user).post(claim_url(pending), {"workspace": "alice", "reason": REASON})
    assert done.status_code == 302 and done["Location"] == change_url(pending)
    with system_scope():
        assert PendingInstall.objects.get(pk=pending.pk).claimed_by_id == user.pk


def test_the_action_opens_the_claim_form_for_exactly_one_install(operator: User) -> None:
    pending = pending_install()
    other = pending_install("salesforce")
    client = login(operator)
    listing = client.get("/admin/integrations/pendinginstall/")
    assert b"Claim into a workspace" in listing.content
    one = client.post(
        "/admin/integrations/pendinginstall/",
        {"action": "claim_into_workspace", "_selected_action": [pending.pk]},
    )
    assert one.status_code == 302 and one["Location"] == claim_url(pending)
    before = snapshot(pending), snapshot(other)
    two = client.post(
        "/admin/integrations/pendinginstall/",
        {"action": "claim_into_workspace", "_selected_action": [pending.pk, other.pk]},
        follow=True,
    )
    assert b"Select exactly one pending install to claim." in two.content
    assert (snapshot(pending), snapshot(other)) == before


def test_the_change_page_offers_the_claim_only_while_pending(operator: User, bob: Tenant) -> None:
    pending = pending_install()
    client = login(operator)
    assert claim_url(pending).encode() in client.get(change_url(pending)).content
    claims.do_claim_install(pending.install_id, "hubspot", bob.workspace.pk, actor=bob.user)
    assert claim_url(pending).encode() not in client.get(change_url(pending)).content


def test_customers_and_staff_without_the_change_permission_are_refused(alice: Tenant) -> None:
    pending = pending_install()
    before = snapshot(pending)
    body = {"workspace": "alice", "reason": REASON}
    # a customer (not staff) is sent to the admin login
    customer = alice.client()
    for answer in (customer.get(claim_url(pending)), customer.post(claim_url(pending), body)):
        assert answer.status_code == 302 and "/admin/login/" in answer["Location"]
    viewer = login(staff_user("viewer@example.com", "view_pendinginstall"))
    assert viewer.get(claim_url(pending)).status_code == 403
    assert viewer.post(claim_url(pending), body).status_code == 403
    listing = viewer.get("/admin/integrations/pendinginstall/")
    assert listing.status_code == 200 and b"claim_into_workspace" not in listing.content
    assert claim_url(pending).encode() not in viewer.get(change_url(pending)).content
    assert snapshot(pending) == before


def test_refused_when_the_install_expired(operator: User, alice: Tenant) -> None:
    pending = pending_install(expires_at=timezone.now() - timedelta(minutes=1))
    before = snapshot(pending)
    client = login(operator)
    for answer in (
        client.get(claim_url(pending), follow=True),
        client.post(claim_url(pending), {"workspace": "alice", "reason": REASON}, follow=True),
    ):
        assert answer.redirect_chain == [(change_url(pending), 302)]
        assert b"install expired at" in answer.content
    assert snapshot(pending) == before


def test_refused_when_the_install_was_already_claimed(operator: User, alice: Tenant, bob: Tenant) -> None:
    pending = pending_install()
    claims.do_claim_install(pending.install_id, "hubspot", bob.workspace.pk, actor=bob.user)
    before = snapshot(pending)
    answer = login(operator).post(claim_url(pending), {"workspace": "alice", "reason": REASON}, follow=True)
    assert answer.redirect_chain == [(change_url(pending), 302)]
    assert b"install was already claimed" in answer.content
    assert snapshot(pending) == before


def test_refused_when_the_workspace_is_already_connected(operator: User, alice: Tenant) -> None:
    with system_scope():
        live = CrmConnection.objects.create(
            workspace=alice.workspace, crm="hubspot", status="connected", external_account_key="111"
        )
    pending = pending_install()
    before = snapshot(pending)
    answer = login(operator).post(claim_url(pending), {"workspace": "alice", "reason": REASON})
    assert answer.status_code == 200
    page = answer.content.decode()
    assert "Alice is already connected to HubSpot 111" in page
    assert "An operator does not replace a live connection" in page
    assert snapshot(pending) == before
    with system_scope():
        assert CrmConnection.objects.get(pk=live.pk).status == "connected"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"workspace": "no-such-workspace", "reason": REASON}, "No workspace has this id or slug."),
        ({"workspace": "999999", "reason": REASON}, "No workspace has this id or slug."),
        ({"workspace": "alice", "reason": ""}, "This field is required."),
        ({"workspace": "alice", "reason": "   "}, "This field is required."),
        ({"workspace": "alice", "reason": "x" * 201}, "at most 200 characters"),
        ({"workspace": "alice", "reason": "pasted Bearer abcdefghijklmnop"}, "looks like it holds a secret"),
        ({"workspace": "", "reason": REASON}, "This field is required."),
    ],
)
def test_bad_input_is_a_form_error_that_changes_nothing(
    operator: User, alice: Tenant, body: dict[str, str], error: str
) -> None:
    pending = pending_install()
    before = snapshot(pending)
    answer = login(operator).post(claim_url(pending), body)
    assert answer.status_code == 200
    assert error in answer.content.decode()
    assert snapshot(pending) == before


def test_an_unknown_install_is_not_found(operator: User) -> None:
    assert login(operator).get("/admin/integrations/pendinginstall/999999/claim/").status_code == 404


def test_the_service_refuses_a_user_who_is_not_staff(alice: Tenant) -> None:
    pending = pending_install()
    before = snapshot(pending)
    with pytest.raises(claims.NotOperator):
        claims.do_operator_claim(pending, alice.workspace, operator=alice.user, reason=REASON)
    assert snapshot(pending) == before


def test_the_customer_claim_audit_is_unchanged(alice: Tenant) -> None:
    pending = pending_install()
    claims.do_claim_install(pending.install_id, "hubspot", alice.workspace.pk, actor=alice.user)
    with system_scope():
        [event] = AuditEvent.objects.filter(event="install_claimed")
    assert event.actor == f"user:{alice.user.pk}"
    assert set(event.payload_json) == {
        "crm",
        "external_account_key",
        "connection_id",
        "replaced_connection_id",
    }


def test_the_claim_api_takes_a_signed_in_session_with_its_csrf_token_not_a_token(alice: Tenant) -> None:
    """What runbook 15.5 tells a customer: the session (cookie, X-CSRFToken, Origin), no token."""
    from conduit.services import do_create_api_token

    pending = pending_install()
    body = {"crm": "hubspot", "install_id": pending.install_id, "workspace_id": alice.workspace.pk}
    issued = do_create_api_token(alice.workspace, "ops", actor=alice.user)
    before = snapshot(pending)
    token = Client(HTTP_AUTHORIZATION=f"Bearer {issued.raw}").post(
        "/api/v1/claim-install", body, content_type="application/json"
    )
    assert token.status_code == 403 and token.json()["code"] == "not_authenticated"
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice.user)
    assert browser.post("/api/v1/claim-install", body, content_type="application/json").status_code == 403
    assert snapshot(pending) == before
    browser.get(f"/claim-install?crm=hubspot&install_id={pending.install_id}")  # sets csrftoken
    done = browser.post(
        "/api/v1/claim-install",
        body,
        content_type="application/json",
        HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value,
        HTTP_ORIGIN="http://testserver",
    )
    assert done.status_code == 200 and done.json()["workspace_id"] == alice.workspace.pk
