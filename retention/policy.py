"""A workspace's retention policy: defaults, normalization of what a user typed, and the one
audited action that saves it (the settings page and the admin both call it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from conduit.audit import actor_label, record_audit
from conduit.models import Workspace
from conduit.services import ConduitError
from conduit.tenancy import workspace_scope
from retention.models import MAX_DAYS, MIN_DAYS, RetentionPolicy

__all__ = ["MAX_DAYS", "MIN_DAYS"]

# field -> (setting holding its default, what the user keeps)
DAY_FIELDS: dict[str, tuple[str, str]] = {
    "message_days": ("CONDUIT_RETENTION_MESSAGE_DAYS", "Keep message bodies"),
    "attachment_days": ("CONDUIT_RETENTION_ATTACHMENT_DAYS", "Keep attachments"),
    "sync_log_days": ("CONDUIT_RETENTION_SYNC_LOG_DAYS", "Keep CRM sync logs"),
}
TRUE_WORDS = ("on", "true", "1", "yes")
FALSE_WORDS = ("", "off", "false", "0", "no")


def days_message(field: str) -> str:
    return f"{DAY_FIELDS[field][1]} for a whole number of days between {MIN_DAYS} and {MAX_DAYS}."


@dataclass(frozen=True)
class PolicyValues:
    purge_enabled: bool
    message_days: int
    attachment_days: int
    sync_log_days: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def defaults() -> PolicyValues:
    """Purge off; the day limits from settings (CONDUIT_RETENTION_*_DAYS)."""
    return PolicyValues(
        purge_enabled=False, **{field: getattr(settings, name) for field, (name, _) in DAY_FIELDS.items()}
    )


def values_of(policy: RetentionPolicy) -> PolicyValues:
    return PolicyValues(
        purge_enabled=policy.purge_enabled,
        message_days=policy.message_days,
        attachment_days=policy.attachment_days,
        sync_log_days=policy.sync_log_days,
    )


def policy_for(workspace: Workspace) -> RetentionPolicy:
    """The saved policy, or an unsaved one with the defaults (call inside the workspace's scope)."""
    saved = RetentionPolicy.objects.filter(workspace=workspace).first()
    return saved or RetentionPolicy(workspace=workspace, **defaults().as_dict())


class PolicyInvalid(ConduitError):
    """Some fields are wrong; `errors` maps each to one sentence. Nothing was saved."""

    error_code = "retention_policy_invalid"

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("The retention policy was not saved: " + " ".join(errors.values()))
        self.errors = errors


def normalize_days(field: str, value: Any) -> int:
    """Blank means the default; otherwise a whole number of days in range (ValueError if not)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return int(getattr(settings, DAY_FIELDS[field][0]))
    if isinstance(value, bool):
        raise ValueError(days_message(field))
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(days_message(field)) from None
    if not number.is_finite() or number != number.to_integral_value():
        raise ValueError(days_message(field))
    if not MIN_DAYS <= number <= MAX_DAYS:
        raise ValueError(days_message(field))
    return int(number)


def normalize_enabled(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    word = str(value).strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise ValueError("Turn the purge on or off.")


def normalize(data: Mapping[str, Any]) -> PolicyValues:
    """What a form, the admin or a script sent -> policy values, or PolicyInvalid naming each
    wrong field. Missing or blank day fields take the defaults; a missing switch means off."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    try:
        values["purge_enabled"] = normalize_enabled(data.get("purge_enabled"))
    except ValueError as exc:
        errors["purge_enabled"] = str(exc)
    for field in DAY_FIELDS:
        try:
            values[field] = normalize_days(field, data.get(field))
        except ValueError as exc:
            errors[field] = str(exc)
    if errors:
        raise PolicyInvalid(errors)
    return PolicyValues(**values)


@dataclass(frozen=True)
class PolicyUpdate:
    policy: RetentionPolicy
    changed: list[str]


def do_update_policy(
    workspace: Workspace, data: Mapping[str, Any], *, actor: AbstractBaseUser | str | None
) -> PolicyUpdate:
    """Validate, then save and audit `retention_policy_updated` (before/after values) in one
    transaction. Nothing is written when a field is wrong or nothing changed."""
    after = normalize(data)
    with workspace_scope(workspace):
        policy, created = RetentionPolicy.objects.get_or_create(workspace=workspace, defaults=after.as_dict())
        policy = RetentionPolicy.objects.select_for_update().get(pk=policy.pk)
        before = None if created else values_of(policy)
        changed = [k for k, v in after.as_dict().items() if before is None or getattr(before, k) != v]
        if not changed:
            return PolicyUpdate(policy, [])
        for field, value in after.as_dict().items():
            setattr(policy, field, value)
        policy.updated_at = timezone.now()
        policy.updated_by = actor_label(actor)
        policy.save()
        record_audit(
            "retention_policy_updated",
            actor=actor,
            workspace=workspace,
            target=policy,
            payload={
                "before": before.as_dict() if before else None,
                "after": after.as_dict(),
                "changed": changed,
            },
        )
    return PolicyUpdate(policy, changed)
