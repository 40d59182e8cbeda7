"""Plain values for the retention settings cards (templates run no queries)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone
from django.utils.timesince import timesince
from django_celery_beat.models import PeriodicTask

from conduit.models import AuditEvent, Workspace
from retention.models import RetentionPolicy
from retention.policy import PolicyValues, values_of

SCHEDULE_NAME = "purge retention"  # the beat entry of retention/migrations/0002
RECEIPT_EVENTS = ("retention_purge_completed", "retention_purge_failed")
STEP_LABELS = {
    "count": "while counting what to remove",
    "messages": "while removing message bodies",
    "attachments": "while deleting attachments",
    "sync_logs": "while pruning sync logs",
}


def schedule_label() -> str:
    """When the daily purge runs, as operators set it in the beat schedule."""
    entry = PeriodicTask.objects.filter(name=SCHEDULE_NAME).select_related("crontab").first()
    if entry is None or not entry.enabled:
        return "The daily purge is paused by Conduit's operators."
    cron = entry.crontab
    if cron is not None and cron.minute.isdigit() and cron.hour.isdigit():
        return f"The purge runs daily at {int(cron.hour):02d}:{int(cron.minute):02d} {cron.timezone}."
    return "The purge runs daily."


def ago(when: datetime) -> str:
    """'5 hours ago', or 'just now' within a minute."""
    if timezone.now() - when < timedelta(minutes=1):
        return "just now"
    return f"{timesince(when)} ago"


def actor_name(label: str) -> str:
    """'user:7' -> that user's email; 'system:...' -> 'Conduit'; anything else as is."""
    kind, _, ident = label.partition(":")
    if kind == "user" and ident.isdigit():
        user = User.objects.filter(pk=int(ident)).only("email", "username").first()
        return (user.email or user.username) if user else "a former user"
    if kind == "system":
        return "Conduit"
    return label or "Conduit"


def last_purge(workspace: Workspace) -> dict[str, Any] | None:
    """The latest purge receipt of the workspace (completed or failed), or None."""
    event = (
        AuditEvent.objects.filter(workspace=workspace, event__in=RECEIPT_EVENTS)
        .order_by("-created_at", "-id")
        .first()
    )
    if event is None:
        return None
    payload = event.payload_json or {}
    return {
        "at": event.created_at,
        "ago": ago(event.created_at),
        "failed": event.event == "retention_purge_failed",
        "messages_redacted": payload.get("messages_redacted", 0),
        "attachments_removed": payload.get("attachments_removed", 0),
        "attachment_bytes_freed": payload.get("attachment_bytes_freed", 0),
        "files_missing": payload.get("files_missing", 0),
        "sync_logs_deleted": payload.get("sync_logs_deleted", 0),
        "duration_ms": payload.get("duration_ms", 0),
        "step": STEP_LABELS.get(payload.get("step", ""), ""),
        "error_class": payload.get("error_class", ""),
        "policy": payload.get("policy", {}),
    }


def policy_card(workspace: Workspace, policy: RetentionPolicy) -> dict[str, Any]:
    values: PolicyValues = values_of(policy)
    return {
        "saved": policy.pk is not None,
        "values": values,
        "updated_at": policy.updated_at if policy.pk else None,
        "updated_ago": ago(policy.updated_at) if policy.pk else "",
        "updated_by": actor_name(policy.updated_by) if policy.pk else "",
        "schedule": schedule_label(),
        "last_purge": last_purge(workspace),
    }
