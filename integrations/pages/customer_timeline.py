"""A customer's timeline: the workspace's stored email with one external address (as sender,
To or Cc) and the calendar meetings it attends, newest first, 50 to a page.

One UNION query orders both kinds by time and cuts the page, two more fetch that page's rows,
and one counts: the page costs the same queries however many rows there are. Address lists are
matched in their JSON text ('"ann@acme.example"'), case-insensitively, which Postgres and SQLite
both run. A private or cancelled event never shows here; an event's description is not stored."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.core.validators import validate_email
from django.db.models import CharField, DateTimeField, Q, QuerySet, TextField, Value
from django.db.models.functions import Cast, Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from conduit.models import Message, Workspace
from conduit.tenancy import workspace_of
from conduit.views import workspace_required
from integrations.models import ExternalCalendarEvent
from integrations.pages.calendar_cards import SHORT_NAMES

PER_PAGE = 50
EMAIL, MEETING = "email", "meeting"
STATUS_WORDS: dict[str, str] = {
    "CREATED": "Waiting to be linked",
    "PROCESSED": "Linked to this customer",
    "FAILED": "Linking failed; Conduit's operators can retry it",
}


def customer_address(raw: str) -> str:
    """The address from the URL, lower-cased; 404 for anything that is not one email address."""
    address = raw.strip().lower()
    try:
        validate_email(address)
    except ValidationError:
        raise Http404("not an email address") from None
    return address


def messages_with(workspace: Workspace, address: str) -> QuerySet[Message]:
    listed = f'"{address}"'  # an element of the JSON list, bare or as '... <address>"'
    named = f'<{address}>"'
    return (
        Message.objects.filter(workspace=workspace)
        .alias(to_text=Cast("to_addresses", TextField()), cc_text=Cast("cc_addresses", TextField()))
        .filter(
            Q(from_address__iexact=address)
            | Q(from_address__icontains=f"<{address}>")
            | Q(to_text__icontains=listed)
            | Q(to_text__icontains=named)
            | Q(cc_text__icontains=listed)
            | Q(cc_text__icontains=named)
        )
    )


def meetings_with(workspace: Workspace, address: str) -> QuerySet[ExternalCalendarEvent]:
    return (
        ExternalCalendarEvent.objects.filter(workspace=workspace, cancelled=False, is_private=False)
        .alias(attendee_text=Cast("attendees", TextField()))
        .filter(attendee_text__icontains=f'"{address}"')
    )


def timeline_rows(workspace: Workspace, address: str) -> QuerySet[Any]:
    """(kind, id, at) of every item, newest first: one UNION ALL, sliced by the paginator."""
    emails = (
        messages_with(workspace, address)
        .order_by()
        .annotate(kind=Value(EMAIL, output_field=CharField()), at=Coalesce("sent_at", "received_at"))
        .values_list("kind", "id", "at")
    )
    meetings = (
        meetings_with(workspace, address)
        .order_by()
        .annotate(
            kind=Value(MEETING, output_field=CharField()),
            at=Coalesce("starts_at", "created_at", output_field=DateTimeField()),
        )
        .values_list("kind", "id", "at")
    )
    return emails.union(meetings, all=True).order_by("-at", "-id")


def email_item(message: Message, address: str) -> dict[str, Any]:
    sender = message.from_address or ""
    inbound = address in sender.lower()
    return {
        "kind": EMAIL,
        "label": "Email",
        "id": message.pk,
        "at": message.sent_at or message.received_at,
        "subject": message.subject or "(no subject)",
        "direction": "from" if inbound else "to",
        "from_address": sender,
        "to": ", ".join(message.to_addresses or []),
        "cc": ", ".join(message.cc_addresses or []),
        "redacted": message.is_redacted,
    }


def meeting_item(event: ExternalCalendarEvent) -> dict[str, Any]:
    return {
        "kind": MEETING,
        "label": "Meeting",
        "id": event.pk,
        "at": event.starts_at or event.created_at,
        "title": event.title or "(no title)",
        "starts_at": event.starts_at,
        "ends_at": event.ends_at,
        "all_day": event.all_day,
        "organizer": event.organizer,
        "attendees": list(event.attendees or []),
        "member": event.profile.email,
        "provider": SHORT_NAMES.get(event.connection.provider, event.connection.provider),
        "status": event.sync_status,
        "status_words": STATUS_WORDS.get(event.sync_status, event.sync_status),
    }


def page_items(rows: list[tuple[str, int, Any]], address: str) -> list[dict[str, Any]]:
    """The page's rows as plain values, in the UNION's order (two queries, whatever the count)."""
    email_ids = [pk for kind, pk, _at in rows if kind == EMAIL]
    meeting_ids = [pk for kind, pk, _at in rows if kind == MEETING]
    messages = Message.objects.defer("raw", "body_text", "body_html").in_bulk(email_ids) if email_ids else {}
    events = (
        ExternalCalendarEvent.objects.select_related("profile", "connection").in_bulk(meeting_ids)
        if meeting_ids
        else {}
    )
    items: list[dict[str, Any]] = []
    for kind, pk, _at in rows:
        if kind == EMAIL and pk in messages:
            items.append(email_item(messages[pk], address))
        elif kind == MEETING and pk in events:
            items.append(meeting_item(events[pk]))
    return items


@workspace_required
def customer_timeline(request: HttpRequest, email: str) -> HttpResponse:
    address = customer_address(email)
    workspace = workspace_of(request)
    paginator = Paginator(timeline_rows(workspace, address), PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    context = {
        "address": address,
        "items": page_items(list(page.object_list), address),
        "page": page,
        "total": paginator.count,
    }
    return render(request, "integrations/customer_timeline.html", context)
