"""The write ledger (crm_write_log), the contact -> deal cache the planner uses, and each
workspace's curation rules.

A crm_write_log row is one curated write to one CRM contact. Its life:

    dry_run ──(go live, send)──> planned ──claim──> sending ──> succeeded
       │                           ▲   ▲               │
       └──(go live, don't send)──> skipped             ├──> failed (next_retry_at) ──┘
                                                       └──> failed + permanent_failure

`dry_run` rows are never due, so the runbook's queue query
(`status in ('failed','planned') and permanent_failure=false`) does not count them.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from conduit.models import Message, Workspace
from integrations.models import CRM_CHOICES, CrmConnection, ExternalCalendarEvent


class WriteOperation(models.TextChoices):
    NOTE = "create_note", "Note"
    TASK = "create_task", "Task"
    MEETING = "create_meeting", "Meeting"


# What an email becomes (a workspace's write policy chooses per direction); meetings come from calendars.
EMAIL_OPERATION_CHOICES = [(WriteOperation.NOTE.value, "Note"), (WriteOperation.TASK.value, "Task")]


class CrmWriteLog(models.Model):
    class Status(models.TextChoices):
        DRY_RUN = "dry_run", "Dry run (not sent)"
        PLANNED = "planned", "Planned"
        SENDING = "sending", "Sending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="crm_writes")
    connection = models.ForeignKey(CrmConnection, on_delete=models.CASCADE, related_name="writes")
    message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="crm_writes"
    )
    # a meeting write (create_meeting) comes from a member's calendar event instead of a message
    calendar_event = models.ForeignKey(
        ExternalCalendarEvent, on_delete=models.SET_NULL, null=True, blank=True, related_name="crm_writes"
    )
    provider = models.CharField(max_length=20, choices=CRM_CHOICES)
    operation = models.CharField(max_length=20, choices=WriteOperation.choices)
    target = models.CharField(max_length=320, help_text="the participant's email the write is about")
    idempotency_key = models.CharField(max_length=64, unique=True)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PLANNED)
    retry_count = models.PositiveIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    permanent_failure = models.BooleanField(default=False)
    last_error_code = models.CharField(max_length=100, blank=True)
    last_error_message = models.CharField(max_length=500, blank=True)
    external_id = models.CharField(max_length=100, blank=True)
    outcome_unknown = models.BooleanField(
        default=False, help_text="a call was sent and its answer never read: look it up before resending"
    )
    lease_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "crm_write_log"
        verbose_name = "CRM write"
        verbose_name_plural = "CRM writes"
        ordering = ["-created_at", "-id"]
        indexes = [
            # the reconcile queue: only due-able rows are in it, ordered by when they are due
            models.Index(
                fields=["next_retry_at"],
                condition=Q(status__in=["failed", "planned"], permanent_failure=False),
                name="crm_write_due",
            ),
            models.Index(fields=["lease_expires_at"], condition=Q(status="sending"), name="crm_write_leased"),
            models.Index(fields=["connection", "status"], name="crm_write_conn_status"),
            models.Index(fields=["workspace", "created_at"], name="crm_write_ws_created"),
            models.Index(fields=["message"], name="crm_write_message"),
            models.Index(fields=["calendar_event"], name="crm_write_calendar_event"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.operation} for {self.target} ({self.status})"

    @property
    def marker(self) -> str:
        """The token carried into the CRM record, so an unknown outcome can be looked up."""
        return "cdw" + self.idempotency_key[:24]


class DealMapping(models.Model):
    """Which CRM contact an email is, and its open deal / opportunity, per connection.

    Filled from the provider (refreshed after CONDUIT_DEAL_MAPPING_TTL_HOURS); an operator's
    override (source=operator) is never replaced by a lookup."""

    class Source(models.TextChoices):
        PROVIDER = "provider", "Looked up at the CRM"
        OPERATOR = "operator", "Set by an operator"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="deal_mappings")
    connection = models.ForeignKey(CrmConnection, on_delete=models.CASCADE, related_name="deal_mappings")
    email = models.CharField(max_length=320)
    contact_id = models.CharField(max_length=100, blank=True, help_text="blank: no contact has this email")
    deal_id = models.CharField(max_length=100, blank=True, help_text="blank: no open deal / opportunity")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.PROVIDER)
    refreshed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "crm_deal_mappings"
        verbose_name = "deal mapping"
        verbose_name_plural = "deal mappings"
        constraints = [models.UniqueConstraint(fields=["connection", "email"], name="deal_mapping_unique")]
        indexes = [models.Index(fields=["connection", "contact_id"], name="deal_mapping_contact")]

    def __str__(self) -> str:
        return f"{self.email} -> {self.contact_id or '-'} / {self.deal_id or '-'}"


class WritePolicy(models.Model):
    """A workspace's curation rules: which addresses are its own, and note or task per direction."""

    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, related_name="write_policy")
    internal_domains = models.JSONField(
        default=list, blank=True, help_text='e.g. ["acme.com"]; empty: the domains of the members\' emails'
    )
    inbound_operation = models.CharField(
        max_length=20, choices=EMAIL_OPERATION_CHOICES, default=WriteOperation.NOTE
    )
    outbound_operation = models.CharField(
        max_length=20, choices=EMAIL_OPERATION_CHOICES, default=WriteOperation.NOTE
    )
    task_due_days = models.PositiveSmallIntegerField(default=2)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "crm_write_policies"
        verbose_name = "write policy"
        verbose_name_plural = "write policies"

    def __str__(self) -> str:
        return f"write policy of {self.workspace_id}"
