"""Runbook 004's kill switches and allowlists, read at call time from settings.

Four flags, one per kind of calendar operation (CALENDAR_OAUTH_ENABLED, CALENDAR_SYNC_ENABLED,
CALENDAR_JOBS_ENABLED, CALENDAR_WEBHOOK_ENABLED), and two allowlists (CALENDAR_ALLOWLIST_PROVIDER_IDS:
profiles.id values; CALENDAR_ALLOWLIST_CONNECTION_IDS: external_calendar_connections.id values),
where "*" allows everyone. A refused operation raises CalendarForbidden, which the views answer
with 403 and the card explains in words.
"""

from __future__ import annotations

from enum import StrEnum

from django.conf import settings


class Feature(StrEnum):
    OAUTH = "oauth"
    SYNC = "sync"
    JOBS = "jobs"
    WEBHOOK = "webhook"


FLAG_SETTINGS = {
    Feature.OAUTH: "CALENDAR_OAUTH_ENABLED",
    Feature.SYNC: "CALENDAR_SYNC_ENABLED",
    Feature.JOBS: "CALENDAR_JOBS_ENABLED",
    Feature.WEBHOOK: "CALENDAR_WEBHOOK_ENABLED",
}
WORDS = {
    Feature.OAUTH: "Connecting calendars",
    Feature.SYNC: "Calendar sync",
    Feature.JOBS: "The calendar job runner",
    Feature.WEBHOOK: "Calendar push notifications",
}


class CalendarForbidden(Exception):
    """A calendar operation refused by a flag or an allowlist; `code` names which, the message
    says it in one line (shown on the card and in the 403's JSON)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def enabled(feature: Feature) -> bool:
    return bool(getattr(settings, FLAG_SETTINGS[feature]))


def listed(allowlist: list[str], value: int | str | None) -> bool:
    return "*" in allowlist or (value is not None and str(value) in allowlist)


def refusal(
    feature: Feature, *, provider_id: int | None = None, connection_id: int | None = None
) -> CalendarForbidden | None:
    """Why this operation may not run now, or None. Each id given is checked against its
    allowlist; an id not given is not checked (connecting has no connection id yet)."""
    if not enabled(feature):
        return CalendarForbidden(
            "calendar_disabled", f"{WORDS[feature]} is turned off ({FLAG_SETTINGS[feature]}=false)."
        )
    if provider_id is not None and not listed(settings.CALENDAR_ALLOWLIST_PROVIDER_IDS, provider_id):
        return CalendarForbidden(
            "calendar_not_allowlisted",
            "Calendar sync is not open to this member yet (not in CALENDAR_ALLOWLIST_PROVIDER_IDS).",
        )
    if connection_id is not None and not listed(settings.CALENDAR_ALLOWLIST_CONNECTION_IDS, connection_id):
        return CalendarForbidden(
            "calendar_not_allowlisted",
            "This calendar connection is not open yet (not in CALENDAR_ALLOWLIST_CONNECTION_IDS).",
        )
    return None


def check(feature: Feature, *, provider_id: int | None = None, connection_id: int | None = None) -> None:
    """Raise CalendarForbidden when the operation may not run."""
    if (refused := refusal(feature, provider_id=provider_id, connection_id=connection_id)) is not None:
        raise refused
