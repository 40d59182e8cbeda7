"""Operators see and edit every workspace's retention policy; a save goes through
do_update_policy, so it is validated and audited exactly like the settings page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from conduit.admin import AuditedAdmin
from conduit.admin_display import words
from retention.models import RetentionPolicy
from retention.policy import do_update_policy

COLUMNS = (
    "workspace",
    "purge_enabled",
    "message_days",
    "attachment_days",
    "sync_log_days",
    "updated_at",
    "updated_by",
)


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(AuditedAdmin):
    list_display = (
        "workspace",
        "purge",
        "message_days",
        "attachment_days",
        "sync_log_days",
        "updated_at",
        "updated_by",
    )
    list_filter = ("purge_enabled",)
    search_fields = ("workspace__slug", "workspace__name")
    list_select_related = ("workspace",)
    autocomplete_fields = ("workspace",)
    fields = COLUMNS
    readonly_fields = ("updated_at", "updated_by")
    purge = words("purge_enabled", "on", "off", "purge")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return (*self.readonly_fields, "workspace") if obj is not None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        actor = request.user if request.user.is_authenticated else None
        update = do_update_policy(obj.workspace, form.cleaned_data, actor=actor)
        obj.pk = update.policy.pk  # the admin redirects to the saved row
