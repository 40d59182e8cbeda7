"""Conduit's shared core: workspaces, people, stored email, audit trail, API tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone


class Workspace(models.Model):
    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "workspaces"
        verbose_name = "workspace"
        verbose_name_plural = "workspaces"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    email = models.EmailField(unique=True)
    display_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "profiles"
        verbose_name = "profile"
        verbose_name_plural = "profiles"

    def __str__(self) -> str:
        return self.email


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "memberships"
        verbose_name = "membership"
        verbose_name_plural = "memberships"
        constraints = [models.UniqueConstraint(fields=["workspace", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace} as {self.role}"

    @property
    def administers(self) -> bool:
        return self.role in (self.Role.OWNER, self.Role.ADMIN)


class Message(models.Model):
    """The canonical copy of one customer email."""

    # No index of its own: the unique constraint and the indexes below all lead with workspace_id,
    # and every index costs each insert and each purge update (redaction is not a HOT update).
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    message_id = models.CharField(max_length=998)
    subject = models.TextField(blank=True)
    from_address = models.TextField(blank=True)
    to_addresses = models.JSONField(default=list, blank=True)
    cc_addresses = models.JSONField(default=list, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    body_text = models.TextField(null=True, blank=True)
    body_html = models.TextField(null=True, blank=True)
    raw = models.BinaryField(null=True, blank=True)
    size_bytes = models.PositiveIntegerField(default=0)
    is_redacted = models.BooleanField(default=False)
    redacted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "messages"
        verbose_name = "message"
        verbose_name_plural = "messages"
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "message_id"], name="message_unique_per_workspace")
        ]
        indexes = [
            models.Index(fields=["workspace", "received_at"], name="messages_ws_received"),
            # The retention purge walks a workspace's unredacted messages oldest first (keyset on
            # received_at, id); redacted rows leave this index, so its size follows the work left.
            models.Index(
                fields=["workspace", "received_at", "id"],
                condition=models.Q(is_redacted=False),
                name="messages_unredacted",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject or '(no subject)'} <{self.message_id}>"


def attachment_path(instance: Attachment, filename: str) -> str:
    from django.core.files.storage import default_storage

    safe = default_storage.get_valid_name(filename.rsplit("/", 1)[-1]) or "attachment"
    stem, dot, ext = safe.rpartition(".")
    if len(safe.encode()) > 100:  # file systems cap names at 255 bytes; the row keeps the full name
        ext = ext if dot and len(ext) <= 10 else ""
        stem = (stem if ext else safe).encode()[:90].decode(errors="ignore")
        safe = f"{stem}.{ext}" if ext else stem
    return f"attachments/{instance.workspace_id}/{secrets.token_hex(8)}/{safe}"


class Attachment(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="attachments")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField(default=0)
    file = models.FileField(upload_to=attachment_path, max_length=500, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "attachments"
        verbose_name = "attachment"
        verbose_name_plural = "attachments"
        indexes = [
            # The retention purge looks only at attachments whose file is still stored.
            models.Index(
                fields=["workspace", "message"],
                condition=models.Q(removed_at__isnull=True),
                name="attachments_present",
            )
        ]

    def __str__(self) -> str:
        return self.filename


class AuditEvent(models.Model):
    """One state change an operator may ask about; written only through conduit.audit."""

    workspace = models.ForeignKey(
        Workspace, on_delete=models.SET_NULL, null=True, blank=True, related_name="audit_events"
    )
    actor = models.CharField(max_length=200)
    event = models.CharField(max_length=100)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    payload_json = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "audit_events"
        verbose_name = "audit event"
        verbose_name_plural = "audit events"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["workspace", "created_at"], name="audit_ws_created"),
            models.Index(fields=["event", "created_at"], name="audit_event_created"),
        ]

    def __str__(self) -> str:
        return f"{self.event} by {self.actor}"


TOKEN_PREFIX = "cdt_"  # noqa: S105 - a prefix, not a secret


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A workspace API token; only its SHA-256 is stored, the raw value is shown once."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "api_tokens"
        verbose_name = "API token"
        verbose_name_plural = "API tokens"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


STAFF_TOKEN_PREFIX = "cds_"  # noqa: S105 - a prefix, not a secret


class StaffToken(models.Model):
    """An operator's API token for /api/v1/admin/* and the system-wide reads; only its SHA-256
    is stored. It acts as its staff user, and stops working when that user is no longer staff."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "staff_api_tokens"
        verbose_name = "operator token"
        verbose_name_plural = "operator tokens"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Heartbeat(models.Model):
    """Last time a periodic process proved it is alive (beat writes `beat`)."""

    name = models.CharField(max_length=50, unique=True)
    beat_at = models.DateTimeField()

    class Meta:
        db_table = "heartbeats"
        verbose_name = "heartbeat"
        verbose_name_plural = "heartbeats"

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"


class PeriodicRun(models.Model):
    """One periodic job sent for one slot (conduit/beat.py): the unique pair is what makes a
    second beat's send of the same slot impossible, however many beats run."""

    job = models.CharField(max_length=200)
    slot = models.BigIntegerField(help_text="the slot's start, in seconds since the epoch")
    sent_at = models.DateTimeField()
    sent_by = models.CharField(max_length=100, help_text="host and pid of the beat that sent it")

    class Meta:
        db_table = "periodic_runs"
        verbose_name = "beat job run"
        verbose_name_plural = "beat job runs"
        constraints = [models.UniqueConstraint(fields=["job", "slot"], name="periodic_run_once_per_slot")]
        indexes = [models.Index(fields=["sent_at"], name="periodic_runs_sent_at")]

    def __str__(self) -> str:
        return f"{self.job} @ {self.slot}"


INVITATION_TOKEN_PREFIX = "cdi_"  # noqa: S105 - a prefix, not a secret


class Invitation(models.Model):
    """An invitation to join a workspace with a role: a single-use link that expires. Only the
    SHA-256 of the link's token is stored; the link is shown once, to the person who invited."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(max_length=150)  # the account it is for; also the username
    role = models.CharField(max_length=10, choices=Membership.Role.choices, default=Membership.Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "invitations"
        verbose_name = "invitation"
        verbose_name_plural = "invitations"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["workspace", "email"], name="invitations_ws_email")]

    def __str__(self) -> str:
        return f"{self.email} to {self.workspace_id} as {self.role}"

    def status_at(self, now: datetime) -> str:
        if self.accepted_at is not None:
            return self.Status.ACCEPTED
        if self.revoked_at is not None:
            return self.Status.REVOKED
        if self.expires_at <= now:
            return self.Status.EXPIRED
        return self.Status.PENDING
