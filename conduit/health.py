"""/healthz: database, broker and beat heartbeat age; 503 when one is down."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.log import log_response

from conduit.models import Heartbeat

# While a process starts, beat has not beaten yet (or its last heartbeat is from the previous run):
# /healthz answers 503, as it must for a load balancer, but that is no error worth an ERROR line.
# For this long after the process began, a 503 whose only failing check is beat is logged at INFO
# with a "starting" reason; a database or broker that is down, or beat still down after the grace,
# keeps Django's ERROR line. (`make run`'s announcer polls /healthz until beat is fresh.)
STARTUP_GRACE_SECONDS = 120
PROCESS_STARTED = time.monotonic()


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    except Exception as exc:  # health boundary: report, never raise
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "vendor": connection.vendor}


def check_broker() -> dict[str, Any]:
    from conduit.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # health boundary: report, never raise
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "transport": app.conf.broker_url.split(":")[0]}


def check_beat(now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    try:
        beat = Heartbeat.objects.filter(name="beat").first()
    except Exception as exc:  # health boundary: report, never raise
        return {"ok": False, "error": type(exc).__name__}
    if beat is None:
        return {"ok": False, "error": "no heartbeat recorded yet", "age_seconds": None}
    age = (now - beat.beat_at).total_seconds()
    return {
        "ok": age <= settings.CONDUIT_BEAT_STALE_SECONDS,
        "age_seconds": round(age, 1),
        "last_beat_at": beat.beat_at.isoformat(),
    }


def is_starting(checks: dict[str, dict[str, Any]]) -> bool:
    """Only beat is down, and this process started less than STARTUP_GRACE_SECONDS ago."""
    waiting_for_beat_only = [name for name, check in checks.items() if not check["ok"]] == ["beat"]
    return waiting_for_beat_only and time.monotonic() - PROCESS_STARTED < STARTUP_GRACE_SECONDS


def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": check_database(), "broker": check_broker(), "beat": check_beat()}
    ok = all(c["ok"] for c in checks.values())
    response = JsonResponse({"status": "ok" if ok else "down", **checks}, status=200 if ok else 503)
    if not ok and is_starting(checks):
        # Logged here, so django.request does not log it again at ERROR.
        log_response(
            "Service Unavailable: %s (starting: waiting for beat: %s)",
            request.path,
            checks["beat"].get("error") or f"last heartbeat {checks['beat'].get('age_seconds')} s old",
            response=response,
            request=request,
            level="info",
        )
    return response


def broker_queue_length(queue: str | None = None) -> dict[str, Any]:
    """Messages waiting in the Celery queue (Redis or RabbitMQ in production, files in
    development). On RabbitMQ the declaration is passive: the queue Celery declared durable is
    read, never re-declared with other arguments."""
    from conduit.celery import app

    queue = queue or settings.CELERY_TASK_DEFAULT_QUEUE
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            channel: Any = conn.default_channel
            _, length, _consumers = channel.queue_declare(queue=queue, passive=settings.BROKER_AMQP)
    except Exception as exc:  # metrics boundary: report, never raise
        return {"queue": queue, "length": None, "error": type(exc).__name__}
    return {"queue": queue, "length": int(length), "transport": app.conf.broker_url.split(":")[0]}
