"""The one way to write audit_events. Payloads that look secret are refused, not cleaned:
an audit row lives for years, so a caller that tries to store a token must be fixed."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from conduit.models import AuditEvent, Workspace
from conduit.secrets_scan import looks_secret_key, looks_secret_value


class SecretInAuditPayload(ValueError):
    """Raised when an audit payload has a secret-looking key or value (never echoes the value)."""


def _secret_paths(payload: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(payload, dict):
        for key, value in payload.items():
            here = f"{path}.{key}" if path else str(key)
            if looks_secret_key(str(key)):
                found.append(here)
            found.extend(_secret_paths(value, here))
    elif isinstance(payload, list | tuple):
        for index, value in enumerate(payload):
            found.extend(_secret_paths(value, f"{path}[{index}]"))
    elif isinstance(payload, str) and looks_secret_value(payload):
        found.append(path or "<value>")
    return found


def actor_label(actor: AbstractBaseUser | str | None) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return f"user:{actor.pk}"


def record_audit(
    event: str,
    *,
    actor: AbstractBaseUser | str | None,
    workspace: Workspace | None = None,
    target: Any = None,
    payload: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one audit row in the caller's transaction. `actor` is a user or 'system:<job>'."""
    payload = payload or {}
    if bad := _secret_paths(payload):
        raise SecretInAuditPayload(f"audit event {event!r} refused: secret-looking fields {bad}")
    return AuditEvent.objects.create(
        event=event,
        workspace=workspace,
        actor=actor_label(actor),
        target_type=target._meta.model_name if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        payload_json=payload,
    )
