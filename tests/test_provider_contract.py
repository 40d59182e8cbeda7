"""The shared contract: each provider client against `responses` mocks shaped from
provider-facts.md AND against the sandbox over a real socket. The same test body runs on both,
so the client, the mocks and the sandbox cannot drift apart. Odoo connects with an API key, not
OAuth: its "connect" is the credentials check, and the bodies about codes, refresh tokens and
revoking a grant skip it (saying why); two bodies of its own check the key."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import xmlrpc.client
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from integrations.providers import get_provider
from integrations.providers.base import Account, Provider, TokenSet
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    Permanent,
    ProviderError,
    RateLimited,
    TokenExpired,
    Transient,
)
from integrations.providers.synclog import CallContext
from integrations.sandbox.odoo_data import DATABASE as ODOO_SANDBOX_DB
from integrations.sandbox.odoo_data import LOGIN as ODOO_LOGIN
from integrations.sandbox.odoo_data import SEEDED_API_KEY
from tests.conftest import odoo_sandbox, zoho_sandbox
from tests.odoo_helpers import MOCK_KEY, ODOO_HOST, ODOO_URL, PUBLIC_IP, fake_dns, production_settings
from tests.provider_helpers import MARKER, activity
from tests.sandbox_helpers import answer_consent

pytestmark = pytest.mark.django_db
REDIRECT_URI = "https://conduit.example/integrations/callback"
MAYA = "maya.lopez@acme-logistics.example"
HUB_ID, ORG_ID, SF_USER = "4400001", "00D5g000004SbxAEAS", "0055g00000SbxUsAAJ"
ZOHO_ORG = "7700000000000010001"
KEYS = {"hubspot": HUB_ID, "salesforce": ORG_ID, "zoho": ZOHO_ORG}
IDS = {
    "hubspot": {"contact": "101", "open_deal": "201"},
    "salesforce": {"contact": "0035g00000SbxC1AAJ", "open_deal": "0065g00000SbxO1AAJ"},
    "zoho": {"contact": "5725767000000410001", "open_deal": "5725767000000420001"},
    "odoo": {"contact": "7", "open_deal": "21"},  # a res.partner and her open crm.lead
}
MOCK_HUBSPOT = "https://api.hubapi.com"
MOCK_SF_LOGIN = "https://login.salesforce.com"
MOCK_SF_INSTANCE = "https://sandbox-demo.my.salesforce.com"
# the mocked Zoho account lives in the EU data centre; consent starts at the US accounts server
MOCK_ZOHO_ACCOUNTS = "https://accounts.zoho.eu"
MOCK_ZOHO_API = "https://www.zohoapis.eu"
MOCK_ZOHO_CRM = f"{MOCK_ZOHO_API}/crm/v7"
# the mocked Odoo instance: acme.odoo.com, resolved (by a fake resolver) to a public address,
# which is where the pinned transport sends; database "acme"
MOCK_ODOO = f"https://{PUBLIC_IP}"
MOCK_ODOO_DB = "acme"
# the two ids a To-Do needs, looked up at send time: ir.model of res.partner, the To-Do type
ODOO_TODO_IDS = {"res_model_id": 85, "activity_type_id": 4}
KEY_ONLY = (
    "Odoo connects with an API key: no authorization code, token refresh or revoke (Conduit only "
    "forgets the key); its own bodies below check the key, test_odoo_credentials the save"
)
FAULTS = [
    ("rate_limit", RateLimited),
    ("server_error", Transient),
    ("unavailable", Transient),
    ("invalid_session", TokenExpired),
    ("missing_scope", MissingScope),
    ("validation", Permanent),
    ("hang", Transient),
]
OPERATIONS = ["create_note", "create_task"]
NOTE_MARKER, TASK_MARKER = "cdw" + "a1" * 12, "cdw" + "b2" * 12
UNKNOWN_MARKER = "cdw" + "0" * 24


def pkce_pair() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(b"v" * 40).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class Backend:
    """What a contract test needs from a provider stand-in."""

    kind: str
    provider: Provider
    # where the account lives, as the callback named it (Zoho's accounts server); "login" otherwise
    environment: str = "login"

    def authorize(self, url: str) -> str:
        """Follow the consent page ("Allow") and return the authorization code."""
        raise NotImplementedError

    def expect_token(self, *, refresh: bool = False) -> None: ...

    def expect_identify(self) -> None: ...

    def expect_lookups(self) -> None: ...

    def expect_writes(self) -> None: ...

    def expect_find(self) -> None:
        """Searches for a write by its marker (HubSpot search, Salesforce SOQL on Task)."""

    def expect_revoke(self) -> None: ...

    def inject(self, kind: str, **options: Any) -> None:
        raise NotImplementedError

    def written(self) -> list[dict[str, Any]]:
        """The payloads the provider received for notes and tasks, oldest first."""
        raise NotImplementedError

    def account(self, tokens: TokenSet) -> Account:
        key = KEYS[self.provider.name]
        return Account(self.provider.name, tokens.access_token, key, instance_url=tokens.instance_url)

    def connect_with_key(self, api_key: str | None = None) -> TokenSet:
        """A provider connected with an API key (Odoo): check it as the credentials form does."""
        raise NotImplementedError

    def reject_key(self) -> None:
        """The provider stops accepting the API key (deleted or expired in Odoo)."""
        raise NotImplementedError

    def locate(self, callback: dict[str, str]) -> None:
        """Keep where the callback says the account lives (Zoho's data centre)."""
        self.environment = self.provider.callback_environment(callback, "login")


# --- mocks shaped from provider-facts.md -------------------------------------------------------


def hubspot_error(status: int, category: str, message: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return status, {
        "status": "error",
        "message": message,
        "correlationId": "0f0f",
        "category": category,
        **extra,
    }


def zoho_error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"code": code, "details": {}, "message": message, "status": "error"}


MOCK_MARKED_TASK = re.compile(
    r"SELECT Id FROM Task WHERE WhoId = '(?P<who>\w+)' AND Subject LIKE '%(?P<marker>\w+)%' LIMIT 1"
)
MOCK_FAULTS: dict[str, dict[str, tuple[int, Any, dict[str, str]]]] = {
    "hubspot": {
        "rate_limit": (
            429,
            {
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": "0f0f",
                "policyName": "TEN_SECONDLY_ROLLING",
                "requestId": "1",
            },
            {"Retry-After": "1"},
        ),
        "server_error": (*hubspot_error(500, "INTERNAL_ERROR", "internal error"), {}),
        "unavailable": (
            503,
            {"status": "error", "message": "Service Unavailable", "category": "INTERNAL_ERROR"},
            {},
        ),
        "invalid_session": (
            *hubspot_error(
                401,
                "EXPIRED_AUTHENTICATION",
                "The OAuth token used to make this call expired 1 second(s) ago.",
            ),
            {},
        ),
        "missing_scope": (
            *hubspot_error(
                403,
                "MISSING_SCOPES",
                "This app hasn't been granted all required scopes to make this call.",
                errors=[
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": ["crm.objects.contacts.write"]},
                    }
                ],
            ),
            {},
        ),
        "validation": (*hubspot_error(400, "VALIDATION_ERROR", "Property values were not valid"), {}),
    },
    "salesforce": {
        "rate_limit": (
            403,
            [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
            {"Retry-After": "1"},
        ),
        "server_error": (
            500,
            [{"errorCode": "UNKNOWN_EXCEPTION", "message": "An unexpected error occurred."}],
            {},
        ),
        "unavailable": (
            503,
            [{"errorCode": "SERVER_UNAVAILABLE", "message": "An unexpected error occurred."}],
            {},
        ),
        "invalid_session": (
            401,
            [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
            {},
        ),
        "missing_scope": (
            403,
            [
                {
                    "message": "This session is not valid for use with the REST API",
                    "errorCode": "INVALID_SESSION_ID",
                }
            ],
            {},
        ),
        "validation": (
            400,
            [{"errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "validation", "fields": []}],
            {},
        ),
    },
    "zoho": {
        "rate_limit": (
            *zoho_error(429, "TOO_MANY_REQUESTS", "The concurrency limit has been exceeded"),
            {"Retry-After": "1"},
        ),
        "server_error": (*zoho_error(500, "INTERNAL_ERROR", "Internal Server Error"), {}),
        "unavailable": (*zoho_error(503, "INTERNAL_ERROR", "Service Unavailable"), {}),
        "invalid_session": (*zoho_error(401, "INVALID_TOKEN", "invalid oauth token"), {}),
        "missing_scope": (
            *zoho_error(401, "OAUTH_SCOPE_MISMATCH", "invalid oauth scope to access this URL"),
            {},
        ),
        "validation": (
            400,
            {
                "data": [
                    {
                        "code": "INVALID_DATA",
                        "details": {"api_name": "Note_Content"},
                        "message": "invalid data",
                        "status": "error",
                    }
                ]
            },
            {},
        ),
    },
}


class MockBackend(Backend):
    kind = "mock"

    def __init__(self, name: str, mock: responses.RequestsMock, settings: Any) -> None:
        self.provider = get_provider(name)
        self.mock = mock
        self.query_mocked = False
        if name == "hubspot":
            settings.HUBSPOT_API_BASE_URL = MOCK_HUBSPOT
            settings.HUBSPOT_AUTHORIZE_URL = "https://app.hubspot.com/oauth/authorize"
            self.write_urls = [f"{MOCK_HUBSPOT}/crm/v3/objects/notes", f"{MOCK_HUBSPOT}/crm/v3/objects/tasks"]
        else:
            settings.SALESFORCE_LOGIN_URL = MOCK_SF_LOGIN
            settings.SALESFORCE_TEST_URL = "https://test.salesforce.com"
            self.write_urls = [f"{MOCK_SF_INSTANCE}/services/data/v66.0/sobjects/Task"]

    def authorize(self, url: str) -> str:
        assert urlsplit(url).scheme == "https"
        return "mock-code"

    def expect_token(self, *, refresh: bool = False) -> None:
        if self.provider.name == "hubspot":
            body = {
                "access_token": "mock-hs-access",
                "refresh_token": "mock-hs-refresh",
                "expires_in": 1800,
                "token_type": "bearer",
                "hub_id": int(HUB_ID),
                "scopes": list(self.provider.required_scopes),
                "user_id": 7700001,
                "token_use": "access",
            }
            self.mock.post(f"{MOCK_HUBSPOT}/oauth/v1/token", json=body)
        else:
            body = {
                "access_token": "00Dmock!access",
                "instance_url": MOCK_SF_INSTANCE,
                "id": f"{MOCK_SF_LOGIN}/id/{ORG_ID}/{SF_USER}",
                "token_type": "Bearer",
                "issued_at": "1794820320000",
                "signature": "c2ln",
                "scope": "api refresh_token id",
            }
            if not refresh:
                body["refresh_token"] = "mock-sf-refresh"
            self.mock.post(f"{MOCK_SF_LOGIN}/services/oauth2/token", json=body)

    def expect_identify(self) -> None:
        if self.provider.name == "hubspot":
            self.mock.get(
                re.compile(rf"{re.escape(MOCK_HUBSPOT)}/oauth/v1/access-tokens/.+"),
                json={
                    "token": "mock-hs-access",
                    "user": "owner@sandbox-demo.example",
                    "hub_domain": "sandbox-demo.hubspot.com",
                    "scopes": list(self.provider.required_scopes),
                    "hub_id": int(HUB_ID),
                    "app_id": 3300001,
                    "expires_in": 1700,
                    "user_id": 7700001,
                    "token_type": "access",
                },
            )
        else:
            self.mock.get(
                f"{MOCK_SF_INSTANCE}/services/oauth2/userinfo",
                json={
                    "user_id": SF_USER,
                    "organization_id": ORG_ID,
                    "preferred_username": "admin@sandbox-demo.example",
                },
            )

    def expect_lookups(self) -> None:
        ids = IDS[self.provider.name]
        if self.provider.name == "hubspot":

            def contacts(request: Any) -> tuple[int, dict[str, str], str]:
                email = json.loads(request.body)["filterGroups"][0]["filters"][0]["value"]
                results = [{"id": ids["contact"], "properties": {"email": MAYA}}] if email == MAYA else []
                return 200, {}, json.dumps({"total": len(results), "results": results})

            self.mock.add_callback(
                "POST", f"{MOCK_HUBSPOT}/crm/v3/objects/contacts/search", callback=contacts
            )
            self.mock.post(
                f"{MOCK_HUBSPOT}/crm/v3/objects/deals/search",
                json={
                    "total": 1,
                    "results": [{"id": ids["open_deal"], "properties": {"dealname": "Annual plan"}}],
                },
            )
        else:
            self.expect_query()

    def expect_query(self) -> None:
        """One SOQL callback for the three queries the client sends (registered once)."""
        if self.query_mocked:
            return
        self.query_mocked = True
        ids = IDS[self.provider.name]

        def query(request: Any) -> tuple[int, dict[str, str], str]:
            soql = parse_qs(urlsplit(request.url).query)["q"][0]
            if "FROM Contact" in soql:
                records = [{"attributes": {"type": "Contact"}, "Id": ids["contact"]}] if MAYA in soql else []
            elif match := MOCK_MARKED_TASK.fullmatch(soql):
                records = [
                    {"attributes": {"type": "Task"}, "Id": created["id"]}
                    for sent, created in self.created()
                    if sent["WhoId"] == match["who"] and match["marker"] in sent["Subject"]
                ][:1]
            else:
                records = [
                    {"attributes": {"type": "OpportunityContactRole"}, "OpportunityId": ids["open_deal"]}
                ]
            body = {"totalSize": len(records), "done": True, "records": records}
            return 200, {"Sforce-Limit-Info": "api-usage=12/100000"}, json.dumps(body)

        self.mock.add_callback("GET", f"{MOCK_SF_INSTANCE}/services/data/v66.0/query", callback=query)

    def expect_writes(self) -> None:
        if self.provider.name == "hubspot":
            self.mock.post(self.write_urls[0], status=201, json={"id": "90001", "properties": {}})
            self.mock.post(self.write_urls[1], status=201, json={"id": "90002", "properties": {}})
        else:

            def create(request: Any) -> tuple[int, dict[str, str], str]:
                task_id = f"00T5g00000{len(self.created()) + 1:05d}AAJ"
                return 201, {}, json.dumps({"id": task_id, "success": True, "errors": []})

            self.mock.add_callback("POST", self.write_urls[0], callback=create)

    def expect_find(self) -> None:
        if self.provider.name == "salesforce":
            self.expect_query()
            return

        def search(request: Any) -> tuple[int, dict[str, str], str]:
            (flt,) = json.loads(request.body)["filterGroups"][0]["filters"]
            assert flt["operator"] == "CONTAINS_TOKEN"
            results = [
                {"id": created["id"]}
                for sent, created in self.created()
                if flt["value"] in re.split(r"[^0-9A-Za-z]+", sent["properties"].get(flt["propertyName"], ""))
            ][:1]
            return 200, {}, json.dumps({"total": len(results), "results": results})

        for object_type in ("notes", "tasks"):
            self.mock.add_callback(
                "POST", f"{MOCK_HUBSPOT}/crm/v3/objects/{object_type}/search", callback=search
            )

    def created(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(request body, response body) of each successful write so far, oldest first."""
        return [
            (json.loads(c.request.body), json.loads(c.response.text))
            for c in self.mock.calls
            if c.request.url in self.write_urls and c.response is not None and c.response.status_code < 300
        ]

    def expect_revoke(self) -> None:
        if self.provider.name == "hubspot":
            self.mock.delete(re.compile(rf"{re.escape(MOCK_HUBSPOT)}/oauth/v1/refresh-tokens/.+"), status=204)
            body: Any = {
                "error": "invalid_grant",
                "error_description": "refresh token is invalid, expired or revoked",
                "status": "BAD_REFRESH_TOKEN",
                "message": "missing or invalid refresh token",
            }
            self.mock.post(f"{MOCK_HUBSPOT}/oauth/v1/token", status=400, json=body)
        else:
            self.mock.post(f"{MOCK_SF_LOGIN}/services/oauth2/revoke", status=200)
            body = {"error": "invalid_grant", "error_description": "expired access/refresh token"}
            self.mock.post(f"{MOCK_SF_LOGIN}/services/oauth2/token", status=400, json=body)

    def inject(self, kind: str, **options: Any) -> None:
        url = self.write_urls[0]
        if kind == "hang":
            self.mock.post(url, body=requests.ReadTimeout("read timed out"))
            return
        if kind == "invalid_grant":
            self.expect_revoke()
            return
        status, body, headers = MOCK_FAULTS[self.provider.name][kind]
        self.mock.post(url, status=status, json=body, headers=headers)

    def written(self) -> list[dict[str, Any]]:
        bodies = [sent for sent, _ in self.created()]
        if self.provider.name == "salesforce":
            return bodies
        return [
            {
                "properties": b["properties"],
                "associations": [
                    (a["to"]["id"], a["types"][0]["associationTypeId"]) for a in b["associations"]
                ],
            }
            for b in bodies
        ]


class ZohoMockBackend(MockBackend):
    """Zoho shaped from provider-facts.md and docs/connectors.md: the account in the EU data
    centre, COQL for reads, Notes and Tasks with their answers in `data`."""

    def __init__(self, name: str, mock: responses.RequestsMock, settings: Any) -> None:
        self.provider = get_provider(name)
        self.mock = mock
        self.query_mocked = False
        settings.ZOHO_ACCOUNTS_URL = "https://accounts.zoho.com"
        settings.ZOHO_EXTRA_ORIGINS = []
        self.write_urls = [f"{MOCK_ZOHO_CRM}/Notes", f"{MOCK_ZOHO_CRM}/Tasks"]

    def authorize(self, url: str) -> str:
        assert url.startswith("https://accounts.zoho.com/oauth/v2/auth?")
        self.locate({"code": "mock-code", "location": "eu", "accounts-server": MOCK_ZOHO_ACCOUNTS})
        return "mock-code"

    def expect_token(self, *, refresh: bool = False) -> None:
        body = {
            "access_token": "1000.mock-access",
            "scope": " ".join(self.provider.required_scopes),
            "api_domain": MOCK_ZOHO_API,
            "token_type": "Bearer",
            "expires_in": 3600,
        }
        if not refresh:
            body["refresh_token"] = "1000.mock-refresh"
        self.mock.post(f"{MOCK_ZOHO_ACCOUNTS}/oauth/v2/token", json=body)

    def expect_identify(self) -> None:
        org = {"id": ZOHO_ORG, "company_name": "Sandbox Demo GmbH", "zgid": "60012345"}
        self.mock.get(f"{MOCK_ZOHO_CRM}/org", json={"org": [org]})

    def expect_lookups(self) -> None:
        ids = IDS["zoho"]

        def search(request: Any) -> tuple[int, dict[str, str], str]:
            email = parse_qs(urlsplit(request.url).query)["email"][0]
            if email != MAYA:
                return 204, {}, ""
            return 200, {}, json.dumps({"data": [{"id": ids["contact"], "Email": MAYA}]})

        self.mock.add_callback("GET", f"{MOCK_ZOHO_CRM}/Contacts/search", callback=search)
        self.expect_query()

    def expect_query(self) -> None:
        if self.query_mocked:
            return
        self.query_mocked = True
        ids = IDS["zoho"]

        def coql(request: Any) -> tuple[int, dict[str, str], str]:
            query = json.loads(request.body)["select_query"]
            if query.startswith("select id, Stage, Modified_Time from Deals"):
                records = [{"id": ids["open_deal"], "Stage": "Negotiation/Review"}]
            else:
                who, marker = re.findall(r"'%?(\w+)%?'", query)
                records = [
                    {"id": created["data"][0]["details"]["id"]}
                    for sent, created in self.created()
                    if sent["data"][0].get("Who_Id") == {"id": who} and marker in sent["data"][0]["Subject"]
                ][:1]
            return (200, {}, json.dumps({"data": records})) if records else (204, {}, "")

        self.mock.add_callback("POST", f"{MOCK_ZOHO_CRM}/coql", callback=coql)

    def expect_writes(self) -> None:
        def create(request: Any) -> tuple[int, dict[str, str], str]:
            record_id = f"57257670000006{len(self.created()) + 1:05d}"
            details = {"id": record_id, "Created_Time": "2026-11-16T10:12:00+01:00"}
            answer = {"code": "SUCCESS", "details": details, "message": "record added", "status": "success"}
            return 201, {}, json.dumps({"data": [answer]})

        for url in self.write_urls:
            self.mock.add_callback("POST", url, callback=create)

    def expect_find(self) -> None:
        self.expect_query()

        def notes(request: Any) -> tuple[int, dict[str, str], str]:
            module, parent = urlsplit(request.url).path.split("/")[-3:-1]
            assert parse_qs(urlsplit(request.url).query)["fields"] == ["Note_Title,Note_Content"]
            found = [
                {"id": created["data"][0]["details"]["id"], "Note_Title": sent["data"][0]["Note_Title"]}
                for sent, created in self.created()
                if (sent["data"][0].get("$se_module"), sent["data"][0].get("Parent_Id")) == (module, parent)
            ]
            return (200, {}, json.dumps({"data": found[::-1]})) if found else (204, {}, "")

        self.mock.add_callback(
            "GET", re.compile(rf"{re.escape(MOCK_ZOHO_CRM)}/(Contacts|Deals)/\d+/Notes"), callback=notes
        )

    def expect_revoke(self) -> None:
        self.mock.post(
            re.compile(rf"{re.escape(MOCK_ZOHO_ACCOUNTS)}/oauth/v2/token/revoke\?token=.+"),
            json={"status": "success"},
        )
        # [verify] Zoho answers a refused token request with HTTP 200 and an `error`
        self.mock.post(f"{MOCK_ZOHO_ACCOUNTS}/oauth/v2/token", json={"error": "invalid_code"})

    def written(self) -> list[dict[str, Any]]:
        return [
            zoho_written("Notes" if "Note_Content" in sent["data"][0] else "Tasks", sent["data"][0])
            for sent, _ in self.created()
        ]


def zoho_written(module: str, record: dict[str, Any]) -> dict[str, Any]:
    """A Zoho note or task, sent (mock) or stored (sandbox), in one comparable shape."""

    def lookup(value: Any) -> str | None:
        return str(value["id"]) if isinstance(value, dict) else value

    if module == "Notes":
        return {
            "kind": "note",
            "title": record["Note_Title"],
            "text": record["Note_Content"],
            "parent": (record["$se_module"], lookup(record["Parent_Id"])),
        }
    return {
        "kind": "task",
        "title": record["Subject"],
        "text": record["Description"],
        "who": lookup(record["Who_Id"]),
        "what": lookup(record.get("What_Id")),
        "status": record["Status"],
    }


def odoo_error(status: int, name: str, message: str) -> tuple[int, dict[str, str], str]:
    """A JSON-2 error answer: Odoo's {"name", "message", "arguments", "context", "debug"}."""
    body = {"name": name, "message": message, "arguments": [message], "context": {}, "debug": ""}
    return status, {"Content-Type": "application/json"}, json.dumps(body)


ODOO_MOCK_FAULTS: dict[str, tuple[int, dict[str, str], str]] = {
    "rate_limit": (429, {"Retry-After": "1"}, json.dumps({"message": "Too many requests"})),
    "server_error": odoo_error(500, "builtins.ValueError", "internal server error"),
    "unavailable": (503, {"Content-Type": "text/html"}, "<h1>503 Service Unavailable</h1>"),
    "invalid_session": odoo_error(401, "werkzeug.exceptions.Unauthorized", "Invalid apikey"),
    "missing_scope": odoo_error(
        403, "odoo.exceptions.AccessError", "You are not allowed to create 'Message' (mail.message) records."
    ),
    "validation": odoo_error(422, "odoo.exceptions.ValidationError", "The operation cannot be completed."),
}


def leaf(domain: list[Any], field: str) -> Any:
    """The value a domain compares `field` with (the client's domains are plain conjunctions)."""
    return next(
        (value for name, _op, value in (d for d in domain if isinstance(d, list)) if name == field), None
    )


class OdooMockBackend(MockBackend):
    """Odoo 19 shaped from Odoo's documentation and source (external_api.rst, rpc.py): the version
    over XML-RPC `common.version()`, then JSON-2 `POST /json/2/<model>/<method>` with the key as a
    bearer token and the database in `X-Odoo-Database`. One callback answers every JSON-2 call
    like the ORM would, keeps what was written, and answers the next write with an injected fault."""

    def __init__(self, name: str, mock: responses.RequestsMock, settings: Any, monkeypatch: Any) -> None:
        self.provider = get_provider(name)
        self.mock = mock
        production_settings(settings)  # https only and no private address: acme.odoo.com is public
        fake_dns(monkeypatch, {ODOO_HOST: [PUBLIC_IP]})
        self.key = f"{ODOO_HOST}/{MOCK_ODOO_DB}"
        self.details: dict[str, Any] = {}
        self.records: list[dict[str, Any]] = []
        self.faults: list[str] = []
        self.rejected = False
        version = {"server_version": "19.0", "server_version_info": [19, 0, 0, "final", 0, ""]}
        mock.post(
            f"{MOCK_ODOO}/xmlrpc/2/common",
            body=xmlrpc.client.dumps((version,), methodresponse=True),
            content_type="text/xml",
        )
        mock.add_callback("POST", re.compile(rf"{re.escape(MOCK_ODOO)}/json/2/.+"), callback=self.json2)

    def connect_with_key(self, api_key: str | None = None) -> TokenSet:
        key = api_key or MOCK_KEY
        odoo: Any = self.provider
        account = odoo.verify_credentials(
            base=ODOO_URL, database=MOCK_ODOO_DB, login=ODOO_LOGIN, api_key=key, context=CallContext()
        )
        self.key, self.details = account.key, account.details
        return TokenSet(access_token=key, instance_url=ODOO_URL)

    def account(self, tokens: TokenSet) -> Account:
        return Account(
            "odoo", tokens.access_token, self.key, instance_url=tokens.instance_url, details=self.details
        )

    def reject_key(self) -> None:
        self.rejected = True

    def expect_lookups(self) -> None:
        pass  # json2() answers every call

    def expect_writes(self) -> None:
        pass

    def expect_find(self) -> None:
        pass

    def inject(self, kind: str, **options: Any) -> None:
        self.faults.append(kind)

    def written(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "id"} for r in self.records]

    def json2(self, request: Any) -> Any:
        model, method = urlsplit(request.url).path.removeprefix("/json/2/").split("/")
        body = json.loads(request.body or b"{}")
        if self.rejected or request.headers.get("Authorization") != f"Bearer {MOCK_KEY}":
            return ODOO_MOCK_FAULTS["invalid_session"]
        if request.headers.get("X-Odoo-Database") != MOCK_ODOO_DB:
            return 404, {"Content-Type": "text/html"}, "<h1>Not Found</h1>"
        if method in ("message_post", "create") and self.faults:
            fault = self.faults.pop(0)
            if fault == "hang":
                return requests.ReadTimeout("read timed out")
            return ODOO_MOCK_FAULTS[fault]
        return 200, {"Content-Type": "application/json"}, json.dumps(self.orm(model, method, body))

    def orm(self, model: str, method: str, body: dict[str, Any]) -> Any:
        ids = IDS["odoo"]
        domain = body.get("domain") or []
        if method == "context_get":
            return {"lang": "en_US", "tz": "Europe/Brussels", "uid": 2}
        if method == "message_post":
            (record_id,) = body["ids"]
            note = {
                "kind": "note",
                "on": (model, record_id),
                "body": body["body"],
                "subtype": body["subtype_xmlid"],
            }
            return [self.keep(note)]
        if (model, method) == ("mail.activity", "create"):
            (values,) = body["vals_list"]
            task = {
                "kind": "task",
                "on": ("res.partner", values["res_id"]),
                "summary": values["summary"],
                "note": values["note"],
                "type": values.get("activity_type_id"),
            }
            return [self.keep(task)]
        if model == "mail.activity":
            return self.marked("task", "summary", domain)
        if model == "mail.message":
            return self.marked("note", "body", domain)
        contact, deal = int(ids["contact"]), int(ids["open_deal"])
        return {
            "res.partner": [{"id": contact}] if leaf(domain, "email") == MAYA else [],
            "crm.lead": [{"id": deal}] if leaf(domain, "partner_id") == contact else [],
            "ir.model": [{"id": ODOO_TODO_IDS["res_model_id"]}],
            "ir.model.data": [{"id": 1, "res_id": ODOO_TODO_IDS["activity_type_id"]}],
        }[model]

    def keep(self, record: dict[str, Any]) -> int:
        record["id"] = 9000 + len(self.records) + 1
        self.records.append(record)
        return int(record["id"])

    def marked(self, kind: str, field: str, domain: list[Any]) -> list[dict[str, Any]]:
        marker, on = leaf(domain, field), ("res.partner", leaf(domain, "res_id"))
        return [
            {"id": r["id"]}
            for r in self.records
            if r["kind"] == kind and r["on"] == on and marker in r[field]
        ][:1]


# --- the sandbox over a real socket --------------------------------------------------------------


class SandboxBackend(Backend):
    kind = "sandbox"

    def __init__(self, name: str, base_url: str, settings: Any) -> None:
        self.provider = get_provider(name)
        self.base_url = base_url
        if name == "hubspot":
            settings.HUBSPOT_API_BASE_URL = base_url
            settings.HUBSPOT_AUTHORIZE_URL = f"{base_url}/oauth/authorize"
        elif name == "zoho":
            zoho_sandbox(settings, base_url)
        else:
            settings.SALESFORCE_LOGIN_URL = base_url
            settings.SALESFORCE_TEST_URL = base_url
            settings.SALESFORCE_EXTRA_INSTANCE_ORIGINS = [base_url]

    def authorize(self, url: str) -> str:
        location = urlsplit(answer_consent(url))
        assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
        self.locate({k: v[0] for k, v in parse_qs(location.query).items()})
        return parse_qs(location.query)["code"][0]

    def inject(self, kind: str, **options: Any) -> None:
        body = {"kind": kind, "count": 1, **options}
        assert requests.post(f"{self.base_url}/_sandbox/faults", json=body, timeout=5).status_code == 201

    def state(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.base_url}/_sandbox/state", timeout=5).json())

    def written(self) -> list[dict[str, Any]]:
        state = self.state()
        if self.provider.name == "salesforce":
            return sorted(state["tasks"], key=lambda r: r["Id"])
        if self.provider.name == "zoho":
            stored = [("Notes", r) for r in state["notes"]] + [("Tasks", r) for r in state["tasks"]]
            return [zoho_written(module, r) for module, r in sorted(stored, key=lambda m: m[1]["id"][-5:])]
        records = sorted(state["notes"] + state["tasks"], key=lambda r: int(r["id"]))
        return [
            {
                "properties": r["properties"],
                "associations": [(a["to_id"], a["type_id"]) for a in r["associations"]],
            }
            for r in records
        ]


class OdooSandboxBackend(SandboxBackend):
    """The Odoo sandbox (version 19: JSON-2), connected with its seeded API key."""

    def __init__(self, name: str, base_url: str, settings: Any) -> None:
        self.provider = get_provider(name)
        self.base_url = base_url
        odoo_sandbox(settings, base_url)  # plain http on 127.0.0.1: development and tests only
        self.key, self.details = "", {}

    def connect_with_key(self, api_key: str | None = None) -> TokenSet:
        key = api_key or SEEDED_API_KEY
        odoo: Any = self.provider
        account = odoo.verify_credentials(
            base=self.base_url, database=ODOO_SANDBOX_DB, login=ODOO_LOGIN, api_key=key, context=CallContext()
        )
        self.key, self.details = account.key, account.details
        return TokenSet(access_token=key, instance_url=self.base_url)

    def account(self, tokens: TokenSet) -> Account:
        return Account(
            "odoo", tokens.access_token, self.key, instance_url=tokens.instance_url, details=self.details
        )

    def reject_key(self) -> None:
        answer = requests.post(
            f"{self.base_url}/_sandbox/revoke", json={"api_key": SEEDED_API_KEY}, timeout=5
        )
        assert answer.status_code == 204

    def written(self) -> list[dict[str, Any]]:
        """Logged notes (on a partner or an opportunity) and To-Do activities, oldest first."""
        state = self.state()
        notes = [
            (
                m["id"],
                {
                    "kind": "note",
                    "on": (m["model"], m["res_id"]),
                    "body": m["body"],
                    "subtype": m["subtype_xmlid"],
                },
            )
            for m in state["messages"]
        ]
        tasks = [
            (
                a["id"],
                {
                    "kind": "task",
                    "on": (a["res_model"], a["res_id"]),
                    "summary": a["summary"],
                    "note": a["note"],
                    "type": a["activity_type_id"],
                },
            )
            for a in state["activities"]
        ]
        return [record for _id, record in sorted(notes + tasks, key=lambda pair: pair[0])]


def make_backend(
    param: str, settings: Any, sandboxes: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    name, kind = param.split("-")
    if kind == "mock":
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            if name == "odoo":
                yield OdooMockBackend(name, mock, settings, monkeypatch)
            else:
                yield (ZohoMockBackend if name == "zoho" else MockBackend)(name, mock, settings)
    else:
        base_url = sandboxes[name]
        requests.post(f"{base_url}/_sandbox/reset", timeout=5)
        yield sandbox_backend_for(name, base_url, settings)


def sandbox_backend_for(name: str, base_url: str, settings: Any) -> SandboxBackend:
    return (OdooSandboxBackend if name == "odoo" else SandboxBackend)(name, base_url, settings)


@pytest.fixture(
    params=[
        "hubspot-mock",
        "hubspot-sandbox",
        "salesforce-mock",
        "salesforce-sandbox",
        "zoho-mock",
        "zoho-sandbox",
        "odoo-mock",
        "odoo-sandbox",
    ]
)
def backend(
    request: pytest.FixtureRequest, settings: Any, sandboxes: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    yield from make_backend(request.param, settings, sandboxes, monkeypatch)


@pytest.fixture(params=["salesforce-mock", "salesforce-sandbox"])
def salesforce_backend(
    request: pytest.FixtureRequest, settings: Any, sandboxes: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    yield from make_backend(request.param, settings, sandboxes, monkeypatch)


@pytest.fixture(params=["odoo-mock", "odoo-sandbox"])
def key_backend(
    request: pytest.FixtureRequest, settings: Any, sandboxes: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    """The providers connected with an API key instead of OAuth."""
    yield from make_backend(request.param, settings, sandboxes, monkeypatch)


@pytest.fixture(params=["hubspot", "salesforce", "zoho", "odoo"])
def sandbox_backend(
    request: pytest.FixtureRequest, settings: Any, sandboxes: dict[str, str]
) -> Iterator[SandboxBackend]:
    requests.post(f"{sandboxes[request.param]}/_sandbox/reset", timeout=5)
    yield sandbox_backend_for(request.param, sandboxes[request.param], settings)


@pytest.fixture
def sent_json(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The JSON bodies the client hands to an HTTP session, in order (mock or socket alike; the
    shared session and Odoo's pinned ones)."""
    sent: list[Any] = []
    real = requests.Session.request

    def spy(session: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        # the test's own calls (requests.post to a sandbox's consent page or controls) aside
        if kwargs.get("json") is not None and "/_sandbox/" not in url:
            sent.append(kwargs["json"])
        return real(session, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    return sent


def oauth_only(backend: Backend) -> None:
    """Skip a body about authorization codes, refresh tokens or revoking a grant for a provider
    connected with an API key."""
    if not backend.provider.uses_oauth:
        pytest.skip(KEY_ONLY)


def connect(backend: Backend) -> TokenSet:
    if not backend.provider.uses_oauth:
        return backend.connect_with_key()
    verifier, challenge = pkce_pair()
    provider = backend.provider
    url = provider.authorize_url(
        state="contract-state",
        redirect_uri=REDIRECT_URI,
        code_challenge=challenge if provider.supports_pkce else None,
    )
    code = backend.authorize(url)
    backend.expect_token()
    return provider.exchange_code(
        code=code,
        redirect_uri=REDIRECT_URI,
        code_verifier=verifier if provider.supports_pkce else None,
        environment=backend.environment,
    )


def test_connect_exchanges_the_code_and_identifies_the_account(backend: Backend) -> None:
    oauth_only(backend)
    tokens = connect(backend)
    backend.expect_identify()
    account = backend.provider.identify(tokens, environment=backend.environment)
    assert tokens.access_token and tokens.refresh_token
    assert backend.provider.missing_scopes(account.scopes) == []
    if backend.provider.name == "hubspot":
        assert account.key == HUB_ID
        assert account.details["hub_domain"] == "sandbox-demo.hubspot.com"
        assert tokens.expires_at is not None
    elif backend.provider.name == "zoho":
        assert (account.key, account.details["org_name"]) == (ZOHO_ORG, "Sandbox Demo GmbH")
        assert backend.environment != "login"  # exchanged at the data centre the callback named
        assert account.details["data_centre"] == urlsplit(backend.environment).netloc
        assert tokens.instance_url and tokens.expires_at is not None
    else:
        assert account.key == ORG_ID
        assert account.details["user_id"] == SF_USER
        assert account.details["instance_url"] == tokens.instance_url
        assert tokens.expires_at is None


def test_refresh_gives_a_working_access_token(backend: Backend) -> None:
    oauth_only(backend)
    tokens = connect(backend)
    assert tokens.refresh_token
    backend.expect_token(refresh=True)
    fresh = backend.provider.refresh(tokens.refresh_token, environment=backend.environment)
    assert fresh.access_token and fresh.access_token != tokens.refresh_token
    backend.expect_lookups()
    assert (
        backend.provider.find_contact(backend.account(fresh), MAYA) == IDS[backend.provider.name]["contact"]
    )


def test_revoked_grant_then_refresh_is_auth_revoked(backend: Backend) -> None:
    oauth_only(backend)
    tokens = connect(backend)
    assert tokens.refresh_token
    backend.expect_revoke()
    backend.provider.revoke(tokens.refresh_token, environment=backend.environment)
    with pytest.raises(AuthRevoked):
        backend.provider.refresh(tokens.refresh_token, environment=backend.environment)


def test_injected_invalid_grant_on_refresh_is_auth_revoked(backend: Backend) -> None:
    oauth_only(backend)
    tokens = connect(backend)
    assert tokens.refresh_token
    backend.inject("invalid_grant")
    with pytest.raises(AuthRevoked):
        backend.provider.refresh(tokens.refresh_token, environment=backend.environment)


def test_contact_and_open_deal_lookups(backend: Backend) -> None:
    account = backend.account(connect(backend))
    backend.expect_lookups()
    ids = IDS[backend.provider.name]
    assert backend.provider.find_contact(account, MAYA) == ids["contact"]
    assert backend.provider.find_contact(account, "nobody@nowhere.example") is None
    assert backend.provider.find_open_deal(account, ids["contact"]) == ids["open_deal"]


def test_note_and_task_carry_the_associations_provider_facts_require(backend: Backend) -> None:
    account = backend.account(connect(backend))
    backend.expect_writes()
    ids = IDS[backend.provider.name]
    note_id = backend.provider.create_note(account, activity(ids["contact"], ids["open_deal"]))
    task_id = backend.provider.create_task(
        account, activity(ids["contact"], ids["open_deal"], subject="Follow up")
    )
    assert note_id and task_id
    written = backend.written()
    assert len(written) == (3 if backend.provider.name == "odoo" else 2)  # Odoo: the note's copy too
    if backend.provider.name == "hubspot":
        note, task = written
        assert note["associations"] == [(ids["contact"], 202), (ids["open_deal"], 214)]
        assert task["associations"] == [(ids["contact"], 204), (ids["open_deal"], 216)]
        assert task["properties"]["hs_task_subject"] == "Follow up"
        assert f"[{MARKER}]" in note["properties"]["hs_note_body"]
    elif backend.provider.name == "zoho":
        note, task = written
        assert note["kind"] == "note" and note["parent"] == ("Deals", ids["open_deal"])  # the open deal
        assert f"[{MARKER}]" in note["text"] and note["title"].endswith(f" [{MARKER}]")
        assert (task["who"], task["what"]) == (ids["contact"], ids["open_deal"])
        assert (task["title"], task["status"]) == (f"Follow up [{MARKER}]", "Not Started")
    elif backend.provider.name == "odoo":
        note, copy, task = written  # a logged note on the partner, then on her open opportunity
        contact, deal = int(ids["contact"]), int(ids["open_deal"])
        assert (note["on"], copy["on"]) == (("res.partner", contact), ("crm.lead", deal))
        assert note["subtype"] == copy["subtype"] == "mail.mt_note" and f"[{MARKER}]" in note["body"]
        assert task["kind"] == "task" and task["on"] == ("res.partner", contact)  # a To-Do
        assert (task["summary"], task["type"]) == (f"Follow up [{MARKER}]", ODOO_TODO_IDS["activity_type_id"])
    else:
        by_subject = {w["Subject"]: w for w in written}
        task = by_subject[f"Follow up [{MARKER}]"]
        assert (task["WhoId"], task["WhatId"]) == (ids["contact"], ids["open_deal"])
        assert task["Status"] == "Not Started"


@pytest.mark.parametrize("operation", OPERATIONS)
def test_write_payload_is_the_body_write_sends(
    backend: Backend, sent_json: list[Any], operation: str
) -> None:
    account = backend.account(connect(backend))
    backend.expect_writes()
    ids = IDS[backend.provider.name]
    planned = activity(ids["contact"], ids["open_deal"], subject="Follow up")
    record_id = backend.provider.write(account, operation, planned)
    assert record_id
    payload = backend.provider.write_payload(operation, planned)
    if backend.provider.name == "odoo":
        # JSON-2 sends the payload as message_post's named arguments, to the partner and then to
        # her open opportunity; a To-Do's values get the two ids looked up at send time
        writes = [body for body in sent_json if "subtype_xmlid" in body or "vals_list" in body]
        if operation == "create_note":
            contact, deal = int(ids["contact"]), int(ids["open_deal"])
            assert writes == [{**payload, "ids": [contact]}, {**payload, "ids": [deal]}]
            assert len(backend.written()) == 2
        else:
            assert writes == [{"vals_list": [{**payload, **ODOO_TODO_IDS}]}]
            assert len(backend.written()) == 1
        return
    assert sent_json == [payload]
    assert len(backend.written()) == 1


def test_find_write_finds_a_note_and_a_task_by_marker(backend: Backend) -> None:
    account = backend.account(connect(backend))
    backend.expect_writes()
    backend.expect_find()
    provider, contact = backend.provider, IDS[backend.provider.name]["contact"]
    note = activity(contact, text="Call notes", marker=NOTE_MARKER)
    task = activity(contact, text="Send the contract", marker=TASK_MARKER)
    note_id = provider.write(account, "create_note", note)
    task_id = provider.write(account, "create_task", task)
    assert note_id != task_id
    assert provider.find_write(account, "create_note", note) == note_id
    assert provider.find_write(account, "create_task", task) == task_id
    unknown = activity(contact, text="Never written", marker=UNKNOWN_MARKER)
    assert provider.find_write(account, "create_note", unknown) is None
    assert provider.find_write(account, "create_task", unknown) is None


@pytest.mark.parametrize(
    "marker", ["conduit:abc123", "cdw" + "A" * 24, "cdw" + "0" * 23, "cdw%" + "0" * 23, f"{NOTE_MARKER}\n"]
)
def test_find_write_refuses_a_malformed_marker_before_any_call(backend: Backend, marker: str) -> None:
    account = backend.account(connect(backend))
    backend.expect_find()
    odd = activity(IDS[backend.provider.name]["contact"], marker=marker)
    for operation in OPERATIONS:
        with pytest.raises(ValueError, match="invalid marker"):
            backend.provider.find_write(account, operation, odd)


def test_salesforce_subject_carries_the_marker_within_255_characters(salesforce_backend: Backend) -> None:
    backend = salesforce_backend
    account = backend.account(connect(backend))
    backend.expect_writes()
    backend.expect_find()
    contact = IDS["salesforce"]["contact"]
    long_one = activity(contact, subject="Re: " + "pricing " * 60, marker=TASK_MARKER)
    short_one = activity(contact, subject="Follow up", marker=NOTE_MARKER)
    long_id = backend.provider.write(account, "create_task", long_one)
    backend.provider.write(account, "create_note", short_one)
    subjects = {w["Subject"] for w in backend.written()}
    cut = next(s for s in subjects if TASK_MARKER in s)
    assert len(cut) == 255 and cut == long_one.subject[: 255 - 30] + f" [{TASK_MARKER}]"
    assert f"Follow up [{NOTE_MARKER}]" in subjects
    assert backend.provider.find_write(account, "create_task", long_one) == long_id


@pytest.mark.parametrize("operation", OPERATIONS)
def test_commit_then_hang_times_out_but_find_write_finds_the_record(
    sandbox_backend: SandboxBackend, settings: Any, operation: str
) -> None:
    backend = sandbox_backend
    settings.CONDUIT_PROVIDER_TIMEOUT = (2.0, 0.5)
    account = backend.account(connect(backend))
    planned = activity(IDS[backend.provider.name]["contact"], marker=NOTE_MARKER)
    backend.inject("commit_then_hang", hang_seconds=1.5)
    with pytest.raises(Transient) as raised:
        backend.provider.write(account, operation, planned)
    assert raised.value.code == "timeout"
    state = backend.state()
    if backend.provider.name == "odoo":  # a logged note, or a To-Do
        (stored,) = state["messages"] if operation == "create_note" else state["activities"]
        assert len(state["messages"]) + len(state["activities"]) == 1
        record_id = str(stored["id"])
    elif backend.provider.name in ("hubspot", "zoho"):
        stored = state["notes" if operation == "create_note" else "tasks"]
        assert [r["id"] for r in state["notes"] + state["tasks"]] == [stored[0]["id"]]
        record_id = stored[0]["id"]
    else:
        (task,) = state["tasks"]
        assert task["Status"] == ("Completed" if operation == "create_note" else "Not Started")
        record_id = task["Id"]
    assert state["faults"] == []
    assert backend.provider.find_write(account, operation, planned) == record_id


@pytest.mark.parametrize(("fault", "error"), FAULTS, ids=[f for f, _ in FAULTS])
def test_injected_faults_map_to_the_closed_error_set(
    backend: Backend, settings: Any, fault: str, error: type[ProviderError]
) -> None:
    settings.CONDUIT_PROVIDER_TIMEOUT = (2.0, 0.5)
    account = backend.account(connect(backend))
    ids = IDS[backend.provider.name]
    if fault == "invalid_session" and not backend.provider.uses_oauth:
        error = AuthRevoked  # an API key that Odoo refuses has nothing to refresh: a new key is needed
    backend.inject(fault, retry_after=1, hang_seconds=2)
    with pytest.raises(error) as raised:
        backend.provider.create_note(account, activity(ids["contact"]))
    if fault == "rate_limit":
        assert isinstance(raised.value, RateLimited) and raised.value.retry_after == 1
    if fault == "missing_scope":
        assert isinstance(raised.value, MissingScope) and raised.value.missing
    if fault == "hang":
        assert raised.value.code == "timeout"


def test_salesforce_writes_pause_at_80_percent_of_the_daily_allocation(
    settings: Any, sandboxes: dict[str, str]
) -> None:
    base = sandboxes["salesforce"]
    requests.post(f"{base}/_sandbox/reset", timeout=5)
    backend = SandboxBackend("salesforce", base, settings)
    account = backend.account(connect(backend))
    requests.post(f"{base}/_sandbox/config", json={"daily_api_limit": 1000, "api_usage": 799}, timeout=5)
    ids = IDS["salesforce"]
    backend.provider.find_contact(account, MAYA)  # usage 800/1000 now known from Sforce-Limit-Info
    with pytest.raises(RateLimited) as raised:
        backend.provider.create_task(account, activity(ids["contact"]))
    assert raised.value.code == "daily_budget_paused"
    assert backend.written() == []


def test_hubspot_limiter_keeps_the_portal_under_its_window(settings: Any, sandboxes: dict[str, str]) -> None:
    """Sandbox limit 10 per 10 s, Conduit's budget 92% of it: the 10th call is held back, not sent."""
    base = sandboxes["hubspot"]
    requests.post(f"{base}/_sandbox/reset", timeout=5)
    requests.post(f"{base}/_sandbox/config", json={"ten_second_limit": 10}, timeout=5)
    settings.HUBSPOT_TEN_SECOND_LIMIT = 10
    settings.CONDUIT_RATE_MAX_WAIT_SECONDS = 0
    backend = SandboxBackend("hubspot", base, settings)
    account = backend.account(connect(backend))
    for _ in range(9):
        backend.provider.create_note(account, activity(IDS["hubspot"]["contact"]))
    with pytest.raises(RateLimited) as raised:
        backend.provider.create_note(account, activity(IDS["hubspot"]["contact"]))
    assert raised.value.code == "local_rate_limit"
    state = backend.state()
    assert state["requests"]["rate_limited"] == 0
    assert len(state["notes"]) == 9


# --- providers connected with an API key (Odoo) -------------------------------------------------


def test_a_key_provider_checks_the_key_and_names_the_account(key_backend: Backend) -> None:
    tokens = connect(key_backend)
    account = key_backend.account(tokens)
    assert key_backend.provider.uses_oauth is False and key_backend.provider.required_scopes == ()
    assert account.account_key.endswith("/acme" if key_backend.kind == "mock" else f"/{ODOO_SANDBOX_DB}")
    assert (account.details["api"], account.details["version"], account.details["uid"]) == (
        "json2",
        "19.0",
        2,
    )
    assert tokens.refresh_token is None and tokens.expires_at is None
    health = key_backend.provider.check_health(account)
    assert health.details["uid"] == 2 and health.details["api"] == "json2"
    with pytest.raises(Permanent) as raised:
        key_backend.provider.refresh("anything")
    assert raised.value.code == "api_key_only"


def test_a_key_provider_refuses_a_wrong_key_then_a_deleted_one_as_auth_revoked(key_backend: Backend) -> None:
    with pytest.raises(AuthRevoked) as wrong:
        key_backend.connect_with_key("0badc0de" * 5)
    assert wrong.value.code == "api_key_rejected"
    account = key_backend.account(connect(key_backend))
    assert key_backend.provider.find_contact(account, MAYA) == IDS["odoo"]["contact"]
    key_backend.reject_key()  # deleted in Odoo, or expired
    with pytest.raises(AuthRevoked) as deleted:
        key_backend.provider.find_contact(account, MAYA)
    assert deleted.value.code == "api_key_rejected"
    with pytest.raises(Permanent) as raised:
        key_backend.provider.revoke(account.access_token)
    assert raised.value.code == "revoke_not_supported"  # Conduit can only forget the key
