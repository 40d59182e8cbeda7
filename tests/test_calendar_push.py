"""Push channels and their notifications: opening, closing and renewing channels; Google channel
messages and Graph deliveries verified against the channel secret (a wrong one changes nothing),
the Graph validation handshake, lifecycle events, the kill switch and the allowlist, and no
secret in any log line."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conduit.tenancy import system_scope
from integrations.calendars import flags, jobs, push
from integrations.models import ExternalCalendarConnection
from integrations.providers.errors import Transient
from tests.conftest import Tenant
from tests.test_calendar_oauth import ACCESS, FakeCalendar, install_fakes, make_connection

SECRET = "channel-secret-CHARLIE-0123456789abcdefghijklmnop"
GOOGLE = "/webhooks/calendar/google"
MICROSOFT = "/webhooks/calendar/microsoft"


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, settings: Any) -> dict[str, FakeCalendar]:
    made = install_fakes(monkeypatch, settings)
    settings.CALENDAR_WEBHOOK_ENABLED = True
    return made


@pytest.fixture
def fake(fakes: dict[str, FakeCalendar]) -> FakeCalendar:
    return fakes["google"]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[int]]]:
    """The sync tasks queued (by name, as the broker would get them)."""
    queued: list[tuple[str, list[int]]] = []
    monkeypatch.setattr(
        jobs, "current_app", SimpleNamespace(send_task=lambda name, args: queued.append((name, args)))
    )
    return queued


def with_channel(tenant: Tenant, provider: str = "google", **fields: Any) -> ExternalCalendarConnection:
    return make_connection(
        tenant,
        provider,
        channel_id=fields.pop("channel_id", "chan-a"),
        channel_resource_id=fields.pop("channel_resource_id", "res-a" if provider == "google" else ""),
        channel_secret=fields.pop("channel_secret", SECRET),
        channel_expires_at=fields.pop("channel_expires_at", timezone.now() + timedelta(days=5)),
        sync_needed=fields.pop("sync_needed", False),
        **fields,
    )


def google_post(**headers: str) -> Any:
    values = {
        "X-Goog-Channel-ID": "chan-a",
        "X-Goog-Channel-Token": SECRET,
        "X-Goog-Resource-ID": "res-a",
        "X-Goog-Resource-State": "exists",
        **headers,
    }
    return Client().post(GOOGLE, headers=values)


def graph_post(items: list[dict[str, Any]] | Any, path: str = MICROSOFT) -> Any:
    body = items if isinstance(items, str | bytes) else json.dumps({"value": items})
    return Client().post(path, body, content_type="application/json")


def change(subscription: str = "chan-a", client_state: str = SECRET, **extra: Any) -> dict[str, Any]:
    return {"subscriptionId": subscription, "clientState": client_state, "changeType": "updated", **extra}


def needs_sync(conn: ExternalCalendarConnection) -> bool:
    conn.refresh_from_db()
    return conn.sync_needed


# --- open / close / renew ---


def test_open_channel_stores_the_channel_and_an_encrypted_secret(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(alice)
    push.open_channel(conn.pk)
    conn.refresh_from_db()
    [(token, address, secret)] = fake.called("watch")
    assert token == ACCESS and address == "https://conduit.example/webhooks/calendar/google"
    assert (conn.channel_id, conn.channel_resource_id, conn.channel_secret) == ("chan-1", "res-1", secret)
    assert len(secret) >= 40 and conn.channel_expires_at is not None
    with connection.cursor() as cur:
        cur.execute("SELECT channel_secret FROM external_calendar_connections WHERE id = %s", [conn.pk])
        assert secret not in cur.fetchone()[0]


def test_open_channel_replaces_an_existing_one(alice: Tenant, fake: FakeCalendar) -> None:
    conn = with_channel(alice)
    push.open_channel(conn.pk)
    conn.refresh_from_db()
    assert fake.called("stop") == ["chan-a"] and conn.channel_id == "chan-1" and conn.channel_secret != SECRET


def test_open_channel_is_refused_when_push_is_off(alice: Tenant, fake: FakeCalendar, settings: Any) -> None:
    conn = make_connection(alice)
    settings.CALENDAR_WEBHOOK_ENABLED = False
    with pytest.raises(flags.CalendarForbidden):
        push.open_channel(conn.pk)
    assert not push.open_channel_quietly(conn.pk)
    assert not fake.called("watch")


def test_a_channel_opened_for_a_connection_disconnected_meanwhile_is_stopped(
    alice: Tenant, fake: FakeCalendar, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = make_connection(alice)
    real_watch = fake.watch

    def watch(account: Any, **kw: Any) -> Any:
        with system_scope():
            ExternalCalendarConnection.objects.filter(pk=conn.pk).update(status="disconnected")
        return real_watch(account, **kw)

    monkeypatch.setattr(fake, "watch", watch)
    push.open_channel(conn.pk)
    conn.refresh_from_db()
    assert conn.channel_id == "" and fake.called("stop") == ["chan-1"]
    with system_scope():
        ExternalCalendarConnection.objects.filter(pk=conn.pk).update(status="connected")
    fake.fail["stop"] = Transient("google", "network_error")
    push.open_channel(conn.pk)  # a stop that fails is logged, not raised
    conn.refresh_from_db()
    assert conn.channel_id == ""


def test_close_channel_stops_it_and_forgets_it(alice: Tenant, fake: FakeCalendar) -> None:
    conn = with_channel(alice)
    push.close_channel(conn.pk)
    conn.refresh_from_db()
    assert fake.called("stop") == ["chan-a"]
    assert (conn.channel_id, conn.channel_resource_id, conn.channel_secret, conn.channel_expires_at) == (
        "",
        "",
        "",
        None,
    )
    push.close_channel(conn.pk)  # nothing left to close
    assert len(fake.called("stop")) == 1


def test_renew_due_channels(alice: Tenant, bob: Tenant, fakes: dict[str, FakeCalendar]) -> None:
    now = timezone.now()
    due = with_channel(alice, "microsoft", channel_expires_at=now + timedelta(hours=2))
    later = with_channel(alice, "google", channel_expires_at=now + timedelta(days=2))
    missing = make_connection(bob, "google")
    ended = with_channel(bob, "microsoft", channel_id="chan-old", channel_expires_at=now - timedelta(hours=1))
    make_connection(alice, "google", status="disconnected", account_email="x@example.com")
    assert push.renew_due_channels(now=now) == 3
    [(renewed_id, _address, secret)] = fakes["microsoft"].called("renew")
    assert renewed_id == "chan-a" and secret == SECRET
    due.refresh_from_db()
    assert due.channel_expires_at is not None and due.channel_expires_at > now + timedelta(days=2)
    for conn, channel in ((later, "chan-a"), (missing, "chan-1"), (ended, "chan-1")):
        conn.refresh_from_db()
        assert conn.channel_id == channel


def test_renew_due_channels_goes_on_after_a_failure_and_skips_what_is_not_allowed(
    alice: Tenant, bob: Tenant, fakes: dict[str, FakeCalendar], settings: Any
) -> None:
    now = timezone.now()
    failing = with_channel(alice, "microsoft", channel_expires_at=now + timedelta(hours=1))
    fine = make_connection(bob, "google")
    not_listed = make_connection(bob, "microsoft", account_email="bob@outlook.example")
    settings.CALENDAR_ALLOWLIST_CONNECTION_IDS = [str(failing.pk), str(fine.pk)]
    fakes["microsoft"].fail["renew"] = Transient("microsoft", "network_error")
    assert push.renew_due_channels(now=now) == 1
    not_listed.refresh_from_db()
    assert not_listed.channel_id == "" and not fakes["microsoft"].called("watch")


def test_renew_due_channels_does_nothing_when_push_is_off(
    alice: Tenant, fake: FakeCalendar, settings: Any
) -> None:
    make_connection(alice)
    settings.CALENDAR_WEBHOOK_ENABLED = False
    assert push.renew_due_channels() == 0 and not fake.calls


def test_renew_due_channels_survives_an_unexpected_error(
    alice: Tenant, fake: FakeCalendar, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_connection(alice)
    monkeypatch.setattr(push, "open_channel", lambda pk: 1 / 0)
    assert push.renew_due_channels() == 0


# --- Google ---


def test_a_verified_google_change_marks_the_connection_and_queues_a_sync(
    alice: Tenant, fake: FakeCalendar, sent: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    conn = with_channel(alice)
    with django_capture_on_commit_callbacks(execute=True):
        resp = google_post()
    assert resp.status_code == 200 and resp.json() == {"outcome": "changed"}
    assert needs_sync(conn) and sent == [("integrations.sync_calendar_connection", [conn.pk])]


def test_a_burst_of_notifications_queues_one_sync_until_a_sync_starts(
    alice: Tenant, fake: FakeCalendar, sent: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    conn = with_channel(alice)
    with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as seen:
        for _ in range(5):
            assert google_post().status_code == 200
    flagging = [
        q for q in seen.captured_queries if q["sql"].startswith('UPDATE "external_calendar_connections"')
    ]
    assert len(flagging) == 1  # the later notifications find the flag set
    with django_capture_on_commit_callbacks(execute=True):
        graph_conn = with_channel(alice, "microsoft", channel_id="sub-b")
        assert graph_post([change("sub-b"), change("sub-b")]).status_code == 202
    assert sent == [("integrations.sync_calendar_connection", [pk]) for pk in (conn.pk, graph_conn.pk)]
    ExternalCalendarConnection.objects.filter(pk=conn.pk).update(sync_needed=False)  # as a sync starts
    with django_capture_on_commit_callbacks(execute=True):
        google_post()
    assert len(sent) == 3 and needs_sync(conn)


def test_google_not_exists_also_marks_the_connection(
    alice: Tenant, fake: FakeCalendar, sent: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    conn = with_channel(alice)
    with django_capture_on_commit_callbacks(execute=True):
        assert google_post(**{"X-Goog-Resource-State": "not_exists"}).status_code == 200
    assert needs_sync(conn)


def test_the_google_sync_message_changes_nothing(alice: Tenant, fake: FakeCalendar, sent: list[Any]) -> None:
    conn = with_channel(alice)
    resp = google_post(**{"X-Goog-Resource-State": "sync"})
    assert resp.status_code == 200 and resp.json() == {"outcome": "sync"}
    assert not needs_sync(conn) and not sent
    assert google_post(**{"X-Goog-Resource-State": "odd"}).json() == {"outcome": "unknown_state"}
    assert not needs_sync(conn)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Goog-Channel-Token": "wrong-secret"},
        {"X-Goog-Channel-Token": ""},
        {"X-Goog-Resource-ID": "res-other"},
        {"X-Goog-Channel-ID": "chan-unknown"},
        {"X-Goog-Channel-ID": ""},
    ],
)
def test_an_unverified_google_message_is_401_and_changes_nothing(
    alice: Tenant, fake: FakeCalendar, sent: list[Any], headers: dict[str, str]
) -> None:
    conn = with_channel(alice)
    assert google_post(**headers).status_code == 401
    assert not needs_sync(conn) and not sent


def test_a_microsoft_channel_id_is_not_a_google_channel(alice: Tenant, fake: FakeCalendar) -> None:
    conn = with_channel(alice, "microsoft", channel_resource_id="res-a")
    assert google_post().status_code == 401
    assert not needs_sync(conn)


def test_google_push_is_403_when_the_flag_is_off(
    alice: Tenant, fake: FakeCalendar, settings: Any, sent: list[Any]
) -> None:
    conn = with_channel(alice)
    settings.CALENDAR_WEBHOOK_ENABLED = False
    resp = google_post()
    assert resp.status_code == 403 and resp.json()["code"] == "calendar_disabled"
    assert not needs_sync(conn)


def test_google_push_is_403_for_a_connection_not_on_the_allowlist(
    alice: Tenant, fake: FakeCalendar, settings: Any
) -> None:
    conn = with_channel(alice)
    settings.CALENDAR_ALLOWLIST_CONNECTION_IDS = [str(conn.pk + 1)]
    assert google_post().status_code == 403
    assert not needs_sync(conn)


def test_google_push_for_a_connection_in_error_changes_nothing(
    alice: Tenant, fake: FakeCalendar, sent: list[Any]
) -> None:
    conn = with_channel(alice, status="error")
    resp = google_post()
    assert resp.status_code == 200 and resp.json() == {"outcome": "inactive"}
    assert not needs_sync(conn) and not sent


def test_google_push_needs_a_post_and_a_small_body(alice: Tenant, fake: FakeCalendar) -> None:
    assert Client().get(GOOGLE).status_code == 405
    big = "x" * 2048
    resp = Client().post(GOOGLE, big, content_type="text/plain", CONTENT_LENGTH="99999999")
    assert resp.status_code == 413


def test_a_lost_dispatch_is_logged_and_the_answer_is_still_200(
    alice: Tenant,
    fake: FakeCalendar,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
    capture_json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    conn = with_channel(alice)

    def broker_down(name: str, args: list[int]) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(jobs, "current_app", SimpleNamespace(send_task=broker_down))
    with django_capture_on_commit_callbacks(execute=True):
        assert google_post().status_code == 200
    assert needs_sync(conn)
    messages = [line["message"] for line in capture_json_logs()]
    assert any(m.startswith("calendar sync could not be queued") for m in messages)


# --- Microsoft Graph ---


def test_the_graph_validation_handshake_echoes_the_decoded_token(alice: Tenant, fake: FakeCalendar) -> None:
    resp = Client().post(
        f"{MICROSOFT}?validationToken=Validation%3A%20Testing%20client+%26%20x", "", content_type="text/plain"
    )
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/plain")
    assert resp.content.decode() == "Validation: Testing client & x"
    long = "a" * 2000
    assert (
        Client().post(f"{MICROSOFT}?validationToken={long}", "", content_type="text/plain").status_code == 400
    )


def test_the_graph_validation_handshake_is_403_when_the_flag_is_off(
    alice: Tenant, fake: FakeCalendar, settings: Any
) -> None:
    settings.CALENDAR_WEBHOOK_ENABLED = False
    assert Client().post(f"{MICROSOFT}?validationToken=abc", "", content_type="text/plain").status_code == 403


def test_a_verified_graph_change_marks_the_connection_and_answers_202(
    alice: Tenant, fake: FakeCalendar, sent: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    conn = with_channel(alice, "microsoft")
    with django_capture_on_commit_callbacks(execute=True):
        resp = graph_post([change(), change()])  # two changes, one sync
    assert resp.status_code == 202
    assert needs_sync(conn) and sent == [("integrations.sync_calendar_connection", [conn.pk])]


def test_a_graph_client_state_mismatch_is_401_and_changes_nothing(
    alice: Tenant, fake: FakeCalendar, sent: list[Any]
) -> None:
    conn = with_channel(alice, "microsoft")
    resp = graph_post(
        [change(client_state="wrong"), change(subscription="other"), "junk", {"clientState": 1}]
    )
    assert resp.status_code == 401 and resp.json() == {"code": "unverified"}
    assert not needs_sync(conn) and not sent


def test_only_the_verified_items_of_a_graph_delivery_count(
    alice: Tenant, bob: Tenant, fake: FakeCalendar, sent: list[Any]
) -> None:
    mine = with_channel(alice, "microsoft")
    other = with_channel(bob, "microsoft", channel_id="chan-b", channel_secret="bobs-secret-" + "x" * 30)
    resp = graph_post([change(), change(subscription="chan-b", client_state=SECRET)])
    assert resp.status_code == 202
    assert needs_sync(mine) and not needs_sync(other)


def test_graph_reauthorization_required_renews_the_subscription(
    alice: Tenant, fakes: dict[str, FakeCalendar]
) -> None:
    conn = with_channel(alice, "microsoft", channel_expires_at=timezone.now() + timedelta(hours=1))
    resp = graph_post([change(lifecycleEvent="reauthorizationRequired")])
    assert resp.status_code == 202
    assert [c[0] for c in fakes["microsoft"].called("renew")] == ["chan-a"]
    conn.refresh_from_db()
    assert conn.sync_needed  # a delta read catches up on anything missed meanwhile
    assert conn.channel_expires_at is not None and conn.channel_expires_at > timezone.now() + timedelta(
        days=2
    )


def test_a_failed_reauthorization_leaves_the_channel_to_the_renewal_pass(
    alice: Tenant, fakes: dict[str, FakeCalendar]
) -> None:
    conn = with_channel(alice, "microsoft")
    fakes["microsoft"].fail["renew"] = Transient("microsoft", "network_error")
    assert graph_post([change(lifecycleEvent="reauthorizationRequired")]).status_code == 202
    conn.refresh_from_db()
    assert conn.channel_expires_at is not None and conn.channel_expires_at <= timezone.now()
    assert push.renew_due_channels() == 1  # ended: a new subscription replaces it
    conn.refresh_from_db()
    assert conn.channel_id == "chan-1"


def test_graph_subscription_removed_clears_the_channel_for_the_next_pass(
    alice: Tenant, fakes: dict[str, FakeCalendar], sent: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    conn = with_channel(alice, "microsoft")
    with django_capture_on_commit_callbacks(execute=True):
        assert graph_post([change(lifecycleEvent="subscriptionRemoved")]).status_code == 202
    conn.refresh_from_db()
    assert conn.channel_id == "" and conn.channel_secret == "" and conn.sync_needed
    assert push.renew_due_channels() == 1
    conn.refresh_from_db()
    assert conn.channel_id == "chan-1"


def test_graph_missed_marks_the_connection(alice: Tenant, fake: FakeCalendar, sent: list[Any]) -> None:
    conn = with_channel(alice, "microsoft")
    assert graph_post([change(lifecycleEvent="missed")]).status_code == 202
    assert needs_sync(conn)


def test_graph_push_for_a_connection_not_allowlisted_is_403(
    alice: Tenant, fake: FakeCalendar, settings: Any
) -> None:
    conn = with_channel(alice, "microsoft")
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = ["0"]
    assert graph_post([change()]).status_code == 403
    assert not needs_sync(conn)


def test_graph_push_for_a_disconnected_calendar_changes_nothing(alice: Tenant, fake: FakeCalendar) -> None:
    conn = with_channel(alice, "microsoft", status="disconnected")
    assert graph_post([change()]).status_code == 202
    assert not needs_sync(conn)


def test_graph_push_is_403_when_the_flag_is_off(alice: Tenant, fake: FakeCalendar, settings: Any) -> None:
    conn = with_channel(alice, "microsoft")
    settings.CALENDAR_WEBHOOK_ENABLED = False
    assert graph_post([change()]).status_code == 403
    assert not needs_sync(conn)


@pytest.mark.parametrize("body", ["{not json", json.dumps({"value": "x"}), json.dumps([1]), b"\xff\xfe"])
def test_a_malformed_graph_delivery_is_400(alice: Tenant, fake: FakeCalendar, body: Any) -> None:
    assert graph_post(body).status_code == 400


def test_a_graph_delivery_over_the_size_limit_is_413(
    alice: Tenant, fake: FakeCalendar, settings: Any
) -> None:
    settings.CONDUIT_WEBHOOK_MAX_BODY_BYTES = 1024
    conn = with_channel(alice, "microsoft")
    assert graph_post([change(padding="x" * 2000)]).status_code == 413
    assert not needs_sync(conn)


def test_no_channel_secret_in_any_log_line(
    alice: Tenant,
    fake: FakeCalendar,
    sent: list[Any],
    capture_json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    with_channel(alice)
    with_channel(alice, "microsoft", channel_id="chan-m")
    google_post()
    google_post(**{"X-Goog-Channel-Token": "guess-" + SECRET[::-1]})
    graph_post([change(subscription="chan-m")])
    graph_post([change(subscription="chan-m", client_state="guess-" + SECRET[::-1])])
    lines = capture_json_logs()
    assert {line["message"] for line in lines} >= {
        "google calendar notification",
        "microsoft calendar notification",
    }
    assert all(line["category"] == "calendar_sync" for line in lines if "calendar" in line["message"])
    text = str(lines)
    assert SECRET not in text and SECRET[::-1] not in text and ACCESS not in text
