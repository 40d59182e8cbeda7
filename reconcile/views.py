"""Dry run and live, from the Integrations page: a workspace admin's Go live (with or without
the writes planned during dry run) and Back to dry run. The Integrations page itself belongs to
integrations (integrations/pages/views.py); these two buttons change reconcile's writes."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from conduit.services import ConduitError
from conduit.views import signed_in_user, workspace_required
from integrations.connections import oauth
from integrations.pages.views import connection_for_admin
from reconcile.services import do_enable_dry_run, do_go_live


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
    what = f"{moved} planned write(s) will be sent" if send == "yes" else f"{moved} planned write(s) skipped"
    messages.success(request, f"{oauth.crm_label(crm)} is live: Conduit now writes to it. {what}.")
    return redirect("integrations")


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
