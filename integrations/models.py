"""Integrations data: CRM connections and the log of every provider call.

crm_connections carries the binding names of Plan 007; the OAuth issue fills in the flows that
create and change them. crm_sync_logs has one row per provider operation (see providers/base.py).
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from conduit.crypto import EncryptedTextField
from conduit.models import Profile, Workspace

CRM_CHOICES = [
    ("hubspot", "HubSpot"),
    ("salesforce", "Salesforce"),
    ("zoho", "Zoho CRM"),
    ("odoo", "Odoo"),
    ("greenhouse", "Greenhouse"),
    ("lever", "Lever"),
    ("workday", "Workday"),
]

# A connection in `error` for one of these reasons has lost its grant: only the customer's
# reconnect (or new credentials) brings it back. Runbook 001 calls that state `needs_reauth`; the
# `integrations` SQL view (migration 0014) spells the same list.
REAUTH_REASONS = (
    "access_token_rejected",
    "credentials_invalid",
    "missing_scope",
    "refresh_token_missing",
    "refresh_token_revoked",
)
NEEDS_REAUTH = "needs_reauth"


class CrmConnection(models.Model):
    class Status(models.TextChoices):
        PENDING_CLAIM = "pending_claim", "Pending claim"
        CONNECTED = "connected", "Connected"
        ERROR = "error", "Error"
        DISCONNECTED = "disconnected", "Disconnected"

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, null=True, blank=True, related_name="crm_connections"
    )
    crm = models.CharField(max_length=20, choices=CRM_CHOICES)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING_CLAIM)
    last_error = models.CharField(max_length=100, blank=True)
    external_account_key = models.CharField(max_length=100, blank=True)
    external_account_json = models.JSONField(default=dict, blank=True)
    access_token = EncryptedTextField(blank=True)
    refresh_token = EncryptedTextField(blank=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    granted_scopes = models.JSONField(default=list, blank=True)
    dry_run = models.BooleanField(default=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "crm_connections"
        verbose_name = "CRM connection"
        verbose_name_plural = "CRM connections"
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "crm"],
                condition=~Q(status="disconnected") & Q(workspace__isnull=False),
                name="crm_connection_one_live_per_workspace",
            )
        ]

    def __str__(self) -> str:
        return f"{self.crm} {self.external_account_key or '?'} ({self.status})"

    @property
    def runbook_status(self) -> str:
        """The status runbook 001 reads: `needs_reauth` for a lost grant, else the binding one."""
        if self.status == self.Status.ERROR and self.last_error in REAUTH_REASONS:
            return NEEDS_REAUTH
        return str(self.status)

    @property
    def environment(self) -> str:
        return str(self.external_account_json.get("environment") or "login")

    @property
    def account_label(self) -> str:
        """The account as a person recognises it: the HubSpot portal's domain, the Salesforce or
        Zoho org's name, the Greenhouse organization's name, and its id; a connection made before
        Conduit stored the org's name shows its instance's host (acme.my.salesforce.com), never
        the raw URL."""
        details = self.external_account_json
        name = str(
            details.get("hub_domain") or details.get("org_name") or details.get("organization_name") or ""
        )
        name = name or urlsplit(str(details.get("instance_url") or "")).netloc
        key = self.external_account_key
        return f"{name} ({key})" if name and key else name or key


def new_install_id() -> str:
    return secrets.token_urlsafe(24)


class OAuthState(models.Model):
    """One authorization attempt. Only the state's sha256 is stored; the state is single-use."""

    state_hash = models.CharField(max_length=64, unique=True)
    crm = models.CharField(max_length=20, choices=CRM_CHOICES)
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, null=True, blank=True, related_name="oauth_states"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True)
    # "login" / "test"; Zoho: the accounts server its callback named (the account's data centre)
    environment = models.CharField(max_length=200, default="login")
    code_verifier = EncryptedTextField(blank=True)
    return_path = models.CharField(max_length=500, blank=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    # A reconnect to a different external account waits here for the admin's confirmation.
    pending_account_json = models.JSONField(default=dict, blank=True)
    pending_tokens = EncryptedTextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "oauth_states"
        verbose_name = "OAuth state"
        verbose_name_plural = "OAuth states"
        indexes = [models.Index(fields=["expires_at"], name="oauth_state_expires")]

    def __str__(self) -> str:
        return f"{self.crm} state for {self.workspace or 'install'}"


class PendingInstall(models.Model):
    """A marketplace install waiting for someone to claim it into a workspace (Plan 007)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        CLAIMED = "claimed", "Claimed"
        EXPIRED = "expired", "Expired"

    install_id = models.CharField(max_length=64, unique=True, default=new_install_id)
    crm = models.CharField(max_length=20, choices=CRM_CHOICES)
    external_account_key = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    expires_at = models.DateTimeField()
    metadata = models.JSONField(default=dict, blank=True)
    connection = models.ForeignKey(
        CrmConnection, on_delete=models.SET_NULL, null=True, blank=True, related_name="pending_installs"
    )
    claimed_workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, null=True, blank=True, related_name="claimed_installs"
    )
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "pending_installs"
        verbose_name = "pending install"
        verbose_name_plural = "pending installs"
        constraints = [
            models.UniqueConstraint(
                fields=["crm", "external_account_key"],
                condition=Q(status="pending"),
                name="pending_install_unique_while_pending",
            )
        ]
        indexes = [
            models.Index(fields=["expires_at"], condition=Q(status="pending"), name="pending_install_due"),
        ]

    def __str__(self) -> str:
        return f"{self.crm} install {self.external_account_key} ({self.status})"


class SyncLog(models.Model):
    """One provider operation: what, how it went, how long; never a token or a body."""

    class Status(models.TextChoices):
        SUCCESS = "SUCCESS", "Success"
        FAILED = "FAILED", "Failed"

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, null=True, blank=True, related_name="sync_logs"
    )
    connection = models.ForeignKey(
        CrmConnection, on_delete=models.SET_NULL, null=True, blank=True, related_name="sync_logs"
    )
    provider = models.CharField(max_length=20, choices=CRM_CHOICES)
    operation = models.CharField(max_length=50)
    status = models.CharField(max_length=10, choices=Status.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=100, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    summary = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "crm_sync_logs"
        verbose_name = "sync log entry"
        verbose_name_plural = "sync logs"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["workspace", "provider", "created_at"], name="sync_ws_provider_created"),
            # The runbook's `status=FAILED` queries touch only failed rows.
            models.Index(
                fields=["provider", "created_at"], condition=Q(status="FAILED"), name="sync_failed_created"
            ),
            models.Index(fields=["created_at"], name="sync_created"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.operation} {self.status}"


class SyncPause(models.Model):
    """A kill switch: while a row exists, writes in its scope stay queued and burn no attempts.

    Scopes nest: global > provider > workspace > connection. Resuming deletes the row (audited)."""

    class Scope(models.TextChoices):
        GLOBAL = "global", "Everything"
        PROVIDER = "provider", "One CRM"
        WORKSPACE = "workspace", "One workspace"
        CONNECTION = "connection", "One connection"

    scope = models.CharField(max_length=20, choices=Scope.choices)
    provider = models.CharField(max_length=20, choices=CRM_CHOICES, blank=True)
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, null=True, blank=True, related_name="sync_pauses"
    )
    connection = models.ForeignKey(
        CrmConnection, on_delete=models.CASCADE, null=True, blank=True, related_name="sync_pauses"
    )
    reason = models.CharField(max_length=500)
    actor = models.CharField(max_length=200)
    paused_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "crm_sync_pauses"
        verbose_name = "sync pause"
        verbose_name_plural = "sync pauses"
        constraints = [
            models.UniqueConstraint(
                fields=["scope"],
                condition=Q(scope="global"),
                name="pause_one_global",
                violation_error_message="Everything is already paused.",
            ),
            models.UniqueConstraint(
                fields=["provider"],
                condition=Q(scope="provider"),
                name="pause_one_per_provider",
                violation_error_message="This provider is already paused.",
            ),
            models.UniqueConstraint(
                fields=["workspace"],
                condition=Q(scope="workspace"),
                name="pause_one_per_workspace",
                violation_error_message="This workspace is already paused.",
            ),
            models.UniqueConstraint(
                fields=["connection"],
                condition=Q(scope="connection"),
                name="pause_one_per_connection",
                violation_error_message="This connection is already paused.",
            ),
        ]

    def __str__(self) -> str:
        what = {
            "global": "all CRM sync",
            "provider": self.provider,
            "workspace": f"workspace {self.workspace_id}",
            "connection": f"connection {self.connection_id}",
        }[self.scope]
        return f"paused: {what}"


class ConnectionHealth(models.Model):
    """The latest verdict on one workspace's CRM connection (one row per workspace + CRM).

    Written by the hourly check (integrations/health/checks.py) and by every change that decides
    the verdict on its own: connect / reconnect (ok), a revoked grant (error)."""

    class Status(models.TextChoices):
        OK = "ok", "OK"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="connection_health")
    crm = models.CharField(max_length=20, choices=CRM_CHOICES)
    connection = models.ForeignKey(
        CrmConnection, on_delete=models.SET_NULL, null=True, blank=True, related_name="health"
    )
    status = models.CharField(max_length=10, choices=Status.choices)
    # A stable code for the verdict: ok, rate_limited, transient, auth_failed, missing_scope, ...
    reason = models.CharField(max_length=100, blank=True)
    last_checked_at = models.DateTimeField()
    last_ok_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    consecutive_auth_failures = models.PositiveIntegerField(default=0)
    # Refusals closer together than CONDUIT_HEALTH_AUTH_RUN_SPACING_SECONDS count once: a run is
    # sustained over time, not two presses of "check now" during one short outage.
    last_auth_failure_at = models.DateTimeField(null=True, blank=True)
    # error code, HTTP status, latency, granted / required / missing scopes, token expiry,
    # rate-limit headroom; never a token (see health.details_for)
    details_json = models.JSONField(default=dict, blank=True)
    # When someone last pressed "check now" (the button is rate-limited per connection).
    manual_check_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "connection_health"
        verbose_name = "connection health"
        verbose_name_plural = "connection health"
        constraints = [
            models.UniqueConstraint(fields=["workspace", "crm"], name="connection_health_one_per_crm")
        ]
        indexes = [models.Index(fields=["crm", "status"], name="connection_health_crm_status")]

    def __str__(self) -> str:
        return f"{self.crm} health for workspace {self.workspace_id}: {self.status}"


class IntegrationSetting(models.Model):
    """A workspace's on / off switch for one CRM (runbook 001 §1, "Disable integration").

    Kept apart from crm_connections so that it outlives a disconnect and reconnect. With
    enabled=false nothing runs for that workspace and CRM: no writes are sent, no health
    check and no incremental pull. No row means enabled."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="integration_settings")
    provider = models.CharField(max_length=20, choices=CRM_CHOICES)
    enabled = models.BooleanField(default=True)
    reason = models.CharField(max_length=500, blank=True)
    changed_by = models.CharField(max_length=200, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "workspace_integrations"
        verbose_name = "integration switch"
        verbose_name_plural = "integration switches"
        constraints = [
            models.UniqueConstraint(fields=["workspace", "provider"], name="workspace_integration_unique")
        ]

    def __str__(self) -> str:
        return f"{self.provider} for workspace {self.workspace_id}: {'on' if self.enabled else 'off'}"


class WebhookEvent(models.Model):
    """One provider webhook event, stored on receipt and processed by a task (runbook 003).

    A HubSpot delivery carries a batch of events; each becomes one row, unique per provider and
    event id, so a redelivered event is stored once and processed once."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"
        DUPLICATE = "duplicate", "Duplicate"

    provider = models.CharField(max_length=20, choices=CRM_CHOICES)
    event_id = models.CharField(max_length=100)
    event_type = models.CharField(max_length=100, blank=True, help_text="e.g. contact.propertyChange")
    external_account_key = models.CharField(max_length=100, blank=True, help_text="HubSpot portal id")
    object_id = models.CharField(max_length=100, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    # the first workspace whose connection matches the account (null: no connection knows it)
    workspace = models.ForeignKey(
        Workspace, on_delete=models.SET_NULL, null=True, blank=True, related_name="webhook_events"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(default=0)
    deliveries = models.PositiveIntegerField(default=1, help_text="times the provider sent this event")
    payload = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=500, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "webhook_events"
        verbose_name = "webhook event"
        verbose_name_plural = "webhook events"
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="webhook_event_unique_per_provider")
        ]
        indexes = [
            models.Index(fields=["workspace", "received_at"], name="webhook_ws_received"),
            models.Index(fields=["status", "received_at"], name="webhook_status_received"),
            # the duplicate check (integrations/webhooks/processing.py is_duplicate) per event
            models.Index(
                fields=["provider", "external_account_key", "object_id", "occurred_at"],
                name="webhook_same_change",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} event {self.event_id} ({self.status})"


class SyncCursor(models.Model):
    """Where the incremental pull of one object of one connection has read up to (runbook 003,
    "Reset Sync Cursors"): the next pull asks for records changed since since_ts."""

    class Object(models.TextChoices):
        CONTACT = "contact", "Contacts"
        DEAL = "deal", "Deals / opportunities"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="sync_cursors")
    connection = models.ForeignKey(CrmConnection, on_delete=models.CASCADE, related_name="sync_cursors")
    provider = models.CharField(max_length=20, choices=CRM_CHOICES)
    object = models.CharField(max_length=20, choices=Object.choices)
    since_ts = models.DateTimeField()
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=20, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    records_seen = models.PositiveIntegerField(default=0, help_text="records read by the last run")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "crm_sync_cursors"
        verbose_name = "sync cursor"
        verbose_name_plural = "sync cursors"
        constraints = [models.UniqueConstraint(fields=["connection", "object"], name="sync_cursor_unique")]
        indexes = [models.Index(fields=["provider", "object"], name="sync_cursor_provider_object")]

    def __str__(self) -> str:
        return f"{self.provider} {self.object} cursor at {self.since_ts:%Y-%m-%d %H:%M:%S}"


CALENDAR_PROVIDER_CHOICES = [("google", "Google Calendar"), ("microsoft", "Microsoft 365")]


class ExternalCalendarConnection(models.Model):
    """One member's own calendar (runbook 004): the grant, the incremental-sync cursor, the push
    channel, and the job runner's state (sync_needed, backoff_until, error_count).

    `provider_id` (the column runbook 004 queries) is the member's profiles.id."""

    class Status(models.TextChoices):
        CONNECTED = "connected", "Connected"
        ERROR = "error", "Error"
        DISCONNECTED = "disconnected", "Disconnected"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="calendar_connections")
    profile = models.ForeignKey(
        Profile, on_delete=models.CASCADE, db_column="provider_id", related_name="calendar_connections"
    )
    provider = models.CharField(max_length=20, choices=CALENDAR_PROVIDER_CHOICES)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CONNECTED)
    sync_enabled = models.BooleanField(default=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    error_count = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, null=True)
    backoff_until = models.DateTimeField(null=True, blank=True)
    token_expiry = models.DateTimeField(null=True, blank=True)
    # Google's nextSyncToken or Graph's @odata.deltaLink (kept as-is); null: the next sync is full.
    sync_cursor = models.TextField(null=True, blank=True)
    sync_needed = models.BooleanField(default=True)
    access_token = EncryptedTextField(blank=True)
    refresh_token = EncryptedTextField(blank=True)
    granted_scopes = models.JSONField(default=list, blank=True)
    account_email = models.CharField(max_length=320, blank=True)
    # Google: the events.watch channel id and its resourceId; Graph: the subscription id (resource_id blank).
    channel_id = models.CharField(max_length=200, blank=True)
    channel_resource_id = models.CharField(max_length=200, blank=True)
    # The channel token (Google) / clientState (Graph) a notification must echo.
    channel_secret = EncryptedTextField(blank=True)
    channel_expires_at = models.DateTimeField(null=True, blank=True)
    full_sync_count = models.PositiveIntegerField(
        default=0, help_text="full syncs so far (first one included)"
    )
    connected_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "external_calendar_connections"
        verbose_name = "calendar connection"
        verbose_name_plural = "calendar connections"
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "profile", "provider"],
                condition=~Q(status="disconnected"),
                name="calendar_connection_one_live",
            )
        ]
        indexes = [
            # the job runner's due set: pushed (sync_needed) or stale, among enabled connections
            models.Index(
                fields=["last_synced_at"],
                condition=Q(sync_enabled=True, status="connected"),
                name="calendar_conn_stale",
            ),
            models.Index(
                fields=["backoff_until"],
                condition=Q(sync_enabled=True, status="connected", sync_needed=True),
                name="calendar_conn_pushed",
            ),
            models.Index(
                fields=["channel_expires_at"], condition=~Q(channel_id=""), name="calendar_conn_channel"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} calendar of {self.account_email or self.profile_id} ({self.status})"


class ExternalCalendarEvent(models.Model):
    """One event of a member's calendar, as last read. sync_status: CREATED when stored or
    changed (waiting to be linked and planned), PROCESSED once done, FAILED with last_error
    (runbook 004's "Clear failed events" puts them back to CREATED)."""

    class SyncStatus(models.TextChoices):
        CREATED = "CREATED", "Waiting to be processed"
        PROCESSED = "PROCESSED", "Processed"
        FAILED = "FAILED", "Failed"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="calendar_events")
    profile = models.ForeignKey(
        Profile, on_delete=models.CASCADE, db_column="provider_id", related_name="calendar_events"
    )
    connection = models.ForeignKey(
        ExternalCalendarConnection, on_delete=models.CASCADE, related_name="events"
    )
    external_id = models.CharField(max_length=255)
    ical_uid = models.CharField(max_length=255, blank=True)
    title = models.CharField(max_length=500, blank=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    all_day = models.BooleanField(default=False)
    organizer = models.CharField(max_length=320, blank=True)
    attendees = models.JSONField(default=list, blank=True, help_text="lower-cased attendee emails")
    is_private = models.BooleanField(default=False)
    cancelled = models.BooleanField(default=False)
    # the workspace's customers among the attendees (external addresses), set when processed
    customer_emails = models.JSONField(default=list, blank=True)
    sync_status = models.CharField(max_length=20, choices=SyncStatus.choices, default=SyncStatus.CREATED)
    last_error = models.CharField(max_length=500, blank=True, null=True)
    provider_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "external_calendar_events"
        verbose_name = "calendar event"
        verbose_name_plural = "calendar events"
        constraints = [
            models.UniqueConstraint(fields=["connection", "external_id"], name="calendar_event_unique")
        ]
        indexes = [
            models.Index(fields=["connection", "sync_status"], name="calendar_event_status"),
            models.Index(fields=["workspace", "starts_at"], name="calendar_event_ws_start"),
        ]

    def __str__(self) -> str:
        return f"{'(private)' if self.is_private else self.title or '(no title)'} at {self.starts_at}"
