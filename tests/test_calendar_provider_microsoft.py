"""Microsoft Graph calendar client against `responses` mocks shaped from provider-facts.md."""

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
from integrations.providers.base import Account, TokenSet
from integrations.providers.calendar_base import CursorExpired, PushChannel
from integrations.providers.errors import (
    AuthRevoked,
    InvalidInstanceUrl,
    MissingScope,
    Permanent,
    RateLimited,
    TokenExpired,
    Transient,
)
from integrations.providers.microsoft_calendar import MicrosoftCalendarProvider, graph_time
from integrations.providers.synclog import CallContext

pytestmark = pytest.mark.django_db

GRAPH = "https://graph.test/v1.0"
LOGIN = "https://login.test"
TOKEN_URL = f"{LOGIN}/common/oauth2/v2.0/token"
TOKEN = "eyJ0eXAiOiJKV1QiLCJub25jZSI6ImdyYXBoLWFjY2Vzcy10b2tlbiJ9.payload.sig"
REFRESH = "M.R3_BAY.microsoft-refresh-token-0123456789"
SECRET = "client-state-secret-0123456789"
WINDOW = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
DELTA = f"{GRAPH}/me/calendarView/delta"

ms = MicrosoftCalendarProvider()


@pytest.fixture(autouse=True)
def microsoft_settings(settings: Any) -> Any:
    settings.MICROSOFT_LOGIN_URL = LOGIN
    settings.MICROSOFT_TENANT = "common"
    settings.MICROSOFT_GRAPH_URL = GRAPH
    settings.MICROSOFT_CLIENT_ID = "ms-client-id"
    settings.MICROSOFT_CLIENT_SECRET = "ms-client-secret-xyz"
    return settings


def account(key: str = "maya@contoso.example", **ctx: Any) -> Account:
    """The rate-limit account is `key`: a test that is told to wait uses a second key after."""
    return Account("microsoft", TOKEN, key, context=CallContext(**ctx))


def graph_error(code: str, message: str = "error") -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "innerError": {"request-id": "r1"}}}


def form(call_index: int = 0) -> dict[str, list[str]]:
    return parse_qs(str(responses.calls[call_index].request.body))


def sent_json(call_index: int = 0) -> Any:
    return json.loads(responses.calls[call_index].request.body or b"{}")


def event(event_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "iCalUId": f"ical-{event_id}",
        "subject": f"Meeting {event_id}",
        "isAllDay": False,
        "isCancelled": False,
        "sensitivity": "normal",
        "start": {"dateTime": "2026-01-05T09:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2026-01-05T10:00:00.0000000", "timeZone": "UTC"},
        "lastModifiedDateTime": "2026-01-04T08:00:00.1234567Z",
        "organizer": {"emailAddress": {"name": "Maya", "address": "Maya@Contoso.example"}},
        "attendees": [
            {"type": "required", "emailAddress": {"address": "Buyer@Acme.example"}},
            {"type": "resource", "emailAddress": {"address": "room1@contoso.example"}},
            {"type": "optional", "emailAddress": {"address": "buyer@acme.example"}},
            {"type": "optional", "emailAddress": {}},
        ],
        **extra,
    }


def test_registry_gives_the_microsoft_provider() -> None:
    provider = get_calendar_provider("microsoft")
    assert isinstance(provider, MicrosoftCalendarProvider)
    assert (provider.name, provider.label) == ("microsoft", "Microsoft 365")
    assert provider.required_scopes == ("Calendars.Read",)
    assert provider.supports_pkce is True


def test_missing_scopes_reads_graph_resource_scopes_case_insensitively() -> None:
    assert ms.missing_scopes(["openid", "https://graph.microsoft.com/Calendars.Read"]) == []
    assert ms.missing_scopes(["calendars.read"]) == []
    assert ms.missing_scopes(["User.Read", "offline_access"]) == ["Calendars.Read"]


def test_api_bucket_is_budgeted_per_ten_minutes(settings: Any) -> None:
    settings.MICROSOFT_GRAPH_REQUESTS_PER_TEN_MINUTES = 1000
    settings.CONDUIT_RATE_BUDGET = 0.8
    bucket = ms.api_bucket()
    assert (bucket.provider, bucket.name, bucket.limit, bucket.window) == ("microsoft", "graph", 800, 600)


def test_authorize_url_uses_the_tenant_offline_access_and_pkce(settings: Any) -> None:
    settings.MICROSOFT_TENANT = "contoso.onmicrosoft.com"
    url = ms.authorize_url(state="st4te", redirect_uri="https://conduit.test/cb", code_challenge="ch4l")
    assert url.startswith(f"{LOGIN}/contoso.onmicrosoft.com/oauth2/v2.0/authorize?")
    assert parse_qs(urlsplit(url).query) == {
        "client_id": ["ms-client-id"],
        "response_type": ["code"],
        "redirect_uri": ["https://conduit.test/cb"],
        "response_mode": ["query"],
        "scope": ["offline_access openid email User.Read Calendars.Read"],
        "state": ["st4te"],
        "code_challenge": ["ch4l"],
        "code_challenge_method": ["S256"],
    }
    assert "code_challenge" not in ms.authorize_url(state="s", redirect_uri="https://c/cb")


def test_unconfigured_client_is_refused(settings: Any) -> None:
    settings.MICROSOFT_CLIENT_ID = ""
    with pytest.raises(Permanent) as exc:
        ms.authorize_url(state="s", redirect_uri="https://c/cb")
    assert exc.value.code == "not_configured"


@responses.activate
def test_exchange_code_sends_the_verifier_and_scopes() -> None:
    responses.post(
        TOKEN_URL,
        json={
            "token_type": "Bearer",
            "scope": "openid email https://graph.microsoft.com/Calendars.Read https://graph.microsoft.com/User.Read",
            "expires_in": 4000,
            "access_token": TOKEN,
            "refresh_token": REFRESH,
        },
    )
    tokens = ms.exchange_code(
        code="0.AAA-code", redirect_uri="https://conduit.test/cb", code_verifier="v" * 43
    )
    sent = form()
    assert sent["grant_type"] == ["authorization_code"]
    assert sent["code"] == ["0.AAA-code"]
    assert sent["code_verifier"] == ["v" * 43]
    assert sent["client_secret"] == ["ms-client-secret-xyz"]
    assert sent["scope"] == ["offline_access openid email User.Read Calendars.Read"]
    assert (tokens.access_token, tokens.refresh_token) == (TOKEN, REFRESH)
    assert tokens.scopes == ("openid", "email", "Calendars.Read", "User.Read")
    assert tokens.expires_at is not None
    assert tokens.expires_at > timezone.now() + timedelta(seconds=3990)


@responses.activate
def test_refresh_returns_the_rotated_refresh_token() -> None:
    responses.post(
        TOKEN_URL, json={"access_token": "new-access", "refresh_token": "rotated", "expires_in": 3600}
    )
    tokens = ms.refresh(REFRESH)
    assert form()["grant_type"] == ["refresh_token"]
    assert form()["refresh_token"] == [REFRESH]
    assert (tokens.access_token, tokens.refresh_token) == ("new-access", "rotated")


@responses.activate
def test_token_answer_without_access_token_is_permanent() -> None:
    responses.post(TOKEN_URL, json={"error_codes": []})
    with pytest.raises(Permanent, match="invalid_token_response"):
        ms.refresh(REFRESH)


def aad_error(error: str, code: int) -> dict[str, Any]:
    return {
        "error": error,
        "error_description": f"AADSTS{code}: something happened. Trace ID: t Correlation ID: c",
        "error_codes": [code],
    }


@responses.activate
@pytest.mark.parametrize(
    ("body", "code"),
    [
        (aad_error("invalid_grant", 700082), "refresh_token_revoked"),
        (aad_error("invalid_grant", 70008), "refresh_token_revoked"),
        (aad_error("invalid_grant", 50173), "refresh_token_revoked"),
        (aad_error("invalid_grant", 700084), "refresh_token_revoked"),
        (aad_error("invalid_grant", 50076), "interaction_required"),
        (aad_error("interaction_required", 50079), "interaction_required"),
        ({"error": "interaction_required", "error_description": "MFA"}, "interaction_required"),
        (aad_error("invalid_grant", 65001), "consent_required"),
        ({"error": "consent_required"}, "consent_required"),
    ],
)
def test_refresh_grant_errors_are_auth_revoked(body: dict[str, Any], code: str) -> None:
    responses.post(TOKEN_URL, status=400, json=body)
    with pytest.raises(AuthRevoked) as exc:
        ms.refresh(REFRESH)
    assert exc.value.code == code


@responses.activate
def test_invalid_grant_refresh_keeps_the_token_out_of_message_and_sync_log(alice: Any) -> None:
    body = {"error": "invalid_grant", "error_description": f"AADSTS70008: expired {REFRESH}"}
    responses.post(TOKEN_URL, status=400, json=body)
    with pytest.raises(AuthRevoked) as exc:
        ms.refresh(REFRESH, context=CallContext(workspace_id=alice.workspace.pk))
    assert REFRESH not in str(exc.value)
    with system_scope():
        summaries = list(SyncLog.objects.filter(workspace=alice.workspace).values_list("summary", flat=True))
    assert len(summaries) == 1 and "refresh_token_revoked" in summaries[0]
    assert REFRESH not in summaries[0]


@responses.activate
def test_other_token_errors_are_permanent() -> None:
    responses.post(TOKEN_URL, status=401, json=aad_error("invalid_client", 7000215))
    responses.post(TOKEN_URL, status=400, json=aad_error("invalid_grant", 54005))
    responses.post(TOKEN_URL, status=400, json={"error": "invalid_request"})
    with pytest.raises(Permanent) as client:
        ms.refresh(REFRESH)
    assert client.value.code == "invalid_client" and not isinstance(client.value, AuthRevoked)
    with pytest.raises(Permanent) as code:
        ms.exchange_code(code="used", redirect_uri="https://c/cb")
    assert code.value.code == "invalid_authorization_code"
    with pytest.raises(Permanent) as other:
        ms.exchange_code(code="x", redirect_uri="https://c/cb")
    assert other.value.code == "invalid_request"


def test_revoke_sends_nothing() -> None:
    with responses.RequestsMock() as mock:
        ms.revoke(REFRESH)
        assert len(mock.calls) == 0


@responses.activate
def test_identify_reads_mail_or_user_principal_name() -> None:
    responses.get(
        f"{GRAPH}/me", json={"id": "u1", "mail": "Maya@Contoso.example", "userPrincipalName": "x@y"}
    )
    responses.get(
        f"{GRAPH}/me", json={"id": "u1", "mail": None, "userPrincipalName": "Maya@Contoso.onmicrosoft.com"}
    )
    responses.get(f"{GRAPH}/me", json={"id": "u1"})
    tokens = TokenSet(access_token=TOKEN, scopes=("Calendars.Read",))
    first = ms.identify(tokens)
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert (first.key, first.details, first.user_email) == (
        "maya@contoso.example",
        {"email": "maya@contoso.example"},
        "maya@contoso.example",
    )
    assert first.scopes == ("Calendars.Read",)
    assert ms.identify(tokens).key == "maya@contoso.onmicrosoft.com"
    with pytest.raises(Permanent, match="invalid_userinfo"):
        ms.identify(tokens)


@responses.activate
def test_health_reads_me() -> None:
    responses.get(f"{GRAPH}/me", json={"id": "u1"})
    assert ms.check_health(account()).details == {"calendar": "me"}


@responses.activate
def test_full_listing_follows_next_link_then_hands_back_the_delta_link() -> None:
    next_link = f"{DELTA}?$skiptoken=skip-1"
    delta_link = f"{DELTA}?$deltatoken=delta-1"
    responses.get(DELTA, json={"value": [event("e1")], "@odata.nextLink": next_link})
    responses.get(DELTA, json={"value": [event("e2")], "@odata.deltaLink": delta_link})
    first = ms.list_events(account(), cursor=None, page=None, window=WINDOW)
    assert (first.next_page, first.sync_cursor) == (next_link, None)
    second = ms.list_events(account(), cursor=None, page=first.next_page, window=WINDOW)
    assert (second.next_page, second.sync_cursor) == (None, delta_link)
    assert [e.external_id for e in first.events + second.events] == ["e1", "e2"]
    full = responses.calls[0].request
    assert parse_qs(urlsplit(str(full.url)).query) == {
        "startDateTime": ["2026-01-01T00:00:00Z"],
        "endDateTime": ["2026-04-01T00:00:00Z"],
    }
    assert full.headers["Prefer"] == 'odata.maxpagesize=100, outlook.timezone="UTC"'
    assert full.headers["Authorization"] == f"Bearer {TOKEN}"
    assert responses.calls[1].request.url == next_link
    assert responses.calls[1].request.headers["Prefer"] == 'odata.maxpagesize=100, outlook.timezone="UTC"'
    mapped = first.events[0]
    assert mapped.ical_uid == "ical-e1" and mapped.title == "Meeting e1"
    assert mapped.starts_at == datetime(2026, 1, 5, 9, tzinfo=UTC)
    assert mapped.ends_at == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert mapped.updated_at == datetime(2026, 1, 4, 8, 0, 0, 123456, tzinfo=UTC)
    assert mapped.organizer == "maya@contoso.example"
    assert mapped.attendees == ("buyer@acme.example",)
    assert not (mapped.all_day or mapped.private or mapped.cancelled)


@responses.activate
def test_incremental_listing_calls_the_delta_link_as_is() -> None:
    delta_link = f"{DELTA}?$deltatoken=delta-1"
    responses.get(DELTA, json={"value": [], "@odata.deltaLink": f"{DELTA}?$deltatoken=delta-2"})
    page = ms.list_events(account(), cursor=delta_link, page=None, window=WINDOW)
    assert responses.calls[0].request.url == delta_link
    assert "startDateTime" not in str(responses.calls[0].request.url)
    assert page.sync_cursor == f"{DELTA}?$deltatoken=delta-2"


@responses.activate
def test_event_mapping_removed_cancelled_private_all_day() -> None:
    items = [
        {"id": "gone", "@removed": {"reason": "deleted"}},
        event("called-off", isCancelled=True),
        event("secret", sensitivity="private"),
        event("conf", sensitivity="confidential"),
        event("personal", sensitivity="personal"),
        event(
            "allday",
            isAllDay=True,
            start={"dateTime": "2026-02-10T00:00:00.0000000", "timeZone": "UTC"},
            end={"dateTime": "2026-02-11T00:00:00.0000000", "timeZone": "UTC"},
        ),
        {"subject": "no id"},
        "junk",
    ]
    responses.get(DELTA, json={"value": items, "@odata.deltaLink": f"{DELTA}?$deltatoken=d"})
    events = {
        e.external_id: e for e in ms.list_events(account(), cursor=None, page=None, window=WINDOW).events
    }
    assert list(events) == ["gone", "called-off", "secret", "conf", "personal", "allday"]
    assert events["gone"].cancelled and events["gone"].title == ""
    assert events["called-off"].cancelled
    assert events["secret"].private and events["conf"].private
    assert not events["personal"].private
    allday = events["allday"]
    assert allday.all_day
    assert (allday.starts_at, allday.ends_at) == (
        datetime(2026, 2, 10, tzinfo=UTC),
        datetime(2026, 2, 11, tzinfo=UTC),
    )


def test_graph_time_reads_utc_iana_and_unknown_zones() -> None:
    assert graph_time({"dateTime": "2026-01-05T09:00:00.0000000", "timeZone": "UTC"}) == datetime(
        2026, 1, 5, 9, tzinfo=UTC
    )
    assert graph_time({"dateTime": "2026-01-05T10:00:00", "timeZone": "Europe/Paris"}) == datetime(
        2026, 1, 5, 9, tzinfo=UTC
    )
    assert graph_time({"dateTime": "2026-01-05T09:00:00", "timeZone": "Pacific Standard Time"}) == datetime(
        2026, 1, 5, 9, tzinfo=UTC
    )
    assert graph_time({"dateTime": "garbage"}) is None
    assert graph_time(None) is None


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.test/v1.0/me/calendarView/delta?$deltatoken=x",
        "https://graph.test.evil.test/v1.0/me/calendarView/delta",
        "https://graph.test@evil.test/v1.0/me/calendarView/delta",
        "http://graph.test/v1.0/me/calendarView/delta",
        "https://graph.test/v2.0/me/calendarView/delta",
        "https://graph.test/v1.0.evil/me",
        "https://graph.test/v1.0/me\\@evil.test",
        "",
    ],
)
def test_foreign_links_are_refused_before_anything_is_sent(link: str) -> None:
    with responses.RequestsMock() as mock:
        with pytest.raises(InvalidInstanceUrl) as exc:
            ms.list_events(account(), cursor=link or "x", page=link or None, window=WINDOW)
        assert len(mock.calls) == 0
    assert TOKEN not in str(exc.value)
    with pytest.raises(InvalidInstanceUrl):
        ms.list_events(account(), cursor=None, page="https://evil.test/v1.0/x", window=WINDOW)


@responses.activate
@pytest.mark.parametrize(
    ("status", "code"),
    [(410, "syncStateNotFound"), (410, "resyncRequired"), (400, "SyncStateNotFound"), (410, "")],
)
def test_expired_delta_is_cursor_expired(status: int, code: str) -> None:
    responses.get(DELTA, status=status, json=graph_error(code, "The sync state is not found"))
    with pytest.raises(CursorExpired) as exc:
        ms.list_events(account(), cursor=f"{DELTA}?$deltatoken=old", page=None, window=WINDOW)
    assert exc.value.code == "full_sync_required"


@responses.activate
def test_429_honours_retry_after_or_waits_30_seconds() -> None:
    responses.get(
        DELTA, status=429, json=graph_error("TooManyRequests", "Too many"), headers={"Retry-After": "17"}
    )
    responses.get(DELTA, status=429, json=graph_error("TooManyRequests", "Too many"))
    with pytest.raises(RateLimited) as exc:
        ms.list_events(account(), cursor=None, page=None, window=WINDOW)
    assert exc.value.retry_after == 17.0
    assert exc.value.message == "Too many"
    with pytest.raises(RateLimited) as fallback:
        ms.list_events(account("other@contoso.example"), cursor=None, page=None, window=WINDOW)
    assert fallback.value.retry_after == 30.0


@responses.activate
def test_401_is_token_expired_and_no_token_reaches_message_or_sync_log(alice: Any) -> None:
    body = graph_error("InvalidAuthenticationToken", f"Access token has expired: {TOKEN}")
    responses.get(DELTA, status=401, json=body)
    with pytest.raises(TokenExpired) as exc:
        ms.list_events(account(workspace_id=alice.workspace.pk), cursor=None, page=None, window=WINDOW)
    assert TOKEN not in str(exc.value)
    with system_scope():
        rows = list(
            SyncLog.objects.filter(workspace=alice.workspace).values("provider", "operation", "summary")
        )
    assert [(r["provider"], r["operation"]) for r in rows] == [("microsoft", "list_events")]
    assert "token_expired" in rows[0]["summary"] and TOKEN not in rows[0]["summary"]


@responses.activate
def test_403_missing_privileges_is_missing_scope_other_403_is_permanent() -> None:
    responses.get(
        DELTA, status=403, json=graph_error("ErrorAccessDenied", "Access is denied. Check credentials.")
    )
    responses.get(
        DELTA,
        status=403,
        json=graph_error("Authorization_RequestDenied", "Insufficient privileges to complete"),
    )
    responses.get(
        DELTA, status=403, json=graph_error("MailboxNotEnabledForRESTAPI", "REST API is not yet supported")
    )
    for _ in range(2):
        with pytest.raises(MissingScope) as missing:
            ms.list_events(account(), cursor=None, page=None, window=WINDOW)
        assert missing.value.missing == ["Calendars.Read"]
    with pytest.raises(Permanent) as other:
        ms.list_events(account(), cursor=None, page=None, window=WINDOW)
    assert other.value.code == "mailbox_not_enabled_for_restapi"


@responses.activate
def test_other_errors_permanent_and_server_errors_transient() -> None:
    responses.get(DELTA, status=400, json=graph_error("ErrorInvalidParameter", "bad"))
    responses.get(DELTA, status=404, body="")
    responses.get(DELTA, status=503, json=graph_error("ServiceUnavailable", "Try later"))
    with pytest.raises(Permanent) as bad:
        ms.list_events(account(), cursor=None, page=None, window=WINDOW)
    assert bad.value.code == "error_invalid_parameter"
    with pytest.raises(Permanent) as missing:
        ms.list_events(account(), cursor=None, page=None, window=WINDOW)
    assert missing.value.code == "http_404"
    with pytest.raises(Transient) as down:
        ms.list_events(account(), cursor=None, page=None, window=WINDOW)
    assert down.value.message == "Try later"


@responses.activate
def test_watch_creates_a_subscription_with_client_state_and_lifecycle_url() -> None:
    responses.post(
        f"{GRAPH}/subscriptions",
        status=201,
        json={"id": "sub-1", "expirationDateTime": "2026-01-03T18:40:00.0000000Z", "resource": "me/events"},
    )
    before = timezone.now()
    channel = ms.watch(account(), address="https://conduit.test/hook", secret=SECRET, channel_id="ignored")
    body = sent_json()
    asked = datetime.fromisoformat(body.pop("expirationDateTime"))
    assert body == {
        "changeType": "created,updated,deleted",
        "notificationUrl": "https://conduit.test/hook",
        "lifecycleNotificationUrl": "https://conduit.test/hook",
        "resource": "me/events",
        "clientState": SECRET,
    }
    assert before + timedelta(minutes=3999) < asked <= timezone.now() + timedelta(minutes=4000)
    assert asked < before + timedelta(minutes=4230)
    assert channel == PushChannel("sub-1", "", datetime(2026, 1, 3, 18, 40, tzinfo=UTC))


@responses.activate
def test_watch_errors_never_carry_the_client_state() -> None:
    responses.post(f"{GRAPH}/subscriptions", status=400, json=graph_error("InvalidRequest", f"bad {SECRET}"))
    responses.post(f"{GRAPH}/subscriptions", status=201, json={"id": "sub-1"})
    with pytest.raises(Permanent) as exc:
        ms.watch(account(), address="https://c/hook", secret=SECRET, channel_id="x")
    assert SECRET not in str(exc.value)
    with system_scope():
        assert not SyncLog.objects.filter(summary__contains=SECRET).exists()
    with pytest.raises(Permanent, match="invalid_subscription_response"):
        ms.watch(account(), address="https://c/hook", secret=SECRET, channel_id="x")


@responses.activate
def test_renew_patches_the_expiry_and_replaces_a_gone_subscription() -> None:
    responses.patch(
        f"{GRAPH}/subscriptions/sub-1", json={"id": "sub-1", "expirationDateTime": "2026-01-06T00:00:00Z"}
    )
    responses.patch(f"{GRAPH}/subscriptions/sub-1", status=404, json=graph_error("ResourceNotFound"))
    responses.post(
        f"{GRAPH}/subscriptions",
        status=201,
        json={"id": "sub-2", "expirationDateTime": "2026-01-07T00:00:00Z"},
    )
    responses.patch(f"{GRAPH}/subscriptions/sub-1", status=400, json=graph_error("InvalidRequest"))
    old = PushChannel("sub-1", "", timezone.now())
    renewed = ms.renew(account(), old, address="https://c/hook", secret=SECRET)
    assert renewed == PushChannel("sub-1", "", datetime(2026, 1, 6, tzinfo=UTC))
    assert list(sent_json(0)) == ["expirationDateTime"]
    replaced = ms.renew(account(), old, address="https://c/hook", secret=SECRET)
    assert replaced.channel_id == "sub-2"
    assert sent_json(2)["clientState"] == SECRET
    with pytest.raises(Permanent):
        ms.renew(account(), old, address="https://c/hook", secret=SECRET)


@responses.activate
def test_stop_deletes_the_subscription_and_accepts_a_gone_one() -> None:
    responses.delete(f"{GRAPH}/subscriptions/sub-1", status=204)
    responses.delete(f"{GRAPH}/subscriptions/sub-1", status=404, json=graph_error("ResourceNotFound"))
    responses.delete(f"{GRAPH}/subscriptions/sub-1", status=400, json=graph_error("InvalidRequest"))
    channel = PushChannel("sub-1", "", timezone.now())
    ms.stop(account(), channel)
    ms.stop(account(), channel)
    assert [c.request.method for c in responses.calls] == ["DELETE", "DELETE"]
    with pytest.raises(Permanent):
        ms.stop(account(), channel)


@responses.activate
def test_server_error_without_json_names_the_status() -> None:
    responses.get(DELTA, status=502, body="<html>bad gateway</html>")
    with pytest.raises(Transient) as exc:
        ms.list_events(account(), cursor=None, page=None, window=WINDOW)
    assert exc.value.message == "HTTP 502"
