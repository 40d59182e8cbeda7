"""HubSpot client against `responses` mocks shaped from provider-facts.md."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from django.conf import settings

from integrations.models import SyncLog
from integrations.providers import UnknownProvider, get_provider
from integrations.providers.base import TokenSet
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    Permanent,
    RateLimited,
    TokenExpired,
    Transient,
)
from tests.provider_helpers import HS_TOKEN, MARKER, activity, hubspot_account, metric_value

pytestmark = pytest.mark.django_db
hs = get_provider("hubspot")
API = settings.HUBSPOT_API_BASE_URL


def hs_error(category: str, message: str = "error", **extra: object) -> dict[str, object]:
    return {"status": "error", "message": message, "correlationId": "c0ffee", "category": category, **extra}


def test_registry_knows_both_providers_and_refuses_others() -> None:
    assert get_provider("hubspot").name == "hubspot"
    assert get_provider("salesforce").name == "salesforce"
    with pytest.raises(UnknownProvider, match="unknown provider 'pipedrive'"):
        get_provider("pipedrive")


def test_authorize_url_asks_for_required_scopes_and_state() -> None:
    url = hs.authorize_url(state="st4te", redirect_uri="https://conduit.example/oauth/callback")
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert url.startswith(settings.HUBSPOT_AUTHORIZE_URL + "?")
    assert query["state"] == ["st4te"]
    assert query["client_id"] == [settings.HUBSPOT_CLIENT_ID]
    assert query["redirect_uri"] == ["https://conduit.example/oauth/callback"]
    assert query["scope"][0].split(" ") == list(hs.required_scopes)
    assert "crm.objects.contacts.write" in hs.required_scopes


@responses.activate
def test_exchange_code_returns_tokens_with_expiry_from_expires_in() -> None:
    responses.post(
        f"{API}/oauth/v1/token",
        json={
            "access_token": HS_TOKEN,
            "refresh_token": "hs-refresh-1",
            "expires_in": 1800,
            "token_type": "bearer",
            "hub_id": 4400001,
            "scopes": ["oauth", "crm.objects.contacts.read"],
        },
    )
    tokens = hs.exchange_code(code="abc", redirect_uri="https://conduit.example/cb")
    form = parse_qs(responses.calls[0].request.body)
    assert form["grant_type"] == ["authorization_code"]
    assert form["code"] == ["abc"]
    assert form["client_secret"] == [settings.HUBSPOT_CLIENT_SECRET]
    assert tokens.access_token == HS_TOKEN
    assert tokens.refresh_token == "hs-refresh-1"
    assert tokens.account_key == "4400001"
    assert tokens.expires_at is not None
    remaining = (tokens.expires_at - __import__("django.utils.timezone").utils.timezone.now()).total_seconds()
    assert 1790 < remaining <= 1800
    assert HS_TOKEN not in repr(tokens)


@responses.activate
def test_refresh_invalid_grant_is_auth_revoked() -> None:
    responses.post(
        f"{API}/oauth/v1/token",
        status=400,
        json={
            "error": "invalid_grant",
            "error_description": "refresh token is invalid, expired or revoked",
            "status": "BAD_REFRESH_TOKEN",
            "message": "missing or invalid refresh token",
        },
    )
    with pytest.raises(AuthRevoked) as err:
        hs.refresh("hs-refresh-dead")
    assert err.value.code == "refresh_token_revoked"


@pytest.mark.parametrize(
    "body",
    [
        {"status": "BAD_HUB", "message": "missing or unknown hub id", "error": "access_denied"},
        {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"},
    ],
)
@responses.activate
def test_refresh_older_revoked_shapes_are_auth_revoked(body: dict[str, str]) -> None:
    responses.post(f"{API}/oauth/v1/token", status=400, json=body)
    with pytest.raises(AuthRevoked):
        hs.refresh("hs-refresh-dead")


@responses.activate
def test_invalid_client_is_a_configuration_error_not_a_revocation() -> None:
    responses.post(
        f"{API}/oauth/v1/token",
        status=400,
        json={
            "status": "BAD_CLIENT_ID",
            "message": "missing or unknown client id",
            "error": "invalid_client",
        },
    )
    with pytest.raises(Permanent) as err:
        hs.refresh("hs-refresh-1")
    assert not isinstance(err.value, AuthRevoked)
    assert err.value.code == "invalid_client"


@responses.activate
def test_bad_authorization_code_is_permanent() -> None:
    responses.post(
        f"{API}/oauth/v1/token",
        status=400,
        json={"status": "BAD_AUTH_CODE", "message": "missing or unknown auth code", "error": "invalid_grant"},
    )
    with pytest.raises(Permanent) as err:
        hs.exchange_code(code="used", redirect_uri="https://conduit.example/cb")
    assert err.value.code == "invalid_authorization_code"


@responses.activate
def test_token_response_without_access_token_is_refused() -> None:
    responses.post(f"{API}/oauth/v1/token", json={"token_type": "bearer"})
    with pytest.raises(Permanent, match="invalid_token_response"):
        hs.exchange_code(code="abc", redirect_uri="https://conduit.example/cb")


def test_missing_client_credentials_refuse_before_any_call(settings: pytest.FixtureRequest) -> None:
    settings.HUBSPOT_CLIENT_SECRET = ""  # type: ignore[attr-defined]
    with pytest.raises(Permanent, match="not_configured"):
        hs.refresh("x")


@responses.activate
def test_identify_reads_hub_id_and_domain_from_token_info() -> None:
    responses.get(
        f"{API}/oauth/v1/access-tokens/{HS_TOKEN}",
        json={
            "token": HS_TOKEN,
            "user": "owner@acme.example",
            "hub_domain": "acme.hubspot.com",
            "scopes": ["oauth", "crm.objects.contacts.read"],
            "hub_id": 62515,
            "app_id": 456,
            "expires_in": 1754,
            "user_id": 123,
            "token_type": "access",
        },
    )
    account = hs.identify(TokenSet(access_token=HS_TOKEN))
    assert account.key == "62515"
    assert account.details == {
        "hub_id": "62515",
        "hub_domain": "acme.hubspot.com",
        "app_id": 456,
        "user_id": 123,
    }
    assert account.user_email == "owner@acme.example"
    assert account.scopes == ("oauth", "crm.objects.contacts.read")
    assert hs.missing_scopes(account.scopes) == ["crm.objects.contacts.write", "crm.objects.deals.read"]


@responses.activate
def test_identify_without_hub_id_is_refused() -> None:
    responses.get(f"{API}/oauth/v1/access-tokens/{HS_TOKEN}", json={"user": "x@example.com"})
    with pytest.raises(Permanent, match="invalid_token_info"):
        hs.identify(TokenSet(access_token=HS_TOKEN))


@responses.activate
def test_revoke_deletes_the_refresh_token() -> None:
    responses.delete(f"{API}/oauth/v1/refresh-tokens/hs-refresh-1", status=204)
    hs.revoke("hs-refresh-1")
    assert responses.calls[0].request.method == "DELETE"


@responses.activate
def test_health_check_calls_account_info_with_bearer() -> None:
    responses.get(f"{API}/account-info/v3/details", json={"portalId": 4400001, "timeZone": "US/Eastern"})
    result = hs.check_health(hubspot_account())
    assert result.details == {"portal_id": 4400001}
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {HS_TOKEN}"


@responses.activate
def test_contact_lookup_by_email_uses_search() -> None:
    responses.post(
        f"{API}/crm/v3/objects/contacts/search",
        json={"total": 1, "results": [{"id": "101", "properties": {"email": "maya@acme.example"}}]},
    )
    assert hs.find_contact(hubspot_account(), "maya@acme.example") == "101"
    sent = json.loads(responses.calls[0].request.body)
    assert sent["filterGroups"][0]["filters"][0] == {
        "propertyName": "email",
        "operator": "EQ",
        "value": "maya@acme.example",
    }


@responses.activate
def test_contact_lookup_without_match_returns_none() -> None:
    responses.post(f"{API}/crm/v3/objects/contacts/search", json={"total": 0, "results": []})
    assert hs.find_contact(hubspot_account(), "nobody@example.com") is None


@responses.activate
def test_open_deal_lookup_filters_open_deals_of_the_contact_newest_first() -> None:
    responses.post(f"{API}/crm/v3/objects/deals/search", json={"total": 1, "results": [{"id": "201"}]})
    assert hs.find_open_deal(hubspot_account(), "101") == "201"
    sent = json.loads(responses.calls[0].request.body)
    filters = sent["filterGroups"][0]["filters"]
    assert {"propertyName": "associations.contact", "operator": "EQ", "value": "101"} in filters
    assert {"propertyName": "hs_is_closed", "operator": "EQ", "value": "false"} in filters
    assert sent["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}]


@responses.activate
def test_note_associates_contact_202_and_deal_214() -> None:
    responses.post(f"{API}/crm/v3/objects/notes", status=201, json={"id": "90001", "properties": {}})
    assert hs.create_note(hubspot_account(), activity("101", "201")) == "90001"
    sent = json.loads(responses.calls[0].request.body)
    assert sent["properties"]["hs_timestamp"] == "1794820320000"
    assert f"[{MARKER}]" in sent["properties"]["hs_note_body"]
    assert sent["associations"] == [
        {
            "to": {"id": "101"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}],
        },
        {
            "to": {"id": "201"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 214}],
        },
    ]


@responses.activate
def test_task_associates_contact_204_and_deal_216() -> None:
    responses.post(f"{API}/crm/v3/objects/tasks", status=201, json={"id": "90002", "properties": {}})
    assert hs.create_task(hubspot_account(), activity("101", "201")) == "90002"
    sent = json.loads(responses.calls[0].request.body)
    assert sent["properties"]["hs_task_subject"] == "Re: pricing for the annual plan"
    assert sent["properties"]["hs_task_status"] == "NOT_STARTED"
    assert [a["types"][0]["associationTypeId"] for a in sent["associations"]] == [204, 216]


@responses.activate
def test_note_without_deal_associates_only_the_contact() -> None:
    responses.post(f"{API}/crm/v3/objects/notes", status=201, json={"id": "90003"})
    hs.create_note(hubspot_account(), activity("101"))
    sent = json.loads(responses.calls[0].request.body)
    assert [a["to"]["id"] for a in sent["associations"]] == ["101"]


@responses.activate
def test_expired_token_401_is_token_expired() -> None:
    responses.get(
        f"{API}/account-info/v3/details",
        status=401,
        json=hs_error(
            "EXPIRED_AUTHENTICATION", "The OAuth token used to make this call expired 3 second(s) ago."
        ),
    )
    with pytest.raises(TokenExpired) as err:
        hs.check_health(hubspot_account())
    assert err.value.code == "token_expired"


@responses.activate
def test_invalid_token_401_is_token_expired_with_its_own_code() -> None:
    responses.get(f"{API}/account-info/v3/details", status=401, json=hs_error("INVALID_AUTHENTICATION"))
    with pytest.raises(TokenExpired) as err:
        hs.check_health(hubspot_account())
    assert err.value.code == "invalid_authentication"


@responses.activate
def test_missing_scopes_403_names_the_scopes() -> None:
    responses.post(
        f"{API}/crm/v3/objects/notes",
        status=403,
        json=hs_error(
            "MISSING_SCOPES",
            "This app hasn't been granted all required scopes to make this call.",
            errors=[
                {
                    "message": "One or more of the following scopes are required.",
                    "context": {"requiredGranularScopes": ["crm.objects.contacts.write"]},
                }
            ],
        ),
    )
    with pytest.raises(MissingScope) as err:
        hs.create_note(hubspot_account(), activity("101"))
    assert err.value.missing == ["crm.objects.contacts.write"]


@responses.activate
def test_validation_400_is_permanent_with_category() -> None:
    responses.post(
        f"{API}/crm/v3/objects/notes",
        status=400,
        json=hs_error("VALIDATION_ERROR", "Property values were not valid"),
    )
    with pytest.raises(Permanent) as err:
        hs.create_note(hubspot_account(), activity("101"))
    assert err.value.code == "validation_error"
    assert err.value.details == {"category": "VALIDATION_ERROR"}
    assert "Property values were not valid" in str(err.value)


def rate_limit_body(policy: str = "TEN_SECONDLY_ROLLING") -> dict[str, str]:
    return {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": "c0ffee",
        "policyName": policy,
        "requestId": "r1",
    }


@responses.activate
def test_429_with_retry_after_honours_it() -> None:
    responses.post(
        f"{API}/crm/v3/objects/notes", status=429, json=rate_limit_body(), headers={"Retry-After": "7"}
    )
    with pytest.raises(RateLimited) as err:
        hs.create_note(hubspot_account(), activity("101"))
    assert err.value.retry_after == 7


@responses.activate
def test_429_ten_secondly_without_retry_after_waits_the_interval() -> None:
    responses.post(
        f"{API}/crm/v3/objects/notes",
        status=429,
        json=rate_limit_body(),
        headers={"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"},
    )
    with pytest.raises(RateLimited) as err:
        hs.create_note(hubspot_account(), activity("101"))
    assert err.value.retry_after == 10


@pytest.mark.parametrize(("policy", "expected"), [("SECONDLY", 1.0), ("DAILY", 3600.0), ("OTHER", 10.0)])
@responses.activate
def test_429_policy_decides_the_default_wait(policy: str, expected: float) -> None:
    responses.post(f"{API}/crm/v3/objects/contacts/search", status=429, json=rate_limit_body(policy))
    with pytest.raises(RateLimited) as err:
        hs.find_contact(hubspot_account(), "maya@acme.example")
    assert err.value.retry_after == expected


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "http_500"),
        (502, "http_502"),
        (503, "http_503"),
        (423, "locked"),
        (477, "migration_in_progress"),
        (524, "http_524"),
    ],
)
@responses.activate
def test_server_side_statuses_are_transient(status: int, code: str) -> None:
    responses.get(f"{API}/account-info/v3/details", status=status, body="<html>oops</html>")
    with pytest.raises(Transient) as err:
        hs.check_health(hubspot_account())
    assert err.value.code == code


@responses.activate
def test_timeout_is_transient_and_the_exception_names_no_url() -> None:
    responses.get(
        f"{API}/oauth/v1/access-tokens/{HS_TOKEN}", body=requests.ReadTimeout("read timed out " + HS_TOKEN)
    )
    with pytest.raises(Transient) as err:
        hs.identify(TokenSet(access_token=HS_TOKEN))
    assert err.value.code == "timeout"
    assert HS_TOKEN not in str(err.value)


@responses.activate
def test_connection_error_is_transient_without_the_url() -> None:
    responses.get(
        f"{API}/oauth/v1/access-tokens/{HS_TOKEN}",
        body=requests.ConnectionError(f"HTTPSConnectionPool: /oauth/v1/access-tokens/{HS_TOKEN}"),
    )
    with pytest.raises(Transient) as err:
        hs.identify(TokenSet(access_token=HS_TOKEN))
    assert err.value.code == "network_error"
    assert HS_TOKEN not in str(err.value)


@responses.activate
def test_redirects_are_not_followed() -> None:
    responses.get(f"{API}/account-info/v3/details", status=302, headers={"Location": "https://evil.example/"})
    responses.get("https://evil.example/", json={})
    with pytest.raises(Permanent, match="unexpected_redirect"):
        hs.check_health(hubspot_account())
    assert len(responses.calls) == 1


@responses.activate
def test_every_call_has_connect_and_read_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    original = requests.Session.request

    def spy(self: requests.Session, method: str, url: str, **kw: object) -> requests.Response:
        seen.append(kw.get("timeout"))
        return original(self, method, url, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(requests.Session, "request", spy)
    responses.get(f"{API}/account-info/v3/details", json={"portalId": 1})
    hs.check_health(hubspot_account())
    assert seen == [settings.CONDUIT_PROVIDER_TIMEOUT]
    assert all(t > 0 for t in settings.CONDUIT_PROVIDER_TIMEOUT)


@responses.activate
def test_each_operation_writes_a_sync_log_and_metrics(alice) -> None:  # type: ignore[no-untyped-def]
    from conduit.tenancy import system_scope

    errors_before = metric_value(
        "crm_sync_errors_total", provider="hubspot", operation="create_note", error_code="http_503"
    )
    count_before = metric_value(
        "crm_sync_duration_seconds_count", provider="hubspot", operation="create_note"
    )
    responses.post(f"{API}/crm/v3/objects/notes", status=201, json={"id": "1"})
    responses.post(f"{API}/crm/v3/objects/notes", status=503, body="unavailable")
    account = hubspot_account(workspace_id=alice.workspace.pk)
    hs.create_note(account, activity("101"))
    with pytest.raises(Transient):
        hs.create_note(account, activity("101"))
    with system_scope():
        rows = list(
            SyncLog.objects.filter(workspace=alice.workspace)
            .order_by("id")
            .values("workspace_id", "provider", "operation", "status", "http_status", "error_code", "summary")
        )
    assert rows == [
        {
            "workspace_id": alice.workspace.pk,
            "provider": "hubspot",
            "operation": "create_note",
            "status": "SUCCESS",
            "http_status": 201,
            "error_code": "",
            "summary": "create_note ok",
        },
        {
            "workspace_id": alice.workspace.pk,
            "provider": "hubspot",
            "operation": "create_note",
            "status": "FAILED",
            "http_status": 503,
            "error_code": "http_503",
            "summary": "create_note failed: http_503: HTTP 503",
        },
    ]
    assert (
        metric_value(
            "crm_sync_errors_total", provider="hubspot", operation="create_note", error_code="http_503"
        )
        == errors_before + 1
    )
    assert (
        metric_value("crm_sync_duration_seconds_count", provider="hubspot", operation="create_note")
        == count_before + 2
    )


@responses.activate
def test_rate_limit_answer_counts_a_hit_and_blocks_the_portal() -> None:
    before = metric_value("crm_rate_limit_hits_total", provider="hubspot")
    responses.post(
        f"{API}/crm/v3/objects/notes", status=429, json=rate_limit_body(), headers={"Retry-After": "30"}
    )
    with pytest.raises(RateLimited):
        hs.create_note(hubspot_account(), activity("101"))
    assert metric_value("crm_rate_limit_hits_total", provider="hubspot") == before + 1
    # the next call for the same portal is not sent: the limiter hands back the wait at once
    with pytest.raises(RateLimited) as err:
        hs.create_note(hubspot_account(), activity("101"))
    assert err.value.code == "local_rate_limit"
    assert 25 < err.value.retry_after <= 30
    assert len(responses.calls) == 1
    # another portal is not affected
    responses.post(f"{API}/crm/v3/objects/notes", status=201, json={"id": "5"})
    assert hs.create_note(hubspot_account(key="999"), activity("101")) == "5"


@responses.activate
def test_health_check_sets_the_connection_status_gauge(alice) -> None:  # type: ignore[no-untyped-def]
    responses.get(f"{API}/account-info/v3/details", json={"portalId": 1})
    responses.get(f"{API}/account-info/v3/details", status=401, json=hs_error("EXPIRED_AUTHENTICATION"))
    workspace_id = str(alice.workspace.pk)
    account = hubspot_account(workspace_id=alice.workspace.pk)
    hs.check_health(account)
    assert metric_value("crm_connection_status", provider="hubspot", workspace_id=workspace_id) == 1.0
    with pytest.raises(TokenExpired):
        hs.check_health(account)
    assert metric_value("crm_connection_status", provider="hubspot", workspace_id=workspace_id) == 0.0


@responses.activate
@pytest.mark.parametrize(
    ("operation", "object_type", "body_property"),
    [("create_note", "notes", "hs_note_body"), ("create_task", "tasks", "hs_task_body")],
)
def test_find_write_searches_the_body_for_the_marker_token(
    operation: str, object_type: str, body_property: str
) -> None:
    responses.post(f"{API}/crm/v3/objects/{object_type}/search", json={"total": 1, "results": [{"id": "9"}]})
    responses.post(f"{API}/crm/v3/objects/{object_type}/search", json={"total": 0, "results": []})
    assert hs.find_write(hubspot_account(), operation, activity("101")) == "9"
    assert hs.find_write(hubspot_account(), operation, activity("101")) is None
    sent = json.loads(responses.calls[0].request.body)
    assert sent == {
        "filterGroups": [
            {"filters": [{"propertyName": body_property, "operator": "CONTAINS_TOKEN", "value": MARKER}]}
        ],
        "properties": ["hs_object_id"],
        "limit": 1,
    }


@responses.activate
def test_find_write_is_logged_as_its_own_operation_in_the_search_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from integrations.providers.ratelimit import Bucket, get_limiter

    buckets: list[str] = []
    limiter = get_limiter()
    real_acquire = limiter.acquire

    def acquire(bucket: Bucket, account: str, **kw: Any) -> float:
        buckets.append(bucket.name)
        return real_acquire(bucket, account, **kw)

    monkeypatch.setattr(limiter, "acquire", acquire)
    before = metric_value("crm_sync_duration_seconds_count", provider="hubspot", operation="find_write")
    responses.post(f"{API}/crm/v3/objects/notes/search", json={"total": 0, "results": []})
    hs.find_write(hubspot_account(), "create_note", activity("101"))
    assert buckets == ["search"]
    assert (
        metric_value("crm_sync_duration_seconds_count", provider="hubspot", operation="find_write")
        == before + 1
    )


def test_write_payload_is_the_note_or_task_payload() -> None:
    planned = activity("101", "201")
    assert hs.write_payload("create_note", planned) == hs.note_payload(planned)
    assert hs.write_payload("create_task", planned) == hs.task_payload(planned)
