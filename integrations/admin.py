"""Operator screens for connections and the provider call log. Tokens are never shown:
the encrypted columns are left out of every list, form and detail page."""

from __future__ import annotations

from django.contrib import admin

from conduit.admin import ReadOnlyAdmin
from integrations.models import CrmConnection, SyncLog


@admin.register(CrmConnection)
class CrmConnectionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "workspace",
        "crm",
        "status",
        "last_error",
        "external_account_key",
        "dry_run",
        "updated_at",
    )
    list_filter = ("crm", "status", "dry_run")
    search_fields = ("external_account_key", "workspace__slug", "last_error")
    fields = (
        "workspace",
        "crm",
        "status",
        "last_error",
        "external_account_key",
        "external_account_json",
        "token_expires_at",
        "granted_scopes",
        "dry_run",
        "created_at",
        "updated_at",
    )


@admin.register(SyncLog)
class SyncLogAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "workspace",
        "provider",
        "operation",
        "status",
        "http_status",
        "error_code",
        "duration_ms",
    )
    list_filter = ("status", "provider", "operation", "error_code")
    search_fields = ("operation", "error_code", "summary", "workspace__slug")
    date_hierarchy = "created_at"
    list_select_related = ("workspace",)
