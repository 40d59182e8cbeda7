"""Settings → Members: invitations (single-use, expiring, only a hash stored), accepting them
(signed in or with a new account), role changes and removals, the owner rules, the audit rows,
and row-level security of `invitations`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError
from django.test import Client
from django.utils import timezone

from conduit import members
from conduit.members import InvitationUnusable, MemberRefused
from conduit.models import AuditEvent, Invitation, Membership, Profile, Workspace
from conduit.tenancy import system_scope, workspace_scope
from tests.conftest import PASSWORD, Tenant
from tests.ops_helpers import events
from tests.test_tenancy import _grant_probe_role, as_app_role

pytestmark = pytest.mark.django_db


def add_member(workspace: Workspace, email: str, role: str) -> Membership:
    with system_scope():
        user = User.objects.create_user(username=email, email=email, password=PASSWORD)
        Profile.objects.create(user=user, email=email)
        return Membership.objects.create(workspace=workspace, user=user, role=role)


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def snapshot() -> tuple[Any, ...]:
    """Everything a refused member action must leave as it was."""
    with system_scope():
        return (
            sorted(Membership.objects.values_list("workspace_id", "user_id", "role")),
            sorted(Invitation.objects.values_list("pk", "accepted_at", "revoked_at")),
            User.objects.count(),
            AuditEvent.objects.count(),
        )


def invite(tenant: Tenant, email: str = "sam@example.com", role: str = "member") -> members.IssuedInvitation:
    return members.do_invite_member(tenant.workspace, email=email, role=role, actor=tenant.user)


# --- inviting ---


def test_an_invitation_keeps_only_the_tokens_hash_and_is_audited_without_it(alice: Tenant) -> None:
    issued = invite(alice, "Sam@Example.com", "admin")
    assert issued.raw.startswith("cdi_") and len(issued.raw) > 40
    with system_scope():
        row = Invitation.objects.get()
        stored = json.dumps(list(Invitation.objects.values()), default=str)
    assert row.token_hash == hashlib.sha256(issued.raw.encode()).hexdigest()
    assert issued.raw not in stored
    assert (row.email, row.role, row.invited_by_id) == ("sam@example.com", "admin", alice.user.pk)
    assert row.expires_at - row.created_at == timedelta(days=7)
    (event,) = events("member_invited")
    assert event.workspace_id == alice.workspace.pk and event.actor == f"user:{alice.user.pk}"
    assert (event.target_type, event.target_id) == ("invitation", str(row.pk))
    assert event.payload_json == {
        "email": "sam@example.com",
        "role": "admin",
        "expires_at": row.expires_at.isoformat(),
    }
    assert issued.raw not in json.dumps(event.payload_json)


@pytest.mark.parametrize(
    ("inviter_role", "role", "text"),
    [
        ("admin", "owner", "Only owners can invite an owner"),
        ("member", "member", "Only owners and admins"),
        ("owner", "boss", "Choose the role"),
    ],
)
def test_who_may_invite_which_role(alice: Tenant, inviter_role: str, role: str, text: str) -> None:
    inviter = add_member(alice.workspace, "inviter@example.com", inviter_role)
    before = snapshot()
    with pytest.raises(MemberRefused, match=text):
        members.do_invite_member(alice.workspace, email="new@example.com", role=role, actor=inviter.user)
    assert snapshot() == before


def test_owners_may_invite_owners_and_admins_may_invite_admins(alice: Tenant) -> None:
    admin = add_member(alice.workspace, "admin@example.com", "admin")
    invite(alice, "co-owner@example.com", "owner")
    members.do_invite_member(alice.workspace, email="other-admin@example.com", role="admin", actor=admin.user)
    with system_scope():
        assert set(Invitation.objects.values_list("email", "role")) == {
            ("co-owner@example.com", "owner"),
            ("other-admin@example.com", "admin"),
        }


def test_invite_refuses_a_member_and_a_second_pending_invitation(alice: Tenant) -> None:
    with pytest.raises(MemberRefused, match="already a member"):
        invite(alice, "ALICE@example.com")
    invite(alice, "sam@example.com")
    before = snapshot()
    with pytest.raises(MemberRefused, match="already has a pending invitation"):
        invite(alice, "sam@example.com", "admin")
    assert snapshot() == before


def test_an_expired_or_revoked_invitation_does_not_block_a_new_one(alice: Tenant) -> None:
    first = invite(alice).invitation
    with system_scope():
        Invitation.objects.filter(pk=first.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    second = invite(alice).invitation
    members.do_revoke_invitation(alice.workspace, second.pk, actor=alice.user)
    invite(alice)
    with system_scope():
        assert Invitation.objects.count() == 3


# --- accepting ---


def test_accepting_adds_the_membership_and_uses_the_invitation_up(alice: Tenant, bob: Tenant) -> None:
    issued = invite(alice, "bob@example.com", "admin")
    membership = members.do_accept_invitation(issued.raw, user=bob.user)
    assert (membership.workspace_id, membership.user_id, membership.role) == (
        alice.workspace.pk,
        bob.user.pk,
        "admin",
    )
    with system_scope():
        row = Invitation.objects.get()
    assert row.accepted_by_id == bob.user.pk and row.accepted_at is not None
    (event,) = events("invitation_accepted")
    assert event.workspace_id == alice.workspace.pk and event.actor == f"user:{bob.user.pk}"
    assert event.payload_json == {
        "user_id": bob.user.pk,
        "role": "admin",
        "membership_id": membership.pk,
        "new_account": False,
    }

    before = snapshot()
    with pytest.raises(InvitationUnusable, match="already used"):
        members.do_accept_invitation(issued.raw, user=bob.user)
    assert snapshot() == before


def test_an_expired_invitation_changes_nothing(alice: Tenant, bob: Tenant) -> None:
    issued = invite(alice, "bob@example.com")
    later = issued.invitation.expires_at + timedelta(seconds=1)
    before = snapshot()
    with pytest.raises(InvitationUnusable, match="expired on"):
        members.do_accept_invitation(issued.raw, user=bob.user, now=later)
    with pytest.raises(InvitationUnusable, match="expired on"):
        members.do_sign_up_and_accept(issued.raw, email="bob@example.com", password=PASSWORD, now=later)
    assert snapshot() == before


def test_a_revoked_invitation_changes_nothing(alice: Tenant, bob: Tenant) -> None:
    issued = invite(alice, "bob@example.com")
    members.do_revoke_invitation(alice.workspace, issued.invitation.pk, actor=alice.user)
    (event,) = events("invitation_revoked")
    assert event.payload_json == {"email": "bob@example.com", "role": "member"}
    members.do_revoke_invitation(alice.workspace, issued.invitation.pk, actor=alice.user)
    assert len(events("invitation_revoked")) == 1  # revoking twice changes nothing
    before = snapshot()
    with pytest.raises(InvitationUnusable, match="was revoked"):
        members.do_accept_invitation(issued.raw, user=bob.user)
    assert snapshot() == before


def test_an_accepted_invitation_cannot_be_revoked(alice: Tenant, bob: Tenant) -> None:
    issued = invite(alice, "bob@example.com")
    members.do_accept_invitation(issued.raw, user=bob.user)
    with pytest.raises(MemberRefused, match="already accepted"):
        members.do_revoke_invitation(alice.workspace, issued.invitation.pk, actor=alice.user)


def test_accepting_needs_the_invited_email_and_no_membership_yet(alice: Tenant, bob: Tenant) -> None:
    issued = invite(alice, "someone-else@example.com")
    before = snapshot()
    with pytest.raises(InvitationUnusable, match=r"is for someone-else@example\.com"):
        members.do_accept_invitation(issued.raw, user=bob.user)
    with pytest.raises(InvitationUnusable, match="not valid"):
        members.do_accept_invitation("cdi_not-a-real-token", user=bob.user)
    assert snapshot() == before

    member = add_member(alice.workspace, "late@example.com", "member")
    with system_scope():
        Invitation.objects.create(
            workspace=alice.workspace,
            email="late@example.com",
            token_hash=hashlib.sha256(b"cdi_late-token").hexdigest(),
            expires_at=timezone.now() + timedelta(days=1),
        )
    with pytest.raises(InvitationUnusable, match="already a member"):
        members.do_accept_invitation("cdi_late-token", user=member.user)


def test_a_new_account_joins_without_a_workspace_of_its_own(alice: Tenant) -> None:
    issued = invite(alice, "New.Hire@example.com")
    membership = members.do_sign_up_and_accept(issued.raw, email="new.hire@example.com", password=PASSWORD)
    user = membership.user
    assert user.username == "new.hire@example.com" and user.check_password(PASSWORD)
    with system_scope():
        assert Profile.objects.get(user=user).email == "new.hire@example.com"
        assert list(Membership.objects.filter(user=user).values_list("workspace_id", "role")) == [
            (alice.workspace.pk, "member")
        ]
        assert Workspace.objects.count() == 1
    (signed_up,) = events("user_signed_up")
    assert signed_up.payload_json == {"via": "invitation"} and signed_up.workspace_id == alice.workspace.pk
    assert events("invitation_accepted")[0].payload_json["new_account"] is True


def test_a_new_account_for_a_taken_email_or_another_email_is_refused(alice: Tenant) -> None:
    issued = invite(alice, "bob@example.com")
    add_member(alice.workspace, "taken@example.com", "member")
    taken = invite(alice, "taken2@example.com")
    with system_scope():
        User.objects.create_user(username="taken2@example.com", email="taken2@example.com", password=PASSWORD)
    before = snapshot()
    with pytest.raises(InvitationUnusable, match=r"is for bob@example\.com"):
        members.do_sign_up_and_accept(issued.raw, email="other@example.com", password=PASSWORD)
    with pytest.raises(members.ConduitError, match="already exists"):
        members.do_sign_up_and_accept(taken.raw, email="taken2@example.com", password=PASSWORD)
    assert snapshot() == before


# --- roles and removal ---


def test_an_owner_changes_a_role_and_it_is_audited(alice: Tenant) -> None:
    sam = add_member(alice.workspace, "sam@example.com", "member")
    members.do_change_member_role(alice.workspace, sam.pk, "admin", actor=alice.user)
    with system_scope():
        assert Membership.objects.get(pk=sam.pk).role == "admin"
    (event,) = events("member_role_changed")
    assert (event.target_type, event.target_id) == ("membership", str(sam.pk))
    assert event.payload_json == {"user_id": sam.user_id, "from": "member", "to": "admin"}
    members.do_change_member_role(alice.workspace, sam.pk, "admin", actor=alice.user)
    assert len(events("member_role_changed")) == 1  # the same role again changes nothing


@pytest.mark.parametrize(
    ("actor_role", "target_role", "new_role", "text"),
    [
        ("admin", "member", "owner", "Only owners can make someone an owner"),
        ("admin", "owner", "member", "Only owners can make someone an owner"),
        ("member", "member", "admin", "Only owners and admins"),
        ("owner", "member", "boss", "Choose the role"),
    ],
)
def test_role_changes_admins_and_members_may_not_make(
    alice: Tenant, actor_role: str, target_role: str, new_role: str, text: str
) -> None:
    actor = add_member(alice.workspace, "actor@example.com", actor_role)
    target = add_member(alice.workspace, "target@example.com", target_role)
    before = snapshot()
    with pytest.raises(MemberRefused, match=text):
        members.do_change_member_role(alice.workspace, target.pk, new_role, actor=actor.user)
    assert snapshot() == before


def test_the_last_owner_can_be_neither_demoted_nor_removed(alice: Tenant) -> None:
    with system_scope():
        mine = Membership.objects.get(user=alice.user)
    before = snapshot()
    with pytest.raises(MemberRefused, match="needs an owner"):
        members.do_change_member_role(alice.workspace, mine.pk, "admin", actor=alice.user)
    with pytest.raises(MemberRefused, match="You are the last owner"):
        members.do_remove_member(alice.workspace, mine.pk, actor=alice.user)
    assert snapshot() == before

    other = add_member(alice.workspace, "second-owner@example.com", "owner")
    members.do_change_member_role(alice.workspace, mine.pk, "admin", actor=alice.user)
    with pytest.raises(MemberRefused, match="the last owner"):
        members.do_remove_member(alice.workspace, other.pk, actor=other.user)


def test_an_owner_may_leave_when_another_owner_stays(alice: Tenant) -> None:
    add_member(alice.workspace, "second-owner@example.com", "owner")
    with system_scope():
        mine = Membership.objects.get(user=alice.user)
    members.do_remove_member(alice.workspace, mine.pk, actor=alice.user)
    with system_scope():
        assert not Membership.objects.filter(user=alice.user).exists()


def test_removal_rules_and_audit(alice: Tenant) -> None:
    admin = add_member(alice.workspace, "admin@example.com", "admin")
    member = add_member(alice.workspace, "member@example.com", "member")
    with system_scope():
        owner = Membership.objects.get(user=alice.user)
    before = snapshot()
    with pytest.raises(MemberRefused, match="Only owners can remove an owner"):
        members.do_remove_member(alice.workspace, owner.pk, actor=admin.user)
    with pytest.raises(MemberRefused, match="Only owners and admins"):
        members.do_remove_member(alice.workspace, admin.pk, actor=member.user)
    assert snapshot() == before

    members.do_remove_member(alice.workspace, member.pk, actor=admin.user)
    with system_scope():
        assert not Membership.objects.filter(pk=member.pk).exists()
        assert User.objects.filter(pk=member.user_id).exists()  # the account stays
    (event,) = events("member_removed")
    assert event.payload_json == {"user_id": member.user_id, "role": "member"}
    assert event.actor == f"user:{admin.user_id}" and event.target_id == str(member.pk)


def test_another_workspaces_member_or_invitation_is_out_of_reach(alice: Tenant, bob: Tenant) -> None:
    with system_scope():
        bobs = Membership.objects.get(user=bob.user)
    bobs_invitation = invite(bob, "x@example.com").invitation
    before = snapshot()
    with pytest.raises(MemberRefused, match="not a member of this workspace"):
        members.do_change_member_role(alice.workspace, bobs.pk, "member", actor=alice.user)
    with pytest.raises(MemberRefused, match="not a member of this workspace"):
        members.do_remove_member(alice.workspace, bobs.pk, actor=alice.user)
    with pytest.raises(MemberRefused, match="no such invitation"):
        members.do_revoke_invitation(alice.workspace, bobs_invitation.pk, actor=alice.user)
    with pytest.raises(MemberRefused, match="Only owners and admins"):
        invite(Tenant(bob.workspace, alice.user, PASSWORD), "y@example.com")
    assert snapshot() == before


# --- the Members page ---


def test_the_members_page_lists_members_and_roles(alice: Tenant) -> None:
    add_member(alice.workspace, "sam@example.com", "admin")
    page = alice.client().get("/settings/members/")
    assert page.status_code == 200
    rows = {row["email"]: row for row in page.context["members"]}
    assert rows["alice@example.com"]["role_label"] == "Owner" and rows["alice@example.com"]["is_you"]
    assert rows["sam@example.com"]["role_label"] == "Admin"
    assert b"Invite someone" in page.content and b"sam@example.com" in page.content
    assert b"Conduit sends no email" in page.content


def test_a_member_sees_the_list_but_no_controls(alice: Tenant) -> None:
    member = add_member(alice.workspace, "member@example.com", "member")
    invite(alice, "pending@example.com")
    page = client_for(member.user).get("/settings/members/")
    assert page.status_code == 200 and b"alice@example.com" in page.content
    assert b"Invite someone" not in page.content and b"pending@example.com" not in page.content
    assert not any(row["roles"] or row["can_remove"] for row in page.context["members"])
    before = snapshot()
    refused = client_for(member.user).post(
        "/settings/members/invite/", {"email": "x@example.com", "role": "member"}
    )
    assert refused.status_code == 302
    assert snapshot() == before


def test_an_admin_is_offered_only_the_roles_they_may_give(alice: Tenant) -> None:
    admin = add_member(alice.workspace, "admin@example.com", "admin")
    add_member(alice.workspace, "member@example.com", "member")
    page = client_for(admin.user).get("/settings/members/")
    rows = {row["email"]: row for row in page.context["members"]}
    assert rows["alice@example.com"]["roles"] == [] and not rows["alice@example.com"]["can_remove"]
    assert [value for value, _ in rows["member@example.com"]["roles"]] == ["member", "admin"]
    assert [value for value, _ in page.context["form"].fields["role"].choices] == ["member", "admin"]


def test_the_link_is_shown_once_and_waits_encrypted_in_the_session(alice: Tenant, settings: Any) -> None:
    settings.CONDUIT_PUBLIC_URL = "https://conduit.example"
    client = alice.client()
    created = client.post("/settings/members/invite/", {"email": "sam@example.com", "role": "admin"})
    assert created.status_code == 302 and created["Location"] == "/settings/members/"
    sealed = client.session["new_invitation_link"]
    assert "cdi_" not in json.dumps(sealed)
    page = client.get("/settings/members/")
    link = page.context["new_link"]["link"]
    assert link.startswith("https://conduit.example/invite/?token=cdi_")
    raw = link.split("token=", 1)[1]
    with system_scope():
        assert Invitation.objects.get().token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.encode() in page.content and b"shown only this once" in page.content
    again = client.get("/settings/members/")
    assert again.context["new_link"] is None and raw.encode() not in again.content
    assert b"sam@example.com" in again.content and b"pending" in again.content


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"email": "not-an-email", "role": "member"}, "valid email"),
        ({"email": "", "role": "member"}, "required"),
        ({"email": "alice@example.com", "role": "member"}, "already a member"),
        ({"email": "x@example.com", "role": "overlord"}, "Select a valid choice"),
    ],
)
def test_bad_invite_input_is_a_form_error_and_changes_nothing(
    alice: Tenant, data: dict[str, str], text: str
) -> None:
    before = snapshot()
    page = alice.client().post("/settings/members/invite/", data)
    assert page.status_code == 400
    errors = " ".join(str(e) for errs in page.context["form"].errors.values() for e in errs)
    assert text in errors
    assert snapshot() == before


def test_an_admin_cannot_invite_an_owner_through_the_form(alice: Tenant) -> None:
    admin = add_member(alice.workspace, "admin@example.com", "admin")
    before = snapshot()
    page = client_for(admin.user).post(
        "/settings/members/invite/", {"email": "x@example.com", "role": "owner"}
    )
    assert page.status_code == 400 and "role" in page.context["form"].errors
    assert snapshot() == before


def test_role_change_revoke_and_remove_from_the_page(alice: Tenant) -> None:
    sam = add_member(alice.workspace, "sam@example.com", "member")
    client = alice.client()
    changed = client.post(f"/settings/members/{sam.pk}/role/", {"role": "admin"}, follow=True)
    assert b"Role changed to Admin" in changed.content
    with system_scope():
        assert Membership.objects.get(pk=sam.pk).role == "admin"

    invitation = invite(alice, "pending@example.com").invitation
    revoked = client.post(f"/settings/members/invitations/{invitation.pk}/revoke/", follow=True)
    assert (
        b"revoked" in revoked.content and b"pending@example.com" not in revoked.content.split(b"</ul>", 1)[1]
    )

    removed = client.post(f"/settings/members/{sam.pk}/remove/", follow=True)
    assert b"sam@example.com was removed" in removed.content
    with system_scope():
        assert not Membership.objects.filter(pk=sam.pk).exists()


def test_a_refusal_on_the_page_is_one_sentence_and_changes_nothing(alice: Tenant) -> None:
    with system_scope():
        mine = Membership.objects.get(user=alice.user)
    before = snapshot()
    client = alice.client()
    demote = client.post(f"/settings/members/{mine.pk}/role/", {"role": "member"}, follow=True)
    assert b"needs an owner" in demote.content
    leave = client.post(f"/settings/members/{mine.pk}/remove/", follow=True)
    assert b"You are the last owner" in leave.content
    bogus = client.post(f"/settings/members/{mine.pk}/role/", {"role": "emperor"}, follow=True)
    assert b"Choose the role" in bogus.content
    assert client.get("/settings/members/invitations/1/revoke/").status_code == 405
    assert snapshot() == before


def test_leaving_a_workspace_returns_to_settings(
    alice: Tenant, make_workspace: Callable[..., Tenant]
) -> None:
    other = make_workspace("other")
    with system_scope():
        Membership.objects.create(workspace=other.workspace, user=alice.user, role="owner")
        mine = Membership.objects.get(user=alice.user, workspace=alice.workspace)
    add_member(alice.workspace, "heir@example.com", "owner")
    client = alice.client()
    left = client.post(f"/settings/members/{mine.pk}/remove/")
    assert left.status_code == 302 and left["Location"] == "/settings/"
    assert client.get("/settings/").context["current_workspace"] == other.workspace


# --- the invitation link's page ---


def open_link(client: Client, raw: str) -> Any:
    first = client.get("/invite/", {"token": raw})
    assert first.status_code == 302 and first["Location"] == "/invite/"
    return client.get("/invite/")


def test_the_link_page_names_workspace_and_inviter_and_a_new_person_joins(alice: Tenant) -> None:
    issued = invite(alice, "newbie@example.com", "admin")
    client = Client()
    page = open_link(client, issued.raw)
    assert page.status_code == 200
    assert page.context["workspace"] == "Alice" and page.context["inviter"] == "alice@example.com"
    assert b"Create account and join" in page.content and b"Sign in to accept" in page.content
    assert issued.raw.encode() not in page.content  # the page never echoes the token
    assert "cdi_" not in client.session["invitation_token"]

    weak = client.post("/invite/", {"action": "sign_up", "password": "123"})
    assert weak.status_code == 400 and weak.context["form"].errors["password"]
    assert not User.objects.filter(username="newbie@example.com").exists()

    joined = client.post("/invite/", {"action": "sign_up", "password": PASSWORD, "email": "evil@example.com"})
    assert joined.status_code == 302 and joined["Location"] == "/settings/"
    user = User.objects.get(username="newbie@example.com")  # the invited email, whatever was posted
    settings_page = client.get("/settings/")
    assert settings_page.context["current_workspace"] == alice.workspace
    assert settings_page.context["current_membership"].role == "admin"
    assert b"Welcome to Alice" in settings_page.content
    assert int(client.session["_auth_user_id"]) == user.pk

    again = open_link(Client(), issued.raw)
    assert again.status_code == 410 and b"already used" in again.content


def test_a_signed_in_user_accepts_from_the_link(alice: Tenant, bob: Tenant) -> None:
    issued = invite(alice, "bob@example.com")
    client = bob.client()
    page = open_link(client, issued.raw)
    assert page.context["email_matches"] and b"Accept and join Alice" in page.content
    accepted = client.post("/invite/", {"action": "accept"})
    assert accepted.status_code == 302
    assert client.get("/settings/").context["current_workspace"] == alice.workspace
    with system_scope():
        assert Membership.objects.get(user=bob.user, workspace=alice.workspace).role == "member"


def test_a_signed_in_user_with_another_email_is_told_and_nothing_changes(alice: Tenant, bob: Tenant) -> None:
    issued = invite(alice, "carol@example.com")
    client = bob.client()
    page = open_link(client, issued.raw)
    assert not page.context["email_matches"] and b"you are signed in as bob@example.com" in page.content
    before = snapshot()
    refused = client.post("/invite/", {"action": "accept"})
    assert refused.status_code == 400 and "is for carol@example.com" in refused.context["error"]
    assert snapshot() == before


def test_an_anonymous_visitor_signs_in_to_accept(alice: Tenant, bob: Tenant) -> None:
    issued = invite(alice, "bob@example.com")
    client = Client()
    open_link(client, issued.raw)
    signed_in = client.post(
        "/accounts/login/", {"username": "bob@example.com", "password": PASSWORD, "next": "/invite/"}
    )
    assert signed_in["Location"] == "/invite/"
    page = client.get("/invite/")  # the token survived the sign-in
    assert page.context["email_matches"]
    assert client.post("/invite/", {"action": "accept"}).status_code == 302


@pytest.mark.parametrize(
    ("state", "status", "text"),
    [("expired", 410, b"expired on"), ("revoked", 410, b"was revoked"), ("unknown", 404, b"not valid")],
)
def test_a_dead_link_gets_a_clear_page_and_changes_nothing(
    alice: Tenant, state: str, status: int, text: bytes
) -> None:
    issued = invite(alice, "bob@example.com")
    with system_scope():
        if state == "expired":
            Invitation.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
        if state == "revoked":
            Invitation.objects.update(revoked_at=timezone.now())
    raw = issued.raw if state != "unknown" else "cdi_" + "x" * 43
    before = snapshot()
    client = Client()
    page = open_link(client, raw)
    assert page.status_code == status and text in page.content and b"Nothing was changed" in page.content
    assert client.post("/invite/", {"action": "sign_up", "password": PASSWORD}).status_code == 404
    assert snapshot() == before


def test_the_link_page_without_a_link(db: None) -> None:
    page = Client().get("/invite/")
    assert page.status_code == 404 and b"Open the invitation link" in page.content
    odd = open_link(Client(), "x" * 5000)
    assert odd.status_code == 404 and b"not valid" in odd.content


def test_the_token_never_reaches_logs_or_audit_rows(
    alice: Tenant, capture_json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    client = alice.client()
    client.post("/settings/members/invite/", {"email": "sam@example.com", "role": "member"})
    raw = client.get("/settings/members/").context["new_link"]["link"].split("token=", 1)[1]
    visitor = Client()
    open_link(visitor, raw)
    visitor.post("/invite/", {"action": "sign_up", "password": PASSWORD})
    open_link(Client(), raw)  # a second use: refused, logged as a 410
    logged = json.dumps(capture_json_logs())
    assert raw not in logged
    with system_scope():
        audit = json.dumps(list(AuditEvent.objects.values("payload_json", "target_id")))
    assert raw not in audit and hashlib.sha256(raw.encode()).hexdigest() not in audit
    assert {e.event for e in AuditEvent.objects.all()} >= {"member_invited", "invitation_accepted"}


# --- row-level security of invitations, as the application role ---


@pytest.mark.postgres
def test_invitations_are_isolated_per_workspace_as_the_app_role(alice: Tenant, bob: Tenant) -> None:
    _grant_probe_role()
    alices = invite(alice, "a@example.com")
    invite(bob, "b@example.com")
    with as_app_role():
        with workspace_scope(alice.workspace):
            assert list(Invitation.objects.values_list("email", flat=True)) == ["a@example.com"]
            assert Invitation.objects.filter(workspace=bob.workspace).update(role="owner") == 0
        assert Invitation.objects.count() == 0  # no scope, no rows
        with system_scope():
            assert Invitation.objects.count() == 2
        with pytest.raises(DatabaseError, match="row-level security"), workspace_scope(alice.workspace):
            Invitation.objects.create(
                workspace=bob.workspace,
                email="sneaky@example.com",
                token_hash="0" * 64,
                expires_at=timezone.now(),
            )
        # the link works for a visitor with no scope: the lookup and the accept use system scope
        assert members.find_invitation(alices.raw) is not None
        membership = members.do_sign_up_and_accept(alices.raw, email="a@example.com", password=PASSWORD)
        assert membership.workspace_id == alice.workspace.pk
    with system_scope():
        assert not Invitation.objects.filter(email="sneaky@example.com").exists()


@pytest.mark.postgres
def test_the_members_pages_work_as_the_app_role(alice: Tenant, bob: Tenant) -> None:
    _grant_probe_role()
    invite(bob, "bobs-invitee@example.com")
    with as_app_role():
        client = alice.client()
        assert (
            client.post("/settings/members/invite/", {"email": "x@example.com", "role": "member"}).status_code
            == 302
        )
        page = client.get("/settings/members/")
        assert page.status_code == 200
        assert [i["email"] for i in page.context["invitations"]] == ["x@example.com"]
        raw = page.context["new_link"]["link"].split("token=", 1)[1]
        visitor = Client()
        open_link(visitor, raw)
        assert visitor.post("/invite/", {"action": "sign_up", "password": PASSWORD}).status_code == 302
    with system_scope():
        assert Membership.objects.filter(workspace=alice.workspace, user__username="x@example.com").exists()


def test_a_link_sealed_under_a_retired_key_reads_as_no_link(alice: Tenant) -> None:
    client = Client()
    session = client.session
    session["invitation_token"] = "not-a-ciphertext-of-any-key"
    session.save()
    page = client.get("/invite/")
    assert page.status_code == 404 and b"Open the invitation link you were sent" in page.content  # not a 500
