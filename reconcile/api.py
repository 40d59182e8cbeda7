"""Reconcile's endpoints of the operations API (runbook 001): a workspace's failed writes grouped
by error code, and retry-failed. Same tokens and rules as the other customer endpoints
(integrations/api/status.py): a workspace token or a signed-in member acts for its own
workspace only."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conduit.api_input import body_object
from conduit.tenancy import workspace_of
from integrations.api.connections import check_provider, require_admin, valid
from integrations.api.status import ERRORS, PROVIDER_PATH
from reconcile.failures import do_retry_failed, failure_summary
from reconcile.serializers import (
    FailureQuerySerializer,
    FailureSummarySerializer,
    RetryFailedResultSerializer,
    RetryFailedSerializer,
)


class FailuresView(APIView):
    """GET /api/v1/integrations/{provider}/failures?hours=24: failed writes grouped by error code."""

    @extend_schema(
        operation_id="integration_failures",
        parameters=[PROVIDER_PATH, FailureQuerySerializer],
        responses={200: FailureSummarySerializer, **ERRORS},
    )
    def get(self, request: Request, provider: str) -> Response:
        provider = check_provider(provider)
        hours = valid(FailureQuerySerializer, request.query_params)["hours"]
        since = timezone.now() - timedelta(hours=hours)
        summary = failure_summary(workspace_of(request._request), provider, calls_since=since)
        return Response(
            {
                "provider": provider,
                "failed": summary.failed,
                "permanent_failures": summary.permanent_failures,
                "by_error_code": summary.writes,
                "provider_calls_since": since,
                "provider_call_failures": summary.provider_calls,
            }
        )


class RetryFailedView(APIView):
    """POST /api/v1/integrations/{provider}/retry-failed {"error_code": [...]}: requeue failed and
    permanently failed writes now (owners, admins and workspace tokens). JSON only, as the
    schema says: a form cannot say whether error_code is one code or a list."""

    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="integration_retry_failed",
        parameters=[PROVIDER_PATH],
        request=RetryFailedSerializer,
        responses={200: RetryFailedResultSerializer, **ERRORS},
    )
    def post(self, request: Request, provider: str) -> Response:
        actor = require_admin(request)
        provider = check_provider(provider)
        body = body_object(request)
        codes = valid(RetryFailedSerializer, {**request.query_params.dict(), **body}).get("error_code") or []
        requeued = do_retry_failed(
            workspace_of(request._request),
            provider,
            error_codes=codes,
            actor=actor,
        )
        return Response({"provider": provider, "requeued": requeued, "error_codes": codes})
