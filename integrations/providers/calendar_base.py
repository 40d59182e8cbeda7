"""What a calendar provider (Google Calendar, Microsoft Graph) adds to the provider base.

A calendar provider is a `Provider` (same HTTP seam, limiter, sync logs, metrics, closed error
set) with OAuth for one member's calendar and four calendar calls: a page of events (full or
incremental), and opening, renewing and closing a push channel. The sync engine
(integrations/calendars/) only ever sees the neutral shapes below, never a provider's JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from integrations.providers.base import Account, Provider, TokenSet
from integrations.providers.errors import Permanent
from integrations.providers.synclog import NO_CONTEXT, CallContext


def rfc3339(when: datetime) -> str:
    """`when` in UTC as `YYYY-MM-DDTHH:MM:SSZ` (what both calendar APIs take in a query)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_when(value: object) -> datetime | None:
    """A provider timestamp as an aware UTC datetime; one without a zone is taken as UTC (Graph
    sends `2026-01-05T10:00:00.0000000` with the zone apart); None when absent or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def utc_midnight(value: object) -> datetime | None:
    """The date of an all-day event (`2026-01-05`, or the date part of a timestamp) as UTC midnight."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        day = date.fromisoformat(value[:10])
    except ValueError:
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def emails(values: Iterable[object]) -> tuple[str, ...]:
    """Bare lower-cased emails, blanks dropped, first occurrence kept."""
    seen: dict[str, None] = {}
    for value in values:
        if isinstance(value, str) and (email := value.strip().lower()):
            seen.setdefault(email, None)
    return tuple(seen)


def error_code(text: object, default: str) -> str:
    """A provider's error reason (`fullSyncRequired`, `ErrorItemNotFound`) as a stable
    snake_case code for sync logs and metrics; `default` when there is none."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(text or "")).lower()
    code = re.sub(r"[^a-z0-9]+", "_", words).strip("_")[:60]
    return code or default


class CursorExpired(Permanent):
    """The sync token / delta link is no longer valid (HTTP 410 fullSyncRequired,
    syncStateNotFound): clear the cursor and run a full sync; nothing must be doubled."""

    def __init__(
        self, provider: str, message: str = "the sync cursor expired; a full sync is required"
    ) -> None:
        super().__init__(provider, "full_sync_required", message, http_status=410)


@dataclass(frozen=True)
class CalendarEvent:
    """One event as the provider last described it. `attendees` are bare lower-cased emails
    (the organizer included when the provider lists them). `cancelled` is also True for an event
    the provider reports deleted (Google status=cancelled, Graph @removed / isCancelled)."""

    external_id: str
    ical_uid: str = ""
    title: str = ""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    all_day: bool = False
    organizer: str = ""
    attendees: tuple[str, ...] = ()
    private: bool = False
    cancelled: bool = False
    updated_at: datetime | None = None


@dataclass(frozen=True)
class EventPage:
    """One page of events. `next_page` continues the same listing (Google pageToken, Graph
    @odata.nextLink); `sync_cursor` arrives only on the last page (Google nextSyncToken, Graph
    @odata.deltaLink) and is what the next incremental sync starts from."""

    events: list[CalendarEvent] = field(default_factory=list)
    next_page: str | None = None
    sync_cursor: str | None = None


@dataclass(frozen=True)
class PushChannel:
    """A push channel (Google events.watch) or subscription (Graph). `channel_id` is the channel
    id / subscription id; `resource_id` Google's resourceId (blank for Graph)."""

    channel_id: str
    resource_id: str
    expires_at: datetime


class CalendarProvider(Provider):
    """Base of the calendar providers; `name` is the binding provider value (google | microsoft).
    Both sign in with OAuth 2 (authorization code with PKCE, refresh tokens) against a token
    endpoint that takes the client id and secret in the form; a subclass names its settings
    prefix, its token URL and what else its token form carries."""

    client_setting = ""  # GOOGLE / MICROSOFT: the <prefix>_CLIENT_ID and _CLIENT_SECRET settings

    def _client(self) -> tuple[str, str]:
        """(client id, client secret); Permanent not_configured when either is missing."""
        prefix = self.client_setting
        client_id = getattr(settings, f"{prefix}_CLIENT_ID", "")
        secret = getattr(settings, f"{prefix}_CLIENT_SECRET", "")
        if not (client_id and secret):
            raise Permanent(
                self.name, "not_configured", f"{prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET are not set"
            )
        return client_id, secret

    def _require_credentials(self) -> None:
        self._client()

    def token_url(self) -> str:
        raise NotImplementedError

    def token_form(self) -> dict[str, str]:
        """Fields the token endpoint wants beside the grant and the client's credentials."""
        return {}

    def token_scopes(self, body: dict[str, Any]) -> tuple[str, ...]:
        return tuple(str(body.get("scope") or "").split())

    def _token(self, operation: str, form: dict[str, str], context: CallContext) -> TokenSet:
        client_id, secret = self._client()
        form = {**form, "client_id": client_id, "client_secret": secret, **self.token_form()}
        body = self._call(operation, "POST", self.token_url(), context=context, data=form) or {}
        if not isinstance(body, dict) or not body.get("access_token"):
            raise Permanent(self.name, "invalid_token_response", "the token response has no access token")
        expires_in = int(body.get("expires_in") or 3600)
        return TokenSet(
            access_token=str(body["access_token"]),
            # None means "keep the one you have": Google sends none on a refresh; Microsoft rotates
            # it, every answer carrying the one to store from now on.
            refresh_token=body.get("refresh_token") or None,
            expires_at=timezone.now() + timedelta(seconds=expires_in),
            scopes=self.token_scopes(body),
        )

    def exchange_code(
        self,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str | None = None,
        environment: str = "login",
        context: CallContext = NO_CONTEXT,
    ) -> TokenSet:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier:
            form["code_verifier"] = code_verifier
        return self._token("exchange_code", form, context)

    def refresh(
        self, refresh_token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> TokenSet:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self._token("refresh", form, context)

    def list_events(
        self,
        account: Account,
        *,
        cursor: str | None,
        page: str | None,
        window: tuple[datetime, datetime],
    ) -> EventPage:
        """One page of events. With `cursor` (and no `page`): the changes since that cursor.
        Without: a full listing of `window` (start, end). `page` continues either listing.
        Raises CursorExpired when the cursor (or a page of it) is no longer valid."""
        raise NotImplementedError

    def watch(self, account: Account, *, address: str, secret: str, channel_id: str) -> PushChannel:
        """Open a push channel to `address` whose notifications carry `secret`
        (Google X-Goog-Channel-Token, Graph clientState)."""
        raise NotImplementedError

    def renew(self, account: Account, channel: PushChannel, *, address: str, secret: str) -> PushChannel:
        """Extend a channel before it ends (Graph: PATCH the subscription; Google: a new channel,
        the old one stopped)."""
        raise NotImplementedError

    def stop(self, account: Account, channel: PushChannel) -> None:
        """Close a channel; one that is already gone is not an error."""
        raise NotImplementedError
