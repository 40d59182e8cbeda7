"""Every API error is JSON: {"code": "...", "message": "..."} (plus field details when useful)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler

from conduit.error_pages import is_api, not_found


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


class JsonNotFoundUnderApi:
    """A 404 under /api/ or /crm/ is JSON even where Django would render its HTML page first: with DEBUG
    on (the development server, `make run`) a URL that matches no route gets the technical 404
    page before handler404 is consulted."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code == 404
            and is_api(request)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return not_found(request)
        return response
