"""Triage of one write on its own admin page: Retry now and Skip as buttons, posting to admin
views that call the same audited services as the list's actions. Only staff who may change
writes see or use them. And the list filter that finds skipped writes by why they were skipped."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import URLPattern, path
from django.views.decorators.http import require_POST

from reconcile.failures import operator_skipped, triage_choices
from reconcile.models import CrmWriteLog
from reconcile.services import do_retry_writes, do_skip_writes

Status = CrmWriteLog.Status


class SkippedFilter(admin.SimpleListFilter):
    title = "skipped"
    parameter_name = "skipped"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("operator", "By a person (an operator or a workspace admin)"),
            ("was_permanent", "By a person, was a permanent failure"),
            ("no_matching_contact", "No contact had the email"),
            ("skipped_at_go_live", "Planned in dry run, not sent at go live"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value in ("operator", "was_permanent"):
            return operator_skipped(queryset, was_permanent=value == "was_permanent")
        if value in ("no_matching_contact", "skipped_at_go_live"):
            return queryset.filter(status=Status.SKIPPED, last_error_code=value)
        return queryset


class WriteTriageMixin:
    """For CrmWriteLogAdmin: the triage box on a write's change page and the views behind it."""

    admin_site: admin.AdminSite
    message_user: Any

    def has_triage_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff and user.has_perm("reconcile.change_crmwritelog"))

    def get_urls(self) -> list[URLPattern]:
        def view(name: str, handler: Any) -> URLPattern:
            wrapped = self.admin_site.admin_view(require_POST(handler))
            return path(f"<int:object_id>/{name}/", wrapped, name=f"reconcile_crmwritelog_{name}")

        return [view("retry", self.retry_view), view("skip", self.skip_view), *super().get_urls()]  # type: ignore[misc]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        write = CrmWriteLog.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        if write is not None and self.has_triage_permission(request):
            extra_context = {**(extra_context or {}), "triage": triage_choices(write)}
        return super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc]

    def retry_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        write = self._triaged(request, object_id)
        if do_retry_writes([write], actor=cast(User, request.user), reason="admin: retry now"):
            self.message_user(request, "Requeued: the write is due now, with its attempts reset.")
        else:
            self.message_user(
                request,
                f"Not retried: the write is {write.get_status_display().lower()}; nothing changed.",
                messages.ERROR,
            )
        return redirect("admin:reconcile_crmwritelog_change", object_id=write.pk)

    def skip_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        write = self._triaged(request, object_id)
        if do_skip_writes([write], actor=cast(User, request.user), reason="admin: skip"):
            self.message_user(
                request, "Skipped: the write will not be sent; it is kept, and the skip is audited."
            )
        else:
            self.message_user(
                request,
                f"Not skipped: the write is {write.get_status_display().lower()}; nothing changed.",
                messages.ERROR,
            )
        return redirect("admin:reconcile_crmwritelog_change", object_id=write.pk)

    def _triaged(self, request: HttpRequest, object_id: int) -> CrmWriteLog:
        if not self.has_triage_permission(request):
            raise PermissionDenied
        write = CrmWriteLog.objects.filter(pk=object_id).first()
        if write is None:
            raise Http404("No write has this id.")
        return write
