"""Operator triage of the write ledger (filters, retry now, skip, payload view), the contact ->
deal mappings operators may override, and the workspaces' write policies."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from conduit.admin import AuditedAdmin, ReadOnlyAdmin
from reconcile.models import CrmWriteLog, DealMapping, WritePolicy
from reconcile.services import do_retry_writes, do_skip_writes, provider_payload


@admin.register(CrmWriteLog)
class CrmWriteLogAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "workspace",
        "provider",
        "operation",
        "target",
        "status",
        "permanent_failure",
        "retry_count",
        "next_retry_at",
        "last_error_code",
        "created_at",
    )
    list_filter = ("status", "permanent_failure", "provider", "last_error_code", "operation", "workspace")
    search_fields = ("target", "idempotency_key", "external_id", "last_error_code", "workspace__slug")
    date_hierarchy = "created_at"
    list_select_related = ("workspace",)
    exclude = ("payload", "lease_token")
    readonly_fields = ("marker", "curated_payload", "request_body")
    actions = ["retry_now", "skip"]

    @admin.display(description="Curated content (what Conduit summarised)")
    def curated_payload(self, obj: CrmWriteLog) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    @admin.display(description="Request body sent to the CRM")
    def request_body(self, obj: CrmWriteLog) -> str:
        return format_html("<pre>{}</pre>", json.dumps(provider_payload(obj), indent=2, sort_keys=True))

    @admin.action(description="Retry now (clears the failure and the attempt count)")
    def retry_now(self, request: HttpRequest, queryset: Any) -> None:
        count = do_retry_writes(list(queryset), actor=request.user, reason="admin: retry now")  # type: ignore[arg-type]
        skipped = queryset.count() - count
        self.message_user(
            request, f"{count} write(s) requeued; {skipped} were not failed and were left alone."
        )

    @admin.action(description="Skip (give up on these writes; kept and audited)")
    def skip(self, request: HttpRequest, queryset: Any) -> None:
        count = do_skip_writes(list(queryset), actor=request.user, reason="admin: skip")  # type: ignore[arg-type]
        level = messages.SUCCESS if count else messages.WARNING
        self.message_user(request, f"{count} write(s) skipped.", level)


@admin.register(DealMapping)
class DealMappingAdmin(AuditedAdmin):
    list_display = ("email", "workspace", "connection", "contact_id", "deal_id", "source", "refreshed_at")
    list_filter = ("source", "connection__crm")
    search_fields = ("email", "contact_id", "deal_id", "workspace__slug")
    readonly_fields = ("workspace", "connection", "email", "source", "refreshed_at")
    fields = ("workspace", "connection", "email", "contact_id", "deal_id", "source", "refreshed_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # an operator's value is kept: lookups never replace an override
        obj.source = DealMapping.Source.OPERATOR
        obj.refreshed_at = timezone.now()
        super().save_model(request, obj, form, change)


@admin.register(WritePolicy)
class WritePolicyAdmin(AuditedAdmin):
    list_display = ("workspace", "inbound_operation", "outbound_operation", "task_due_days", "updated_at")
    search_fields = ("workspace__slug",)
