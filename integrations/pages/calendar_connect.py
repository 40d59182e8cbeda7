"""Connect, OAuth callback, disconnect and Sync now of a member's own calendar (Settings >
Calendar). Each view parses the request, calls one service of integrations.calendars, and
redirects back to the page with a message; a refusal by a kill switch or an allowlist is a 403
page saying which."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from conduit.services import ConduitError
from conduit.tenancy import workspace_of
from conduit.views import signed_in_user, workspace_required
from integrations.calendars import jobs
from integrations.calendars import oauth as calendar_oauth
from integrations.calendars.flags import CalendarForbidden
from integrations.models import ExternalCalendarConnection
from integrations.providers import CALENDAR_PROVIDERS

ERROR_PAGE = "integrations/oauth_error.html"


def check_provider(provider: str) -> str:
    if provider not in CALENDAR_PROVIDERS:
        raise Http404("unknown calendar provider")
    return provider


def forbidden(request: HttpRequest, exc: CalendarForbidden, title: str) -> HttpResponse:
    return render(request, ERROR_PAGE, {"message": exc.message, "title": title}, status=403)


def own_connection(request: HttpRequest, connection_id: int) -> ExternalCalendarConnection:
    conn = calendar_oauth.own_connection(connection_id, signed_in_user(request), workspace_of(request))
    if conn is None:
        raise Http404("no such calendar connection of yours")
    return conn


@require_POST
@workspace_required
def connect(request: HttpRequest, provider: str) -> HttpResponse:
    check_provider(provider)
    try:
        url = calendar_oauth.begin_authorization(
            provider, workspace=workspace_of(request), user=signed_in_user(request)
        )
    except CalendarForbidden as exc:
        return forbidden(request, exc, "Calendar not connected")
    except ConduitError as exc:
        messages.error(request, exc.user_message)
        return redirect("calendar")
    return redirect(url)


@require_GET
@login_required
def callback(request: HttpRequest, provider: str) -> HttpResponse:
    check_provider(provider)
    params = {k: request.GET.get(k, "") for k in ("state", "code", "error")}
    try:
        outcome = calendar_oauth.finish_authorization(provider, params, user=signed_in_user(request))
    except CalendarForbidden as exc:
        return forbidden(request, exc, "Calendar not connected")
    except ConduitError as exc:
        return render(request, ERROR_PAGE, {"message": exc.user_message}, status=400)
    label = calendar_oauth.label(provider)
    if outcome.kind == "denied":
        messages.info(request, f"You declined access to your {label}; nothing was saved.")
    elif outcome.kind == "missing_scope":
        messages.error(
            request,
            f"{label} did not grant access to your calendar. Connect again and allow calendar access "
            "on the consent screen; nothing was saved.",
        )
    elif outcome.connection is not None:
        conn = outcome.connection
        again = "reconnected" if outcome.kind == "reconnected" else "connected"
        messages.success(
            request, f"{label} {again} ({conn.account_email}). Conduit syncs your meetings within minutes."
        )
    return redirect("calendar")


@require_POST
@workspace_required
def disconnect(request: HttpRequest, connection_id: int) -> HttpResponse:
    conn = own_connection(request, connection_id)
    label = calendar_oauth.label(conn.provider)
    if conn.status == ExternalCalendarConnection.Status.DISCONNECTED:
        messages.info(request, f"{label} is already disconnected.")
        return redirect("calendar")
    done = calendar_oauth.do_disconnect_calendar(conn, actor=signed_in_user(request))
    note = (
        ""
        if done.revoked
        else " (the provider could not be told; Conduit deleted its copy of the access anyway)"
    )
    messages.success(
        request,
        f"{label} disconnected{note}. Conduit deleted the {done.events_deleted} meetings it had "
        "stored from it.",
    )
    return redirect("calendar")


@require_POST
@workspace_required
def sync_now(request: HttpRequest, connection_id: int) -> HttpResponse:
    conn = own_connection(request, connection_id)
    try:
        jobs.request_sync(conn)
    except CalendarForbidden as exc:
        return forbidden(request, exc, "Sync not started")
    except ConduitError as exc:
        messages.error(request, exc.user_message)
        return redirect("calendar")
    messages.success(request, f"Sync of your {calendar_oauth.label(conn.provider)} requested.")
    return redirect("calendar")
