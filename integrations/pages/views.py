"""Integrations pages: connection cards (cards.py), the Pause sync card (sync_pause.py) with its
pause / resume buttons, connect / disconnect, the OAuth callback, install-first claim, and the
credentials form of a CRM connected with an API key (Odoo) and of an ATS (Greenhouse, Lever,
Workday: one view and one template driven by the provider's form fields). Views parse the request, call one
service, render a card or redirect."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from conduit.services import ConduitError
from conduit.tenancy import system_scope, workspace_of
from conduit.views import signed_in_user, workspace_required
from integrations.connections import claims, oauth
from integrations.connections.ats_credentials import FORMS as ATS_FORMS
from integrations.connections.ats_credentials import do_save_ats_credentials
from integrations.connections.credentials import CredentialsRefused, do_save_odoo_credentials
from integrations.connections.lifecycle import do_disconnect, live_connection
from integrations.connections.pauses import (
    PauseNotYours,
    active_pauses,
    do_pause_sync,
    do_resume_own_sync,
    target_for,
)
from integrations.health.checks import do_check_now
from integrations.ledger import ledger
from integrations.models import CRM_CHOICES, ConnectionHealth, CrmConnection, IntegrationSetting, OAuthState
from integrations.pages import connect_messages as said
from integrations.pages.cards import ats_facts, card_for, credentials_facts, health_for, revoke_hint
from integrations.pages.previews import preview_cards
from integrations.pages.sync_pause import PauseForm, card_note, still_paused, sync_card
from integrations.providers import get_provider

log = logging.getLogger("conduit.integrations")
ODOO = "odoo"
ODOO_FIELDS = ("url", "database", "login")  # typed back into the form after a refusal; never the key


def is_admin(request: HttpRequest) -> bool:
    membership = getattr(request, "membership", None)
    return membership is not None and membership.administers


def require_admin(request: HttpRequest) -> None:
    if not is_admin(request):
        raise Http404("only workspace owners and admins can manage integrations")


def check_crm(crm: str) -> str:
    if crm not in dict(CRM_CHOICES):
        raise Http404("unknown CRM")
    return crm


def connection_for_admin(request: HttpRequest, crm: str) -> CrmConnection | None:
    """The workspace's live connection to `crm` for a button only admins may press (404 for
    anyone else or an unknown CRM); None when there is none."""
    check_crm(crm)
    require_admin(request)
    with system_scope():
        return live_connection(workspace_of(request), crm)


@workspace_required
def integrations_page(request: HttpRequest) -> HttpResponse:
    return show_integrations(request)


def show_integrations(request: HttpRequest, *, pause_form: PauseForm | None = None) -> HttpResponse:
    """The page; a refused pause form comes back with its errors (400) and nothing changed."""
    workspace = workspace_of(request)
    live = {
        c.crm: c
        for c in CrmConnection.objects.filter(workspace=workspace).exclude(
            status=CrmConnection.Status.DISCONNECTED
        )
    }
    cards = [card_for(crm, label, live.get(crm)) for crm, label in CRM_CHOICES]
    health = {row.crm: row for row in ConnectionHealth.objects.filter(workspace=workspace)}
    switched_off = {
        row.provider: row for row in IntegrationSetting.objects.filter(workspace=workspace, enabled=False)
    }
    active = active_pauses()
    sync = sync_card(
        workspace, list(live.values()), can_admin=is_admin(request), form=pause_form, active=active
    )
    for card in cards:
        if conn := live.get(card["crm"]):
            row = health.get(conn.crm)
            card["health"] = health_for(row, card["label"], uses_oauth=card["uses_oauth"], conn=conn)
            card["writes"] = ledger().counts(conn)
            card["previews"] = preview_cards(conn.crm, ledger().previews(conn)) if conn.dry_run else []
            card["paused"] = card_note(active.for_connection(conn), sync["by_id"])
            card["switched_off"] = switched_off.get(conn.crm)
    context = {
        "cards": cards,
        "sync": sync,
        "can_admin": is_admin(request),
        "forced_dry_run": settings.CONDUIT_FORCE_DRY_RUN,
    }
    refused = pause_form is not None and bool(pause_form.errors)
    return render(request, "integrations/integrations.html", context, status=400 if refused else 200)


def require_pause_admin(request: HttpRequest) -> None:
    if not is_admin(request):
        raise PermissionDenied("only workspace owners and admins can pause or resume sync")


@require_POST
@workspace_required
def pause_sync(request: HttpRequest) -> HttpResponse:
    """Runbook 001's Pause Sync: a workspace admin pauses the workspace's writes (audited)."""
    require_pause_admin(request)
    form = PauseForm(request.POST)
    if not form.is_valid():
        return show_integrations(request, pause_form=form)
    workspace = workspace_of(request)
    pause, created = do_pause_sync(
        target_for(workspace=workspace), reason=form.pause_reason(), actor=signed_in_user(request)
    )
    if created:
        messages.success(
            request,
            f"Sync paused for {workspace.name}: Conduit sends nothing to your CRMs until an admin resumes "
            "it. Writes wait in the queue; nothing is lost.",
        )
    else:
        messages.info(
            request,
            f"Sync was already paused for {workspace.name} (since {pause.paused_at:%Y-%m-%d %H:%M} UTC); "
            "nothing changed.",
        )
    return redirect("integrations")


@require_POST
@workspace_required
def resume_sync(request: HttpRequest) -> HttpResponse:
    """Lift the workspace's own pause; an operator's pause is shown but not lifted here."""
    require_pause_admin(request)
    workspace = workspace_of(request)
    try:
        lifted = do_resume_own_sync(workspace, actor=signed_in_user(request))
    except PauseNotYours as exc:
        messages.error(request, exc.user_message)
        return redirect("integrations")
    if not lifted:
        messages.info(request, f"Sync was not paused for {workspace.name}; nothing changed.")
        return redirect("integrations")
    still = " Conduit's operators still hold a pause: see below." if still_paused(workspace) else ""
    messages.success(
        request, f"Sync resumed for {workspace.name}: queued writes go out within about 10 minutes.{still}"
    )
    return redirect("integrations")


@require_POST
@workspace_required
def check_now(request: HttpRequest, crm: str) -> HttpResponse:
    """Run the connection's health check at once (rate-limited per connection)."""
    conn = connection_for_admin(request, crm)
    label = oauth.crm_label(crm)
    if conn is None or conn.status != CrmConnection.Status.CONNECTED:
        messages.error(request, f"{label} is not connected; there is nothing to check.")
        return redirect("integrations")
    try:
        result = do_check_now(conn, actor=signed_in_user(request))
    except ConduitError as exc:
        messages.error(request, exc.user_message)
        return redirect("integrations")
    took = f" in {result.latency_ms} ms" if result.latency_ms is not None else ""
    if result.status == "ok":
        messages.success(request, f"{label} checked{took}: healthy.")
    else:
        messages.warning(request, f"{label} checked{took}: {result.status}. See the card for what to do.")
    return redirect("integrations")


@require_POST
@workspace_required
def connect(request: HttpRequest, crm: str) -> HttpResponse:
    check_crm(crm)
    require_admin(request)
    try:  # a CRM connected with an API key refuses here (NotOAuth): its form connects it
        url = oauth.begin_authorization(
            crm,
            workspace=workspace_of(request),
            user=signed_in_user(request),
            environment=request.POST.get("environment", "login"),
            return_path=reverse("integrations"),
        )
    except ConduitError as exc:
        messages.error(request, exc.user_message)
        return redirect("integrations")
    return redirect(url)


@require_POST
@workspace_required
def disconnect(request: HttpRequest, crm: str) -> HttpResponse:
    check_crm(crm)
    require_admin(request)
    with system_scope():
        conn = live_connection(workspace_of(request), crm)
        if conn is None:
            messages.error(request, f"{oauth.crm_label(crm)} is not connected.")
            return redirect("integrations")
        revoked = do_disconnect(conn, actor=signed_in_user(request))
    label = oauth.crm_label(crm)
    if not get_provider(crm).uses_oauth:  # Conduit cannot revoke typed credentials (Odoo, an ATS)
        what, that, it = (
            ("the credentials", "them", "them") if crm in ATS_FORMS else ("the API key", "the key", "it")
        )
        messages.success(
            request,
            f"{label} disconnected: Conduit deleted its copy of {what}. Conduit cannot revoke {that} "
            f"itself: delete {it} in {label} ({revoke_hint(crm)}).",
        )
        return redirect("integrations")
    note = "" if revoked else " (the CRM could not be told; Conduit's copy of the access was deleted anyway)"
    messages.success(request, f"{label} disconnected{note}.")
    return redirect("integrations")


@require_http_methods(["GET", "POST"])
@workspace_required
def odoo_credentials(request: HttpRequest) -> HttpResponse:
    """Connect Odoo, or update its credentials: instance URL, database, login and API key,
    checked with one authenticated call before anything is stored."""
    conn = connection_for_admin(request, ODOO)
    typed = credentials_facts(conn)
    errors: dict[str, str] = {}
    if request.method == "POST":
        typed = {**typed, **{name: request.POST.get(name, "") for name in ODOO_FIELDS}}
        try:
            saved = do_save_odoo_credentials(
                workspace_of(request),
                url=typed["url"],
                database=typed["database"],
                login=typed["login"],
                api_key=request.POST.get("api_key", ""),
                actor=signed_in_user(request),
            )
        except CredentialsRefused as exc:
            errors = exc.errors
            log.info("odoo credentials refused", extra={"category": "oauth", "error_code": exc.error_code})
        else:
            facts = credentials_facts(saved)
            what = "credentials updated" if conn else "connected"
            mode = said.mode_sentence(saved, new=conn is None)
            messages.success(
                request,
                f"Odoo {what}: {facts['url']}, database {facts['database']}, over {facts['api_label']} "
                f"(Odoo {facts['version'] or 'version unknown'}), key …{facts['key_last4']}. {mode}",
            )
            if warning := said.shared_account_warning("Odoo", saved):
                messages.warning(request, warning)
            return redirect("integrations")
    context = {
        "updating": conn is not None,
        "current": credentials_facts(conn) if conn else None,
        "values": {name: typed[name] for name in ODOO_FIELDS},
        "errors": errors,
        "form_error": errors.get("", ""),
        "sandbox_url": settings.ODOO_SANDBOX_URL,
    }
    return render(request, "integrations/odoo_credentials.html", context, status=400 if errors else 200)


def ats_admin_connection(request: HttpRequest, crm: str) -> CrmConnection | None:
    """The workspace's live connection to this ATS; 404 for an unknown one, 403 (with the reason)
    for a member who is not an owner or admin."""
    if crm not in ATS_FORMS:
        raise Http404("no credentials form for this provider")
    if not is_admin(request):
        raise PermissionDenied(
            f"only workspace owners and admins can connect {oauth.crm_label(crm)} or change its credentials"
        )
    with system_scope():
        return live_connection(workspace_of(request), crm)


def ats_form_fields(crm: str, typed: dict[str, str], errors: dict[str, str]) -> list[dict[str, Any]]:
    """The form's fields in plain values; a secret field is never typed back, even after an error."""
    return [
        {
            "name": f.name,
            "label": f.label,
            "help": f.help,
            "secret": f.secret,
            "required": f.required,
            "maxlength": f.maxlength,
            "placeholder": f.placeholder,
            "value": "" if f.secret else typed.get(f.name, ""),
            "error": errors.get(f.name, ""),
        }
        for f in ATS_FORMS[crm].fields
    ]


@require_http_methods(["GET", "POST"])
@workspace_required
def ats_credentials(request: HttpRequest, crm: str) -> HttpResponse:
    """Connect an ATS, or update its credentials, checked with the provider's one cheap
    authenticated call before anything is stored (a refusal: 400, the form's errors, nothing saved)."""
    conn = ats_admin_connection(request, crm)
    label = oauth.crm_label(crm)
    typed: dict[str, str] = {}
    errors: dict[str, str] = {}
    if request.method == "POST":
        typed = {f.name: request.POST.get(f.name, "") for f in ATS_FORMS[crm].fields}
        try:
            saved = do_save_ats_credentials(workspace_of(request), crm, typed, actor=signed_in_user(request))
        except CredentialsRefused as exc:
            errors = exc.errors
            log.info("%s credentials refused", crm, extra={"category": "oauth", "error_code": exc.error_code})
        else:
            what = "credentials updated" if conn else "connected"
            last4 = ats_facts(crm, saved)["key_last4"]
            mode = said.mode_sentence(saved, new=conn is None)
            messages.success(request, f"{label} {what}: {saved.account_label}, secret …{last4}. {mode}")
            if warning := said.shared_account_warning(label, saved):
                messages.warning(request, warning)
            return redirect("integrations")
    context = {
        "crm": crm,
        "label": label,
        "intro": ATS_FORMS[crm].intro,
        "updating": conn is not None,
        "current": ats_facts(crm, conn) if conn else None,
        "account": conn.account_label if conn else "",
        "fields": ats_form_fields(crm, typed, errors),
        "errors": errors,
        "form_error": errors.get("", ""),
        "takes_writes": get_provider(crm).supports_writes,
    }
    return render(request, "integrations/ats_credentials.html", context, status=400 if errors else 200)


def install(request: HttpRequest, crm: str) -> HttpResponse:
    """The public marketplace install URL: a state with no workspace, then the consent page."""
    check_crm(crm)
    try:
        url = oauth.begin_authorization(
            crm, workspace=None, user=None, environment=request.GET.get("environment", "login")
        )
    except ConduitError as exc:
        return render(request, "integrations/oauth_error.html", {"message": exc.user_message}, status=400)
    return redirect(url)


def callback(request: HttpRequest, crm: str) -> HttpResponse:
    check_crm(crm)
    # Zoho's redirect also names the account's data centre (location, accounts-server)
    params = {k: request.GET.get(k, "") for k in ("state", "code", "error", "location", "accounts-server")}
    try:
        outcome = oauth.finish_authorization(crm, params, user_id=request.user.pk)
    except ConduitError as exc:
        log.info("oauth callback refused", extra={"category": "oauth", "error_code": exc.error_code})
        return render(request, "integrations/oauth_error.html", {"message": exc.user_message}, status=400)
    label = oauth.crm_label(crm)
    if outcome.kind == "pending_install":
        assert outcome.pending is not None
        return redirect(
            f"{reverse('claim-install')}?{urlencode({'crm': crm, 'install_id': outcome.pending.install_id})}"
        )
    if outcome.kind == "missing_scope" and outcome.state.workspace_id is None:
        missing = ", ".join(outcome.missing)
        message = f"The install did not grant what Conduit needs: {missing}. Install again and allow them."
        return render(request, "integrations/oauth_error.html", {"message": message}, status=400)
    if outcome.kind == "denied" and outcome.state.workspace_id is None:
        message = f"You declined the {label} install; nothing was saved."
        return render(
            request, "integrations/oauth_error.html", {"message": message, "title": "Install cancelled"}
        )
    if outcome.kind == "confirm_replace":
        return redirect("oauth-confirm", state_id=outcome.state.pk)
    if outcome.kind == "denied":
        messages.info(request, f"You declined access at {label}; nothing changed.")
    elif outcome.kind == "missing_scope":
        messages.error(
            request, f"{label} did not grant: {', '.join(outcome.missing)}. Reconnect and allow them."
        )
    elif outcome.connection is not None:  # connected, or reconnected to the same account
        conn = outcome.connection
        messages.success(request, said.connected(label, conn, reconnected=outcome.kind == "reconnected"))
        if warning := said.shared_account_warning(label, conn):
            messages.warning(request, warning)
    return redirect(outcome.state.return_path or "integrations")


@require_http_methods(["GET", "POST"])
@workspace_required
def confirm_replace(request: HttpRequest, state_id: int) -> HttpResponse:
    require_admin(request)
    workspace, user = workspace_of(request), signed_in_user(request)
    if request.method == "POST":
        accept = request.POST.get("decision") == "replace"
        previous = replaced_account(state_id, workspace, user)
        try:
            conn = oauth.decide_replacement(state_id, workspace=workspace, user=user, accept=accept)
        except ConduitError as exc:
            messages.error(request, exc.user_message)
            return redirect("integrations")
        if conn is None:
            messages.info(request, "Kept the current connection; the new authorization was discarded.")
        else:
            label = conn.get_crm_display()
            messages.success(request, said.switched(label, conn, previous))
            if warning := said.shared_account_warning(label, conn):
                messages.warning(request, warning)
        return redirect("integrations")
    with system_scope():
        state = OAuthState.objects.filter(pk=state_id, workspace=workspace, user=user).first()
        current = live_connection(workspace, state.crm) if state else None
    if state is None or not state.pending_tokens or current is None:
        return render(
            request,
            "integrations/oauth_error.html",
            {"message": "There is no account switch waiting."},
            status=400,
        )
    held = state.pending_account_json
    context = {
        "label": oauth.crm_label(state.crm),
        "current": current.account_label,
        "new": f"{held_name(held['details'])} ({held['key']})",
        "state_id": state.pk,
    }
    return render(request, "integrations/confirm_replace.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def claim_install(request: HttpRequest) -> HttpResponse:
    crm = request.GET.get("crm") or request.POST.get("crm", "")
    install_id = request.GET.get("install_id") or request.POST.get("install_id", "")
    user = signed_in_user(request)
    error = ""
    if request.method == "POST":
        try:
            workspace_id = int(request.POST.get("workspace_id", ""))
        except ValueError:
            error = "Choose the workspace to connect."
        else:
            try:
                conn = claims.do_claim_install(
                    install_id,
                    crm,
                    workspace_id,
                    actor=user,
                    replace_existing=request.POST.get("replace") == "yes",
                )
            except ConduitError as exc:
                error = exc.user_message
            else:
                request.session["workspace_id"] = workspace_id
                label = conn.get_crm_display()
                mode = said.mode_sentence(conn, new=True)
                messages.success(request, f"{label} {conn.account_label} is now connected. {mode}")
                if warning := said.shared_account_warning(label, conn):
                    messages.warning(request, warning)
                return redirect("integrations")
    try:
        with system_scope():
            pending = claims.find_install(install_id, check_claim_crm(crm))
            claims.check_claimable(pending, timezone.now())
            existing = {
                c.workspace_id: c.account_label
                for c in CrmConnection.objects.filter(crm=crm, workspace__memberships__user=user).exclude(
                    status=CrmConnection.Status.DISCONNECTED
                )
            }
    except ConduitError as exc:
        return render(request, "integrations/claim_install.html", {"refusal": exc.user_message}, status=400)
    workspaces = [
        {"id": w.pk, "name": w.name, "connected_to": existing.get(w.pk, "")}
        for w in claims.admin_workspaces(user)
    ]
    context = {
        "crm": crm,
        "label": pending.get_crm_display(),
        "install_id": install_id,
        "account": pending.metadata.get("account_name") or pending.external_account_key,
        "account_key": pending.external_account_key,
        "installed_by": pending.metadata.get("installing_user_email", ""),
        "expires_at": pending.expires_at,
        "workspaces": workspaces,
        "error": error,
    }
    return render(request, "integrations/claim_install.html", context, status=400 if error else 200)


def replaced_account(state_id: int, workspace: Any, user: Any) -> str:
    """The account an account switch would replace (for the message saying what happened)."""
    with system_scope():
        state = OAuthState.objects.filter(pk=state_id, workspace=workspace, user=user).first()
        current = live_connection(workspace, state.crm) if state else None
        return current.account_label if current else ""


def held_name(details: dict[str, Any]) -> str:
    return str(details.get("hub_domain") or details.get("org_name") or details.get("instance_url") or "")


def check_claim_crm(crm: str) -> str:
    if crm not in dict(CRM_CHOICES):
        raise claims.InstallNotFound("This claim link names no CRM Conduit knows. Install Conduit again.")
    return crm
