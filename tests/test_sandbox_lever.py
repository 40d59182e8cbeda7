"""The Lever sandbox over real sockets: first as a raw client sees it (Basic auth, Lever's list and
error shapes, note validation, key permissions, the token bucket, faults, control endpoints and
the overview page), then the Lever provider module against it: connect, find the candidate,
write a note and find it again, rotate the key, and every fault through the closed error set."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from integrations.providers.base import Account
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    Permanent,
    ProviderError,
    RateLimited,
    Transient,
)
from integrations.providers.lever import LeverProvider
from integrations.providers.synclog import CallContext
from integrations.sandbox import server as sandbox_server
from integrations.sandbox.common import SandboxServer
from integrations.sandbox.lever import LeverApp, basic_user
from integrations.sandbox.lever_data import (
    ANCHOR_USER,
    JONAS,
    JONAS_HIRED,
    KEY_OWNER,
    LEE,
    LEE_CONFIDENTIAL,
    LEE_OPEN,
    MAYA,
    MAYA_ARCHIVED,
    MAYA_OPEN,
    SEEDED_API_KEY,
    LeverState,
    TokenBucket,
    page_start,
)
from integrations.sandbox.server import RunningSandbox
from tests.provider_helpers import activity

TIMEOUT = 5
lever = LeverProvider()


def start_lever() -> RunningSandbox:
    app = LeverApp()
    server = SandboxServer(("127.0.0.1", 0), app)
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    app.state.base_url = base_url
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return RunningSandbox("lever", base_url, app.state, server, thread)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningSandbox]:
    running = start_lever()
    yield running
    running.stop()


@pytest.fixture
def base(server: RunningSandbox, settings: Any) -> str:
    requests.post(f"{server.base_url}/_sandbox/reset", timeout=TIMEOUT)
    settings.LEVER_API_BASE_URL = f"{server.base_url}/v1"
    return server.base_url


def get(base: str, path: str, key: str | None = SEEDED_API_KEY, **params: Any) -> requests.Response:
    return requests.get(f"{base}/v1/{path}", params=params, auth=(key, "") if key else None, timeout=TIMEOUT)


def post_note(base: str, opp: str, body: Any, key: str = SEEDED_API_KEY, **params: Any) -> requests.Response:
    return requests.post(
        f"{base}/v1/opportunities/{opp}/notes", json=body, params=params, auth=(key, ""), timeout=TIMEOUT
    )


def control(base: str, path: str, body: Any = None) -> requests.Response:
    return requests.post(f"{base}/_sandbox/{path}", json=body, timeout=TIMEOUT)


def state(base: str) -> dict[str, Any]:
    return dict(requests.get(f"{base}/_sandbox/state", timeout=TIMEOUT).json())


def account(key: str = SEEDED_API_KEY) -> Account:
    return Account("lever", key, ANCHOR_USER, context=CallContext())


# --- the API as a raw client sees it ----------------------------------------------------------


def test_the_key_goes_as_the_basic_user_name(base: str) -> None:
    assert get(base, "users").status_code == 200
    refused = get(base, "users", key=None)
    assert refused.status_code == 401
    assert refused.json() == {"code": "UnauthorizedError", "message": "Invalid API key"}
    assert get(base, "users", key="not-a-key").status_code == 401
    garbage = requests.get(f"{base}/v1/users", headers={"Authorization": "Basic %%%"}, timeout=TIMEOUT)
    assert garbage.status_code == 401


def test_users_page_with_offset_tokens_and_hide_deactivated_ones(base: str) -> None:
    active = get(base, "users").json()
    assert ANCHOR_USER not in [u["id"] for u in active["data"]] and active["hasNext"] is False
    first = get(base, "users", limit=2, includeDeactivated="true").json()
    assert len(first["data"]) == 2 and first["hasNext"] is True
    rest = get(base, "users", limit=2, includeDeactivated="true", offset=first["next"]).json()
    assert [u["id"] for u in rest["data"]] == [ANCHOR_USER] and rest["hasNext"] is False
    assert set(rest["data"][0]) >= {"id", "name", "email", "accessRole", "createdAt", "deactivatedAt"}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "x"},
        {"offset": "bogus"},
        {"offset": "b3Bwb3J0dW5pdGllczox"},
    ],
)
def test_bad_paging_is_a_bad_request(base: str, params: dict[str, str]) -> None:
    answer = get(base, "users", **params)
    assert answer.status_code == 400 and answer.json()["code"] == "BadRequestError"


def test_opportunities_are_found_by_email_without_confidential_ones(base: str) -> None:
    maya = get(base, "opportunities", email=MAYA.upper()).json()["data"]
    assert {o["id"] for o in maya} == {MAYA_OPEN, MAYA_ARCHIVED, "0a1b2c3d-0000-4000-8000-000000000102"}
    assert [o["id"] for o in get(base, "opportunities", email=LEE).json()["data"]] == [LEE_OPEN]
    everything = get(base, "opportunities", email=LEE, confidentiality="all").json()["data"]
    assert {o["id"] for o in everything} == {LEE_OPEN, LEE_CONFIDENTIAL}
    open_only = get(base, "opportunities", email=MAYA, archived="false").json()["data"]
    assert MAYA_ARCHIVED not in [o["id"] for o in open_only]
    assert [o["id"] for o in get(base, "opportunities", email=MAYA, archived="true").json()["data"]] == [
        MAYA_ARCHIVED
    ]
    assert len(get(base, "opportunities").json()["data"]) == 5
    assert get(base, "opportunities", email="nobody@example.com").json() == {"data": [], "hasNext": False}


def test_notes_are_created_and_listed_newest_first(base: str) -> None:
    created = post_note(base, MAYA_OPEN, {"value": "first", "score": 3, "secret": True})
    assert created.status_code == 201
    first = created.json()["data"]["noteId"]
    second = post_note(base, MAYA_OPEN, {"value": "second"}, perform_as=KEY_OWNER).json()["data"]["noteId"]
    notes = get(base, f"opportunities/{MAYA_OPEN}/notes").json()["data"]
    assert [n["id"] for n in notes] == [second, first]
    assert notes[1]["fields"] == [{"type": "score", "text": "Rating", "value": 3}] and notes[1]["secret"]
    assert notes[0]["user"] == KEY_OWNER and notes[0]["deletedAt"] is None
    paged = get(base, f"opportunities/{MAYA_OPEN}/notes", limit=1).json()
    assert paged["hasNext"] and get(base, f"opportunities/{MAYA_OPEN}/notes", offset=paged["next"]).json()[
        "data"
    ] == [notes[1]]


@pytest.mark.parametrize(
    ("body", "params", "message"),
    [
        ({}, {}, "value is required"),
        ({"value": "  "}, {}, "value is required"),
        ("text", {}, "JSON object"),
        ({"value": "x", "title": "y"}, {}, "Unrecognized fields: title"),
        ({"value": "x", "secret": "yes"}, {}, "secret must be a boolean"),
        ({"value": "x", "score": 5}, {}, "score must be"),
        ({"value": "x", "score": True}, {}, "score must be"),
        ({"value": "x", "createdAt": 99999999999999}, {}, "not in the future"),
        ({"value": "x", "createdAt": "today"}, {}, "not in the future"),
        ({"value": "x"}, {"perform_as": ANCHOR_USER}, "perform_as"),
    ],
)
def test_refused_notes_answer_lever_errors(
    base: str, body: Any, params: dict[str, str], message: str
) -> None:
    answer = post_note(base, MAYA_OPEN, body, **params)
    assert answer.status_code == 400 and message in answer.json()["message"]
    assert answer.json()["code"] == "BadRequestError"


def test_a_body_that_is_not_json_and_an_unknown_opportunity(base: str) -> None:
    broken = requests.post(
        f"{base}/v1/opportunities/{MAYA_OPEN}/notes", data=b"{", auth=(SEEDED_API_KEY, ""), timeout=TIMEOUT
    )
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["message"]
    missing = post_note(base, "0a1b2c3d-0000-4000-8000-00000000dead", {"value": "x"})
    assert missing.status_code == 404 and missing.json()["code"] == "NotFoundError"
    assert get(base, "opportunities/nope/notes").status_code == 404


def test_unknown_routes_are_not_found(base: str) -> None:
    assert get(base, "postings").status_code == 404
    assert requests.delete(f"{base}/v1/users", auth=(SEEDED_API_KEY, ""), timeout=TIMEOUT).status_code == 404
    assert requests.get(f"{base}/elsewhere", timeout=TIMEOUT).json()["code"] == "NotFoundError"


def test_a_key_without_a_permission_is_forbidden(base: str) -> None:
    minted = control(base, "tokens", {"scopes": ["users:read", "opportunities:read"]}).json()
    assert minted["permissions"] == ["opportunities:read", "users:read"]
    assert get(base, "users", key=minted["api_key"]).status_code == 200
    refused = post_note(base, MAYA_OPEN, {"value": "x"}, key=minted["api_key"])
    assert refused.status_code == 403
    assert refused.json()["message"] == "This API key lacks the permission 'Create an opportunity note'"
    assert control(base, "tokens", {"scopes": ["notes:delete"]}).status_code == 400
    assert len(control(base, "tokens", {}).json()["permissions"]) == 4


def test_each_key_has_a_token_bucket(base: str, server: RunningSandbox) -> None:
    control(base, "config", {"requests_per_second": 0, "burst": 2})
    assert [get(base, "users").status_code for _ in range(3)] == [200, 200, 429]
    limited = get(base, "users")
    assert limited.json() == {"code": "TooManyRequestsError", "message": "Rate limit exceeded"}
    assert "Retry-After" not in limited.headers
    other = control(base, "tokens").json()["api_key"]
    assert get(base, "users", key=other).status_code == 200
    assert state(base)["requests"]["rate_limited"] == 2


def test_the_bucket_refills_at_the_rate() -> None:
    bucket = TokenBucket(tokens=0.0, updated=100.0)
    assert not bucket.take(100.05, rate=10, capacity=20)
    assert bucket.take(100.2, rate=10, capacity=20)
    assert bucket.take(1000.0, rate=10, capacity=20) and bucket.tokens == 19.0


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("rate_limit", 429, "TooManyRequestsError"),
        ("invalid_session", 401, "UnauthorizedError"),
        ("missing_scope", 403, "ForbiddenError"),
        ("validation", 400, "BadRequestError"),
        ("server_error", 500, "InternalServerError"),
        ("unavailable", 503, "ServiceUnavailableError"),
        ("hang", 504, "GatewayTimeoutError"),
    ],
)
def test_injected_faults_answer_in_lever_shape(base: str, kind: str, status: int, code: str) -> None:
    control(base, "faults", {"kind": kind, "retry_after": 3, "hang_seconds": 0})
    answer = get(base, "users")
    assert (answer.status_code, answer.json()["code"]) == (status, code)
    assert answer.headers.get("Retry-After") == ("3" if kind == "rate_limit" else None)
    assert get(base, "users").status_code == 200


def test_rotation_revokes_the_old_key(base: str) -> None:
    rotated = control(base, "credentials/rotate", {}).json()
    assert rotated["revoked_last4"] == SEEDED_API_KEY[-4:] and rotated["api_key"] != SEEDED_API_KEY
    assert get(base, "users").status_code == 401
    assert get(base, "users", key=rotated["api_key"]).status_code == 200
    again = control(base, "credentials/rotate").json()  # no body: the current key
    assert get(base, "users", key=rotated["api_key"]).status_code == 401
    assert get(base, "users", key=again["api_key"]).status_code == 200
    assert control(base, "credentials/rotate", {"api_key": SEEDED_API_KEY}).status_code == 400
    assert control(base, "credentials/rotate", {"other": 1}).status_code == 400
    broken = requests.post(f"{base}/_sandbox/credentials/rotate", data=b"{", timeout=TIMEOUT)
    assert broken.status_code == 400
    keys = state(base)["api_keys"]
    assert [k["active"] for k in keys] == [False, False, True]
    assert all(set(k) == {"last4", "active", "permissions"} for k in keys)


def test_records_add_and_change_candidates(base: str) -> None:
    added = control(
        base, "records", {"object": "contact", "fields": {"name": "Kim Ode", "email": "kim@x.example"}}
    )
    assert added.status_code == 200
    new_id = added.json()["id"]
    assert [o["id"] for o in get(base, "opportunities", email="kim@x.example").json()["data"]] == [new_id]
    control(base, "records", {"object": "contact", "id": new_id, "fields": {"archived": "hired"}})
    control(
        base, "records", {"object": "contact", "id": new_id, "fields": {"confidential": True, "email": None}}
    )
    record = next(o for o in state(base)["opportunities"] if o["id"] == new_id)
    assert record["archived"]["reason"] == "hired" and record["confidentiality"] == "confidential"
    assert record["emails"] == []
    control(base, "records", {"object": "contact", "id": new_id, "fields": {"archived": None, "name": None}})
    assert post_note(base, new_id, {"value": "hello"}).status_code == 201
    for bad in (
        {"object": "deal", "fields": {}},
        {"object": "contact", "fields": {"stage": "offer"}},
        {"object": "contact", "fields": {"confidential": True}, "extra": 1},
    ):
        assert control(base, "records", bad).status_code == 400


def test_overview_page_lists_candidates_notes_users_and_keys(base: str) -> None:
    post_note(base, MAYA_OPEN, {"value": "Email from Maya, <b>inbound</b>"})
    control(base, "faults", {"kind": "server_error", "count": 2})
    page = requests.get(f"{base}/", timeout=TIMEOUT).text
    for text in ("Lever sandbox", MAYA_OPEN, "Email from Maya, &lt;b&gt;inbound&lt;/b&gt;", "Ada Founder"):
        assert text in page
    assert f"…{SEEDED_API_KEY[-4:]}" in page and "server_error" in page and "rejected" in page


def test_basic_user_and_page_start_edges() -> None:
    def request(header: str) -> Any:
        return type("R", (), {"headers": {"authorization": header}})()

    assert basic_user(request("Bearer abc")) is None
    assert basic_user(request("Basic ")) is None
    assert basic_user(request("Basic OnNlY3JldA==")) is None  # ":secret": no user name
    assert basic_user(request("Basic //79")) is None  # not UTF-8
    assert page_start("users", None) == 0
    with pytest.raises(Exception, match="Invalid offset"):
        page_start("users", "%%%")


def test_state_clock_is_injectable() -> None:
    fixed = LeverState(clock=lambda: 1_800_000_000.0)
    assert fixed.now_ms() == 1_800_000_000_000


def test_the_sandbox_serves_from_the_shared_starter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sandbox_server.APPS, "lever", LeverApp)
    running = sandbox_server.start_sandbox("lever", port=0)
    try:
        assert requests.get(f"{running.base_url}/v1/users", auth=(SEEDED_API_KEY, ""), timeout=TIMEOUT).ok
    finally:
        running.stop()


# --- the provider module against the sandbox --------------------------------------------------


@pytest.mark.django_db
def test_connect_find_write_and_find_again(base: str) -> None:
    grant = lever.check_credentials({"api_key": SEEDED_API_KEY})
    assert grant.account.key == ANCHOR_USER and grant.last4 == SEEDED_API_KEY[-4:]
    assert grant.account.details["users"] == 3
    connected = account()
    assert lever.check_health(connected).details["users_readable"] is True
    assert lever.find_contact(connected, MAYA) == MAYA_OPEN
    assert lever.find_contact(connected, JONAS) == JONAS_HIRED
    assert lever.find_contact(connected, LEE.upper()) == LEE_OPEN
    assert lever.find_contact(connected, "nobody@example.com") is None
    item = activity(MAYA_OPEN)
    assert lever.find_write(connected, "create_note", item) is None
    note_id = lever.write(connected, "create_note", item)
    assert lever.find_write(connected, "create_note", item) == note_id
    stored = state(base)["notes"]
    assert [(n["id"], n["opportunity"], n["text"]) for n in stored] == [(note_id, MAYA_OPEN, item.text)]


@pytest.mark.django_db
def test_a_rotated_key_is_refused_until_the_new_one_is_saved(base: str) -> None:
    new_key = control(base, "credentials/rotate").json()["api_key"]
    with pytest.raises(AuthRevoked) as refused:
        lever.check_health(account())
    assert refused.value.code == "credentials_invalid" and SEEDED_API_KEY not in str(refused.value)
    grant = lever.check_credentials({"api_key": new_key})
    assert grant.account.key == ANCHOR_USER  # the same account, found again by its oldest user
    assert lever.check_health(account(new_key)).details["users_readable"]


@pytest.mark.django_db
def test_missing_permissions_are_named(base: str) -> None:
    read_only = control(base, "tokens", {"scopes": ["users:read", "opportunities:read"]}).json()["api_key"]
    with pytest.raises(MissingScope) as write:
        lever.create_note(account(read_only), activity(MAYA_OPEN))
    assert write.value.missing == ["Create an opportunity note (notes:write:admin)"]
    no_users = control(base, "tokens", {"scopes": ["notes:write"]}).json()["api_key"]
    with pytest.raises(MissingScope) as check:
        lever.check_credentials({"api_key": no_users})
    assert check.value.missing == ["Find all users (users:read:admin)"]


@pytest.mark.django_db
def test_a_note_on_an_unknown_opportunity_is_permanent(base: str) -> None:
    with pytest.raises(Permanent) as missing:
        lever.create_note(account(), activity("0a1b2c3d-0000-4000-8000-00000000dead"))
    assert missing.value.code == "not_found"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "error", "code"),
    [
        ("rate_limit", RateLimited, "rate_limited"),
        ("invalid_session", AuthRevoked, "credentials_invalid"),
        ("missing_scope", MissingScope, "missing_scope"),
        ("validation", Permanent, "invalid_request"),
        ("server_error", Transient, "http_500"),
        ("unavailable", Transient, "http_503"),
    ],
)
def test_faults_reach_the_provider_as_the_closed_set(
    base: str, kind: str, error: type[ProviderError], code: str
) -> None:
    control(base, "faults", {"kind": kind, "retry_after": 3})
    with pytest.raises(error) as caught:
        lever.find_contact(account(), MAYA)
    assert caught.value.code == code
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 3


@pytest.mark.django_db
def test_the_sandboxs_own_429_waits_the_default_second(base: str, settings: Any) -> None:
    settings.CONDUIT_RATE_MAX_WAIT_SECONDS = 0
    control(base, "config", {"requests_per_second": 0, "burst": 1})
    lever.check_health(account())
    with pytest.raises(RateLimited) as limited:
        lever.check_health(account())
    assert limited.value.retry_after == 1.0


@pytest.mark.django_db
def test_a_hang_is_a_timeout_and_a_lost_reply_is_found_by_its_marker(base: str, settings: Any) -> None:
    settings.CONDUIT_PROVIDER_TIMEOUT = (2, 0.5)
    control(base, "faults", {"kind": "hang", "hang_seconds": 2})
    with pytest.raises(Transient) as hung:
        lever.check_health(account())
    assert hung.value.code == "timeout"
    control(base, "faults", {"kind": "commit_then_hang", "hang_seconds": 2})
    item = activity(MAYA_OPEN)
    with pytest.raises(Transient):
        lever.create_note(account(), item)
    found = lever.find_write(account(), "create_note", item)
    assert found is not None and [n["id"] for n in state(base)["notes"]] == [found]
