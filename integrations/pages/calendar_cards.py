"""Plain values for Settings > Calendar (templates run no queries): one card per calendar
provider for the signed-in member, its state and last error in plain words, the flag or allowlist
that keeps an action unavailable, and the member's upcoming meetings (a private one only as
"Busy"). Which flag governs which button is in ACTION_FEATURES, the one place to change it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.utils import timezone

from integrations.calendars.flags import CalendarForbidden, Feature, refusal
from integrations.models import CALENDAR_PROVIDER_CHOICES, ExternalCalendarConnection, ExternalCalendarEvent

SHORT_NAMES = {"google": "Google", "microsoft": "Microsoft"}
# Connect and Reconnect run the OAuth flow (the member's allowlist); Sync now acts on one connection
# (both allowlists), as calendar_connect.py's views check them. Disconnect is never refused: a member
# can always withdraw Conduit's access.
ACTION_FEATURES = {
    "connect": Feature.OAUTH,
    "sync": Feature.SYNC,
}
ACTION_LABELS = {"connect": "Reconnect", "sync": "Sync now"}
# Errors only a new grant fixes: the card says "Needs reconnect" and offers Reconnect beside them.
RECONNECT_CODES = frozenset(
    {
        "refresh_token_revoked",
        "refresh_token_missing",
        "access_token_rejected",
        "token_expired",
        "missing_scope",
    }
)
ERROR_WORDS = {
    "refresh_token_revoked": (
        "{short} no longer accepts Conduit's access (it was revoked, or the account's password "
        "changed). Reconnect to resume."
    ),
    "refresh_token_missing": "Conduit holds no refresh token for this calendar. Reconnect to resume.",
    "access_token_rejected": "{short} refused Conduit's access token twice. Reconnect to resume.",
    "token_expired": "{short} says Conduit's access has expired. Reconnect to resume.",
    "missing_scope": (
        "{short} did not grant the calendar permission Conduit needs. Reconnect and allow access "
        "to your calendar."
    ),
    "rate_limited": (
        "{short} asked Conduit to slow down (rate limit). Conduit waits and tries again by itself; "
        "there is nothing to do."
    ),
    "full_sync_required": (
        "{short} asked Conduit to read the calendar again from the start (its sync token expired). "
        "The next sync does it by itself; no meeting is stored twice."
    ),
    "network_error": "Conduit could not reach {short}. It tries again by itself; there is nothing to do.",
    "transient": "{short} did not answer properly. Conduit tries again by itself; there is nothing to do.",
    "http_5xx": (
        "{short} had a problem on its side ({code}). Conduit tries again by itself; there is nothing to do."
    ),
}
OTHER_ERROR = "{short} stopped syncing this calendar ({code}). If it goes on, reconnect."
STATUS_BADGES = {
    "connected": ("badge-ok", "Connected"),
    "needs_reconnect": ("badge-bad", "Needs reconnect"),
    "error": ("badge-bad", "Error"),
    "paused": ("badge-warn", "Paused by an operator"),
    "not_connected": ("badge-off", "Not connected"),
}
UPCOMING = 10


def plain_code(code: str) -> str:
    """http_503 -> HTTP 503; other codes read as they are (runbook 004 lists them)."""
    return f"HTTP {code[5:]}" if code.startswith("http_") else code


def error_code_of(last_error: str | None) -> str:
    """last_error is "<error_code>: <short message>" (or a bare code): its code."""
    return (last_error or "").split(":", 1)[0].strip()


def error_words(last_error: str | None, provider: str) -> str:
    """The connection's last error as a sentence and what to do about it ("" when none)."""
    code = error_code_of(last_error)
    if not code:
        return ""
    short = SHORT_NAMES.get(provider, provider)
    key = "http_5xx" if code.startswith("http_5") else code
    template = ERROR_WORDS.get(key, OTHER_ERROR)
    return template.format(short=short, code=plain_code(code))


def state_of(conn: ExternalCalendarConnection | None) -> str:
    """not_connected, connected, paused (an operator switched sync off), needs_reconnect, error."""
    if conn is None or conn.status == ExternalCalendarConnection.Status.DISCONNECTED:
        return "not_connected"
    if conn.status == ExternalCalendarConnection.Status.ERROR:
        return "needs_reconnect" if error_code_of(conn.last_error) in RECONNECT_CODES else "error"
    return "connected" if conn.sync_enabled else "paused"


def refusals_for(profile_id: int, conn: ExternalCalendarConnection | None) -> dict[str, str]:
    """Why each of the card's actions is unavailable now (flag off, not allowlisted); an action
    absent from the result may run."""
    connection_id = conn.pk if conn is not None else None
    found: dict[str, str] = {}
    for action, feature in ACTION_FEATURES.items():
        if action == "connect":  # the connect URL names the provider only, not a connection
            why = refusal(feature, provider_id=profile_id)
        elif connection_id is None:
            continue
        else:
            why = refusal(feature, provider_id=profile_id, connection_id=connection_id)
        if why is not None:
            found[action] = why.message
    return found


def page_refusals(profile_id: int, cards: Iterable[dict[str, Any]]) -> list[str]:
    """The distinct reasons shown at the top of the page, member-wide ones first."""
    reasons: list[str] = []
    for feature in (Feature.OAUTH, Feature.SYNC):
        why: CalendarForbidden | None = refusal(feature, provider_id=profile_id)
        if why is not None and why.message not in reasons:
            reasons.append(why.message)
    for card in cards:
        for message in card["refused"].values():
            if message not in reasons:
                reasons.append(message)
    return reasons


def card_for(
    provider: str,
    label: str,
    conn: ExternalCalendarConnection | None,
    *,
    profile_id: int,
    events_stored: int = 0,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Plain values for one provider's card."""
    now = now or timezone.now()
    state = state_of(conn)
    badge, status_label = STATUS_BADGES[state]
    live = conn if state != "not_connected" else None
    in_backoff = bool(live and live.backoff_until and live.backoff_until > now)
    refused = refusals_for(profile_id, live)
    return {
        "provider": provider,
        "label": label,
        "short": SHORT_NAMES.get(provider, provider),
        "state": state,
        "badge": badge,
        "status_label": status_label,
        "connection_id": live.pk if live else None,
        "account": live.account_email if live else "",
        "connected_at": live.connected_at if live else None,
        "last_synced_at": live.last_synced_at if live else None,
        "events_stored": events_stored,
        "error_code": error_code_of(live.last_error) if live else "",
        "error_words": error_words(live.last_error, provider) if live else "",
        "needs_reconnect": state == "needs_reconnect",
        "backoff_until": live.backoff_until if live and in_backoff else None,
        "error_count": live.error_count if live else 0,
        "refused": refused,
        "refused_lines": [
            {
                "action": action,
                "label": ACTION_LABELS[action] if live or action != "connect" else "Connect",
                "why": why,
            }
            for action, why in refused.items()
            if action != "sync" or state == "connected"
        ],
        "can_connect": "connect" not in refused,
        "can_sync": live is not None and state == "connected" and "sync" not in refused,
        "can_disconnect": live is not None,
    }


def meeting_for(event: ExternalCalendarEvent) -> dict[str, Any]:
    """One upcoming meeting: a private one is only "Busy" (no title, no attendees)."""
    private = event.is_private
    return {
        "id": event.pk,
        "busy": private,
        "title": "Busy" if private else (event.title or "(no title)"),
        "starts_at": event.starts_at,
        "ends_at": event.ends_at,
        "all_day": event.all_day,
        "provider": SHORT_NAMES.get(event.connection.provider, event.connection.provider),
        "customers": [] if private else list(event.customer_emails or []),
        "attendee_count": 0 if private else len(event.attendees or []),
    }


def provider_choices() -> list[tuple[str, str]]:
    return list(CALENDAR_PROVIDER_CHOICES)
