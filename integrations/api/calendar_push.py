"""POST /webhooks/calendar/google and /webhooks/calendar/microsoft: push notifications of members'
calendars, verified against the channel's secret, answered at once.

Google sends headers only (X-Goog-Channel-ID / -Token / Resource-ID / Resource-State); Graph
sends the validation handshake (?validationToken=..., echoed as text/plain) and then JSON
deliveries {"value": [...]}, each item carrying its subscriptionId and clientState. A refused
delivery changes nothing and leaves one calendar_sync line without headers or body
(integrations.calendars.push decides; this module only parses the request).
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations.calendars import flags, push
from integrations.calendars.logs import calendar_log

VALIDATION_TOKEN_MAX = 1024


def refuse(status: int, code: str, message: str, provider: str) -> JsonResponse:
    calendar_log(logging.WARNING, "calendar notification refused", error_code=code, provider=provider)
    return JsonResponse({"code": code, "message": message}, status=status)


def precheck(request: HttpRequest, provider: str) -> JsonResponse | None:
    """Size and kill switch, before anything is read or looked up."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    limit = settings.CONDUIT_WEBHOOK_MAX_BODY_BYTES
    if not (declared.isascii() and declared.isdigit()) or int(declared) > limit:
        return refuse(413, "too_large", f"the body is over {limit} bytes", provider)
    if (refused := flags.refusal(flags.Feature.WEBHOOK)) is not None:
        return refuse(403, refused.code, refused.message, provider)
    return None


@csrf_exempt
@require_POST
def google_notification(request: HttpRequest) -> HttpResponse:
    if (early := precheck(request, "google")) is not None:
        return early
    status, outcome = push.google_notification(
        channel_id=request.headers.get("X-Goog-Channel-ID", "").strip(),
        token=request.headers.get("X-Goog-Channel-Token", ""),
        resource_id=request.headers.get("X-Goog-Resource-ID", "").strip(),
        state=request.headers.get("X-Goog-Resource-State", "").strip(),
    )
    return JsonResponse({"outcome": outcome}, status=status)


@csrf_exempt
@require_POST
def microsoft_notification(request: HttpRequest) -> HttpResponse:
    if (early := precheck(request, "microsoft")) is not None:
        return early
    if "validationToken" in request.GET:  # Graph checks the address while creating a subscription
        token = request.GET["validationToken"]  # QueryDict has already URL-decoded it
        if len(token) > VALIDATION_TOKEN_MAX:
            return refuse(400, "malformed", "the validation token is too long", "microsoft")
        calendar_log(logging.INFO, "microsoft subscription validation answered", provider="microsoft")
        return HttpResponse(token, content_type="text/plain; charset=utf-8", status=200)
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return refuse(400, "malformed", "the body is not JSON", "microsoft")
    items = body.get("value") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return refuse(400, "malformed", 'the body has no "value" list', "microsoft")
    status, _outcomes = push.microsoft_notifications(items)
    if status == 202:
        return HttpResponse(status=202)
    return JsonResponse(
        {"code": "unverified" if status == 401 else "calendar_not_allowlisted"}, status=status
    )
