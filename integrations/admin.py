"""Operator screens for connections and the provider call log. Tokens are never shown:
the encrypted columns are left out of every list, form and detail page."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from conduit.admin import ReadOnlyAdmin
from conduit.admin_display import ConsoleAdmin, clip, words
from conduit.models import Workspace
from conduit.services import ConduitError, workspace_by_ref
from integrations.calendars import admin as calendar_admin  # noqa: F401  registers the calendar admins
from integrations.connections import claims
from integrations.connections.lifecycle import same_account_elsewhere, workspaces_sharing_account
from integrations.connections.pauses import do_pause_sync, do_resume_sync, target_for, target_of
from integrations.connections.tokens import refresh_connection
from integrations.console import panels as admin_panels
from integrations.console.filters import ExpiresFilter
from integrations.health.checks import run_checks
from integrations.models import (
    ConnectionHealth,
    CrmConnection,
    IntegrationSetting,
    OAuthState,
    PendingInstall,
    SyncCursor,
    SyncLog,
    SyncPause,
    WebhookEvent,
)
from integrations.providers import get_provider
from integrations.providers.errors import ProviderError
from integrations.webhooks.processing import do_replay_webhooks

assert admin_panels  # registers the home page's panels of connections, installs, webhooks, pauses


class SharedAccountFilter(admin.SimpleListFilter):
    """Connections whose CRM account (a HubSpot portal, a Salesforce org) another workspace also
    connects; the customer is told only that one exists (integrations/pages/connect_messages.py)."""

    title = "CRM account also connected elsewhere"
    parameter_name = "shared_account"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Also connected in another workspace")]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset.filter(same_account_elsewhere()) if self.value() == "yes" else queryset


@admin.register(CrmConnection)
class CrmConnectionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "workspace",
        "crm",
        "status",
        "last_error",
        "external_account_key",
        "mode",
        "updated_at",
    )
    mode = words("dry_run", "dry run", "live", "mode")
    list_filter = ("crm", "status", "dry_run", SharedAccountFilter)
    search_fields = ("external_account_key", "workspace__slug", "last_error")
    readonly_fields = ("also_connected_in",)
    fields = (
        "workspace",
        "crm",
        "status",
        "last_error",
        "external_account_key",
        "also_connected_in",
        "external_account_json",
        "token_expires_at",
        "granted_scopes",
        "dry_run",
        "connected_at",
        "last_refreshed_at",
        "created_at",
        "updated_at",
    )
    actions = ["force_token_refresh"]

    @admin.display(description="Also connected in")
    def also_connected_in(self, obj: CrmConnection) -> str:
        if not (count := workspaces_sharing_account(obj)):
            return "no other workspace"
        search = urlencode({"q": obj.external_account_key})
        url = reverse("admin:integrations_crmconnection_changelist")
        return format_html('<a href="{}?{}">{} other workspace(s)</a>', url, search, count)

    @admin.action(description="Force a token refresh now")
    def force_token_refresh(self, request: HttpRequest, queryset: Any) -> None:
        for conn in queryset:
            try:
                fresh = refresh_connection(conn.pk, force=True, actor=f"user:{request.user.pk}")
            except (ConduitError, ProviderError) as exc:
                reason = exc.user_message if isinstance(exc, ConduitError) else exc.code
                self.message_user(request, f"{conn}: not refreshed ({reason})", messages.ERROR)
                continue
            level = messages.SUCCESS if fresh.status == CrmConnection.Status.CONNECTED else messages.ERROR
            done = (
                "token refreshed"
                if get_provider(fresh.crm).refreshes_tokens
                else "an API key has no refresh; unchanged"
            )
            self.message_user(request, f"{fresh}: {fresh.last_error or done}", level)


@admin.register(ConnectionHealth)
class ConnectionHealthAdmin(ReadOnlyAdmin):
    list_display = (
        "workspace",
        "crm",
        "status",
        "reason",
        "consecutive_failures",
        "last_checked_at",
        "last_ok_at",
    )
    list_filter = ("status", "crm", "reason")
    search_fields = ("workspace__slug", "reason")
    list_select_related = ("workspace",)
    actions = ["check_now"]
    CHECK_AT_ONCE = 20  # each check is a CRM call made while the admin request waits

    @admin.action(description="Check these connections now")
    def check_now(self, request: HttpRequest, queryset: Any) -> None:
        ids = [row.connection_id for row in queryset[: self.CHECK_AT_ONCE] if row.connection_id]
        if queryset.count() > self.CHECK_AT_ONCE:
            self.message_user(
                request,
                f"Checking the first {self.CHECK_AT_ONCE}; select fewer to check the rest.",
                messages.WARNING,
            )
        for result in run_checks(ids, concurrency=1):
            level = messages.SUCCESS if result.status == "ok" else messages.WARNING
            self.message_user(
                request, f"{result.crm} {result.account}: {result.status} ({result.reason})", level
            )


class OperatorClaimForm(forms.Form):
    workspace = forms.CharField(
        label="Workspace (id or slug)", max_length=100, help_text="Where the customer asked for it."
    )
    reason = forms.CharField(
        max_length=claims.OPERATOR_REASON_MAX,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Who asked and why (e.g. the ticket). Stored in the install_claimed audit event.",
    )

    def clean_workspace(self) -> Workspace:
        found = workspace_by_ref(self.cleaned_data["workspace"])
        if found is None:
            raise ValidationError("No workspace has this id or slug.")
        return found


@admin.register(PendingInstall)
class PendingInstallAdmin(ReadOnlyAdmin):
    """Read-only, but for one audited path: an operator claims an install for a customer."""

    list_display = (
        "id",
        "crm",
        "external_account_key",
        "status",
        "expires_at",
        "claimed_workspace",
        "claimed_at",
    )
    list_filter = ("crm", "status", ExpiresFilter)
    search_fields = ("external_account_key", "claimed_workspace__slug")
    exclude = ("install_id",)
    actions = ["claim_into_workspace"]

    def has_claim_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff and user.has_perm("integrations.change_pendinginstall"))

    def get_urls(self) -> list[URLPattern]:
        claim = path(
            "<int:object_id>/claim/",
            self.admin_site.admin_view(self.claim_view),
            name="integrations_pendinginstall_claim",
        )
        return [claim, *super().get_urls()]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "can_claim": self.has_claim_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Claim into a workspace…", permissions=["claim"])
    def claim_into_workspace(self, request: HttpRequest, queryset: Any) -> HttpResponse | None:
        picked = list(queryset.values_list("pk", flat=True)[:2])
        if len(picked) != 1:
            self.message_user(request, "Select exactly one pending install to claim.", messages.ERROR)
            return None
        return redirect("admin:integrations_pendinginstall_claim", object_id=picked[0])

    def claim_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_claim_permission(request):
            raise PermissionDenied
        pending = PendingInstall.objects.select_related("connection").filter(pk=object_id).first()
        if pending is None:
            raise Http404("No pending install has this id.")
        back = reverse("admin:integrations_pendinginstall_change", args=[pending.pk])
        try:
            claims.check_claimable(pending, timezone.now())
        except ConduitError as exc:
            self.message_user(request, exc.user_message, messages.ERROR)
            return redirect(back)
        form = OperatorClaimForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            workspace = form.cleaned_data["workspace"]
            try:
                claims.do_operator_claim(
                    pending, workspace, operator=cast(User, request.user), reason=form.cleaned_data["reason"]
                )
            except ConduitError as exc:
                form.add_error(None, exc.user_message)
            else:
                self.message_user(
                    request,
                    f"Claimed the {pending.get_crm_display()} install {pending.external_account_key} "
                    f"into {workspace.name} ({workspace.slug}): connected, in dry-run mode.",
                    messages.SUCCESS,
                )
                return redirect(back)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": pending,
            "title": f"Claim the {pending.get_crm_display()} install {pending.external_account_key}",
            "form": form,
            "account": pending.metadata.get("account_name", ""),
            "installed_by": pending.metadata.get("installing_user_email", ""),
            "back": back,
        }
        return TemplateResponse(request, "admin/integrations/pendinginstall/claim.html", context)


@admin.register(OAuthState)
class OAuthStateAdmin(ReadOnlyAdmin):
    list_display = ("id", "crm", "workspace", "environment", "expires_at", "used_at", "created_at")
    list_filter = ("crm", "environment")
    search_fields = ("workspace__slug",)
    exclude = ("state_hash", "code_verifier", "pending_tokens")


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


class SyncPauseForm(forms.ModelForm):
    class Meta:
        model = SyncPause
        fields = ("scope", "provider", "workspace", "connection", "reason")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        scope = data.get("scope")
        try:
            self.pause_target = target_for(
                provider=(data.get("provider") or "") if scope == "provider" else "",
                workspace=data.get("workspace") if scope == "workspace" else None,
                connection=data.get("connection") if scope == "connection" else None,
                everything=scope == "global",
            )
        except ConduitError as exc:
            raise ValidationError(exc.user_message) from None
        return data


@admin.register(SyncPause)
class SyncPauseAdmin(ConsoleAdmin):
    """Add a row to pause, delete it to resume; both go through the audited services."""

    form = SyncPauseForm
    list_display = ("what", "scope", "reason", "actor", "paused_at")
    list_select_related = ("workspace", "connection")
    list_filter = ("scope", "provider")
    autocomplete_fields = ("workspace",)
    raw_id_fields = ("connection",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="paused")
    def what(self, obj: SyncPause) -> Any:
        if obj.scope == SyncPause.Scope.GLOBAL:
            return "all CRM sync"
        return clip(obj.get_provider_display() or obj.workspace or obj.connection)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # the form refused a scope that is already paused (one pause per scope)
        pause, _ = do_pause_sync(form.pause_target, reason=obj.reason, actor=f"user:{request.user.pk}")
        obj.pk = pause.pk

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        do_resume_sync(target_of(obj), actor=f"user:{request.user.pk}")

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for pause in queryset:
            do_resume_sync(target_of(pause), actor=f"user:{request.user.pk}")


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = (
        "received_at",
        "provider",
        "event_id",
        "event_type",
        "status",
        "attempts",
        "workspace",
    )
    list_filter = ("status", "provider", "event_type")
    search_fields = ("event_id", "object_id", "external_account_key", "workspace__slug")
    date_hierarchy = "received_at"
    list_select_related = ("workspace",)
    actions = ["replay_events"]

    @admin.action(description="Replay selected events (idempotent; audited)")
    def replay_events(self, request: HttpRequest, queryset: Any) -> None:
        statuses: dict[str, int] = {}
        for event in queryset:
            result = do_replay_webhooks(
                event.provider, event_id=event.event_id, actor=f"user:{request.user.pk}"
            )
            for status, count in result.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        summary = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())) or "nothing processed"
        self.message_user(request, f"Replayed {queryset.count()} event(s): {summary}.")


@admin.register(SyncCursor)
class SyncCursorAdmin(ReadOnlyAdmin):
    list_display = (
        "workspace",
        "provider",
        "object",
        "since_ts",
        "last_run_at",
        "last_status",
        "records_seen",
    )
    list_filter = ("provider", "object", "last_status")
    search_fields = ("workspace__slug", "last_error")
    list_select_related = ("workspace",)


@admin.register(IntegrationSetting)
class IntegrationSettingAdmin(ReadOnlyAdmin):
    """Read-only: switching goes through the audited API or `manage.py set_integration_enabled`."""

    list_display = ("workspace", "provider", "switch", "reason", "changed_by", "changed_at")
    switch = words("enabled", "on", "off", "integration")
    list_filter = ("enabled", "provider")
    search_fields = ("workspace__slug", "reason")
    list_select_related = ("workspace",)
