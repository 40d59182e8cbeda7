"""Settings → Members (list, invite, revoke, change a role, remove) and the page an invitation
link opens. Views parse, call conduit.members, render."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from conduit import members
from conduit.crypto import DecryptionError, decrypt, encrypt
from conduit.member_forms import InvitedSignUpForm, InviteForm
from conduit.models import Invitation, Membership
from conduit.services import ConduitError, EmailTaken
from conduit.tenancy import SESSION_WORKSPACE_KEY, workspace_of
from conduit.views import signed_in_user, workspace_required

NEW_LINK_KEY = "new_invitation_link"  # the link just created, encrypted, until the page shows it
INVITATION_KEY = "invitation_token"  # the token of the link being opened, encrypted


def membership_of(request: HttpRequest) -> Membership:
    return cast(Membership, getattr(request, "membership", None))  # workspace_required: set


def invitation_link(raw: str) -> str:
    return f"{settings.CONDUIT_PUBLIC_URL}{reverse('invitation')}?{urlencode({'token': raw})}"


def render_members(
    request: HttpRequest, form: InviteForm | None = None, *, status: int = 200
) -> HttpResponse:
    workspace, mine = workspace_of(request), membership_of(request)
    roles = members.roles_grantable_by(mine.role)
    new_link = request.session.pop(NEW_LINK_KEY, None)
    link = unsealed(new_link["link"]) if new_link else ""
    context = {
        "members": members.member_rows(workspace, mine),
        "can_manage": mine.administers,
        "invitations": members.invitation_rows(workspace, timezone.now()) if mine.administers else [],
        "form": form or InviteForm(roles=roles),
        "ttl_days": members.INVITATION_TTL.days,
        "new_link": {**new_link, "link": link} if new_link and link else None,
    }
    return render(request, "conduit/members.html", context, status=status)


def unsealed(sealed: str) -> str:
    """A link kept encrypted in the session; "" when the key changed since (as if none was kept)."""
    try:
        return decrypt(sealed)
    except DecryptionError:
        return ""


@workspace_required
def members_page(request: HttpRequest) -> HttpResponse:
    return render_members(request)


@require_POST
@workspace_required
def invite(request: HttpRequest) -> HttpResponse:
    mine = membership_of(request)
    if not mine.administers:
        messages.error(request, "Only owners and admins of this workspace can invite people.")
        return redirect("members")
    form = InviteForm(request.POST, roles=members.roles_grantable_by(mine.role))
    if form.is_valid():
        try:
            issued = members.do_invite_member(
                workspace_of(request),
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                actor=signed_in_user(request),
            )
        except ConduitError as exc:
            form.add_error("email", exc.user_message)
        else:
            invitation = issued.invitation
            # Kept encrypted in the session until the Members page shows it, once.
            request.session[NEW_LINK_KEY] = {
                "link": encrypt(invitation_link(issued.raw)),
                "email": invitation.email,
                "role": invitation.get_role_display(),
                "expires_at": invitation.expires_at.strftime("%Y-%m-%d %H:%M"),
            }
            messages.success(request, f"Invitation for {invitation.email} created.")
            return redirect("members")
    return render_members(request, form, status=400)


def refuse_or_confirm(request: HttpRequest, action: Any, success: str) -> HttpResponse:
    try:
        action()
    except ConduitError as exc:
        messages.error(request, exc.user_message)
    else:
        messages.success(request, success)
    return redirect("members")


@require_POST
@workspace_required
def revoke_invitation(request: HttpRequest, invitation_id: int) -> HttpResponse:
    workspace, user = workspace_of(request), signed_in_user(request)
    invitation = Invitation.objects.filter(pk=invitation_id, workspace=workspace).first()
    email = invitation.email if invitation else ""
    return refuse_or_confirm(
        request,
        lambda: members.do_revoke_invitation(workspace, invitation_id, actor=user),
        f"Invitation for {email} revoked: its link no longer works.",
    )


@require_POST
@workspace_required
def change_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    workspace, user = workspace_of(request), signed_in_user(request)
    role = request.POST.get("role", "")
    label = dict(Membership.Role.choices).get(role, role)
    return refuse_or_confirm(
        request,
        lambda: members.do_change_member_role(workspace, membership_id, role, actor=user),
        f"Role changed to {label}.",
    )


@require_POST
@workspace_required
def remove_member(request: HttpRequest, membership_id: int) -> HttpResponse:
    workspace, user = workspace_of(request), signed_in_user(request)
    target = Membership.objects.filter(pk=membership_id, workspace=workspace).select_related("user").first()
    who = (target.user.email or target.user.username) if target else ""
    response = refuse_or_confirm(
        request,
        lambda: members.do_remove_member(workspace, membership_id, actor=user),
        f"{who} was removed from {workspace.name}.",
    )
    if (
        target is not None
        and target.user_id == user.pk
        and not Membership.objects.filter(pk=target.pk).exists()
    ):
        request.session.pop(SESSION_WORKSPACE_KEY, None)  # they left this workspace
        return redirect("settings-home")
    return response


# --- the invitation link ---


def invitation_page(request: HttpRequest, context: dict[str, Any], *, status: int = 200) -> HttpResponse:
    return render(request, "conduit/members_invitation.html", context, status=status)


@require_http_methods(["GET", "POST"])
def invitation(request: HttpRequest) -> HttpResponse:
    """GET ?token=…: keep the token (encrypted) in the session and come back without it, so it
    leaves the address bar, the history and any Referer; then show the invitation and accept it."""
    if token := request.GET.get("token", ""):
        request.session[INVITATION_KEY] = encrypt(token[: members.TOKEN_MAX_LENGTH + 1])
        return redirect("invitation")
    sealed = request.session.get(INVITATION_KEY)
    raw = unsealed(sealed) if sealed else ""
    found = members.find_invitation(raw) if raw else None
    if found is None:
        refusal = (
            "This invitation link is not valid. Check that you copied the whole link."
            if raw
            else "Open the invitation link you were sent to join a workspace."
        )
        request.session.pop(INVITATION_KEY, None)
        return invitation_page(request, {"refusal": refusal}, status=404)
    if refusal := members.invitation_refusal(found, timezone.now()):
        request.session.pop(INVITATION_KEY, None)
        return invitation_page(request, {"refusal": refusal}, status=410)
    form = InvitedSignUpForm(email=found.email)
    error = ""
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "accept" and request.user.is_authenticated:
                membership = members.do_accept_invitation(raw, user=signed_in_user(request))
                return joined(request, membership)
            if action == "sign_up" and not request.user.is_authenticated:
                form = InvitedSignUpForm(request.POST, email=found.email)
                if form.is_valid():
                    membership = members.do_sign_up_and_accept(
                        raw, email=form.cleaned_data["email"], password=form.cleaned_data["password"]
                    )
                    login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
                    return joined(request, membership)
            else:
                error = "Sign in to accept, or create your account below."
        except EmailTaken as exc:
            form.add_error(None, exc.user_message)
        except ConduitError as exc:
            error = exc.user_message
    user = request.user
    context = {
        "workspace": found.workspace.name,
        "inviter": (found.invited_by.email or found.invited_by.username) if found.invited_by else "",
        "email": found.email,
        "role": found.get_role_display(),
        "expires_at": found.expires_at,
        "signed_in_as": (user.email or user.username) if user.is_authenticated else "",
        "email_matches": user.is_authenticated
        and found.email in members.account_emails(signed_in_user(request)),
        "form": form,
        "error": error,
    }
    return invitation_page(request, context, status=400 if error or form.errors else 200)


def joined(request: HttpRequest, membership: Membership) -> HttpResponse:
    request.session.pop(INVITATION_KEY, None)
    request.session[SESSION_WORKSPACE_KEY] = membership.workspace_id
    name = membership.workspace.name
    messages.success(request, f"Welcome to {name}: you joined as {membership.get_role_display().lower()}.")
    return redirect("settings-home")
