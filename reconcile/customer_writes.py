"""The writes page of one CRM connection, under Settings → Integrations: which writes failed,
failed for good or were skipped, why in plain words (error_words.py), and, for workspace owners
and admins, Retry now and Skip on each, through the same audited services as the admin
(reconcile.services). Members read the page; their POST is a 403. A write of another workspace
is a 404. The Integrations card (integrations/pages) links here by URL name.

The page runs a fixed number of queries whatever the number of rows shown: the connection, one
aggregate for the counts, the page's count and rows, and the cached contact lookups of the rows.
Templates get plain values and run none."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import BooleanField, Case, Count, Q, Value, When
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from conduit.tenancy import workspace_of
from conduit.views import signed_in_user, workspace_required
from integrations.models import CRM_CHOICES, CrmConnection
from integrations.pages.views import check_crm, is_admin
from integrations.providers import get_provider
from reconcile.error_words import Reason, reason_for
from reconcile.models import CrmWriteLog, DealMapping, WriteOperation
from reconcile.services import RETRYABLE, do_retry_writes, do_skip_writes, payload_or_none

Status = CrmWriteLog.Status
PER_PAGE = 50
SUBJECT_PREFIX = "Email: "
SEEN_RE = re.compile(r"[a-z_]+\.([01])\.(\d+)\.\d+")


@dataclass(frozen=True)
class Tab:
    label: str
    rows: Q


TABS: dict[str, Tab] = {
    "failed": Tab("All failed", Q(status=Status.FAILED)),
    "permanent": Tab("Permanent failures", Q(status=Status.FAILED, permanent_failure=True)),
    "retrying": Tab("Retrying", Q(status=Status.FAILED, permanent_failure=False)),
    "skipped": Tab("Skipped", Q(status=Status.SKIPPED)),
}
DEFAULT_TAB = "failed"
# what happened to a write between the page and the click, by its status now
STALE: dict[str, str] = {
    Status.SUCCEEDED: "was sent to {crm} in the meantime",
    Status.SKIPPED: "was skipped in the meantime",
    Status.SENDING: "is being sent right now",
    Status.PLANNED: "was queued again in the meantime",
    Status.DRY_RUN: "is held in dry run now",
}


def connection_of(workspace: Any, crm: str) -> CrmConnection:
    """The workspace's connection to `crm`: the one not disconnected, else the latest (its
    writes stay readable after a disconnect). 404 when there was never one."""
    conn = (
        CrmConnection.objects.filter(workspace=workspace, crm=check_crm(crm))
        .only("pk", "workspace_id", "crm", "status", "dry_run")
        .order_by(
            Case(When(status=CrmConnection.Status.DISCONNECTED, then=Value(1)), default=Value(0)), "-pk"
        )
        .first()
    )
    if conn is None:
        raise Http404("this workspace has no connection to that CRM")
    return conn


def counts_of(conn: CrmConnection) -> dict[str, int]:
    failed = Q(status=Status.FAILED)
    return CrmWriteLog.objects.filter(connection=conn, status__in=[Status.FAILED, Status.SKIPPED]).aggregate(
        failed=Count("id", filter=failed),
        permanent=Count("id", filter=failed & Q(permanent_failure=True)),
        retrying=Count("id", filter=failed & Q(permanent_failure=False)),
        skipped=Count("id", filter=Q(status=Status.SKIPPED)),
    )


def seen_token(row: CrmWriteLog) -> str:
    """The state the page showed (status, permanent, attempts, last change); an action on a write
    that changed since changes nothing."""
    changed = int(row.updated_at.timestamp() * 1_000_000)
    return f"{row.status}.{int(row.permanent_failure)}.{row.retry_count}.{changed}"


def subject_of(row: CrmWriteLog) -> str:
    subject = str(row.payload.get("subject") or "")
    return subject.removeprefix(SUBJECT_PREFIX) or "(no subject)"


def occurred_at(row: CrmWriteLog) -> datetime | None:
    try:
        return datetime.fromisoformat(str(row.payload["occurred_at"]))
    except (KeyError, ValueError):
        return None


def request_body(row: CrmWriteLog, mapping: DealMapping) -> str:
    """The exact request body, as the card's previews show it; '' when the stored payload
    cannot make one (a row planned by an older version)."""
    body = payload_or_none(row, mapping)
    return json.dumps(body, indent=2, sort_keys=True) if body is not None else ""


def next_attempt(row: CrmWriteLog, reason: Reason, conn: CrmConnection, now: datetime) -> dict[str, Any]:
    """When the write is tried next, as a label and (when scheduled) a time."""
    if row.status == Status.SKIPPED:
        return {"label": "Not sent"}
    if row.permanent_failure:
        return {"label": "None: Conduit stopped trying"}
    if row.next_retry_at is not None:
        return {"label": "Due now" if row.next_retry_at <= now else "", "at": row.next_retry_at}
    if reason.needs_reconnect or conn.status != CrmConnection.Status.CONNECTED:
        return {"label": f"After {conn.get_crm_display()} is reconnected"}
    return {"label": "When sync resumes"}


def item_for(
    row: Any, conn: CrmConnection, mapping: DealMapping | None, now: datetime, *, can_admin: bool
) -> dict[str, Any]:
    label = conn.get_crm_display()
    mapping = mapping or DealMapping(connection_id=conn.pk, email=row.target)  # "not looked up": no query
    reason = reason_for(
        row.last_error_code,
        row.last_error_message,
        crm=label,
        permanent=row.permanent_failure,
        oauth=get_provider(conn.crm).uses_oauth,
    )
    resolved = row.payload if "contact_id" in row.payload else {}  # set just before a send
    contact = str(resolved.get("contact_id") or mapping.contact_id or "") if resolved else mapping.contact_id
    deal = str(resolved.get("deal_id") or "") if resolved else mapping.deal_id
    if row.status == Status.SKIPPED:
        state, badge = "Skipped", "badge-off"
    elif row.permanent_failure:
        state, badge = "Permanent failure", "badge-bad"
    else:
        state, badge = "Retrying", "badge-warn"
    return {
        "id": row.pk,
        "operation": row.get_operation_display(),
        "target": row.target,
        "contact_id": contact,
        "deal_id": deal,
        "subject": subject_of(row),
        "message_id": row.message_id,
        "is_meeting": row.operation == WriteOperation.MEETING,
        "occurred_at": occurred_at(row),
        "created_at": row.created_at,
        "changed_at": row.updated_at,
        "changed_label": "Skipped" if row.status == Status.SKIPPED else "Updated",
        "attempts": row.retry_count,
        "next": next_attempt(row, reason, conn, now),
        "permanent": row.permanent_failure,
        "status": row.status,
        "state": state,
        "badge": badge,
        "reason": reason,
        "summary": str(row.payload.get("text") or ""),
        "request_body": request_body(row, mapping),
        "can_retry": can_admin and row.can_retry,
        "can_skip": can_admin and row.status == Status.FAILED,
        "seen": seen_token(row),
    }


def connection_notice(conn: CrmConnection) -> str:
    label = conn.get_crm_display()
    if conn.status == CrmConnection.Status.ERROR:
        return f"{label} needs to be reconnected: its writes wait until it is, and are then sent."
    if conn.status == CrmConnection.Status.DISCONNECTED:
        return f"{label} is disconnected: these writes are sent only if it is connected again."
    if conn.status == CrmConnection.Status.PENDING_CLAIM:
        return f"{label} is not connected to this workspace yet."
    if conn.dry_run:
        return f"{label} is in dry run: nothing is sent until an admin switches it to live."
    return ""


def chosen_tab(value: str | None) -> str:
    return value if value in TABS else DEFAULT_TAB


def page_url(crm: str, tab: str, page: int | str = 1) -> str:
    query = {"show": tab} if tab != DEFAULT_TAB else {}
    if str(page) != "1":
        query["page"] = str(page)
    return reverse("integrations-writes", args=[crm]) + (f"?{urlencode(query)}" if query else "")


@require_GET
@workspace_required
def writes_page(request: HttpRequest, crm: str) -> HttpResponse:
    workspace, can_admin = workspace_of(request), is_admin(request)
    conn = connection_of(workspace, crm)
    tab = chosen_tab(request.GET.get("show"))
    rows = (
        CrmWriteLog.objects.filter(TABS[tab].rows, connection=conn)
        .annotate(
            can_retry=Case(
                When(RETRYABLE, then=Value(True)), default=Value(False), output_field=BooleanField()
            )
        )
        .defer("lease_token")
        .order_by("-created_at", "-id")
    )
    page = Paginator(rows, PER_PAGE).get_page(request.GET.get("page"))
    shown = list(page.object_list)
    mappings = {
        m.email: m
        for m in DealMapping.objects.filter(connection=conn, email__in={r.target for r in shown}).only(
            "email", "contact_id", "deal_id", "connection_id"
        )
    }
    now = timezone.now()
    counts = counts_of(conn)
    context = {
        "crm": conn.crm,
        "label": conn.get_crm_display(),
        "conn": {
            "status": conn.status,
            "status_label": conn.get_status_display(),
            "dry_run": conn.dry_run,
            "notice": connection_notice(conn),
        },
        "counts": counts,
        "tabs": [
            {
                "key": key,
                "label": t.label,
                "count": counts[key],
                "url": page_url(conn.crm, key),
                "active": key == tab,
            }
            for key, t in TABS.items()
        ],
        "tab": tab,
        "items": [item_for(r, conn, mappings.get(r.target), now, can_admin=can_admin) for r in shown],
        "page": page,
        "previous_url": page_url(conn.crm, tab, page.previous_page_number()) if page.has_previous() else "",
        "next_url": page_url(conn.crm, tab, page.next_page_number()) if page.has_next() else "",
        "can_admin": can_admin,
        "max_attempts": settings.CONDUIT_WRITE_MAX_ATTEMPTS,
    }
    return render(request, "reconcile/writes.html", context)


@require_POST
@workspace_required
def retry_write(request: HttpRequest, crm: str, write_id: int) -> HttpResponse:
    return act_on_write(request, crm, write_id, retry=True)


@require_POST
@workspace_required
def skip_write(request: HttpRequest, crm: str, write_id: int) -> HttpResponse:
    return act_on_write(request, crm, write_id, retry=False)


def act_on_write(request: HttpRequest, crm: str, write_id: int, *, retry: bool) -> HttpResponse:
    """Retry now or Skip one write, by an owner or admin, only if it is still as the page showed
    it; the service audits it with the user as actor. Anything else changes nothing."""
    check_crm(crm)
    if not is_admin(request):
        raise PermissionDenied("only workspace owners and admins can retry or skip writes")
    row = (
        CrmWriteLog.objects.select_for_update(of=("self",))
        .filter(pk=write_id, workspace=workspace_of(request), provider=crm)
        .first()
    )
    if row is None:
        raise Http404("no such write")
    label = dict(CRM_CHOICES)[crm]
    tab = chosen_tab(request.POST.get("show"))
    page = request.POST.get("page", "1")
    back = page_url(crm, tab, page if page.isdigit() else 1)
    seen = request.POST.get("seen", "")
    if not (shown := SEEN_RE.fullmatch(seen)):
        messages.error(
            request, "That request was incomplete, so nothing was changed. Reload the page and try again."
        )
        return redirect(back)
    if seen != seen_token(row):
        what = STALE.get(row.status, "")
        if not what:  # still failed: retried by someone, or tried again by Conduit
            was_permanent, attempts = shown[1] == "1", int(shown[2])
            retried = (was_permanent and not row.permanent_failure) or (attempts > 0 and row.retry_count == 0)
            what = "was retried in the meantime" if retried else "was tried again in the meantime"
        messages.warning(request, f"Write #{row.pk} {what.format(crm=label)}; nothing was changed.")
        return redirect(back)
    actor = signed_in_user(request)
    if retry:
        if do_retry_writes([row], actor=actor, reason="customer: writes page"):
            live = CrmConnection.objects.filter(
                pk=row.connection_id, status=CrmConnection.Status.CONNECTED, dry_run=False
            ).exists()
            when = (
                f"Conduit sends it to {label} now"
                if live
                else f"it is sent once {label} is connected and live"
            )
            messages.success(request, f"Write #{row.pk} is queued again with its attempts reset: {when}.")
        else:
            messages.error(request, f"Write #{row.pk} cannot be retried; nothing was changed.")
    elif do_skip_writes([row], actor=actor, reason="customer: writes page"):
        messages.success(
            request, f"Write #{row.pk} skipped: Conduit will not send it. It is listed under Skipped."
        )
    else:
        messages.error(request, f"Write #{row.pk} cannot be skipped; nothing was changed.")
    return redirect(back)
