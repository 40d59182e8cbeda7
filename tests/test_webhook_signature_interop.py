"""Signatures made the way HubSpot's official client makes them (the URI exactly as given) are
accepted beside those of HubSpot's servers (its escapes decoded): escapes in the webhook URL
and a bare trailing "?" no longer fail verification, and a forged signature still does."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import Client
from hubspot.utils.signature import Signature

from integrations.models import WebhookEvent
from integrations.webhooks.signature import SignatureRejected, SignedRequest, signed_forms, verify_v3
from tests.test_webhooks import SECRET, event

pytestmark = pytest.mark.django_db
ORIGIN = "https://conduit.example"


@pytest.fixture(autouse=True)
def configured(settings: Any, alice: Any) -> None:
    settings.CONDUIT_PUBLIC_URL = ORIGIN
    settings.HUBSPOT_CLIENT_SECRET = SECRET


def post(raw_target: str | None, path_and_query: str, body: str, signature: str, timestamp: str) -> Any:
    extra = {"RAW_URI": raw_target} if raw_target else {}
    return Client().post(
        path_and_query,
        data=body,
        content_type="application/json",
        HTTP_X_HUBSPOT_SIGNATURE_V3=signature,
        HTTP_X_HUBSPOT_REQUEST_TIMESTAMP=timestamp,
        **extra,
    )


def official_signature(uri: str, body: str, timestamp: str, secret: str = SECRET) -> str:
    return Signature.get_signature(secret, body, "v3", http_uri=uri, http_method="POST", timestamp=timestamp)


@pytest.mark.parametrize(
    "target",
    [
        "/webhooks/hubspot?portal=a%3Ab",
        "/webhooks/hubspot?next=%2Fback",
        "/webhooks/hubspot?who=ops%40acme.example",
        "/webhooks/hubspot?q=%3Fmaybe",
        "/webhooks/hubspot?",
    ],
)
def test_the_official_clients_signature_over_the_uri_as_given_is_accepted(target: str) -> None:
    body = json.dumps([event("contact.creation", 11)])
    timestamp = str(int(time.time() * 1000))
    signature = official_signature(ORIGIN + target, body, timestamp)
    assert Signature.is_valid(signature, SECRET, body, ORIGIN + target, "POST", "v3", timestamp)
    response = post(target, target, body, signature, timestamp)
    assert response.status_code == 200, response.content
    assert WebhookEvent.objects.count() == 1


def test_a_bare_trailing_question_mark_verifies_without_the_raw_uri_too() -> None:
    body = json.dumps([event("contact.creation", 12)])
    timestamp = str(int(time.time() * 1000))
    signature = official_signature(ORIGIN + "/webhooks/hubspot?", body, timestamp)
    response = post(None, "/webhooks/hubspot", body, signature, timestamp)
    assert response.status_code == 200, response.content


def test_a_signature_made_with_another_secret_is_refused_over_every_form() -> None:
    target = "/webhooks/hubspot?portal=a%3Ab"
    body = json.dumps([event("contact.creation", 13)])
    timestamp = str(int(time.time() * 1000))
    signature = official_signature(ORIGIN + target, body, timestamp, secret="someone-else")
    response = post(target, target, body, signature, timestamp)
    assert response.status_code == 401 and response.json()["code"] == "bad_signature"
    assert not WebhookEvent.objects.exists()


def test_the_signed_forms_are_the_decoded_the_given_and_the_bare_question_mark() -> None:
    assert signed_forms("https://x/h?a=b%3Ac") == ["https://x/h?a=b:c", "https://x/h?a=b%3Ac"]
    assert signed_forms("https://x/h") == ["https://x/h", "https://x/h?"]
    with pytest.raises(SignatureRejected):
        verify_v3(
            SignedRequest(
                "POST", "https://x/h", b"[]", "1", official_signature("https://x/other", "[]", "1")
            ),
            SECRET,
            now_ms=1,
            max_age_seconds=300,
        )
