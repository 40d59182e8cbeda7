from __future__ import annotations

import pytest

from conduit.audit import SecretInAuditPayload, actor_label, record_audit
from conduit.models import AuditEvent
from conduit.secrets_scan import register_secret
from tests.conftest import Tenant


def test_record_audit_writes_event_with_target_and_actor(alice: Tenant) -> None:
    event = record_audit(
        "workspace_renamed",
        actor=alice.user,
        workspace=alice.workspace,
        target=alice.workspace,
        payload={"from": "Old", "to": "New", "counts": [1, 2]},
    )
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.event, stored.actor) == ("workspace_renamed", f"user:{alice.user.pk}")
    assert (stored.target_type, stored.target_id) == ("workspace", str(alice.workspace.pk))
    assert stored.payload_json == {"from": "Old", "to": "New", "counts": [1, 2]}
    assert stored.created_at is not None


@pytest.mark.parametrize(
    "payload",
    [
        {"access_token": "x"},
        {"refresh_token": "x"},
        {"client_secret": "x"},
        {"password": "x"},
        {"Authorization": "x"},
        {"body": "x"},
        {"body_text": "x"},
        {"nested": {"deeper": [{"api_token": "x"}]}},
        {"note": "Bearer abcdefghijklmnop1234"},
        {"url": "https://x.example/cb?access_token=abc123def456"},
        {"header": "authorization: Token abcdefghijkl"},
        {"list": ["ok", "Bearer zzzzzzzzzzzzzzzzzz"]},
        {"cipher": "gAAAAABlZ" + "a" * 60},
        {"key": "cdt_" + "a" * 30},
    ],
)
def test_record_audit_refuses_secret_looking_payloads(alice: Tenant, payload: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(SecretInAuditPayload) as excinfo:
        record_audit("connection_updated", actor="system:test", workspace=alice.workspace, payload=payload)
    assert AuditEvent.objects.count() == 0
    assert "zzzz" not in str(excinfo.value) and "abc123" not in str(excinfo.value)


def test_record_audit_refuses_known_secret_values(alice: Tenant, settings) -> None:  # type: ignore[no-untyped-def]
    register_secret("hubspot-client-secret-value-123")
    with pytest.raises(SecretInAuditPayload):
        record_audit("x", actor=None, payload={"detail": "used hubspot-client-secret-value-123 today"})
    with pytest.raises(SecretInAuditPayload):
        record_audit("x", actor=None, payload={"detail": settings.SECRET_KEY})


def test_actor_labels() -> None:
    assert actor_label(None) == "system"
    assert actor_label("system:purge_retention") == "system:purge_retention"


@pytest.mark.parametrize(
    "text", ["Token Holdings", "zapier token production", "Bearer Bros Ltd", "body shop"]
)
def test_ordinary_names_are_not_mistaken_for_secrets(alice: Tenant, text: str) -> None:
    event = record_audit("workspace_created", actor=None, workspace=alice.workspace, payload={"name": text})
    assert event.payload_json == {"name": text}


def test_signup_with_token_in_the_company_name_works(db: None) -> None:
    from django.test import Client

    from tests.conftest import PASSWORD

    response = Client().post(
        "/signup/", {"email": "t@holdings.example", "workspace_name": "Token Holdings", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert AuditEvent.objects.filter(event="workspace_created", payload_json__name="Token Holdings").exists()
