"""Plain values for the Integrations page's connection cards (templates run no queries): the
connection's state, its health verdict in plain words, and what an admin can do next. A CRM
connected by OAuth offers Connect / Reconnect; one connected with an API key (Odoo) offers the
credentials form and shows what the key reaches (never more of the key than its last 4
characters); an ATS (Greenhouse, Lever, Workday) offers its credentials form and shows the
account, the secret's last 4 characters and when the credentials were set."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.urls import reverse
from django.utils import timezone

from integrations.connections.ats_credentials import FORMS as ATS_FORMS
from integrations.ledger import ledger
from integrations.models import ConnectionHealth, CrmConnection
from integrations.pages.previews import words_for
from integrations.providers import get_provider

NOT_GRANTED = "{crm} did not grant the permissions Conduit needs: {missing}. Reconnect and grant them."
GUIDANCE = {
    "refresh_token_revoked": (
        "{crm} no longer accepts Conduit's access (it was revoked or the app was uninstalled). "
        "Reconnect to resume."
    ),
    "access_token_rejected": "{crm} refused Conduit's access token twice. Reconnect to resume.",
    "refresh_token_missing": "Conduit holds no refresh token for this connection. Reconnect to resume.",
    "missing_scope": NOT_GRANTED,
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
# An ATS connected with typed credentials (Greenhouse, Lever, Workday): the customer rotates or
# re-issues them at the ATS and updates the credentials.
ATS_GUIDANCE = {
    "credentials_invalid": (
        "{crm} refused Conduit's credentials: they were rotated, revoked or deleted. Update the "
        "credentials to resume."
    ),
    "access_token_rejected": (
        "{crm} refused Conduit's credentials twice in a row. Update the credentials to resume."
    ),
    "refresh_token_missing": (
        "Conduit holds no credentials for this connection. Update the credentials to resume."
    ),
    "missing_scope": (
        "The {crm} credentials lack permissions Conduit needs ({missing}). Grant them in {crm}, then "
        "update the credentials to resume."
    ),
}
# Any other error: its code as recorded (the runbook lists them) and the way out.
OTHER_ERROR = {
    True: "{crm} stopped working with this connection ({code}). Reconnect to resume.",
    False: "{crm} stopped working with this connection ({code}). Update the credentials to resume.",
}
API_LABELS = {"json2": "JSON-2", "xmlrpc": "XML-RPC"}


# The health verdict in plain words ({crm}: the CRM's name); error reasons use GUIDANCE.
HEALTH_WORDS = {
    "ok": "The last check reached {crm} and Conduit's access works.",
    "connected": (
        "Connected on {connected}: {crm} accepted Conduit's access. Conduit checks it again every hour."
    ),
    "scope_drift": (
        "Conduit's access works, but {crm} has not granted permissions Conduit now needs: {missing}. "
        "Reconnect and grant them."
    ),
    "missing_scope": NOT_GRANTED,
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
        "The {crm} user lacks access rights Conduit needs: {missing}. Grant them to the {crm} user."
    ),
    "check_rejected": "{crm} rejected the check ({code}). If this persists, update the credentials.",
    "auth_failed": (
        "{crm} refused Conduit's API key on {runs}. {crm} API keys expire: if it goes on, the "
        "connection stops until the credentials are updated with a new key."
    ),
}
ATS_HEALTH_WORDS = {
    "missing_scope": "The {crm} credentials lack permissions Conduit needs: {missing}. Grant them in {crm}.",
    "check_rejected": "{crm} rejected the check ({code}). If this persists, update the credentials.",
    "auth_failed": (
        "{crm} refused Conduit's credentials on {runs}. If it goes on, the connection stops until the "
        "credentials are updated."
    ),
}
HEALTH_BADGES = {
    "ok": ("badge-ok", "Healthy"),
    "warning": ("badge-warn", "Warning"),
    "error": ("badge-bad", "Error"),
}


# Only connected connections are checked: one that needs attention gets no new verdict, and its
# card says why instead of repeating the alert above it.
STOPPED_WORDS = (
    "Conduit does not check a connection that needs attention: the hourly checks resume once {fix}."
)
STOPPED_FIX = {True: "you reconnect", False: "the credentials are updated"}


def plain_code(code: str) -> str:
    """http_503 -> HTTP 503; other codes read as they are (they are in the runbook)."""
    return f"HTTP {code[5:]}" if code.startswith("http_") else code


def when_text(moment: datetime) -> str:
    """7 Dec 2026, 05:04 UTC"""
    moment = timezone.localtime(moment)
    return f"{moment.day} {moment:%b %Y, %H:%M} {moment:%Z}"


def word_tables(uses_oauth: bool, crm: str) -> tuple[dict[str, str], dict[str, str]]:
    """The health words and the error guidance of this kind of connection: OAuth, API key
    (Odoo) or ATS credentials."""
    if uses_oauth:
        return HEALTH_WORDS, GUIDANCE
    if crm in ATS_FORMS:
        return {**HEALTH_WORDS, **ATS_HEALTH_WORDS}, {**GUIDANCE, **ATS_GUIDANCE}
    return {**HEALTH_WORDS, **KEY_HEALTH_WORDS}, {**GUIDANCE, **KEY_GUIDANCE}


def health_for(
    row: ConnectionHealth | None, label: str, *, uses_oauth: bool = True, conn: CrmConnection | None = None
) -> dict[str, Any] | None:
    """The health block of a card, in plain values (templates run no queries). With the
    connection: its real connect time in the "connected" verdict, and no verdict words while it
    needs attention (nothing checks it then)."""
    if row is None:
        return None
    stopped = conn is not None and conn.status == CrmConnection.Status.ERROR
    details = row.details_json or {}
    missing = ", ".join((details.get("scopes") or {}).get("missing") or []) or "the scopes listed by the CRM"
    words, guidance = word_tables(uses_oauth, conn.crm if conn else "")
    template = words.get(row.reason) or guidance.get(row.reason) or "{crm} check: {code}."
    badge, status_label = HEALTH_BADGES.get(row.status, ("badge-off", row.status))
    code = str(details.get("error_code") or row.reason)
    n = row.consecutive_auth_failures
    runs = "the last check" if n <= 1 else f"the last {n} checks in a row"
    connected = when_text(conn.connected_at if conn and conn.connected_at else row.last_checked_at)
    if stopped:
        template = STOPPED_WORDS.format(fix=STOPPED_FIX[uses_oauth])
    return {
        "status": row.status,
        "status_label": status_label,
        "badge": badge,
        "reason": row.reason,
        "words": template.format(
            crm=label, missing=missing, code=plain_code(code), runs=runs, connected=connected
        ),
        "last_checked_at": row.last_checked_at,
        "last_ok_at": row.last_ok_at,
        "latency_ms": details.get("latency_ms"),
        # a warning that asks for a reconnect (a connection in error asks in the card's alert)
        "needs_reconnect": not stopped and row.reason in ("scope_drift", "missing_scope", "auth_failed"),
        "stopped": stopped,
    }


def guidance_for(conn: CrmConnection | None, label: str, *, uses_oauth: bool) -> str:
    """What to do about the connection's last error, in one or two sentences (a connection in
    error always gets one: its card's Reconnect / Update credentials sits beside it)."""
    if conn is None or not (conn.last_error or conn.status == CrmConnection.Status.ERROR):
        return ""
    missing = ", ".join(conn.external_account_json.get("missing_scopes", []))
    missing = missing or "the scopes listed by the CRM"
    _, guidance = word_tables(uses_oauth, conn.crm)
    other = OTHER_ERROR[uses_oauth].format(crm=label, code=conn.last_error or "no reason recorded")
    template = guidance.get(conn.last_error)
    return template.format(crm=label, missing=missing) if template else other


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


def ats_facts(crm: str, conn: CrmConnection | None) -> dict[str, Any]:
    """What an ATS connection reaches, in (label, value) rows, and the secret's last 4
    characters with when the credentials were set (never more of a secret)."""
    details = conn.external_account_json if conn else {}
    rows: list[tuple[str, str]] = []
    if crm == "greenhouse":
        name = str(details.get("organization_name") or "")
        org = str(details.get("organization_id") or "")
        rows.append(("Organization", f"{name} ({org})" if name and org else name or org or "not named"))
        user = str(details.get("user_id") or "")
        acting = f"user {user}" if details.get("acting_as") == "user" else "the credential's service account"
        rows.append(("Notes written as", acting))
    elif crm == "lever":
        rows.append(("API", str(details.get("api_host") or "")))
        rows.append(("Users the key reads", str(details.get("users") or "")))
    else:
        rows.append(("Host", str(details.get("host") or "")))
        rows.append(("Tenant", str(details.get("tenant") or "")))
    set_at = str(details.get("credentials_set_at") or "")
    return {
        "rows": rows,
        "key_last4": str(details.get("key_last4") or ""),
        "set_at": datetime.fromisoformat(set_at) if set_at else None,
    }


def revoke_hint(crm: str) -> str:
    """Where the customer deletes typed credentials Conduit cannot revoke (Odoo's key, an ATS')."""
    return ATS_FORMS[crm].revoke_hint if crm in ATS_FORMS else "Preferences → Account Security"


def account_text(conn: CrmConnection) -> str:
    return conn.account_label


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
        "account": account_text(conn) if conn else "",
        "environment": conn.environment if conn else "",
        "data_centre": str(conn.external_account_json.get("data_centre") or "") if conn else "",
        "connected_at": conn.connected_at if conn else None,
        "dry_run": conn.dry_run if conn else True,
        "guidance": guidance_for(conn, label, uses_oauth=provider.uses_oauth),
        "sends": words_for(crm).sends,  # what Conduit writes there, in the CRM's own words
        "required_scopes": provider.required_scopes,
        "uses_oauth": provider.uses_oauth,
        "credentials": None if provider.uses_oauth or crm in ATS_FORMS else credentials_facts(conn),
        "ats": ats_facts(crm, conn) if crm in ATS_FORMS else None,
        "takes_writes": provider.supports_writes,
        # where the customer deletes credentials Conduit cannot revoke (Odoo's key, the ATS')
        "revoke_hint": revoke_hint(crm),
        # the credentials form of a CRM connected with an API key (integrations-odoo-credentials)
        "credentials_url": "" if provider.uses_oauth else reverse(f"integrations-{crm}-credentials"),
        # when a waiting write is tried again (cards/next_attempt.html); live connections only
        "next_attempt_at": (
            ledger().next_attempt_at(conn) if status == "connected" and conn and not conn.dry_run else None
        ),
        "can_connect": status in ("not_connected", "error"),
        "can_disconnect": status in ("connected", "error"),
    }
