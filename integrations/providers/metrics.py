"""Prometheus metrics named as in the incident playbook (003_7c42889a87d2c4e0.txt).

prometheus-client runs in multiprocess mode: every gunicorn worker and Celery process writes
its samples to PROMETHEUS_MULTIPROC_DIR (set by conduit/settings.py before this import), and
/metrics aggregates the directory. It is served to a bearer token (CONDUIT_METRICS_TOKEN) or
a staff login.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from conduit.models import STAFF_TOKEN_PREFIX
from conduit.tenancy import bearer_token, resolve_staff_token

SYNC_ERRORS = Counter(
    "crm_sync_errors_total", "Failed CRM provider operations", ["provider", "operation", "error_code"]
)
RATE_LIMIT_HITS = Counter(
    "crm_rate_limit_hits_total", "Provider rate-limit answers (429 and daily)", ["provider"]
)
SYNC_DURATION = Histogram(
    "crm_sync_duration_seconds",
    "Duration of CRM provider operations",
    ["provider", "operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
)
CONNECTION_STATUS = Gauge(
    "crm_connection_status",
    "1 when the connection's last check succeeded, 0 when it failed",
    ["provider", "workspace_id"],
    multiprocess_mode="mostrecent",
)
CONNECTION_FAILURES = Counter(
    "crm_connection_failures_total",
    "Connection checks whose verdict was not ok (runbook 003: connection_failures > 3 in 10m)",
    ["provider", "status"],
)
WEBHOOK_LATENCY = Histogram(
    "crm_webhook_latency_seconds",
    "Time from a webhook's receipt to the end of its processing",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)
WEBHOOK_REJECTED = Counter(
    "crm_webhook_rejected_total",
    "Webhook deliveries refused before storage (bad or stale signature, oversized, malformed)",
    ["provider", "reason"],
)
WEBHOOK_EVENTS = Counter(
    "crm_webhook_events_total", "Webhook events processed, by outcome", ["provider", "outcome"]
)


def set_connection_status(provider: str, workspace_id: int | None, ok: bool) -> None:
    CONNECTION_STATUS.labels(provider=provider, workspace_id=str(workspace_id or "")).set(1 if ok else 0)


def _authorized(request: HttpRequest) -> bool:
    """A staff login, an operator token (Bearer cds_...: live, its user still active staff) or
    the scraper's CONDUIT_METRICS_TOKEN."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    raw = bearer_token(request)
    if raw and raw.startswith(STAFF_TOKEN_PREFIX):
        return resolve_staff_token(raw) is not None
    token = settings.CONDUIT_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip(), token)


def render_metrics() -> bytes:
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry)


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        response = JsonResponse(
            {
                "code": "unauthorized",
                "message": "metrics need a staff login, an operator token or the metrics bearer token",
            },
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
