"""Shapes of reconcile's API endpoints (reconcile/api.py) for the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from conduit.api_input import StrictCharField


class FailureGroupSerializer(serializers.Serializer):
    error_code = serializers.CharField()
    count = serializers.IntegerField()
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    sample_message = serializers.CharField(allow_blank=True)


class WriteFailureGroupSerializer(FailureGroupSerializer):
    permanent_failures = serializers.IntegerField()


class FailureSummarySerializer(serializers.Serializer):
    provider = serializers.CharField()
    failed = serializers.IntegerField(help_text="failed writes, retrying or permanent")
    permanent_failures = serializers.IntegerField()
    by_error_code = WriteFailureGroupSerializer(many=True)
    provider_calls_since = serializers.DateTimeField()
    provider_call_failures = FailureGroupSerializer(many=True)


class FailureQuerySerializer(serializers.Serializer):
    hours = serializers.IntegerField(
        required=False, min_value=1, max_value=720, default=24, help_text="window of failed provider calls"
    )


ERROR_CODE = {"type": "string", "minLength": 1, "maxLength": 100}


@extend_schema_field({"oneOf": [ERROR_CODE, {"type": "array", "items": ERROR_CODE}]})
class ErrorCodesField(serializers.ListField):
    """One error code or a list of them: {"error_code": "validation_failed"} or [..., ...]."""

    def to_internal_value(self, data: Any) -> list[Any]:
        return super().to_internal_value([data] if isinstance(data, str) else data)


class RetryFailedSerializer(serializers.Serializer):
    error_code = ErrorCodesField(
        child=StrictCharField(max_length=100),
        required=False,
        help_text="only writes whose last error is one of these codes (default: every failed write)",
    )


class RetryFailedResultSerializer(serializers.Serializer):
    provider = serializers.CharField()
    requeued = serializers.IntegerField()
    error_codes = serializers.ListField(child=serializers.CharField())
