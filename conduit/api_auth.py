"""API authentication: a workspace API token (Authorization: Bearer cdt_...), an operator token
(Bearer cds_..., for /api/v1/admin/* and the system-wide reads) or a session.

The token is resolved by WorkspaceScopeMiddleware (which also opens the workspace scope);
this class only turns the result into DRF's (user, auth) pair or a clear 401.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from conduit.models import STAFF_TOKEN_PREFIX
from conduit.tenancy import bearer_token

if TYPE_CHECKING:
    from rest_framework.views import APIView


class WorkspaceTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        raw = bearer_token(request._request)
        if raw is None or raw.startswith(STAFF_TOKEN_PREFIX):
            return None
        token = getattr(request._request, "api_token", None)
        if token is None:
            raise exceptions.AuthenticationFailed("invalid or revoked API token", code="invalid_token")
        return (token.created_by, token)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="conduit"'


class HasWorkspace(permissions.BasePermission):
    """The caller acts for a workspace: via its API token or a signed-in member."""

    message = "sign in or send a workspace API token (Authorization: Bearer cdt_...)"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return getattr(request._request, "workspace", None) is not None


class StaffTokenAuthentication(authentication.BaseAuthentication):
    """An operator token (Bearer cds_...); it acts as its staff user."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        raw = bearer_token(request._request)
        if raw is None or not raw.startswith(STAFF_TOKEN_PREFIX):
            return None
        token = getattr(request._request, "staff_token", None)
        if token is None:
            raise exceptions.AuthenticationFailed("invalid or revoked operator token", code="invalid_token")
        return (token.user, token)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="conduit-operators"'


class IsStaff(permissions.BasePermission):
    """Operators only: a staff login or an operator token."""

    message = "operators only: send an operator token (Authorization: Bearer cds_...) or sign in as staff"

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)
