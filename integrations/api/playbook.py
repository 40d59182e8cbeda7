"""Runbook 003's paths as the playbook writes them (`/crm/admin/pause-sync`, `/crm/health`, ...).

Each is the `/api/v1` operator view it names, behind the same operator token; only
`/crm/sync/logs` differs, answering the bare list the playbook's `jq '.[]'` reads (newest
first, `?limit=` and `?offset=` as on `/api/v1/sync/logs`, the total in `X-Total-Count`).
The OpenAPI schema documents `/api/v1` only (conduit.api_schema drops these paths)."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path
from rest_framework.response import Response

from integrations.api.connections import PauseSyncView
from integrations.api.operators import (
    HealthMatrixView,
    ReplayWebhookView,
    SyncStatusView,
    SystemSyncLogsView,
)
from integrations.api.status import Pages
from integrations.providers.metrics import metrics_view


class BareListPages(Pages):
    """Pages whose response is the list itself; the total goes in a header."""

    def get_paginated_response(self, data: Any) -> Response:
        return Response(data, headers={"X-Total-Count": str(self.count)})


class PlaybookSyncLogsView(SystemSyncLogsView):
    """GET /crm/sync/logs?provider=&limit=: `[{timestamp, level, message, ...}, ...]`."""

    pagination_class = BareListPages


urlpatterns: list[URLPattern] = [
    path("admin/pause-sync", PauseSyncView.as_view(), name="crm-pause-sync"),
    path("admin/sync-status", SyncStatusView.as_view(), name="crm-sync-status"),
    path("admin/replay-webhook", ReplayWebhookView.as_view(), name="crm-replay-webhook"),
    path("health", HealthMatrixView.as_view(), name="crm-health"),
    path("sync/logs", PlaybookSyncLogsView.as_view(), name="crm-sync-logs"),
    path("metrics", metrics_view, name="crm-metrics"),
]
