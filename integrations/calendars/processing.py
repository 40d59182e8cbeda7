"""Processing of stored calendar events: customer links and planned meeting writes.

After each sync (sync.py) the connection's events waiting in sync_status CREATED are processed
in batches, keyset-paged by id, under the workspace's scope:
- a cancelled event is PROCESSED with no customers and no write (a write planned before the
  cancellation is left as it is: v1 does not withdraw it);
- a private event is PROCESSED with no customers and is never planned (it shows only as busy);
- any other event's customers are the external addresses among its organizer and attendees, as
  the write ledger's curation rules say (internal domains, members; asked through the
  integrations.ledger port, once per batch); they are stored in customer_emails, and the events
  with customers are handed to `ledger().plan_meetings`, which plans one meeting write per
  connected CRM and customer (dry run unless the connection is live; idempotent, so an event
  processed again adds no write). Planned events become PROCESSED, an event the ledger refuses
  FAILED with a short last_error (runbook 004's "Clear failed events" puts it back to CREATED).

Nothing here reads, stores or logs an event's description: none is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Case, CharField, Value, When

from conduit.tenancy import system_scope, workspace_scope
from integrations.calendars.logs import calendar_log
from integrations.ledger import ledger
from integrations.models import ExternalCalendarConnection, ExternalCalendarEvent

BATCH_SIZE = 200
ERROR_MAX = 500  # external_calendar_events.last_error
# Calendar-owned addresses that are rooms, resources and shared calendars, never customers.
NOT_PEOPLE = ("resource.calendar.google.com", "group.calendar.google.com", "group.v.calendar.google.com")
Status = ExternalCalendarEvent.SyncStatus


@dataclass
class ProcessResult:
    processed: int = 0  # events now PROCESSED
    planned: int = 0  # of them, events with customers handed to the ledger to plan
    failed: int = 0  # events now FAILED


def participants(event: ExternalCalendarEvent) -> list[str]:
    """The organizer and attendees, lower-cased, without repeats, rooms and resources left out."""
    found: list[str] = []
    for raw in [event.organizer, *(event.attendees or [])]:
        address = str(raw or "").strip().lower()
        if "@" in address and address not in found and not address.endswith(NOT_PEOPLE):
            found.append(address)
    return found


def short_error(text: str) -> str:
    return " ".join(str(text).split())[:ERROR_MAX]


def customers_of(workspace_id: int, events: Iterable[ExternalCalendarEvent]) -> dict[int, list[str]]:
    """Each plannable event's external participants (one ledger call for the whole batch)."""
    wanted = {e.pk: participants(e) for e in events}
    everyone = list(dict.fromkeys(a for found in wanted.values() for a in found))
    external = set(ledger().external_addresses(workspace_id, everyone)) if everyone else set()
    return {pk: [a for a in found if a in external] for pk, found in wanted.items()}


def plan(workspace_id: int, event_ids: list[int]) -> dict[int, str | None]:
    """The ledger's answer per event; when it fails as a whole, every event fails with its type."""
    if not event_ids:
        return {}
    try:
        return ledger().plan_meetings(workspace_id, event_ids)
    except Exception as exc:  # the boundary: the events stay to be retried, the sync goes on
        calendar_log(
            logging.ERROR,
            "planning meeting writes failed",
            error_code="meeting_planning_failed",
            workspace_id=workspace_id,
            events=len(event_ids),
            error=type(exc).__name__,
        )
        return dict.fromkeys(event_ids, f"planning the meeting writes failed ({type(exc).__name__})")


def process_batch(workspace_id: int, events: list[ExternalCalendarEvent], result: ProcessResult) -> None:
    plannable = [e for e in events if not e.cancelled and not e.is_private]
    customers = customers_of(workspace_id, plannable)
    changed = [e for e in events if e.customer_emails != customers.get(e.pk, [])]
    for event in changed:
        event.customer_emails = customers.get(event.pk, [])
    if changed:  # customers first: the ledger plans from them
        with workspace_scope(workspace_id):
            ExternalCalendarEvent.objects.bulk_update(changed, ["customer_emails"])
    with_customers = [pk for pk, found in customers.items() if found]
    errors = {pk: short_error(err) for pk, err in plan(workspace_id, with_customers).items() if err}
    with workspace_scope(workspace_id):
        ids = [e.pk for e in events]
        ExternalCalendarEvent.objects.filter(pk__in=ids, sync_status=Status.CREATED).update(
            sync_status=Case(
                *(When(pk=pk, then=Value(Status.FAILED)) for pk in errors),
                default=Value(Status.PROCESSED),
                output_field=CharField(),
            ),
            last_error=Case(
                *(When(pk=pk, then=Value(err)) for pk, err in errors.items()),
                default=Value(None),
                output_field=CharField(),
            ),
        )
    result.failed += len(errors)
    result.processed += len(events) - len(errors)
    result.planned += len([pk for pk in with_customers if pk not in errors])


def process_connection_events(connection_id: int, *, batch_size: int = BATCH_SIZE) -> ProcessResult:
    """Link and plan the connection's events waiting in CREATED; returns the counts."""
    result = ProcessResult()
    with system_scope():
        workspace_id = (
            ExternalCalendarConnection.objects.filter(pk=connection_id)
            .values_list("workspace_id", flat=True)
            .first()
        )
    if workspace_id is None:
        return result
    last_id = 0
    while True:
        with workspace_scope(workspace_id):
            events = list(
                ExternalCalendarEvent.objects.filter(
                    connection_id=connection_id, sync_status=Status.CREATED, pk__gt=last_id
                )
                .order_by("pk")
                .only(
                    "pk",
                    "workspace_id",
                    "organizer",
                    "attendees",
                    "is_private",
                    "cancelled",
                    "customer_emails",
                )[:batch_size]
            )
        if not events:
            break
        process_batch(workspace_id, events, result)
        last_id = events[-1].pk
    if result.processed or result.failed:
        calendar_log(
            logging.INFO if not result.failed else logging.WARNING,
            "calendar events processed",
            error_code="events_failed" if result.failed else "",
            connection_id=connection_id,
            processed=result.processed,
            planned=result.planned,
            failed=result.failed,
        )
    return result
