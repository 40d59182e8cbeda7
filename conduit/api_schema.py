"""How the OpenAPI schema (drf-spectacular) describes Conduit's two bearer tokens. Imported by
conduit.urls, so the extensions are registered before the schema is generated."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class WorkspaceTokenScheme(OpenApiAuthenticationExtension):
    target_class = "conduit.api_auth.WorkspaceTokenAuthentication"
    name = "workspaceToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A workspace API token (cdt_...), created in Settings → API tokens.",
        }


class StaffTokenScheme(OpenApiAuthenticationExtension):
    target_class = "conduit.api_auth.StaffTokenAuthentication"
    name = "operatorToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An operator token (cds_...), created by a staff user in Settings.",
        }


def only_api_v1(endpoints: list[tuple[str, str, str, Any]], **kwargs: Any) -> list[tuple[str, str, str, Any]]:
    """PREPROCESSING_HOOKS: the schema documents /api/v1; the playbooks' twins share its views
    (runbook 003's /crm/..., runbook 004's /api/admin/calendar/jobs/run)."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/v1/")]
