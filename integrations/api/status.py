"""Customer endpoints of the operations API (runbook 001): integration status and sync logs
(the failure summary and retry-failed are reconcile's: reconcile/api.py). A workspace API token
or a signed-in member acts for its own workspace only; another workspace's rows answer 404."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conduit.api_errors import ApiError
from conduit.tenancy import system_scope, workspace_of
from integrations.api.connections import check_provider, valid
from integrations.api.reads import PROVIDERS, SyncLogFilter, integration_status, sync_logs
from integrations.api.serializers import (
    ErrorSerializer,
    IntegrationStatusListSerializer,
    IntegrationStatusSerializer,
    SyncLogQuerySerializer,
    SyncLogSerializer,
)
from integrations.ledger import WriteCounts, ledger
from integrations.models import CrmConnection, SyncLog

ERRORS = {code: ErrorSerializer for code in (400, 401, 403, 404)}
PROVIDER_PATH = OpenApiParameter("provider", str, OpenApiParameter.PATH, enum=PROVIDERS)
# the schema names the accepted values of this free-text filter (the serializer also takes any case)
STATUS_QUERY = OpenApiParameter(
    "status", str, OpenApiParameter.QUERY, enum=SyncLog.Status.values, description="SUCCESS or FAILED"
)


class Pages(LimitOffsetPagination):
    """?limit=&offset=; a bad value is refused, not silently replaced."""

    default_limit = 50
    max_limit = 500

    def _param(self, request: Request, name: str, default: int, low: int) -> int:
        raw = request.query_params.get(name)
        if raw in (None, ""):
            return default
        try:
            value = int(str(raw))
        except ValueError:
            raise ApiError(f"{name} must be an integer", code="invalid", status=400) from None
        if value < low:
            raise ApiError(f"{name} must be at least {low}", code="invalid", status=400)
        return value

    def get_limit(self, request: Request) -> int:
        return min(self._param(request, self.limit_query_param, self.default_limit, 1), self.max_limit)

    def get_offset(self, request: Request) -> int:
        return self._param(request, self.offset_query_param, 0, 0)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        lowest = {self.limit_query_param: 1, self.offset_query_param: 0}
        params = super().get_schema_operation_parameters(view)
        for param in params:
            param["schema"]["minimum"] = lowest[param["name"]]
        return params


def status_with_writes(request: Request, provider: str) -> dict[str, Any]:
    workspace = workspace_of(request._request)
    status = integration_status(workspace, provider)
    counts = WriteCounts()
    if status["connection_id"] is not None:
        with system_scope():
            counts = ledger().counts(CrmConnection(pk=status["connection_id"]))
    status["writes"] = {
        key: getattr(counts, key)
        for key in ("dry_run", "planned", "failed", "permanent", "succeeded", "skipped")
    }
    return status


class IntegrationsStatusView(APIView):
    """GET /api/v1/integrations/status: every CRM of the workspace."""

    @extend_schema(
        operation_id="integrations_status", responses={200: IntegrationStatusListSerializer, **ERRORS}
    )
    def get(self, request: Request) -> Response:
        return Response({"integrations": [status_with_writes(request, p) for p in PROVIDERS]})


class IntegrationStatusView(APIView):
    """GET /api/v1/integrations/{provider}/status."""

    @extend_schema(
        operation_id="integration_status",
        parameters=[PROVIDER_PATH],
        responses={200: IntegrationStatusSerializer, **ERRORS},
    )
    def get(self, request: Request, provider: str) -> Response:
        return Response(status_with_writes(request, check_provider(provider)))


class SyncLogListView(generics.ListAPIView):
    """GET /api/v1/integrations/{provider}/sync-logs?status=FAILED&operation=&error_code=&since=."""

    serializer_class = SyncLogSerializer
    pagination_class = Pages

    def get_queryset(self) -> QuerySet[SyncLog]:
        filters = valid(SyncLogQuerySerializer, self.request.query_params)
        return sync_logs(
            SyncLogFilter(
                provider=check_provider(self.kwargs["provider"]),
                workspace=workspace_of(self.request._request),
                **filters,
            )
        )

    @extend_schema(
        operation_id="integration_sync_logs",
        parameters=[PROVIDER_PATH, SyncLogQuerySerializer, STATUS_QUERY],
        responses={200: SyncLogSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        with system_scope():
            return super().get(request, *args, **kwargs)


class SyncLogDetailView(generics.RetrieveAPIView):
    """GET /api/v1/integrations/{provider}/sync-logs/{id}: one provider call (never a token or body)."""

    serializer_class = SyncLogSerializer

    def get_queryset(self) -> QuerySet[SyncLog]:
        return sync_logs(
            SyncLogFilter(
                provider=check_provider(self.kwargs["provider"]),
                workspace=workspace_of(self.request._request),
            )
        )

    @extend_schema(
        operation_id="integration_sync_log",
        parameters=[PROVIDER_PATH],
        responses={200: SyncLogSerializer, **ERRORS},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        with system_scope():
            return super().get(request, *args, **kwargs)
