"""State changes of the shared core: do_<verb>_<noun>(..., *, actor), audited in the same
transaction."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.utils import timezone
from django.utils.text import slugify

from conduit.audit import record_audit
from conduit.models import (
    STAFF_TOKEN_PREFIX,
    TOKEN_PREFIX,
    ApiToken,
    Membership,
    Profile,
    StaffToken,
    Workspace,
    hash_token,
)
from conduit.tenancy import system_scope, workspace_scope


class ConduitError(Exception):
    """A refusal a user can read: one sentence, nothing changed."""

    error_code = "error"

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class EmailTaken(ConduitError):
    error_code = "email_taken"


def workspace_by_ref(ref: str) -> Workspace | None:
    """A workspace by its id (ASCII digits) or its slug; None when there is none. How operators
    name a workspace in the API and the commands."""
    ref = ref.strip()
    if not ref or "\x00" in ref:
        return None
    with system_scope():
        if ref.isascii() and ref.isdigit():  # isdigit() alone admits "²", which int() refuses
            found = Workspace.objects.filter(pk=int(ref)).first()
            if found is not None:
                return found
        return Workspace.objects.filter(slug=ref).first()


def unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "workspace"
    slug, n = base, 1
    while Workspace.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def normalize_email(email: str) -> str:
    """How Conduit stores an email: the username, the profile's email, an invitation's email."""
    return User.objects.normalize_email(email.strip()).lower()


def create_account(*, email: str, password: str) -> User:
    """The user and their profile, for a normalized email (the caller holds system scope)."""
    if User.objects.filter(username=email).exists() or Profile.objects.filter(email=email).exists():
        raise EmailTaken("An account with this email already exists; sign in instead.")
    user = User.objects.create_user(username=email, email=email, password=password)
    Profile.objects.create(user=user, email=email)
    return user


def do_sign_up(*, email: str, password: str, workspace_name: str) -> User:
    """Create the user, their profile, a workspace and the owner membership, atomically."""
    email = normalize_email(email)
    with system_scope():
        user = create_account(email=email, password=password)
        workspace = Workspace.objects.create(name=workspace_name, slug=unique_slug(workspace_name))
        Membership.objects.create(workspace=workspace, user=user, role=Membership.Role.OWNER)
        record_audit("user_signed_up", actor=user, workspace=workspace, target=user)
        record_audit(
            "workspace_created",
            actor=user,
            workspace=workspace,
            target=workspace,
            payload={"slug": workspace.slug, "name": workspace.name},
        )
    return user


@dataclass
class IssuedToken:
    token: ApiToken
    raw: str


def do_create_api_token(workspace: Workspace, name: str, *, actor: AbstractBaseUser) -> IssuedToken:
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with workspace_scope(workspace):
        token = ApiToken.objects.create(
            workspace=workspace,
            name=name,
            prefix=raw[:10],
            token_hash=hash_token(raw),
            created_by=actor,  # type: ignore[misc]
        )
        record_audit(
            "api_token_created",
            actor=actor,
            workspace=workspace,
            target=token,
            payload={"name": name, "prefix": token.prefix},
        )
    return IssuedToken(token=token, raw=raw)


def do_revoke_api_token(token: ApiToken, *, actor: AbstractBaseUser) -> None:
    with workspace_scope(token.workspace_id):
        if token.revoked_at is not None:
            return
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        record_audit(
            "api_token_revoked",
            actor=actor,
            workspace=token.workspace,
            target=token,
            payload={"name": token.name, "prefix": token.prefix},
        )


class NotStaff(ConduitError):
    error_code = "not_staff"


@dataclass
class IssuedStaffToken:
    token: StaffToken
    raw: str


def do_create_staff_token(user: AbstractBaseUser, name: str) -> IssuedStaffToken:
    """An operator token for /api/v1/admin/* and the system-wide reads; only staff get one."""
    if not getattr(user, "is_staff", False):
        raise NotStaff("Only operators (staff users) can create operator API tokens.")
    raw = STAFF_TOKEN_PREFIX + secrets.token_urlsafe(32)
    with system_scope():
        token = StaffToken.objects.create(
            user=user,  # type: ignore[misc]
            name=name,
            prefix=raw[:10],
            token_hash=hash_token(raw),
        )
        record_audit(
            "staff_token_created", actor=user, target=token, payload={"name": name, "prefix": token.prefix}
        )
    return IssuedStaffToken(token=token, raw=raw)


def do_revoke_staff_token(token: StaffToken, *, actor: AbstractBaseUser) -> None:
    with system_scope():
        if token.revoked_at is not None:
            return
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        record_audit(
            "staff_token_revoked",
            actor=actor,
            target=token,
            payload={"name": token.name, "prefix": token.prefix, "owner_id": token.user_id},
        )
