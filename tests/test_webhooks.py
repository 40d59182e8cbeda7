"""The HubSpot webhook inbox: v3 signature, storage, processing, the backlog sweep and replay."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from conduit.models import AuditEvent
from conduit.tenancy import system_scope
from integrations.models import CrmConnection, WebhookEvent
from integrations.sandbox.hubspot_crm import HUB_ID
from integrations.sandbox.webhooks import hubspot_event, signature_v3, signed_delivery
from integrations.webhooks import effects, processing
from integrations.webhooks.signature import SignatureRejected, SignedRequest, sign_v3, verify_v3
from reconcile.mapping import STALE
from reconcile.models import DealMapping
from tests.conftest import Tenant
from tests.ops_helpers import make_connection, make_mapping, send, staff_token
from tests.provider_helpers import metric_value

SECRET = "sandbox-hubspot-client-secret"
URL = "http://testserver/webhooks/hubspot"
Status = WebhookEvent.Status


def now_ms() -> int:
    return int(time.time() * 1000)


def event(kind: str, object_id: Any = 101, **fields: Any) -> dict[str, Any]:
    return hubspot_event({"subscriptionType": kind, "objectId": object_id, **fields}, now_ms=now_ms())


def deliver(
    events: list[dict[str, Any]], *, age_seconds: int = 0, secret: str = SECRET, **headers: str
) -> Any:
    body, signed = signed_delivery(URL, events, secret=secret, now_ms=now_ms(), age_seconds=age_seconds)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in {**signed, **headers}.items()}
    extra.pop("HTTP_CONTENT_TYPE")
    return Client().post("/webhooks/hubspot", data=body, content_type="application/json", **extra)


@pytest.fixture
def hub(alice: Tenant, settings: Any) -> CrmConnection:
    settings.CONDUIT_PUBLIC_URL = "http://testserver"
    settings.HUBSPOT_CLIENT_SECRET = SECRET
    return make_connection(alice.workspace, "hubspot", external_account_key=str(HUB_ID))


mapping = make_mapping


def fresh(row: DealMapping) -> DealMapping:
    with system_scope():
        return DealMapping.objects.get(pk=row.pk)


def stored() -> list[WebhookEvent]:
    with system_scope():
        return list(WebhookEvent.objects.order_by("pk"))


def process_all() -> dict[str, int]:
    with system_scope():
        ids = list(WebhookEvent.objects.values_list("pk", flat=True))
    return dict(processing.process_events(ids).statuses)


# --- the signature ---


def test_conduit_and_the_sandbox_sign_alike() -> None:
    body = b'[{"eventId": 1}]'
    assert sign_v3(SECRET, "post", URL, body, "1700000000000") == signature_v3(
        SECRET, "POST", URL, body, "1700000000000"
    )


def test_escaped_characters_are_decoded_before_signing() -> None:
    decoded = signature_v3(SECRET, "POST", "https://x.example/hook?a=b:c", b"", "1")
    assert sign_v3(SECRET, "POST", "https://x.example/hook?a=b%3Ac", b"", "1") == decoded
    assert sign_v3(SECRET, "POST", "https://x.example/hook?a=b%20c", b"", "1") != signature_v3(
        SECRET, "POST", "https://x.example/hook?a=b c", b"", "1"
    )


@pytest.mark.parametrize(
    ("skew_seconds", "accepted"), [(0, True), (299, True), (-299, True), (301, False), (-301, False)]
)
def test_timestamps_over_five_minutes_from_now_are_refused(skew_seconds: int, accepted: bool) -> None:
    now = 1_800_000_000_000
    timestamp = str(now - skew_seconds * 1000)
    request = SignedRequest("POST", URL, b"[]", timestamp, sign_v3(SECRET, "POST", URL, b"[]", timestamp))
    if accepted:
        verify_v3(request, SECRET, now_ms=now, max_age_seconds=300)
    else:
        with pytest.raises(SignatureRejected) as caught:
            verify_v3(request, SECRET, now_ms=now, max_age_seconds=300)
        assert caught.value.reason == "stale"


@pytest.mark.parametrize(
    ("timestamp", "signature", "reason"),
    [("", "x", "missing_signature"), ("1", "", "missing_signature"), ("12ab", "x", "bad_timestamp")],
)
def test_incomplete_signature_headers_are_refused(timestamp: str, signature: str, reason: str) -> None:
    with pytest.raises(SignatureRejected) as caught:
        verify_v3(
            SignedRequest("POST", URL, b"", timestamp, signature), SECRET, now_ms=1, max_age_seconds=300
        )
    assert caught.value.reason == reason


# --- the inbox ---


def test_a_valid_delivery_is_stored_per_event_and_acknowledged(hub: CrmConnection) -> None:
    response = deliver([event("contact.propertyChange", propertyName="email"), event("deal.deletion", 201)])
    assert response.status_code == 200, response.content
    assert response.json() == {"received": 2, "stored": 2, "redelivered": 0}
    rows = stored()
    assert [(r.event_type, r.object_id, r.status) for r in rows] == [
        ("contact.propertyChange", "101", Status.RECEIVED),
        ("deal.deletion", "201", Status.RECEIVED),
    ]
    assert all(r.workspace_id == hub.workspace_id and r.external_account_key == str(HUB_ID) for r in rows)
    assert rows[0].payload["propertyName"] == "email" and rows[0].occurred_at is not None


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"secret": "someone-elses-secret"}, "bad_signature"),
        ({"age_seconds": 400}, "stale"),
        ({"X-HubSpot-Signature-v3": ""}, "missing_signature"),
    ],
)
def test_a_bad_or_stale_signature_is_401_and_stores_nothing_but_a_counter(
    hub: CrmConnection, kwargs: dict[str, Any], reason: str, capture_json_logs: Any
) -> None:
    before = metric_value("crm_webhook_rejected_total", provider="hubspot", reason=reason)
    response = deliver([event("contact.creation")], **kwargs)
    assert response.status_code == 401
    assert response.json()["code"] == reason and response.json()["message"]
    assert stored() == []
    assert metric_value("crm_webhook_rejected_total", provider="hubspot", reason=reason) == before + 1
    logged = " ".join(str(line) for line in capture_json_logs())
    assert "contact.creation" not in logged and reason in logged


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ({"eventId": 1}, "the body must be a JSON array of events"),
        ([{"subscriptionType": "contact.creation"}], "event 0 has no eventId"),
        ([{"eventId": 1}], "event 0 has no subscriptionType"),
        (["x"], "event 0 is not a JSON object"),
    ],
)
def test_a_body_that_is_not_a_list_of_events_is_400(hub: CrmConnection, events: Any, message: str) -> None:
    response = deliver(events)
    assert response.status_code == 400 and response.json()["message"].startswith(message)
    assert stored() == []


def test_an_empty_delivery_is_acknowledged(hub: CrmConnection) -> None:
    assert deliver([]).json() == {"received": 0, "stored": 0, "redelivered": 0}


def test_an_oversized_body_is_413(hub: CrmConnection, settings: Any) -> None:
    settings.CONDUIT_WEBHOOK_MAX_BODY_BYTES = 1024
    response = deliver([event("contact.propertyChange", propertyValue="x" * 2000)])
    assert response.status_code == 413 and response.json()["code"] == "too_large"
    assert stored() == []


def test_without_a_client_secret_nothing_can_be_verified(hub: CrmConnection, settings: Any) -> None:
    settings.HUBSPOT_CLIENT_SECRET = ""
    response = deliver([event("contact.creation")])
    assert response.status_code == 503 and response.json()["code"] == "not_configured"
    assert Client().get("/webhooks/hubspot").status_code == 405


def test_a_redelivered_event_is_stored_once_and_processed_once(hub: CrmConnection) -> None:
    row = mapping(hub, "maya@acme.example", "101")
    same = event("contact.propertyChange", propertyName="firstname")
    deliver([same, same])
    assert process_all() == {Status.PROCESSED: 1}
    assert fresh(row).refreshed_at == STALE
    mapping_refreshed = timezone.now()
    with system_scope():
        DealMapping.objects.filter(pk=row.pk).update(refreshed_at=mapping_refreshed)
    assert deliver([same]).json() == {"received": 1, "stored": 0, "redelivered": 1}
    assert process_all() == {}
    rows = stored()
    assert len(rows) == 1 and rows[0].deliveries == 2 and rows[0].attempts == 1
    assert fresh(row).refreshed_at == mapping_refreshed


def test_one_change_sent_under_two_event_ids_is_a_duplicate(hub: CrmConnection) -> None:
    first = event("contact.propertyChange", propertyName="email", occurredAt=1_790_000_000_000)
    second = {**first, "eventId": first["eventId"] + 1}
    deliver([first])
    process_all()
    deliver([second])
    assert process_all() == {Status.DUPLICATE: 1}


# --- what events do ---


def test_contact_and_deal_changes_mark_the_mappings_that_name_them_stale(hub: CrmConnection) -> None:
    maya = mapping(hub, "maya@acme.example", "101", "201")
    jonas = mapping(hub, "jonas@bright.example", "102", "203")
    lee = mapping(hub, "lee@north.example", "103")
    pinned = mapping(hub, "pinned@acme.example", "101", "999", source=DealMapping.Source.OPERATOR)
    deliver(
        [event("contact.propertyChange", 101, propertyName="lastname"), event("deal.propertyChange", 203)]
    )
    process_all()
    assert fresh(maya).refreshed_at == STALE and fresh(jonas).refreshed_at == STALE
    assert fresh(lee).refreshed_at != STALE and fresh(pinned).refreshed_at != STALE


def test_an_email_change_makes_lookups_by_the_new_address_stale(hub: CrmConnection) -> None:
    unknown = mapping(hub, "new@acme.example", "")
    deliver([event("contact.propertyChange", 555, propertyName="email", propertyValue="New@Acme.example")])
    process_all()
    assert fresh(unknown).refreshed_at == STALE


def test_new_contacts_and_deals_make_empty_lookups_stale(hub: CrmConnection) -> None:
    nobody = mapping(hub, "nobody@acme.example", "")
    no_deal = mapping(hub, "lee@north.example", "103")
    settled = mapping(hub, "maya@acme.example", "101", "201")
    deliver([event("contact.creation", 777)])
    process_all()
    assert fresh(nobody).refreshed_at == STALE and fresh(no_deal).refreshed_at != STALE
    deliver([event("object.creation", 888, objectTypeId="0-3")])
    process_all()
    assert fresh(no_deal).refreshed_at == STALE and fresh(settled).refreshed_at != STALE


def test_deletions_drop_mappings(hub: CrmConnection) -> None:
    maya = mapping(hub, "maya@acme.example", "101", "201")
    jonas = mapping(hub, "jonas@bright.example", "102", "203")
    deliver([event("deal.deletion", 201), event("contact.deletion", 102)])
    process_all()
    assert fresh(maya).deal_id == "" and fresh(maya).refreshed_at == STALE
    with system_scope():
        assert not DealMapping.objects.filter(pk=jonas.pk).exists()


def test_a_merge_forgets_the_merged_contacts_and_refreshes_the_survivor(hub: CrmConnection) -> None:
    survivor = mapping(hub, "maya@acme.example", "101")
    merged = mapping(hub, "maya.old@acme.example", "150")
    deliver([event("contact.merge", 101, primaryObjectId=101, mergedObjectIds=[101, 150])])
    process_all()
    assert fresh(survivor).refreshed_at == STALE
    with system_scope():
        assert not DealMapping.objects.filter(pk=merged.pk).exists()


def test_an_association_change_refreshes_both_ends(hub: CrmConnection) -> None:
    maya = mapping(hub, "maya@acme.example", "101")
    deliver([event("contact.associationChange", 101, fromObjectId=101, toObjectId=202)])
    process_all()
    assert fresh(maya).refreshed_at == STALE


def test_unknown_types_and_unknown_accounts_are_stored_and_ignored(hub: CrmConnection) -> None:
    deliver([event("company.creation", 1), event("contact.creation", 2, portalId=999)])
    assert process_all() == {Status.PROCESSED: 2}
    notes = sorted(r.error for r in stored())
    assert notes == ["ignored: no connection for this account", "ignored: no effect for company.creation"]
    assert stored()[1].workspace_id is None


def test_processing_observes_the_webhook_latency(hub: CrmConnection) -> None:
    before = metric_value("crm_webhook_latency_seconds_count", provider="hubspot")
    deliver([event("contact.creation", 3)])
    process_all()
    assert metric_value("crm_webhook_latency_seconds_count", provider="hubspot") == before + 1


# --- failures, the backlog and replay ---


def break_effects(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(conn: CrmConnection, payload: dict[str, Any]) -> int:
        raise RuntimeError(f"database said no about {conn.access_token}")

    monkeypatch.setitem(effects.EFFECTS, ("contact", "creation"), boom)


def test_a_failed_event_is_recorded_without_detail_and_retried_by_the_backlog(
    hub: CrmConnection, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.CONDUIT_WEBHOOK_MAX_ATTEMPTS = 2
    break_effects(monkeypatch)
    deliver([event("contact.creation", 4)])
    assert process_all() == {Status.FAILED: 1}
    row = stored()[0]
    assert row.error == "RuntimeError: processing failed" and hub.access_token not in row.error
    assert dict(processing.process_backlog().statuses) == {Status.FAILED: 1}
    assert dict(processing.process_backlog().statuses) == {}  # out of attempts
    assert stored()[0].attempts == 2
    monkeypatch.undo()
    assert processing.do_replay_webhooks("hubspot", event_id=row.event_id, actor="user:1").statuses == {
        Status.PROCESSED: 1
    }


def test_the_backlog_takes_received_events_whose_dispatch_was_lost(hub: CrmConnection) -> None:
    deliver([event("contact.creation", 5)])
    assert dict(processing.process_backlog().statuses) == {}  # still within the grace period
    later = timezone.now() + processing.DISPATCH_GRACE + timedelta(seconds=1)
    assert dict(processing.process_backlog(now=later).statuses) == {Status.PROCESSED: 1}


def test_the_inbox_queues_processing_once_the_rows_commit(
    hub: CrmConnection, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrations.webhooks import tasks

    queued: list[list[int]] = []
    monkeypatch.setattr(tasks.process_webhook_events, "delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        deliver([event("contact.creation", 6)])
    assert queued == [[stored()[0].pk]]
    assert tasks.process_webhook_events(queued[0]) == {Status.PROCESSED: 1}


def test_a_broker_outage_leaves_the_events_to_the_backlog(
    hub: CrmConnection, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrations.webhooks import tasks

    def down(ids: list[int]) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.process_webhook_events, "delay", down)
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver([event("contact.creation", 7)]).status_code == 200
    assert stored()[0].status == Status.RECEIVED
    assert tasks.process_webhook_backlog() == {}


REPLAY = "/api/v1/admin/replay-webhook"


def test_replaying_one_event_is_idempotent_and_audited(hub: CrmConnection) -> None:
    maya = mapping(hub, "maya@acme.example", "101")
    deliver([event("contact.propertyChange", 101, propertyName="phone")])
    process_all()
    row = stored()[0]
    ops = staff_token()
    for _ in range(2):
        response = send("post", REPLAY, ops, provider="hubspot", event_id=row.event_id)
        assert response.status_code == 200, response.content
        assert response.json() == {"provider": "hubspot", "replayed": 1, "statuses": {"processed": 1}}
    assert fresh(maya).refreshed_at == STALE and stored()[0].attempts == 3
    audits = AuditEvent.objects.filter(event="webhook_replayed")
    assert audits.count() == 2 and audits.first().workspace_id == hub.workspace_id  # type: ignore[union-attr]
    assert audits.first().payload_json["event_id"] == row.event_id  # type: ignore[union-attr]


def test_replaying_the_failed_events_of_a_time_range(
    hub: CrmConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_effects(monkeypatch)
    deliver([event("contact.creation", 8), event("contact.creation", 9), event("deal.deletion", 10)])
    assert process_all() == {Status.FAILED: 2, Status.PROCESSED: 1}
    monkeypatch.undo()
    since = (timezone.now() - timedelta(minutes=5)).isoformat()
    response = send("post", REPLAY, staff_token(), {"provider": "hubspot", "since": since})
    assert response.status_code == 200, response.content
    assert response.json()["replayed"] == 2 and response.json()["statuses"] == {"processed": 2}


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"provider": "hubspot", "event_id": "nope"}, 404, "not_found"),
        ({"provider": "hubspot"}, 400, "invalid"),
        ({"provider": "pipedrive", "event_id": "1"}, 404, "unknown_provider"),
        (
            {"provider": "hubspot", "since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
            400,
            None,
        ),
        ({"provider": "hubspot", "since": "yesterday"}, 400, None),
    ],
)
def test_replay_bad_input_is_a_clear_4xx(
    hub: CrmConnection, params: dict[str, str], status: int, code: str | None
) -> None:
    response = send("post", REPLAY, staff_token(), **params)
    assert response.status_code == status, response.content
    assert response.json()["message"] and (code is None or response.json()["code"] == code)
    assert not AuditEvent.objects.filter(event="webhook_replayed").exists()


def test_replay_needs_an_operator(alice: Tenant) -> None:
    assert send("post", REPLAY, None, provider="hubspot", event_id="1").status_code == 401
    member = alice.client().post(f"{REPLAY}?provider=hubspot&event_id=1")
    assert member.status_code == 403


# --- over real sockets: the sandbox signs and sends, Conduit's live server verifies ---


@pytest.mark.django_db(transaction=True)
def test_the_sandbox_sends_signed_webhooks_that_conduit_verifies_and_processes(
    live_server: Any, crm_env: dict[str, str], settings: Any, monkeypatch: pytest.MonkeyPatch, alice: Tenant
) -> None:
    import requests

    from integrations.webhooks import tasks

    settings.CONDUIT_PUBLIC_URL = live_server.url
    settings.HUBSPOT_CLIENT_SECRET = SECRET
    monkeypatch.setattr(tasks.process_webhook_events, "delay", tasks.process_webhook_events)
    hub = make_connection(alice.workspace, "hubspot", external_account_key=str(HUB_ID))
    maya = mapping(hub, "maya@acme.example", "101", "201")
    url = f"{live_server.url}/webhooks/hubspot"

    def sandbox_sends(**options: Any) -> dict[str, Any]:
        reply = requests.post(
            f"{crm_env['hubspot']}/_sandbox/webhooks", json={"url": url, **options}, timeout=20
        )
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    sent = sandbox_sends(events=[{"subscriptionType": "deal.deletion", "objectId": 201}], times=2)
    assert [r["status"] for r in sent["replies"]] == [200, 200]
    assert '"redelivered": 1' in sent["replies"][1]["body"]
    row = stored()[0]
    assert row.event_id == str(sent["events"][0]["eventId"]) and row.status == Status.PROCESSED
    assert row.deliveries == 2 and row.attempts == 1
    assert fresh(maya).deal_id == "" and fresh(maya).refreshed_at == STALE

    for options, reason in (({"tamper": True}, "bad_signature"), ({"age_seconds": 301}, "stale")):
        refused = sandbox_sends(events=[{"subscriptionType": "contact.creation", "objectId": 9}], **options)
        assert refused["replies"][0]["status"] == 401 and reason in refused["replies"][0]["body"]
    assert len(stored()) == 1


def test_the_sandbox_refuses_a_bad_send_request(crm_env: dict[str, str]) -> None:
    import requests

    base = f"{crm_env['hubspot']}/_sandbox/webhooks"
    for body in (
        {},
        {"url": "ftp://x", "events": [{}]},
        {"url": URL, "events": []},
        {"url": URL, "events": [{}], "times": 9},
    ):
        reply = requests.post(base, json=body, timeout=5)
        assert reply.status_code == 400 and reply.json()["error"], body
    unreachable = requests.post(base, json={"url": "http://127.0.0.1:9/", "events": [{"a": 1}]}, timeout=20)
    assert unreachable.status_code == 502


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_another_worker_holds_is_skipped_not_waited_for_or_processed_twice(
    alice: Tenant, settings: Any
) -> None:
    from tests.test_retention_purge import rows_held

    settings.CONDUIT_PUBLIC_URL = "http://testserver"
    settings.HUBSPOT_CLIENT_SECRET = SECRET
    make_connection(alice.workspace, "hubspot", external_account_key=str(HUB_ID))
    deliver([event("contact.creation", 11), event("contact.creation", 12)])
    held, free = stored()
    started = time.monotonic()
    with rows_held("SELECT id FROM webhook_events WHERE id = %s FOR UPDATE", [held.pk]):
        assert dict(processing.process_events([held.pk, free.pk]).statuses) == {Status.PROCESSED: 1}
    assert time.monotonic() - started < 5
    assert [(e.pk, e.status, e.attempts) for e in stored()] == [
        (held.pk, Status.RECEIVED, 0),
        (free.pk, Status.PROCESSED, 1),
    ]
    assert dict(processing.process_events([held.pk, free.pk]).statuses) == {Status.PROCESSED: 1}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_deliveries_of_one_new_event_at_once_store_it_once_and_count_both() -> None:
    import threading

    from django.db import connections, transaction

    from integrations.webhooks.events import parse_delivery
    from integrations.webhooks.inbox import Stored, store_events

    parsed = parse_delivery(json.dumps([event("contact.creation", 21)]).encode())
    first_stored, release = threading.Event(), threading.Event()
    results: dict[str, Stored] = {}

    def first() -> None:
        try:
            with transaction.atomic():  # holds its insert uncommitted while the second one arrives
                results["first"] = store_events("hubspot", parsed, now=timezone.now())
                first_stored.set()
                release.wait(timeout=10)
        finally:
            connections.close_all()

    def second() -> None:
        try:
            results["second"] = store_events("hubspot", parsed, now=timezone.now())
        finally:
            connections.close_all()

    one = threading.Thread(target=first)
    one.start()
    assert first_stored.wait(timeout=10)
    two = threading.Thread(target=second)
    two.start()
    time.sleep(0.5)  # the second waits on the first's uncommitted row
    release.set()
    one.join(timeout=10)
    two.join(timeout=10)
    assert len(results["first"].new_ids) == 1 and results["first"].redelivered == 0
    assert results["second"].new_ids == [] and results["second"].redelivered == 1
    [row] = stored()
    assert row.deliveries == 2 and row.status == Status.RECEIVED


def test_a_timestamp_of_non_ascii_digits_is_refused_not_a_500(hub: CrmConnection) -> None:
    response = deliver([event("contact.creation")], **{"X-HubSpot-Request-Timestamp": "²"})
    assert response.status_code == 401 and response.json()["code"] == "bad_timestamp"
    assert stored() == []


def test_nul_characters_are_dropped_from_values_and_refused_in_ids(hub: CrmConnection) -> None:
    kept = deliver([event("contact.propertyChange", propertyName="firstname", propertyValue="a\x00b")])
    assert kept.status_code == 200 and stored()[0].payload["propertyValue"] == "ab"
    refused = deliver([{**event("contact.creation"), "eventId": "12\x003"}])
    assert refused.status_code == 400 and "NUL" in refused.json()["message"]
    assert len(stored()) == 1


def test_the_same_deletion_under_two_event_ids_is_a_duplicate(hub: CrmConnection) -> None:
    first = event("contact.deletion", 31, occurredAt=1_790_000_000_000)
    deliver([first])
    process_all()
    deliver(
        [
            {**first, "eventId": f"{first['eventId']}-again"},
            event("contact.deletion", 32, occurredAt=1_790_000_000_000),
        ]
    )
    assert process_all() == {Status.DUPLICATE: 1, Status.PROCESSED: 1}


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'[{"eventId": 1, "subscriptionType": "contact.creation", "occurredAt": NaN}]', 400),
        (b'[{"eventId": 1, "subscriptionType": "contact.creation", "propertyValue": Infinity}]', 400),
        (b'[{"eventId": 1, "subscriptionType": "contact.creation", "occurredAt": 1e20}]', 200),
        (b'[{"eventId": 1, "subscriptionType": "contact.creation", "propertyValue": "a\\ud800b"}]', 200),
        (b'[{"eventId": 1, "subscriptionType": "contact.creation", "objectId": "1\\ud800"}]', 200),
    ],
)
def test_odd_json_in_a_signed_delivery_is_a_4xx_or_stored_never_a_500(
    hub: CrmConnection, raw: bytes, status: int
) -> None:
    timestamp = str(now_ms())
    signature = signature_v3(SECRET, "POST", URL, raw, timestamp)
    response = Client().post(
        "/webhooks/hubspot",
        data=raw,
        content_type="application/json",
        HTTP_X_HUBSPOT_SIGNATURE_V3=signature,
        HTTP_X_HUBSPOT_REQUEST_TIMESTAMP=timestamp,
    )
    assert response.status_code == status, response.content
    assert len(stored()) == (1 if status == 200 else 0)
