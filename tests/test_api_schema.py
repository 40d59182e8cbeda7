"""Schemathesis runs every operation of /api/schema/ against the app with generated data and a
valid credential: no 5xx, every response conforms to the schema (documented status code, content
type, body), and every request that breaks the schema is refused (schema and validation agree).
Seeded rows make the happy paths return data the schema must describe.
The regression tests below pin the bugs the run found."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import requests
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.transport.serialization import serialize_binary

from conduit.tenancy import system_scope
from integrations.models import CrmConnection, PendingInstall, WebhookEvent
from tests.conftest import Tenant, raw_email
from tests.ops_helpers import make_health, make_log, make_staff, make_write, staff_token, workspace_token

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 60}
# Negative cases break the schema on purpose: each must be refused (a 4xx), never accepted.
EXTRA_CHECKS: dict[GenerationMode, list[Any]] = {
    GenerationMode.POSITIVE: [],
    GenerationMode.NEGATIVE: [negative_data_rejection],
}
CSRF = "a" * 32  # a CSRF secret sent both as the cookie and the header, as a browser would


@schemathesis.serializer("message/rfc822")
def rfc822_bytes(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    return serialize_binary(value)


@dataclass
class Seeded:
    """The rows and credentials every operation runs against."""

    tenant: Tenant
    workspace_token: str
    operator_token: str
    session_cookies: dict[str, str]
    sync_log_id: int
    webhook_event_id: str
    install_id: str


def sandbox_connection(tenant: Tenant, crm: str, base: str) -> CrmConnection:
    """A connection holding a real sandbox grant, so refresh and disconnect reach a provider."""
    grant = requests.post(f"{base}/_sandbox/tokens", json={}, timeout=5).json()
    details: dict[str, Any] = {"environment": "login"}
    if crm == "salesforce":
        details["instance_url"] = grant["instance_url"]
    with system_scope():
        return CrmConnection.objects.create(
            workspace=tenant.workspace,
            crm=crm,
            status=CrmConnection.Status.CONNECTED,
            external_account_key="4400001" if crm == "hubspot" else "00D5g000004SbxAEAS",
            external_account_json=details,
            access_token=grant["access_token"],
            refresh_token=grant["refresh_token"],
            token_expires_at=timezone.now() + timedelta(minutes=30),
            connected_at=timezone.now(),
            dry_run=False,
        )


def seed(tenant: Tenant, crm_env: dict[str, str]) -> Seeded:
    hubspot = sandbox_connection(tenant, "hubspot", crm_env["hubspot"])
    make_health(hubspot, "warning", reason="rate_limited")
    log = make_log(tenant.workspace, ok=False, code="validation_failed")
    make_log(tenant.workspace)
    make_log(None, provider="salesforce", ok=False, code="network_error")
    make_write(hubspot, "failed", "validation_failed")
    make_write(hubspot, "permanent", "missing_scope")
    make_write(hubspot, "planned")
    with system_scope():
        event = WebhookEvent.objects.create(
            provider="hubspot",
            event_id="evt-" + secrets.token_hex(4),
            event_type="contact.propertyChange",
            external_account_key=hubspot.external_account_key,
            object_id="101",
            workspace=tenant.workspace,
            status=WebhookEvent.Status.FAILED,
            attempts=1,
            error="boom",
            payload={"objectId": 101, "subscriptionType": "contact.propertyChange"},
        )
        unclaimed = CrmConnection.objects.create(
            crm="salesforce",
            status=CrmConnection.Status.PENDING_CLAIM,
            external_account_key="00D5g000004SbxAEAS",
            access_token="a-tok",
            refresh_token="r-tok",
        )
        pending = PendingInstall.objects.create(
            crm="salesforce",
            external_account_key="00D5g000004SbxAEAS",
            expires_at=timezone.now() + timedelta(hours=2),
            connection=unclaimed,
        )
    browser = tenant.client()
    return Seeded(
        tenant=tenant,
        workspace_token=workspace_token(tenant),
        operator_token=staff_token(make_staff()),
        session_cookies={"sessionid": browser.cookies["sessionid"].value, "csrftoken": CSRF},
        sync_log_id=log.pk,
        webhook_event_id=event.event_id,
        install_id=pending.install_id,
    )


@pytest.fixture
def seeded(crm_env: dict[str, str], alice: Tenant) -> Seeded:
    return seed(alice, crm_env)


@pytest.fixture
def wsgi_app() -> Iterator[WSGIHandler]:
    """Django's WSGI app, called in-process. Like Django's test client, it keeps the test's
    database connection open across requests (its transaction holds the seeded rows)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(wsgi_app: WSGIHandler) -> Any:
    return schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)


def credentials(operation: Any, seeded: Seeded) -> dict[str, Any]:
    """Headers and cookies for the operation's first security requirement."""
    schemes = [name for requirement in operation.definition.raw["security"] for name in requirement]
    if schemes[0] == "workspaceToken":
        return {"headers": {"Authorization": f"Bearer {seeded.workspace_token}"}}
    if schemes[0] == "operatorToken":
        return {"headers": {"Authorization": f"Bearer {seeded.operator_token}"}}
    assert schemes == ["cookieAuth"], schemes  # claim-install: a signed-in person, not a token
    return {"headers": {"X-CSRFToken": CSRF}, "cookies": seeded.session_cookies}


def happy_case(operation: Any, seeded: Seeded) -> Any:
    """A valid request against the seeded rows, so a 2xx body is checked, not only errors."""
    workspace_id = seeded.tenant.workspace.pk
    cases: dict[str, dict[str, Any]] = {
        "integrations_status": {},
        "integration_status": {"path_parameters": {"provider": "hubspot"}},
        "integration_sync_logs": {"path_parameters": {"provider": "hubspot"}, "query": {"status": "failed"}},
        "integration_sync_log": {"path_parameters": {"provider": "hubspot", "id": seeded.sync_log_id}},
        "integration_failures": {"path_parameters": {"provider": "hubspot"}, "query": {"hours": 48}},
        "integration_retry_failed": {
            "path_parameters": {"provider": "hubspot"},
            "body": {"error_code": "validation_failed"},
            "media_type": "application/json",
        },
        "integration_refresh": {"path_parameters": {"provider": "hubspot"}},
        "integration_disconnect": {"path_parameters": {"provider": "hubspot"}},
        "messages_ingest": {"body": raw_email("schema@example.com"), "media_type": "message/rfc822"},
        "claim_install": {
            "body": {"crm": "salesforce", "install_id": seeded.install_id, "workspace_id": workspace_id},
            "media_type": "application/json",
        },
        "admin_pause_sync": {"query": {"pause": "true", "provider": "hubspot", "reason": "schema run"}},
        "admin_replay_webhook": {"query": {"provider": "hubspot", "event_id": seeded.webhook_event_id}},
        "admin_sync_status": {"query": {"workspace_id": "alice"}},
        "admin_calendar_jobs_run": {"body": {"limit": 5}, "media_type": "application/json"},
        "admin_tenant_integration_update": {
            "path_parameters": {"tenant_id": str(workspace_id), "provider": "hubspot"},
            "body": {"enabled": False, "reason": "schema run"},
            "media_type": "application/json",
        },
        "health_matrix": {},
        "sync_logs": {"query": {"provider": "hubspot", "limit": 2}},
        "system_metrics_queues": {},
    }
    return operation.Case(**cases[operation.definition.raw["operationId"]])


def pinned(operation: Any, seeded: Seeded) -> dict[str, Any]:
    """Identifiers random data never hits, fixed to seeded rows so the rest is generated
    against a real row (mixed in with fully generated cases, positive mode only)."""
    pins: dict[str, dict[str, Any]] = {
        "integration_sync_log": {"path_parameters": {"id": seeded.sync_log_id}},
        "admin_tenant_integration_update": {"path_parameters": {"tenant_id": "alice"}},
        "admin_replay_webhook": {"query": {"event_id": seeded.webhook_event_id}},
        "admin_sync_status": {"query": {"workspace_id": str(seeded.tenant.workspace.pk)}},
        "sync_logs": {"query": {"workspace_id": "alice"}},
    }
    return pins.get(operation.definition.raw["operationId"], {})


OPERATIONS = [
    "GET /api/v1/integrations/status",
    "GET /api/v1/integrations/{provider}/status",
    "GET /api/v1/integrations/{provider}/sync-logs",
    "GET /api/v1/integrations/{provider}/sync-logs/{id}",
    "GET /api/v1/integrations/{provider}/failures",
    "POST /api/v1/integrations/{provider}/retry-failed",
    "POST /api/v1/integrations/{provider}/refresh",
    "POST /api/v1/integrations/{provider}/disconnect",
    "POST /api/v1/messages",
    "POST /api/v1/claim-install",
    "POST /api/v1/admin/pause-sync",
    "POST /api/v1/admin/replay-webhook",
    "GET /api/v1/admin/sync-status",
    "POST /api/v1/admin/calendar/jobs/run",
    "PATCH /api/v1/admin/tenants/{tenant_id}/integrations/{provider}",
    "GET /api/v1/health",
    "GET /api/v1/sync/logs",
    "GET /api/v1/system-metrics/queues",
]


def test_every_schema_operation_is_exercised(api_schema: Any) -> None:
    """A new endpoint fails here until it is added to OPERATIONS (and so to the run)."""
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert labels == set(OPERATIONS)


# What generated data cannot reach, and how it is covered instead (nothing is skipped):
# - claim-install: random install ids never match a pending install (404/400); happy_case claims one.
# - refresh / disconnect: happy_case runs first, so disconnect's generated cases meet a disconnected
#   connection (409); the 200 bodies are checked by happy_case.
# - messages: random RFC 822 bytes and JSON objects are refused (400); happy_case stores one (201).
# - pause-sync wants exactly one target, which the schema cannot say: most generated cases are 400.
# - path ids and workspace ids are random: pinned() mixes in cases aimed at seeded rows.
# - the cookieAuth alternative is sent only where it is the sole scheme (claim-install); the token
#   endpoints are run with their tokens.
@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda m: m.value)
@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_conforms_to_the_schema(
    api_schema: Any, seeded: Seeded, label: str, mode: GenerationMode
) -> None:
    operation = api_schema.find_operation_by_label(label)
    auth = credentials(operation, seeded)
    if mode is GenerationMode.POSITIVE:
        case = happy_case(operation, seeded)
        response = case.call(**auth)
        assert 200 <= response.status_code < 300, (response.status_code, response.text)
        case.validate_response(response, checks=CHECKS)

    strategy = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE and (pins := pinned(operation, seeded)):
        strategy = st.one_of(strategy, operation.as_strategy(generation_mode=mode, **pins))

    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),  # each case is a real request on Postgres: slow-ish
    )
    @given(case=strategy)
    def generated(case: Any) -> None:
        response = case.call(**auth)
        case.validate_response(response, checks=CHECKS + EXTRA_CHECKS[mode])

    generated()


# --- Regression tests for what the run found -------------------------------------------------


def answer(method: str, path: str, token: str = "", body: Any = None, **extra: Any) -> Any:
    client = Client(raise_request_exception=False)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    if body is not None and "content_type" not in extra:
        extra["content_type"] = "application/json"
    return getattr(client, method)(path, body if body is not None else {}, **headers, **extra)


@pytest.fixture
def operator_token(db: None) -> str:
    return staff_token(make_staff())


def test_api_url_that_matches_no_route_answers_json_404(alice: Tenant) -> None:
    response = answer("get", "/api/v1/integrations/hubspot/sync-logs/-1", workspace_token(alice))
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_found"
    assert "text/html" in Client().get("/no-such-page/")["Content-Type"]


@pytest.mark.parametrize("tenant_id", ["²", "1²"])
def test_tenant_id_of_non_ascii_digits_is_404_not_500(
    alice: Tenant, operator_token: str, tenant_id: str
) -> None:
    url = f"/api/v1/admin/tenants/{tenant_id}/integrations/hubspot"
    response = answer("patch", url, operator_token, {"enabled": False})
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    status = answer("get", "/api/v1/admin/sync-status", operator_token, {"workspace_id": tenant_id})
    assert status.status_code == 404 and status.json()["code"] == "not_found"


def test_tenant_id_with_nul_is_400_not_500(alice: Tenant, operator_token: str) -> None:
    url = "/api/v1/admin/tenants/al%00ice/integrations/hubspot"
    response = answer("patch", url, operator_token, {"enabled": False})
    assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_pause_reason_with_nul_is_400_and_pauses_nothing(operator_token: str) -> None:
    from integrations.models import SyncPause

    url = "/api/v1/admin/pause-sync?pause=true&provider=hubspot&reason=bad%00mapping"
    response = answer("post", url, operator_token)
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    with system_scope():
        assert not SyncPause.objects.exists()


def test_claim_with_nul_in_install_id_is_400_not_500(alice: Tenant) -> None:
    client = alice.client()
    body = {"crm": "hubspot", "install_id": "ab\x00c", "workspace_id": alice.workspace.pk}
    response = client.post("/api/v1/claim-install", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_claim_and_tenant_switch_take_json_only_as_documented(alice: Tenant, operator_token: str) -> None:
    form = {"crm": "hubspot", "install_id": "x", "workspace_id": str(alice.workspace.pk)}
    claim = alice.client().post("/api/v1/claim-install", form)
    assert claim.status_code == 415 and claim.json()["code"] == "unsupported_media_type"
    switch = answer(
        "patch",
        "/api/v1/admin/tenants/alice/integrations/hubspot",
        operator_token,
        "enabled=false",
        content_type="application/x-www-form-urlencoded",
    )
    assert switch.status_code == 415 and switch.json()["code"] == "unsupported_media_type"


def test_malformed_content_length_on_ingest_is_not_500(alice: Tenant) -> None:
    response = answer(
        "post",
        "/api/v1/messages",
        workspace_token(alice),
        raw_email("length@example.com"),
        content_type="message/rfc822",
        CONTENT_LENGTH="abc",
    )
    assert response.status_code < 500 and response["Content-Type"] == "application/json"


# --- Schema and validation agree ------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["hours=", "hours=abc", "hours=0", "hours=721"],
)
def test_failures_refuse_what_the_schema_refuses(alice: Tenant, query: str) -> None:
    response = answer("get", f"/api/v1/integrations/hubspot/failures?{query}", workspace_token(alice))
    assert response.status_code == 400 and "hours" in response.json()["message"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/integrations/hubspot/sync-logs?since=", "since"),
        ("/api/v1/integrations/hubspot/sync-logs?since=yesterday", "since"),
        ("/api/v1/integrations/hubspot/sync-logs?error_code=", "error_code"),
    ],
)
def test_empty_or_malformed_query_values_are_a_400_naming_the_field(
    alice: Tenant, path: str, field: str
) -> None:
    response = answer("get", path, workspace_token(alice))
    assert response.status_code == 400 and field in response.json()["message"]


@pytest.mark.parametrize(
    "path", ["/api/v1/health?provider=", "/api/v1/sync/logs?workspace_id=", "/api/v1/sync/logs?since="]
)
def test_operator_reads_refuse_empty_values(operator_token: str, path: str) -> None:
    assert answer("get", path, operator_token).status_code == 400


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"error_code": [15.0, 0.25]}, 400),
        ({"error_code": True}, 400),
        ({"error_code": [""]}, 400),
        ("a string", 400),
        ([], 400),
        ({"error_code": "validation_failed"}, 200),
        ({"error_code": ["validation_failed", "network_error"]}, 200),
    ],
)
def test_retry_failed_takes_a_code_or_a_list_of_string_codes(alice: Tenant, body: Any, status: int) -> None:
    response = answer("post", "/api/v1/integrations/hubspot/retry-failed", workspace_token(alice), body=body)
    assert response.status_code == status, response.content


def test_retry_failed_refuses_a_form_body_as_the_schema_offers_json_only(alice: Tenant) -> None:
    response = answer(
        "post",
        "/api/v1/integrations/hubspot/retry-failed",
        workspace_token(alice),
        body="error_code=x",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 415


def test_the_message_schema_requires_what_ingest_requires(api_schema: Any) -> None:
    operation = api_schema.find_operation_by_label("POST /api/v1/messages")
    body = operation.definition.raw["requestBody"]["content"]["application/json"]["schema"]
    resolved = api_schema.raw_schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert set(resolved["required"]) == {"message_id", "from"}
    assert {"to", "cc", "subject", "body_text", "body_html", "sent_at"} <= set(resolved["properties"])


@pytest.mark.parametrize(
    "body",
    [
        {"from": "a@acme.example"},
        {"message_id": "m@x"},
        {"message_id": "<>", "from": "a@acme.example"},
        {"message_id": "m@x", "from": "a@acme.example", "sent_at": ""},
        {"message_id": "m@x", "from": "a@acme.example", "to": "not-a-list"},
    ],
)
def test_ingest_refuses_json_the_schema_refuses(alice: Tenant, body: dict[str, Any]) -> None:
    response = answer("post", "/api/v1/messages", workspace_token(alice), body=body)
    assert response.status_code == 400, response.content


def test_the_runbooks_curl_d_json_typed_as_a_form_switches_the_tenant(
    alice: Tenant, operator_token: str
) -> None:
    """Runbook 001 sends `curl -X PATCH ... -d '{"enabled": false}'` with no content type: curl
    types it as a form, and the JSON it holds is read as JSON."""
    path = "/api/v1/admin/tenants/alice/integrations/hubspot"
    form_typed = {"content_type": "application/x-www-form-urlencoded"}
    response = answer("patch", path, operator_token, '{"enabled": false}', **form_typed)
    assert response.status_code == 200, response.content
    assert response.json()["enabled"] is False and response.json()["changed"] is True
    refused = answer("patch", path, operator_token, "[]", **form_typed)
    assert refused.status_code == 400 and "JSON object" in refused.json()["message"]
    other = answer("patch", path, operator_token, '{"enabled": true}', content_type="text/plain")
    assert other.status_code == 415
    not_json = answer("patch", path, operator_token, "enabled=true", **form_typed)
    assert not_json.status_code == 415 and "Content-Type: application/json" in not_json.json()["message"]


def test_the_schema_keeps_the_tenant_switch_json_only(api_schema: Any) -> None:
    operation = api_schema.find_operation_by_label(
        "PATCH /api/v1/admin/tenants/{tenant_id}/integrations/{provider}"
    )
    assert list(operation.definition.raw["requestBody"]["content"]) == ["application/json"]
