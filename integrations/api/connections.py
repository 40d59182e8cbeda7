"""REST endpoints of the connection flows (/api/v1): claim an install, force a token refresh,
disconnect. Each calls the same service as the pages and commands."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conduit.api_auth import StaffTokenAuthentication
from conduit.api_errors import ApiError
from conduit.api_input import body_object
from conduit.models import Workspace
from conduit.services import ConduitError, workspace_by_ref
from conduit.tenancy import system_scope, workspace_of
from integrations.api.serializers import (
    ClaimRequestSerializer,
    ClaimResultSerializer,
    ConnectionSerializer,
    DisconnectResultSerializer,
    ErrorSerializer,
    PauseQuerySerializer,
    PauseResultSerializer,
)
from integrations.connections import claims
from integrations.connections.lifecycle import do_disconnect, live_connection
from integrations.connections.pauses import PauseTarget, do_pause_sync, do_resume_sync, target_for
from integrations.connections.tokens import refresh_connection
from integrations.models import CRM_CHOICES, CrmConnection
from integrations.providers.errors import ProviderError

ERRORS = {code: ErrorSerializer for code in (400, 401, 403, 404, 409)}
PROVIDER = OpenApiParameter("provider", str, OpenApiParameter.PATH, enum=[name for name, _ in CRM_CHOICES])
# the schema names the accepted values of the free-text provider filters
PROVIDER_QUERY = OpenApiParameter(
    "provider", str, OpenApiParameter.QUERY, enum=[name for name, _ in CRM_CHOICES]
)


def check_provider(provider: str) -> str:
    if provider not in dict(CRM_CHOICES):
        known = ", ".join(name for name, _ in CRM_CHOICES)
        raise ApiError(
            f"unknown provider {provider!r}; use one of: {known}", code="unknown_provider", status=404
        )
    return provider


def valid(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """Validated input, exactly as the schema says: query strings are read as plain values (DRF
    would take an empty `?since=` of an optional field for an absent one, which the schema
    refuses), so an empty value is a 400 naming the field."""
    if isinstance(data, QueryDict):
        data = data.dict()
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def require_admin(request: Request) -> Any:
    """API tokens act for their workspace; a signed-in user must be an owner or admin."""
    raw = request._request
    membership = getattr(raw, "membership", None)
    if getattr(raw, "api_token", None) is None and (membership is None or not membership.administers):
        raise ApiError("only workspace owners and admins can do this", code="forbidden", status=403)
    return request.user if isinstance(request.user, User) else "api_token"


def connection_json(conn: CrmConnection) -> dict[str, Any]:
    return {
        "provider": conn.crm,
        "status": conn.status,
        "last_error": conn.last_error,
        "external_account_key": conn.external_account_key,
        "token_expires_at": conn.token_expires_at.isoformat() if conn.token_expires_at else None,
        "last_refreshed_at": conn.last_refreshed_at.isoformat() if conn.last_refreshed_at else None,
        "dry_run": conn.dry_run,
    }


def workspace_connection(request: Request, provider: str) -> CrmConnection:
    with system_scope():
        conn = live_connection(workspace_of(request._request), check_provider(provider))
    if conn is None:
        raise ApiError(f"this workspace has no {provider} connection", code="not_connected", status=409)
    return conn


class RefreshTokenView(APIView):
    """POST /api/v1/integrations/{provider}/refresh: refresh the access token now."""

    @extend_schema(
        operation_id="integration_refresh",
        parameters=[PROVIDER],
        request=None,
        responses={200: ConnectionSerializer, 502: ErrorSerializer, **ERRORS},
    )
    def post(self, request: Request, provider: str) -> Response:
        require_admin(request)
        conn = workspace_connection(request, provider)
        try:
            conn = refresh_connection(conn.pk, force=True, actor="api:refresh")
        except ConduitError as exc:
            raise ApiError(exc.user_message, code=exc.error_code, status=409) from None
        except ProviderError as exc:
            raise ApiError(
                f"the provider could not refresh the token ({exc.code}); nothing changed",
                code=exc.code,
                status=502,
            ) from None
        if conn.status != CrmConnection.Status.CONNECTED:
            raise ApiError(
                f"the provider refused the refresh token; the connection is now {conn.status}",
                code=conn.last_error or "refresh_failed",
                status=409,
            )
        return Response(connection_json(conn))


class DisconnectView(APIView):
    """POST /api/v1/integrations/{provider}/disconnect: revoke, clear tokens, disconnected."""

    @extend_schema(
        operation_id="integration_disconnect",
        parameters=[PROVIDER],
        request=None,
        responses={200: DisconnectResultSerializer, **ERRORS},
    )
    def post(self, request: Request, provider: str) -> Response:
        actor = require_admin(request)
        conn = workspace_connection(request, provider)
        with system_scope():
            conn = CrmConnection.objects.select_for_update().get(pk=conn.pk)
            revoked = do_disconnect(conn, actor=actor)
        return Response({**connection_json(conn), "revoked_at_provider": revoked})


class SignedIn(permissions.BasePermission):
    message = "sign in to claim an install"

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated and isinstance(request.user, User))


class ClaimInstallView(APIView):
    """POST /api/v1/claim-install {crm, install_id, workspace_id, replace_existing}: a signed-in
    owner or admin binds a pending marketplace install to a workspace."""

    # a person claims, not a workspace API token (a token must not reach its creator's other workspaces)
    authentication_classes = [SessionAuthentication]
    permission_classes = [SignedIn]
    parser_classes = [JSONParser]  # workspace_id must be a JSON integer, which a form cannot send

    @extend_schema(
        operation_id="claim_install",
        request=ClaimRequestSerializer,
        responses={200: ClaimResultSerializer, 415: ErrorSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = body_object(request)
        crm, install_id = str(data.get("crm", "")), str(data.get("install_id", ""))
        workspace_id = data.get("workspace_id")
        well_formed = ClaimRequestSerializer(data=data).is_valid()  # e.g. no NUL in install_id
        if not crm or not install_id or not isinstance(workspace_id, int) or not well_formed:
            raise ApiError("send crm, install_id and workspace_id (an integer)", code="invalid", status=400)
        try:
            conn = claims.do_claim_install(
                install_id,
                check_provider(crm),
                workspace_id,
                actor=request.user,  # type: ignore[arg-type]
                replace_existing=data.get("replace_existing") is True,
            )
        except claims.InstallNotFound as exc:
            raise ApiError(exc.user_message, code=exc.error_code, status=404) from None
        except claims.NotWorkspaceAdmin as exc:
            raise ApiError(exc.user_message, code=exc.error_code, status=403) from None
        except ConduitError as exc:
            raise ApiError(exc.user_message, code=exc.error_code, status=409) from None
        return Response({**connection_json(conn), "workspace_id": conn.workspace_id})


class StaffOnly(permissions.BasePermission):
    message = "operators only: sign in to the admin as staff"

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)


TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def find_workspace(raw: Any, name: str = "workspace_id") -> Workspace:
    """A workspace by id or slug; 404 when there is none."""
    text = str(raw or "").strip()
    if not text:
        raise ApiError(f"send {name} (a workspace id or slug)", code="invalid", status=400)
    if "\x00" in text:
        raise ApiError(f"{name} must not contain NUL characters", code="invalid", status=400)
    workspace = workspace_by_ref(text)
    if workspace is None:
        raise ApiError(f"no workspace {text!r}", code="not_found", status=404)
    return workspace


class PauseSyncView(APIView):
    """POST /api/v1/admin/pause-sync?provider=hubspot&pause=true (or workspace_id=, connection_id=,
    all=true; reason=): the kill switch. Paused writes stay queued and burn no attempts."""

    authentication_classes = [StaffTokenAuthentication, SessionAuthentication]
    permission_classes = [StaffOnly]

    @extend_schema(
        operation_id="admin_pause_sync",
        parameters=[PauseQuerySerializer, PROVIDER_QUERY],
        request=None,
        responses={200: PauseResultSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        params = {**request.query_params.dict(), **body_object(request)}
        pause = str(params.get("pause", "")).lower()
        if pause not in TRUE + FALSE:
            raise ApiError("send pause=true or pause=false", code="invalid", status=400)
        valid(PauseQuerySerializer, {**params, "pause": pause})  # e.g. no NUL in reason
        target = self.target(params)
        actor = f"user:{request.user.pk}"
        if pause in FALSE:
            lifted = do_resume_sync(target, actor=actor)
            return Response({**target.describe(), "paused": False, "changed": lifted})
        reason = str(params.get("reason") or "").strip() or f"paused through the API by {actor}"
        try:
            row, created = do_pause_sync(target, reason=reason, actor=actor)
        except ConduitError as exc:
            raise ApiError(exc.user_message, code=exc.error_code, status=400) from None
        return Response(
            {
                **target.describe(),
                "paused": True,
                "changed": created,
                "reason": row.reason,
                "since": row.paused_at,
            }
        )

    def target(self, params: dict[str, Any]) -> PauseTarget:
        workspace = connection = None
        with system_scope():
            if (raw := params.get("workspace_id")) not in (None, ""):
                workspace = find_workspace(raw)
            if (raw := params.get("connection_id")) not in (None, ""):
                connection = (
                    CrmConnection.objects.select_related("workspace")
                    .filter(pk=int_param("connection_id", raw))
                    .first()
                )
                if connection is None:
                    raise ApiError(f"no CRM connection with id {raw}", code="not_found", status=404)
        try:
            return target_for(
                provider=str(params.get("provider") or ""),
                workspace=workspace,
                connection=connection,
                everything=str(params.get("all", "")).lower() in TRUE,
            )
        except ConduitError as exc:
            raise ApiError(exc.user_message, code=exc.error_code, status=400) from None


def int_param(name: str, raw: Any) -> int:
    try:
        return int(str(raw))
    except ValueError:
        raise ApiError(f"{name} must be an integer", code="invalid", status=400) from None
