"""Meeting writes: a member's calendar event with the workspace's customers becomes curated CRM
activity, one create_meeting write per (connected CRM, event, customer).

Calendars (integrations/calendars/processing.py) store each event's customers (the external
addresses among its organizer and attendees, `external_addresses`) and hand the event ids over
through the integrations.ledger port (`plan_meetings`). The text names the title, the time range
(UTC), the organizer, the attendees and a link to the customer in Conduit: never the event's
description (none is stored). Like an email's writes, a meeting's are in dry run unless the
connection is live, keyed so that planning an event again adds nothing (ON CONFLICT DO NOTHING),
and live ones are sent after the planning transaction commits.

v1 limits: an event changed after its write was planned keeps that write (meeting updates are not
propagated to the CRM), and a cancelled event's write, when one was planned before the
cancellation, is left as it is.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from conduit.logging import log_failure
from conduit.models import Workspace
from conduit.tenancy import system_scope, workspace_scope
from integrations.models import CrmConnection, ExternalCalendarEvent
from reconcile.curation import (
    SUBJECT_MAX,
    PlanResult,
    addresses,
    insert_new,
    is_dry_run,
    rules_for,
    writable_connections,
)
from reconcile.models import CrmWriteLog, WriteOperation
from reconcile.planning import dispatch_planned

log = logging.getLogger("conduit.reconcile")
OPERATION = WriteOperation.MEETING.value
ATTENDEES_MAX = 50  # the text and payload name at most this many attendees ("and N more")


class MeetingNotPlannable(ValueError):
    """An event that cannot become a meeting write (its message is the event's last_error)."""


def meeting_key(workspace_id: int, connection_id: int, event_id: int, target: str) -> str:
    """Deterministic: the same event, connection and customer always give the same key."""
    raw = f"{workspace_id}|{connection_id}|event:{event_id}|{OPERATION}|{target.lower()}"
    return hashlib.sha256(raw.encode()).hexdigest()


def customer_link(email: str) -> str:
    return settings.CONDUIT_PUBLIC_URL + reverse("customer-timeline", args=[email])


def time_range(event: ExternalCalendarEvent) -> str:
    """2026-05-04 14:00-15:00 UTC; 2026-05-04 (all day); across days, both dates."""
    if event.starts_at is None:
        raise MeetingNotPlannable("the event has no start time")
    start = event.starts_at.astimezone(UTC)
    end = event.ends_at.astimezone(UTC) if event.ends_at else None
    if event.all_day:
        if end is not None and (end - start).days > 1:
            return f"{start:%Y-%m-%d} to {end:%Y-%m-%d} (all day)"
        return f"{start:%Y-%m-%d} (all day)"
    if end is None or end <= start:
        return f"{start:%Y-%m-%d %H:%M} UTC"
    if end.date() == start.date():
        return f"{start:%Y-%m-%d %H:%M}-{end:%H:%M} UTC"
    return f"{start:%Y-%m-%d %H:%M} - {end:%Y-%m-%d %H:%M} UTC"


def attendees_of(event: ExternalCalendarEvent) -> list[str]:
    return addresses(str(a) for a in (event.attendees or []))


def meeting_text(event: ExternalCalendarEvent, target: str) -> str:
    """What the CRM record says. Metadata only: never the event's description."""
    people = attendees_of(event)
    shown = ", ".join(people[:ATTENDEES_MAX]) or "(none)"
    if len(people) > ATTENDEES_MAX:
        shown += f" and {len(people) - ATTENDEES_MAX} more"
    return "\n".join(
        [
            f"Meeting: {title_of(event)}",
            f"When: {time_range(event)}",
            f"Organizer: {event.organizer or '(unknown)'}",
            f"Attendees: {shown}",
            f"In Conduit: {customer_link(target)}",
        ]
    )


def title_of(event: ExternalCalendarEvent) -> str:
    return (event.title or "(no title)").strip()[:SUBJECT_MAX] or "(no title)"


def meeting_payload(event: ExternalCalendarEvent, target: str) -> dict[str, Any]:
    if event.starts_at is None:
        raise MeetingNotPlannable("the event has no start time")
    return {
        "subject": f"Meeting: {title_of(event)}",
        "text": meeting_text(event, target),
        "occurred_at": event.starts_at.astimezone(UTC).isoformat(),
        "ends_at": event.ends_at.astimezone(UTC).isoformat() if event.ends_at else None,
        "all_day": event.all_day,
        "organizer": event.organizer,
        "attendees": attendees_of(event)[:ATTENDEES_MAX],
        "link": customer_link(target),
        "contact_email": target,
    }


def meeting_rows(
    event: ExternalCalendarEvent, connections: list[CrmConnection], now: datetime
) -> list[CrmWriteLog]:
    targets = addresses(str(e) for e in (event.customer_emails or []))[
        : settings.CONDUIT_MAX_WRITES_PER_MESSAGE
    ]
    payloads = {target: meeting_payload(event, target) for target in targets}
    rows: list[CrmWriteLog] = []
    for conn in connections:
        dry = is_dry_run(conn)
        rows += [
            CrmWriteLog(
                workspace_id=event.workspace_id,
                connection=conn,
                calendar_event=event,
                message=None,
                provider=conn.crm,
                operation=OPERATION,
                target=target,
                idempotency_key=meeting_key(event.workspace_id, conn.pk, event.pk, target),
                payload=payload,
                status=CrmWriteLog.Status.DRY_RUN if dry else CrmWriteLog.Status.PLANNED,
                next_retry_at=None if dry else now,
                created_at=now,
            )
            for target, payload in payloads.items()
        ]
    return rows


def _workspace(workspace_id: int) -> Workspace:
    with system_scope():
        return Workspace.objects.get(pk=workspace_id)


def external_addresses(workspace_id: int, values: Iterable[str]) -> list[str]:
    """The addresses among `values` that are not the workspace's own (curation's rules)."""
    found = addresses(values)
    if not found:
        return []
    workspace = _workspace(workspace_id)
    with workspace_scope(workspace):
        rules = rules_for(workspace)
    return [a for a in found if not rules.is_internal(a)]


def plan_meeting_rows(
    workspace: Workspace, event_ids: list[int], now: datetime
) -> tuple[PlanResult, dict[int, str | None]]:
    """Insert the meeting writes of these events (inside the caller's transaction)."""
    result = PlanResult(messages=len(event_ids))
    outcome: dict[int, str | None] = dict.fromkeys(event_ids)
    connections = writable_connections(workspace)
    if not connections:
        return result, outcome
    events = ExternalCalendarEvent.objects.filter(
        workspace=workspace, pk__in=event_ids, is_private=False, cancelled=False
    ).only(
        "pk",
        "workspace_id",
        "title",
        "starts_at",
        "ends_at",
        "all_day",
        "organizer",
        "attendees",
        "customer_emails",
    )
    rows: list[CrmWriteLog] = []
    for event in events:
        try:
            rows += meeting_rows(event, connections, now)
        except MeetingNotPlannable as exc:
            outcome[event.pk] = str(exc)
    insert_new(rows, result)
    return result, outcome


def dispatch_after_commit(result: PlanResult) -> None:
    """Hand the new writes on; a failure here loses nothing (the reconcile sweep sends due rows)."""
    try:
        dispatch_planned(result)
    except Exception as exc:  # the boundary: the writes are committed; the sweep picks them up
        log_failure(
            log,
            "dispatching %d meeting write(s) failed; the reconcile sweep sends them",
            len(result.planned_ids) + len(result.dry_run_ids),
            exc=exc,
            category="reconcile",
            error_code="dispatch_failed",
        )


def plan_meetings(
    workspace_id: int, event_ids: list[int], *, now: datetime | None = None
) -> dict[int, str | None]:
    """Plan the meeting writes of these events for every connected CRM of the workspace; live
    ones are handed to delivery (and dry-run ones to the contact lookups) after the commit.
    Returns each event's error, or None."""
    if not event_ids:
        return {}
    workspace = _workspace(workspace_id)
    with workspace_scope(workspace):
        result, outcome = plan_meeting_rows(workspace, event_ids, now or timezone.now())
        if result.planned_ids or result.dry_run_ids:
            transaction.on_commit(lambda: dispatch_after_commit(result))
    if result.planned or result.dry_run:
        log.info(
            "planned %d meeting write(s) (%d in dry run) for %d calendar event(s)",
            result.planned + result.dry_run,
            result.dry_run,
            len(event_ids),
            extra={"category": "reconcile"},
        )
    return outcome
