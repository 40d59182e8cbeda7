"""Salesforce client against `responses` mocks shaped from provider-facts.md."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.conf import settings

from integrations.providers import get_provider
from integrations.providers.base import TokenSet
from integrations.providers.errors import (
    AuthRevoked,
    InvalidInstanceUrl,
    MissingScope,
    Permanent,
    RateLimited,
    TokenExpired,
    Transient,
)
from integrations.providers.ratelimit import get_limiter
from integrations.providers.salesforce import soql_quote, validate_instance_url
from tests.provider_helpers import MARKER, SF_TOKEN, activity, salesforce_account

pytestmark = pytest.mark.django_db
sf = get_provider("salesforce")
INSTANCE = "https://acme.my.salesforce.com"
REST = f"{INSTANCE}/services/data/v66.0"
ORG, USER = "00D5g000004SbxAEAS", "0055g00000SbxUsAAJ"


def token_body(**extra: object) -> dict[str, object]:
    return {
        "access_token": SF_TOKEN,
        "refresh_token": "5Aep861-refresh",
        "instance_url": INSTANCE,
        "id": f"https://login.salesforce.com/id/{ORG}/{USER}",
        "token_type": "Bearer",
        "issued_at": "1794820320000",
        "signature": "c2lnbmF0dXJl",
        "scope": "api refresh_token id",
        **extra,
    }


@pytest.mark.parametrize(
    "url",
    [
        "https://acme.my.salesforce.com",
        "https://acme--uat.sandbox.my.salesforce.com",
        "https://na42.salesforce.com",
        "https://acme.lightning.force.com",
        "https://ACME.my.salesforce.com.",
        "https://acme.my.salesforce.com:443",
        "https://acme.my.salesforce.com/",
    ],
)
def test_legitimate_instance_urls_are_accepted(url: str) -> None:
    assert (
        validate_instance_url(url).startswith("https://acme")
        or validate_instance_url(url) == "https://na42.salesforce.com"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://x.my.salesforce.com.evil.com",
        "https://evil.com/x.salesforce.com",
        "https://x.salesforce.com@evil.com",
        "http://x.my.salesforce.com",
        "https://salesforce.com.evil.com",
        "https://evilsalesforce.com",
        "https://x.my.salesforce.com:8443",
        "https://x.my.salesforce.com/services?redirect=evil",
        "https://user:pw@x.my.salesforce.com",
        "javascript:alert(1)",
        "https://[::1",
        "",
    ],
)
def test_ssrf_instance_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidInstanceUrl):
        validate_instance_url(url)


@responses.activate
def test_no_token_is_sent_to_a_foreign_instance_url() -> None:
    responses.get("https://x.my.salesforce.com.evil.com/services/data/v66.0/query", json={})
    with pytest.raises(InvalidInstanceUrl):
        sf.find_contact(salesforce_account("https://x.my.salesforce.com.evil.com"), "a@b.example")
    assert len(responses.calls) == 0


@responses.activate
def test_token_response_with_a_foreign_instance_url_is_refused(real_hosts) -> None:  # type: ignore[no-untyped-def]
    responses.post(
        "https://login.salesforce.com/services/oauth2/token",
        json=token_body(instance_url="https://evil.example"),
    )
    with pytest.raises(InvalidInstanceUrl):
        sf.exchange_code(code="c", redirect_uri="https://conduit.example/cb", code_verifier="v" * 43)


def test_authorize_url_uses_pkce_s256_and_the_environment_host(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SALESFORCE_LOGIN_URL = "https://login.salesforce.com"
    settings.SALESFORCE_TEST_URL = "https://test.salesforce.com"
    url = sf.authorize_url(
        state="s", redirect_uri="https://conduit.example/cb", code_challenge="chal", environment="test"
    )
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.netloc == "test.salesforce.com"
    assert parts.path == "/services/oauth2/authorize"
    assert query["code_challenge"] == ["chal"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["response_type"] == ["code"]
    assert set(query["scope"][0].split()) == {"api", "refresh_token", "id"}
    login = sf.authorize_url(state="s", redirect_uri="https://conduit.example/cb")
    assert urlsplit(login).netloc == "login.salesforce.com"
    assert "code_challenge" not in login


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(Permanent, match="invalid_environment"):
        sf.authorize_url(state="s", redirect_uri="https://conduit.example/cb", environment="prod")


@pytest.fixture
def real_hosts(settings):  # type: ignore[no-untyped-def]
    settings.SALESFORCE_LOGIN_URL = "https://login.salesforce.com"
    settings.SALESFORCE_TEST_URL = "https://test.salesforce.com"


@responses.activate
def test_exchange_code_sends_the_verifier_and_reads_instance_and_identity(real_hosts) -> None:  # type: ignore[no-untyped-def]
    responses.post("https://test.salesforce.com/services/oauth2/token", json=token_body())
    tokens = sf.exchange_code(
        code="c", redirect_uri="https://conduit.example/cb", code_verifier="v" * 43, environment="test"
    )
    form = parse_qs(responses.calls[0].request.body)
    assert form["code_verifier"] == ["v" * 43]
    assert form["client_id"] == [settings.SALESFORCE_CLIENT_ID]
    assert tokens.instance_url == INSTANCE
    assert tokens.expires_at is None
    assert tokens.refresh_token == "5Aep861-refresh"
    assert tokens.scopes == ("api", "refresh_token", "id")
    assert sf.missing_scopes(tokens.scopes) == []
    assert sf.missing_scopes(("api", "offline_access")) == []
    assert sf.missing_scopes(("id",)) == ["api", "refresh_token"]


@responses.activate
def test_identify_parses_org_and_user_from_the_id_url(real_hosts) -> None:  # type: ignore[no-untyped-def]
    responses.get(
        f"{INSTANCE}/services/oauth2/userinfo",
        json={
            "user_id": USER,
            "organization_id": ORG,
            "preferred_username": "admin@acme.example",
            "email": "admin@acme.example",
        },
    )
    tokens = TokenSet(
        access_token=SF_TOKEN,
        instance_url=INSTANCE,
        identity_url=f"https://login.salesforce.com/id/{ORG}/{USER}",
    )
    account = sf.identify(tokens, environment="test")
    assert account.key == ORG
    assert account.details == {
        "instance_url": INSTANCE,
        "org_id": ORG,
        "user_id": USER,
        "environment": "test",
        "username": "admin@acme.example",
    }
    assert account.user_email == "admin@acme.example"


def test_identify_refuses_an_id_url_without_org_and_user() -> None:
    with pytest.raises(Permanent, match="invalid_identity_url"):
        sf.identify(
            TokenSet(
                access_token=SF_TOKEN, instance_url=INSTANCE, identity_url="https://login.salesforce.com/id/"
            )
        )


@responses.activate
def test_refresh_invalid_grant_is_auth_revoked(real_hosts) -> None:  # type: ignore[no-untyped-def]
    responses.post(
        "https://login.salesforce.com/services/oauth2/token",
        status=400,
        json={"error": "invalid_grant", "error_description": "expired access/refresh token"},
    )
    with pytest.raises(AuthRevoked):
        sf.refresh("5Aep861-dead")


@responses.activate
def test_refresh_returns_a_new_access_token_and_no_refresh_token(real_hosts) -> None:  # type: ignore[no-untyped-def]
    body = token_body()
    del body["refresh_token"]
    responses.post("https://login.salesforce.com/services/oauth2/token", json=body)
    tokens = sf.refresh("5Aep861-refresh")
    assert tokens.access_token == SF_TOKEN
    assert tokens.refresh_token is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"error": "invalid_client", "error_description": "invalid client credentials"}, "invalid_client"),
        (
            {"error": "invalid_grant", "error_description": "invalid authorization code"},
            "invalid_authorization_code",
        ),
        (
            {"error": "unsupported_grant_type", "error_description": "grant type not supported"},
            "unsupported_grant_type",
        ),
    ],
)
@responses.activate
def test_oauth_errors_on_code_exchange_are_permanent(real_hosts, body: dict[str, str], code: str) -> None:  # type: ignore[no-untyped-def]
    responses.post("https://login.salesforce.com/services/oauth2/token", status=400, json=body)
    with pytest.raises(Permanent) as err:
        sf.exchange_code(code="c", redirect_uri="https://conduit.example/cb")
    assert err.value.code == code
    assert not isinstance(err.value, AuthRevoked)


@responses.activate
def test_token_response_without_instance_url_is_refused(real_hosts) -> None:  # type: ignore[no-untyped-def]
    responses.post("https://login.salesforce.com/services/oauth2/token", json={"access_token": SF_TOKEN})
    with pytest.raises(Permanent, match="invalid_token_response"):
        sf.refresh("r")


def test_missing_client_credentials_refuse_before_any_call(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SALESFORCE_CLIENT_ID = ""
    with pytest.raises(Permanent, match="not_configured"):
        sf.refresh("r")


@responses.activate
def test_revoke_posts_the_token_to_the_environment_host(real_hosts) -> None:  # type: ignore[no-untyped-def]
    responses.post("https://test.salesforce.com/services/oauth2/revoke", status=200)
    sf.revoke("5Aep861-refresh", environment="test")
    assert parse_qs(responses.calls[0].request.body) == {"token": ["5Aep861-refresh"]}


@responses.activate
def test_contact_lookup_is_a_quoted_soql_query() -> None:
    responses.get(
        f"{REST}/query",
        json={"totalSize": 1, "done": True, "records": [{"attributes": {"type": "Contact"}, "Id": "003A"}]},
    )
    assert sf.find_contact(salesforce_account(), "o'brien@acme.example") == "003A"
    q = parse_qs(urlsplit(responses.calls[0].request.url).query)["q"][0]
    assert q == "SELECT Id, Name, Email FROM Contact WHERE Email = 'o\\'brien@acme.example' LIMIT 1"
    assert soql_quote("a\\'b") == "'a\\\\\\'b'"


@responses.activate
def test_open_opportunity_lookup_and_no_match() -> None:
    responses.get(
        f"{REST}/query", json={"totalSize": 1, "done": True, "records": [{"OpportunityId": "006A"}]}
    )
    responses.get(f"{REST}/query", json={"totalSize": 0, "done": True, "records": []})
    assert sf.find_open_deal(salesforce_account(), "003A") == "006A"
    assert sf.find_open_deal(salesforce_account(), "003B") is None
    q = parse_qs(urlsplit(responses.calls[0].request.url).query)["q"][0]
    assert "FROM OpportunityContactRole WHERE ContactId = '003A' AND Opportunity.IsClosed = false" in q


@responses.activate
def test_task_sets_whoid_contact_and_whatid_opportunity() -> None:
    responses.post(f"{REST}/sobjects/Task", status=201, json={"id": "00T1", "success": True, "errors": []})
    assert sf.create_task(salesforce_account(), activity("003A", "006A")) == "00T1"
    sent = json.loads(responses.calls[0].request.body)
    assert sent == {
        "Subject": f"Re: pricing for the annual plan [{MARKER}]",
        "Description": activity("003A").text,
        "WhoId": "003A",
        "WhatId": "006A",
        "ActivityDate": "2026-11-16",
        "Status": "Not Started",
        "Priority": "Normal",
    }
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {SF_TOKEN}"


@responses.activate
def test_note_is_a_completed_task_without_whatid_when_no_opportunity() -> None:
    responses.post(f"{REST}/sobjects/Task", status=201, json={"id": "00T2", "success": True, "errors": []})
    sf.create_note(salesforce_account(), activity("003A"))
    sent = json.loads(responses.calls[0].request.body)
    assert sent["Status"] == "Completed"
    assert "WhatId" not in sent


@responses.activate
def test_create_response_without_id_is_refused() -> None:
    responses.post(f"{REST}/sobjects/Task", status=201, json={"success": False})
    with pytest.raises(Permanent, match="invalid_create_response"):
        sf.create_task(salesforce_account(), activity("003A"))


@responses.activate
def test_invalid_session_401_is_token_expired() -> None:
    responses.get(
        f"{REST}/query",
        status=401,
        json=[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
    )
    with pytest.raises(TokenExpired) as err:
        sf.find_contact(salesforce_account(), "a@b.example")
    assert err.value.code == "invalid_session_id"


@responses.activate
def test_rest_session_without_api_scope_is_missing_scope() -> None:
    responses.get(
        f"{REST}/query",
        status=403,
        json=[
            {
                "message": "This session is not valid for use with the REST API",
                "errorCode": "INVALID_SESSION_ID",
            }
        ],
    )
    with pytest.raises(MissingScope) as err:
        sf.find_contact(salesforce_account(), "a@b.example")
    assert err.value.missing == ["api"]


@responses.activate
def test_request_limit_exceeded_is_rate_limited_and_blocks_the_org(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SALESFORCE_DAILY_PAUSE_SECONDS = 900
    responses.get(
        f"{REST}/query",
        status=403,
        json=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
    )
    with pytest.raises(RateLimited) as err:
        sf.find_contact(salesforce_account(), "a@b.example")
    assert err.value.retry_after == 900
    with pytest.raises(RateLimited) as again:
        sf.find_contact(salesforce_account(), "a@b.example")
    assert again.value.code == "local_rate_limit"
    assert len(responses.calls) == 1


@responses.activate
def test_validation_400_is_permanent_with_fields() -> None:
    responses.post(
        f"{REST}/sobjects/Task",
        status=400,
        json=[
            {
                "message": "Contact ID: id value of incorrect type: 001X",
                "errorCode": "MALFORMED_ID",
                "fields": ["WhoId"],
            }
        ],
    )
    with pytest.raises(Permanent) as err:
        sf.create_task(salesforce_account(), activity("001X"))
    assert err.value.code == "malformed_id"
    assert err.value.details == {"errorCode": "MALFORMED_ID", "fields": ["WhoId"]}


@responses.activate
def test_server_errors_are_transient() -> None:
    responses.get(f"{REST}/query", status=503, json=[{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}])
    with pytest.raises(Transient):
        sf.find_contact(salesforce_account(), "a@b.example")


@responses.activate
def test_limit_info_header_is_tracked_and_pauses_writes_at_80_percent() -> None:
    responses.get(
        f"{REST}/query", json={"records": []}, headers={"Sforce-Limit-Info": "api-usage=80000/100000"}
    )
    responses.post(f"{REST}/sobjects/Task", status=201, json={"id": "00T9"})
    account = salesforce_account()
    sf.find_contact(account, "a@b.example")
    assert get_limiter().daily_usage("salesforce", account.account_key) == (80000, 100000)
    with pytest.raises(RateLimited) as err:
        sf.create_task(account, activity("003A"))
    assert err.value.code == "daily_budget_paused"
    assert len(responses.calls) == 1  # the write was never sent
    # reads still go through
    sf.find_contact(account, "a@b.example")


@responses.activate
def test_below_the_pause_ratio_writes_go_through() -> None:
    responses.get(
        f"{REST}/query",
        json={"records": []},
        headers={"Sforce-Limit-Info": "api-usage=79999/100000; api-bursts=1/750"},
    )
    responses.post(f"{REST}/sobjects/Task", status=201, json={"id": "00T9"})
    account = salesforce_account()
    sf.find_contact(account, "a@b.example")
    assert sf.create_task(account, activity("003A")) == "00T9"


@responses.activate
def test_health_uses_userinfo_and_reports_daily_usage() -> None:
    responses.get(f"{REST}/query", json={"records": []}, headers={"Sforce-Limit-Info": "api-usage=10/100"})
    responses.get(f"{INSTANCE}/services/oauth2/userinfo", json={"organization_id": ORG})
    account = salesforce_account()
    sf.find_contact(account, "a@b.example")
    result = sf.check_health(account)
    assert result.details == {"org_id": ORG, "api_usage": {"used": 10, "limit": 100}}


@responses.activate
def test_request_limit_with_retry_after_zero_is_not_the_default_pause() -> None:
    responses.get(
        f"{REST}/query",
        status=403,
        json=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
        headers={"Retry-After": "0"},
    )
    with pytest.raises(RateLimited) as err:
        sf.find_contact(salesforce_account(), "a@b.example")
    assert err.value.retry_after == 0


@responses.activate
def test_find_write_looks_for_the_marker_in_the_subject_of_the_contacts_tasks() -> None:
    responses.get(f"{REST}/query", json={"totalSize": 1, "done": True, "records": [{"Id": "00T9"}]})
    responses.get(f"{REST}/query", json={"totalSize": 0, "done": True, "records": []})
    assert sf.find_write(salesforce_account(), "create_note", activity("003'A")) == "00T9"
    assert sf.find_write(salesforce_account(), "create_task", activity("003A")) is None
    queries = [parse_qs(urlsplit(c.request.url).query)["q"][0] for c in responses.calls]
    assert queries == [
        f"SELECT Id FROM Task WHERE WhoId = '003\\'A' AND Subject LIKE '%{MARKER}%' LIMIT 1",
        f"SELECT Id FROM Task WHERE WhoId = '003A' AND Subject LIKE '%{MARKER}%' LIMIT 1",
    ]


def test_subject_ends_with_the_marker_and_fits_255_characters() -> None:
    long_subject = activity("003A", subject="Re: " + "x" * 400, marker="cdw" + "e" * 24)
    subject = sf.write_payload("create_task", long_subject)["Subject"]
    assert len(subject) == 255 and subject.endswith(" [cdw" + "e" * 24 + "]")
    assert subject.startswith("Re: xxx")
    already = activity("003A", subject=f"Call back [{MARKER}]")
    assert sf.write_payload("create_note", already)["Subject"] == f"Call back [{MARKER}]"


def test_write_payload_is_a_completed_task_for_a_note() -> None:
    planned = activity("003A", "006A")
    assert sf.write_payload("create_note", planned) == sf.task_payload(planned, completed=True)
    assert sf.write_payload("create_task", planned) == sf.task_payload(planned, completed=False)
