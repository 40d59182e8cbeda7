"""No input makes a 500: hostile JSON and MIME to the ingest API and the webhook inbox, and
unroutable URLs under /api/, each get a clear 4xx JSON error and change nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import Client

from conduit.models import Message
from conduit.safe_json import SafeJsonError, loads_bounded
from integrations.models import WebhookEvent
from integrations.sandbox.webhooks import signature_v3
from tests.conftest import Tenant
from tests.test_webhooks import SECRET, deliver, event

URL = "/api/v1/messages"


def client_of(tenant: Tenant) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(tenant.user)
    return client


def post_json(tenant: Tenant, body: bytes | str) -> Any:
    return client_of(tenant).post(URL, data=body, content_type="application/json")


def message(**fields: Any) -> str:
    return json.dumps({"message_id": "m@x", "from": "a@acme.example", **fields})


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("[1e400]", "too large"),
        ('{"a": NaN}', "not a number JSON allows"),
        ('{"a": -Infinity}', "not a number JSON allows"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper"),
        ("[" * 70 + "]" * 70, "nested deeper than 64"),
        ('{"s": "\\ud800"}', "lone UTF-16 surrogate"),
        ("1" * 5000, "too many digits"),
        (b'{"a": "\xff"}', "not UTF-8"),
        ("{", "not JSON"),
    ],
)
def test_hostile_json_is_refused_with_what_is_wrong(body: str | bytes, says: str) -> None:
    with pytest.raises(SafeJsonError, match=says):
        loads_bounded(body)


def test_bounded_json_keeps_surrogates_when_asked_and_parses_the_ordinary() -> None:
    assert loads_bounded('{"s": "\\ud800"}', text_only=False) == {"s": "\ud800"}
    assert loads_bounded('{"a": [1, 2.5, {"b": null}]}') == {"a": [1, 2.5, {"b": None}]}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        message(subject="\ud800"),
        '{"message_id": "m@x", "from": "a@acme.example", "subject": "\\ud800"}',
        "[" * 100_000 + "]" * 100_000,
        '{"message_id": "m@x", "from": "a@acme.example", "n": 1e400}',
    ],
)
def test_ingest_refuses_hostile_json_with_a_json_400(alice: Tenant, body: str) -> None:
    response = post_json(alice, body)
    assert response.status_code == 400, response.content
    assert response.json()["message"]
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_ingest_refuses_mime_nested_past_what_the_parser_follows(alice: Tenant) -> None:
    depth = 2000
    parts = [
        "From: a@acme.example\r\nMessage-ID: <deep@x>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
    ]
    for level in range(1, depth):
        parts.append(f'--b{level - 1}\r\nContent-Type: multipart/mixed; boundary="b{level}"\r\n\r\n')
    parts.append(f"--b{depth - 1}\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b{depth - 1}--\r\n")
    response = client_of(alice).post(URL, data="".join(parts).encode(), content_type="message/rfc822")
    assert response.status_code == 400, response.content[:200]
    assert "nested too deeply" in response.json()["message"]
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_json_ingest_cleans_line_breaks_in_headers_like_the_raw_path(alice: Tenant) -> None:
    response = post_json(
        alice,
        message(
            message_id="inj\r\nBcc: victim@x.example", subject="Hello\r\nBcc: victim@x.example", to=["a\nb"]
        ),
    )
    assert response.status_code == 201, response.content
    stored = Message.objects.get()
    assert stored.message_id == "inj Bcc: victim@x.example"
    assert stored.subject == "Hello Bcc: victim@x.example"
    assert stored.to_addresses == ["a b"]
    assert not any(c in stored.message_id + stored.subject for c in "\r\n")


@pytest.fixture
def signed(alice: Tenant, settings: Any) -> None:
    settings.CONDUIT_PUBLIC_URL = "http://testserver"
    settings.HUBSPOT_CLIENT_SECRET = SECRET


def deliver_raw(body: bytes) -> Any:
    timestamp = str(int(time.time() * 1000))
    signature = signature_v3(SECRET, "POST", "http://testserver/webhooks/hubspot", body, timestamp)
    return Client(raise_request_exception=False).post(
        "/webhooks/hubspot",
        data=body,
        content_type="application/json",
        HTTP_X_HUBSPOT_SIGNATURE_V3=signature,
        HTTP_X_HUBSPOT_REQUEST_TIMESTAMP=timestamp,
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ("1e400", "too large"),
        ("[" * 1500 + "]" * 1500, "nested deeper"),
        ("[" * 70 + "]" * 70, "nested deeper"),
    ],
)
def test_signed_webhook_deliveries_that_cannot_be_stored_are_a_400(
    signed: None, extra: str, says: str
) -> None:
    ordinary = json.dumps(event("contact.creation", 7))
    response = deliver_raw(f'[{ordinary[:-1]}, "x": {extra}}}]'.encode())
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "malformed" and says in response.json()["message"]
    assert not WebhookEvent.objects.exists()


def test_an_ordinary_signed_delivery_still_goes_through(signed: None, db: None) -> None:
    response = deliver([event("contact.creation", 7)])
    assert response.status_code == 200 and response.json()["stored"] == 1


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize(
    "path",
    ["/api/v1/integrations/hubspot/sync-logs/null,null", "/api/v1/nothing-here", "/api/v1/messages/-1"],
)
def test_unroutable_urls_under_api_answer_json_404_in_debug_too(
    alice: Tenant, settings: Any, debug: bool, path: str
) -> None:
    settings.DEBUG = debug
    response = alice.client().get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"code": "not_found", "message": f"no API endpoint at {path}"}


@pytest.mark.django_db
def test_pages_outside_api_keep_their_html_404(alice: Tenant, settings: Any) -> None:
    settings.DEBUG = False
    response = Client().get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
