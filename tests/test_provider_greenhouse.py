"""The Greenhouse Harvest v3 client against `responses` mocks shaped from Greenhouse's v3 docs
(harvestdocs.greenhouse.io: authentication, pagination, the migration guides): the
client-credentials token, introspection naming the organization, candidates by email, notes and
their markers, the error mapping, rate limits, and secret hygiene."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from django.utils import timezone
from responses import matchers

from conduit.tenancy import system_scope
from integrations.models import SyncLog
from integrations.providers.base import Account
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    Permanent,
    ProviderError,
    RateLimited,
    TokenExpired,
    Transient,
)
from integrations.providers.greenhouse import (
    ORG_CLAIMS,
    ClientCredentials,
    GreenhouseProvider,
    api_bucket,
    expiry,
    field_of,
    id_or_placeholder,
    introspect_url,
    message_of,
)
from integrations.providers.ratelimit_headers import rate_limit_headers
from integrations.providers.synclog import CallContext
from tests.provider_helpers import MARKER, activity

pytestmark = pytest.mark.django_db
TOKEN_URL = "https://auth.greenhouse.io/token"
INTROSPECT = "https://auth.greenhouse.io/introspect"
API = "https://harvest.greenhouse.io/v3"
CLIENT_ID, SECRET = "a1b2c3d4e5f60718293a4b5c6d7e8f90", "gh-client-secret-0123456789abcdefWXYZ"
ACCESS = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiI0MDgwMDAxIn0.c2lnbmF0dXJlLXZhbHVl"
ORG, USER, SERVICE = "4012345", "4080001", "4089001"
CANDIDATE = "5120001"
MAYA = "maya.lopez@acme-logistics.example"
FIELDS = {"client_id": CLIENT_ID, "client_secret": SECRET, "user_id": USER}


@pytest.fixture(autouse=True)
def real_greenhouse(settings: Any) -> None:
    settings.GREENHOUSE_TOKEN_URL = TOKEN_URL
    settings.GREENHOUSE_API_BASE_URL = "https://harvest.greenhouse.io/"


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def provider() -> GreenhouseProvider:
    return GreenhouseProvider()


def account(user_id: str = USER, **ctx: Any) -> Account:
    details = {
        "organization_id": ORG,
        "user_id": user_id,
        "acting_as": "user" if user_id else "service_account",
    }
    return Account("greenhouse", ACCESS, ORG, context=CallContext(**ctx), details=details)


def basic(client_id: str = CLIENT_ID, secret: str = SECRET) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def token_body(**extra: Any) -> dict[str, Any]:
    expires = (timezone.now() + timedelta(hours=1)).replace(microsecond=0)
    return {"access_token": ACCESS, "token_type": "Bearer", "expires_at": expires.isoformat(), **extra}


def claims(
    sub: str = USER, scope: str = "harvest:candidates:list harvest:notes:list harvest:notes:create"
) -> dict[str, Any]:
    return {
        "active": True,
        "client_id": CLIENT_ID,
        "sub": sub,
        "scope": scope,
        ORG_CLAIMS: {"organization": {"id": int(ORG), "name": "Acme Talent"}, "user_role": "site_admin"},
    }


def form_of(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


def query_of(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def candidate(cid: int, *emails: str) -> dict[str, Any]:
    return {
        "id": cid,
        "first_name": "Maya",
        "email_addresses": [{"value": e, "type": "work"} for e in emails],
    }


# --- the provider's shape ----------------------------------------------------------------------


def test_greenhouse_connects_with_client_credentials(provider: GreenhouseProvider) -> None:
    assert (provider.name, provider.label) == ("greenhouse", "Greenhouse")
    assert provider.uses_oauth is False and provider.refreshes_tokens is True
    assert provider.credential_fields == ("client_id", "client_secret", "user_id")
    assert provider.required_scopes == (
        "harvest:candidates:list",
        "harvest:notes:list",
        "harvest:notes:create",
    )
    with pytest.raises(Permanent) as refused:
        provider.revoke(json.dumps(FIELDS))
    assert refused.value.code == "revoke_not_supported" and SECRET not in str(refused.value)


def test_the_api_budget_follows_the_ten_second_setting(settings: Any) -> None:
    settings.CONDUIT_RATE_BUDGET = 0.5
    assert (api_bucket().limit, api_bucket().window) == (25, 10)  # the published default, 50 [verify]
    settings.GREENHOUSE_TEN_SECOND_LIMIT = 100
    assert api_bucket().limit == 50


def test_introspection_sits_beside_the_token_endpoint(settings: Any) -> None:
    assert introspect_url() == INTROSPECT
    settings.GREENHOUSE_INTROSPECT_URL = "https://auth.example/oauth/introspect"
    assert introspect_url() == "https://auth.example/oauth/introspect"


# --- connecting: the token, then introspection ----------------------------------------------------


def test_credentials_are_checked_with_a_token_then_introspection(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    mock.post(TOKEN_URL, json=token_body())
    mock.post(INTROSPECT, json=claims())
    grant = provider.check_credentials(FIELDS)
    token_call, introspect_call = mock.calls
    assert token_call.request.headers["Authorization"] == basic()
    assert token_call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form_of(token_call) == {"grant_type": "client_credentials", "sub": USER}
    assert introspect_call.request.headers["Authorization"] == basic()
    assert form_of(introspect_call) == {"token": ACCESS, "token_type_hint": "access_token"}
    assert grant.account.key == ORG
    assert grant.account.details == {
        "organization_id": ORG,
        "organization_name": "Acme Talent",
        "user_id": USER,
        "acting_as": "user",
    }
    assert grant.account.scopes == tuple(provider.required_scopes)
    assert grant.tokens.access_token == ACCESS and grant.tokens.account_key == ORG
    assert grant.tokens.refresh_token == (
        f'{{"client_id":"{CLIENT_ID}","client_secret":"{SECRET}","user_id":"{USER}"}}'
    )
    assert grant.tokens.expires_at is not None and grant.tokens.expires_at > timezone.now()
    assert grant.last4 == SECRET[-4:]


def test_without_a_user_the_credentials_service_account_acts(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    mock.post(TOKEN_URL, json=token_body(scope=" ".join(provider.required_scopes)))
    mock.post(INTROSPECT, json=claims(sub=SERVICE, scope="harvest:candidates:list"))
    grant = provider.check_credentials({"client_id": CLIENT_ID, "client_secret": SECRET, "user_id": ""})
    assert form_of(mock.calls[0]) == {"grant_type": "client_credentials"}  # no sub
    assert grant.account.details["user_id"] == SERVICE
    assert grant.account.details["acting_as"] == "service_account"
    assert grant.tokens.scopes == provider.required_scopes  # the token answer's scope wins
    assert json.loads(grant.tokens.refresh_token or "")["user_id"] == ""


def test_missing_scopes_are_named(provider: GreenhouseProvider, mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, json=token_body())
    mock.post(INTROSPECT, json=claims(scope="harvest:candidates:list harvest:users:list"))
    with pytest.raises(MissingScope) as caught:
        provider.check_credentials(FIELDS)
    assert caught.value.missing == ["harvest:notes:list", "harvest:notes:create"]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "invalid_client", "error_description": "Client authentication failed"}),
        (400, {"error": "invalid_client"}),
        (400, {"error": "invalid_grant", "error_description": "sub is not an active user"}),
        (400, {"error": "unauthorized_client"}),
        (403, {"message": "IP address not allowed"}),
        (401, None),
    ],
)
def test_refused_credentials_are_auth_revoked(
    provider: GreenhouseProvider, mock: responses.RequestsMock, status: int, body: Any
) -> None:
    mock.post(TOKEN_URL, status=status, **({"json": body} if body else {"body": "denied"}))
    with pytest.raises(AuthRevoked) as caught:
        provider.check_credentials(FIELDS)
    assert caught.value.code == "credentials_invalid" and caught.value.http_status == status
    assert len(mock.calls) == 1


def test_a_token_request_refused_for_scope_is_missing_scope(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    mock.post(TOKEN_URL, status=400, json={"error": "invalid_scope"})
    with pytest.raises(MissingScope) as caught:
        provider.check_credentials(FIELDS)
    assert caught.value.missing == list(provider.required_scopes)


def test_other_token_errors_are_permanent(provider: GreenhouseProvider, mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, status=400, json={"error": "invalid_request", "error_description": "bad form"})
    with pytest.raises(Permanent) as caught:
        provider.check_credentials(FIELDS)
    assert (caught.value.code, caught.value.message) == ("invalid_request", "bad form")
    mock.replace(responses.POST, TOKEN_URL, status=418, body="teapot")
    with pytest.raises(Permanent) as caught:
        provider.check_credentials(FIELDS)
    assert caught.value.code == "http_418"


@pytest.mark.parametrize("body", [{"token_type": "Bearer"}, {"access_token": ""}, ["x"]])
def test_a_token_answer_without_a_token_is_refused(
    provider: GreenhouseProvider, mock: responses.RequestsMock, body: Any
) -> None:
    mock.post(TOKEN_URL, json=body)
    with pytest.raises(Permanent) as caught:
        provider.check_credentials(FIELDS)
    assert caught.value.code == "invalid_token_response"


@pytest.mark.parametrize("answer", [{"active": False}, ["x"], {"active": "yes"}])
def test_an_inactive_introspection_is_refused(
    provider: GreenhouseProvider, mock: responses.RequestsMock, answer: Any
) -> None:
    mock.post(TOKEN_URL, json=token_body())
    mock.post(INTROSPECT, json=answer)
    with pytest.raises(Permanent) as caught:
        provider.check_credentials(FIELDS)
    assert caught.value.code == "token_inactive"


def test_introspection_refusing_the_client_is_auth_revoked(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    mock.post(TOKEN_URL, json=token_body())
    mock.post(INTROSPECT, status=401, json={"error": "invalid_client"})
    with pytest.raises(AuthRevoked) as caught:
        provider.check_credentials(FIELDS)
    assert caught.value.code == "credentials_invalid"
    mock.replace(responses.POST, INTROSPECT, status=500, json={"message": "boom"})
    with pytest.raises(Transient):
        provider.check_credentials(FIELDS)
    mock.replace(responses.POST, INTROSPECT, status=400, json={"error": "invalid_request"})
    with pytest.raises(Permanent) as other:
        provider.check_credentials(FIELDS)
    assert other.value.code == "invalid_request"


@pytest.mark.parametrize("status", [404, 405])
def test_without_introspection_a_one_candidate_read_checks_access(
    provider: GreenhouseProvider, mock: responses.RequestsMock, status: int
) -> None:
    mock.post(TOKEN_URL, json=token_body())
    mock.post(INTROSPECT, status=status, body="Not Found")
    mock.get(f"{API}/candidates", json=[candidate(1, MAYA)])
    grant = provider.check_credentials(FIELDS)
    read = mock.calls[2]
    assert read.request.headers["Authorization"] == f"Bearer {ACCESS}"
    assert query_of(read) == {"per_page": "1"}
    assert grant.account.key.startswith("gh-") and len(grant.account.key) == 27
    assert grant.account.key == provider.fallback_key(ClientCredentials(CLIENT_ID, SECRET))
    assert CLIENT_ID not in grant.account.key
    assert grant.account.details == {
        "organization_id": "",
        "organization_name": "",
        "user_id": USER,
        "acting_as": "user",
    }


def test_without_introspection_a_refused_read_names_the_cause(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    mock.post(TOKEN_URL, json=token_body())
    mock.post(INTROSPECT, status=404)
    mock.get(f"{API}/candidates", status=401, json={"message": "Unauthorized"})
    with pytest.raises(AuthRevoked) as revoked:
        provider.check_credentials(FIELDS)
    assert revoked.value.code == "credentials_invalid"
    mock.replace(responses.GET, f"{API}/candidates", status=403, json={"message": "Forbidden"})
    with pytest.raises(MissingScope) as missing:
        provider.check_credentials(FIELDS)
    assert missing.value.missing == ["harvest:candidates:list"]


def test_an_organization_claim_that_is_not_an_id_falls_back_to_the_client_key(
    provider: GreenhouseProvider,
) -> None:
    creds = ClientCredentials(CLIENT_ID, SECRET)
    for organization in ({"id": True}, {"id": "acme"}, "x", None):
        info = {ORG_CLAIMS: {"organization": organization}, "sub": "svc-user"}
        found = provider.account_of(creds, info, ())
        assert found.key == provider.fallback_key(creds)
        assert found.details["user_id"] == "" and found.details["acting_as"] == "service_account"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"client_secret": SECRET}, "Enter the client ID."),
        ({"client_id": CLIENT_ID, "client_secret": ""}, "Enter the client secret."),
        ({"client_id": "x" * 201, "client_secret": SECRET}, "The client ID is longer than 200 characters."),
        ({"client_id": CLIENT_ID, "client_secret": "s" * 501}, "The client secret is longer than 500"),
        ({"client_id": "two words", "client_secret": SECRET}, "The client ID must be one word"),
        ({"client_id": CLIENT_ID, "client_secret": "a\x00b"}, "The client secret must be one word"),
        ({"client_id": "id:with:colon", "client_secret": SECRET}, "The client ID cannot contain ':'"),
        ({"client_id": CLIENT_ID, "client_secret": SECRET, "user_id": "riley"}, "The user ID is the number"),
        ({"client_id": CLIENT_ID, "client_secret": SECRET, "user_id": "1" * 21}, "The user ID is longer"),
    ],
)
def test_field_shapes_are_refused_naming_the_field_before_any_call(
    provider: GreenhouseProvider, mock: responses.RequestsMock, fields: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")) as refused:
        provider.check_credentials(fields)
    assert SECRET not in str(refused.value) and len(mock.calls) == 0


# --- refresh: the bundle asks again ----------------------------------------------------------------


def test_refresh_asks_for_a_new_token_with_the_stored_credentials(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    mock.post(TOKEN_URL, json={"access_token": "fresh-token", "token_type": "Bearer", "expires_in": 1800})
    before = timezone.now()
    tokens = provider.refresh(ClientCredentials(CLIENT_ID, SECRET, USER).bundle())
    assert tokens.access_token == "fresh-token" and tokens.refresh_token is None  # the bundle stays
    assert tokens.expires_at is not None
    assert before + timedelta(seconds=1799) <= tokens.expires_at <= timezone.now() + timedelta(seconds=1800)
    assert mock.calls[0].request.headers["Authorization"] == basic()
    assert form_of(mock.calls[0]) == {"grant_type": "client_credentials", "sub": USER}


@pytest.mark.parametrize("bundle", ["", "not json", "[1]", '{"client_id": "x"}'])
def test_an_unreadable_bundle_is_auth_revoked_unsent(
    provider: GreenhouseProvider, mock: responses.RequestsMock, bundle: str
) -> None:
    with pytest.raises(AuthRevoked) as caught:
        provider.refresh(bundle)
    assert caught.value.code == "credentials_unreadable" and len(mock.calls) == 0


def test_a_refused_refresh_is_auth_revoked(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    mock.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
    with pytest.raises(AuthRevoked) as caught:
        provider.refresh(ClientCredentials(CLIENT_ID, SECRET).bundle())
    assert caught.value.code == "credentials_invalid"


def test_expiry_reads_expires_at_then_expires_in_then_an_hour() -> None:
    now = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    assert expiry({"expires_at": "2026-05-04T13:00:00Z"}, now) == datetime(2026, 5, 4, 13, tzinfo=UTC)
    assert expiry({"expires_at": "2026-05-04T15:00:00+02:00"}, now) == datetime(2026, 5, 4, 13, tzinfo=UTC)
    assert expiry({"expires_at": "soon", "expires_in": 600}, now) == now + timedelta(minutes=10)
    assert expiry({"expires_at": "2026-05-04T13:00:00"}, now) == now + timedelta(hours=1)  # no zone
    assert expiry({"expires_in": True}, now) == now + timedelta(hours=1)
    assert expiry({"expires_in": -5}, now) == now + timedelta(hours=1)
    assert expiry({}, now) == now + timedelta(hours=1)


# --- candidates ------------------------------------------------------------------------------------


def test_a_candidate_is_found_by_email(provider: GreenhouseProvider, mock: responses.RequestsMock) -> None:
    mock.get(
        f"{API}/candidates",
        json=[candidate(7, "other@x.example"), candidate(8, "Maya.Lopez@Acme-Logistics.example")],
    )
    assert provider.find_contact(account(), f" {MAYA} ") == "8"
    call = mock.calls[0]
    assert call.request.headers["Authorization"] == f"Bearer {ACCESS}"
    assert query_of(call) == {"email": MAYA, "per_page": "500"}


def test_no_candidate_is_none_and_an_answer_without_addresses_matches_nobody(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    mock.get(f"{API}/candidates", json=[])
    assert provider.find_contact(account(), MAYA) is None
    # a row that lists no address is never taken for this email (the filter may not have applied)
    mock.replace(responses.GET, f"{API}/candidates", json=[{"id": 9, "first_name": "Maya"}])
    assert provider.find_contact(account(), MAYA) is None
    mock.replace(responses.GET, f"{API}/candidates", json=["junk", {"id": None}, candidate(3, "x@y.example")])
    assert provider.find_contact(account(), MAYA) is None


def test_pages_follow_the_next_link(provider: GreenhouseProvider, mock: responses.RequestsMock) -> None:
    following = f"{API}/candidates?cursor=eyJvZmZzZXQiOjF9"
    first = matchers.query_param_matcher({"email": MAYA, "per_page": "500"})
    link = {"Link": f'<{following}>; rel="next"'}
    mock.get(f"{API}/candidates", json=[candidate(1, "a@x.example")], headers=link, match=[first])
    mock.get(following, json=[candidate(2, MAYA)])
    assert provider.find_contact(account(), MAYA) == "2"
    assert query_of(mock.calls[1]) == {"cursor": "eyJvZmZzZXQiOjF9"}  # the cursor alone


@pytest.mark.parametrize(
    "following",
    ["https://evil.example/v3/candidates?cursor=x", "https://harvest.greenhouse.io/v1/candidates"],
)
def test_a_next_link_off_the_harvest_api_is_refused(
    provider: GreenhouseProvider, mock: responses.RequestsMock, following: str
) -> None:
    mock.get(f"{API}/candidates", json=[], headers={"Link": f'<{following}>; rel="next"'})
    with pytest.raises(Permanent) as caught:
        provider.find_contact(account(), MAYA)
    assert caught.value.code == "invalid_next_link" and len(mock.calls) == 1


def test_a_list_answer_that_is_not_an_array_is_refused(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    mock.get(f"{API}/candidates", json={"candidates": []})
    with pytest.raises(Permanent) as caught:
        provider.find_contact(account(), MAYA)
    assert caught.value.code == "invalid_response"


def test_health_is_one_candidate_read(provider: GreenhouseProvider, mock: responses.RequestsMock) -> None:
    mock.get(f"{API}/candidates", json=[], headers={"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "49"})
    health = provider.check_health(account(user_id=""))
    assert query_of(mock.calls[0]) == {"per_page": "1"}
    assert health.details == {"organization_id": ORG, "acting_as": "service_account"}
    assert health.latency_ms >= 0


def test_an_ats_has_no_deals_tasks_or_change_feed(provider: GreenhouseProvider) -> None:
    assert provider.find_open_deal(account(), CANDIDATE) is None
    with pytest.raises(Permanent) as pull:
        provider.changed_since(account(), "contact", timezone.now(), None, 10)
    assert pull.value.code == "operation_unsupported"
    for call in (
        lambda: provider.create_task(account(), activity(CANDIDATE)),
        lambda: provider.write(account(), "create_task", activity(CANDIDATE)),
        lambda: provider.write_payload("create_task", activity(CANDIDATE)),
    ):
        with pytest.raises(Permanent) as refused:
            call()
        assert refused.value.code == "operation_unsupported"


# --- notes -----------------------------------------------------------------------------------------


def test_a_note_carries_the_marked_text_as_the_acting_user(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    mock.post(f"{API}/notes", status=201, json={"id": 7300001, "candidate_id": 5120001, "type": "NOTE"})
    written = activity(CANDIDATE)
    assert provider.write(account(), "create_note", written) == "7300001"
    sent = json.loads(mock.calls[0].request.body or "")
    assert sent == {**provider.write_payload("create_note", written), "user_id": int(USER)}
    assert sent["candidate_id"] == 5120001 and sent["body"] == written.text
    assert sent["body"].endswith(f"[{MARKER}]")
    assert (sent["visibility"], sent["note_type"]) == ("admin_only", "NOTE")
    assert mock.calls[0].request.headers["Authorization"] == f"Bearer {ACCESS}"


def test_without_an_acting_user_the_token_subject_writes(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    mock.post(f"{API}/notes", status=201, json={"id": "7300002"})
    assert provider.create_meeting(account(user_id=""), activity(CANDIDATE)) == "7300002"
    assert "user_id" not in json.loads(mock.calls[0].request.body or "")


def test_the_body_is_cut_to_fit_and_keeps_its_marker(provider: GreenhouseProvider) -> None:
    long = activity(CANDIDATE, text="x" * 20000)
    body = provider.write_payload("create_meeting", long)["body"]
    assert len(body) == 10000 and body.endswith(f" [{MARKER}]")


def test_the_preview_shows_a_placeholder_before_the_lookup(provider: GreenhouseProvider) -> None:
    assert provider.write_payload("create_note", activity("{candidate}"))["candidate_id"] == "{candidate}"
    assert id_or_placeholder("12") == 12


def test_a_candidate_id_that_is_not_greenhouses_is_refused_unsent(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    for call in (
        lambda: provider.create_note(account(), activity("abc")),
        lambda: provider.find_write(account(), "create_note", activity("12; drop")),
    ):
        with pytest.raises(Permanent) as refused:
            call()
        assert refused.value.code == "invalid_id"
    assert len(mock.calls) == 0


@pytest.mark.parametrize("answer", [{"id": None}, {"id": True}, {"id": ""}, ["x"], {}])
def test_a_create_answer_without_an_id_is_refused(
    provider: GreenhouseProvider, mock: responses.RequestsMock, answer: Any
) -> None:
    mock.post(f"{API}/notes", status=201, json=answer)
    with pytest.raises(Permanent) as caught:
        provider.create_note(account(), activity(CANDIDATE))
    assert caught.value.code == "invalid_create_response"


def test_find_write_looks_for_the_marker_in_the_candidates_notes(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    notes = [
        {"id": 1, "body": "an older note"},
        "junk",
        {"id": 2, "body": None},
        {"id": 3, "body": f"Email ... [{MARKER}]"},
    ]
    mock.get(f"{API}/notes", json=notes)
    assert provider.find_write(account(), "create_note", activity(CANDIDATE)) == "3"
    assert query_of(mock.calls[0]) == {"candidate_ids": CANDIDATE, "per_page": "500"}
    assert (
        provider.find_write(account(), "create_meeting", activity(CANDIDATE, marker="cdw" + "0" * 24)) is None
    )
    assert provider.find_write(account(), "create_task", activity(CANDIDATE)) is None  # never written
    assert len(mock.calls) == 2


def test_find_write_refuses_to_half_search(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    mock.get(
        f"{API}/notes",
        json=[{"id": 1, "body": "x"}],
        headers={"Link": f'<{API}/notes?cursor=again>; rel="next"'},
    )
    with pytest.raises(Permanent) as caught:
        provider.find_write(account(), "create_note", activity(CANDIDATE))
    assert caught.value.code == "lookup_limit" and len(mock.calls) == 10


# --- the closed set of errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "code"),
    [
        (401, {"message": "Unauthorized"}, {}, TokenExpired, "token_expired"),
        (403, {"message": "Missing required scope: harvest:notes:list"}, {}, MissingScope, "missing_scope"),
        (404, {"message": "Not Found"}, {}, Permanent, "not_found"),
        (
            422,
            {"errors": [{"message": "candidate_ids is invalid", "field": "candidate_ids"}]},
            {},
            Permanent,
            "validation_error",
        ),
        (400, {"message": "bad"}, {}, Permanent, "http_400"),
        (429, {"message": "Rate limit exceeded"}, {"Retry-After": "7"}, RateLimited, "rate_limited"),
        (500, {"message": "Internal Server Error"}, {}, Transient, "http_500"),
        (503, None, {}, Transient, "http_503"),
        (302, None, {"Location": "https://login.greenhouse.io/"}, Permanent, "unexpected_redirect"),
    ],
)
def test_api_answers_map_to_the_closed_set(
    provider: GreenhouseProvider,
    mock: responses.RequestsMock,
    status: int,
    body: Any,
    headers: dict[str, str],
    error: type[ProviderError],
    code: str,
) -> None:
    kwargs: dict[str, Any] = {"json": body} if body is not None else {"body": "<h1>error</h1>"}
    mock.get(f"{API}/notes", status=status, headers=headers, **kwargs)
    with pytest.raises(error) as caught:
        provider.find_write(account(), "create_note", activity(CANDIDATE))
    assert caught.value.code == code
    if error is MissingScope:
        assert caught.value.missing == ["harvest:notes:list"]  # type: ignore[attr-defined]
    if error is RateLimited:
        assert caught.value.retry_after == 7.0  # type: ignore[attr-defined]
    if status == 422:
        assert caught.value.details == {"field": "candidate_ids"}  # type: ignore[attr-defined]
        assert caught.value.message == "candidate_ids is invalid"


def test_a_forbidden_write_names_the_scope_it_needs(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    mock.post(f"{API}/notes", status=403, json={"message": "Forbidden"})
    with pytest.raises(MissingScope) as caught:
        provider.create_note(account(), activity(CANDIDATE))
    assert caught.value.missing == ["harvest:notes:create"]


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({}, 10.0),
        ({"X-RateLimit-Reset": "4"}, 4.0),
        ({"X-RateLimit-Reset": "0"}, 1.0),
        ({"X-RateLimit-Reset": "soon"}, 10.0),
        ({"X-RateLimit-Reset": "99999999999"}, 3600.0),
    ],
)
def test_a_429_without_retry_after_waits_for_the_reset(
    provider: GreenhouseProvider, mock: responses.RequestsMock, headers: dict[str, str], wait: float
) -> None:
    mock.get(f"{API}/candidates", status=429, headers=headers, json={"message": "Rate limit exceeded"})
    with pytest.raises(RateLimited) as caught:
        provider.find_contact(account(), MAYA)
    assert caught.value.retry_after == wait


def test_a_reset_given_as_a_unix_time_waits_until_then(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    reset = int(timezone.now().timestamp()) + 6
    mock.get(f"{API}/candidates", status=429, headers={"X-RateLimit-Reset": str(reset)})
    with pytest.raises(RateLimited) as caught:
        provider.find_contact(account(), MAYA)
    assert 4.0 <= caught.value.retry_after <= 6.0


def test_timeouts_and_network_failures_are_transient(
    provider: GreenhouseProvider, mock: responses.RequestsMock
) -> None:
    mock.post(TOKEN_URL, body=requests.ReadTimeout("slow"))
    with pytest.raises(Transient) as caught:
        provider.refresh(ClientCredentials(CLIENT_ID, SECRET).bundle())
    assert caught.value.code == "timeout"
    mock.get(f"{API}/candidates", body=requests.ConnectionError("refused"))
    with pytest.raises(Transient) as caught:
        provider.find_contact(account(), MAYA)
    assert caught.value.code == "network_error"


def test_the_rate_limit_headers_are_read(provider: GreenhouseProvider) -> None:
    found = rate_limit_headers(
        provider, {"x-ratelimit-limit": "50", "X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "1700000000"}
    )
    assert found == {
        "X-RateLimit-Remaining": "3",
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Reset": "1700000000",
    }


def test_small_helpers() -> None:
    assert message_of({"errors": [{"message": "first"}], "message": ""}) == "first"
    assert message_of({"error": "invalid_client"}) == "invalid_client"
    assert message_of({"errors": ["x"], "error_description": "desc"}) == "desc"
    assert message_of(["x"]) == ""
    assert field_of({"errors": [{"message": "m"}]}) == {}
    assert field_of({"errors": "x"}) == {} and field_of(None) == {}


# --- secret hygiene ----------------------------------------------------------------------------------


def test_no_secret_or_token_leaves_in_errors_logs_or_sync_logs(
    provider: GreenhouseProvider,
    mock: responses.RequestsMock,
    capture_json_logs: Callable[[], list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = {"error": "invalid_client", "error_description": f"secret {SECRET} for {basic()} refused"}
    mock.post(TOKEN_URL, status=401, json=echo)
    with pytest.raises(AuthRevoked) as refused:
        provider.check_credentials(FIELDS)
    mock.post(f"{API}/notes", status=422, json={"errors": [{"message": f"token {ACCESS} not welcome"}]})
    secrets = (ACCESS, ClientCredentials(CLIENT_ID, SECRET).bundle())
    with pytest.raises(Permanent) as echoed:
        provider.create_note(account(secrets=secrets), activity(CANDIDATE))
    with pytest.raises(AuthRevoked) as bad_bundle:
        provider.refresh(f"{SECRET} is not json")
    texts = [
        str(refused.value),
        str(echoed.value),
        str(bad_bundle.value),
        repr(ClientCredentials(CLIENT_ID, SECRET)),
    ]
    with system_scope():
        texts += [summary for (summary,) in SyncLog.objects.values_list("summary")]
    texts += [json.dumps(capture_json_logs()), caplog.text]
    for text in texts:
        for secret in (SECRET, ACCESS, basic().split()[1]):
            assert secret not in text
    assert "[redacted]" in refused.value.message and "[redacted]" in echoed.value.message
