"""The Lever client against `responses` mocks shaped from Lever's documented answers (see
integrations/providers/lever.py for what is [verify]): the key as HTTP Basic, the credentials
check naming the account, opportunities found by email, notes and their markers, error mapping,
rate limits, and secret hygiene."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from conduit.tenancy import system_scope
from integrations.models import SyncLog
from integrations.providers import lever as lever_module
from integrations.providers.base import Account, TokenSet
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    Permanent,
    ProviderError,
    RateLimited,
    Transient,
)
from integrations.providers.lever import (
    LeverProvider,
    account_anchor,
    api_bucket,
    check_api_key,
    created_note_id,
    note_text,
    pick_opportunity,
    read_pages,
)
from integrations.providers.ratelimit import get_limiter
from integrations.providers.synclog import CallContext
from tests.provider_helpers import MARKER, activity

pytestmark = pytest.mark.django_db
API = "https://api.lever.co/v1"
KEY = "lvrKey0123456789abcdefABCDEF9876543210zz"
BASIC = base64.b64encode(f"{KEY}:".encode()).decode()
OPP = "250d8f03-738a-4bba-a671-8a3d73477145"
ANCHOR = "b59ae96c-c132-4a91-9c5c-dccd88fc2794"
NOTE = "e39cf6d1-4d54-4b34-84a9-1f7b4a5b7ea2"
lever = LeverProvider()


@pytest.fixture(autouse=True)
def real_lever(settings: Any) -> None:
    settings.LEVER_API_BASE_URL = API


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def account(**ctx: Any) -> Account:
    return Account("lever", KEY, ANCHOR, context=CallContext(**ctx))


def query(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def user(uid: str, created: int, **extra: Any) -> dict[str, Any]:
    return {"id": uid, "name": uid[:4], "email": f"{uid[:4]}@acme.example", "createdAt": created, **extra}


def opportunity(
    oid: str, updated: int, archived: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {"id": oid, "emails": ["maya@acme.example"], "updatedAt": updated, "archived": archived, **extra}


def lever_error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def sync_rows() -> list[SyncLog]:
    with system_scope():
        return list(SyncLog.objects.filter(provider="lever").order_by("id"))


# --- the credentials form --------------------------------------------------------------------


def test_the_key_is_sent_as_basic_with_a_blank_password() -> None:
    assert lever.authorization(KEY) == f"Basic {BASIC}"
    assert base64.b64decode(BASIC).decode() == f"{KEY}:"
    assert lever.credential_fields == ("api_key",)
    assert (lever.uses_oauth, lever.refreshes_tokens, lever.label) == (False, False, "Lever")


def test_check_credentials_reads_every_user_page_and_names_the_oldest(mock: responses.RequestsMock) -> None:
    first = {
        "data": [user("c4bc6266", 1717621115311), user(ANCHOR, 1563996364234)],
        "hasNext": True,
        "next": "tok2",
    }
    second = {"data": [user("89f2a882", 1563996364234, deactivatedAt=1600000000000)], "hasNext": False}
    mock.get(
        f"{API}/users",
        json=first,
        match=[responses.matchers.query_param_matcher({"limit": "100", "includeDeactivated": "true"})],
    )
    mock.get(
        f"{API}/users",
        json=second,
        match=[
            responses.matchers.query_param_matcher(
                {"limit": "100", "includeDeactivated": "true", "offset": "tok2"}
            )
        ],
    )
    grant = lever.check_credentials({"api_key": KEY}, context=CallContext())
    # two users share the oldest time: the smaller id wins, whoever is listed first
    assert grant.account.key == "89f2a882"
    assert grant.account.details == {"anchor_user_id": "89f2a882", "users": 3, "api_host": "api.lever.co"}
    assert grant.tokens == TokenSet(access_token=KEY, refresh_token="", account_key="89f2a882")
    assert grant.last4 == KEY[-4:]
    assert [c.request.headers["Authorization"] for c in mock.calls] == [f"Basic {BASIC}"] * 2
    assert [row.operation for row in sync_rows()] == ["identify", "identify"]


@pytest.mark.parametrize(
    ("key", "sentence"),
    [
        ("", "Enter the Lever API key."),
        ("k" * 257, "longer than 256"),
        ("abcdefgh\tijklmnopq", "control character"),
        ("abcdefgh ijklmnopq", "no spaces or colons"),
        ("abcdefgh:ijklmnopq", "no spaces or colons"),
        ("abcdéfghijklmnopq", "no spaces or colons"),
        ("short-key", "shorter than 16"),
    ],
)
def test_a_malformed_key_is_refused_before_any_call(
    key: str, sentence: str, mock: responses.RequestsMock
) -> None:
    with pytest.raises(ValueError, match=sentence):
        lever.check_credentials({"api_key": key})
    with pytest.raises(ValueError, match="Enter the Lever API key"):
        check_api_key({})
    assert len(mock.calls) == 0


def test_a_refused_key_is_credentials_invalid(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/users", status=401, json=lever_error("UnauthorizedError", "Invalid API key"))
    with pytest.raises(AuthRevoked) as refused:
        lever.check_credentials({"api_key": KEY})
    assert (refused.value.code, refused.value.http_status) == ("credentials_invalid", 401)
    assert refused.value.message == "Invalid API key"


def test_a_key_without_the_users_permission_names_it(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/users", status=403, json=lever_error("ForbiddenError", "not allowed"))
    with pytest.raises(MissingScope) as missing:
        lever.check_credentials({"api_key": KEY})
    assert missing.value.missing == ["Find all users (users:read:admin)"]


def test_an_account_too_large_to_name_is_refused(
    mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lever_module, "USER_PAGES_MAX", 2)
    mock.get(f"{API}/users", json={"data": [user(ANCHOR, 1)], "hasNext": True, "next": "again"})
    with pytest.raises(Permanent) as refused:
        lever.check_credentials({"api_key": KEY})
    assert refused.value.code == "account_unidentified" and len(mock.calls) == 2


@pytest.mark.parametrize("body", [{"data": []}, {"data": [{"id": "x"}]}, ["not", "an", "object"], {}])
def test_a_users_answer_naming_no_user_is_refused(body: Any, mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/users", json=body)
    with pytest.raises(Permanent) as refused:
        lever.check_credentials({"api_key": KEY})
    assert refused.value.code == "invalid_response"


def test_the_anchor_is_the_oldest_user_with_an_id_and_a_time() -> None:
    users: list[dict[str, Any]] = [
        {"id": "z", "createdAt": 5},
        {"id": "a", "createdAt": 5},
        {"id": "", "createdAt": 1},
        {"id": "b", "createdAt": True},
        {"id": 7, "createdAt": 2},
        {"id": "c"},
    ]
    assert account_anchor(users) == {"id": "a", "createdAt": 5}
    assert account_anchor([]) is None


def test_read_pages_stops_at_the_end_or_the_cap() -> None:
    pages = {
        None: {"data": [{"id": 1}], "hasNext": True, "next": "2"},
        "2": {"data": [{"id": 2}], "hasNext": False},
    }
    assert read_pages(lambda offset: pages[offset], 5) == ([{"id": 1}, {"id": 2}], True)
    assert read_pages(lambda offset: pages[offset], 1) == ([{"id": 1}], False)
    assert read_pages(lambda offset: {"data": "nope", "hasNext": True}, 3) == ([], True)


def test_oauth_is_not_how_lever_connects() -> None:
    calls: list[Callable[[], Any]] = [
        lambda: lever.authorize_url(state="s", redirect_uri="https://x"),
        lambda: lever.exchange_code(code="c", redirect_uri="https://x"),
        lambda: lever.identify(TokenSet("k")),
    ]
    for call in calls:
        with pytest.raises(Permanent) as refused:
            call()
        assert refused.value.code == "credentials_only"
    with pytest.raises(AuthRevoked) as no_refresh:
        lever.refresh("")
    assert no_refresh.value.code == "credentials_invalid"
    with pytest.raises(Permanent) as no_revoke:
        lever.revoke(KEY)
    assert no_revoke.value.code == "revoke_not_supported" and KEY not in str(no_revoke.value)


# --- health and lookups ----------------------------------------------------------------------


def test_health_is_one_read_of_one_user(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/users", json={"data": [user(ANCHOR, 1)], "hasNext": True, "next": "x"})
    result = lever.check_health(account())
    assert query(mock.calls[0]) == {"limit": ["1"]}
    assert mock.calls[0].request.headers["Authorization"] == f"Basic {BASIC}"
    assert result.details == {"api_host": "api.lever.co", "users_readable": True}
    assert len(mock.calls) == 1


def test_find_contact_asks_by_email_and_takes_the_latest_open_opportunity(
    mock: responses.RequestsMock,
) -> None:
    mock.get(
        f"{API}/opportunities",
        json={
            "data": [
                opportunity("old-open", 100),
                opportunity(OPP, 300),
                opportunity("archived-newest", 900, {"archivedAt": 900, "reason": "rejected"}),
            ],
            "hasNext": False,
        },
    )
    assert lever.find_contact(account(), "  maya@acme.example ") == OPP
    assert query(mock.calls[0]) == {"email": ["maya@acme.example"], "limit": ["100"]}


def test_find_contact_without_candidates_is_none(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/opportunities", json={"data": [], "hasNext": False})
    assert lever.find_contact(account(), "nobody@acme.example") is None
    assert lever.find_open_deal(account(), OPP) is None


def test_a_candidate_with_only_archived_opportunities_gets_the_latest_one() -> None:
    hired = opportunity("hired", 500, {"archivedAt": 500, "reason": "hired"})
    rejected = opportunity("rejected", 200, None, archivedAt=200)
    assert pick_opportunity([rejected, hired]) == "hired"
    # no updatedAt: the last interaction, else the creation time; equal times: the greater id
    assert pick_opportunity([{"id": "a", "createdAt": 5}, {"id": "b", "lastInteractionAt": 5}]) == "b"
    assert pick_opportunity([{"id": ""}, {"name": "no id"}]) is None


# --- notes -----------------------------------------------------------------------------------


def test_a_note_is_posted_on_the_opportunity_with_the_marker(mock: responses.RequestsMock) -> None:
    mock.post(f"{API}/opportunities/{OPP}/notes", status=201, json={"data": {"noteId": NOTE}})
    item = activity(OPP)
    assert lever.create_note(account(), item) == NOTE
    sent = json.loads(mock.calls[0].request.body or b"")
    assert sent == lever.write_payload("create_note", item) == {"value": item.text, "notifyFollowers": False}
    assert MARKER in sent["value"]
    assert query(mock.calls[0]) == {}  # no perform_as: the note is the key's
    assert lever.write_payload("create_meeting", item) == sent


def test_a_long_text_is_cut_so_the_marker_stays() -> None:
    body = lever.write_payload("create_note", activity(OPP, text="x" * 20000))
    assert len(body["value"]) == 10000 and body["value"].endswith(f" [{MARKER}]")


def test_a_meeting_is_a_note(mock: responses.RequestsMock) -> None:
    mock.post(f"{API}/opportunities/{OPP}/notes", json={"data": {"id": NOTE}})
    assert lever.write(account(), "create_meeting", activity(OPP)) == NOTE


@pytest.mark.parametrize("body", [{"data": {}}, {"data": {"noteId": 5}}, {"data": "x"}, None])
def test_a_create_answer_without_a_note_id_is_refused(body: Any) -> None:
    with pytest.raises(Permanent) as refused:
        created_note_id(body)
    assert refused.value.code == "invalid_create_response"


@pytest.mark.parametrize("contact", ["../users", "a/b", "", "x" * 65, "<the Lever contact with email m@x>"])
def test_a_bad_opportunity_id_is_refused_before_any_call(contact: str, mock: responses.RequestsMock) -> None:
    with pytest.raises(Permanent) as refused:
        lever.create_note(account(), activity(contact))
    assert refused.value.code == "invalid_id" and len(mock.calls) == 0


def test_tasks_and_the_incremental_pull_are_unsupported() -> None:
    with pytest.raises(Permanent) as task:
        lever.create_task(account(), activity(OPP))
    assert task.value.code == "operation_unsupported"
    with pytest.raises(ValueError, match="no tasks"):
        lever.write_payload("create_task", activity(OPP))
    with pytest.raises(Permanent) as found:
        lever.find_write(account(), "create_task", activity(OPP))
    assert found.value.code == "operation_unsupported"
    with pytest.raises(Permanent) as pull:
        lever.changed_since(account(), "contact", datetime(2026, 1, 1, tzinfo=UTC), None, 100)
    assert pull.value.code == "operation_unsupported"


def test_find_write_pages_the_opportunitys_notes_for_the_marker(mock: responses.RequestsMock) -> None:
    path = f"{API}/opportunities/{OPP}/notes"
    mock.get(
        path,
        json={"data": [{"id": "n1", "text": "other", "fields": None}], "hasNext": True, "next": "p2"},
        match=[responses.matchers.query_param_matcher({"limit": "100"})],
    )
    mock.get(
        path,
        json={
            "data": [
                {"id": "n2", "text": "", "fields": [{"type": "note", "value": f"hello [{MARKER}]"}, "junk"]},
            ],
            "hasNext": False,
        },
        match=[responses.matchers.query_param_matcher({"limit": "100", "offset": "p2"})],
    )
    assert lever.find_write(account(), "create_note", activity(OPP)) == "n2"
    assert [row.operation for row in sync_rows()] == ["find_write", "find_write"]


def test_find_write_without_the_marker_is_none(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/opportunities/{OPP}/notes", json={"data": [{"id": 3, "text": f"[{MARKER}]"}]})
    assert lever.find_write(account(), "create_meeting", activity(OPP)) is None


def test_note_text_joins_the_text_and_field_values() -> None:
    assert note_text({"text": "a", "fields": [{"value": 3}, {"value": None}]}) == "a 3 "
    assert note_text({}) == ""


# --- errors and limits -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (401, lever_error("UnauthorizedError", "Invalid API key"), AuthRevoked, "credentials_invalid"),
        (404, lever_error("NotFoundError", "Opportunity not found"), Permanent, "not_found"),
        (400, lever_error("BadRequestError", "value is required"), Permanent, "invalid_request"),
        (422, {}, Permanent, "invalid_request"),
        (409, "not json", Permanent, "http_409"),
        (500, lever_error("InternalServerError", "boom"), Transient, "http_500"),
        (503, None, Transient, "http_503"),
        (301, None, Permanent, "unexpected_redirect"),
    ],
)
def test_lever_answers_map_to_the_closed_set(
    status: int, body: Any, kind: type[ProviderError], code: str, mock: responses.RequestsMock
) -> None:
    if isinstance(body, dict):
        mock.post(f"{API}/opportunities/{OPP}/notes", status=status, json=body)
    else:
        mock.post(f"{API}/opportunities/{OPP}/notes", status=status, body=body or "")
    with pytest.raises(kind) as caught:
        lever.create_note(account(), activity(OPP))
    assert (caught.value.code, caught.value.http_status) == (code, status)
    if isinstance(caught.value, Permanent) and status == 404:
        assert caught.value.details == {"code": "NotFoundError"}


def test_a_missing_note_permission_names_it(mock: responses.RequestsMock) -> None:
    mock.post(f"{API}/opportunities/{OPP}/notes", status=403, json=lever_error("ForbiddenError", "nope"))
    mock.get(f"{API}/opportunities/{OPP}/notes", status=403, json=lever_error("ForbiddenError", "nope"))
    mock.get(f"{API}/opportunities", status=403, json={})
    with pytest.raises(MissingScope) as write:
        lever.create_note(account(), activity(OPP))
    assert write.value.missing == ["Create an opportunity note (notes:write:admin)"]
    with pytest.raises(MissingScope) as read:
        lever.find_write(account(), "create_note", activity(OPP))
    assert read.value.missing == ["Find all opportunity notes (notes:read:admin)"]
    with pytest.raises(MissingScope) as lookup:
        lever.find_contact(account(), "maya@acme.example")
    assert lookup.value.missing == ["Find all opportunities (opportunities:read:admin)"]


def test_an_unexpected_403_names_no_permission() -> None:
    resp = requests.Response()
    resp.status_code = 403
    resp._content = b"{}"
    error = lever.classify_client_error(resp, "something_else")
    assert isinstance(error, MissingScope) and error.missing == ["unknown"]


@pytest.mark.parametrize(("headers", "wait"), [({"Retry-After": "7"}, 7.0), ({}, 1.0)])
def test_a_429_is_rate_limited_and_holds_back_the_account(
    headers: dict[str, str], wait: float, mock: responses.RequestsMock, settings: Any
) -> None:
    settings.CONDUIT_RATE_MAX_WAIT_SECONDS = 0
    mock.get(
        f"{API}/opportunities",
        status=429,
        json=lever_error("TooManyRequestsError", "Rate limit exceeded"),
        headers=headers,
    )
    with pytest.raises(RateLimited) as limited:
        lever.find_contact(account(), "maya@acme.example")
    assert (limited.value.code, limited.value.retry_after) == ("rate_limited", wait)
    assert 0 < get_limiter().headroom(api_bucket(), ANCHOR)["blocked_for_seconds"] <= wait
    with pytest.raises(RateLimited) as held:
        lever.check_health(account())
    assert held.value.code == "local_rate_limit" and len(mock.calls) == 1


def test_calls_are_paced_to_the_configured_rate(mock: responses.RequestsMock, settings: Any) -> None:
    settings.CONDUIT_RATE_MAX_WAIT_SECONDS = 0
    settings.LEVER_REQUESTS_PER_SECOND = 5  # budget 92%: 4 calls a second
    assert api_bucket().limit == 4
    mock.get(f"{API}/users", json={"data": []})
    for _ in range(4):
        lever.check_health(account())
    with pytest.raises(RateLimited) as paced:
        lever.check_health(account())
    assert paced.value.code == "local_rate_limit" and len(mock.calls) == 4


def test_the_default_budget_is_ten_a_second() -> None:
    assert (api_bucket().limit, api_bucket().window) == (9, 1)


def test_rate_limit_headers_are_read_when_sent(mock: responses.RequestsMock) -> None:
    mock.get(
        f"{API}/users", json={"data": []}, headers={"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "8"}
    )
    lever.check_health(account())
    assert lever.rate_limit_quota({"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "8"}) == (10, 8)


def test_a_timeout_is_transient(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/users", body=requests.ReadTimeout("slow"))
    with pytest.raises(Transient) as caught:
        lever.check_health(account())
    assert caught.value.code == "timeout"


# --- secrets ---------------------------------------------------------------------------------


def test_no_key_reaches_logs_sync_logs_or_exceptions(
    mock: responses.RequestsMock, alice: Any, capture_json_logs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Every failing path, with Lever echoing the key and the Authorization header it was sent."""
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    echo = f"refused {KEY} / Basic {BASIC}"
    mock.get(f"{API}/users", status=401, json=lever_error("UnauthorizedError", echo))
    mock.get(f"{API}/opportunities", status=403, json=lever_error("ForbiddenError", echo))
    mock.post(f"{API}/opportunities/{OPP}/notes", status=400, json=lever_error("BadRequestError", echo))
    mock.get(f"{API}/opportunities/{OPP}/notes", status=500, json=lever_error("InternalServerError", echo))
    ctx = {"workspace_id": alice.workspace.pk}
    errors: list[str] = []
    for call in (
        lambda: lever.check_credentials({"api_key": KEY}, context=CallContext(**ctx)),
        lambda: lever.check_health(account(**ctx)),
        lambda: lever.find_contact(account(**ctx), "maya@acme.example"),
        lambda: lever.create_note(account(**ctx), activity(OPP)),
        lambda: lever.find_write(account(**ctx), "create_note", activity(OPP)),
    ):
        try:
            call()
        except Exception as exc:
            errors.append(f"{exc!s} {exc!r} {getattr(exc, 'message', '')}")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    summaries = [row.summary for row in sync_rows()]
    assert len(errors) == 5 and len(summaries) == 5
    haystack = "\n".join(
        errors + summaries + [json.dumps(line) for line in capture_json_logs()] + [caplog.text]
    )
    assert "[redacted]" in haystack
    for value in (KEY, BASIC):
        assert value not in haystack
    assert KEY not in repr(account())


def test_a_grant_shows_only_the_last_four(mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/users", json={"data": [user(ANCHOR, 1)]})
    grant = lever.check_credentials({"api_key": KEY})
    assert KEY not in repr(grant) and KEY not in repr(grant.account) and grant.last4 == KEY[-4:]


def test_notes_past_the_pages_read_are_a_lookup_limit_not_a_resend(
    mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lever_module, "NOTE_PAGES_MAX", 2)
    page = {"data": [{"id": "n1", "text": "other"}], "hasNext": True, "next": "more"}
    mock.get(f"{API}/opportunities/{OPP}/notes", json=page)
    with pytest.raises(Permanent) as refused:
        lever.find_write(account(), "create_note", activity(OPP))
    assert refused.value.code == "lookup_limit" and len(mock.calls) == 2
