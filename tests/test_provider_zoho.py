"""Zoho CRM client against `responses` mocks shaped from provider-facts.md and docs/connectors.md:
data-centre checks (SSRF), OAuth at the account's accounts server, error mapping, credits and
concurrency, writes and their markers, the incremental pull, and secret hygiene."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.utils import timezone

from conduit.secrets_scan import looks_secret_value, redact_text
from conduit.tenancy import system_scope
from integrations.models import SyncLog
from integrations.providers import get_provider
from integrations.providers.base import Account, TokenSet
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
from integrations.providers.synclog import CallContext
from integrations.providers.zoho import api_bucket, covers, granted_scopes
from integrations.providers.zoho_coql import changed_where, coql_quote
from integrations.providers.zoho_domains import validate_accounts_server, validate_api_domain
from tests.provider_helpers import MARKER, activity

pytestmark = pytest.mark.django_db
zoho = get_provider("zoho")
US_ACCOUNTS = "https://accounts.zoho.com"
EU_ACCOUNTS = "https://accounts.zoho.eu"
EU_API = "https://www.zohoapis.eu"
CRM = f"{EU_API}/crm/v7"
ZH_TOKEN = "1000.zoho-access-token-0123456789abcdef"
REFRESH = "1000.zoho-refresh-token-fedcba9876543210"
ORG = "7700000000000010001"
CONTACT, DEAL = "5725767000000410001", "5725767000000420001"
REDIRECT = "https://conduit.example/integrations/oauth/callback/zoho/"
SSRF = [
    "https://accounts.zoho.evil.com",
    "https://accounts.zoho.eu@evil.com",
    "https://accounts.zoho.eu:8443",
    "http://accounts.zoho.eu",
    "https://evil.com/accounts.zoho.eu",
    "https://accounts.zoho.eu.evil.com",
    "https://evil.com#.zoho.eu",
    "https://evil.com?.zoho.eu",
    "https://user:pw@accounts.zoho.eu",
    "https://accounts.zoho.eu/oauth",
    "https://accounts.zoho.eu:notaport",
    "https://accounts.zoho.eu\\.evil.com",
    "https://accounts.zoho.eu .evil.com",
    "ftp://accounts.zoho.eu",
    "https://127.0.0.1",
    "https://zoho.eu",
    "javascript:alert(1)",
]


@pytest.fixture(autouse=True)
def real_zoho(settings: Any) -> None:
    """Zoho's real hosts, no sandbox origin trusted (as in production)."""
    settings.ZOHO_ACCOUNTS_URL = US_ACCOUNTS
    settings.ZOHO_EXTRA_ORIGINS = []
    settings.ZOHO_CLIENT_ID, settings.ZOHO_CLIENT_SECRET = "zoho-client-id", "zoho-client-secret-value"


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def account(**ctx: Any) -> Account:
    return Account(
        "zoho", ZH_TOKEN, ORG, instance_url=EU_API, environment=EU_ACCOUNTS, context=CallContext(**ctx)
    )


def token_body(**extra: Any) -> dict[str, Any]:
    return {
        "access_token": ZH_TOKEN,
        "refresh_token": REFRESH,
        "scope": ",".join(zoho.required_scopes),
        "api_domain": EU_API,
        "token_type": "Bearer",
        "expires_in": 3600,
        **extra,
    }


def zoho_error(code: str, message: str = "error", **details: Any) -> dict[str, Any]:
    return {"code": code, "details": details, "message": message, "status": "error"}


def form_of(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


# --- the data centre: accounts server and API domain (SSRF) -------------------------------------


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://accounts.zoho.com", "https://accounts.zoho.com"),
        ("https://accounts.zoho.eu", "https://accounts.zoho.eu"),
        ("https://accounts.zoho.in", "https://accounts.zoho.in"),
        ("https://accounts.zoho.com.au", "https://accounts.zoho.com.au"),
        ("https://accounts.zoho.jp", "https://accounts.zoho.jp"),
        ("https://accounts.zoho.com.cn", "https://accounts.zoho.com.cn"),
        ("https://accounts.zoho.sa", "https://accounts.zoho.sa"),
        ("https://accounts.zohocloud.ca", "https://accounts.zohocloud.ca"),
        ("https://ACCOUNTS.Zoho.EU.", "https://accounts.zoho.eu"),
        ("https://accounts.zoho.eu:443/", "https://accounts.zoho.eu"),
    ],
)
def test_zoho_accounts_servers_are_accepted_and_normalised(url: str, origin: str) -> None:
    assert validate_accounts_server(url) == origin


@pytest.mark.parametrize(
    "url",
    [
        "https://www.zohoapis.com",
        "https://www.zohoapis.eu",
        "https://www.zohoapis.in",
        "https://www.zohoapis.com.au",
        "https://www.zohoapis.jp",
        "https://www.zohoapis.com.cn",
        "https://www.zohoapis.sa",
        "https://www.zohoapis.ca",
        "https://sandbox.zohoapis.com",
    ],
)
def test_zoho_api_domains_are_accepted(url: str) -> None:
    assert validate_api_domain(url) == url


@pytest.mark.parametrize("url", SSRF)
def test_a_foreign_accounts_server_in_the_callback_is_refused_with_no_request(
    mock: responses.RequestsMock, url: str
) -> None:
    with pytest.raises(InvalidInstanceUrl) as refused:
        zoho.callback_environment({"code": "c", "location": "eu", "accounts-server": url}, "login")
    assert refused.value.code == "invalid_accounts_server"
    for call in (
        lambda: zoho.exchange_code(code="the-code", redirect_uri=REDIRECT, environment=url),
        lambda: zoho.refresh(REFRESH, environment=url),
        lambda: zoho.revoke(REFRESH, environment=url),
    ):
        with pytest.raises(InvalidInstanceUrl):
            call()
    assert len(mock.calls) == 0  # not one request: no code, no token left Conduit


@pytest.mark.parametrize("url", [u.replace("accounts.zoho", "www.zohoapis") for u in SSRF])
def test_no_token_is_sent_to_a_foreign_api_domain(mock: responses.RequestsMock, url: str) -> None:
    foreign = Account("zoho", ZH_TOKEN, ORG, instance_url=url)
    for call in (
        lambda: zoho.check_health(foreign),
        lambda: zoho.find_contact(foreign, "maya@acme.example"),
        lambda: zoho.create_note(foreign, activity(CONTACT)),
        lambda: zoho.identify(TokenSet(access_token=ZH_TOKEN, instance_url=url)),
    ):
        with pytest.raises(InvalidInstanceUrl) as refused:
            call()
        assert refused.value.code == "invalid_api_domain"
    assert len(mock.calls) == 0


def test_a_token_response_naming_a_foreign_api_domain_is_refused(mock: responses.RequestsMock) -> None:
    mock.post(f"{EU_ACCOUNTS}/oauth/v2/token", json=token_body(api_domain="https://www.zohoapis.eu.evil.com"))
    with pytest.raises(InvalidInstanceUrl):
        zoho.exchange_code(code="c", redirect_uri=REDIRECT, environment=EU_ACCOUNTS)
    assert len(mock.calls) == 1  # only the exchange; nothing went to the foreign host


def test_the_callback_names_the_data_centre_or_keeps_the_start() -> None:
    assert (
        zoho.callback_environment({"location": "eu", "accounts-server": EU_ACCOUNTS}, "login") == EU_ACCOUNTS
    )
    assert zoho.callback_environment({"code": "c"}, "login") == "login"
    with pytest.raises(InvalidInstanceUrl) as refused:
        zoho.callback_environment({"location": "eu'; drop", "accounts-server": EU_ACCOUNTS}, "login")
    assert refused.value.code == "invalid_location"


def test_the_sandbox_origin_is_trusted_only_when_configured(settings: Any) -> None:
    with pytest.raises(InvalidInstanceUrl):
        validate_accounts_server("http://127.0.0.1:8703")
    settings.ZOHO_EXTRA_ORIGINS = ["http://127.0.0.1:8703"]
    assert validate_accounts_server("http://127.0.0.1:8703") == "http://127.0.0.1:8703"
    with pytest.raises(InvalidInstanceUrl):
        validate_accounts_server("http://evil@127.0.0.1:8703")  # userinfo is refused even there


# --- OAuth ---------------------------------------------------------------------------------------


def test_authorize_url_asks_for_offline_access_and_a_fresh_consent() -> None:
    url = zoho.authorize_url(state="s-1", redirect_uri=REDIRECT, code_challenge="ignored")
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{US_ACCOUNTS}/oauth/v2/auth"
    assert query == {
        "response_type": "code",
        "client_id": "zoho-client-id",
        "scope": ",".join(zoho.required_scopes),
        "redirect_uri": REDIRECT,
        "access_type": "offline",
        "prompt": "consent",
        "state": "s-1",
    }
    assert not zoho.supports_pkce and "code_challenge" not in query


def test_missing_client_credentials_refuse_before_any_call(
    settings: Any, mock: responses.RequestsMock
) -> None:
    settings.ZOHO_CLIENT_SECRET = ""
    for call in (
        lambda: zoho.authorize_url(state="s", redirect_uri=REDIRECT),
        lambda: zoho.refresh(REFRESH, environment=EU_ACCOUNTS),
    ):
        with pytest.raises(Permanent) as refused:
            call()
        assert refused.value.code == "not_configured"
    assert len(mock.calls) == 0


def test_the_code_is_exchanged_at_the_data_centre_named_by_the_callback(mock: responses.RequestsMock) -> None:
    mock.post(f"{EU_ACCOUNTS}/oauth/v2/token", json=token_body())
    before = timezone.now()
    tokens = zoho.exchange_code(code="the-code", redirect_uri=REDIRECT, environment=EU_ACCOUNTS)
    (call,) = mock.calls
    assert form_of(call) == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": REDIRECT,
        "client_id": "zoho-client-id",
        "client_secret": "zoho-client-secret-value",
    }
    assert (tokens.access_token, tokens.refresh_token, tokens.instance_url) == (ZH_TOKEN, REFRESH, EU_API)
    assert tokens.scopes == zoho.required_scopes
    assert tokens.expires_at is not None
    assert before + timedelta(seconds=3590) < tokens.expires_at <= timezone.now() + timedelta(seconds=3600)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"access_token": ZH_TOKEN}, "invalid_token_response"),  # no api_domain
        ({"api_domain": EU_API}, "invalid_token_response"),  # no token
        (["not", "an", "object"], "invalid_token_response"),
        ({"error": "invalid_code"}, "invalid_authorization_code"),
        ({"error": "invalid_client"}, "invalid_client"),
        ({"error": "invalid_client_secret"}, "invalid_client"),
        ({"error": "invalid_redirect_uri"}, "invalid_redirect_uri"),
    ],
)
def test_a_refused_or_incomplete_code_exchange_is_permanent(
    mock: responses.RequestsMock, body: Any, code: str
) -> None:
    mock.post(f"{EU_ACCOUNTS}/oauth/v2/token", json=body)
    with pytest.raises(Permanent) as refused:
        zoho.exchange_code(code="c", redirect_uri=REDIRECT, environment=EU_ACCOUNTS)
    assert refused.value.code == code


def test_token_answers_without_scope_mean_the_requested_scopes() -> None:
    assert granted_scopes("ZohoCRM.org.READ,ZohoCRM.coql.READ ZohoCRM.modules.ALL") == (
        "ZohoCRM.org.READ",
        "ZohoCRM.coql.READ",
        "ZohoCRM.modules.ALL",
    )
    assert granted_scopes(None) == ()


@pytest.mark.parametrize(
    ("granted", "missing"),
    [
        (["ZohoCRM.modules.ALL", "ZohoCRM.coql.READ", "ZohoCRM.org.ALL"], []),
        (
            ["ZohoCRM.modules.READ", "ZohoCRM.modules.notes.CREATE", "zohocrm.modules.TASKS.all"],
            ["ZohoCRM.coql.READ", "ZohoCRM.org.READ"],
        ),
        (["ZohoCRM.modules.contacts.READ"], list(zoho.required_scopes[1:])),
        ([], list(zoho.required_scopes)),
    ],
)
def test_a_grant_covers_a_scope_by_itself_its_module_or_service_wide(
    granted: list[str], missing: list[str]
) -> None:
    assert zoho.missing_scopes(granted) == missing


def test_covers_needs_at_least_the_service_name() -> None:
    assert not covers({"all"}, "ZohoCRM.org.READ")
    assert covers({"zohocrm.org.all"}, "ZohoCRM.org.READ")


def test_refresh_goes_to_the_accounts_server_of_the_data_centre(mock: responses.RequestsMock) -> None:
    mock.post(f"{EU_ACCOUNTS}/oauth/v2/token", json=token_body(refresh_token=None, access_token="1000.new"))
    fresh = zoho.refresh(REFRESH, environment=EU_ACCOUNTS)
    (call,) = mock.calls
    assert call.request.url == f"{EU_ACCOUNTS}/oauth/v2/token"
    assert form_of(call)["grant_type"] == "refresh_token" and form_of(call)["refresh_token"] == REFRESH
    assert (fresh.access_token, fresh.refresh_token, fresh.instance_url) == ("1000.new", None, EU_API)


def test_a_connection_without_a_named_data_centre_refreshes_at_zoho_accounts_url(
    mock: responses.RequestsMock,
) -> None:
    mock.post(f"{US_ACCOUNTS}/oauth/v2/token", json={"access_token": "1000.new", "expires_in": 3600})
    fresh = zoho.refresh(REFRESH, environment="login")
    assert fresh.instance_url == "" and mock.calls[0].request.url.startswith(US_ACCOUNTS)


@pytest.mark.parametrize("status", [200, 400])
def test_a_revoked_refresh_token_is_auth_revoked_and_logged_failed(
    mock: responses.RequestsMock, alice: Any, status: int
) -> None:
    mock.post(f"{EU_ACCOUNTS}/oauth/v2/token", status=status, json={"error": "invalid_code"})
    with pytest.raises(AuthRevoked) as revoked:
        zoho.refresh(REFRESH, environment=EU_ACCOUNTS, context=CallContext(workspace_id=alice.workspace.pk))
    assert revoked.value.code == "refresh_token_revoked"
    with system_scope():
        row = SyncLog.objects.get()
    assert (row.provider, row.operation, row.status, row.error_code, row.http_status) == (
        "zoho",
        "refresh",
        "FAILED",
        "refresh_token_revoked",
        status,
    )


def test_throttled_token_requests_are_rate_limited(mock: responses.RequestsMock) -> None:
    body = {
        "error": "Access Denied",
        "error_description": "You have made too many requests continuously. Please try again later.",
        "status": "failure",
    }
    mock.post(f"{EU_ACCOUNTS}/oauth/v2/token", status=400, json=body)
    with pytest.raises(RateLimited) as limited:
        zoho.refresh(REFRESH, environment=EU_ACCOUNTS)
    assert limited.value.code == "token_requests_throttled" and limited.value.retry_after == 60
    mock.post(f"{EU_ACCOUNTS}/oauth/v2/token", status=400, json={"error": "Access Denied"})
    with pytest.raises(Permanent) as denied:
        zoho.refresh(REFRESH, environment=EU_ACCOUNTS)
    assert denied.value.code == "access_denied"


def test_revoke_names_the_token_at_the_data_centre(mock: responses.RequestsMock) -> None:
    mock.post(re.compile(rf"{re.escape(EU_ACCOUNTS)}/oauth/v2/token/revoke.*"), json={"status": "success"})
    zoho.revoke(REFRESH, environment=EU_ACCOUNTS)
    (call,) = mock.calls
    assert parse_qs(urlsplit(call.request.url).query) == {"token": [REFRESH]}
    mock.post(
        re.compile(rf"{re.escape(EU_ACCOUNTS)}/oauth/v2/token/revoke.*"), json={"error": "invalid_token"}
    )
    with pytest.raises(Permanent) as refused:
        zoho.revoke(REFRESH, environment=EU_ACCOUNTS)
    assert refused.value.code == "invalid_token" and REFRESH not in str(refused.value)


def test_identify_names_the_org_and_the_data_centre(mock: responses.RequestsMock) -> None:
    org = {"id": ORG, "company_name": "Acme GmbH", "zgid": "60012345", "primary_email": "boss@acme.example"}
    mock.get(f"{CRM}/org", json={"org": [org]})
    tokens = TokenSet(access_token=ZH_TOKEN, instance_url=EU_API, scopes=zoho.required_scopes)
    found = zoho.identify(tokens, environment=EU_ACCOUNTS)
    assert found.key == ORG
    assert found.details == {
        "org_id": ORG,
        "org_name": "Acme GmbH",
        "zgid": "60012345",
        "data_centre": "accounts.zoho.eu",
    }
    assert found.user_email == "" and found.scopes == zoho.required_scopes
    assert mock.calls[0].request.headers["Authorization"] == f"Zoho-oauthtoken {ZH_TOKEN}"


@pytest.mark.parametrize(
    "body", [{"org": []}, {"org": {"id": ORG}}, {"org": [{"company_name": "x"}]}, ["not", "an", "object"], {}]
)
def test_an_org_answer_without_an_id_is_refused(mock: responses.RequestsMock, body: Any) -> None:
    mock.get(f"{CRM}/org", json=body)
    with pytest.raises(Permanent) as refused:
        zoho.check_health(account())
    assert refused.value.code == "invalid_org_response"


# --- reads ---------------------------------------------------------------------------------------


def test_health_is_one_org_read_paced_by_the_org(mock: responses.RequestsMock) -> None:
    mock.get(f"{CRM}/org", json={"org": [{"id": ORG}]})
    result = zoho.check_health(account())
    assert result.details == {"org_id": ORG, "api_domain": "www.zohoapis.eu"}
    assert mock.calls[0].request.headers["Authorization"] == f"Zoho-oauthtoken {ZH_TOKEN}"
    assert get_limiter().headroom(zoho.api_bucket(), ORG)["remaining"] == api_bucket().limit - 1


def test_contact_search_by_email_and_no_content_means_none(mock: responses.RequestsMock) -> None:
    mock.get(f"{CRM}/Contacts/search", json={"data": [{"id": CONTACT, "Email": "maya@acme.example"}]})
    mock.get(f"{CRM}/Contacts/search", status=204)
    assert zoho.find_contact(account(), "maya@acme.example") == CONTACT
    assert zoho.find_contact(account(), "nobody@acme.example") is None
    assert [parse_qs(urlsplit(c.request.url).query)["email"] for c in mock.calls] == [
        ["maya@acme.example"],
        ["nobody@acme.example"],
    ]


def test_open_deal_is_one_coql_query_on_the_contact(mock: responses.RequestsMock) -> None:
    mock.post(f"{CRM}/coql", json={"data": [{"id": DEAL, "Stage": "Qualification"}], "info": {"count": 1}})
    mock.post(f"{CRM}/coql", status=204)
    assert zoho.find_open_deal(account(), CONTACT) == DEAL
    assert zoho.find_open_deal(account(), "57'25") is None
    queries = [json.loads(c.request.body)["select_query"] for c in mock.calls]
    assert queries == [
        f"select id, Stage, Modified_Time from Deals where (Contact_Name = '{CONTACT}' and "
        "Stage not like 'Closed%') order by Modified_Time desc limit 1",
        "select id, Stage, Modified_Time from Deals where (Contact_Name = '57\\'25' and "
        "Stage not like 'Closed%') order by Modified_Time desc limit 1",
    ]


def test_coql_values_are_quoted() -> None:
    assert coql_quote("a'b\\c") == "'a\\'b\\\\c'"


def test_changed_contacts_are_paged_by_modified_time_then_id(mock: responses.RequestsMock) -> None:
    rows = [
        {"id": "5725767000000410001", "Email": "a@x.example", "Modified_Time": "2026-11-16T10:00:00+01:00"},
        {"id": "5725767000000410002", "Email": None, "Modified_Time": "2026-11-16T10:00:00+01:00"},
    ]
    mock.post(f"{CRM}/coql", json={"data": rows, "info": {"more_records": True}})
    mock.post(f"{CRM}/coql", status=204)
    since = datetime(2026, 11, 16, 8, 30, tzinfo=UTC)
    page = zoho.changed_since(account(), "contact", since, None, 2)
    assert [(r.id, r.email, r.modified_at) for r in page.records] == [
        ("5725767000000410001", "a@x.example", datetime(2026, 11, 16, 9, 0, tzinfo=UTC)),
        ("5725767000000410002", "", datetime(2026, 11, 16, 9, 0, tzinfo=UTC)),
    ]
    assert page.next == "2026-11-16T09:00:00+00:00|5725767000000410002"
    last = zoho.changed_since(account(), "deal", since, page.next, 2)
    assert last.records == [] and last.next is None
    first, second = (json.loads(c.request.body)["select_query"] for c in mock.calls)
    assert first == (
        "select id, Email, Modified_Time from Contacts where Modified_Time >= '2026-11-16T08:30:00+00:00' "
        "order by Modified_Time asc, id asc limit 2"
    )
    assert second == (
        "select id, Modified_Time from Deals where (Modified_Time > '2026-11-16T09:00:00+00:00' or "
        "(Modified_Time = '2026-11-16T09:00:00+00:00' and id > '5725767000000410002')) "
        "order by Modified_Time asc, id asc limit 2"
    )
    assert [row.operation for row in sync_rows()] == ["pull_contacts", "pull_deals"]


def sync_rows() -> list[SyncLog]:
    with system_scope():
        return list(SyncLog.objects.order_by("id"))


def test_changed_where_without_a_page_token_starts_at_since() -> None:
    since = datetime(2026, 1, 1, 1, 2, 3, 999, tzinfo=UTC)
    assert changed_where(since, None) == "Modified_Time >= '2026-01-01T01:02:03+00:00'"


@pytest.mark.parametrize(
    "row", [{"id": "1"}, {"Modified_Time": "2026-01-01T00:00:00Z"}, {"id": "1", "Modified_Time": "yesterday"}]
)
def test_a_changed_record_without_id_or_time_is_refused(
    mock: responses.RequestsMock, row: dict[str, str]
) -> None:
    mock.post(f"{CRM}/coql", json={"data": [row]})
    with pytest.raises(Permanent) as refused:
        zoho.changed_since(account(), "contact", timezone.now(), None, 5)
    assert refused.value.code == "invalid_query_response"


# --- writes and their markers --------------------------------------------------------------------


def created(record_id: str) -> dict[str, Any]:
    return {
        "data": [
            {"code": "SUCCESS", "details": {"id": record_id}, "message": "record added", "status": "success"}
        ]
    }


def test_a_note_hangs_on_the_open_deal_or_else_the_contact(mock: responses.RequestsMock) -> None:
    mock.post(f"{CRM}/Notes", status=201, json=created("5725767000000600001"))
    assert zoho.create_note(account(), activity(CONTACT, DEAL)) == "5725767000000600001"
    assert zoho.create_note(account(), activity(CONTACT)) == "5725767000000600001"
    on_deal, on_contact = (json.loads(c.request.body)["data"][0] for c in mock.calls)
    assert (on_deal["Parent_Id"], on_deal["$se_module"]) == (DEAL, "Deals")
    assert (on_contact["Parent_Id"], on_contact["$se_module"]) == (CONTACT, "Contacts")
    assert on_deal["Note_Title"] == f"Re: pricing for the annual plan [{MARKER}]"
    assert on_deal["Note_Content"].endswith(f"[{MARKER}]") and on_deal["Note_Content"].count(MARKER) == 1


def test_a_long_subject_is_cut_so_the_marker_fits_the_note_title() -> None:
    record = zoho.write_payload("create_note", activity(CONTACT, subject="Re: " + "pricing " * 40))["data"][0]
    assert len(record["Note_Title"]) == 120 and record["Note_Title"].endswith(f" [{MARKER}]")
    task = zoho.write_payload("create_task", activity(CONTACT, subject="x" * 400))["data"][0]
    assert len(task["Subject"]) == 255 and task["Subject"].endswith(f" [{MARKER}]")


def test_a_task_names_the_contact_and_the_deal(mock: responses.RequestsMock) -> None:
    mock.post(f"{CRM}/Tasks", status=201, json=created("5725767000000700001"))
    due = datetime(2026, 11, 18, 23, 30, tzinfo=UTC)
    assert zoho.create_task(account(), activity(CONTACT, DEAL, due_at=due)) == "5725767000000700001"
    record = json.loads(mock.calls[0].request.body)["data"][0]
    assert record == {
        "Subject": f"Re: pricing for the annual plan [{MARKER}]",
        "Description": activity(CONTACT).text,
        "Due_Date": "2026-11-18",
        "Status": "Not Started",
        "Priority": "Normal",
        "Who_Id": {"id": CONTACT},
        "What_Id": {"id": DEAL},
        "$se_module": "Deals",
    }
    without_deal = zoho.write_payload("create_task", activity(CONTACT))["data"][0]
    assert "What_Id" not in without_deal and "$se_module" not in without_deal
    assert without_deal["Due_Date"] == "2026-11-16"


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (201, {"data": [{"code": "SUCCESS", "details": {}, "status": "success"}]}, "invalid_create_response"),
        (201, {"data": []}, "invalid_create_response"),
        (201, ["unexpected"], "invalid_create_response"),
        (
            202,
            {
                "data": [
                    {"code": "MANDATORY_NOT_FOUND", "details": {"api_name": "Subject"}, "status": "error"}
                ]
            },
            "mandatory_not_found",
        ),
        (400, {"data": [zoho_error("INVALID_DATA", "invalid data", api_name="Who_Id")]}, "invalid_data"),
        (
            400,
            {"data": [zoho_error("LIMIT_EXCEEDED", "limit exceeded", api_name="Subject")]},
            "limit_exceeded",
        ),
        (403, zoho_error("NO_PERMISSION", "permission denied"), "no_permission"),
        (404, None, "http_404"),
    ],
)
def test_refused_writes_are_permanent(
    mock: responses.RequestsMock, alice: Any, status: int, body: Any, code: str
) -> None:
    if body is None:
        mock.post(f"{CRM}/Tasks", status=status, body="<html>not found</html>")
    else:
        mock.post(f"{CRM}/Tasks", status=status, json=body)
    with pytest.raises(Permanent) as refused:
        zoho.create_task(account(workspace_id=alice.workspace.pk), activity(CONTACT))
    assert refused.value.code == code
    (row,) = sync_rows()
    assert (row.operation, row.status, row.error_code) == ("create_task", "FAILED", code)


def test_find_write_reads_the_parents_notes_newest_first(mock: responses.RequestsMock) -> None:
    notes = [
        {"id": "5725767000000600002", "Note_Title": "Other", "Note_Content": "no marker"},
        {"id": "5725767000000600001", "Note_Title": "Re: x", "Note_Content": f"summary [{MARKER}]"},
    ]
    mock.get(re.compile(rf"{re.escape(CRM)}/Deals/{DEAL}/Notes.*"), json={"data": notes})
    mock.get(re.compile(rf"{re.escape(CRM)}/Contacts/{CONTACT}/Notes.*"), status=204)
    assert zoho.find_write(account(), "create_note", activity(CONTACT, DEAL)) == "5725767000000600001"
    assert zoho.find_write(account(), "create_note", activity(CONTACT)) is None
    query = parse_qs(urlsplit(mock.calls[0].request.url).query)
    assert query == {
        "fields": ["Note_Title,Note_Content"],
        "per_page": ["200"],
        "sort_by": ["Created_Time"],
        "sort_order": ["desc"],
    }


def test_find_write_looks_for_a_task_by_the_marker_in_its_subject(mock: responses.RequestsMock) -> None:
    mock.post(f"{CRM}/coql", json={"data": [{"id": "5725767000000700001"}]})
    assert zoho.find_write(account(), "create_task", activity(CONTACT)) == "5725767000000700001"
    assert json.loads(mock.calls[0].request.body)["select_query"] == (
        f"select id from Tasks where (Who_Id = '{CONTACT}' and Subject like '%{MARKER}%') limit 1"
    )


# --- errors, credits and concurrency -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (401, zoho_error("INVALID_TOKEN", "invalid oauth token"), TokenExpired, "invalid_token"),
        (
            401,
            zoho_error("AUTHENTICATION_FAILURE", "Authentication failed"),
            TokenExpired,
            "authentication_failure",
        ),
        (401, None, TokenExpired, "http_401"),
        (401, zoho_error("OAUTH_SCOPE_MISMATCH", "invalid oauth scope"), MissingScope, "missing_scope"),
        (400, zoho_error("INVALID_URL_PATTERN", "check the URL"), Permanent, "invalid_url_pattern"),
        (500, zoho_error("INTERNAL_ERROR", "Internal Server Error"), Transient, "http_500"),
        (503, None, Transient, "http_503"),
    ],
)
def test_zoho_error_shapes_map_to_the_closed_set(
    mock: responses.RequestsMock, status: int, body: Any, error: type[Exception], code: str
) -> None:
    mock.get(f"{CRM}/Contacts/search", status=status, **({"json": body} if body else {"body": "oops"}))
    with pytest.raises(error) as raised:
        zoho.find_contact(account(), "maya@acme.example")
    assert getattr(raised.value, "code", None) == code
    if isinstance(raised.value, MissingScope):
        assert raised.value.missing == ["ZohoCRM.modules.contacts.READ"]


@pytest.mark.parametrize(
    ("status", "body", "headers", "code", "wait"),
    [
        (429, zoho_error("TOO_MANY_REQUESTS", "concurrency limit exceeded"), {}, "rate_limited", 5),
        (429, zoho_error("LIMIT_EXCEEDED", "API credits exhausted"), {}, "rate_limited", 3600),
        (429, zoho_error("TOO_MANY_REQUESTS", "your credit limit is reached"), {}, "rate_limited", 3600),
        (429, zoho_error("TOO_MANY_REQUESTS", "busy"), {"Retry-After": "7"}, "rate_limited", 7),
        (400, zoho_error("LIMIT_EXCEEDED", "API credits exhausted"), {}, "credits_exhausted", 3600),
        (400, zoho_error("TOO_MANY_REQUESTS", "too many concurrent calls"), {}, "concurrency_limit", 5),
    ],
)
def test_credits_and_concurrency_are_rate_limited_and_block_the_org(
    mock: responses.RequestsMock,
    settings: Any,
    status: int,
    body: Any,
    headers: dict[str, str],
    code: str,
    wait: float,
) -> None:
    settings.CONDUIT_RATE_MAX_WAIT_SECONDS = 0
    mock.post(f"{CRM}/Notes", status=status, json=body, headers=headers)
    with pytest.raises(RateLimited) as limited:
        zoho.create_note(account(), activity(CONTACT))
    assert (limited.value.code, limited.value.retry_after) == (code, wait)
    assert 0 < get_limiter().headroom(api_bucket(), ORG)["blocked_for_seconds"] <= wait
    with pytest.raises(RateLimited) as held:  # every process now holds back: nothing is sent
        zoho.find_contact(account(), "maya@acme.example")
    assert held.value.code == "local_rate_limit" and len(mock.calls) == 1


def test_calls_are_paced_to_the_orgs_concurrency(mock: responses.RequestsMock, settings: Any) -> None:
    settings.CONDUIT_RATE_MAX_WAIT_SECONDS = 0
    settings.ZOHO_CONCURRENCY_LIMIT = 5  # budget 92%: 4 calls per second
    mock.get(f"{CRM}/Contacts/search", status=204)
    for _ in range(4):
        zoho.find_contact(account(), "maya@acme.example")
    with pytest.raises(RateLimited) as paced:
        zoho.find_contact(account(), "maya@acme.example")
    assert paced.value.code == "local_rate_limit" and len(mock.calls) == 4


# --- secrets ---------------------------------------------------------------------------------------


def test_the_zoho_auth_scheme_and_a_token_in_a_query_are_redacted() -> None:
    line = f"Authorization: Zoho-oauthtoken {ZH_TOKEN} POST /oauth/v2/token/revoke?token={REFRESH}&x=1"
    cleaned = redact_text(line)
    assert ZH_TOKEN not in cleaned and REFRESH not in cleaned and "&x=1" in cleaned
    assert redact_text(f"header Zoho-oauthtoken {ZH_TOKEN}") == "header Zoho-oauthtoken [redacted]"
    assert looks_secret_value(f"Zoho-oauthtoken {ZH_TOKEN}") and looks_secret_value(f"?token={REFRESH}")


def test_no_secret_reaches_logs_sync_logs_or_exceptions(
    mock: responses.RequestsMock, alice: Any, capture_json_logs: Any, settings: Any
) -> None:
    """Every failing Zoho path, with the provider echoing what it was sent; urllib3 at DEBUG."""
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    secret = settings.ZOHO_CLIENT_SECRET
    mock.post(
        f"{EU_ACCOUNTS}/oauth/v2/token",
        json={"error": "invalid_code", "error_description": f"bad {REFRESH} / {secret}"},
    )
    mock.post(
        re.compile(rf"{re.escape(EU_ACCOUNTS)}/oauth/v2/token/revoke.*"),
        status=500,
        json={"error": "server", "error_description": f"token={REFRESH}"},
    )
    mock.get(
        f"{CRM}/org", status=401, json=zoho_error("INVALID_TOKEN", f"Zoho-oauthtoken {ZH_TOKEN} refused")
    )
    mock.post(
        f"{CRM}/Notes", status=400, json={"data": [zoho_error("INVALID_DATA", f"access_token={ZH_TOKEN}")]}
    )
    ctx = {"workspace_id": alice.workspace.pk}
    errors: list[str] = []
    for call in (
        lambda: zoho.refresh(REFRESH, environment=EU_ACCOUNTS, context=CallContext(**ctx)),
        lambda: zoho.revoke(REFRESH, environment=EU_ACCOUNTS, context=CallContext(**ctx)),
        lambda: zoho.check_health(account(**ctx)),
        lambda: zoho.create_note(account(**ctx), activity(CONTACT)),
    ):
        try:
            call()
        except Exception as exc:
            errors.append(f"{exc!s} {exc!r}")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    summaries = [row.summary for row in sync_rows()]
    assert len(errors) == 4 and len(summaries) == 4
    haystack = "\n".join(errors + summaries + [str(line) for line in capture_json_logs()])
    for value in (ZH_TOKEN, REFRESH, secret):
        assert value not in haystack
