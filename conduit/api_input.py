"""API input read exactly as the schema says: a body is a JSON object, and a string field takes
a JSON string only (DRF's CharField would quietly turn 15.0 or true into text)."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, serializers
from rest_framework.parsers import JSONParser

from conduit.api_errors import ApiError


def body_object(request: Any) -> dict[str, Any]:
    """The request's body as a JSON object ({} when there is none); any other JSON value (a
    list, a string, a number) is a 400, as the schema of every body says."""
    data = request.data
    if not isinstance(data, dict):
        raise ApiError("the body must be a JSON object", code="invalid")
    return data


class StrictCharField(serializers.CharField):
    default_error_messages = {"not_a_string": "must be a string"}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return str(super().to_internal_value(data))


class JsonSentAsForm(JSONParser):
    """`curl -d '{"enabled": false}'` sends the body as application/x-www-form-urlencoded unless
    told otherwise, and the seed runbooks' commands do just that: a body of that type that is JSON
    is read as JSON. Anything else of that type is still a 415 that says what to send. Views list
    it after JSONParser and keep their schema JSON-only (a documented form body would be a lie)."""

    media_type = "application/x-www-form-urlencoded"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except exceptions.ParseError:
            raise exceptions.UnsupportedMediaType(
                self.media_type, detail="send the body as JSON (Content-Type: application/json)"
            ) from None
