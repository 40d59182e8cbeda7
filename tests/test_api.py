from __future__ import annotations

import json

import pytest
from django.test import Client

from conduit.models import ApiToken, Message
from conduit.services import do_create_api_token, do_revoke_api_token
from tests.conftest import Tenant, raw_email

URL = "/api/v1/messages"


@pytest.fixture
def token(alice: Tenant) -> str:
    return do_create_api_token(alice.workspace, "gateway", actor=alice.user).raw


def post(client: Client, body: bytes | str, content_type: str = "message/rfc822", token: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(URL, data=body, content_type=content_type, **headers)


def test_post_raw_email_with_token_creates_then_repeat_returns_existing(alice: Tenant, token: str) -> None:
    raw = raw_email("api1@x", attachment=("a.txt", "text/plain", b"hello"))
    first = post(Client(), raw, token=token)
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["created"] is True and body["message_id"] == "api1@x" and body["attachments"] == 1
    again = post(Client(), raw, token=token)
    assert again.status_code == 200 and again.json() == {**body, "created": False}
    assert Message.objects.filter(workspace=alice.workspace).count() == 1
    assert ApiToken.objects.get().last_used_at is not None


def test_post_json_message_with_session(alice: Tenant) -> None:
    payload = {"message_id": "j@x", "from": "a@b.example", "to": ["c@d.example"], "subject": "JSON"}
    response = post(alice.client(), json.dumps(payload), "application/json")
    assert response.status_code == 201, response.content
    assert Message.objects.get(workspace=alice.workspace).subject == "JSON"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "text"),
    [
        (b"hello, not a mail", "message/rfc822", 400, "invalid_message", "no From header"),
        (b"  \n", "message/rfc822", 400, "invalid_message", "empty"),
        (b"", "message/rfc822", 415, "unsupported_media_type", "(none)"),
        (b"{not json", "application/json", 400, "invalid_message", "not valid JSON"),
        (b'{"from": "a@b"}', "application/json", 400, "invalid_message", "message_id"),
        (b"<xml/>", "application/xml", 415, "unsupported_media_type", "message/rfc822"),
    ],
)
def test_bad_input_gets_a_json_error_and_stores_nothing(
    alice: Tenant, token: str, body: bytes, content_type: str, status: int, code: str, text: str
) -> None:
    response = post(Client(), body, content_type, token=token)
    assert response.status_code == status
    assert response.json()["code"] == code and text in response.json()["message"]
    assert Message.objects.count() == 0


def test_oversize_message_is_413_and_stores_nothing(alice: Tenant, token: str, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CONDUIT_MAX_MESSAGE_BYTES = 200
    response = post(Client(), raw_email("big@x", body="x" * 1000), token=token)
    assert response.status_code == 413
    assert response.json()["code"] == "message_too_large"
    assert Message.objects.count() == 0


def test_small_body_over_limit_after_parsing_is_413(alice: Tenant, token: str, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CONDUIT_MAX_MESSAGE_BYTES = 50
    response = post(
        Client(),
        json.dumps({"message_id": "x", "from": "a@b", "body_text": "z" * 60}),
        "application/json",
        token=token,
    )
    assert response.status_code == 413


def test_without_credentials_is_refused(alice: Tenant) -> None:
    response = post(Client(), raw_email())
    assert response.status_code in (401, 403)
    assert response.json()["code"] == "not_authenticated" or "sign in" in response.json()["message"]
    assert Message.objects.count() == 0


def test_invalid_or_revoked_token_is_401(alice: Tenant, token: str) -> None:
    bad = post(Client(), raw_email(), token="cdt_not-a-real-token-at-all")
    assert bad.status_code == 401 and bad.json()["code"] == "invalid_token"
    assert bad["WWW-Authenticate"].startswith("Bearer")
    do_revoke_api_token(ApiToken.objects.get(), actor=alice.user)
    revoked = post(Client(), raw_email(), token=token)
    assert revoked.status_code == 401
    assert Message.objects.count() == 0


def test_token_only_writes_into_its_own_workspace(alice: Tenant, bob: Tenant, token: str) -> None:
    post(Client(), raw_email("mine@x"), token=token)
    assert Message.objects.get(message_id="mine@x").workspace_id == alice.workspace.pk
    assert not Message.objects.filter(workspace=bob.workspace).exists()


def test_get_is_not_allowed(alice: Tenant, token: str) -> None:
    response = Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        ({"message_id": "x@x", "from": "a@b", "body_text": {"nested": True}}, "'body_text' must be a string"),
        ({"message_id": "x@x", "from": "a@b", "body_text": 12}, "'body_text' must be a string"),
        ({"message_id": "<>", "from": "a@b"}, "'message_id' must not be empty"),
    ],
)
def test_wrongly_typed_json_is_400(alice: Tenant, token: str, payload: dict, text: str) -> None:  # type: ignore[type-arg]
    response = post(Client(), json.dumps(payload), "application/json", token=token)
    assert response.status_code == 400 and text in response.json()["message"]
    assert Message.objects.count() == 0


@pytest.mark.postgres
def test_unstorable_message_is_400_json(alice: Tenant, token: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.test_ingest import refuse_subject

    refuse_subject(monkeypatch, "bad@x")
    response = post(Client(), raw_email("bad@x"), token=token)
    assert response.status_code == 400 and response.json()["code"] == "unstorable_message"
    assert Message.objects.count() == 0
