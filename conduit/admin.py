"""Operator screens. Message bodies and raw email are never shown (sizes only); API tokens
show their prefix, never a hash or value; audit events are read-only.

This module also makes the default admin site the operator console (conduit/admin_console.py):
Django imports it before the other apps' admin modules, which add their home-page panels."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils import timezone

from conduit import admin_console, admin_panels
from conduit.admin_display import ConsoleAdmin, words
from conduit.audit import record_audit
from conduit.members import is_last_owner
from conduit.models import (
    ApiToken,
    Attachment,
    AuditEvent,
    Heartbeat,
    Invitation,
    Membership,
    Message,
    PeriodicRun,
    Profile,
    StaffToken,
    Workspace,
)
from conduit.services import do_revoke_api_token, do_revoke_staff_token

admin_console.install(admin.site)
assert admin_panels  # registers the beat jobs panel of the home page


def _workspace_of(obj: Any) -> Workspace | None:
    return obj if isinstance(obj, Workspace) else getattr(obj, "workspace", None)


class AuditedAdmin(ConsoleAdmin):
    """Operator edits are audited like any other state change (field names, never values)."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        record_audit(
            "admin_object_changed" if change else "admin_object_created",
            actor=request.user if request.user.is_authenticated else None,
            workspace=_workspace_of(obj),
            target=obj,
            payload={"fields": sorted(form.changed_data)},
        )

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Inline rows (e.g. a workspace's memberships) are audited like the page's object."""
        deleted = [(f.instance, str(f.instance)[:200]) for f in formset.deleted_forms if f.instance.pk]
        super().save_formset(request, form, formset, change)
        actor = request.user if request.user.is_authenticated else None
        for obj in formset.new_objects:
            record_audit(
                "admin_object_created",
                actor=actor,
                workspace=_workspace_of(obj),
                target=obj,
                payload={"fields": sorted(f.name for f in obj._meta.concrete_fields)},
            )
        for obj, fields in formset.changed_objects:
            record_audit(
                "admin_object_changed",
                actor=actor,
                workspace=_workspace_of(obj),
                target=obj,
                payload={"fields": sorted(fields)},
            )
        for obj, label in deleted:
            record_audit(
                "admin_object_deleted",
                actor=actor,
                workspace=_workspace_of(form.instance),
                payload={"model": obj._meta.model_name, "label": label},
            )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self._audit_delete(request, obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:
            self._audit_delete(request, obj)
        super().delete_queryset(request, queryset)

    def _audit_delete(self, request: HttpRequest, obj: Any) -> None:
        workspace = _workspace_of(obj)
        record_audit(
            "admin_object_deleted",
            actor=request.user if request.user.is_authenticated else None,
            workspace=None if isinstance(obj, Workspace) else workspace,
            target=obj,
            payload={"label": str(obj)[:200]},
        )


class ReadOnlyAdmin(ConsoleAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


LAST_OWNER = "A workspace needs an owner: make another member an owner first."


class KeepsAnOwner(BaseInlineFormSet):
    """A workspace's memberships edited inline must leave it an owner if it had one."""

    def clean(self) -> None:
        super().clean()
        workspace = self.instance
        if workspace.pk is None:
            return
        owners = set(workspace.memberships.filter(role=Membership.Role.OWNER).values_list("pk", flat=True))
        if not owners:
            return
        remaining = set(owners)
        for form in self.forms:
            data = form.cleaned_data
            if not data:
                continue
            is_owner = data.get("role") == Membership.Role.OWNER and not data.get("DELETE")
            key = form.instance.pk or id(form)  # a new row has no pk yet
            if is_owner:
                remaining.add(key)
            else:
                remaining.discard(key)
        if not remaining:
            raise ValidationError(LAST_OWNER)


class MembershipForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["workspace", "user", "role"]

    def clean_role(self) -> str:
        role = str(self.cleaned_data["role"])
        current = self.instance
        if current.pk and role != Membership.Role.OWNER and is_last_owner(current.workspace, current):
            raise ValidationError(LAST_OWNER)
        return role


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = KeepsAnOwner
    extra = 0
    autocomplete_fields = ["user"]

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("user", "workspace")  # each row's label


@admin.register(Workspace)
class WorkspaceAdmin(AuditedAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    list_filter = ["created_at"]
    inlines = [MembershipInline]


@admin.register(Profile)
class ProfileAdmin(AuditedAdmin):
    list_display = ["email", "display_name", "user", "created_at"]
    search_fields = ["email", "display_name"]
    list_filter = ["created_at"]


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    form = MembershipForm
    list_display = ["user", "workspace", "role", "created_at"]
    search_fields = ["user__email", "workspace__slug", "workspace__name"]
    list_filter = ["role"]
    autocomplete_fields = ["user", "workspace"]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, so the last owner stays
        return actions

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and is_last_owner(obj.workspace, obj):
            return False
        return super().has_delete_permission(request, obj)


class AttachmentInline(admin.TabularInline):
    model = Attachment
    extra = 0
    fields = (
        "filename",
        "content_type",
        "size",
        "removed_at",
    )
    readonly_fields = fields
    can_delete = False


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ["subject", "from_address", "workspace", "sent_at", "received_at", "body"]
    body = words("is_redacted", "redacted", "kept", "body")
    search_fields = ["subject", "from_address", "message_id"]
    list_filter = ["is_redacted", "workspace", "received_at"]
    fields = (
        "workspace",
        "message_id",
        "subject",
        "from_address",
        "to_addresses",
        "cc_addresses",
        "sent_at",
        "received_at",
        "size_bytes",
        "is_redacted",
        "redacted_at",
    )
    readonly_fields = fields
    inlines = [AttachmentInline]

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).defer("raw", "body_text", "body_html")


@admin.register(Attachment)
class AttachmentAdmin(ReadOnlyAdmin):
    list_display = ["filename", "content_type", "size", "workspace", "removed_at"]
    search_fields = ["filename", "message__message_id"]
    list_filter = ["content_type", "removed_at"]
    fields = (
        "workspace",
        "message",
        "filename",
        "content_type",
        "size",
        "file",
        "removed_at",
        "created_at",
    )
    readonly_fields = fields


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "event", "actor", "workspace", "target_type", "target_id"]
    search_fields = ["event", "actor", "target_id"]
    list_filter = ["event", "workspace"]
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "event",
        "actor",
        "workspace",
        "target_type",
        "target_id",
        "payload_json",
    )
    readonly_fields = fields


@admin.register(ApiToken)
class ApiTokenAdmin(ConsoleAdmin):
    list_display = ["name", "prefix", "workspace", "created_at", "last_used_at", "revoked_at"]
    search_fields = ["name", "prefix", "workspace__slug"]
    list_filter = ["revoked_at", "workspace"]
    fields = ("workspace", "name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke_tokens"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are issued in workspace settings, where the value is shown once

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke (audited) instead; the row stays as the token's history

    @admin.action(description="Revoke selected API tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: Any) -> None:
        live = [t for t in queryset.select_related("workspace") if t.revoked_at is None]
        for token in live:
            do_revoke_api_token(token, actor=cast(User, request.user))
        self.message_user(request, f"Revoked {len(live)} token(s).")


@admin.register(StaffToken)
class StaffTokenAdmin(ConsoleAdmin):
    list_display = ["name", "prefix", "user", "created_at", "last_used_at", "revoked_at"]
    search_fields = ["name", "prefix", "user__email"]
    list_filter = ["revoked_at"]
    fields = ("user", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke_tokens"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # operators issue their own tokens in settings, where the value is shown once

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke (audited) instead

    @admin.action(description="Revoke selected operator tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: Any) -> None:
        live = [t for t in queryset if t.revoked_at is None]
        for token in live:
            do_revoke_staff_token(token, actor=cast(User, request.user))
        self.message_user(request, f"Revoked {len(live)} token(s).")


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["name", "beat_at"]
    search_fields = ["name"]
    list_filter = ["name"]


@admin.register(PeriodicRun)
class PeriodicRunAdmin(ReadOnlyAdmin):
    """Which beat sent each periodic job, slot by slot (conduit/beat.py)."""

    list_display = ["job", "slot", "sent_at", "sent_by"]
    search_fields = ["job", "sent_by"]
    list_filter = ["job"]
    ordering = ["-sent_at"]


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdmin):
    """Read-only: owners and admins invite and revoke on their members page (audited there)."""

    list_display = ["email", "workspace", "role", "state", "invited_by", "created_at", "expires_at"]
    search_fields = ["email", "workspace__slug", "workspace__name"]
    list_filter = ["role", "created_at"]
    list_select_related = ["workspace", "invited_by"]
    exclude = ["token_hash"]

    @admin.display(description="status")
    def state(self, obj: Invitation) -> str:
        return str(Invitation.Status(obj.status_at(timezone.now())).label)
