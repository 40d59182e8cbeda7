"""Workday client against `responses` mocks shaped from provider-facts.md and docs/connectors.md:
the host check (SSRF), the credentials form, the token endpoint (refresh grant, HTTP Basic client
auth, rotation, unknown tenant, refused credentials), the health read, error mapping, the refused
writes, and secret hygiene."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.utils import timezone

from conduit.tenancy import system_scope
from integrations.models import SyncLog
from integrations.providers.base import Account
from integrations.providers.errors import (
    AuthRevoked,
    InvalidInstanceUrl,
    MissingScope,
    Permanent,
    RateLimited,
    TokenExpired,
    Transient,
)
from integrations.providers.synclog import CallContext
from integrations.providers.workday import (
    DEFAULT_RETRY_AFTER,
    DEFAULT_TOKEN_SECONDS,
    WRITES_UNSUPPORTED,
    WorkdayProvider,
    api_bucket,
    make_bundle,
    read_bundle,
    workday_origin,
)
from tests.provider_helpers import MARKER, activity

pytestmark = pytest.mark.django_db
workday = WorkdayProvider()
HOST = "wd2-impl-services1.workday.com"
ORIGIN = f"https://{HOST}"
TENANT = "acme_impl"
TOKEN_URL = f"{ORIGIN}/ccx/oauth2/{TENANT}/token"
POSTINGS_URL = f"{ORIGIN}/ccx/api/recruiting/v4/{TENANT}/jobPostings"
CLIENT_ID = "MWYxZDc3ZjEtYmViNi00ZTQ5LWFhYzItY2xpZW50"
SECRET = "wd-client-secret-9f8e7d6c5b4a39281706"
REFRESH = "wd-refresh-token-0a1b2c3d4e5f60718293a4b5"
ACCESS = "wd-access-token-fedcba98765432100123456789"
KEY = f"{TENANT}@{HOST}"
FIELDS = {
    "host": HOST,
    "tenant": TENANT,
    "client_id": CLIENT_ID,
    "client_secret": SECRET,
    "refresh_token": REFRESH,
}
BUNDLE = make_bundle({**FIELDS, "host": ORIGIN})
SSRF = [
    "https://wd2.workday.com.evil.com",
    "https://evil.com/wd2.workday.com",
    "https://wd2.workday.com@evil.com",
    "wd2.workday.com@evil.com",
    "http://wd2.workday.com",
    "https://wd2.workday.com:8443",
    "wd2.workday.com:8443",
    "https://wd2.workday.com:notaport",
    "https://evil.com#.workday.com",
    "https://evil.com?.workday.com",
    "https://wd2.workday.com/ccx/oauth2",
    "wd2.workday.com\\.evil.com",
    "wd2.workday .com",
    "ftp://wd2.workday.com",
    "https://127.0.0.1",
    "https://[::1]",
    "workday.com",
    "https://evilworkday.com",
    "https://-bad-.workday.com",
    "https://wd2..workday.com",
    "javascript:alert(1)",
    "http://127.0.0.1:8709",
    "",
]


@pytest.fixture(autouse=True)
def real_workday(settings: Any) -> None:
    """No sandbox origin trusted (as in production)."""
    settings.WORKDAY_EXTRA_ORIGINS = []


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def account(**ctx: Any) -> Account:
    details = {"host": HOST, "tenant": TENANT}
    return Account("workday", ACCESS, KEY, instance_url=ORIGIN, context=CallContext(**ctx), details=details)


def token_body(**extra: Any) -> dict[str, Any]:
    return {
        "access_token": ACCESS,
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": REFRESH,
        **extra,
    }


def postings(total: int = 3) -> dict[str, Any]:
    return {"total": total, "data": [{"id": "7d3a2f0c", "title": "Senior Backend Engineer"}]}


def form_of(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


def basic(client_id: str = CLIENT_ID, secret: str = SECRET) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def sync_rows() -> list[SyncLog]:
    with system_scope():
        return list(SyncLog.objects.order_by("id"))


# --- the host (SSRF) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "origin"),
    [
        (HOST, ORIGIN),
        (f"https://{HOST}", ORIGIN),
        ("https://WD5-Services1.MyWorkday.com.", "https://wd5-services1.myworkday.com"),
        ("services1.wd503.myworkday.com", "https://services1.wd503.myworkday.com"),
        (f"https://{HOST}:443/", ORIGIN),
        ("  impl.workday.com  ", "https://impl.workday.com"),
        ("sharedgmspreview.workdaysuv.com", "https://sharedgmspreview.workdaysuv.com"),
    ],
)
def test_workday_hosts_are_accepted_and_normalised(value: str, origin: str) -> None:
    assert workday_origin(value) == origin


@pytest.mark.parametrize("value", SSRF)
def test_hosts_outside_workday_are_refused_naming_the_field(value: str) -> None:
    with pytest.raises(InvalidInstanceUrl) as refused:
        workday_origin(value)
    assert "Workday host" in refused.value.message and refused.value.provider == "workday"


@pytest.mark.parametrize("value", SSRF)
def test_no_credential_is_sent_to_a_refused_host(mock: responses.RequestsMock, value: str) -> None:
    with pytest.raises(ValueError, match="Workday host"):
        workday.check_credentials({**FIELDS, "host": value})
    bundle = make_bundle({**FIELDS, "host": value})
    with pytest.raises((InvalidInstanceUrl, AuthRevoked)):  # an empty host is no bundle at all
        workday.refresh(bundle)
    with pytest.raises(InvalidInstanceUrl):
        workday.check_health(Account("workday", ACCESS, KEY, instance_url=value, details={"tenant": TENANT}))
    assert len(mock.calls) == 0


def test_the_sandbox_origin_is_trusted_only_when_configured(settings: Any) -> None:
    settings.WORKDAY_EXTRA_ORIGINS = ["http://127.0.0.1:8709"]
    assert workday_origin("http://127.0.0.1:8709") == "http://127.0.0.1:8709"
    assert workday_origin("127.0.0.1:8709/") == "http://127.0.0.1:8709"  # typed without a scheme
    for refused in ("https://127.0.0.1:8709", "http://127.0.0.1:8710", "http://localhost:8709"):
        with pytest.raises(InvalidInstanceUrl):
            workday_origin(refused)
    settings.WORKDAY_EXTRA_ORIGINS = []
    with pytest.raises(InvalidInstanceUrl):
        workday_origin("http://127.0.0.1:8709")


# --- the credentials form --------------------------------------------------------------------------


def test_the_provider_declares_a_credentials_connection() -> None:
    assert (workday.name, workday.label) == ("workday", "Workday")
    assert workday.uses_oauth is False and workday.refreshes_tokens is True
    assert workday.credential_fields == ("host", "tenant", "client_id", "client_secret", "refresh_token")
    assert workday.required_scopes == () and workday.missing_scopes([]) == []
    assert workday.api_bucket() == api_bucket() and api_bucket().provider == "workday"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": ""}, "Enter the Workday host."),
        ({"tenant": ""}, "Enter the tenant."),
        ({"client_id": "  "}, "Enter the client ID."),
        ({"client_secret": ""}, "Enter the client secret."),
        ({"refresh_token": ""}, "Enter the refresh token."),
        ({"tenant": "acme/../other"}, "The tenant is the name after /oauth2/"),
        ({"tenant": "a" * 65}, "The tenant is longer than 64 characters."),
        ({"host": "x" * 301}, "The Workday host is longer than 300 characters."),
        ({"client_id": "abc\x00def"}, "The client ID contains a control character."),
        ({"client_secret": "two words"}, "The client secret is one word"),
        ({"refresh_token": "tok\u00e9n"}, "The refresh token is one word"),
        ({"host": "evil.example.com"}, "The Workday host must be a name under workday.com"),
    ],
)
def test_bad_fields_are_refused_with_one_sentence_and_no_request(
    mock: responses.RequestsMock, change: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError) as refused:
        workday.check_credentials({**FIELDS, **change})
    assert str(refused.value).startswith(message)
    assert SECRET not in str(refused.value) and REFRESH not in str(refused.value)
    assert len(mock.calls) == 0


def test_check_credentials_gets_a_token_then_reads_one_posting(mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, json=token_body())
    mock.get(POSTINGS_URL, json=postings())
    before = timezone.now()
    grant = workday.check_credentials({**FIELDS, "tenant": "acme_impl", "host": f"  {HOST}  "})
    token_call, read_call = mock.calls
    assert token_call.request.headers["Authorization"] == basic()
    assert form_of(token_call) == {"grant_type": "refresh_token", "refresh_token": REFRESH}
    assert read_call.request.headers["Authorization"] == f"Bearer {ACCESS}"
    assert parse_qs(urlsplit(read_call.request.url).query) == {"limit": ["1"]}
    assert grant.account.key == KEY and grant.account.details == {"host": HOST, "tenant": TENANT}
    assert grant.last4 == SECRET[-4:]
    tokens = grant.tokens
    assert tokens.access_token == ACCESS and tokens.instance_url == ORIGIN and tokens.account_key == KEY
    assert tokens.expires_at is not None
    assert before + timedelta(seconds=3599) <= tokens.expires_at <= timezone.now() + timedelta(seconds=3600)
    assert tokens.refresh_token == BUNDLE
    assert json.loads(BUNDLE) == {**FIELDS, "host": ORIGIN}
    assert json.dumps(json.loads(BUNDLE), separators=(",", ":"), sort_keys=True) == BUNDLE
    shown = repr(grant)
    assert SECRET not in shown and REFRESH not in shown and ACCESS not in shown


def test_the_account_key_is_lowercased_and_bounded(mock: responses.RequestsMock) -> None:
    tenant = "Acme_" + "X" * 59
    mock.post(f"{ORIGIN}/ccx/oauth2/{tenant}/token", json=token_body())
    mock.get(f"{ORIGIN}/ccx/api/recruiting/v4/{tenant}/jobPostings", json=postings())
    grant = workday.check_credentials({**FIELDS, "tenant": tenant, "host": HOST.upper()})
    assert grant.account.key == f"{tenant}@{HOST}".lower()[:100] and len(grant.account.key) == 95
    assert grant.account.details["tenant"] == tenant


def test_a_rotated_refresh_token_at_connect_is_the_one_stored(mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, json=token_body(refresh_token="wd-refresh-token-rotated-000111222"))
    mock.get(POSTINGS_URL, json=postings())
    grant = workday.check_credentials(FIELDS)
    assert (
        json.loads(grant.tokens.refresh_token or "")["refresh_token"] == "wd-refresh-token-rotated-000111222"
    )


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "invalid_client"}),
        (400, {"error": "invalid_grant"}),
        (401, None),
        (400, {"error": "unauthorized_client"}),
    ],
)
def test_refused_credentials_are_credentials_invalid(
    mock: responses.RequestsMock, status: int, body: dict[str, str] | None
) -> None:
    mock.post(TOKEN_URL, status=status, json=body)
    with pytest.raises(AuthRevoked) as refused:
        workday.check_credentials(FIELDS)
    assert refused.value.code == "credentials_invalid" and len(mock.calls) == 1


def test_an_unknown_tenant_is_permanent(mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, status=404, body="<html>Not Found</html>")
    with pytest.raises(Permanent) as unknown:
        workday.check_credentials(FIELDS)
    assert unknown.value.code == "unknown_tenant"
    mock.replace(responses.POST, TOKEN_URL, status=503, json={"error": "Invalid Tenant Name"})
    with pytest.raises(Permanent) as named:
        workday.check_credentials(FIELDS)
    assert named.value.code == "unknown_tenant"


def test_a_token_endpoint_outage_is_transient(mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, status=503, body="<h1>Service Unavailable</h1>")
    with pytest.raises(Transient) as outage:
        workday.check_credentials(FIELDS)
    assert outage.value.code == "http_503"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"error": "invalid_request"}, "invalid_request"),
        ({"error": "Something Odd!"}, "http_400"),
        (None, "http_400"),
    ],
)
def test_other_token_errors_are_permanent(mock: responses.RequestsMock, body: Any, code: str) -> None:
    mock.post(TOKEN_URL, status=400, json=body)
    with pytest.raises(Permanent) as refused:
        workday.check_credentials(FIELDS)
    assert refused.value.code == code


@pytest.mark.parametrize("body", [{"token_type": "Bearer"}, {"access_token": ""}, ["access_token"], None])
def test_a_token_answer_without_a_token_is_refused(mock: responses.RequestsMock, body: Any) -> None:
    mock.post(TOKEN_URL, json=body)
    with pytest.raises(Permanent) as refused:
        workday.check_credentials(FIELDS)
    assert refused.value.code == "invalid_token_response"


def test_a_fresh_token_refused_by_the_api_is_credentials_invalid(mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, json=token_body())
    mock.get(POSTINGS_URL, status=401, json={"error": "invalid_token"})
    with pytest.raises(AuthRevoked) as refused:
        workday.check_credentials(FIELDS)
    assert refused.value.code == "credentials_invalid"


def test_a_client_without_the_recruiting_area_is_missing_scope(mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, json=token_body())
    mock.get(POSTINGS_URL, status=403, json={"error": "The task submitted is not authorized."})
    with pytest.raises(MissingScope) as missing:
        workday.check_credentials(FIELDS)
    assert missing.value.missing == ["Recruiting"]


# --- refresh -----------------------------------------------------------------------------------------


def test_refresh_uses_the_bundle_and_keeps_the_refresh_token(mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, json=token_body(access_token="wd-access-token-second-0000111122223333"))
    tokens = workday.refresh(BUNDLE, environment="login")
    call = mock.calls[0]
    assert call.request.headers["Authorization"] == basic()
    assert form_of(call) == {"grant_type": "refresh_token", "refresh_token": REFRESH}
    assert tokens.access_token == "wd-access-token-second-0000111122223333"
    assert tokens.refresh_token is None  # the same refresh token came back: nothing new to store
    assert tokens.instance_url == ORIGIN and tokens.account_key == KEY


def test_refresh_returns_a_new_bundle_when_workday_rotates(mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, json=token_body(refresh_token="wd-refresh-token-rotated-333444555"))
    tokens = workday.refresh(BUNDLE)
    assert tokens.refresh_token == make_bundle(
        {**FIELDS, "host": ORIGIN, "refresh_token": "wd-refresh-token-rotated-333444555"}
    )


def test_a_token_answer_without_expires_in_assumes_the_short_lifetime(mock: responses.RequestsMock) -> None:
    mock.post(TOKEN_URL, json={"access_token": ACCESS, "expires_in": "soon"})
    tokens = workday.refresh(BUNDLE)
    assert tokens.expires_at is not None
    left = (tokens.expires_at - timezone.now()).total_seconds()
    assert DEFAULT_TOKEN_SECONDS - 5 <= left <= DEFAULT_TOKEN_SECONDS


@pytest.mark.parametrize(
    "raw", ["", "not json", "[]", json.dumps({"client_id": CLIENT_ID}), json.dumps({**FIELDS, "tenant": 7})]
)
def test_an_unreadable_bundle_is_credentials_invalid_with_no_request(
    mock: responses.RequestsMock, raw: str
) -> None:
    with pytest.raises(AuthRevoked) as refused:
        workday.refresh(raw)
    assert refused.value.code == "credentials_invalid" and len(mock.calls) == 0


def test_read_bundle_returns_the_five_fields() -> None:
    assert read_bundle(json.dumps({**FIELDS, "extra": "x"})) == FIELDS


def test_a_revoked_refresh_token_is_credentials_invalid_and_logged_failed(
    mock: responses.RequestsMock, alice: Any
) -> None:
    mock.post(
        TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "Invalid refresh token"}
    )
    with pytest.raises(AuthRevoked) as revoked:
        workday.refresh(BUNDLE, context=CallContext(workspace_id=alice.workspace.pk))
    assert revoked.value.code == "credentials_invalid"
    (row,) = sync_rows()
    assert (row.provider, row.operation, row.status, row.error_code) == (
        "workday",
        "refresh",
        SyncLog.Status.FAILED,
        "credentials_invalid",
    )


# --- health ------------------------------------------------------------------------------------------


def test_health_reads_one_posting_with_the_bearer_token(mock: responses.RequestsMock) -> None:
    mock.get(POSTINGS_URL, json=postings(total=12))
    health = workday.check_health(account())
    (call,) = mock.calls
    assert call.request.headers["Authorization"] == f"Bearer {ACCESS}"
    assert parse_qs(urlsplit(call.request.url).query) == {"limit": ["1"]}
    assert health.details == {"host": HOST, "tenant": TENANT, "job_postings": 12}
    assert health.latency_ms >= 0


def test_health_without_an_instance_url_uses_the_stored_host(mock: responses.RequestsMock) -> None:
    mock.get(POSTINGS_URL, json={"data": []})
    conn = Account("workday", ACCESS, KEY, details={"host": HOST, "tenant": TENANT})
    assert workday.check_health(conn).details == {"host": HOST, "tenant": TENANT}


@pytest.mark.parametrize("details", [{"host": HOST}, {"host": HOST, "tenant": "a/b"}])
def test_a_connection_without_a_valid_tenant_is_refused(mock: responses.RequestsMock, details: Any) -> None:
    with pytest.raises(Permanent) as refused:
        workday.check_health(Account("workday", ACCESS, KEY, instance_url=ORIGIN, details=details))
    assert refused.value.code == "invalid_tenant" and len(mock.calls) == 0


@pytest.mark.parametrize(
    ("status", "headers", "body", "error", "code"),
    [
        (401, {}, {"error": "invalid_token"}, TokenExpired, "invalid_token"),
        (403, {}, {"error": "The task submitted is not authorized."}, MissingScope, "missing_scope"),
        (404, {}, {"error": "Resource not found"}, Permanent, "not_found"),
        (400, {}, {"error": "Invalid request", "errors": [{"field": "limit"}]}, Permanent, "http_400"),
        (429, {"Retry-After": "7"}, {"error": "Too many requests"}, RateLimited, "rate_limited"),
        (500, {}, {"error": "Internal server error"}, Transient, "http_500"),
        (503, {}, None, Transient, "http_503"),
    ],
)
def test_api_errors_map_to_the_closed_set(
    mock: responses.RequestsMock,
    status: int,
    headers: dict[str, str],
    body: Any,
    error: type[Exception],
    code: str,
) -> None:
    mock.get(POSTINGS_URL, status=status, headers=headers, json=body)
    with pytest.raises(error) as raised:
        workday.check_health(account())
    assert getattr(raised.value, "code", None) == code
    if isinstance(raised.value, RateLimited):
        assert raised.value.retry_after == 7


def test_a_429_without_retry_after_waits_the_default(mock: responses.RequestsMock) -> None:
    mock.get(POSTINGS_URL, status=429)
    with pytest.raises(RateLimited) as limited:
        workday.check_health(account())
    assert limited.value.retry_after == DEFAULT_RETRY_AFTER


def test_a_redirect_is_not_followed(mock: responses.RequestsMock) -> None:
    mock.get(POSTINGS_URL, status=302, headers={"Location": "https://evil.example.com/"})
    with pytest.raises(Permanent) as refused:
        workday.check_health(account())
    assert refused.value.code == "unexpected_redirect" and len(mock.calls) == 1


# --- writes: not verified, so refused -----------------------------------------------------------------


def test_every_curated_write_is_refused_without_a_request(mock: responses.RequestsMock) -> None:
    act = activity("c1a2b3", marker=MARKER)
    calls = [
        lambda: workday.find_contact(account(), "maya.lopez@acme-logistics.example"),
        lambda: workday.create_note(account(), act),
        lambda: workday.create_task(account(), act),
        lambda: workday.create_meeting(account(), act),
        lambda: workday.write(account(), "create_note", act),
        lambda: workday.write_payload("create_note", act),
        lambda: workday.find_write(account(), "create_note", act),
    ]
    for call in calls:
        with pytest.raises(Permanent) as refused:
            call()
        assert (refused.value.code, refused.value.message) == ("operation_unsupported", WRITES_UNSUPPORTED)
    with pytest.raises(ValueError, match="unknown write operation"):
        workday.write_payload("create_deal", act)
    assert workday.find_open_deal(account(), "c1a2b3") is None
    with pytest.raises(Permanent) as pull:
        workday.changed_since(account(), "contact", timezone.now(), None, 10)
    assert pull.value.code == "operation_unsupported"
    assert len(mock.calls) == 0


def test_oauth_consent_and_revocation_are_not_offered() -> None:
    for call in (
        lambda: workday.authorize_url(state="s", redirect_uri="https://conduit.example/cb"),
        lambda: workday.exchange_code(code="c", redirect_uri="https://conduit.example/cb"),
        lambda: workday.identify(workday_token()),
    ):
        with pytest.raises(Permanent) as refused:
            call()
        assert refused.value.code == "credentials_only"
    with pytest.raises(Permanent) as revoke:
        workday.revoke(BUNDLE)
    assert revoke.value.code == "revoke_not_supported" and SECRET not in str(revoke.value)


def workday_token() -> Any:
    from integrations.providers.base import TokenSet

    return TokenSet(access_token=ACCESS)


# --- secrets -----------------------------------------------------------------------------------------


def test_no_secret_reaches_logs_sync_logs_or_exceptions(
    mock: responses.RequestsMock, alice: Any, caplog: pytest.LogCaptureFixture, capture_json_logs: Any
) -> None:
    """Every failing path, with Workday echoing what it was sent; urllib3 at DEBUG."""
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    echo = f"refused {SECRET} {REFRESH} {basic()} {ACCESS}"
    mock.post(TOKEN_URL, status=401, json={"error": "invalid_client", "error_description": echo})
    mock.get(POSTINGS_URL, status=401, json={"error": "invalid_token", "error_description": echo})
    ctx = CallContext(workspace_id=alice.workspace.pk, secrets=(ACCESS, BUNDLE))
    errors: list[str] = []
    for call in (
        lambda: workday.check_credentials(FIELDS, context=ctx),
        lambda: workday.refresh(BUNDLE, context=ctx),
        lambda: workday.check_health(account(workspace_id=alice.workspace.pk, secrets=(ACCESS, BUNDLE))),
        lambda: workday.check_credentials({**FIELDS, "client_secret": f"{SECRET} x"}, context=ctx),
    ):
        try:
            call()
        except Exception as exc:
            errors.append(f"{exc!s} {exc!r} {getattr(exc, 'message', '')}")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    summaries = [row.summary for row in sync_rows()]
    assert len(errors) == 4 and len(summaries) == 3
    haystack = "\n".join(errors + summaries + [r.getMessage() for r in caplog.records])
    haystack += "\n".join(str(line) for line in capture_json_logs())
    for value in (SECRET, REFRESH, ACCESS, basic().split()[1]):
        assert value not in haystack
