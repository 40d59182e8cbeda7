"""Operator triage of the write ledger (filters, retry now, skip, payload view; the buttons on a
write's page are in admin_triage.py), the contact -> deal mappings operators may override, and
the workspaces' write policies."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from conduit.admin import AuditedAdmin, ReadOnlyAdmin
from conduit.admin_display import pretty_json, short_time
from integrations.pages.previews import sent_for
from reconcile import admin_panels
from reconcile.admin_triage import SkippedFilter, WriteTriageMixin
from reconcile.models import CrmWriteLog, DealMapping, WritePolicy
from reconcile.services import do_retry_writes, do_skip_writes, payload_or_none
from reconcile.write_settings import MAX_DUE_DAYS, MIN_DUE_DAYS, DomainsInvalid, parse_domains

assert admin_panels  # registers the permanent failures panel of the home page


@admin.register(CrmWriteLog)
class CrmWriteLogAdmin(WriteTriageMixin, ReadOnlyAdmin):
    list_display = (
        "id",
        "target",
        "workspace",
        "provider",
        "state",
        "tries",
        "last_error_code",
        "created_at",
    )
    list_filter = (
        "status",
        "permanent_failure",
        SkippedFilter,
        "provider",
        "last_error_code",
        "operation",
        "workspace",
    )
    search_fields = ("target", "idempotency_key", "external_id", "last_error_code", "workspace__slug")
    date_hierarchy = "created_at"
    list_select_related = ("workspace",)
    exclude = ("payload", "lease_token")
    readonly_fields = ("sent_as", "marker", "curated_payload", "request_body")
    actions = ["retry_now", "skip"]

    @admin.display(description="status", ordering="status")
    def state(self, obj: CrmWriteLog) -> SafeString | str:
        label = obj.get_status_display()
        if obj.permanent_failure:
            return format_html("{}, <strong>permanent</strong>", label)
        if obj.next_retry_at and obj.status in (CrmWriteLog.Status.FAILED, CrmWriteLog.Status.PLANNED):
            return format_html(
                '{}<br><span class="quiet">next {}</span>', label, short_time(obj.next_retry_at)
            )
        return label

    @admin.display(description="tries", ordering="retry_count")
    def tries(self, obj: CrmWriteLog) -> int:
        return obj.retry_count

    @admin.display(description="sent as")
    def sent_as(self, obj: CrmWriteLog) -> str:
        """What the CRM receives, in its own word: a Salesforce "note" is a completed Task."""
        return sent_for(obj.provider, obj.operation).what

    @admin.display(description="Curated content (what Conduit summarised)")
    def curated_payload(self, obj: CrmWriteLog) -> SafeString:
        return pretty_json(obj.payload)

    @admin.display(description="Request body sent to the CRM")
    def request_body(self, obj: CrmWriteLog) -> SafeString | str:
        body = payload_or_none(obj)
        if body is None:
            return "Cannot be built: the curated content above is incomplete."
        return pretty_json(body)

    @admin.action(description="Retry now (clears the failure and the attempt count)", permissions=["triage"])
    def retry_now(self, request: HttpRequest, queryset: Any) -> None:
        chosen = list(queryset)
        count = do_retry_writes(chosen, actor=request.user, reason="admin: retry now")  # type: ignore[arg-type]
        skipped = queryset.count() - count
        self.message_user(
            request, f"{count} write(s) requeued; {skipped} were not failed and were left alone."
        )

    @admin.action(description="Skip (give up on these writes; kept and audited)", permissions=["triage"])
    def skip(self, request: HttpRequest, queryset: Any) -> None:
        count = do_skip_writes(list(queryset), actor=request.user, reason="admin: skip")  # type: ignore[arg-type]
        level = messages.SUCCESS if count else messages.WARNING
        self.message_user(request, f"{count} write(s) skipped.", level)


@admin.register(DealMapping)
class DealMappingAdmin(AuditedAdmin):
    list_display = ("email", "workspace", "crm", "contact_id", "deal_id", "source")
    list_filter = ("source", "connection__crm")
    search_fields = ("email", "contact_id", "deal_id", "workspace__slug")
    readonly_fields = ("workspace", "connection", "email", "source", "refreshed_at")
    fields = ("workspace", "connection", "email", "contact_id", "deal_id", "source", "refreshed_at")
    list_select_related = ("workspace", "connection")

    @admin.display(description="CRM", ordering="connection__crm")
    def crm(self, obj: DealMapping) -> str:
        return obj.connection.get_crm_display()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # an operator's value is kept: lookups never replace an override
        obj.source = DealMapping.Source.OPERATOR
        obj.refreshed_at = timezone.now()
        super().save_model(request, obj, form, change)


class WritePolicyAdminForm(forms.ModelForm):
    """The console checks what the customer's Write settings page checks."""

    class Meta:
        model = WritePolicy
        fields = ["workspace", "internal_domains", "inbound_operation", "outbound_operation", "task_due_days"]

    def clean_internal_domains(self) -> list[str]:
        value = self.cleaned_data["internal_domains"] or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError('a list of domains, e.g. ["acme.com"]')
        try:
            return parse_domains(", ".join(value))
        except DomainsInvalid as exc:
            raise ValidationError(exc.messages) from None

    def clean_task_due_days(self) -> int:
        days = int(self.cleaned_data["task_due_days"])
        if not MIN_DUE_DAYS <= days <= MAX_DUE_DAYS:
            raise ValidationError(f"between {MIN_DUE_DAYS} and {MAX_DUE_DAYS} days")
        return days


@admin.register(WritePolicy)
class WritePolicyAdmin(AuditedAdmin):
    form = WritePolicyAdminForm
    list_display = ("workspace", "inbound_operation", "outbound_operation", "task_due_days", "updated_at")
    search_fields = ("workspace__slug",)
