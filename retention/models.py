"""A workspace's retention policy: whether the daily purge runs for it and how long it keeps
message bodies, attachments and CRM sync logs."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from conduit.models import Workspace

MIN_DAYS = 1
MAX_DAYS = 3650
DAY_VALIDATORS = [MinValueValidator(MIN_DAYS), MaxValueValidator(MAX_DAYS)]


class RetentionPolicy(models.Model):
    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, related_name="retention_policy")
    purge_enabled = models.BooleanField(default=False)
    message_days = models.PositiveIntegerField(
        validators=DAY_VALIDATORS, help_text="days a message keeps its text, HTML and raw email"
    )
    attachment_days = models.PositiveIntegerField(
        validators=DAY_VALIDATORS, help_text="days a message keeps its attachment files"
    )
    sync_log_days = models.PositiveIntegerField(
        validators=DAY_VALIDATORS, help_text="days CRM sync log rows are kept"
    )
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.CharField(max_length=200, blank=True, help_text="who saved it last (actor label)")

    class Meta:
        db_table = "retention_policies"
        verbose_name = "retention policy"
        verbose_name_plural = "retention policies"

    def __str__(self) -> str:
        return f"retention of {self.workspace.slug}: {'on' if self.purge_enabled else 'off'}"
