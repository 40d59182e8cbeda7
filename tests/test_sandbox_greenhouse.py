"""The Greenhouse sandbox over real sockets: the provider module against it (connect, find,
write, find again, faults, the rate limit, rotating the credential) and the sandbox itself
driven the way a raw client would (token and introspection shapes, cursors, validation, control
endpoints, the overview page)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.utils import timezone

from integrations.providers.base import Account, Activity, CredentialGrant
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    Permanent,
    ProviderError,
    RateLimited,
    TokenExpired,
    Transient,
)
from integrations.providers.greenhouse import GreenhouseProvider
from integrations.sandbox import server as sandbox_server
from integrations.sandbox.greenhouse import GreenhouseApp
from integrations.sandbox.greenhouse_data import (
    BODY_MAX,
    ORG_CLAIMS,
    ORG_ID,
    SEEDED_CLIENT_ID,
    SEEDED_CLIENT_SECRET,
    SERVICE_ACCOUNTS_FROM,
    GreenhouseState,
    basic_pair,
    encode_cursor,
)
from integrations.sandbox.server import RunningSandbox, start_sandbox
from tests.provider_helpers import MARKER, activity

pytestmark = pytest.mark.django_db
TIMEOUT = 5
MAYA, JONAS = "maya.lopez@acme-logistics.example", "jonas@brightfield-energy.example"
MAYA_ID, JONAS_ID = "5120001", "5120002"
RILEY, DANA = "4080001", "4080003"
SEEDED = {"client_id": SEEDED_CLIENT_ID, "client_secret": SEEDED_CLIENT_SECRET, "user_id": ""}


@pytest.fixture(scope="module")
def running() -> Iterator[RunningSandbox]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sandbox_server.APPS, "greenhouse", GreenhouseApp)
        sandbox = start_sandbox("greenhouse", port=0)
    yield sandbox
    sandbox.stop()


@pytest.fixture
def base(running: RunningSandbox, settings: Any) -> str:
    requests.post(f"{running.base_url}/_sandbox/reset", timeout=TIMEOUT)
    settings.GREENHOUSE_TOKEN_URL = f"{running.base_url}/token"
    settings.GREENHOUSE_API_BASE_URL = running.base_url
    return running.base_url


@pytest.fixture
def provider() -> GreenhouseProvider:
    return GreenhouseProvider()


def connect(provider: GreenhouseProvider, **fields: str) -> tuple[CredentialGrant, Account]:
    grant = provider.check_credentials({**SEEDED, **fields})
    account = Account(
        "greenhouse", grant.tokens.access_token, grant.account.key, details=dict(grant.account.details)
    )
    return grant, account


def state(base: str) -> dict[str, Any]:
    return dict(requests.get(f"{base}/_sandbox/state", timeout=TIMEOUT).json())


def inject(base: str, kind: str, **extra: Any) -> None:
    answer = requests.post(f"{base}/_sandbox/faults", json={"kind": kind, **extra}, timeout=TIMEOUT)
    assert answer.status_code == 201, answer.text


def configure(base: str, **values: int) -> None:
    assert requests.post(f"{base}/_sandbox/config", json=values, timeout=TIMEOUT).status_code == 200


def basic(client_id: str = SEEDED_CLIENT_ID, secret: str = SEEDED_CLIENT_SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def token(base: str, headers: dict[str, str] | None = None, **form: str) -> requests.Response:
    data = {"grant_type": "client_credentials", **form}
    return requests.post(
        f"{base}/token", data=data, headers=basic() if headers is None else headers, timeout=TIMEOUT
    )


def mint(base: str, **body: Any) -> str:
    return str(requests.post(f"{base}/_sandbox/tokens", json=body, timeout=TIMEOUT).json()["access_token"])


def api(base: str, method: str, path: str, access: str | None, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {access}"} if access else {}
    return requests.request(method, f"{base}/v3/{path}", headers=headers, timeout=TIMEOUT, **kw)


def note_on(candidate: str, **extra: Any) -> Activity:
    return activity(candidate, **extra)


# --- the provider against the sandbox ----------------------------------------------------------------


def test_the_seeded_credential_connects_as_its_service_account(
    base: str, provider: GreenhouseProvider
) -> None:
    grant, account = connect(provider)
    assert grant.account.key == str(ORG_ID)
    assert grant.account.details == {
        "organization_id": str(ORG_ID),
        "organization_name": "Sandbox Talent Co",
        "user_id": str(SERVICE_ACCOUNTS_FROM),
        "acting_as": "service_account",
    }
    assert set(provider.required_scopes) <= set(grant.tokens.scopes)
    assert grant.last4 == SEEDED_CLIENT_SECRET[-4:]
    health = provider.check_health(account)
    assert health.details == {"organization_id": str(ORG_ID), "acting_as": "service_account"}


def test_a_named_user_acts_and_writes_the_note(base: str, provider: GreenhouseProvider) -> None:
    grant, account = connect(provider, user_id=RILEY)
    assert grant.account.details["user_id"] == RILEY and grant.account.details["acting_as"] == "user"
    contact = provider.find_contact(account, MAYA)
    assert contact == MAYA_ID
    written = note_on(contact)
    note_id = provider.write(account, "create_note", written)
    (note,) = state(base)["notes"]
    assert str(note["id"]) == note_id
    assert (note["candidate_id"], note["user_id"], note["visibility"], note["type"]) == (
        int(MAYA_ID),
        int(RILEY),
        "admin_only",
        "NOTE",
    )
    assert note["body"] == written.text and note["body"].endswith(f"[{MARKER}]")
    assert provider.find_write(account, "create_note", written) == note_id
    assert provider.find_write(account, "create_note", note_on(JONAS_ID)) is None


def test_a_note_without_a_user_is_the_service_accounts(base: str, provider: GreenhouseProvider) -> None:
    _grant, account = connect(provider)
    account = Account("greenhouse", account.access_token, account.account_key, details={})
    provider.create_meeting(account, note_on(JONAS_ID))
    assert state(base)["notes"][0]["user_id"] == SERVICE_ACCOUNTS_FROM


def test_candidates_are_found_by_any_address_ignoring_case(base: str, provider: GreenhouseProvider) -> None:
    _grant, account = connect(provider)
    assert provider.find_contact(account, "Maya.Lopez@ACME-logistics.example") == MAYA_ID
    assert provider.find_contact(account, "jonas.weber@mail.example") == JONAS_ID
    assert provider.find_contact(account, "nobody@nowhere.example") is None


def test_find_write_follows_the_pages_of_a_busy_candidate(
    running: RunningSandbox, base: str, provider: GreenhouseProvider
) -> None:
    _grant, account = connect(provider)
    sandbox = running.state
    assert isinstance(sandbox, GreenhouseState)
    with sandbox.lock:
        for n in range(600):
            sandbox.notes[n + 1] = {"id": n + 1, "candidate_id": int(JONAS_ID), "body": f"note {n}"}
    written = note_on(JONAS_ID)
    note_id = provider.create_note(account, written)
    assert provider.find_write(account, "create_note", written) == note_id  # on the second page


@pytest.mark.parametrize(
    ("user_id", "secret"), [(DANA, SEEDED_CLIENT_SECRET), ("999", SEEDED_CLIENT_SECRET), ("", "wrong-secret")]
)
def test_refused_credentials_are_auth_revoked(
    base: str, provider: GreenhouseProvider, user_id: str, secret: str
) -> None:
    with pytest.raises(AuthRevoked) as caught:
        provider.check_credentials({**SEEDED, "client_secret": secret, "user_id": user_id})
    assert caught.value.code == "credentials_invalid"
    assert SEEDED_CLIENT_SECRET not in str(caught.value)


def test_a_credential_without_the_note_scopes_names_them(base: str, provider: GreenhouseProvider) -> None:
    made = requests.post(
        f"{base}/_sandbox/credentials", json={"scopes": ["harvest:candidates:list"]}, timeout=TIMEOUT
    ).json()
    with pytest.raises(MissingScope) as caught:
        provider.check_credentials({"client_id": made["client_id"], "client_secret": made["client_secret"]})
    assert caught.value.missing == ["harvest:notes:list", "harvest:notes:create"]


def test_without_introspection_the_account_is_named_after_the_client(
    base: str, provider: GreenhouseProvider
) -> None:
    configure(base, introspection=0)
    grant, account = connect(provider)
    assert grant.account.key.startswith("gh-") and grant.account.details["organization_id"] == ""
    assert provider.find_contact(account, MAYA) == MAYA_ID


def test_rotating_the_credential_refuses_the_old_one_until_the_new_one_is_saved(
    base: str, provider: GreenhouseProvider
) -> None:
    grant, account = connect(provider)
    rotated = requests.post(f"{base}/_sandbox/credentials/rotate", json={}, timeout=TIMEOUT).json()
    assert rotated["client_id"] == SEEDED_CLIENT_ID and rotated["client_secret"] != SEEDED_CLIENT_SECRET
    assert rotated["revoked_tokens"] == 1
    with pytest.raises(TokenExpired):  # health: the old token is gone
        provider.check_health(account)
    with pytest.raises(AuthRevoked) as refused:  # the refresh under the lock: the old secret is refused
        provider.refresh(grant.tokens.refresh_token or "")
    assert refused.value.code == "credentials_invalid"
    assert SEEDED_CLIENT_SECRET not in str(refused.value) and rotated["client_secret"] not in str(
        refused.value
    )
    _fresh, account = connect(provider, client_secret=rotated["client_secret"])  # the admin updates it
    assert provider.check_health(account).details["organization_id"] == str(ORG_ID)


def test_refresh_gives_a_working_token(base: str, provider: GreenhouseProvider) -> None:
    grant, _account = connect(provider, user_id=RILEY)
    configure(base, access_token_ttl=600)
    fresh = provider.refresh(grant.tokens.refresh_token or "")
    assert fresh.access_token != grant.tokens.access_token and fresh.expires_at is not None
    left = (fresh.expires_at - timezone.now()).total_seconds()
    assert 590 <= left <= 600  # read from the answer's expires_at
    assert (
        provider.find_contact(Account("greenhouse", fresh.access_token, grant.account.key), MAYA) == MAYA_ID
    )


@pytest.mark.parametrize(
    ("kind", "error", "code"),
    [
        ("invalid_session", TokenExpired, "token_expired"),
        ("missing_scope", MissingScope, "missing_scope"),
        ("validation", Permanent, "validation_error"),
        ("server_error", Transient, "http_500"),
        ("unavailable", Transient, "http_503"),
        ("rate_limit", RateLimited, "rate_limited"),
    ],
)
def test_faults_map_to_the_closed_set(
    base: str, provider: GreenhouseProvider, kind: str, error: type[ProviderError], code: str
) -> None:
    _grant, account = connect(provider)
    inject(base, kind, retry_after=3)
    with pytest.raises(error) as caught:
        provider.create_note(account, note_on(MAYA_ID))
    assert caught.value.code == code
    if error is MissingScope:
        assert caught.value.missing == ["harvest:notes:create"]  # type: ignore[attr-defined]
    if error is RateLimited:
        assert caught.value.retry_after == 3.0  # type: ignore[attr-defined]


def test_a_refused_grant_fault_refuses_the_token(base: str, provider: GreenhouseProvider) -> None:
    inject(base, "invalid_grant")
    with pytest.raises(AuthRevoked):
        provider.check_credentials(SEEDED)
    assert provider.check_credentials(SEEDED).account.key == str(ORG_ID)  # one refusal only


def test_the_rolling_window_answers_429_with_its_headers(base: str, provider: GreenhouseProvider) -> None:
    _grant, account = connect(provider)
    configure(base, ten_second_limit=2)
    provider.find_contact(account, MAYA)
    provider.find_contact(account, MAYA)
    with pytest.raises(RateLimited) as caught:
        provider.find_contact(account, MAYA)
    assert caught.value.retry_after == 1.0
    assert state(base)["requests"]["rate_limited"] == 1


def test_a_lost_reply_is_found_again_by_its_marker(
    base: str, provider: GreenhouseProvider, settings: Any
) -> None:
    _grant, account = connect(provider)
    settings.CONDUIT_PROVIDER_TIMEOUT = (2, 0.5)
    inject(base, "commit_then_hang", hang_seconds=2)
    written = note_on(MAYA_ID)
    with pytest.raises(Transient) as caught:
        provider.create_note(account, written)
    assert caught.value.code == "timeout"
    assert provider.find_write(account, "create_note", written) == str(state(base)["notes"][0]["id"])


# --- the sandbox itself --------------------------------------------------------------------------------


def test_the_token_endpoint_speaks_the_client_credentials_grant(base: str) -> None:
    issued = token(base)
    assert issued.status_code == 200
    assert set(issued.json()) == {"access_token", "token_type", "expires_at"}
    assert issued.json()["token_type"] == "Bearer" and issued.json()["expires_at"].endswith("Z")
    refused = {
        "no client": token(base, headers={}),
        "wrong secret": token(base, headers=basic(secret="nope")),
        "not basic": token(base, headers={"Authorization": "Bearer x"}),
        "not base64": token(base, headers={"Authorization": "Basic %%%"}),
        "no colon": token(base, headers={"Authorization": "Basic " + base64.b64encode(b"abc").decode()}),
    }
    for why, answer in refused.items():
        assert answer.status_code == 401, why
        assert answer.json() == {
            "error": "invalid_client",
            "error_description": "Client authentication failed",
        }
    assert token(base, grant_type="password").json()["error"] == "unsupported_grant_type"
    for sub in (DANA, "999", "riley"):
        answer = token(base, sub=sub)
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")


def test_introspection_names_the_organization_and_the_subject(base: str) -> None:
    access = token(base, sub=RILEY).json()["access_token"]
    answer = requests.post(
        f"{base}/introspect", data={"token": access}, headers=basic(), timeout=TIMEOUT
    ).json()
    assert answer["active"] is True and answer["sub"] == RILEY and answer["client_id"] == SEEDED_CLIENT_ID
    assert answer[ORG_CLAIMS] == {
        "organization": {"id": ORG_ID, "name": "Sandbox Talent Co"},
        "user_role": "site_admin",
    }
    other = requests.post(f"{base}/_sandbox/credentials", json={}, timeout=TIMEOUT).json()
    foreign = basic(other["client_id"], other["client_secret"])
    for headers, form in ((foreign, {"token": access}), (basic(), {"token": "unknown"})):
        found = requests.post(f"{base}/introspect", data=form, headers=headers, timeout=TIMEOUT)
        assert found.json() == {"active": False}
    sam = token(base, sub="4080002").json()["access_token"]
    role = requests.post(f"{base}/introspect", data={"token": sam}, headers=basic(), timeout=TIMEOUT).json()
    assert role[ORG_CLAIMS]["user_role"] == "basic"
    refused = requests.post(f"{base}/introspect", data={"token": access}, timeout=TIMEOUT)
    assert refused.status_code == 401


def test_the_api_checks_the_token_its_scopes_and_its_expiry(base: str) -> None:
    assert api(base, "GET", "candidates", None).status_code == 401
    assert api(base, "GET", "candidates", "made-up").json()["error"] == "invalid_token"
    expired = mint(base, expires_in=0)
    assert api(base, "GET", "candidates", expired).status_code == 401
    narrow = mint(base, scopes=["harvest:notes:list"])
    forbidden = api(base, "GET", "candidates", narrow)
    assert forbidden.status_code == 403
    assert forbidden.json() == {"message": "Missing required scope: harvest:candidates:list"}
    assert api(base, "GET", "jobs", mint(base)).status_code == 404
    assert requests.get(f"{base}/v1/candidates", timeout=TIMEOUT).status_code == 404
    answer = api(base, "GET", "notes", narrow)
    assert answer.status_code == 200 and answer.json() == []
    assert answer.headers["X-RateLimit-Limit"] == "50" and answer.headers["X-RateLimit-Remaining"] == "49"


def test_lists_page_by_cursor_alone(base: str) -> None:
    access = mint(base)
    first = api(base, "GET", "candidates", access, params={"per_page": 2})
    assert [c["id"] for c in first.json()] == [5120001, 5120002]
    following = first.links["next"]["url"]
    assert following.startswith(f"{base}/v3/candidates?cursor=")
    second = requests.get(following, headers={"Authorization": f"Bearer {access}"}, timeout=TIMEOUT)
    assert [c["id"] for c in second.json()] == [5120003] and "next" not in second.links
    mixed = requests.get(
        following + "&per_page=5", headers={"Authorization": f"Bearer {access}"}, timeout=TIMEOUT
    )
    assert mixed.status_code == 422
    assert mixed.json() == {
        "errors": [{"message": "cursor cannot be combined with other parameters", "field": "cursor"}]
    }
    for params in (
        {"cursor": "%%%"},
        {"cursor": encode_cursor({"_offset": "x"})},
        {"cursor": base64.urlsafe_b64encode(b"[1]").decode()},
        {"per_page": "0"},
        {"per_page": "501"},
        {"ids": "1,x"},
    ):
        assert api(base, "GET", "candidates", access, params=params).status_code == 422, params
    by_ids = api(base, "GET", "candidates", access, params={"ids": "5120003, 5120001"})
    assert [c["id"] for c in by_ids.json()] == [5120001, 5120003]
    assert api(base, "GET", "notes", access, params={"candidate_ids": "x"}).status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"candidate_id": 5120001, "body": "x", "color": "red"}, "color"),
        ({"candidate_id": 1, "body": "x"}, "candidate_id"),
        ({"candidate_id": True, "body": "x"}, "candidate_id"),
        ({"candidate_id": 5120001, "body": " "}, "body"),
        ({"candidate_id": 5120001, "body": "x" * (BODY_MAX + 1)}, "body"),
        ({"candidate_id": 5120001, "body": "x", "visibility": "everyone"}, "visibility"),
        ({"candidate_id": 5120001, "body": "x", "note_type": "TASK"}, "note_type"),
        ({"candidate_id": 5120001, "body": "x", "user_id": 1}, "user_id"),
        (["not", "an", "object"], None),
    ],
)
def test_a_note_is_validated(base: str, body: Any, field: str | None) -> None:
    answer = api(base, "POST", "notes", mint(base), json=body)
    assert answer.status_code == 422
    assert answer.json()["errors"][0].get("field") == field
    assert state(base)["notes"] == []


def test_a_note_body_that_is_not_json_is_a_bad_request(base: str) -> None:
    headers = {"Authorization": f"Bearer {mint(base)}", "Content-Type": "application/json"}
    answer = requests.post(f"{base}/v3/notes", data="{", headers=headers, timeout=TIMEOUT)
    assert answer.status_code == 400


def test_a_written_note_is_listed_for_its_candidate(base: str) -> None:
    access = mint(base)
    body = {"candidate_id": 5120002, "body": "hello", "visibility": "private", "note_type": "ACTIVITY"}
    created = api(base, "POST", "notes", access, json={**body, "user_id": 4080002})
    assert created.status_code == 201
    note = created.json()
    assert (note["user_id"], note["visibility"], note["type"], note["application_id"]) == (
        4080002,
        "private",
        "ACTIVITY",
        None,
    )
    listed = api(base, "GET", "notes", access, params={"candidate_ids": "5120002"}).json()
    assert listed == [note]
    assert api(base, "GET", "notes", access, params={"candidate_ids": "5120001"}).json() == []


def test_candidates_are_added_and_changed_through_the_records_endpoint(base: str) -> None:
    def upsert(body: Any) -> requests.Response:
        return requests.post(f"{base}/_sandbox/records", json=body, timeout=TIMEOUT)

    added = upsert({"object": "contact", "fields": {"first_name": "Ada", "email": "ada@new.example"}})
    assert added.status_code == 200 and added.json()["email_addresses"][0]["value"] == "ada@new.example"
    changed = upsert(
        {"object": "contact", "id": str(added.json()["id"]), "fields": {"last_name": "Lovelace"}}
    )
    assert (changed.json()["first_name"], changed.json()["last_name"]) == ("Ada", "Lovelace")
    assert upsert({"object": "contact", "id": "5999999", "fields": {}}).json()["id"] == 5999999
    assert upsert({"object": "deal", "fields": {}}).status_code == 400
    assert upsert({"object": "lead"}).status_code == 400
    access = mint(base)
    found = api(base, "GET", "candidates", access, params={"email": "ADA@new.example"}).json()
    assert [c["last_name"] for c in found] == ["Lovelace"]


def test_the_credential_control_endpoints(base: str) -> None:
    made = requests.post(
        f"{base}/_sandbox/credentials", json={"scopes": ["harvest:notes:list"]}, timeout=TIMEOUT
    )
    assert made.status_code == 201 and made.json()["service_account_user_id"] == SERVICE_ACCOUNTS_FROM + 1
    rotated = requests.post(
        f"{base}/_sandbox/credentials/rotate", json={"client_id": made.json()["client_id"]}, timeout=TIMEOUT
    )
    assert rotated.status_code == 200 and rotated.json()["revoked_tokens"] == 0
    for path, body in (
        ("credentials", {"scopes": "all"}),
        ("credentials", ["x"]),
        ("credentials/rotate", {"client_id": "unknown"}),
    ):
        answer = requests.post(f"{base}/_sandbox/{path}", json=body, timeout=TIMEOUT)
        assert answer.status_code in (400, 404), path
    not_json = requests.post(f"{base}/_sandbox/credentials", data="{", timeout=TIMEOUT)
    assert not_json.status_code == 400
    listed = state(base)["credentials"]
    assert listed[0]["client_id"] == SEEDED_CLIENT_ID
    assert all("secret" not in json.dumps(c) for c in listed)
    assert requests.post(f"{base}/_sandbox/unknown", json={}, timeout=TIMEOUT).status_code == 404


def test_the_overview_page_lists_candidates_notes_and_credentials(base: str) -> None:
    api(base, "POST", "notes", mint(base), json={"candidate_id": 5120003, "body": "Met <Lee> at the fair"})
    inject(base, "server_error", path_contains="/v3/notes")
    page = requests.get(f"{base}/", timeout=TIMEOUT)
    assert page.status_code == 200
    for text in (
        "Greenhouse Harvest v3 sandbox",
        "Sandbox Talent Co (4012345)",
        MAYA,
        "Met &lt;Lee&gt; at the fair",
        SEEDED_CLIENT_ID,
        "harvest:notes:create",
        "server_error",
        "/_sandbox/credentials/rotate",
    ):
        assert text in page.text, text


def test_basic_pairs_are_read_strictly() -> None:
    assert basic_pair("Basic " + base64.b64encode(b"id:se:cret").decode()) == ("id", "se:cret")
    assert basic_pair("basic " + base64.b64encode("é:x".encode()).decode()) == ("é", "x")
    assert basic_pair("Basic " + base64.b64encode(b"\xff:x").decode()) is None
