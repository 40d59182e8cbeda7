"""The local Workday sandbox over real sockets: its token endpoint and Recruiting read driven the
way a raw client would, its faults, control endpoints and overview page, then the Workday
provider module against it (connect, health, refresh, rotation at the sandbox, recovery)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from integrations.providers.base import Account
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    Permanent,
    RateLimited,
    TokenExpired,
    Transient,
)
from integrations.providers.workday import WorkdayProvider
from integrations.sandbox import server
from integrations.sandbox.server import RunningSandbox, start_sandbox
from integrations.sandbox.workday import WorkdayApp
from integrations.sandbox.workday_data import (
    CANDIDATES,
    CLIENT_ID,
    SEEDED_CLIENT_SECRET,
    SEEDED_REFRESH_TOKEN,
    TENANT,
    basic_credentials,
)

TIMEOUT = 5
workday = WorkdayProvider()


@pytest.fixture
def wd(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningSandbox]:
    monkeypatch.setitem(server.APPS, "workday", WorkdayApp)
    sandbox = start_sandbox("workday", port=0)
    yield sandbox
    sandbox.stop()


def basic(client_id: str = CLIENT_ID, secret: str = SEEDED_CLIENT_SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def token(
    base: str,
    *,
    tenant: str = TENANT,
    headers: dict[str, str] | None = None,
    **form: str,
) -> requests.Response:
    data = {"grant_type": "refresh_token", "refresh_token": SEEDED_REFRESH_TOKEN, **form}
    return requests.post(
        f"{base}/ccx/oauth2/{tenant}/token",
        data=data,
        headers=basic() if headers is None else headers,
        timeout=TIMEOUT,
    )


def postings(base: str, access: str | None, *, tenant: str = TENANT, **params: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {access}"} if access else {}
    url = f"{base}/ccx/api/recruiting/v4/{tenant}/jobPostings"
    return requests.get(url, headers=headers, params=params, timeout=TIMEOUT)


def access_token(base: str) -> str:
    return str(token(base).json()["access_token"])


def control(base: str, path: str, body: Any = None) -> requests.Response:
    return requests.post(f"{base}/_sandbox/{path}", json=body, timeout=TIMEOUT)


# --- the token endpoint ------------------------------------------------------------------------------


def test_a_refresh_grant_with_basic_client_auth_issues_a_bearer_token(wd: RunningSandbox) -> None:
    answer = token(wd.base_url)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["refresh_token"] == SEEDED_REFRESH_TOKEN  # not rotated by default
    form = {"client_id": CLIENT_ID, "client_secret": SEEDED_CLIENT_SECRET}
    assert token(wd.base_url, headers={}, **form).status_code == 200  # or the client in the form


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"headers": basic(secret="wrong")}, 401, "invalid_client"),
        ({"headers": {"Authorization": "Basic !!!not-base64"}}, 401, "invalid_client"),
        (
            {"headers": {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}},
            401,
            "invalid_client",
        ),
        ({"headers": {}}, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
        ({"refresh_token": "wd-rt-unknown"}, 400, "invalid_grant"),
        ({"tenant": "someone_else"}, 404, "not_found"),
    ],
)
def test_the_token_endpoint_refuses_in_the_oauth_shape(
    wd: RunningSandbox, kwargs: dict[str, Any], status: int, error: str
) -> None:
    answer = token(wd.base_url, **kwargs)
    assert answer.status_code == status
    assert answer.json()["error"] == error and answer.json()["error_description"]


def test_the_token_endpoint_takes_only_post(wd: RunningSandbox) -> None:
    answer = requests.get(f"{wd.base_url}/ccx/oauth2/{TENANT}/token", timeout=TIMEOUT)
    assert answer.status_code == 405


def test_an_injected_invalid_grant_refuses_the_next_refresh(wd: RunningSandbox) -> None:
    assert control(wd.base_url, "faults", {"kind": "invalid_grant"}).status_code == 201
    assert token(wd.base_url).json()["error"] == "invalid_grant"
    assert token(wd.base_url).status_code == 200


def test_rotating_refresh_tokens_replace_the_one_used(wd: RunningSandbox) -> None:
    assert control(wd.base_url, "config", {"rotate_refresh_tokens": 1}).status_code == 200
    first = token(wd.base_url).json()
    assert first["refresh_token"] != SEEDED_REFRESH_TOKEN
    assert token(wd.base_url).json()["error"] == "invalid_grant"  # the old one died
    assert token(wd.base_url, refresh_token=first["refresh_token"]).status_code == 200


def test_basic_credentials_parse_only_a_basic_header() -> None:
    assert basic_credentials(basic()["Authorization"]) == (CLIENT_ID, SEEDED_CLIENT_SECRET)
    assert basic_credentials("Bearer abc") is None
    assert basic_credentials("Basic ") is None


# --- the Recruiting read -----------------------------------------------------------------------------


def test_job_postings_page_with_limit_and_offset(wd: RunningSandbox) -> None:
    access = access_token(wd.base_url)
    first = postings(wd.base_url, access, limit=1)
    assert first.status_code == 200
    assert first.json()["total"] == 3 and len(first.json()["data"]) == 1
    rest = postings(wd.base_url, access, limit=5, offset=1).json()
    assert [p["title"] for p in rest["data"]] == ["Product Designer", "Customer Success Lead"]
    bad = postings(wd.base_url, access, limit=0)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "limit"


def test_the_api_refuses_a_missing_expired_or_foreign_request(wd: RunningSandbox) -> None:
    base = wd.base_url
    missing = postings(base, None)
    assert missing.status_code == 401 and missing.json()["error"] == "invalid_token"
    minted = control(base, "tokens", {"expires_in": 0}).json()
    assert minted["client_id"] == CLIENT_ID and minted["tenant"] == TENANT and minted["host"] == base
    assert postings(base, minted["access_token"]).status_code == 401
    access = access_token(base)
    assert postings(base, access, tenant="someone_else").status_code == 404
    other = requests.get(
        f"{base}/ccx/api/recruiting/v4/{TENANT}/prospects",
        headers={"Authorization": f"Bearer {access}"},
        timeout=5,
    )
    assert other.status_code == 404 and other.json() == {"error": "Resource not found"}
    assert requests.get(f"{base}/ccx/api/v1/{TENANT}/workers", timeout=TIMEOUT).status_code == 404


def test_the_api_rate_limit_answers_429_with_retry_after(wd: RunningSandbox) -> None:
    control(wd.base_url, "config", {"requests_per_second": 1})
    access = access_token(wd.base_url)
    assert postings(wd.base_url, access).status_code == 200
    limited = postings(wd.base_url, access)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    state = requests.get(f"{wd.base_url}/_sandbox/state", timeout=TIMEOUT).json()
    assert state["requests"]["rate_limited"] == 1


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        ({"kind": "rate_limit", "retry_after": 4}, 429),
        ({"kind": "invalid_session"}, 401),
        ({"kind": "missing_scope"}, 403),
        ({"kind": "validation"}, 400),
        ({"kind": "server_error"}, 500),
        ({"kind": "unavailable"}, 503),
        ({"kind": "hang", "hang_seconds": 0}, 504),
    ],
)
def test_faults_answer_api_calls_in_workday_shapes(
    wd: RunningSandbox, fault: dict[str, Any], status: int
) -> None:
    access = access_token(wd.base_url)
    control(wd.base_url, "faults", fault)
    answer = postings(wd.base_url, access)
    assert answer.status_code == status and answer.json()["error"]
    if status == 429:
        assert answer.headers["Retry-After"] == "4"
    assert postings(wd.base_url, access).status_code == 200  # one fault, one call


# --- control and the overview page -------------------------------------------------------------------


def test_rotation_revokes_the_old_credentials_and_their_tokens(wd: RunningSandbox) -> None:
    base = wd.base_url
    old_access = access_token(base)
    rotated = control(base, "credentials/rotate").json()
    assert rotated["client_id"] == CLIENT_ID and rotated["tenant"] == TENANT and rotated["host"] == base
    assert (
        rotated["client_secret"] != SEEDED_CLIENT_SECRET and rotated["refresh_token"] != SEEDED_REFRESH_TOKEN
    )
    assert postings(base, old_access).status_code == 401
    assert token(base).json()["error"] == "invalid_client"
    new_client = basic(secret=rotated["client_secret"])
    assert token(base, headers=new_client).json()["error"] == "invalid_grant"  # the old refresh token
    fresh = token(base, headers=new_client, refresh_token=rotated["refresh_token"]).json()
    assert postings(base, fresh["access_token"]).status_code == 200
    assert "Credential rotations" in requests.get(f"{base}/", timeout=TIMEOUT).text


def test_the_overview_lists_candidates_postings_and_no_notes(wd: RunningSandbox) -> None:
    page = requests.get(f"{wd.base_url}/", timeout=TIMEOUT)
    assert page.status_code == 200
    for _, name, email in CANDIDATES:
        assert name in page.text and email in page.text
    assert "Senior Backend Engineer" in page.text and SEEDED_CLIENT_SECRET in page.text
    assert "Workday writes are not verified" in page.text


def test_records_are_read_only_and_reset_restores_the_seed(wd: RunningSandbox) -> None:
    assert control(wd.base_url, "records", {"email": "x@example.com"}).status_code == 400
    control(wd.base_url, "credentials/rotate")
    assert control(wd.base_url, "reset").status_code == 204
    assert token(wd.base_url).status_code == 200
    assert requests.get(f"{wd.base_url}/nowhere", timeout=TIMEOUT).status_code == 404


# --- the provider module against the sandbox ---------------------------------------------------------


@pytest.fixture
def trusted(wd: RunningSandbox, settings: Any) -> RunningSandbox:
    settings.WORKDAY_EXTRA_ORIGINS = [wd.base_url]
    return wd


def fields_of(sandbox: RunningSandbox, **change: str) -> dict[str, str]:
    creds = dict(control(sandbox.base_url, "tokens").json())
    return {k: creds[k] for k in workday.credential_fields} | change


def account_of(grant: Any, access: str | None = None) -> Account:
    tokens = grant.tokens
    return Account(
        "workday",
        access or tokens.access_token,
        grant.account.key,
        instance_url=tokens.instance_url,
        details=grant.account.details,
    )


@pytest.mark.django_db
def test_connect_check_health_and_refresh_against_the_sandbox(trusted: RunningSandbox) -> None:
    host = trusted.base_url.removeprefix("http://")
    grant = workday.check_credentials(fields_of(trusted, host=host))  # typed without a scheme
    assert grant.account.key == f"{TENANT}@{host}" and grant.account.details == {
        "host": host,
        "tenant": TENANT,
    }
    assert grant.tokens.instance_url == trusted.base_url and grant.last4 == SEEDED_CLIENT_SECRET[-4:]
    health = workday.check_health(account_of(grant))
    assert health.details == {"host": host, "tenant": TENANT, "job_postings": 3}
    fresh = workday.refresh(grant.tokens.refresh_token or "")
    assert fresh.access_token != grant.tokens.access_token and fresh.refresh_token is None
    assert workday.check_health(account_of(grant, fresh.access_token)).details["job_postings"] == 3


@pytest.mark.django_db
def test_refused_connections_against_the_sandbox(trusted: RunningSandbox) -> None:
    with pytest.raises(Permanent) as unknown:
        workday.check_credentials(fields_of(trusted, tenant="someone_else"))
    assert unknown.value.code == "unknown_tenant"
    with pytest.raises(AuthRevoked) as refused:
        workday.check_credentials(fields_of(trusted, client_secret="not-the-secret"))
    assert refused.value.code == "credentials_invalid"
    with pytest.raises(AuthRevoked):
        workday.check_credentials(fields_of(trusted, refresh_token="wd-rt-unknown"))


@pytest.mark.django_db
def test_rotate_at_the_sandbox_health_fails_update_and_it_recovers(trusted: RunningSandbox) -> None:
    grant = workday.check_credentials(fields_of(trusted))
    control(trusted.base_url, "credentials/rotate")
    with pytest.raises(TokenExpired):
        workday.check_health(account_of(grant))
    with pytest.raises(AuthRevoked) as refused:  # the stored bundle holds the revoked secret
        workday.refresh(grant.tokens.refresh_token or "")
    assert refused.value.code == "credentials_invalid"
    updated = workday.check_credentials(fields_of(trusted))  # the admin types the new credentials
    assert updated.account.key == grant.account.key
    assert workday.check_health(account_of(updated)).details["job_postings"] == 3


@pytest.mark.django_db
def test_a_rotating_refresh_token_comes_back_as_a_new_bundle(trusted: RunningSandbox) -> None:
    grant = workday.check_credentials(fields_of(trusted))
    control(trusted.base_url, "config", {"rotate_refresh_tokens": 1})
    first = workday.refresh(grant.tokens.refresh_token or "")
    assert first.refresh_token and first.refresh_token != grant.tokens.refresh_token
    assert workday.refresh(first.refresh_token).access_token
    with pytest.raises(AuthRevoked):
        workday.refresh(grant.tokens.refresh_token or "")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"kind": "rate_limit", "retry_after": 3}, RateLimited),
        ({"kind": "server_error"}, Transient),
        ({"kind": "unavailable"}, Transient),
        ({"kind": "missing_scope"}, MissingScope),
        ({"kind": "invalid_session"}, TokenExpired),
        ({"kind": "validation"}, Permanent),
    ],
)
def test_sandbox_faults_map_to_the_closed_set(
    trusted: RunningSandbox, fault: dict[str, Any], error: type[Exception]
) -> None:
    grant = workday.check_credentials(fields_of(trusted))
    control(trusted.base_url, "faults", fault)
    with pytest.raises(error) as raised:
        workday.check_health(account_of(grant))
    if isinstance(raised.value, RateLimited):
        assert raised.value.retry_after == 3
