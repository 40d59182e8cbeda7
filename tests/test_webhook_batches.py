"""Webhook events processed as a batch: the outcomes are those of processing them one
after the other, and the statements a batch costs do not grow with its events."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conduit.tenancy import system_scope
from integrations.models import CrmConnection, WebhookEvent
from integrations.webhooks import effects, processing
from reconcile.mapping import STALE
from tests.conftest import Tenant
from tests.ops_helpers import make_connection
from tests.test_webhooks import deliver, event, fresh, hub, mapping, process_all, stored  # noqa: F401

pytestmark = pytest.mark.django_db
Status = WebhookEvent.Status
AT = 1_790_000_000_000


def test_twins_in_one_batch_are_processed_once(hub: CrmConnection) -> None:  # noqa: F811
    first = event(
        "contact.propertyChange", 41, propertyName="email", propertyValue="a@x.example", occurredAt=AT
    )
    twin = {**first, "eventId": f"{first['eventId']}-twin"}
    other_property = {**first, "eventId": f"{first['eventId']}-other", "propertyName": "firstname"}
    no_moment = event("contact.creation", 42)
    deliver([first, twin, other_property, no_moment])
    assert process_all() == {Status.PROCESSED: 3, Status.DUPLICATE: 1}
    assert [r.status for r in stored()].count(Status.DUPLICATE) == 1
    assert all(r.attempts == 1 and r.processed_at for r in stored())


def test_replaying_a_processed_event_beside_its_twin_keeps_one_processed(hub: CrmConnection) -> None:  # noqa: F811
    first = event("contact.deletion", 43, occurredAt=AT)
    deliver([first, {**first, "eventId": f"{first['eventId']}-again"}])
    assert process_all() == {Status.PROCESSED: 1, Status.DUPLICATE: 1}
    with system_scope():
        ids = list(WebhookEvent.objects.values_list("pk", flat=True))
    replayed = processing.process_events(ids, statuses=list(Status.values))
    assert sorted(replayed.statuses.elements()) == [Status.DUPLICATE, Status.PROCESSED]
    assert sorted(r.status for r in stored()) == [Status.DUPLICATE, Status.PROCESSED]


def test_every_connection_of_every_account_in_the_batch_gets_the_effect(
    hub: CrmConnection,  # noqa: F811
    alice: Tenant,
    make_workspace: Any,
) -> None:
    other = make_connection(
        make_workspace("other-ws").workspace, "hubspot", external_account_key=hub.external_account_key
    )
    rows = [mapping(hub, "a@x.example", "51"), mapping(other, "b@x.example", "51")]
    unknown = event("contact.propertyChange", 51, propertyName="firstname", portalId=999, occurredAt=AT)
    deliver([event("contact.propertyChange", 51, propertyName="firstname", occurredAt=AT), unknown])
    assert process_all() == {Status.PROCESSED: 2}
    assert all(fresh(row).refreshed_at == STALE for row in rows)
    notes = sorted(r.error for r in stored())
    assert notes == ["", "ignored: no connection for this account"]


def test_a_batch_costs_the_same_statements_for_2_or_12_events(hub: CrmConnection) -> None:  # noqa: F811
    def statements(count: int, base: int) -> int:
        deliver([event("contact.propertyChange", base + i, propertyName="firstname") for i in range(count)])
        with system_scope():
            ids = list(WebhookEvent.objects.filter(status=Status.RECEIVED).values_list("pk", flat=True))
        with CaptureQueriesContext(connection) as queries:
            processing.process_events(ids)
        return len(queries)

    small, large = statements(2, 100), statements(12, 200)
    assert large == small, "set-based: the duplicate check, the connections, each kind's effect, one UPDATE"


def test_a_failing_event_fails_alone_and_the_batch_is_redone_one_by_one(
    hub: CrmConnection,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(conn: CrmConnection, payload: dict[str, Any]) -> int:
        raise RuntimeError("no")

    row = mapping(hub, "c@x.example", "61")
    monkeypatch.setitem(effects.EFFECTS, ("contact", "creation"), boom)
    deliver([event("contact.propertyChange", 61, propertyName="firstname"), event("contact.creation", 62)])
    assert process_all() == {Status.PROCESSED: 1, Status.FAILED: 1}
    assert fresh(row).refreshed_at == STALE  # the good event's effect kept, not rolled back with the batch


def test_a_delivery_task_takes_the_events_waiting_behind_it_once(hub: CrmConnection) -> None:  # noqa: F811
    from integrations.webhooks import tasks

    deliver([event("contact.propertyChange", 71, propertyName="firstname")])
    deliver([event("contact.propertyChange", 72, propertyName="firstname")])
    first, second = (r.pk for r in stored())
    assert tasks.process_webhook_events([first]) == {Status.PROCESSED: 2}  # its own and the waiting one
    assert tasks.process_webhook_events([second]) == {}  # already done: nothing twice
    assert all(r.attempts == 1 for r in stored())
