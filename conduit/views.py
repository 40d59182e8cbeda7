"""Server-rendered pages of the shared core. Views parse, call a service, render."""

from __future__ import annotations

import logging
from email.utils import getaddresses
from functools import wraps
from typing import Any, cast

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.db.models import Q
from django.db.models.functions import Left
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.views.decorators.http import require_POST

from conduit import services
from conduit.crypto import decrypt, encrypt
from conduit.forms import SEARCH_MAX_CHARS, ApiTokenForm, MessageSearchForm, SignUpForm
from conduit.install_notice import install_notice
from conduit.models import ApiToken, Attachment, Membership, Message, StaffToken
from conduit.paths import safe_relative_path
from conduit.tenancy import SESSION_WORKSPACE_KEY, workspace_of

log = logging.getLogger(__name__)

# A list row reads at most this much of a subject or sender (the detail page shows all of it), so a
# 200,000-character subject costs the list page no more than an ordinary one.
PREVIEW_CHARS = 300


def workspace_required(view: Any) -> Any:
    """Signed in and a member of a workspace (workspace_of(request) set by the middleware)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if getattr(request, "membership", None) is None:
            return render(request, "conduit/no_workspace.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper


def signed_in_user(request: HttpRequest) -> User:
    """The user of a view behind login_required."""
    return cast(User, request.user)


def home(request: HttpRequest) -> HttpResponse:
    return redirect("settings-home" if request.user.is_authenticated else "login")


def safe_next(request: HttpRequest) -> str:
    """A relative path on this site to return to after sign-in or sign-up, else ''."""
    return safe_relative_path(request.POST.get("next") or request.GET.get("next"))


def signup(request: HttpRequest) -> HttpResponse:
    next_path = safe_next(request)
    if request.user.is_authenticated:
        return redirect(next_path or "settings-home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.do_sign_up(
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"],
                workspace_name=form.cleaned_data["workspace_name"],
            )
        except services.ConduitError as exc:
            form.add_error("email", exc.user_message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, "Welcome to Conduit. Your workspace is ready.")
            return redirect(next_path or "settings-home")
    context = {"form": form, "next": next_path, "install_notice": install_notice(next_path)}
    return render(request, "registration/signup.html", context, status=400 if form.errors else 200)


@workspace_required
def settings_home(request: HttpRequest) -> HttpResponse:
    workspace = workspace_of(request)
    membership: Membership | None = getattr(request, "membership", None)
    context = {
        "members": Membership.objects.filter(workspace=workspace)
        .select_related("user")
        .order_by("created_at"),
        "tokens": ApiToken.objects.filter(workspace=workspace),
        "token_form": ApiTokenForm(),
        "can_admin": membership is not None and membership.administers,
        "message_count": Message.objects.filter(workspace=workspace).count(),
        "new_token": decrypt(sealed) if (sealed := request.session.pop("new_api_token", None)) else None,
        "memberships": getattr(request, "memberships", []),
        "is_operator": request.user.is_staff,
        "staff_tokens": StaffToken.objects.filter(user=request.user) if request.user.is_staff else [],
        "new_staff_token": decrypt(sealed)
        if (sealed := request.session.pop("new_staff_token", None))
        else None,
    }
    return render(request, "conduit/settings_home.html", context)


def _require_admin(request: HttpRequest) -> None:
    membership = getattr(request, "membership", None)
    if membership is None or not membership.administers:
        raise Http404("only workspace owners and admins can manage API tokens")


@require_POST
@workspace_required
def create_api_token(request: HttpRequest) -> HttpResponse:
    _require_admin(request)
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the token a name (up to 100 characters).")
        return redirect("settings-home")
    issued = services.do_create_api_token(
        workspace_of(request),
        form.cleaned_data["name"],
        actor=signed_in_user(request),
    )
    # Kept encrypted in the session until the next page shows it once.
    request.session["new_api_token"] = encrypt(issued.raw)
    messages.success(request, f"Token “{issued.token.name}” created. Copy it now: it is shown only once.")
    return redirect("settings-home")


@require_POST
@workspace_required
def revoke_api_token(request: HttpRequest, token_id: int) -> HttpResponse:
    _require_admin(request)
    token = get_object_or_404(ApiToken, pk=token_id, workspace=workspace_of(request))
    services.do_revoke_api_token(token, actor=signed_in_user(request))
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("settings-home")


def _require_staff(request: HttpRequest) -> None:
    if not request.user.is_staff:
        raise Http404("only operators (staff users) have operator tokens")


@require_POST
@workspace_required
def create_staff_token(request: HttpRequest) -> HttpResponse:
    _require_staff(request)
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the operator token a name (up to 100 characters).")
        return redirect("settings-home")
    issued = services.do_create_staff_token(signed_in_user(request), form.cleaned_data["name"])
    request.session["new_staff_token"] = encrypt(issued.raw)
    messages.success(
        request, f"Operator token “{issued.token.name}” created. Copy it now: it is shown only once."
    )
    return redirect("settings-home")


@require_POST
@workspace_required
def revoke_staff_token(request: HttpRequest, token_id: int) -> HttpResponse:
    _require_staff(request)
    token = get_object_or_404(StaffToken, pk=token_id, user=request.user)
    services.do_revoke_staff_token(token, actor=signed_in_user(request))
    messages.success(request, f"Operator token “{token.name}” revoked.")
    return redirect("settings-home")


@require_POST
@login_required
def switch_workspace(request: HttpRequest) -> HttpResponse:
    wanted = request.POST.get("workspace_id", "")
    match = [m for m in getattr(request, "memberships", []) if str(m.workspace_id) == wanted]
    if not match:
        messages.error(request, "You are not a member of that workspace.")
    else:
        request.session[SESSION_WORKSPACE_KEY] = match[0].workspace_id
        messages.success(request, f"Switched to {match[0].workspace.name}.")
    return redirect("settings-home")


@workspace_required
def message_list(request: HttpRequest) -> HttpResponse:
    search = MessageSearchForm(request.GET)
    context: dict[str, Any] = {"search_max": SEARCH_MAX_CHARS, "preview_chars": PREVIEW_CHARS}
    if not search.is_valid():
        # The refused text is not echoed back: it may be kilobytes long.
        context.update(query="", search_error=search.first_error())
        return render(request, "conduit/message_list.html", context, status=400)
    query = search.cleaned_data["q"]
    rows = (
        Message.objects.filter(workspace=workspace_of(request))
        .defer("raw", "body_html", "body_text", "subject", "from_address")
        .annotate(
            subject_preview=Left("subject", PREVIEW_CHARS + 1),
            from_preview=Left("from_address", PREVIEW_CHARS + 1),
        )
    )
    if query:
        rows = rows.filter(Q(subject__icontains=query) | Q(from_address__icontains=query))
    context.update(query=query, page=Paginator(rows, 25).get_page(request.GET.get("page")))
    return render(request, "conduit/message_list.html", context)


def external_participants(message: Message) -> list[str]:
    """The message's addresses (From, To, Cc; bare, lower-cased, in order) that are not the
    workspace's members nor at their domains: the customers it links to ("Meetings with X")."""
    members = {
        e.lower()
        for e in Membership.objects.filter(workspace_id=message.workspace_id).values_list(
            "user__email", flat=True
        )
    }
    domains = {e.rsplit("@", 1)[-1] for e in members if "@" in e}
    found: list[str] = []
    values = [message.from_address, *(message.to_addresses or []), *(message.cc_addresses or [])]
    for _name, addr in getaddresses([v for v in values if v]):
        addr = addr.strip().lower()
        if (
            "@" in addr
            and addr not in found
            and addr not in members
            and addr.rsplit("@", 1)[-1] not in domains
        ):
            found.append(addr)
    return found


@workspace_required
def message_detail(request: HttpRequest, pk: int) -> HttpResponse:
    message = get_object_or_404(Message.objects.defer("raw"), pk=pk, workspace=workspace_of(request))
    return render(
        request,
        "conduit/message_detail.html",
        {
            "message": message,
            "attachments": message.attachments.order_by("id"),
            "customers": external_participants(message),
        },
    )


@workspace_required
def attachment_download(request: HttpRequest, pk: int) -> HttpResponse | FileResponse:
    attachment = get_object_or_404(Attachment, pk=pk, workspace=workspace_of(request))
    name = attachment.file.name
    if attachment.removed_at or not name or not default_storage.exists(name):
        if not attachment.removed_at:
            log.warning(
                "attachment file missing from storage",
                extra={"category": "storage", "error_code": "attachment_file_missing", "attachment_id": pk},
            )
        context = {"attachment": attachment, "message_id": attachment.message_id}
        return render(request, "conduit/attachment_removed.html", context, status=404)
    return FileResponse(
        default_storage.open(name, "rb"),
        as_attachment=True,
        filename=attachment.filename,
        content_type=attachment.content_type,
    )


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page links to; send them to the SVG."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))
