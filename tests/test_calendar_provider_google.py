"""Google Calendar client against `responses` mocks shaped from provider-facts.md."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.utils import timezone

from conduit.tenancy import system_scope
from integrations.models import SyncLog
from integrations.providers import get_calendar_provider
from integrations.providers.base import Account
from integrations.providers.calendar_base import CursorExpired, PushChannel
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    Permanent,
    ProviderError,
    RateLimited,
    TokenExpired,
    Transient,
)
from integrations.providers.google_calendar import CALENDAR_SCOPE, GoogleCalendarProvider
from integrations.providers.synclog import CallContext

pytestmark = pytest.mark.django_db

API = "https://google.test/calendar/v3"
TOKEN_URL = "https://google.test/token"
TOKEN = "ya29.google-access-token-0123456789"
REFRESH = "1//google-refresh-token-abcdef"
SECRET = "channel-secret-0123456789abcdef"
WINDOW = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
EVENTS = f"{API}/calendars/primary/events"

google = GoogleCalendarProvider()


@pytest.fixture(autouse=True)
def google_settings(settings: Any) -> Any:
    settings.GOOGLE_AUTHORIZE_URL = "https://google.test/o/oauth2/v2/auth"
    settings.GOOGLE_TOKEN_URL = TOKEN_URL
    settings.GOOGLE_REVOKE_URL = "https://google.test/revoke"
    settings.GOOGLE_USERINFO_URL = "https://google.test/v1/userinfo"
    settings.GOOGLE_CALENDAR_API_URL = API
    settings.GOOGLE_CLIENT_ID = "google-client-id"
    settings.GOOGLE_CLIENT_SECRET = "google-client-secret-xyz"
    return settings


def account(key: str = "maya@example.com", **ctx: Any) -> Account:
    """The rate-limit account is `key`: a test that is told to wait uses a second key after."""
    return Account("google", TOKEN, key, context=CallContext(**ctx))


def g_error(status: int, reason: str, message: str = "error") -> dict[str, Any]:
    return {
        "error": {
            "errors": [{"domain": "calendar", "reason": reason, "message": message}],
            "code": status,
            "message": message,
        }
    }


def query(call_index: int = 0) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(responses.calls[call_index].request.url)).query)


def form(call_index: int = 0) -> dict[str, list[str]]:
    return parse_qs(str(responses.calls[call_index].request.body))


def sent_json(call_index: int = 0) -> Any:
    return json.loads(responses.calls[call_index].request.body or b"{}")


def test_registry_gives_the_google_provider() -> None:
    provider = get_calendar_provider("google")
    assert isinstance(provider, GoogleCalendarProvider)
    assert (provider.name, provider.label) == ("google", "Google Calendar")
    assert provider.required_scopes == (CALENDAR_SCOPE,)
    assert provider.supports_pkce is True
    assert provider.missing_scopes(["openid", "email"]) == [CALENDAR_SCOPE]
    assert provider.missing_scopes(["openid", CALENDAR_SCOPE]) == []


def test_api_bucket_is_budgeted_per_minute(settings: Any) -> None:
    settings.GOOGLE_CALENDAR_REQUESTS_PER_MINUTE = 100
    settings.CONDUIT_RATE_BUDGET = 0.5
    bucket = google.api_bucket()
    assert (bucket.provider, bucket.name, bucket.limit, bucket.window) == ("google", "calendar", 50, 60)


def test_authorize_url_asks_for_offline_access_consent_and_pkce() -> None:
    url = google.authorize_url(state="st4te", redirect_uri="https://conduit.test/cb", code_challenge="ch4l")
    assert url.startswith("https://google.test/o/oauth2/v2/auth?")
    q = parse_qs(urlsplit(url).query)
    assert q == {
        "response_type": ["code"],
        "client_id": ["google-client-id"],
        "redirect_uri": ["https://conduit.test/cb"],
        "scope": [f"openid email {CALENDAR_SCOPE}"],
        "state": ["st4te"],
        "access_type": ["offline"],
        "prompt": ["consent"],
        "include_granted_scopes": ["true"],
        "code_challenge": ["ch4l"],
        "code_challenge_method": ["S256"],
    }
    plain = parse_qs(urlsplit(google.authorize_url(state="s", redirect_uri="https://c/cb")).query)
    assert "code_challenge" not in plain


def test_unconfigured_client_is_refused_before_any_call(settings: Any) -> None:
    settings.GOOGLE_CLIENT_SECRET = ""
    with pytest.raises(Permanent) as exc:
        google.authorize_url(state="s", redirect_uri="https://c/cb")
    assert exc.value.code == "not_configured"
    with pytest.raises(Permanent, match="not_configured"):
        google.refresh(REFRESH)


@responses.activate
def test_exchange_code_sends_the_verifier_and_reads_the_grant() -> None:
    responses.post(
        TOKEN_URL,
        json={
            "access_token": TOKEN,
            "refresh_token": REFRESH,
            "expires_in": 3599,
            "scope": f"openid {CALENDAR_SCOPE} https://www.googleapis.com/auth/userinfo.email",
            "token_type": "Bearer",
        },
    )
    before = timezone.now()
    tokens = google.exchange_code(
        code="4/code", redirect_uri="https://conduit.test/cb", code_verifier="v" * 43
    )
    sent = form()
    assert sent["grant_type"] == ["authorization_code"]
    assert sent["code"] == ["4/code"]
    assert sent["code_verifier"] == ["v" * 43]
    assert sent["redirect_uri"] == ["https://conduit.test/cb"]
    assert sent["client_id"] == ["google-client-id"]
    assert sent["client_secret"] == ["google-client-secret-xyz"]
    assert (tokens.access_token, tokens.refresh_token) == (TOKEN, REFRESH)
    assert tokens.expires_at is not None
    assert before + timedelta(seconds=3590) < tokens.expires_at < timezone.now() + timedelta(seconds=3600)
    assert CALENDAR_SCOPE in tokens.scopes
    assert google.missing_scopes(tokens.scopes) == []


@responses.activate
def test_refresh_keeps_the_old_refresh_token_google_sends_none() -> None:
    responses.post(TOKEN_URL, json={"access_token": "ya29.new", "expires_in": 3600, "scope": CALENDAR_SCOPE})
    tokens = google.refresh(REFRESH)
    assert form()["grant_type"] == ["refresh_token"]
    assert form()["refresh_token"] == [REFRESH]
    assert tokens.access_token == "ya29.new"
    assert tokens.refresh_token is None  # None: keep the stored one


@responses.activate
def test_token_answer_without_access_token_is_permanent() -> None:
    responses.post(TOKEN_URL, json={"expires_in": 3600})
    with pytest.raises(Permanent) as exc:
        google.refresh(REFRESH)
    assert exc.value.code == "invalid_token_response"


@responses.activate
def test_refresh_invalid_grant_is_revoked_without_the_token_in_the_message_or_log() -> None:
    responses.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_grant", "error_description": f"Token has been expired or revoked: {REFRESH}"},
    )
    with pytest.raises(AuthRevoked) as exc:
        google.refresh(REFRESH)
    assert exc.value.code == "refresh_token_revoked"
    assert REFRESH not in str(exc.value)
    assert "expired or revoked" in str(exc.value)
    with system_scope():
        summaries = list(SyncLog.objects.filter(provider="google").values_list("summary", flat=True))
    assert summaries and all(REFRESH not in s for s in summaries)


@responses.activate
def test_token_endpoint_errors_map_to_configuration_and_bad_code() -> None:
    responses.post(
        TOKEN_URL, status=401, json={"error": "invalid_client", "error_description": "Unauthorized"}
    )
    responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "Bad Request"})
    responses.post(TOKEN_URL, status=400, json={"error": "invalid_request", "error_description": "Missing"})
    with pytest.raises(Permanent) as client:
        google.refresh(REFRESH)
    assert client.value.code == "invalid_client"
    assert not isinstance(client.value, AuthRevoked)
    with pytest.raises(Permanent) as code:
        google.exchange_code(code="4/used", redirect_uri="https://c/cb")
    assert code.value.code == "invalid_authorization_code"
    with pytest.raises(Permanent) as other:
        google.exchange_code(code="4/x", redirect_uri="https://c/cb")
    assert other.value.code == "invalid_request"


@responses.activate
def test_revoke_posts_the_token_and_accepts_an_already_dead_one() -> None:
    responses.post("https://google.test/revoke", status=200, body="")
    responses.post("https://google.test/revoke", status=400, json={"error": "invalid_token"})
    responses.post("https://google.test/revoke", status=400, json={"error": "unsupported_token_type"})
    google.revoke(REFRESH)
    assert form() == {"token": [REFRESH]}
    google.revoke(REFRESH)
    with pytest.raises(Permanent, match="unsupported_token_type"):
        google.revoke(REFRESH)


@responses.activate
def test_identify_reads_the_email_from_userinfo() -> None:
    from integrations.providers.base import TokenSet

    responses.get("https://google.test/v1/userinfo", json={"sub": "1", "email": "Maya@Example.com"})
    found = google.identify(TokenSet(access_token=TOKEN, scopes=("openid", CALENDAR_SCOPE)))
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert found.key == "maya@example.com"
    assert found.details == {"email": "maya@example.com"}
    assert found.user_email == "maya@example.com"
    assert found.scopes == ("openid", CALENDAR_SCOPE)


@responses.activate
def test_identify_without_email_is_permanent() -> None:
    from integrations.providers.base import TokenSet

    responses.get("https://google.test/v1/userinfo", json={"sub": "1"})
    with pytest.raises(Permanent, match="invalid_userinfo"):
        google.identify(TokenSet(access_token=TOKEN))


@responses.activate
def test_health_reads_the_primary_calendar() -> None:
    responses.get(f"{API}/calendars/primary", json={"id": "maya@example.com", "timeZone": "Europe/Paris"})
    health = google.check_health(account())
    assert health.details == {"calendar": "primary", "time_zone": "Europe/Paris"}
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


def timed(event_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "iCalUID": f"{event_id}@google.com",
        "status": "confirmed",
        "summary": f"Meeting {event_id}",
        "start": {"dateTime": "2026-01-05T10:00:00+01:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2026-01-05T11:00:00+01:00"},
        "updated": "2026-01-04T08:00:00.000Z",
        **extra,
    }


@responses.activate
def test_full_listing_pages_then_hands_back_the_sync_token() -> None:
    responses.get(EVENTS, json={"items": [timed("e1")], "nextPageToken": "page-2"})
    responses.get(EVENTS, json={"items": [timed("e2")], "nextSyncToken": "sync-1"})
    first = google.list_events(account(), cursor=None, page=None, window=WINDOW)
    assert [e.external_id for e in first.events] == ["e1"]
    assert (first.next_page, first.sync_cursor) == ("page-2", None)
    second = google.list_events(account(), cursor=None, page=first.next_page, window=WINDOW)
    assert [e.external_id for e in second.events] == ["e2"]
    assert (second.next_page, second.sync_cursor) == (None, "sync-1")
    q1, q2 = query(0), query(1)
    assert q1 == {
        "singleEvents": ["true"],
        "maxResults": ["250"],
        "showDeleted": ["true"],
        "timeMin": ["2026-01-01T00:00:00Z"],
        "timeMax": ["2026-04-01T00:00:00Z"],
    }
    assert q2 == {**q1, "pageToken": ["page-2"]}
    event = first.events[0]
    assert event.ical_uid == "e1@google.com"
    assert event.title == "Meeting e1"
    assert event.starts_at == datetime(2026, 1, 5, 9, tzinfo=UTC)
    assert event.ends_at == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert event.updated_at == datetime(2026, 1, 4, 8, tzinfo=UTC)
    assert not (event.all_day or event.private or event.cancelled)


@responses.activate
def test_incremental_listing_sends_only_the_sync_token() -> None:
    responses.get(EVENTS, json={"items": [], "nextPageToken": "p2"})
    responses.get(EVENTS, json={"items": [], "nextSyncToken": "sync-2"})
    page = google.list_events(account(), cursor="sync-1", page=None, window=WINDOW)
    assert page.next_page == "p2"
    last = google.list_events(account(), cursor="sync-1", page="p2", window=WINDOW)
    assert last.sync_cursor == "sync-2"
    assert query(0) == {
        "singleEvents": ["true"],
        "maxResults": ["250"],
        "showDeleted": ["true"],
        "syncToken": ["sync-1"],
    }
    assert query(1)["pageToken"] == ["p2"] and query(1)["syncToken"] == ["sync-1"]
    assert "timeMin" not in query(1)


@responses.activate
def test_event_mapping_cancelled_private_all_day_and_attendees() -> None:
    items = [
        {"id": "gone", "status": "cancelled"},
        timed("secret", visibility="private"),
        timed("conf", visibility="confidential"),
        timed("public", visibility="default"),
        {
            "id": "allday",
            "summary": "Offsite",
            "start": {"date": "2026-02-10"},
            "end": {"date": "2026-02-11"},
            "organizer": {"email": "Boss@Acme.example"},
            "attendees": [
                {"email": "Boss@Acme.example", "organizer": True},
                {"email": "maya@example.com", "self": True},
                {"email": "Room-1@resource.calendar.google.com", "resource": True},
                {"email": "boss@acme.example"},
                {"displayName": "no email"},
            ],
        },
        {"summary": "no id"},
        "not an object",
    ]
    responses.get(EVENTS, json={"items": items, "nextSyncToken": "s"})
    events = {
        e.external_id: e for e in google.list_events(account(), cursor="c", page=None, window=WINDOW).events
    }
    assert list(events) == ["gone", "secret", "conf", "public", "allday"]
    assert events["gone"].cancelled and events["gone"].starts_at is None and events["gone"].title == ""
    assert events["secret"].private and events["conf"].private and not events["public"].private
    allday = events["allday"]
    assert allday.all_day
    assert allday.starts_at == datetime(2026, 2, 10, tzinfo=UTC)
    assert allday.ends_at == datetime(2026, 2, 11, tzinfo=UTC)
    assert allday.organizer == "boss@acme.example"
    assert allday.attendees == ("boss@acme.example", "maya@example.com")


@responses.activate
def test_gone_sync_token_is_cursor_expired() -> None:
    body = g_error(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required.")
    responses.get(EVENTS, status=410, json=body)
    with pytest.raises(CursorExpired) as exc:
        google.list_events(account(), cursor="old", page=None, window=WINDOW)
    assert exc.value.code == "full_sync_required"
    assert isinstance(exc.value, Permanent)


@responses.activate
@pytest.mark.parametrize("reason", ["userRateLimitExceeded", "rateLimitExceeded", "quotaExceeded"])
def test_403_usage_limits_are_rate_limited(reason: str) -> None:
    responses.get(EVENTS, status=403, json=g_error(403, reason, "Rate Limit Exceeded"))
    with pytest.raises(RateLimited) as exc:
        google.list_events(account(), cursor=None, page=None, window=WINDOW)
    assert exc.value.retry_after == 60.0
    assert exc.value.http_status == 403


@responses.activate
def test_403_rate_limit_honours_retry_after_and_blocks_the_bucket() -> None:
    from integrations.providers.ratelimit import get_limiter

    responses.get(EVENTS, status=403, json=g_error(403, "rateLimitExceeded"), headers={"Retry-After": "7"})
    with pytest.raises(RateLimited) as exc:
        google.list_events(account(), cursor=None, page=None, window=WINDOW)
    assert exc.value.retry_after == 7.0
    assert get_limiter().headroom(google.api_bucket(), "maya@example.com")["blocked_for_seconds"] > 0


@responses.activate
def test_429_with_retry_after_is_rate_limited() -> None:
    responses.get(EVENTS, status=429, json=g_error(429, "rateLimitExceeded"), headers={"Retry-After": "12"})
    responses.get(EVENTS, status=429, json=g_error(429, "rateLimitExceeded"))
    with pytest.raises(RateLimited) as exc:
        google.list_events(account(), cursor=None, page=None, window=WINDOW)
    assert exc.value.retry_after == 12.0
    assert "rateLimitExceeded" not in exc.value.message  # the message, not the JSON
    with pytest.raises(RateLimited) as fallback:
        google.list_events(account("other@example.com"), cursor=None, page=None, window=WINDOW)
    assert fallback.value.retry_after == 60.0


@responses.activate
def test_401_is_token_expired_and_the_token_stays_out_of_message_and_sync_log(alice: Any) -> None:
    body = {"error": {"code": 401, "message": f"Invalid Credentials {TOKEN}", "status": "UNAUTHENTICATED"}}
    responses.get(EVENTS, status=401, json=body)
    with pytest.raises(TokenExpired) as exc:
        google.list_events(account(workspace_id=alice.workspace.pk), cursor=None, page=None, window=WINDOW)
    assert TOKEN not in str(exc.value)
    assert "Invalid Credentials" in str(exc.value)
    with system_scope():
        rows = list(
            SyncLog.objects.filter(workspace=alice.workspace).values("provider", "operation", "summary")
        )
    assert len(rows) == 1
    assert rows[0]["provider"] == "google" and rows[0]["operation"] == "list_events"
    assert "token_expired" in rows[0]["summary"] and TOKEN not in rows[0]["summary"]


@responses.activate
@pytest.mark.parametrize(
    "body",
    [
        g_error(403, "insufficientPermissions", "Insufficient Permission"),
        {
            "error": {
                "code": 403,
                "message": "Request had insufficient authentication scopes.",
                "status": "PERMISSION_DENIED",
                "details": [{"reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "domain": "googleapis.com"}],
            }
        },
    ],
)
def test_403_scope_errors_are_missing_scope(body: dict[str, Any]) -> None:
    responses.get(EVENTS, status=403, json=body)
    with pytest.raises(MissingScope) as exc:
        google.list_events(account(), cursor=None, page=None, window=WINDOW)
    assert exc.value.missing == [CALENDAR_SCOPE]


@responses.activate
def test_other_client_errors_are_permanent_with_the_reason_as_code() -> None:
    responses.get(EVENTS, status=404, json=g_error(404, "notFound", "Not Found"))
    responses.get(EVENTS, status=400, json=g_error(400, "invalid", "Invalid sync token value."))
    responses.get(EVENTS, status=403, json=g_error(403, "forbidden"))
    responses.get(EVENTS, status=400, body="not json")
    codes = []
    for _ in range(4):
        with pytest.raises(Permanent) as exc:
            google.list_events(account(), cursor="c", page=None, window=WINDOW)
        codes.append(exc.value.code)
    assert codes == ["not_found", "invalid", "forbidden", "http_400"]


@responses.activate
def test_server_errors_are_transient_with_a_readable_message() -> None:
    responses.get(EVENTS, status=503, json={"error": {"code": 503, "message": "Backend Error"}})
    with pytest.raises(Transient) as exc:
        google.list_events(account(), cursor="c", page=None, window=WINDOW)
    assert exc.value.message == "Backend Error"


@responses.activate
def test_watch_opens_a_channel_carrying_the_secret() -> None:
    expires_ms = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    responses.post(
        f"{EVENTS}/watch",
        json={"kind": "api#channel", "id": "chan-1", "resourceId": "res-1", "expiration": str(expires_ms)},
    )
    channel = google.watch(account(), address="https://conduit.test/hook", secret=SECRET, channel_id="chan-1")
    assert sent_json() == {
        "id": "chan-1",
        "type": "web_hook",
        "address": "https://conduit.test/hook",
        "token": SECRET,
    }
    assert channel == PushChannel("chan-1", "res-1", datetime(2026, 1, 1, tzinfo=UTC))


@responses.activate
def test_watch_without_expiration_assumes_a_short_life_and_without_resource_fails() -> None:
    responses.post(f"{EVENTS}/watch", json={"id": "chan-1", "resourceId": "res-1"})
    responses.post(f"{EVENTS}/watch", json={"id": "chan-2"})
    channel = google.watch(account(), address="https://c/hook", secret=SECRET, channel_id="chan-1")
    assert timezone.now() < channel.expires_at <= timezone.now() + timedelta(days=1)
    with pytest.raises(Permanent, match="invalid_watch_response"):
        google.watch(account(), address="https://c/hook", secret=SECRET, channel_id="chan-2")


@responses.activate
def test_watch_error_never_carries_the_channel_secret() -> None:
    responses.post(f"{EVENTS}/watch", status=400, json=g_error(400, "invalid", f"bad token {SECRET}"))
    with pytest.raises(Permanent) as exc:
        google.watch(account(), address="https://c/hook", secret=SECRET, channel_id="chan-1")
    assert SECRET not in str(exc.value)
    with system_scope():
        assert not SyncLog.objects.filter(summary__contains=SECRET).exists()


@responses.activate
def test_stop_posts_id_and_resource_and_accepts_a_gone_channel() -> None:
    responses.post(f"{API}/channels/stop", status=204)
    responses.post(f"{API}/channels/stop", status=404, json=g_error(404, "notFound"))
    responses.post(f"{API}/channels/stop", status=400, json=g_error(400, "invalid"))
    channel = PushChannel("chan-1", "res-1", timezone.now())
    google.stop(account(), channel)
    assert sent_json() == {"id": "chan-1", "resourceId": "res-1"}
    google.stop(account(), channel)
    with pytest.raises(Permanent):
        google.stop(account(), channel)


@responses.activate
def test_renew_opens_a_new_channel_then_stops_the_old_one() -> None:
    responses.post(
        f"{EVENTS}/watch", json={"id": "new", "resourceId": "res-2", "expiration": "1767225600000"}
    )
    responses.post(f"{API}/channels/stop", status=204)
    old = PushChannel("old-chan", "res-1", timezone.now())
    fresh = google.renew(account(), old, address="https://c/hook", secret=SECRET)
    watch_body = sent_json(0)
    assert watch_body["id"] != "old-chan" and len(watch_body["id"]) == 36  # a new uuid
    assert watch_body["token"] == SECRET
    assert responses.calls[1].request.url == f"{API}/channels/stop"
    assert sent_json(1) == {"id": "old-chan", "resourceId": "res-1"}
    assert fresh.resource_id == "res-2"


@responses.activate
def test_renew_survives_an_old_channel_that_cannot_be_stopped(capture_json_logs: Any) -> None:
    responses.post(
        f"{EVENTS}/watch", json={"id": "new", "resourceId": "res-2", "expiration": "1767225600000"}
    )
    responses.post(f"{API}/channels/stop", status=500, json={"error": {"code": 500, "message": "oops"}})
    fresh = google.renew(
        account(), PushChannel("old", "res-1", timezone.now()), address="https://c/h", secret=SECRET
    )
    assert fresh.channel_id == "new"
    lines = capture_json_logs()
    assert any("not stopped" in str(line.get("message")) for line in lines)
    assert all(SECRET not in json.dumps(line) and TOKEN not in json.dumps(line) for line in lines)


def test_errors_are_provider_errors() -> None:
    assert issubclass(CursorExpired, ProviderError)


@responses.activate
def test_userinfo_401_with_an_oauth_error_is_token_expired() -> None:
    from integrations.providers.base import TokenSet

    responses.get("https://google.test/v1/userinfo", status=401, json={"error": "invalid_token"})
    with pytest.raises(TokenExpired):
        google.identify(TokenSet(access_token=TOKEN))


def test_time_helpers_tolerate_missing_and_bad_values() -> None:
    from integrations.providers.calendar_base import parse_when, utc_midnight

    assert utc_midnight(None) is None
    assert utc_midnight("2026-13-45") is None
    assert utc_midnight("2026-02-10T05:00:00") == datetime(2026, 2, 10, tzinfo=UTC)
    assert parse_when("") is None
    assert parse_when("yesterday") is None
    assert parse_when("2026-01-05T10:00:00") == datetime(2026, 1, 5, 10, tzinfo=UTC)
