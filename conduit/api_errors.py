"""Every API error is JSON: {"code": "...", "message": "..."} (plus field details when useful)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ErrorSerializer(serializers.Serializer):
    """The body of every API error (for the OpenAPI schema)."""

    code = serializers.CharField()
    message = serializers.CharField()
    # DRF's metaclass moves declared fields out of the class body, so this does not hide .fields
    fields = serializers.DictField(required=False)  # type: ignore[assignment]


class ApiError(exceptions.APIException):
    def __init__(self, message: str, *, code: str, status: int = 400) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status


def _first_message(detail: Any) -> str:
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        return f"{key}: {_first_message(value)}"
    return str(detail)


def json_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    codes = exc.get_codes()
    body: dict[str, Any] = {
        "code": codes if isinstance(codes, str) else "invalid",
        "message": _first_message(exc.detail),
    }
    if isinstance(exc.detail, dict):
        body["fields"] = response.data
    response.data = body
    return response


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404: a URL under /api/ that matches no route (e.g. a negative id) answers JSON too."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"code": "not_found", "message": f"no API endpoint at {request.path}"}, status=404
        )
    return defaults.page_not_found(request, exception)
