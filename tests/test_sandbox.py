"""The local HubSpot and Salesforce sandboxes, driven over real HTTP with `requests` (Zoho's:
test_sandbox_zoho.py; Odoo's: test_sandbox_odoo.py; the calendars': test_sandbox_calendar.py),
and `run_sandbox`, which serves all six."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError

from integrations.management.commands.run_sandbox import wait_for_signal
from integrations.sandbox.common import redact
from integrations.sandbox.salesforce_rest import like
from integrations.sandbox.server import RunningSandbox, start_sandbox

TIMEOUT = 5
ROOT = Path(__file__).resolve().parent.parent
HS_ID, HS_SECRET = "test-hubspot-client", "test-hubspot-secret"
SF_ID, SF_SECRET = "test-salesforce-client", "test-salesforce-secret"
REDIRECT = "https://conduit.example/oauth/callback"
NOTE_TO_CONTACT = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}
C1, C2 = "0035g00000SbxC1AAJ", "0035g00000SbxC2AAJ"
O1, O2, O3 = "0065g00000SbxO1AAJ", "0065g00000SbxO2AAJ", "0065g00000SbxO3AAJ"
V = "/services/data/v66.0"
MARKER, OTHER_MARKER = "cdw" + "0a" * 12, "cdw" + "0b" * 12


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _sandbox_settings(settings: Any) -> None:
    settings.HUBSPOT_CLIENT_ID, settings.HUBSPOT_CLIENT_SECRET = HS_ID, HS_SECRET
    settings.SALESFORCE_CLIENT_ID, settings.SALESFORCE_CLIENT_SECRET = SF_ID, SF_SECRET
    settings.PRODUCTION = False


@pytest.fixture
def hubspot() -> Iterator[RunningSandbox]:
    sandbox = start_sandbox("hubspot", port=0)
    yield sandbox
    sandbox.stop()


@pytest.fixture
def salesforce() -> Iterator[RunningSandbox]:
    sandbox = start_sandbox("salesforce", port=0)
    yield sandbox
    sandbox.stop()


def call(
    sandbox: RunningSandbox, method: str, path: str, token: str | None = None, **kw: Any
) -> requests.Response:
    headers = kw.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    kw.setdefault("timeout", TIMEOUT)
    return requests.request(method, sandbox.base_url + path, headers=headers, allow_redirects=False, **kw)


def mint(sandbox: RunningSandbox, **body: Any) -> dict[str, Any]:
    resp = call(sandbox, "POST", "/_sandbox/tokens", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def fault(sandbox: RunningSandbox, **body: Any) -> None:
    resp = call(sandbox, "POST", "/_sandbox/faults", json=body)
    assert (resp.status_code, resp.json()) == (201, {"ok": True})


def configure(sandbox: RunningSandbox, **body: Any) -> dict[str, Any]:
    resp = call(sandbox, "POST", "/_sandbox/config", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def hidden_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))


def location_query(resp: requests.Response) -> dict[str, str]:
    assert resp.status_code == 302
    return {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}


def is_uuid(value: str) -> bool:
    return str(uuid.UUID(value)) == value


# HubSpot OAuth


def hs_authorize(hubspot: RunningSandbox, **params: str) -> requests.Response:
    query = {
        "client_id": HS_ID,
        "redirect_uri": REDIRECT,
        "scope": "oauth crm.objects.contacts.write",
        "state": "s1",
    }
    return call(hubspot, "GET", "/oauth/authorize", params={**query, **params})


def hs_code(hubspot: RunningSandbox) -> str:
    form = hidden_fields(hs_authorize(hubspot).text)
    return location_query(
        call(hubspot, "POST", "/oauth/authorize/decision", data={**form, "decision": "allow"})
    )["code"]


def hs_exchange(hubspot: RunningSandbox, code: str, **overrides: str) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": HS_ID,
        "client_secret": HS_SECRET,
    }
    return call(hubspot, "POST", "/oauth/v1/token", data={**form, **overrides})


def hs_refresh(hubspot: RunningSandbox, refresh_token: str) -> requests.Response:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": HS_ID,
        "client_secret": HS_SECRET,
    }
    return call(hubspot, "POST", "/oauth/v1/token", data=form)


def test_hubspot_consent_page_lists_portal_scopes_and_buttons(hubspot: RunningSandbox) -> None:
    resp = hs_authorize(hubspot, optional_scope="crm.objects.deals.read")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    page = resp.text
    assert "<h1>HubSpot</h1>" in page and "sandbox-demo.hubspot.com" in page and "4400001" in page
    assert '<button class="allow" type="submit" name="decision" value="allow">Allow</button>' in page
    assert '<button class="deny" type="submit" name="decision" value="deny">Deny</button>' in page
    assert 'action="/oauth/authorize/decision"' in page
    for scope in ("oauth", "crm.objects.contacts.write", "crm.objects.deals.read"):
        assert f"<li>{scope}</li>" in page
    assert hidden_fields(page) == {
        "client_id": HS_ID,
        "redirect_uri": REDIRECT,
        "scope": "oauth crm.objects.contacts.write crm.objects.deals.read",
        "state": "s1",
        "code_challenge": "",
    }


def test_hubspot_authorize_with_account_id_in_path(hubspot: RunningSandbox) -> None:
    resp = call(
        hubspot, "GET", "/oauth/4400001/authorize", params={"client_id": HS_ID, "redirect_uri": REDIRECT}
    )
    assert resp.status_code == 200
    assert "(no scopes requested)" in resp.text


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"client_id": "someone-else"}, "Unknown client_id &#x27;someone-else&#x27;"),
        ({"client_id": ""}, "The request has no client_id."),
        ({"redirect_uri": ""}, "The request has no redirect_uri."),
        ({"redirect_uri": "javascript:alert(1)"}, "must be an http:// or https:// URL"),
    ],
)
def test_hubspot_authorize_refuses_bad_requests(
    hubspot: RunningSandbox, params: dict[str, str], reason: str
) -> None:
    resp = hs_authorize(hubspot, **params)
    assert resp.status_code == 400
    assert "this request cannot be authorized" in resp.text and reason in resp.text


def test_hubspot_allow_redirects_with_code_and_state(hubspot: RunningSandbox) -> None:
    form = hidden_fields(hs_authorize(hubspot).text)
    resp = call(hubspot, "POST", "/oauth/authorize/decision", data={**form, "decision": "allow"})
    assert resp.headers["Location"].startswith(REDIRECT + "?code=")
    query = location_query(resp)
    assert query["state"] == "s1" and len(query["code"]) >= 20


def test_hubspot_deny_redirects_with_access_denied(hubspot: RunningSandbox) -> None:
    form = hidden_fields(hs_authorize(hubspot).text)
    query = location_query(
        call(hubspot, "POST", "/oauth/authorize/decision", data={**form, "decision": "deny"})
    )
    assert query["error"] == "access_denied" and query["state"] == "s1" and "code" not in query
    assert query["error_description"]


def test_hubspot_decision_without_state_or_with_query_in_redirect(hubspot: RunningSandbox) -> None:
    form = {**hidden_fields(hs_authorize(hubspot).text), "state": "", "redirect_uri": REDIRECT + "?x=1"}
    resp = call(hubspot, "POST", "/oauth/authorize/decision", data={**form, "decision": "allow"})
    assert resp.headers["Location"].startswith(REDIRECT + "?x=1&code=")
    assert "state" not in location_query(resp)


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"decision": "maybe"}, "Choose Allow or Deny."), ({"client_id": "evil"}, "Unknown client_id")],
)
def test_hubspot_decision_refuses_tampered_forms(
    hubspot: RunningSandbox, change: dict[str, str], reason: str
) -> None:
    form = {**hidden_fields(hs_authorize(hubspot).text), "decision": "allow", **change}
    resp = call(hubspot, "POST", "/oauth/authorize/decision", data=form)
    assert resp.status_code == 400 and reason in resp.text


def test_hubspot_code_exchange_returns_tokens_once(hubspot: RunningSandbox) -> None:
    code = hs_code(hubspot)
    resp = hs_exchange(hubspot, code)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {
        "access_token",
        "refresh_token",
        "expires_in",
        "token_type",
        "hub_id",
        "scopes",
        "user_id",
        "token_use",
    }
    assert body["expires_in"] == 1800 and body["token_type"] == "bearer" and body["token_use"] == "access"
    assert (body["hub_id"], body["user_id"]) == (4400001, 7700001)
    assert body["scopes"] == ["oauth", "crm.objects.contacts.write"]
    again = hs_exchange(hubspot, code)
    assert again.status_code == 400
    assert again.json() == {
        "status": "BAD_AUTH_CODE",
        "message": "missing or unknown auth code",
        "error": "invalid_grant",
        "error_description": "missing or unknown auth code",
    }


def test_hubspot_code_is_bound_to_redirect_uri_and_expires(hubspot: RunningSandbox) -> None:
    assert (
        hs_exchange(hubspot, hs_code(hubspot), redirect_uri=REDIRECT + "/other").json()["status"]
        == "BAD_AUTH_CODE"
    )
    clock = FakeClock()
    hubspot.state.clock = clock
    code = hs_code(hubspot)
    clock.advance(601)
    assert hs_exchange(hubspot, code).json()["status"] == "BAD_AUTH_CODE"


def test_hubspot_token_endpoint_refuses_wrong_client_and_grant_type(hubspot: RunningSandbox) -> None:
    resp = hs_exchange(hubspot, hs_code(hubspot), client_secret="wrong")
    assert resp.status_code == 400
    assert resp.json()["status"] == "BAD_CLIENT_ID" and resp.json()["error"] == "invalid_client"
    resp = hs_exchange(hubspot, "x", grant_type="password")
    assert resp.status_code == 400 and resp.json()["error"] == "unsupported_grant_type"


def test_hubspot_v3_token_path_is_accepted(hubspot: RunningSandbox) -> None:
    form = {"grant_type": "refresh_token", "client_id": HS_ID, "client_secret": HS_SECRET}
    resp = call(
        hubspot, "POST", "/oauth/v3/token", data={**form, "refresh_token": mint(hubspot)["refresh_token"]}
    )
    assert resp.status_code == 200


def test_hubspot_refresh_keeps_refresh_token_and_old_access_tokens(hubspot: RunningSandbox) -> None:
    first = hs_exchange(hubspot, hs_code(hubspot)).json()
    resp = hs_refresh(hubspot, first["refresh_token"])
    assert resp.status_code == 200
    second = resp.json()
    assert second["refresh_token"] == first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    for token in (first["access_token"], second["access_token"]):
        assert call(hubspot, "GET", "/account-info/v3/details", token).status_code == 200


def test_hubspot_unknown_refresh_token_is_bad_refresh_token(hubspot: RunningSandbox) -> None:
    resp = hs_refresh(hubspot, "not-a-token")
    assert resp.status_code == 400
    assert resp.json() == {
        "error": "invalid_grant",
        "error_description": "refresh token is invalid, expired or revoked",
        "status": "BAD_REFRESH_TOKEN",
        "message": "missing or invalid refresh token",
    }


def test_hubspot_revoke_kills_refresh_and_its_access_tokens(hubspot: RunningSandbox) -> None:
    tokens, other = mint(hubspot), mint(hubspot)
    resp = call(hubspot, "DELETE", f"/oauth/v1/refresh-tokens/{tokens['refresh_token']}")
    assert (resp.status_code, resp.content) == (204, b"")
    assert hs_refresh(hubspot, tokens["refresh_token"]).json()["status"] == "BAD_REFRESH_TOKEN"
    assert call(hubspot, "GET", "/account-info/v3/details", tokens["access_token"]).status_code == 401
    assert call(hubspot, "GET", "/account-info/v3/details", other["access_token"]).status_code == 200
    again = call(hubspot, "DELETE", f"/oauth/v1/refresh-tokens/{tokens['refresh_token']}")
    assert again.status_code == 404 and again.json()["category"] == "OBJECT_NOT_FOUND"


def test_hubspot_access_token_info(hubspot: RunningSandbox) -> None:
    tokens = mint(hubspot, scopes=["oauth"], expires_in=600)
    resp = call(hubspot, "GET", f"/oauth/v1/access-tokens/{tokens['access_token']}")
    assert resp.status_code == 200
    body = resp.json()
    assert body["token"] == tokens["access_token"] and body["user"] == "owner@sandbox-demo.example"
    assert (body["hub_domain"], body["hub_id"], body["app_id"], body["user_id"]) == (
        "sandbox-demo.hubspot.com",
        4400001,
        3300001,
        7700001,
    )
    assert body["scopes"] == ["oauth"] and body["token_type"] == "access" and 595 <= body["expires_in"] <= 600
    missing = call(hubspot, "GET", "/oauth/v1/access-tokens/nope")
    assert missing.status_code == 404 and missing.json()["category"] == "OBJECT_NOT_FOUND"
    expired = mint(hubspot, expires_in=-1)["access_token"]
    assert call(hubspot, "GET", f"/oauth/v1/access-tokens/{expired}").status_code == 404


def test_hubspot_logs_redact_token_paths(hubspot: RunningSandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="conduit.sandbox")
    token = mint(hubspot)["access_token"]
    call(hubspot, "GET", f"/oauth/v1/access-tokens/{token}", params={"access_token": token})
    call(hubspot, "GET", "/account-info/v3/details", token)
    messages = [r.getMessage() for r in caplog.records if r.name == "conduit.sandbox"]
    assert "sandbox hubspot: GET /oauth/v1/access-tokens/[redacted] -> 200" in messages
    assert "sandbox hubspot: GET /account-info/v3/details -> 200" in messages
    assert not any(token in m for m in messages)


def test_redact_drops_queries_and_token_segments() -> None:
    assert (
        redact("DELETE /oauth/v1/refresh-tokens/abc?x=secret") == "DELETE /oauth/v1/refresh-tokens/[redacted]"
    )
    assert (
        redact("Bad request syntax ('GET /x?token=abc HTTP/1.1')") == "Bad request syntax ('GET /x HTTP/1.1')"
    )


# HubSpot API


def test_hubspot_api_needs_a_valid_token(hubspot: RunningSandbox) -> None:
    for token in (None, "garbage"):
        resp = call(hubspot, "GET", "/account-info/v3/details", token)
        assert resp.status_code == 401 and resp.json()["category"] == "INVALID_AUTHENTICATION"
        assert resp.json()["status"] == "error" and is_uuid(resp.json()["correlationId"])
    expired = mint(hubspot, expires_in=-5)["access_token"]
    resp = call(hubspot, "GET", "/account-info/v3/details", expired)
    assert resp.status_code == 401 and resp.json()["category"] == "EXPIRED_AUTHENTICATION"
    assert resp.json()["message"] == "The OAuth token used to make this call expired 5 second(s) ago."


def test_hubspot_account_details(hubspot: RunningSandbox) -> None:
    resp = call(hubspot, "GET", "/account-info/v3/details", mint(hubspot)["access_token"])
    assert resp.json() == {
        "portalId": 4400001,
        "timeZone": "US/Eastern",
        "uiDomain": "app.hubspot.com",
        "dataHostingLocation": "na1",
        "companyCurrency": "USD",
    }
    assert resp.headers["X-HubSpot-RateLimit-Max"] == "110"
    assert resp.headers["X-HubSpot-RateLimit-Remaining"] == "109"
    assert resp.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert "X-HubSpot-RateLimit-Daily" not in resp.headers


def test_hubspot_ten_second_limit_answers_429_and_rolls(hubspot: RunningSandbox) -> None:
    clock = FakeClock()
    hubspot.state.clock = clock
    token = mint(hubspot)["access_token"]
    assert configure(hubspot, ten_second_limit=3)["ten_second_limit"] == 3
    remaining = [
        call(hubspot, "GET", "/account-info/v3/details", token).headers["X-HubSpot-RateLimit-Remaining"]
        for _ in range(3)
    ]
    assert remaining == ["2", "1", "0"]
    resp = call(hubspot, "GET", "/account-info/v3/details", token)
    assert resp.status_code == 429
    body = resp.json()
    assert {k: body[k] for k in ("status", "message", "errorType", "policyName")} == {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "policyName": "TEN_SECONDLY_ROLLING",
    }
    assert is_uuid(body["correlationId"]) and is_uuid(body["requestId"])
    assert "Retry-After" not in resp.headers
    assert (resp.headers["X-HubSpot-RateLimit-Max"], resp.headers["X-HubSpot-RateLimit-Remaining"]) == (
        "3",
        "0",
    )
    clock.advance(9.9)
    assert (
        call(hubspot, "GET", "/account-info/v3/details", token).status_code == 429
    )  # refused calls do not count
    clock.advance(0.2)
    assert call(hubspot, "GET", "/account-info/v3/details", token).status_code == 200
    state = call(hubspot, "GET", "/_sandbox/state").json()
    assert state["requests"] == {"total": 6, "rate_limited": 2}


def test_hubspot_search_has_its_own_secondly_limit(hubspot: RunningSandbox) -> None:
    clock = FakeClock()
    hubspot.state.clock = clock
    token = mint(hubspot)["access_token"]
    configure(hubspot, ten_second_limit=1)
    statuses = [call(hubspot, "POST", "/crm/v3/objects/contacts/search", token, json={}) for _ in range(6)]
    assert [r.status_code for r in statuses] == [200] * 5 + [429]
    assert not any(h.startswith("X-HubSpot-RateLimit") for r in statuses for h in r.headers)
    body = statuses[-1].json()
    assert (body["message"], body["policyName"], body["errorType"]) == (
        "You have reached your secondly limit.",
        "SECONDLY",
        "RATE_LIMIT",
    )
    assert (
        call(hubspot, "GET", "/account-info/v3/details", token).status_code == 200
    )  # searches did not count
    clock.advance(1.01)
    assert call(hubspot, "POST", "/crm/v3/objects/contacts/search", token, json={}).status_code == 200


@pytest.mark.parametrize(
    ("scopes", "method", "path", "needed"),
    [
        (["crm.objects.contacts.read"], "GET", "/account-info/v3/details", "oauth"),
        (["oauth"], "POST", "/crm/v3/objects/contacts/search", "crm.objects.contacts.read"),
        (["oauth"], "POST", "/crm/v3/objects/deals/search", "crm.objects.deals.read"),
        (["crm.objects.contacts.read"], "POST", "/crm/v3/objects/notes", "crm.objects.contacts.write"),
        (["crm.objects.contacts.read"], "POST", "/crm/v3/objects/tasks/search", "crm.objects.contacts.write"),
        (["crm.objects.contacts.read"], "GET", "/crm/v3/objects/notes/90001", "crm.objects.contacts.write"),
    ],
)
def test_hubspot_missing_scopes(
    hubspot: RunningSandbox, scopes: list[str], method: str, path: str, needed: str
) -> None:
    resp = call(hubspot, method, path, mint(hubspot, scopes=scopes)["access_token"], json={})
    assert resp.status_code == 403
    body = resp.json()
    assert body["category"] == "MISSING_SCOPES"
    assert body["message"] == "This app hasn't been granted all required scopes to make this call."
    assert body["errors"] == [
        {
            "message": "One or more of the following scopes are required.",
            "context": {"requiredGranularScopes": [needed]},
        }
    ]


def email_filter(email: str) -> dict[str, Any]:
    return {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": email}]}]}


def test_hubspot_contact_search_by_email_ignores_case(hubspot: RunningSandbox) -> None:
    token = mint(hubspot)["access_token"]
    body = {**email_filter("Maya.Lopez@ACME-logistics.example"), "properties": ["email"], "limit": 1}
    resp = call(hubspot, "POST", "/crm/v3/objects/contacts/search", token, json=body)
    assert resp.status_code == 200
    assert resp.json() == {
        "total": 1,
        "results": [
            {
                "id": "101",
                "properties": {
                    "email": "maya.lopez@acme-logistics.example",
                    "firstname": "Maya",
                    "lastname": "Lopez",
                    "hs_object_id": "101",
                },
                "createdAt": "2026-01-05T09:00:00.000Z",
                "updatedAt": "2026-01-05T09:00:00.000Z",
                "archived": False,
            }
        ],
    }
    none = call(
        hubspot, "POST", "/crm/v3/objects/contacts/search", token, json=email_filter("nobody@x.example")
    )
    assert none.json() == {"total": 0, "results": []}


def deal_search(contact: str, *, open_only: bool, limit: int = 10) -> dict[str, Any]:
    filters = [{"propertyName": "associations.contact", "operator": "EQ", "value": contact}]
    if open_only:
        filters.append({"propertyName": "hs_is_closed", "operator": "EQ", "value": "false"})
    sorts = [{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}]
    return {"filterGroups": [{"filters": filters}], "sorts": sorts, "limit": limit}


def test_hubspot_deal_search_by_contact_open_and_sorted(hubspot: RunningSandbox) -> None:
    token = mint(hubspot)["access_token"]
    configure(hubspot, search_per_second=50)

    def ids(body: dict[str, Any]) -> list[str]:
        resp = call(hubspot, "POST", "/crm/v3/objects/deals/search", token, json=body)
        assert resp.status_code == 200
        return [r["id"] for r in resp.json()["results"]]

    assert ids(deal_search("101", open_only=True)) == ["201"]
    assert ids(deal_search("101", open_only=False)) == ["202", "201"]
    assert ids(deal_search("102", open_only=True)) == ["203"]
    assert ids(deal_search("103", open_only=False)) == []
    resp = call(
        hubspot,
        "POST",
        "/crm/v3/objects/deals/search",
        token,
        json=deal_search("101", open_only=False, limit=1),
    )
    body = resp.json()
    assert body["total"] == 2 and body["paging"] == {"next": {"after": "1"}}
    assert body["results"][0]["properties"] == {
        "dealname": "Acme Logistics - Pilot",
        "dealstage": "closedwon",
        "hs_is_closed": "true",
        "hs_lastmodifieddate": "2026-03-05T16:30:00.000Z",
        "hs_object_id": "202",
    }
    second = call(
        hubspot,
        "POST",
        "/crm/v3/objects/deals/search",
        token,
        json={**deal_search("101", open_only=False, limit=1), "after": "1"},
    )
    assert [r["id"] for r in second.json()["results"]] == ["201"] and "paging" not in second.json()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "search body must be a JSON object"),
        ({"filterGroups": "x"}, "filterGroups must be a list of objects"),
        ({"limit": 500}, "limit must be an integer from 1 to 200"),
        ({"after": "x"}, "after must be a paging offset"),
        ({"filterGroups": [{"filters": [{"operator": "EQ"}]}]}, "each filter needs a propertyName"),
        (
            {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "GT", "value": 1}]}]},
            "unsupported",
        ),
        ({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ"}]}]}, "needs a value"),
        ({"sorts": ["email"]}, "each sort needs a propertyName"),
    ],
)
def test_hubspot_search_validation(hubspot: RunningSandbox, body: Any, message: str) -> None:
    resp = call(hubspot, "POST", "/crm/v3/objects/contacts/search", mint(hubspot)["access_token"], json=body)
    assert resp.status_code == 400
    assert resp.json()["category"] == "VALIDATION_ERROR" and message in resp.json()["message"]


def note_body(**props: Any) -> dict[str, Any]:
    properties = {"hs_timestamp": "2026-04-01T12:00:00Z", "hs_note_body": "Call <b>notes</b>", **props}
    return {"properties": properties, "associations": [{"to": {"id": "101"}, "types": [NOTE_TO_CONTACT]}]}


def test_hubspot_create_note_stores_associations(hubspot: RunningSandbox) -> None:
    token = mint(hubspot)["access_token"]
    resp = call(hubspot, "POST", "/crm/v3/objects/notes", token, json=note_body(hubspot_owner_id=42))
    assert resp.status_code == 201
    note = resp.json()
    assert note["id"] == "90001" and note["archived"] is False
    props = note["properties"]
    assert props["hs_object_id"] == "90001" and props["hubspot_owner_id"] == "42"
    assert props["hs_note_body"] == "Call <b>notes</b>" and props["hs_timestamp"] == "2026-04-01T12:00:00Z"
    assert props["hs_createdate"] == props["hs_lastmodifieddate"] == note["createdAt"] == note["updatedAt"]
    assert call(hubspot, "GET", "/crm/v3/objects/notes/90001", token).json() == note
    stored = call(hubspot, "GET", "/_sandbox/state").json()["notes"]
    assert stored[0]["associations"] == [{"to_type": "contact", "to_id": "101", "type_id": 202}]
    second = call(hubspot, "POST", "/crm/v3/objects/notes", token, json=note_body(hs_timestamp=1775044800000))
    assert second.json()["id"] == "90002"
    assert [n["id"] for n in call(hubspot, "GET", "/_sandbox/state").json()["notes"]] == ["90002", "90001"]


def test_hubspot_create_task_with_deal_association(hubspot: RunningSandbox) -> None:
    token = mint(hubspot)["access_token"]
    body = {
        "properties": {
            "hs_timestamp": "1775044800000",
            "hs_task_subject": "Follow up",
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH",
            "hs_task_type": "TODO",
        },
        "associations": [
            {
                "to": {"id": 201},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 216}],
            },
            {
                "to": {"id": "101"},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": "204"}],
            },
        ],
    }
    resp = call(hubspot, "POST", "/crm/v3/objects/tasks", token, json=body)
    assert resp.status_code == 201
    task = call(hubspot, "GET", "/_sandbox/state").json()["tasks"][0]
    assert task["id"] == resp.json()["id"] and task["properties"]["hs_task_subject"] == "Follow up"
    assert task["associations"] == [
        {"to_type": "deal", "to_id": "201", "type_id": 216},
        {"to_type": "contact", "to_id": "101", "type_id": 204},
    ]


@pytest.mark.parametrize(
    ("obj", "body", "message"),
    [
        ("notes", {"properties": {"hs_note_body": "x"}}, "hs_timestamp is required"),
        ("notes", {"properties": {"hs_timestamp": "yesterday"}}, "hs_timestamp 'yesterday' is not a date"),
        ("notes", {"properties": {"hs_timestamp": "1", "hs_note_body": "x" * 65537}}, "longer than 65536"),
        ("notes", {"properties": ["x"]}, "properties must be an object"),
        ("notes", "just a string", "expected an object with properties"),
        ("tasks", {"properties": {"hs_timestamp": "1", "hs_task_status": "DONE"}}, "hs_task_status"),
        ("tasks", {"properties": {"hs_timestamp": "1", "hs_task_priority": "URGENT"}}, "hs_task_priority"),
        ("tasks", {"properties": {"hs_timestamp": "1", "hs_task_type": "MEETING"}}, "hs_task_type"),
        ("notes", {"properties": {"hs_timestamp": "1"}, "associations": {}}, "associations must be a list"),
        ("notes", {"properties": {"hs_timestamp": "1"}, "associations": [{"to": {}}]}, "needs to.id"),
        (
            "notes",
            {"properties": {"hs_timestamp": "1"}, "associations": [{"to": {"id": 101}, "types": []}]},
            "at least one type",
        ),
    ],
)
def test_hubspot_create_validation(hubspot: RunningSandbox, obj: str, body: Any, message: str) -> None:
    resp = call(hubspot, "POST", f"/crm/v3/objects/{obj}", mint(hubspot)["access_token"], json=body)
    assert resp.status_code == 400
    assert resp.json()["category"] == "VALIDATION_ERROR" and message in resp.json()["message"]
    assert call(hubspot, "GET", "/_sandbox/state").json()[obj] == []


@pytest.mark.parametrize(
    ("to_id", "category", "type_id", "message"),
    [
        (
            "101",
            "HUBSPOT_DEFINED",
            204,
            "invalid association type: 204 is not the HUBSPOT_DEFINED type for note to contact (202)",
        ),
        (
            "201",
            "HUBSPOT_DEFINED",
            202,
            "invalid association type: 202 is not the HUBSPOT_DEFINED type for note to deal (214)",
        ),
        ("999", "HUBSPOT_DEFINED", 202, "999 is not a valid contact or deal id to associate with"),
        (
            "101",
            "USER_DEFINED",
            202,
            "unknown associationCategory 'USER_DEFINED'; the sandbox knows HUBSPOT_DEFINED",
        ),
    ],
)
def test_hubspot_note_association_validation(
    hubspot: RunningSandbox, to_id: str, category: str, type_id: int, message: str
) -> None:
    body = note_body()
    body["associations"] = [
        {"to": {"id": to_id}, "types": [{"associationCategory": category, "associationTypeId": type_id}]}
    ]
    resp = call(hubspot, "POST", "/crm/v3/objects/notes", mint(hubspot)["access_token"], json=body)
    assert resp.status_code == 400
    assert resp.json()["category"] == "VALIDATION_ERROR" and resp.json()["message"] == message


def test_hubspot_associate_later(hubspot: RunningSandbox) -> None:
    token = mint(hubspot)["access_token"]
    note = call(
        hubspot, "POST", "/crm/v3/objects/notes", token, json={"properties": {"hs_timestamp": "1"}}
    ).json()
    path = f"/crm/v3/objects/notes/{note['id']}/associations"
    resp = call(hubspot, "PUT", f"{path}/deals/201/214", token)
    assert resp.status_code == 200 and resp.json()["id"] == note["id"]
    assert call(hubspot, "PUT", f"{path}/deal/201/214", token).status_code == 200  # idempotent
    assert (
        call(hubspot, "PUT", f"{path}/contacts/101/214", token)
        .json()["message"]
        .startswith("invalid association type")
    )
    assert "is not a valid deal id" in call(hubspot, "PUT", f"{path}/deals/101/214", token).json()["message"]
    missing = call(hubspot, "PUT", "/crm/v3/objects/notes/12345/associations/deals/201/214", token)
    assert missing.status_code == 404 and missing.json()["category"] == "OBJECT_NOT_FOUND"
    stored = call(hubspot, "GET", "/_sandbox/state").json()["notes"][0]
    assert stored["associations"] == [{"to_type": "deal", "to_id": "201", "type_id": 214}]


def test_hubspot_note_and_task_search(hubspot: RunningSandbox) -> None:
    token = mint(hubspot)["access_token"]
    for text in ("Quarterly review with Maya", "Pricing call"):
        call(hubspot, "POST", "/crm/v3/objects/notes", token, json=note_body(hs_note_body=text))
    contains = {"propertyName": "hs_note_body", "operator": "CONTAINS_TOKEN", "value": "*review*"}
    resp = call(
        hubspot,
        "POST",
        "/crm/v3/objects/notes/search",
        token,
        json={"filterGroups": [{"filters": [contains]}]},
    )
    assert [r["properties"]["hs_note_body"] for r in resp.json()["results"]] == ["Quarterly review with Maya"]
    neq = {"propertyName": "hs_note_body", "operator": "NEQ", "value": "pricing call"}
    resp = call(
        hubspot, "POST", "/crm/v3/objects/notes/search", token, json={"filterGroups": [{"filters": [neq]}]}
    )
    assert resp.json()["total"] == 1
    assoc = {"propertyName": "associations.contact", "operator": "EQ", "value": "101"}
    resp = call(
        hubspot, "POST", "/crm/v3/objects/notes/search", token, json={"filterGroups": [{"filters": [assoc]}]}
    )
    assert resp.json()["total"] == 2
    assert call(hubspot, "POST", "/crm/v3/objects/tasks/search", token, json={}).json() == {
        "total": 0,
        "results": [],
    }


def test_hubspot_note_and_task_search_by_marker_token(hubspot: RunningSandbox) -> None:
    token = mint(hubspot)["access_token"]
    note = call(
        hubspot, "POST", "/crm/v3/objects/notes", token, json=note_body(hs_note_body=f"Call notes [{MARKER}]")
    ).json()
    task = {"properties": {"hs_timestamp": "1", "hs_task_body": f"Send it [{OTHER_MARKER}]"}}
    task_id = call(hubspot, "POST", "/crm/v3/objects/tasks", token, json=task).json()["id"]

    def found(object_type: str, body_property: str, marker: str) -> list[str]:
        flt = {"propertyName": body_property, "operator": "CONTAINS_TOKEN", "value": marker}
        body = {"filterGroups": [{"filters": [flt]}], "properties": ["hs_object_id"], "limit": 1}
        resp = call(hubspot, "POST", f"/crm/v3/objects/{object_type}/search", token, json=body)
        return [r["id"] for r in resp.json()["results"]]

    assert found("notes", "hs_note_body", MARKER) == [note["id"]]
    assert found("tasks", "hs_task_body", OTHER_MARKER) == [task_id]
    assert found("notes", "hs_note_body", OTHER_MARKER) == []
    assert found("tasks", "hs_task_body", MARKER) == []


def test_hubspot_unknown_paths_and_bad_json(hubspot: RunningSandbox) -> None:
    token = mint(hubspot)["access_token"]
    for method, path in [
        ("GET", "/crm/v3/objects/companies/1"),
        ("GET", "/nope"),
        ("GET", "/crm/v3/objects/notes/777"),
    ]:
        resp = call(hubspot, method, path, token)
        assert resp.status_code == 404 and resp.json()["category"] == "OBJECT_NOT_FOUND"
    resp = call(
        hubspot,
        "POST",
        "/crm/v3/objects/notes",
        token,
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 400 and resp.json()["message"] == "Invalid input JSON: the body is not JSON"


# faults (HubSpot)


@pytest.mark.parametrize(
    ("kind", "status", "check"),
    [
        ("rate_limit", 429, {"errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}),
        ("server_error", 500, {"category": "INTERNAL_ERROR"}),
        ("unavailable", 503, {"message": "Service Unavailable", "category": "INTERNAL_ERROR"}),
        ("invalid_session", 401, {"category": "EXPIRED_AUTHENTICATION"}),
        ("missing_scope", 403, {"category": "MISSING_SCOPES"}),
        ("validation", 400, {"category": "VALIDATION_ERROR"}),
    ],
)
def test_hubspot_faults(hubspot: RunningSandbox, kind: str, status: int, check: dict[str, str]) -> None:
    token = mint(hubspot)["access_token"]
    fault(hubspot, kind=kind, retry_after=7)
    resp = call(hubspot, "GET", "/account-info/v3/details", token)
    assert resp.status_code == status
    assert {k: resp.json()[k] for k in check} == check
    assert ("Retry-After" in resp.headers) == (kind == "rate_limit")
    if kind == "rate_limit":
        assert resp.headers["Retry-After"] == "7"
        assert call(hubspot, "GET", "/_sandbox/state").json()["requests"]["rate_limited"] == 1
    if kind == "missing_scope":
        assert resp.json()["errors"][0]["context"]["requiredGranularScopes"] == ["crm.objects.contacts.write"]
    assert call(hubspot, "GET", "/account-info/v3/details", token).status_code == 200  # count defaults to 1


def test_hubspot_fault_count_path_filter_and_rate(hubspot: RunningSandbox) -> None:
    token = mint(hubspot)["access_token"]
    fault(hubspot, kind="server_error", count=2, path_contains="/search")
    assert call(hubspot, "GET", "/account-info/v3/details", token).status_code == 200
    searches = [
        call(hubspot, "POST", "/crm/v3/objects/contacts/search", token, json={}).status_code for _ in range(3)
    ]
    assert searches == [500, 500, 200]
    fault(hubspot, kind="unavailable", rate=0.0)
    fault(hubspot, kind="server_error", rate=1)
    assert [call(hubspot, "GET", "/account-info/v3/details", token).status_code for _ in range(3)] == [
        500
    ] * 3
    assert [f["kind"] for f in call(hubspot, "GET", "/_sandbox/state").json()["faults"]] == [
        "unavailable",
        "server_error",
    ]
    assert call(hubspot, "DELETE", "/_sandbox/faults").status_code == 204
    assert call(hubspot, "GET", "/account-info/v3/details", token).status_code == 200


def test_hubspot_faults_skip_oauth_and_control_paths(hubspot: RunningSandbox) -> None:
    tokens = mint(hubspot)
    fault(hubspot, kind="server_error")
    assert call(hubspot, "GET", f"/oauth/v1/access-tokens/{tokens['access_token']}").status_code == 200
    assert hs_refresh(hubspot, tokens["refresh_token"]).status_code == 200
    assert hs_authorize(hubspot).status_code == 200
    assert call(hubspot, "GET", "/_sandbox/state").status_code == 200
    assert call(hubspot, "GET", "/account-info/v3/details", tokens["access_token"]).status_code == 500


def test_hubspot_invalid_grant_fault_hits_refresh_only(hubspot: RunningSandbox) -> None:
    tokens = mint(hubspot)
    fault(hubspot, kind="invalid_grant")
    assert call(hubspot, "GET", "/account-info/v3/details", tokens["access_token"]).status_code == 200
    assert hs_exchange(hubspot, hs_code(hubspot)).status_code == 200
    resp = hs_refresh(hubspot, tokens["refresh_token"])
    assert resp.status_code == 400 and resp.json()["status"] == "BAD_REFRESH_TOKEN"
    assert hs_refresh(hubspot, tokens["refresh_token"]).status_code == 200  # the token itself still works


def test_hubspot_hang_fault_answers_504_after_the_wait(hubspot: RunningSandbox) -> None:
    token = mint(hubspot)["access_token"]
    fault(hubspot, kind="hang", hang_seconds=0.3)
    started = time.monotonic()
    resp = call(hubspot, "GET", "/account-info/v3/details", token)
    assert resp.status_code == 504 and resp.json()["message"] == "Gateway Timeout"
    assert time.monotonic() - started >= 0.3


def test_hubspot_commit_then_hang_stores_the_note_then_answers_late(hubspot: RunningSandbox) -> None:
    token = mint(hubspot)["access_token"]
    fault(hubspot, kind="commit_then_hang", hang_seconds=0.3)
    assert call(hubspot, "GET", "/account-info/v3/details", token).status_code == 200
    assert call(hubspot, "POST", "/crm/v3/objects/notes/search", token, json={}).status_code == 200
    assert [f["kind"] for f in call(hubspot, "GET", "/_sandbox/state").json()["faults"]] == [
        "commit_then_hang"
    ]
    started = time.monotonic()
    resp = call(hubspot, "POST", "/crm/v3/objects/notes", token, json=note_body())
    assert resp.status_code == 201 and time.monotonic() - started >= 0.3
    state = call(hubspot, "GET", "/_sandbox/state").json()
    assert [n["id"] for n in state["notes"]] == [resp.json()["id"]] and state["faults"] == []


def test_hubspot_commit_then_hang_commits_although_the_client_gave_up(hubspot: RunningSandbox) -> None:
    token = mint(hubspot)["access_token"]
    fault(hubspot, kind="commit_then_hang", hang_seconds=2, count=2, path_contains="/tasks")
    note = call(hubspot, "POST", "/crm/v3/objects/notes", token, json=note_body())
    assert note.status_code == 201  # another path: the fault stays queued
    task = {"properties": {"hs_timestamp": "1", "hs_task_subject": "Send the contract"}}
    for _ in range(2):
        with pytest.raises(requests.ReadTimeout):
            call(hubspot, "POST", "/crm/v3/objects/tasks", token, json=task, timeout=0.3)
    state = call(hubspot, "GET", "/_sandbox/state").json()
    assert [t["properties"]["hs_task_subject"] for t in state["tasks"]] == ["Send the contract"] * 2
    assert state["faults"] == []
    assert call(hubspot, "POST", "/crm/v3/objects/tasks", token, json=task).status_code == 201


def test_hang_holds_no_lock_and_stop_wakes_it() -> None:
    sandbox = start_sandbox("hubspot", port=0)
    try:
        token = mint(sandbox)["access_token"]
        fault(sandbox, kind="hang", hang_seconds=60)
        with pytest.raises(requests.ReadTimeout):
            call(sandbox, "GET", "/account-info/v3/details", token, timeout=0.5)
        started = time.monotonic()
        assert call(sandbox, "GET", "/account-info/v3/details", token).status_code == 200
        assert time.monotonic() - started < 1  # the hanging handler does not hold the state lock
    finally:
        started = time.monotonic()
        sandbox.stop()
    assert time.monotonic() - started < 2
    assert not sandbox._thread.is_alive()
    with pytest.raises(requests.ConnectionError):
        requests.get(sandbox.base_url + "/", timeout=TIMEOUT)


# control endpoints, pages and the server


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/_sandbox/faults", {"kind": "explode"}, "unknown fault kind 'explode'"),
        ("/_sandbox/faults", {"kind": "hang", "count": 0}, "invalid count: 0"),
        ("/_sandbox/faults", {"kind": "hang", "rate": 2}, "invalid rate: 2"),
        ("/_sandbox/faults", {"kind": "hang", "retry_after": True}, "invalid retry_after: True"),
        ("/_sandbox/faults", {"kind": "hang", "colour": "red"}, "unknown fault fields: ['colour']"),
        ("/_sandbox/faults", {"kind": "commit_then_hang", "hang_seconds": 601}, "invalid hang_seconds: 601"),
        ("/_sandbox/faults", {"kind": "commit_then_hang", "count": 0}, "invalid count: 0"),
        ("/_sandbox/faults", [], "fault must be a JSON object"),
        ("/_sandbox/config", {"daily_api_limit": 5}, "unknown config key 'daily_api_limit'"),
        ("/_sandbox/config", {"ten_second_limit": "5"}, "ten_second_limit must be a non-negative integer"),
        ("/_sandbox/config", {"ten_second_limit": True}, "ten_second_limit must be a non-negative integer"),
        ("/_sandbox/config", [], "config must be a JSON object"),
        ("/_sandbox/tokens", {"scopes": "oauth"}, "scopes must be a list of strings"),
        ("/_sandbox/tokens", {"expires_in": "60"}, "expires_in must be an integer"),
        ("/_sandbox/tokens", {"user": "x"}, "optional 'scopes' and 'expires_in'"),
    ],
)
def test_control_endpoints_refuse_bad_input(
    hubspot: RunningSandbox, path: str, body: Any, message: str
) -> None:
    resp = call(hubspot, "POST", path, json=body)
    assert resp.status_code == 400 and message in resp.json()["error"]


def test_control_endpoints_refuse_non_json_and_unknown_paths(hubspot: RunningSandbox) -> None:
    resp = call(hubspot, "POST", "/_sandbox/faults", data=b"kind=hang")
    assert resp.status_code == 400
    resp = call(hubspot, "GET", "/_sandbox/nothing")
    assert resp.status_code == 404 and resp.json() == {
        "error": "no sandbox control endpoint GET /_sandbox/nothing"
    }


def test_state_config_and_reset(hubspot: RunningSandbox) -> None:
    tokens = mint(hubspot)
    call(hubspot, "POST", "/crm/v3/objects/notes", tokens["access_token"], json=note_body())
    fault(hubspot, kind="server_error", count=3)
    assert configure(hubspot, search_per_second=2, access_token_ttl=60) == {
        "ten_second_limit": 110,
        "search_per_second": 2,
        "access_token_ttl": 60,
    }
    assert mint(hubspot)["expires_in"] == 60
    state = call(hubspot, "GET", "/_sandbox/state").json()
    assert [c["properties"]["email"] for c in state["contacts"]] == [
        "maya.lopez@acme-logistics.example",
        "jonas@brightfield-energy.example",
        "lee@northwind.example",
    ]
    assert [d["properties"]["dealname"] for d in state["deals"]] == [
        "Acme Logistics - Annual plan",
        "Acme Logistics - Pilot",
        "Brightfield rollout",
    ]
    assert len(state["notes"]) == 1 and state["tasks"] == [] and state["active_tokens"] == 2
    assert state["faults"] == [
        {
            "kind": "server_error",
            "count": 3,
            "rate": None,
            "retry_after": 1,
            "hang_seconds": 30.0,
            "path_contains": None,
        }
    ]
    assert call(hubspot, "POST", "/_sandbox/reset").status_code == 204
    state = call(hubspot, "GET", "/_sandbox/state").json()
    assert state["notes"] == [] and state["faults"] == [] and state["active_tokens"] == 0
    assert state["config"]["search_per_second"] == 5 and state["requests"] == {"total": 0, "rate_limited": 0}
    assert call(hubspot, "GET", "/account-info/v3/details", tokens["access_token"]).status_code == 401


def test_hubspot_overview_page(hubspot: RunningSandbox) -> None:
    token = mint(hubspot)["access_token"]
    call(hubspot, "POST", "/crm/v3/objects/notes", token, json=note_body())
    task = {"properties": {"hs_timestamp": "1", "hs_task_subject": "Send <contract>"}}
    call(hubspot, "POST", "/crm/v3/objects/tasks", token, json=task)
    fault(hubspot, kind="unavailable", path_contains="/crm/")
    resp = call(hubspot, "GET", "/")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    page = resp.text
    assert "<h1>HubSpot sandbox</h1>" in page and "4400001 (sandbox-demo.hubspot.com)" in page
    assert "maya.lopez@acme-logistics.example" in page and "Brightfield rollout" in page
    assert (
        "Call &lt;b&gt;notes&lt;/b&gt;" in page and "Send &lt;contract&gt;" in page and "<b>notes" not in page
    )
    assert "contact 101 (202)" in page and "<td>unavailable</td>" in page and "<td>/crm/</td>" in page
    assert "<td>2 / 110</td>" in page and "<table>" in page


def test_handler_answers_500_when_a_route_crashes(
    hubspot: RunningSandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(req: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(hubspot._server.app, "route", boom)
    resp = call(hubspot, "GET", "/account-info/v3/details")
    assert resp.status_code == 500 and resp.json() == {"error": "sandbox internal error"}
    assert "sandbox hubspot: GET /account-info/v3/details failed" in caplog.text
    assert call(hubspot, "GET", "/_sandbox/state").status_code == 200


def test_handler_refuses_bad_content_length(hubspot: RunningSandbox) -> None:
    host, port = urlsplit(hubspot.base_url).hostname, urlsplit(hubspot.base_url).port
    conn = http.client.HTTPConnection(host or "", port, timeout=TIMEOUT)
    conn.putrequest("POST", "/_sandbox/reset")
    conn.putheader("Content-Length", "lots")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 400 and b"bad Content-Length" in resp.read()
    conn.close()


def test_server_logs_protocol_errors_without_queries(
    hubspot: RunningSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="conduit.sandbox")
    with socket.create_connection(
        (urlsplit(hubspot.base_url).hostname, urlsplit(hubspot.base_url).port), TIMEOUT
    ) as s:
        s.sendall(b"GARBAGE /x?token=sekrit\r\n\r\n")
        s.recv(1024)
    assert "sekrit" not in caplog.text


def test_start_sandbox_refuses_unknown_provider() -> None:
    with pytest.raises(
        ValueError,
        match="unknown sandbox provider 'pipedrive'; "
        "choose one of google, greenhouse, hubspot, lever, microsoft, odoo, salesforce, workday, zoho",
    ):
        start_sandbox("pipedrive")


# Salesforce OAuth and identity


def pkce_pair() -> tuple[str, str]:
    verifier = "v" * 43
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def sf_authorize(salesforce: RunningSandbox, **params: str) -> requests.Response:
    query = {
        "response_type": "code",
        "client_id": SF_ID,
        "redirect_uri": REDIRECT,
        "scope": "api refresh_token",
        "state": "st",
        "code_challenge": pkce_pair()[1],
        "code_challenge_method": "S256",
    }
    return call(salesforce, "GET", "/services/oauth2/authorize", params={**query, **params})


def sf_code(salesforce: RunningSandbox, **params: str) -> str:
    form = {**hidden_fields(sf_authorize(salesforce, **params).text), "decision": "allow"}
    return location_query(call(salesforce, "POST", "/services/oauth2/authorize/decision", data=form))["code"]


def sf_token(salesforce: RunningSandbox, **form: str) -> requests.Response:
    return call(
        salesforce,
        "POST",
        "/services/oauth2/token",
        data={"client_id": SF_ID, "client_secret": SF_SECRET, **form},
    )


def sf_exchange(salesforce: RunningSandbox, code: str, **overrides: str) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": pkce_pair()[0],
    }
    return sf_token(salesforce, **{**form, **overrides})


def test_salesforce_consent_page_and_deny(salesforce: RunningSandbox) -> None:
    resp = sf_authorize(salesforce)
    assert (
        resp.status_code == 200 and "<h1>Salesforce</h1>" in resp.text and "00D5g000004SbxAEAS" in resp.text
    )
    assert ">Allow</button>" in resp.text and ">Deny</button>" in resp.text
    form = hidden_fields(resp.text)
    assert form["code_challenge"] == pkce_pair()[1] and form["scope"] == "api refresh_token"
    deny = call(salesforce, "POST", "/services/oauth2/authorize/decision", data={**form, "decision": "deny"})
    assert deny.headers["Location"] == (
        f"{REDIRECT}?error=access_denied&error_description=end-user+denied+authorization&state=st"
    )


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"response_type": "token"}, "response_type must be"),
        ({"code_challenge_method": "plain"}, "code_challenge_method must be S256"),
        ({"client_id": "x"}, "Unknown client_id"),
    ],
)
def test_salesforce_authorize_refusals(
    salesforce: RunningSandbox, params: dict[str, str], reason: str
) -> None:
    resp = sf_authorize(salesforce, **params)
    assert resp.status_code == 400 and reason in resp.text


def test_salesforce_code_exchange_with_pkce(salesforce: RunningSandbox) -> None:
    resp = sf_exchange(salesforce, sf_code(salesforce))
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {
        "access_token",
        "refresh_token",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
        "signature",
        "scope",
    }
    assert body["instance_url"] == salesforce.base_url and body["token_type"] == "Bearer"
    assert body["id"] == f"{salesforce.base_url}/id/00D5g000004SbxAEAS/0055g00000SbxUsAAJ"
    assert re.fullmatch(r"\d{13}", body["issued_at"]) and body["scope"] == "api refresh_token"
    expected = hmac.new(
        SF_SECRET.encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256
    ).digest()
    assert base64.b64decode(body["signature"]) == expected
    again = sf_exchange(salesforce, sf_code(salesforce, scope="api"))
    assert "refresh_token" not in again.json() and again.json()["scope"] == "api"


def test_salesforce_default_scopes_and_offline_access(salesforce: RunningSandbox) -> None:
    form = hidden_fields(sf_authorize(salesforce, scope="").text)
    assert form["scope"] == "api refresh_token id"
    assert "refresh_token" in sf_exchange(salesforce, sf_code(salesforce, scope="api offline_access")).json()


@pytest.mark.parametrize(
    ("overrides", "error", "description"),
    [
        ({"code_verifier": "w" * 43}, "invalid_grant", "invalid code verifier"),
        ({"code_verifier": ""}, "invalid_grant", "invalid code verifier"),
        ({"redirect_uri": "https://elsewhere.example/cb"}, "invalid_grant", "invalid authorization code"),
        ({"client_secret": "nope"}, "invalid_client", "invalid client credentials"),
        ({"grant_type": "password"}, "unsupported_grant_type", "grant type not supported"),
    ],
)
def test_salesforce_code_exchange_refusals(
    salesforce: RunningSandbox, overrides: dict[str, str], error: str, description: str
) -> None:
    resp = sf_exchange(salesforce, sf_code(salesforce), **overrides)
    assert resp.status_code == 400 and resp.json() == {"error": error, "error_description": description}


def test_salesforce_code_is_single_use_and_pkce_optional(salesforce: RunningSandbox) -> None:
    code = sf_code(salesforce, code_challenge="", code_challenge_method="")
    assert sf_exchange(salesforce, code, code_verifier="").status_code == 200
    assert sf_exchange(salesforce, code).json()["error_description"] == "invalid authorization code"


def test_salesforce_refresh_returns_no_new_refresh_token(salesforce: RunningSandbox) -> None:
    tokens = mint(salesforce)
    resp = sf_token(salesforce, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert resp.status_code == 200
    body = resp.json()
    assert "refresh_token" not in body and "expires_in" not in body
    assert body["access_token"] != tokens["access_token"] and body["scope"] == "api refresh_token id"
    assert call(salesforce, "GET", "/services/oauth2/userinfo", body["access_token"]).status_code == 200
    bad = sf_token(salesforce, grant_type="refresh_token", refresh_token="nope")
    assert bad.json() == {"error": "invalid_grant", "error_description": "expired access/refresh token"}


def test_salesforce_invalid_grant_fault(salesforce: RunningSandbox) -> None:
    tokens = mint(salesforce)
    fault(salesforce, kind="invalid_grant", count=1)
    assert call(salesforce, "GET", f"{V}/limits", tokens["access_token"]).status_code == 200
    resp = sf_token(salesforce, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    resp = sf_token(salesforce, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert resp.status_code == 200


def test_salesforce_revoke(salesforce: RunningSandbox) -> None:
    tokens = mint(salesforce)
    refreshed = sf_token(salesforce, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    resp = call(salesforce, "POST", "/services/oauth2/revoke", data={"token": tokens["refresh_token"]})
    assert (resp.status_code, resp.content) == (200, b"")
    for token in (tokens["access_token"], refreshed["access_token"]):
        resp = call(salesforce, "GET", f"{V}/limits", token)
        assert resp.status_code == 401
        assert resp.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    other = mint(salesforce)
    assert (
        call(salesforce, "POST", "/services/oauth2/revoke", data={"token": other["access_token"]}).status_code
        == 200
    )
    assert call(salesforce, "GET", "/services/oauth2/userinfo", other["access_token"]).status_code == 401
    assert (
        sf_token(salesforce, grant_type="refresh_token", refresh_token=other["refresh_token"]).status_code
        == 200
    )
    unknown = call(salesforce, "POST", "/services/oauth2/revoke", data={"token": "nope"})
    assert unknown.status_code == 400
    assert unknown.json() == {
        "error": "unsupported_token_type",
        "error_description": "this token type is not supported",
    }


def test_salesforce_userinfo_and_id(salesforce: RunningSandbox) -> None:
    token = mint(salesforce)["access_token"]
    identity = f"{salesforce.base_url}/id/00D5g000004SbxAEAS/0055g00000SbxUsAAJ"
    userinfo = call(salesforce, "GET", "/services/oauth2/userinfo", token).json()
    assert userinfo == {
        "sub": identity,
        "user_id": "0055g00000SbxUsAAJ",
        "organization_id": "00D5g000004SbxAEAS",
        "preferred_username": "admin@sandbox-demo.example",
        "email": "admin@sandbox-demo.example",
        "name": "Sandbox Admin",
    }
    ident = call(salesforce, "GET", "/id/00D5g000004SbxAEAS/0055g00000SbxUsAAJ", token).json()
    assert ident == {
        "id": identity,
        "user_id": "0055g00000SbxUsAAJ",
        "organization_id": "00D5g000004SbxAEAS",
        "username": "admin@sandbox-demo.example",
        "display_name": "Sandbox Admin",
        "email": "admin@sandbox-demo.example",
    }
    assert call(salesforce, "GET", "/id/00D000000000000/005000000000000", token).status_code == 404
    assert call(salesforce, "GET", "/services/oauth2/userinfo").status_code == 401
    expired = mint(salesforce, expires_in=-1)["access_token"]
    assert call(salesforce, "GET", "/services/oauth2/userinfo", expired).status_code == 401


# Salesforce REST


def test_salesforce_versions_are_free_and_unauthenticated(salesforce: RunningSandbox) -> None:
    for path in ("/services/data/", "/services/data"):
        resp = call(salesforce, "GET", path)
        assert resp.json() == [{"label": "Spring '26", "url": "/services/data/v66.0", "version": "66.0"}]
        assert "Sforce-Limit-Info" not in resp.headers
    assert call(salesforce, "GET", "/_sandbox/state").json()["api_usage"] == 0


def test_salesforce_api_usage_header_and_daily_limit(salesforce: RunningSandbox) -> None:
    token = mint(salesforce)["access_token"]
    configure(salesforce, daily_api_limit=3)
    first = call(salesforce, "GET", f"{V}/limits", token)
    assert first.headers["Sforce-Limit-Info"] == "api-usage=1/3"
    assert first.json() == {"DailyApiRequests": {"Max": 3, "Remaining": 2}}
    unauthenticated = call(salesforce, "GET", f"{V}/limits")
    assert (
        unauthenticated.status_code == 401 and unauthenticated.headers["Sforce-Limit-Info"] == "api-usage=1/3"
    )
    assert (
        call(salesforce, "GET", "/services/data/v62.0/sobjects/Task/none", token).headers["Sforce-Limit-Info"]
        == "api-usage=2/3"
    )
    assert call(salesforce, "GET", f"{V}/limits", token).headers["Sforce-Limit-Info"] == "api-usage=3/3"
    resp = call(salesforce, "GET", f"{V}/limits", token)
    assert resp.status_code == 403
    assert resp.json() == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    assert resp.headers["Sforce-Limit-Info"] == "api-usage=3/3"
    state = call(salesforce, "GET", "/_sandbox/state").json()
    assert state["api_usage"] == 3 and state["requests"]["rate_limited"] == 1
    assert configure(salesforce, api_usage=0)["api_usage"] == 0
    assert call(salesforce, "GET", f"{V}/limits", token).status_code == 200


def test_salesforce_token_without_api_scope_is_refused(salesforce: RunningSandbox) -> None:
    token = mint(salesforce, scopes=["id"])["access_token"]
    assert "refresh_token" not in mint(salesforce, scopes=["id"])
    resp = call(salesforce, "GET", f"{V}/limits", token)
    assert resp.status_code == 403
    assert resp.json() == [
        {"message": "This session is not valid for use with the REST API", "errorCode": "INVALID_SESSION_ID"}
    ]
    assert (
        call(salesforce, "GET", f"{V}/limits", mint(salesforce, scopes=["full"])["access_token"]).status_code
        == 200
    )


def query(salesforce: RunningSandbox, token: str, soql: str) -> requests.Response:
    return call(salesforce, "GET", f"{V}/query", token, params={"q": soql})


def test_salesforce_contact_query(salesforce: RunningSandbox) -> None:
    token = mint(salesforce)["access_token"]
    resp = query(
        salesforce,
        token,
        "select Id, Name, Email from Contact where Email = 'JONAS@brightfield-energy.example' limit 1",
    )
    assert resp.status_code == 200
    assert resp.json() == {
        "totalSize": 1,
        "done": True,
        "records": [
            {
                "attributes": {"type": "Contact", "url": f"{V}/sobjects/Contact/{C2}"},
                "Id": C2,
                "Name": "Jonas Weber",
                "Email": "jonas@brightfield-energy.example",
            }
        ],
    }
    escaped = query(
        salesforce, token, r"SELECT Id, Name, Email FROM Contact WHERE Email = 'o\'brien@x.example' LIMIT 1"
    )
    assert escaped.json() == {"totalSize": 0, "done": True, "records": []}


def role_query(contact: str, closed: str = "false") -> str:
    return (
        f"SELECT OpportunityId FROM OpportunityContactRole WHERE ContactId = '{contact}' "
        f"AND Opportunity.IsClosed = {closed} ORDER BY Opportunity.LastModifiedDate DESC LIMIT 1"
    )


def test_salesforce_open_opportunity_query(salesforce: RunningSandbox) -> None:
    token = mint(salesforce)["access_token"]

    def ids(soql: str) -> list[str]:
        return [r["OpportunityId"] for r in query(salesforce, token, soql).json()["records"]]

    assert ids(role_query(C1)) == [O1]
    assert ids(role_query(C2)) == [O3]
    assert ids(role_query(C1, "TRUE")) == [O2]
    assert ids(role_query("0035g00000SbxC3AAJ")) == []
    record = query(salesforce, token, role_query(C1)).json()["records"][0]
    assert record["attributes"]["type"] == "OpportunityContactRole"


def test_salesforce_unsupported_query(salesforce: RunningSandbox) -> None:
    resp = query(salesforce, mint(salesforce)["access_token"], "SELECT Id FROM Account")
    assert resp.status_code == 400
    assert resp.json() == [
        {"message": "unsupported query in sandbox: SELECT Id FROM Account", "errorCode": "MALFORMED_QUERY"}
    ]


def marked_task_query(who: str, pattern: str, limit: str = " LIMIT 1") -> str:
    return f"SELECT Id FROM Task WHERE WhoId = '{who}' AND Subject LIKE '{pattern}'{limit}"


def test_salesforce_marked_task_query(salesforce: RunningSandbox) -> None:
    token = mint(salesforce)["access_token"]
    ids = [
        call(salesforce, "POST", f"{V}/sobjects/Task", token, json={"Subject": subject, "WhoId": who}).json()[
            "id"
        ]
        for subject, who in [
            (f"Re: pricing [{MARKER}]", C1),
            (f"Follow up [{OTHER_MARKER}]", C1),
            (f"Re: pricing [{MARKER}]", C2),
            ("50% off_", C1),
        ]
    ]

    def found(soql: str) -> list[str]:
        resp = query(salesforce, token, soql)
        assert resp.status_code == 200, resp.text
        return [r["Id"] for r in resp.json()["records"]]

    assert found(marked_task_query(C1, f"%{MARKER}%")) == [ids[0]]
    assert found(marked_task_query(C2, f"%{MARKER}%")) == [ids[2]]
    assert found(marked_task_query(C1, f"%{MARKER.upper()}%")) == [ids[0]]  # LIKE ignores case
    assert found(marked_task_query(C1, "cdw" + "0" * 24)) == []
    assert found(marked_task_query(C1, "%[cdw%", "")) == ids[:2]
    assert found(marked_task_query(C1, "%[cdw%")) == ids[:1]
    assert found(marked_task_query(C1, r"50\% off\_")) == [ids[3]]
    assert found(marked_task_query(C1, "5_% off_")) == [ids[3]]
    assert found(marked_task_query(C1, r"%\'%")) == []
    record = query(salesforce, token, marked_task_query(C1, f"%{MARKER}%")).json()["records"][0]
    assert record == {"attributes": {"type": "Task", "url": f"{V}/sobjects/Task/{ids[0]}"}, "Id": ids[0]}


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("%abc%", "xxABCxx", True),
        ("a_c", "abc", True),
        ("a_c", "abbc", False),
        (r"a\_c", "a_c", True),
        (r"a\_c", "abc", False),
        (r"100\%", "100%", True),
        ("a.c", "abc", False),
        ("%", "line one\nline two", True),
    ],
)
def test_soql_like_patterns(pattern: str, text: str, matches: bool) -> None:
    assert bool(like(pattern).fullmatch(text)) == matches


def test_salesforce_create_and_read_task(salesforce: RunningSandbox) -> None:
    token = mint(salesforce)["access_token"]
    body = {
        "Subject": "Call Maya",
        "Description": "notes",
        "WhoId": C1,
        "WhatId": O1,
        "ActivityDate": "2026-04-02",
    }
    resp = call(salesforce, "POST", f"{V}/sobjects/Task", token, json=body)
    assert resp.status_code == 201
    task_id = resp.json()["id"]
    assert resp.json() == {"id": task_id, "success": True, "errors": []}
    assert re.fullmatch(r"00T5g\w{13}", task_id)
    task = call(salesforce, "GET", f"{V}/sobjects/Task/{task_id}", token).json()
    assert task["attributes"] == {"type": "Task", "url": f"{V}/sobjects/Task/{task_id}"}
    assert {
        k: task[k] for k in ("Id", "Subject", "WhoId", "WhatId", "ActivityDate", "Status", "Priority")
    } == {
        "Id": task_id,
        "Subject": "Call Maya",
        "WhoId": C1,
        "WhatId": O1,
        "ActivityDate": "2026-04-02",
        "Status": "Not Started",
        "Priority": "Normal",
    }
    assert task["OwnerId"] == "0055g00000SbxUsAAJ"
    assert call(salesforce, "GET", "/_sandbox/state").json()["tasks"][0]["Id"] == task_id


def sf_err(message: str, code: str, field: str | None = None) -> dict[str, Any]:
    return {"message": message, "errorCode": code, **({"fields": [field]} if field else {})}


TASK_ERRORS = [
    (
        {"Subject": "x", "WhoId": "003000000000000AAA"},
        sf_err("Contact ID: id value of incorrect type: 003000000000000AAA", "MALFORMED_ID", "WhoId"),
    ),
    (
        {"Subject": "x", "WhatId": C1},
        sf_err(f"Related To ID: id value of incorrect type: {C1}", "MALFORMED_ID", "WhatId"),
    ),
    (
        {"Description": "x"},
        sf_err("Required fields are missing: [Subject]", "REQUIRED_FIELD_MISSING", "Subject"),
    ),
    (
        {"Subject": "x", "Colour": "red"},
        sf_err("No such column 'Colour' on sobject of type Task", "INVALID_FIELD", "Colour"),
    ),
    (
        {"Subject": "x" * 256},
        sf_err("Subject: data value too large (max length=255)", "STRING_TOO_LONG", "Subject"),
    ),
    (
        {"Subject": "x", "Description": "y" * 32001},
        sf_err("Description: data value too large (max length=32000)", "STRING_TOO_LONG", "Description"),
    ),
    (
        {"Subject": "x", "ActivityDate": "02/04/2026"},
        sf_err("Cannot deserialize ActivityDate from '02/04/2026'", "JSON_PARSER_ERROR", "ActivityDate"),
    ),
    (
        {"Subject": "x", "Status": "Done"},
        sf_err(
            "Status: bad value for restricted picklist field",
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "Status",
        ),
    ),
    ({"Subject": 5}, sf_err("Cannot deserialize Subject: expected a string", "JSON_PARSER_ERROR", "Subject")),
    (["x"], sf_err("The request body must be a JSON object", "JSON_PARSER_ERROR")),
]


@pytest.mark.parametrize(("body", "error"), TASK_ERRORS)
def test_salesforce_task_validation(salesforce: RunningSandbox, body: Any, error: dict[str, Any]) -> None:
    resp = call(salesforce, "POST", f"{V}/sobjects/Task", mint(salesforce)["access_token"], json=body)
    assert resp.status_code == 400 and resp.json() == [error]
    assert call(salesforce, "GET", "/_sandbox/state").json()["tasks"] == []


def test_salesforce_not_found_and_bad_json(salesforce: RunningSandbox) -> None:
    token = mint(salesforce)["access_token"]
    not_found = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
    for path in (f"{V}/sobjects/Task/00T5g0000000000AAA", f"{V}/sobjects/Account", "/elsewhere"):
        resp = call(salesforce, "GET", path, token)
        assert (resp.status_code, resp.json()) == (404, not_found)
    resp = call(
        salesforce,
        "POST",
        f"{V}/sobjects/Task",
        token,
        data=b"{",
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def composite_body(*subs: dict[str, Any], all_or_none: bool = False) -> dict[str, Any]:
    return {"allOrNone": all_or_none, "compositeRequest": list(subs)}


CONTACT_SUB = {
    "method": "GET",
    "url": f"{V}/query?q=SELECT+Id,+Name,+Email+FROM+Contact+WHERE+Email+=+'lee@northwind.example'+LIMIT+1",
    "referenceId": "contact",
}


def test_salesforce_composite_with_references_counts_once(salesforce: RunningSandbox) -> None:
    token = mint(salesforce)["access_token"]
    task_sub = {
        "method": "POST",
        "url": f"{V}/sobjects/Task",
        "referenceId": "task",
        "body": {"Subject": "Follow up", "WhoId": "@{contact.records[0].Id}"},
    }
    read_sub = {"method": "GET", "url": f"{V}/sobjects/Task/@{{task.id}}", "referenceId": "read"}
    resp = call(
        salesforce, "POST", f"{V}/composite", token, json=composite_body(CONTACT_SUB, task_sub, read_sub)
    )
    assert resp.status_code == 200 and resp.headers["Sforce-Limit-Info"] == "api-usage=1/100000"
    answers = resp.json()["compositeResponse"]
    assert [(a["referenceId"], a["httpStatusCode"]) for a in answers] == [
        ("contact", 200),
        ("task", 201),
        ("read", 200),
    ]
    assert all(a["httpHeaders"] == {} for a in answers)
    assert (
        answers[2]["body"]["WhoId"] == "0035g00000SbxC3AAJ"
        and answers[2]["body"]["Id"] == answers[1]["body"]["id"]
    )


def test_salesforce_composite_all_or_none_rolls_back(salesforce: RunningSandbox) -> None:
    token = mint(salesforce)["access_token"]
    good = {"method": "POST", "url": f"{V}/sobjects/Task", "referenceId": "good", "body": {"Subject": "ok"}}
    bad = {
        "method": "POST",
        "url": f"{V}/sobjects/Task",
        "referenceId": "bad",
        "body": {"Subject": "x", "WhoId": "nope"},
    }
    after = {"method": "GET", "url": f"{V}/limits", "referenceId": "after"}
    resp = call(
        salesforce, "POST", f"{V}/composite", token, json=composite_body(good, bad, after, all_or_none=True)
    )
    answers = resp.json()["compositeResponse"]
    assert [(a["referenceId"], a["httpStatusCode"]) for a in answers] == [
        ("good", 400),
        ("bad", 400),
        ("after", 400),
    ]
    assert (
        answers[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
        and answers[2]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    )
    assert answers[1]["body"][0]["errorCode"] == "MALFORMED_ID"
    assert call(salesforce, "GET", "/_sandbox/state").json()["tasks"] == []


def test_salesforce_composite_without_all_or_none_keeps_going(salesforce: RunningSandbox) -> None:
    token = mint(salesforce)["access_token"]
    missing = {
        "method": "GET",
        "url": f"{V}/query?q=SELECT+Id,+Name,+Email+FROM+Contact+WHERE+Email+=+'x@y.z'",
        "referenceId": "c",
    }
    dependent = {
        "method": "POST",
        "url": f"{V}/sobjects/Task",
        "referenceId": "t",
        "body": {"Subject": "s", "WhoId": "@{c.records[0].Id}"},
    }
    unknown_ref = {"method": "GET", "url": f"{V}/sobjects/Task/@{{nobody.id}}", "referenceId": "u"}
    nested = {"method": "POST", "url": f"{V}/composite", "referenceId": "n", "body": {}}
    elsewhere = {"method": "GET", "url": "/services/oauth2/userinfo", "referenceId": "e"}
    standalone = {
        "method": "POST",
        "url": f"{V}/sobjects/Task",
        "referenceId": "ok",
        "body": {"Subject": "kept"},
    }
    listed = {
        "method": "POST",
        "url": f"{V}/sobjects/Task",
        "referenceId": "list",
        "body": {"Subject": "x", "Description": ["@{ok.id}"]},
    }
    subs = (missing, dependent, unknown_ref, nested, elsewhere, standalone, listed)
    answers = call(salesforce, "POST", f"{V}/composite", token, json=composite_body(*subs)).json()[
        "compositeResponse"
    ]
    assert [a["httpStatusCode"] for a in answers] == [200, 400, 400, 404, 404, 201, 400]
    assert answers[6]["body"][0]["message"] == "Cannot deserialize Description: expected a string"
    assert answers[1]["body"] == [
        {
            "message": "Invalid reference specified. No value for @{c.records[0].Id}",
            "errorCode": "INVALID_FIELD",
        }
    ]
    assert answers[2]["body"][0]["message"] == "Invalid reference specified. No value for @{nobody.id}"
    assert [t["Subject"] for t in call(salesforce, "GET", "/_sandbox/state").json()["tasks"]] == ["kept"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"compositeRequest": []}, "JSON_PARSER_ERROR"),
        ({"compositeRequest": [{"method": "GET"}]}, "JSON_PARSER_ERROR"),
        ([], "JSON_PARSER_ERROR"),
        (composite_body(*[{**CONTACT_SUB, "referenceId": f"r{i}"} for i in range(6)]), "LIMIT_EXCEEDED"),
        (
            composite_body(
                *[{"method": "GET", "url": f"{V}/limits", "referenceId": f"r{i}"} for i in range(26)]
            ),
            "LIMIT_EXCEEDED",
        ),
    ],
)
def test_salesforce_composite_refusals(salesforce: RunningSandbox, body: Any, code: str) -> None:
    resp = call(salesforce, "POST", f"{V}/composite", mint(salesforce)["access_token"], json=body)
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == code


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("rate_limit", 403, "REQUEST_LIMIT_EXCEEDED"),
        ("invalid_session", 401, "INVALID_SESSION_ID"),
        ("missing_scope", 403, "INVALID_SESSION_ID"),
        ("validation", 400, "FIELD_CUSTOM_VALIDATION_EXCEPTION"),
        ("server_error", 500, "UNKNOWN_EXCEPTION"),
        ("unavailable", 503, "SERVER_UNAVAILABLE"),
        ("hang", 504, "REQUEST_RUNNING_TOO_LONG"),
    ],
)
def test_salesforce_faults(salesforce: RunningSandbox, kind: str, status: int, code: str) -> None:
    token = mint(salesforce)["access_token"]
    fault(salesforce, kind=kind, retry_after=3, hang_seconds=0.05)
    resp = call(salesforce, "GET", f"{V}/limits", token)
    assert resp.status_code == status and resp.json()[0]["errorCode"] == code
    assert resp.headers["Sforce-Limit-Info"] == "api-usage=0/100000"
    assert resp.headers.get("Retry-After") == ("3" if kind == "rate_limit" else None)
    assert call(salesforce, "GET", f"{V}/limits", token).status_code == 200


def test_salesforce_faults_reach_userinfo_but_not_token_endpoints(salesforce: RunningSandbox) -> None:
    tokens = mint(salesforce)
    fault(salesforce, kind="server_error", count=5)
    assert (
        sf_token(salesforce, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code
        == 200
    )
    assert sf_authorize(salesforce).status_code == 200
    assert call(salesforce, "POST", "/services/oauth2/revoke", data={"token": "x"}).status_code == 400
    assert call(salesforce, "GET", "/services/oauth2/userinfo", tokens["access_token"]).status_code == 500


def test_salesforce_commit_then_hang_stores_the_task_then_answers_late(salesforce: RunningSandbox) -> None:
    token = mint(salesforce)["access_token"]
    fault(salesforce, kind="commit_then_hang", hang_seconds=0.5)
    assert call(salesforce, "GET", f"{V}/limits", token).status_code == 200
    assert call(salesforce, "GET", f"{V}/sobjects/Task/00T5g0000000001AAJ", token).status_code == 404
    assert call(salesforce, "POST", f"{V}/composite", token, json={}).status_code == 400
    assert len(call(salesforce, "GET", "/_sandbox/state").json()["faults"]) == 1
    with pytest.raises(requests.ReadTimeout):
        call(salesforce, "POST", f"{V}/sobjects/Task", token, json={"Subject": "Lost reply"}, timeout=0.2)
    state = call(salesforce, "GET", "/_sandbox/state").json()
    assert [t["Subject"] for t in state["tasks"]] == ["Lost reply"] and state["faults"] == []
    fault(salesforce, kind="commit_then_hang", hang_seconds=0.2)
    started = time.monotonic()
    resp = call(salesforce, "POST", f"{V}/sobjects/Task", token, json={"Subject": "Late reply"})
    assert resp.status_code == 201 and time.monotonic() - started >= 0.2
    assert resp.headers["Sforce-Limit-Info"].startswith("api-usage=")


def test_commit_then_hang_holds_no_lock_and_stop_wakes_it() -> None:
    sandbox = start_sandbox("salesforce", port=0)
    try:
        token = mint(sandbox)["access_token"]
        fault(sandbox, kind="commit_then_hang", hang_seconds=60)
        with pytest.raises(requests.ReadTimeout):
            call(sandbox, "POST", f"{V}/sobjects/Task", token, json={"Subject": "x"}, timeout=0.5)
        started = time.monotonic()
        assert len(call(sandbox, "GET", "/_sandbox/state").json()["tasks"]) == 1
        assert time.monotonic() - started < 1
    finally:
        started = time.monotonic()
        sandbox.stop()
    assert time.monotonic() - started < 2
    assert not sandbox._thread.is_alive()


def test_salesforce_state_and_overview_page(salesforce: RunningSandbox) -> None:
    token = mint(salesforce)["access_token"]
    call(salesforce, "POST", f"{V}/sobjects/Task", token, json={"Subject": "First <task>"})
    call(salesforce, "POST", f"{V}/sobjects/Task", token, json={"Subject": "Second"})
    state = call(salesforce, "GET", "/_sandbox/state").json()
    assert "deals" not in state and "notes" not in state
    assert [t["Subject"] for t in state["tasks"]] == ["Second", "First <task>"]
    assert [(o["Id"], o["IsClosed"], o["ContactId"]) for o in state["opportunities"]] == [
        (O1, False, C1),
        (O2, True, C1),
        (O3, False, C2),
    ]
    assert state["contacts"][0]["Email"] == "maya.lopez@acme-logistics.example"
    assert state["config"] == {"access_token_ttl": 7200, "daily_api_limit": 100000, "api_usage": 2}
    page = call(salesforce, "GET", "/").text
    assert (
        "<h1>Salesforce sandbox</h1>" in page and "00D5g000004SbxAEAS" in page and salesforce.base_url in page
    )
    assert "First &lt;task&gt;" in page and "Brightfield rollout" in page and "<td>2 / 100000</td>" in page
    assert f"<td>{O2}</td><td>Acme Logistics - Pilot</td><td>Closed Won</td><td>true</td>" in page
    assert "no faults queued" in page


# run_sandbox

ALL_FREE = {f"{name}_port": 0 for name in ("hubspot", "salesforce", "zoho", "odoo", "google", "microsoft")}


def test_run_sandbox_is_refused_in_production(settings: Any) -> None:
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="refused when CONDUIT_ENV=production"):
        call_command("run_sandbox", **ALL_FREE)


@pytest.mark.parametrize("busy", ["hubspot", "salesforce", "zoho", "odoo", "google", "microsoft"])
def test_run_sandbox_names_a_port_in_use(busy: str) -> None:
    before = set(threading.enumerate())  # other tests' sandboxes may be running for the session
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {**ALL_FREE, f"{busy}_port": port}
        with pytest.raises(CommandError, match=f"cannot serve the {busy} sandbox on 127.0.0.1:{port}: "):
            call_command("run_sandbox", host="127.0.0.1", **ports)
    assert not any(t.name.startswith("sandbox-") for t in set(threading.enumerate()) - before)


def test_run_sandbox_refuses_out_of_range_ports() -> None:
    with pytest.raises(CommandError, match="--hubspot-port must be between 0 and 65535, not 70000"):
        call_command("run_sandbox", hubspot_port=70000)


def test_run_sandbox_serves_until_sigterm() -> None:
    out = StringIO()
    previous = signal.getsignal(signal.SIGTERM)
    urls: list[str] = []

    def drive() -> None:
        deadline = time.monotonic() + 10
        try:
            while len(out.getvalue().splitlines()) < 6 or signal.getsignal(signal.SIGTERM) is previous:
                assert time.monotonic() < deadline, "run_sandbox did not start"
                time.sleep(0.02)
            urls.extend(line.split(" at ")[1] for line in out.getvalue().splitlines())
            urls.append(str(requests.get(urls[0] + "/", timeout=TIMEOUT).status_code))
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    driver = threading.Thread(target=drive)
    driver.start()
    call_command("run_sandbox", **ALL_FREE, stdout=out)
    driver.join(TIMEOUT)
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"sandbox hubspot at http://127\.0\.0\.1:\d+", lines[0])
    assert re.fullmatch(r"sandbox salesforce at http://127\.0\.0\.1:\d+", lines[1])
    assert re.fullmatch(r"sandbox zoho at http://127\.0\.0\.1:\d+", lines[2])
    assert re.fullmatch(r"sandbox odoo at http://127\.0\.0\.1:\d+", lines[3])
    assert re.fullmatch(r"sandbox google at http://127\.0\.0\.1:\d+", lines[4])
    assert re.fullmatch(r"sandbox microsoft at http://127\.0\.0\.1:\d+", lines[5])
    assert urls[-1] == "200"
    assert signal.getsignal(signal.SIGTERM) is previous
    with pytest.raises(requests.ConnectionError):
        requests.get(urls[0] + "/", timeout=TIMEOUT)


def test_wait_for_signal_returns_on_sigint() -> None:
    previous = signal.getsignal(signal.SIGINT)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    wait_for_signal()
    assert time.monotonic() - started < 2
    assert signal.getsignal(signal.SIGINT) is previous


def test_run_sandbox_command_exits_zero_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "CONDUIT_VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("CONDUIT_ENV", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_sandbox",
            "--hubspot-port",
            "0",
            "--salesforce-port",
            "0",
            "--zoho-port",
            "0",
            "--odoo-port",
            "0",
            "--google-port",
            "0",
            "--microsoft-port",
            "0",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killer = threading.Timer(30, proc.kill)  # a broken start must not hang the suite
    killer.start()
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(6)]
        assert [line.split(" at ")[0] for line in lines] == [
            "sandbox hubspot",
            "sandbox salesforce",
            "sandbox zoho",
            "sandbox odoo",
            "sandbox google",
            "sandbox microsoft",
        ]
        for line in lines:
            assert requests.get(line.split(" at ")[1] + "/_sandbox/state", timeout=TIMEOUT).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=TIMEOUT)


def test_run_sandbox_if_enabled_idles_when_the_sandbox_is_off(settings: Any) -> None:
    settings.CONDUIT_SANDBOX = False
    out = StringIO()
    previous = signal.getsignal(signal.SIGTERM)

    def stop_when_idle() -> None:
        deadline = time.monotonic() + 10
        while "not serving" not in out.getvalue() or signal.getsignal(signal.SIGTERM) is previous:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    driver = threading.Thread(target=stop_when_idle)
    driver.start()
    call_command(
        "run_sandbox",
        if_enabled=True,
        **ALL_FREE,
        stdout=out,
    )
    driver.join(TIMEOUT)
    assert out.getvalue().splitlines() == [
        "sandbox: CONDUIT_SANDBOX is off; not serving (idle until stopped)"
    ]
