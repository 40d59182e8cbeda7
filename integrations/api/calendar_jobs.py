"""POST /api/admin/calendar/jobs/run (runbook 004, "Monitor first runs"; also under /api/v1):
an operator runs one pass of the calendar job runner and reads its summary."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from conduit.api_errors import ApiError, ErrorSerializer
from conduit.api_input import JsonSentAsForm, body_object
from integrations.api.operators import OperatorView
from integrations.api.status import ERRORS
from integrations.calendars import jobs
from integrations.calendars.flags import CalendarForbidden

MAX_LIMIT = 10000


class CalendarJobsRunSerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        min_value=1, max_value=MAX_LIMIT, required=False, help_text="connections this pass syncs at most"
    )


class CalendarJobErrorSerializer(serializers.Serializer):
    connection_id = serializers.IntegerField()
    provider = serializers.CharField()
    error_code = serializers.CharField()
    message = serializers.CharField()


class CalendarJobSummarySerializer(serializers.Serializer):
    connections_processed = serializers.IntegerField()
    connections_synced = serializers.IntegerField()
    connections_failed = serializers.IntegerField()
    events_created = serializers.IntegerField()
    events_updated = serializers.IntegerField()
    events_deleted = serializers.IntegerField()
    # DRF's metaclass moves declared fields out of the class body, so this does not hide .errors
    errors = CalendarJobErrorSerializer(many=True)  # type: ignore[assignment]


class CalendarJobsRunResultSerializer(serializers.Serializer):
    summary = CalendarJobSummarySerializer()


def limit_of(body: dict[str, Any]) -> int | None:
    """The optional "limit": a JSON integer from 1 to 10000 (not a string, a float or a boolean)."""
    if "limit" not in body or body["limit"] is None:
        return None
    value = body["limit"]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise ApiError(f"limit must be an integer from 1 to {MAX_LIMIT}", code="invalid")
    return value


class CalendarJobsRunView(OperatorView):
    """Run one pass now; 403 calendar_disabled while CALENDAR_JOBS_ENABLED (or sync) is off."""

    parser_classes = [JSONParser, JsonSentAsForm]

    @extend_schema(
        operation_id="admin_calendar_jobs_run",
        request={"application/json": CalendarJobsRunSerializer},
        responses={200: CalendarJobsRunResultSerializer, 415: ErrorSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        limit = limit_of(body_object(request))
        try:
            summary = jobs.run_pass(limit=limit)
        except CalendarForbidden as exc:
            raise ApiError(exc.message, code=exc.code, status=403) from None
        return Response({"summary": summary.as_dict()})
