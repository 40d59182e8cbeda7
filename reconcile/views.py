"""Dry run and live, from the Integrations page: a workspace admin's Go live (with or without
the writes planned during dry run) and Back to dry run; and the Write settings page under
Settings → Integrations (note or task per direction, internal domains, task due days: the
workspace's crm_write_policies row). The Integrations page itself belongs to integrations
(integrations/pages/views.py) and links here by URL name; these change reconcile's writes."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from conduit.services import ConduitError
from conduit.tenancy import workspace_of
from conduit.views import signed_in_user, workspace_required
from integrations.connections import oauth
from integrations.connections.pauses import pause_for
from integrations.models import CrmConnection
from integrations.pages.views import connection_for_admin, is_admin
from reconcile.forms import WritePolicyForm
from reconcile.services import do_enable_dry_run, do_go_live
from reconcile.write_settings import (
    do_update_write_policy,
    domains_in_use,
    policy_for,
    settings_of,
)


@require_POST
@workspace_required
def go_live(request: HttpRequest, crm: str) -> HttpResponse:
    """Dry run -> live, by a workspace admin; the form says whether to send what was planned."""
    conn = connection_for_admin(request, crm)
    send = request.POST.get("send_planned")
    if send not in ("yes", "no"):
        messages.error(request, "Choose whether to send the writes planned during dry run.")
        return redirect("integrations")
    if conn is None:
        messages.error(request, f"{oauth.crm_label(crm)} is not connected.")
        return redirect("integrations")
    try:
        moved = do_go_live(conn, send_planned=send == "yes", actor=signed_in_user(request))
    except ConduitError as exc:
        messages.error(request, exc.user_message)
        return redirect("integrations")
    what = sending_now(conn, moved) if send == "yes" else f"{moved} planned write(s) skipped"
    messages.success(request, f"{oauth.crm_label(crm)} is live: Conduit now writes to it. {what}.")
    return redirect("integrations")


def sending_now(conn: CrmConnection, moved: int) -> str:
    """What happens to the writes released by Go live, in one clause."""
    if not moved:
        return "0 planned write(s) to send"
    if pause_for(conn) is not None:
        return f"{moved} planned write(s) will be sent when sync resumes (it is paused)"
    batch = settings.CONDUIT_RECONCILE_BATCH_SIZE
    if moved > batch:
        return f"{moved} planned write(s) will be sent: {batch} now, the rest within about 10 minutes"
    return f"{moved} planned write(s) will be sent now"


@require_POST
@workspace_required
def back_to_dry_run(request: HttpRequest, crm: str) -> HttpResponse:
    conn = connection_for_admin(request, crm)
    if conn is None:
        messages.error(request, f"{oauth.crm_label(crm)} is not connected.")
        return redirect("integrations")
    held = do_enable_dry_run(conn, actor=signed_in_user(request))
    messages.success(
        request, f"{oauth.crm_label(crm)} is back in dry run: nothing is sent; {held} queued write(s) held."
    )
    return redirect("integrations")


@require_http_methods(["GET", "POST"])
@workspace_required
def write_settings(request: HttpRequest) -> HttpResponse:
    """Owners and admins edit the write settings; members read them (a member's POST is a 403)."""
    workspace, can_admin = workspace_of(request), is_admin(request)
    policy = policy_for(workspace)
    form = WritePolicyForm.for_settings(settings_of(policy))
    if request.method == "POST":
        if not can_admin:
            raise PermissionDenied("only workspace owners and admins can change the write settings")
        form = WritePolicyForm(request.POST)
        if form.is_valid():
            try:
                changed = do_update_write_policy(workspace, form.settings(), actor=signed_in_user(request))
            except ConduitError as exc:
                form.add_error(None, exc.user_message)
            else:
                saved = "Write settings saved: they apply to the next writes Conduit plans."
                messages.success(request, saved if changed else "Nothing changed.")
                return redirect("integrations-write-settings")
    context = {
        "form": form,
        "can_admin": can_admin,
        "current": settings_of(policy),
        "saved": policy.pk is not None,
        "updated_at": policy.updated_at if policy.pk else None,
        "domains_in_use": domains_in_use(workspace),
    }
    return render(request, "reconcile/write_settings.html", context, status=400 if form.errors else 200)
