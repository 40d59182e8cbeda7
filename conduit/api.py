"""REST API (/api/v1) for the shared core."""

from __future__ import annotations

import logging
from typing import Any

from drf_spectacular.utils import OpenApiTypes, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conduit.api_errors import ApiError, ErrorSerializer
from conduit.ingest import IngestRejected, ParsedMessage, check_size, ingest_one, parse_json, parse_raw
from conduit.safe_json import SafeJsonError, loads_bounded
from conduit.tenancy import workspace_of

log = logging.getLogger(__name__)
RAW_TYPES = ("message/rfc822", "application/octet-stream", "text/plain")


class RawBytesParser(BaseParser):
    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return stream.read() if stream is not None else b""


class IngestResultSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    message_id = serializers.CharField()
    created = serializers.BooleanField()
    attachments = serializers.IntegerField()


# The JSON form of a message, as conduit.ingest.parse_json reads it (any other key is ignored).
NOT_BLANK = r"[^<> \t\r\n]"
MESSAGE_JSON = inline_serializer(
    name="MessageJson",
    fields={
        "message_id": serializers.RegexField(NOT_BLANK, help_text="the Message-ID, with or without <>"),
        "from": serializers.RegexField(r"\S", help_text="the sender's address"),
        "to": serializers.ListField(child=serializers.CharField(allow_blank=True), required=False),
        "cc": serializers.ListField(child=serializers.CharField(allow_blank=True), required=False),
        "subject": serializers.CharField(required=False, allow_null=True, allow_blank=True),
        "body_text": serializers.CharField(required=False, allow_null=True, allow_blank=True),
        "body_html": serializers.CharField(required=False, allow_null=True, allow_blank=True),
        "sent_at": serializers.DateTimeField(
            required=False, allow_null=True, help_text="ISO 8601 with a timezone offset"
        ),
    },
)


class MessageIngestView(APIView):
    """POST a raw RFC 822 message (message/rfc822) or a JSON description of one."""

    parser_classes = [RawBytesParser]

    @extend_schema(
        operation_id="messages_ingest",
        request={"message/rfc822": OpenApiTypes.BINARY, "application/json": MESSAGE_JSON},
        responses={
            200: IngestResultSerializer,
            201: IngestResultSerializer,
            **{code: ErrorSerializer for code in (400, 401, 403, 413, 415)},
        },
    )
    def post(self, request: Request) -> Response:
        try:
            parsed = self._parse(request)
            result = ingest_one(workspace_of(request._request), parsed)
        except IngestRejected as exc:
            log.info("message rejected: %s", exc.reason, extra={"category": "ingest", "error_code": exc.code})
            status_code = 413 if exc.code == "message_too_large" else 400
            raise ApiError(exc.reason, code=exc.code, status=status_code) from None
        message = result.message
        assert message is not None  # ingest_one raises instead of returning an unstored message
        return Response(
            {
                "id": message.pk,
                "message_id": message.message_id,
                "created": result.created,
                "attachments": message.attachments.count(),
            },
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )

    def _parse(self, request: Request) -> ParsedMessage:
        # Refuse on the declared length before reading a body we would not keep.
        check_size(declared_length(request))
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        body: bytes = request.data if isinstance(request.data, bytes) else b""
        if content_type == "application/json":
            try:
                data = loads_bounded(body or b"null")
            except SafeJsonError as exc:
                raise IngestRejected(f"the body is not valid JSON: {exc}") from None
            return parse_json(data)
        if content_type in RAW_TYPES:
            return parse_raw(body)
        raise ApiError(
            f"unsupported content type {content_type or '(none)'}: send message/rfc822 or application/json",
            code="unsupported_media_type",
            status=415,
        )


def declared_length(request: Request) -> int:
    """The Content-Length header; a malformed one counts as 0, as Django itself reads it."""
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0
