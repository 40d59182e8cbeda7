"""Operator screens for calendar sync (runbook 004): members' calendar connections and their
events, with the runbook's triage filters (provider, status, in backoff, error count, sync
needed) and its recovery steps as audited actions: Clear backoff, Reset sync state (the Data
Recovery columns, plus sync_needed so the job runner picks it up) and Re-queue failed events.

Tokens, the push channel's secret and the sync cursor are never shown: they are left out of
every list and page (a cursor shows only as set or not). Operators do not edit rows; each
action is one set-based UPDATE and one audit row per workspace, in one transaction. The admin
runs in system scope (WorkspaceScopeMiddleware)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from conduit.admin import ReadOnlyAdmin
from conduit.admin_display import clip, short_time
from conduit.audit import record_audit
from conduit.models import Workspace
from integrations.models import ExternalCalendarConnection, ExternalCalendarEvent

Actor = AbstractBaseUser | str
FAILED, CREATED = ExternalCalendarEvent.SyncStatus.FAILED, ExternalCalendarEvent.SyncStatus.CREATED
# runbook 004, "Data Recovery" 1: the columns Reset sync state clears, exactly
RESET_SYNC_STATE: dict[str, Any] = {
    "sync_cursor": None,
    "last_synced_at": None,
    "error_count": 0,
    "last_error": None,
    "backoff_until": None,
}


def _by_workspace(rows: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = defaultdict(list)
    for pk, workspace_id in rows:
        grouped[workspace_id].append(pk)
    return dict(grouped)


def _audit_each_workspace(
    event: str, ids: dict[int, list[int]], *, actor: Actor, key: str, counts: dict[int, int] | None = None
) -> None:
    workspaces = Workspace.objects.in_bulk(list(ids))
    for workspace_id, pks in sorted(ids.items()):
        payload: dict[str, Any] = {key: sorted(pks), "count": len(pks)}
        if counts is not None:
            payload["events_requeued"] = counts.get(workspace_id, 0)
        record_audit(event, actor=actor, workspace=workspaces.get(workspace_id), payload=payload)


@transaction.atomic
def do_clear_backoff(connections: QuerySet[ExternalCalendarConnection], *, actor: Actor) -> int:
    """Runbook 004 "Clear backoff": backoff_until = NULL on the connections that had one."""
    rows = list(connections.filter(backoff_until__isnull=False).values_list("pk", "workspace_id"))
    ExternalCalendarConnection.objects.filter(pk__in=[pk for pk, _ in rows]).update(backoff_until=None)
    _audit_each_workspace("calendar_backoff_cleared", _by_workspace(rows), actor=actor, key="connection_ids")
    return len(rows)


@transaction.atomic
def do_reset_sync_state(connections: QuerySet[ExternalCalendarConnection], *, actor: Actor) -> int:
    """Runbook 004 "Reset sync state": the next sync is a full one, as soon as the runner runs."""
    rows = list(connections.values_list("pk", "workspace_id"))
    ExternalCalendarConnection.objects.filter(pk__in=[pk for pk, _ in rows]).update(
        **RESET_SYNC_STATE, sync_needed=True
    )
    _audit_each_workspace("calendar_sync_state_reset", _by_workspace(rows), actor=actor, key="connection_ids")
    return len(rows)


def _requeue(events: QuerySet[ExternalCalendarEvent]) -> list[tuple[int, int, int]]:
    rows = list(events.filter(sync_status=FAILED).values_list("pk", "workspace_id", "connection_id"))
    ExternalCalendarEvent.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(
        sync_status=CREATED, last_error=None
    )
    return rows


@transaction.atomic
def do_requeue_connection_events(connections: QuerySet[ExternalCalendarConnection], *, actor: Actor) -> int:
    """Runbook 004 "Clear failed events" for the connections: FAILED -> CREATED, last_error NULL."""
    chosen = list(connections.values_list("pk", "workspace_id"))
    rows = _requeue(ExternalCalendarEvent.objects.filter(connection_id__in=[pk for pk, _ in chosen]))
    counts: dict[int, int] = defaultdict(int)
    for _pk, workspace_id, _conn in rows:
        counts[workspace_id] += 1
    _audit_each_workspace(
        "calendar_failed_events_requeued",
        _by_workspace(chosen),
        actor=actor,
        key="connection_ids",
        counts=counts,
    )
    return len(rows)


@transaction.atomic
def do_requeue_events(events: QuerySet[ExternalCalendarEvent], *, actor: Actor) -> int:
    """The selected events that failed go back to CREATED (the others are left alone)."""
    rows = _requeue(events)
    _audit_each_workspace(
        "calendar_failed_events_requeued",
        _by_workspace((pk, workspace_id) for pk, workspace_id, _ in rows),
        actor=actor,
        key="event_ids",
    )
    return len(rows)


class InBackoffFilter(admin.SimpleListFilter):
    title = "in backoff"
    parameter_name = "in_backoff"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "In backoff now"), ("no", "Not in backoff")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        if self.value() == "yes":
            return queryset.filter(backoff_until__gt=now)
        if self.value() == "no":
            return queryset.exclude(backoff_until__gt=now)
        return queryset


class ErrorCountFilter(admin.SimpleListFilter):
    title = "errors in a row"
    parameter_name = "errors"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("0", "None"), ("1-4", "1 to 4"), ("5+", "5 or more")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "0":
            return queryset.filter(error_count=0)
        if value == "1-4":
            return queryset.filter(error_count__gte=1, error_count__lte=4)
        if value == "5+":
            return queryset.filter(error_count__gte=5)
        return queryset


class CalendarOperatorMixin:
    """The actions change rows: only staff who may change calendar connections see them."""

    def has_operate_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(
            user.is_active
            and user.is_staff
            and user.has_perm("integrations.change_externalcalendarconnection")
        )

    def done(self, request: HttpRequest, text: str) -> None:
        self.message_user(request, text, messages.SUCCESS)  # type: ignore[attr-defined]


@admin.register(ExternalCalendarConnection)
class ExternalCalendarConnectionAdmin(CalendarOperatorMixin, ReadOnlyAdmin):
    list_display = (
        "id",
        "provider",
        "member",
        "workspace",
        "status",
        "sync_enabled",
        "last_synced_at",
        "error_count",
        "backoff",
        "token_expiry",
    )
    list_filter = ("provider", "status", InBackoffFilter, ErrorCountFilter, "sync_needed", "sync_enabled")
    list_select_related = ("profile", "workspace")
    search_fields = ("account_email", "profile__email", "workspace__slug", "last_error")
    exclude = ("access_token", "refresh_token", "channel_secret", "sync_cursor")
    readonly_fields = ("cursor",)
    actions = ["clear_backoff", "reset_sync_state", "requeue_failed_events"]

    @admin.display(description="member", ordering="profile__email")
    def member(self, obj: ExternalCalendarConnection) -> Any:
        return clip(obj.profile.email)

    @admin.display(description="backoff until", ordering="backoff_until")
    def backoff(self, obj: ExternalCalendarConnection) -> Any:
        return short_time(obj.backoff_until)

    @admin.display(description="sync cursor")
    def cursor(self, obj: ExternalCalendarConnection) -> str:
        return "set (the next sync is incremental)" if obj.sync_cursor else "none (the next sync is full)"

    @admin.action(description="Clear backoff (audited)", permissions=["operate"])
    def clear_backoff(self, request: HttpRequest, queryset: QuerySet[ExternalCalendarConnection]) -> None:
        n = do_clear_backoff(queryset, actor=request.user)  # type: ignore[arg-type]
        self.done(request, f"Backoff cleared on {n} connection(s); the job runner may sync them now.")

    @admin.action(description="Reset sync state: full resync (audited)", permissions=["operate"])
    def reset_sync_state(self, request: HttpRequest, queryset: QuerySet[ExternalCalendarConnection]) -> None:
        n = do_reset_sync_state(queryset, actor=request.user)  # type: ignore[arg-type]
        self.done(request, f"Sync state reset on {n} connection(s): each runs a full sync on the next pass.")

    @admin.action(description="Re-queue failed events (audited)", permissions=["operate"])
    def requeue_failed_events(
        self, request: HttpRequest, queryset: QuerySet[ExternalCalendarConnection]
    ) -> None:
        n = do_requeue_connection_events(queryset, actor=request.user)  # type: ignore[arg-type]
        self.done(request, f"Re-queued {n} failed event(s) of the selected connection(s).")


@admin.register(ExternalCalendarEvent)
class ExternalCalendarEventAdmin(CalendarOperatorMixin, ReadOnlyAdmin):
    list_display = (
        "id",
        "shown_title",
        "member",
        "provider",
        "starts_at",
        "sync_status",
        "cancelled",
        "last_error",
    )
    list_filter = (("connection__provider", admin.AllValuesFieldListFilter), "sync_status", "cancelled")
    list_select_related = ("profile", "connection")
    search_fields = ("external_id", "ical_uid", "profile__email", "organizer")
    exclude = ("title",)
    readonly_fields = ("shown_title",)
    actions = ["requeue_failed_events"]

    @admin.display(description="title")
    def shown_title(self, obj: ExternalCalendarEvent) -> Any:
        return "(private)" if obj.is_private else clip(obj.title or "(no title)")

    @admin.display(description="member", ordering="profile__email")
    def member(self, obj: ExternalCalendarEvent) -> Any:
        return clip(obj.profile.email)

    @admin.display(description="provider", ordering="connection__provider")
    def provider(self, obj: ExternalCalendarEvent) -> str:
        return obj.connection.get_provider_display()

    @admin.action(description="Re-queue failed events (audited)", permissions=["operate"])
    def requeue_failed_events(self, request: HttpRequest, queryset: QuerySet[ExternalCalendarEvent]) -> None:
        selected = queryset.count()
        n = do_requeue_events(queryset, actor=request.user)  # type: ignore[arg-type]
        skipped = f"; {selected - n} had not failed and were left alone" if selected > n else ""
        self.done(request, f"Re-queued {n} failed event(s){skipped}.")
