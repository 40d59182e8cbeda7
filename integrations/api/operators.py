"""Operator endpoints of the operations API (runbooks 001 and 003): switch a tenant's integration
on or off, sync status, the health matrix, system-wide sync logs, queue depth and webhook replay.
They take an operator token (Bearer cds_...) or a staff login, and read across workspaces."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conduit.api_auth import IsStaff, StaffTokenAuthentication
from conduit.api_errors import ApiError
from conduit.api_input import JsonSentAsForm, body_object
from conduit.health import broker_queue_length
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from integrations.api.connections import PROVIDER_QUERY, check_provider, find_workspace, valid
from integrations.api.reads import SyncLogFilter, health_matrix, sync_logs, sync_status
from integrations.api.serializers import (
    ErrorSerializer,
    HealthMatrixSerializer,
    IntegrationSwitchResultSerializer,
    IntegrationSwitchSerializer,
    ProviderQuerySerializer,
    QueueMetricsSerializer,
    ReplayQuerySerializer,
    ReplayResultSerializer,
    SyncCursorSerializer,
    SyncLogSerializer,
    SyncLogsQuerySerializer,
    SyncStatusQuerySerializer,
    SyncStatusSerializer,
)
from integrations.api.status import ERRORS, PROVIDER_PATH, STATUS_QUERY, Pages
from integrations.connections.tenant_switch import do_set_integration_enabled
from integrations.ledger import ledger
from integrations.models import SyncCursor, SyncLog, WebhookEvent
from integrations.webhooks.processing import WebhookEventNotFound, do_replay_webhooks


class OperatorView(APIView):
    authentication_classes = [StaffTokenAuthentication, SessionAuthentication]
    permission_classes = [IsStaff]

    def permission_denied(
        self, request: Request, message: str | None = None, code: str | None = None
    ) -> NoReturn:
        if request.authenticators and not request.successful_authenticator:
            raise exceptions.NotAuthenticated(message or IsStaff.message)
        raise exceptions.PermissionDenied(message or IsStaff.message)


def actor_of(request: Request) -> str:
    return f"user:{request.user.pk}"


class TenantIntegrationView(OperatorView):
    """PATCH /api/v1/admin/tenants/{tenant_id}/integrations/{provider} {"enabled": false}."""

    # "enabled" must be a JSON boolean, which a form cannot send; runbook 001's `curl -d` sends JSON
    # typed as a form, which is read as the JSON it is
    parser_classes = [JSONParser, JsonSentAsForm]

    @extend_schema(
        operation_id="admin_tenant_integration_update",
        parameters=[
            OpenApiParameter("tenant_id", str, OpenApiParameter.PATH, description="workspace id or slug"),
            PROVIDER_PATH,
        ],
        request={"application/json": IntegrationSwitchSerializer},
        responses={200: IntegrationSwitchResultSerializer, 415: ErrorSerializer, **ERRORS},
    )
    def patch(self, request: Request, tenant_id: str, provider: str) -> Response:
        workspace = find_workspace(tenant_id, "tenant_id")
        provider = check_provider(provider)
        body = valid(IntegrationSwitchSerializer, body_object(request))
        reason = str(body.get("reason") or "").strip()
        row, changed = do_set_integration_enabled(
            workspace, provider, body["enabled"], actor=actor_of(request), reason=reason
        )
        return Response(
            {
                "tenant_id": workspace.pk,
                "provider": provider,
                "enabled": row.enabled,
                "changed": changed,
                "reason": row.reason,
                "changed_by": row.changed_by,
                "changed_at": row.changed_at,
            }
        )


class SyncStatusView(OperatorView):
    """GET /api/v1/admin/sync-status?workspace_id=: connections and latest webhook events."""

    @extend_schema(
        operation_id="admin_sync_status",
        parameters=[SyncStatusQuerySerializer],
        responses={200: SyncStatusSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        workspace = find_workspace(valid(SyncStatusQuerySerializer, request.query_params)["workspace_id"])
        status = sync_status(workspace)
        with system_scope():
            cursors = SyncCursor.objects.filter(workspace=workspace).order_by("provider", "object")
            status["sync_cursors"] = SyncCursorSerializer(cursors, many=True).data
        return Response(status)


class HealthMatrixView(OperatorView):
    """GET /api/v1/health?provider=: per provider ok / degraded / down, with counts."""

    @extend_schema(
        operation_id="health_matrix",
        parameters=[ProviderQuerySerializer, PROVIDER_QUERY],
        responses={200: HealthMatrixSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        provider = valid(ProviderQuerySerializer, request.query_params).get("provider")
        rows = health_matrix(check_provider(provider) if provider else None)
        worst = {"ok": 0, "degraded": 1, "down": 2}
        overall = max((r["status"] for r in rows), key=worst.__getitem__, default="ok")
        return Response({"status": overall, "providers": rows})


class SystemSyncLogsView(OperatorView, generics.ListAPIView):
    """GET /api/v1/sync/logs?provider=&limit=&status=&workspace_id=: every workspace's provider calls."""

    serializer_class = SyncLogSerializer
    pagination_class = Pages

    def get_queryset(self) -> QuerySet[SyncLog]:
        filters = valid(SyncLogsQuerySerializer, self.request.query_params)
        provider = filters.pop("provider", None)
        raw_workspace = filters.pop("workspace_id", None)
        workspace = find_workspace(raw_workspace) if raw_workspace else None
        return sync_logs(
            SyncLogFilter(
                provider=check_provider(provider) if provider else None, workspace=workspace, **filters
            )
        )

    @extend_schema(
        operation_id="sync_logs",
        parameters=[SyncLogsQuerySerializer, PROVIDER_QUERY, STATUS_QUERY],
        responses={200: SyncLogSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        with system_scope():
            return self.list(request, *args, **kwargs)


def webhook_backlog(now: datetime) -> dict[str, Any]:
    with system_scope():
        counts = WebhookEvent.objects.filter(
            status__in=[WebhookEvent.Status.RECEIVED, WebhookEvent.Status.FAILED]
        ).aggregate(
            received=Count("id", filter=Q(status=WebhookEvent.Status.RECEIVED)),
            failed=Count("id", filter=Q(status=WebhookEvent.Status.FAILED)),
            oldest=Min("received_at", filter=Q(status=WebhookEvent.Status.RECEIVED)),
        )
    oldest = counts.pop("oldest")
    counts["oldest_received_age_seconds"] = round((now - oldest).total_seconds(), 1) if oldest else None
    return counts


class QueueMetricsView(OperatorView):
    """GET /api/v1/system-metrics/queues: due and backlog counts, oldest due age, broker length."""

    @extend_schema(operation_id="system_metrics_queues", responses={200: QueueMetricsSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        now = timezone.now()
        return Response(
            {
                "measured_at": now,
                "writes": ledger().queue_stats(now=now),
                "webhooks": webhook_backlog(now),
                "broker": broker_queue_length(),
            }
        )


class ReplayWebhookView(OperatorView):
    """POST /api/v1/admin/replay-webhook?provider=&event_id= (or since= and until= for the failed
    events of a time range): process stored events again, idempotently; audited."""

    @extend_schema(
        operation_id="admin_replay_webhook",
        parameters=[
            ReplayQuerySerializer,
            OpenApiParameter("provider", str, OpenApiParameter.QUERY, required=True, enum=PROVIDER_PATH.enum),
        ],
        request=None,
        responses={200: ReplayResultSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = body_object(request)
        params = valid(ReplayQuerySerializer, {**request.query_params.dict(), **body})
        provider = check_provider(params["provider"])
        try:
            result = do_replay_webhooks(
                provider,
                event_id=params.get("event_id"),
                since=params.get("since"),
                until=params.get("until"),
                actor=actor_of(request),
            )
        except WebhookEventNotFound as exc:
            raise ApiError(exc.user_message, code=exc.error_code, status=404) from None
        except ConduitError as exc:
            raise ApiError(exc.user_message, code=exc.error_code, status=400) from None
        return Response({"provider": provider, "replayed": result.replayed, "statuses": result.statuses})
