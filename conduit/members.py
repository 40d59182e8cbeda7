"""Members of a workspace: invitations (a single-use link that expires), role changes and
removals. Each change is audited in its own transaction; a refusal is one sentence and changes
nothing.

The rules, shared by the services and the Members page:
- owners and admins manage members; members only see the list;
- an admin never invites, makes, demotes or removes an owner;
- a workspace keeps an owner: its last owner can be neither demoted nor removed, not even by
  themself.

Every service first locks the workspace's row (FOR NO KEY UPDATE, which leaves inserts that
reference the workspace alone), so changes to one workspace's members run one after another
and the last-owner check cannot race.

An invitation's token is `cdi_` + 32 random bytes; only its SHA-256 is stored, and the link is
shown once to the person who invited. Accepting requires an account with the invited email.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet
from django.utils import timezone

from conduit.audit import record_audit
from conduit.models import INVITATION_TOKEN_PREFIX, Invitation, Membership, Workspace, hash_token
from conduit.services import ConduitError, create_account, normalize_email
from conduit.tenancy import system_scope, workspace_scope

INVITATION_TTL = timedelta(days=7)
TOKEN_MAX_LENGTH = 100
Role = Membership.Role


class MemberRefused(ConduitError):
    error_code = "member_refused"


class InvitationUnusable(ConduitError):
    error_code = "invitation_unusable"


def roles_grantable_by(role: str) -> list[str]:
    """The roles a member with `role` may give, by invitation or by a role change."""
    if role == Role.OWNER:
        return [Role.MEMBER, Role.ADMIN, Role.OWNER]
    if role == Role.ADMIN:
        return [Role.MEMBER, Role.ADMIN]
    return []


def may_manage(actor_role: str, target_role: str) -> bool:
    """May a member with `actor_role` change the role of, or remove, one with `target_role`."""
    return actor_role == Role.OWNER or (actor_role == Role.ADMIN and target_role != Role.OWNER)


def _lock_workspace(workspace: Workspace) -> None:
    list(Workspace.objects.select_for_update(no_key=True).filter(pk=workspace.pk).values_list("pk"))


def _manager(workspace: Workspace, actor: User) -> Membership:
    """The actor's membership, after locking the workspace; refuses anyone but owners and admins."""
    _lock_workspace(workspace)
    mine = Membership.objects.filter(workspace=workspace, user=actor).first()
    if mine is None or not mine.administers:
        raise MemberRefused("Only owners and admins of this workspace can manage its members.")
    return mine


def is_last_owner(workspace: Workspace, target: Membership) -> bool:
    """The workspace's only owner: it may be neither demoted nor removed (the console too)."""
    if target.role != Role.OWNER:
        return False
    return not Membership.objects.filter(workspace=workspace, role=Role.OWNER).exclude(pk=target.pk).exists()


@dataclass
class IssuedInvitation:
    invitation: Invitation
    raw: str


def do_invite_member(
    workspace: Workspace, *, email: str, role: str, actor: User, now: datetime | None = None
) -> IssuedInvitation:
    """A pending invitation and its one-time token (returned, never stored); `member_invited`."""
    now = now or timezone.now()
    email = normalize_email(email)
    with workspace_scope(workspace):
        mine = _manager(workspace, actor)
        if role not in Role.values:
            raise MemberRefused("Choose the role: member, admin or owner.")
        if role not in roles_grantable_by(mine.role):
            raise MemberRefused("Only owners can invite an owner.")
        members = Membership.objects.filter(workspace=workspace)
        if members.filter(Q(user__username=email) | Q(user__email__iexact=email)).exists():
            raise MemberRefused(f"{email} is already a member of {workspace.name}.")
        if pending_invitations(workspace, now).filter(email=email).exists():
            raise MemberRefused(
                f"{email} already has a pending invitation. Revoke it first to create a new link."
            )
        raw = INVITATION_TOKEN_PREFIX + secrets.token_urlsafe(32)
        invitation = Invitation.objects.create(
            workspace=workspace,
            email=email,
            role=role,
            token_hash=hash_token(raw),
            invited_by=actor,
            created_at=now,
            expires_at=now + INVITATION_TTL,
        )
        record_audit(
            "member_invited",
            actor=actor,
            workspace=workspace,
            target=invitation,
            payload={"email": email, "role": role, "expires_at": invitation.expires_at.isoformat()},
        )
    return IssuedInvitation(invitation, raw)


def pending_invitations(workspace: Workspace, now: datetime) -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        workspace=workspace, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    )


def do_revoke_invitation(
    workspace: Workspace, invitation_id: int, *, actor: User, now: datetime | None = None
) -> Invitation:
    """Revoke a pending (or expired) invitation; its link stops working. `invitation_revoked`."""
    now = now or timezone.now()
    with workspace_scope(workspace):
        _manager(workspace, actor)
        invitation = (
            Invitation.objects.select_for_update().filter(pk=invitation_id, workspace=workspace).first()
        )
        if invitation is None:
            raise MemberRefused("There is no such invitation in this workspace.")
        if invitation.accepted_at is not None:
            raise MemberRefused(
                f"The invitation for {invitation.email} was already accepted; remove the member instead."
            )
        if invitation.revoked_at is not None:
            return invitation  # revoking twice changes nothing
        invitation.revoked_at = now
        invitation.save(update_fields=["revoked_at"])
        record_audit(
            "invitation_revoked",
            actor=actor,
            workspace=workspace,
            target=invitation,
            payload={"email": invitation.email, "role": invitation.role},
        )
    return invitation


def do_change_member_role(workspace: Workspace, membership_id: int, role: str, *, actor: User) -> Membership:
    """Give a member another role; `member_role_changed` (payload: user_id, from, to)."""
    if role not in Role.values:
        raise MemberRefused("Choose the role: member, admin or owner.")
    with workspace_scope(workspace):
        mine = _manager(workspace, actor)
        target = Membership.objects.filter(pk=membership_id, workspace=workspace).first()
        if target is None:
            raise MemberRefused("That person is not a member of this workspace.")
        if target.role == role:
            return target
        if not may_manage(mine.role, target.role) or role not in roles_grantable_by(mine.role):
            raise MemberRefused("Only owners can make someone an owner or change an owner's role.")
        if is_last_owner(workspace, target):
            raise MemberRefused(
                f"{workspace.name} needs an owner: make another member an owner before changing this role."
            )
        before = target.role
        target.role = role
        target.save(update_fields=["role"])
        record_audit(
            "member_role_changed",
            actor=actor,
            workspace=workspace,
            target=target,
            payload={"user_id": target.user_id, "from": before, "to": role},
        )
    return target


def do_remove_member(workspace: Workspace, membership_id: int, *, actor: User) -> Membership:
    """Take a member out of the workspace (their account stays); `member_removed`."""
    with workspace_scope(workspace):
        mine = _manager(workspace, actor)
        target = Membership.objects.filter(pk=membership_id, workspace=workspace).first()
        if target is None:
            raise MemberRefused("That person is not a member of this workspace.")
        if not may_manage(mine.role, target.role):
            raise MemberRefused("Only owners can remove an owner.")
        if is_last_owner(workspace, target):
            who = "You are" if target.user_id == actor.pk else "This member is"
            raise MemberRefused(
                f"{who} the last owner of {workspace.name}: make another member an owner first."
            )
        record_audit(
            "member_removed",
            actor=actor,
            workspace=workspace,
            target=target,
            payload={"user_id": target.user_id, "role": target.role},
        )
        target.delete()
    return target


# --- accepting an invitation: the invitee has no scope of this workspace yet (system scope) ---


def find_invitation(raw: str) -> Invitation | None:
    """The invitation a link's token names, whatever its state; None for anything else."""
    if not raw.startswith(INVITATION_TOKEN_PREFIX) or len(raw) > TOKEN_MAX_LENGTH or "\x00" in raw:
        return None
    with system_scope():
        return (
            Invitation.objects.select_related("workspace", "invited_by")
            .filter(token_hash=hash_token(raw))
            .first()
        )


def invitation_refusal(invitation: Invitation, now: datetime) -> str:
    """Why the invitation cannot be used any more, in one sentence; '' while it is pending."""
    name = invitation.workspace.name
    status = invitation.status_at(now)
    if status == Invitation.Status.ACCEPTED:
        return f"This invitation to {name} was already used. An invitation link works once."
    if status == Invitation.Status.REVOKED:
        return f"This invitation to {name} was revoked. Ask an owner or admin of {name} for a new one."
    if status == Invitation.Status.EXPIRED:
        return (
            f"This invitation to {name} expired on {invitation.expires_at:%Y-%m-%d %H:%M} UTC. "
            f"Ask an owner or admin of {name} for a new one."
        )
    return ""


def account_emails(user: User) -> set[str]:
    return {normalize_email(value) for value in (user.email, user.username) if value}


def _locked_usable(raw: str, now: datetime) -> Invitation:
    found = find_invitation(raw)
    if found is None:
        raise InvitationUnusable("This invitation link is not valid. Check that you copied the whole link.")
    _lock_workspace(found.workspace)
    invitation = Invitation.objects.select_for_update().select_related("workspace").get(pk=found.pk)
    if refusal := invitation_refusal(invitation, now):
        raise InvitationUnusable(refusal)
    return invitation


def _accept(invitation: Invitation, user: User, now: datetime, *, new_account: bool) -> Membership:
    membership = Membership.objects.create(
        workspace=invitation.workspace, user=user, role=invitation.role, created_at=now
    )
    invitation.accepted_at = now
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    record_audit(
        "invitation_accepted",
        actor=user,
        workspace=invitation.workspace,
        target=invitation,
        payload={
            "user_id": user.pk,
            "role": invitation.role,
            "membership_id": membership.pk,
            "new_account": new_account,
        },
    )
    return membership


def do_accept_invitation(raw: str, *, user: User, now: datetime | None = None) -> Membership:
    """A signed-in user with the invited email joins the workspace; the invitation is used up."""
    now = now or timezone.now()
    with system_scope():
        invitation = _locked_usable(raw, now)
        if invitation.email not in account_emails(user):
            raise InvitationUnusable(
                f"This invitation is for {invitation.email}, and you are signed in as "
                f"{user.email or user.username}. Sign out, then open the link again."
            )
        if Membership.objects.filter(workspace=invitation.workspace, user=user).exists():
            raise InvitationUnusable(f"You are already a member of {invitation.workspace.name}.")
        return _accept(invitation, user, now, new_account=False)


def do_sign_up_and_accept(raw: str, *, email: str, password: str, now: datetime | None = None) -> Membership:
    """A new account for the invited email, joined to the workspace (`user_signed_up` with
    `via: invitation`, then `invitation_accepted`), atomically; returns the new membership."""
    now = now or timezone.now()
    email = normalize_email(email)
    with system_scope():
        invitation = _locked_usable(raw, now)
        if email != invitation.email:
            raise InvitationUnusable(f"This invitation is for {invitation.email}.")
        user = create_account(email=email, password=password)
        record_audit(
            "user_signed_up",
            actor=user,
            workspace=invitation.workspace,
            target=user,
            payload={"via": "invitation"},
        )
        return _accept(invitation, user, now, new_account=True)


# --- what the Members page shows: plain values ---


def member_rows(workspace: Workspace, viewer: Membership) -> list[dict[str, Any]]:
    rows = []
    memberships = Membership.objects.filter(workspace=workspace).select_related("user")
    for m in memberships.order_by("created_at", "id"):
        manageable = viewer.administers and may_manage(viewer.role, m.role)
        rows.append(
            {
                "id": m.pk,
                "email": m.user.email or m.user.username,
                "role": m.role,
                "role_label": m.get_role_display(),
                "since": m.created_at,
                "is_you": m.user_id == viewer.user_id,
                "roles": [(r, Role(r).label) for r in roles_grantable_by(viewer.role)] if manageable else [],
                "can_remove": manageable,
            }
        )
    return rows


def invitation_rows(workspace: Workspace, now: datetime) -> list[dict[str, Any]]:
    """Invitations not yet used or revoked, the pending ones and those that expired."""
    open_ = Invitation.objects.filter(workspace=workspace, accepted_at__isnull=True, revoked_at__isnull=True)
    return [
        {
            "id": i.pk,
            "email": i.email,
            "role_label": i.get_role_display(),
            "invited_by": (i.invited_by.email or i.invited_by.username) if i.invited_by else "",
            "created_at": i.created_at,
            "expires_at": i.expires_at,
            "status": i.status_at(now),
        }
        for i in open_.select_related("invited_by").order_by("-created_at", "-id")
    ]
