"""POST /webhooks/hubspot: verify the v3 signature, store each event, acknowledge at once.

Processing is a Celery task queued after the rows commit; if that dispatch is lost, the backlog
sweep (every 5 minutes) picks the events up. A refused delivery stores nothing: it only counts
in crm_webhook_rejected_total{reason} and leaves one log line without body or signature."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from conduit.logging import log_failure
from integrations.providers.metrics import WEBHOOK_REJECTED
from integrations.webhooks.events import MalformedDelivery, parse_delivery
from integrations.webhooks.inbox import store_events
from integrations.webhooks.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureRejected,
    SignedRequest,
    verify_v3,
)
from integrations.webhooks.tasks import process_webhook_events

log = logging.getLogger("conduit.webhooks")
PROVIDER = "hubspot"


def refuse(status: int, reason: str, message: str) -> JsonResponse:
    WEBHOOK_REJECTED.labels(provider=PROVIDER, reason=reason).inc()
    log.warning(
        "webhook delivery refused: %s",
        message,
        extra={"category": "webhook", "error_code": reason, "provider": PROVIDER},
    )
    return JsonResponse({"code": reason, "message": message}, status=status)


def signed_uri(request: HttpRequest) -> str:
    """The URL HubSpot posted to: the public origin registered with HubSpot plus the path and query
    as they came on the wire (gunicorn's RAW_URI keeps escapes and a bare trailing "?" that the
    parsed path loses; behind a proxy the request's own host may differ from the one signed)."""
    target = request.META.get("RAW_URI") or request.META.get("REQUEST_URI") or request.get_full_path()
    if not target.startswith("/"):  # an absolute-form request target: the parsed path instead
        target = request.get_full_path()
    return settings.CONDUIT_PUBLIC_URL.rstrip("/") + target


def dispatch(ids: list[int]) -> None:
    try:
        process_webhook_events.delay(ids)
    except Exception as exc:  # the broker is down: the backlog sweep processes these events later
        log_failure(log, "could not queue webhook processing", exc=exc, category="webhook")


@csrf_exempt
@require_POST
def hubspot(request: HttpRequest) -> JsonResponse:
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if (
        not (declared.isascii() and declared.isdigit())
        or int(declared) > settings.CONDUIT_WEBHOOK_MAX_BODY_BYTES
    ):
        return refuse(413, "too_large", f"the body is over {settings.CONDUIT_WEBHOOK_MAX_BODY_BYTES} bytes")
    secret = settings.HUBSPOT_CLIENT_SECRET
    if not secret:
        return refuse(503, "not_configured", "HUBSPOT_CLIENT_SECRET is not set; webhooks cannot be verified")
    signed = SignedRequest(
        method=request.method or "POST",
        uri=signed_uri(request),
        body=request.body,
        timestamp=request.headers.get(TIMESTAMP_HEADER, "").strip(),
        signature=request.headers.get(SIGNATURE_HEADER, "").strip(),
    )
    try:
        verify_v3(
            signed,
            secret,
            now_ms=int(time.time() * 1000),
            max_age_seconds=settings.CONDUIT_WEBHOOK_MAX_AGE_SECONDS,
        )
        events = parse_delivery(signed.body)
    except SignatureRejected as exc:
        return refuse(401, exc.reason, str(exc))
    except MalformedDelivery as exc:
        return refuse(400, "malformed", str(exc))
    stored = store_events(PROVIDER, events, now=timezone.now())
    if stored.new_ids:
        transaction.on_commit(lambda: dispatch(stored.new_ids))
    return JsonResponse(
        {"received": len(events), "stored": len(stored.new_ids), "redelivered": stored.redelivered}
    )
