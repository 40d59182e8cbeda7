"""Shapes of the operations API: query parameters validated here, and responses described here
so that the OpenAPI schema (/api/schema/) says exactly what each endpoint returns."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from conduit.api_errors import ErrorSerializer
from conduit.api_input import StrictCharField
from integrations.models import SyncCursor, SyncLog, WebhookEvent

__all__ = ["ErrorSerializer"]


class KillSwitchSerializer(serializers.Serializer):
    scope = serializers.CharField()
    reason = serializers.CharField()
    since = serializers.DateTimeField()
    by = serializers.CharField()


class HealthBriefSerializer(serializers.Serializer):
    status = serializers.CharField()
    reason = serializers.CharField()
    last_checked_at = serializers.DateTimeField()
    last_ok_at = serializers.DateTimeField(allow_null=True)
    consecutive_failures = serializers.IntegerField()


class WriteCountsSerializer(serializers.Serializer):
    dry_run = serializers.IntegerField()
    planned = serializers.IntegerField()
    failed = serializers.IntegerField()
    permanent = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    skipped = serializers.IntegerField()


class IntegrationStatusSerializer(serializers.Serializer):
    provider = serializers.CharField()
    status = serializers.CharField(
        help_text=(
            "runbook 001's status: connected, needs_reauth (the grant is gone: reconnect), error, "
            "disconnected, pending_claim or not_connected"
        )
    )
    connection_status = serializers.CharField(
        help_text="crm_connections.status as stored: connected, error, disconnected or pending_claim"
    )
    connection_id = serializers.IntegerField(allow_null=True)
    external_account_key = serializers.CharField(allow_blank=True)
    last_error = serializers.CharField(allow_blank=True)
    dry_run = serializers.BooleanField()
    connected_at = serializers.DateTimeField(allow_null=True)
    token_expires_at = serializers.DateTimeField(allow_null=True)
    last_refreshed_at = serializers.DateTimeField(allow_null=True)
    sync_enabled = serializers.BooleanField()
    kill_switch = KillSwitchSerializer(allow_null=True)
    health = HealthBriefSerializer(allow_null=True)
    writes = WriteCountsSerializer()


class IntegrationStatusListSerializer(serializers.Serializer):
    integrations = IntegrationStatusSerializer(many=True)


class SyncLogSerializer(serializers.ModelSerializer):
    """One provider call. `timestamp`, `level` and `message` are the fields runbook 003's jq reads."""

    timestamp = serializers.DateTimeField(source="created_at")
    level = serializers.SerializerMethodField()
    message = serializers.CharField(source="summary")

    class Meta:
        model = SyncLog
        fields = [
            "id",
            "provider",
            "workspace_id",
            "connection_id",
            "operation",
            "status",
            "http_status",
            "error_code",
            "duration_ms",
            "summary",
            "created_at",
            "timestamp",
            "level",
            "message",
        ]

    def get_level(self, obj: SyncLog) -> str:
        return "error" if obj.status == SyncLog.Status.FAILED else "info"


class SyncLogQuerySerializer(serializers.Serializer):
    status = serializers.CharField(required=False, help_text="SUCCESS or FAILED (any case)")
    operation = serializers.CharField(required=False, max_length=50)
    error_code = serializers.CharField(required=False, max_length=100)
    since = serializers.DateTimeField(required=False, help_text="ISO 8601, e.g. 2026-12-05T00:00:00Z")

    def validate_status(self, value: str) -> str:
        upper = value.upper()
        if upper not in SyncLog.Status.values:
            raise serializers.ValidationError("use SUCCESS or FAILED")
        return upper


class IntegrationSwitchSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    reason = StrictCharField(required=False, allow_blank=True, max_length=500)

    def to_internal_value(self, data: Any) -> Any:
        # "enabled": "false" is a mistake worth refusing: only JSON true or false switch it
        if isinstance(data, dict) and "enabled" in data and not isinstance(data["enabled"], bool):
            raise serializers.ValidationError({"enabled": ["must be true or false (a JSON boolean)"]})
        return super().to_internal_value(data)


class IntegrationSwitchResultSerializer(serializers.Serializer):
    tenant_id = serializers.IntegerField()
    provider = serializers.CharField()
    enabled = serializers.BooleanField()
    changed = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True)
    changed_by = serializers.CharField(allow_blank=True)
    changed_at = serializers.DateTimeField()


class SyncStatusConnectionSerializer(serializers.Serializer):
    provider = serializers.CharField()
    connection_id = serializers.IntegerField()
    status = serializers.CharField()
    dry_run = serializers.BooleanField()
    sync_enabled = serializers.BooleanField()
    kill_switch = serializers.BooleanField()
    kill_switch_reason = serializers.CharField(allow_blank=True)


class WebhookEventBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookEvent
        fields = ["provider", "event_id", "event_type", "status", "attempts", "received_at", "processed_at"]


class SyncStatusSerializer(serializers.Serializer):
    workspace_id = serializers.IntegerField()
    connections = SyncStatusConnectionSerializer(many=True)
    webhook_events = WebhookEventBriefSerializer(many=True)
    sync_cursors = serializers.ListField(child=serializers.DictField(), required=False)


class SyncStatusQuerySerializer(serializers.Serializer):
    workspace_id = serializers.CharField(help_text="the workspace's id or slug")


class HealthCountsSerializer(serializers.Serializer):
    ok = serializers.IntegerField()
    warning = serializers.IntegerField()
    error = serializers.IntegerField()


class HealthMatrixRowSerializer(serializers.Serializer):
    provider = serializers.CharField()
    status = serializers.ChoiceField(choices=["ok", "degraded", "down"])
    connections = serializers.IntegerField()
    unchecked = serializers.IntegerField()
    counts = HealthCountsSerializer()
    paused = serializers.BooleanField()


class HealthMatrixSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded", "down"], help_text="the worst provider's")
    providers = HealthMatrixRowSerializer(many=True)


class ProviderQuerySerializer(serializers.Serializer):
    provider = serializers.CharField(required=False)


class SyncLogsQuerySerializer(ProviderQuerySerializer, SyncLogQuerySerializer):
    workspace_id = serializers.CharField(required=False, help_text="a workspace's id or slug")


class BrokerQueueSerializer(serializers.Serializer):
    queue = serializers.CharField()
    length = serializers.IntegerField(allow_null=True)
    transport = serializers.CharField(required=False)
    error = serializers.CharField(required=False)


class WriteQueueSerializer(serializers.Serializer):
    due = serializers.IntegerField()
    backlog = serializers.IntegerField()
    parked = serializers.IntegerField()
    sending = serializers.IntegerField()
    expired_leases = serializers.IntegerField()
    permanent_failures = serializers.IntegerField()
    oldest_due_age_seconds = serializers.FloatField(allow_null=True)


class WebhookQueueSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    failed = serializers.IntegerField()
    oldest_received_age_seconds = serializers.FloatField(allow_null=True)


class QueueMetricsSerializer(serializers.Serializer):
    measured_at = serializers.DateTimeField()
    writes = WriteQueueSerializer()
    webhooks = WebhookQueueSerializer()
    broker = BrokerQueueSerializer()


class ReplayQuerySerializer(serializers.Serializer):
    provider = StrictCharField()
    event_id = StrictCharField(required=False, max_length=100)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class ReplayResultSerializer(serializers.Serializer):
    provider = serializers.CharField()
    replayed = serializers.IntegerField()
    statuses = serializers.DictField(child=serializers.IntegerField())


class SyncCursorSerializer(serializers.ModelSerializer):
    class Meta:
        model = SyncCursor
        fields = [
            "provider",
            "object",
            "since_ts",
            "last_run_at",
            "last_status",
            "last_error",
            "records_seen",
        ]


class ConnectionSerializer(serializers.Serializer):
    provider = serializers.CharField()
    status = serializers.CharField()
    last_error = serializers.CharField(allow_blank=True)
    external_account_key = serializers.CharField(allow_blank=True)
    token_expires_at = serializers.DateTimeField(allow_null=True)
    last_refreshed_at = serializers.DateTimeField(allow_null=True)
    dry_run = serializers.BooleanField()


class DisconnectResultSerializer(ConnectionSerializer):
    revoked_at_provider = serializers.BooleanField()


class ClaimRequestSerializer(serializers.Serializer):
    crm = StrictCharField()
    install_id = StrictCharField()
    workspace_id = serializers.IntegerField()
    replace_existing = serializers.BooleanField(required=False)


class ClaimResultSerializer(ConnectionSerializer):
    workspace_id = serializers.IntegerField()


class PauseQuerySerializer(serializers.Serializer):
    pause = serializers.ChoiceField(
        choices=["true", "false", "1", "0", "yes", "no", "on", "off"], help_text="true or false (any case)"
    )
    provider = serializers.CharField(required=False)
    workspace_id = serializers.CharField(required=False)
    connection_id = serializers.CharField(required=False)
    all = serializers.CharField(required=False, help_text="true: every CRM")
    reason = serializers.CharField(required=False)


class PauseResultSerializer(serializers.Serializer):
    scope = serializers.CharField()
    provider = serializers.CharField(required=False)
    workspace_id = serializers.IntegerField(required=False)
    connection_id = serializers.IntegerField(required=False)
    paused = serializers.BooleanField()
    changed = serializers.BooleanField()
    reason = serializers.CharField(required=False)
    since = serializers.DateTimeField(required=False)
