"""Plain values for the Integrations page's connection cards (templates run no queries): the
connection's state, its health verdict in plain words, and what an admin can do next. A CRM
connected by OAuth offers Connect / Reconnect; one connected with an API key (Odoo) offers the
credentials form and shows what the key reaches (never more of the key than its last 4
characters)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from integrations.models import ConnectionHealth, CrmConnection
from integrations.providers import get_provider

GUIDANCE = {
    "refresh_token_revoked": (
        "The CRM no longer accepts Conduit's access (it was revoked or the app was uninstalled). "
        "Reconnect to resume."
    ),
    "access_token_rejected": "The CRM refused Conduit's access token twice. Reconnect to resume.",
    "refresh_token_missing": "Conduit holds no refresh token for this connection. Reconnect to resume.",
    "missing_scope": "The connection lacks permissions Conduit needs. Reconnect and grant: {missing}.",
}
# A CRM connected with an API key (Odoo) has no token to refresh and no consent to give again:
# the customer makes a new key, or grants the user rights, and updates the credentials.
KEY_GUIDANCE = {
    "access_token_rejected": (
        "{crm} refused Conduit's API key. {crm} API keys expire (after three months at most) and can "
        "be deleted in {crm}: create a new key (Preferences → Account Security → New API Key) and "
        "update the credentials to resume."
    ),
    "missing_scope": (
        "The {crm} user lacks access rights Conduit needs ({missing}). Grant them in {crm}, then "
        "update the credentials to resume."
    ),
}
API_LABELS = {"json2": "JSON-2", "xmlrpc": "XML-RPC"}


# The health verdict in plain words ({crm}: the CRM's name); error reasons use GUIDANCE.
HEALTH_WORDS = {
    "ok": "The last check reached {crm} and Conduit's access works.",
    "connected": "Connected just now: {crm} accepted Conduit's access.",
    "scope_drift": (
        "Conduit's access works, but the connection lacks permissions Conduit now needs: {missing}. "
        "Reconnect and grant them."
    ),
    "missing_scope": "{crm} refused the check for want of permissions: {missing}. Reconnect and grant them.",
    "rate_limited": "{crm} asked Conduit to slow down (rate limit). Conduit checks again within the hour.",
    "unreachable": "{crm} did not answer properly ({code}). Conduit checks again within the hour.",
    "check_rejected": "{crm} rejected the check ({code}). If this persists, reconnect.",
    "auth_failed": (
        "{crm} refused Conduit's access token on {runs}. If it goes on, the connection stops and "
        "needs a reconnect."
    ),
}
KEY_HEALTH_WORDS = {
    "missing_scope": (
        "{crm} refused the check for want of access rights: {missing}. Grant them to the {crm} user."
    ),
    "check_rejected": "{crm} rejected the check ({code}). If this persists, update the credentials.",
    "auth_failed": (
        "{crm} refused Conduit's API key on {runs}. {crm} API keys expire: if it goes on, the "
        "connection stops until the credentials are updated with a new key."
    ),
}
HEALTH_BADGES = {
    "ok": ("badge-ok", "Healthy"),
    "warning": ("badge-warn", "Warning"),
    "error": ("badge-bad", "Error"),
}


def plain_code(code: str) -> str:
    """http_503 -> HTTP 503; other codes read as they are (they are in the runbook)."""
    return f"HTTP {code[5:]}" if code.startswith("http_") else code


def health_for(row: ConnectionHealth | None, label: str, *, uses_oauth: bool = True) -> dict[str, Any] | None:
    """The health block of a card, in plain values (templates run no queries)."""
    if row is None:
        return None
    details = row.details_json or {}
    missing = ", ".join((details.get("scopes") or {}).get("missing") or []) or "the scopes listed by the CRM"
    words = HEALTH_WORDS if uses_oauth else {**HEALTH_WORDS, **KEY_HEALTH_WORDS}
    guidance = GUIDANCE if uses_oauth else {**GUIDANCE, **KEY_GUIDANCE}
    template = words.get(row.reason) or guidance.get(row.reason) or "{crm} check: {code}."
    badge, status_label = HEALTH_BADGES.get(row.status, ("badge-off", row.status))
    code = str(details.get("error_code") or row.reason)
    n = row.consecutive_auth_failures
    runs = "the last check" if n <= 1 else f"the last {n} checks in a row"
    return {
        "status": row.status,
        "status_label": status_label,
        "badge": badge,
        "reason": row.reason,
        "words": template.format(crm=label, missing=missing, code=plain_code(code), runs=runs),
        "last_checked_at": row.last_checked_at,
        "last_ok_at": row.last_ok_at,
        "latency_ms": details.get("latency_ms"),
        "needs_reconnect": row.reason in ("scope_drift", "missing_scope", "auth_failed"),
    }


def guidance_for(conn: CrmConnection | None, label: str, *, uses_oauth: bool) -> str:
    """What to do about the connection's last error, in one or two sentences."""
    if conn is None or not conn.last_error:
        return ""
    missing = ", ".join(conn.external_account_json.get("missing_scopes", []))
    missing = missing or "the scopes listed by the CRM"
    guidance = GUIDANCE if uses_oauth else {**GUIDANCE, **KEY_GUIDANCE}
    return guidance.get(conn.last_error, conn.last_error).format(crm=label, missing=missing)


def credentials_facts(conn: CrmConnection | None) -> dict[str, str]:
    """What an API-key connection reaches: the instance, the database, the login, the API and
    server version, and the key's last 4 characters (the only part of it ever shown)."""
    details = conn.external_account_json if conn else {}
    api = str(details.get("api") or "")
    return {
        "url": str(details.get("url") or details.get("instance_url") or ""),
        "database": str(details.get("database") or ""),
        "login": str(details.get("login") or ""),
        "api": api,
        "api_label": API_LABELS.get(api, api),
        "version": str(details.get("version") or ""),
        "key_last4": str(details.get("key_last4") or ""),
    }


def card_for(crm: str, label: str, conn: CrmConnection | None) -> dict[str, Any]:
    """Plain values for one connection card (templates run no queries)."""
    provider = get_provider(crm)
    status = conn.status if conn else "not_connected"
    return {
        "crm": crm,
        "label": label,
        "status": status,
        "status_label": {
            "connected": "Connected",
            "error": "Needs attention",
            "pending_claim": "Pending claim",
            "not_connected": "Not connected",
        }.get(status, status),
        "account": conn.account_label if conn else "",
        "environment": conn.environment if conn else "",
        "data_centre": str(conn.external_account_json.get("data_centre") or "") if conn else "",
        "connected_at": conn.connected_at if conn else None,
        "dry_run": conn.dry_run if conn else True,
        "guidance": guidance_for(conn, label, uses_oauth=provider.uses_oauth),
        "required_scopes": provider.required_scopes,
        "uses_oauth": provider.uses_oauth,
        "credentials": None if provider.uses_oauth else credentials_facts(conn),
        # the credentials form of a CRM connected with an API key (integrations-odoo-credentials)
        "credentials_url": "" if provider.uses_oauth else reverse(f"integrations-{crm}-credentials"),
        "can_connect": status in ("not_connected", "error"),
        "can_disconnect": status in ("connected", "error"),
    }
