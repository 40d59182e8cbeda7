"""Google Calendar: OAuth (offline access, PKCE), the member's primary calendar's events (full
listing of a window, then incremental by sync token) and push channels (events.watch).

Facts: ../shared/provider-facts.md, "Google Calendar". Every call goes through the base's seam
(`_call` / `_call_as`); this module only builds requests and reads answers.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import requests
from django.conf import settings
from django.utils import timezone

from integrations.providers.base import (
    Account,
    ExternalAccount,
    HealthResult,
    TokenSet,
    json_or_none,
    last_call_ms,
    parse_retry_after,
    short,
)
from integrations.providers.calendar_base import (
    CalendarEvent,
    CalendarProvider,
    CursorExpired,
    EventPage,
    PushChannel,
    emails,
    error_code,
    parse_when,
    rfc3339,
    utc_midnight,
)
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    Permanent,
    ProviderError,
    RateLimited,
    TokenExpired,
)
from integrations.providers.ratelimit import Bucket
from integrations.providers.synclog import NO_CONTEXT, CallContext

log = logging.getLogger("conduit.integrations")

CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.readonly"
SCOPES = ("openid", "email", CALENDAR_SCOPE)
CALENDAR_ID = "primary"
PAGE_SIZE = 250
# usageLimits reasons of a 403 that mean "slow down", not "forbidden" (Calendar errors guide).
RATE_LIMIT_REASONS = {"userRateLimitExceeded", "rateLimitExceeded", "quotaExceeded", "dailyLimitExceeded"}
SCOPE_REASONS = {"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}
DEFAULT_RETRY_AFTER = 60.0
PRIVATE_VISIBILITY = {"private", "confidential"}
# When a watch answer names no expiration: assume a day, so the channel is renewed early.
FALLBACK_CHANNEL_LIFE = timedelta(days=1)


def api_bucket() -> Bucket:
    return Bucket.budgeted("google", "calendar", settings.GOOGLE_CALENDAR_REQUESTS_PER_MINUTE, 60)


def error_reasons(body: Any) -> list[str]:
    """Every reason a Google error answer gives: `error.errors[].reason` (Calendar v3),
    `error.details[].reason` (ErrorInfo) and `error.status`."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return []
    reasons = [
        str(item.get("reason"))
        for key in ("errors", "details")
        for item in error.get(key) or []
        if isinstance(item, dict) and item.get("reason")
    ]
    if error.get("status"):
        reasons.append(str(error["status"]))
    return reasons


def error_message(body: Any, status: int) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or f"HTTP {status}")
        return str(body.get("error_description") or error or f"HTTP {status}")
    return f"HTTP {status}"


class GoogleCalendarProvider(CalendarProvider):
    name = "google"
    label = "Google Calendar"
    required_scopes = (CALENDAR_SCOPE,)
    supports_pkce = True
    # Google's answers carry no rate-limit headers worth logging.
    rate_limit_header_names = ()

    @property
    def api(self) -> str:
        return settings.GOOGLE_CALENDAR_API_URL.rstrip("/")

    # --- OAuth ---
    client_setting = "GOOGLE"

    def token_url(self) -> str:
        return str(settings.GOOGLE_TOKEN_URL)

    def authorize_url(
        self, *, state: str, redirect_uri: str, code_challenge: str | None = None, environment: str = "login"
    ) -> str:
        self._require_credentials()
        query = {
            "response_type": "code",
            "client_id": settings.GOOGLE_CLIENT_ID,
            "redirect_uri": redirect_uri,
            "scope": " ".join(SCOPES),
            "state": state,
            "access_type": "offline",  # a refresh token
            "prompt": "consent",  # ... on every connect, also a reconnect
            "include_granted_scopes": "true",
        }
        if code_challenge:
            query |= {"code_challenge": code_challenge, "code_challenge_method": "S256"}
        return f"{settings.GOOGLE_AUTHORIZE_URL}?{urlencode(query, quote_via=quote)}"

    def revoke(self, token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT) -> None:
        try:
            self._call("revoke", "POST", settings.GOOGLE_REVOKE_URL, context=context, data={"token": token})
        except Permanent as exc:
            if exc.code != "invalid_token":  # already expired or revoked: nothing left to revoke
                raise

    def identify(
        self, tokens: TokenSet, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> ExternalAccount:
        info = self._call(
            "identify", "GET", settings.GOOGLE_USERINFO_URL, context=context, token=tokens.access_token
        )
        email = str((info or {}).get("email") or "").strip().lower() if isinstance(info, dict) else ""
        if not email:
            raise Permanent(self.name, "invalid_userinfo", "the userinfo answer names no email")
        return ExternalAccount(key=email, details={"email": email}, scopes=tokens.scopes, user_email=email)

    # --- API ---
    def api_bucket(self) -> Bucket:
        return api_bucket()

    def _api_call(self, account: Account, operation: str, method: str, path: str, **kw: Any) -> Any:
        return self._call_as(account, operation, method, self.api + path, **kw)

    def check_health(self, account: Account) -> HealthResult:
        calendar = self._api_call(account, "health_check", "GET", f"/calendars/{CALENDAR_ID}") or {}
        return HealthResult(
            latency_ms=last_call_ms() or 0,
            details={"calendar": CALENDAR_ID, "time_zone": str(calendar.get("timeZone") or "")},
        )

    def list_events(
        self,
        account: Account,
        *,
        cursor: str | None,
        page: str | None,
        window: tuple[datetime, datetime],
    ) -> EventPage:
        params: dict[str, str] = {"singleEvents": "true", "maxResults": str(PAGE_SIZE), "showDeleted": "true"}
        if cursor:
            params["syncToken"] = cursor  # a time range cannot be combined with a sync token
        else:
            params |= {"timeMin": rfc3339(window[0]), "timeMax": rfc3339(window[1])}
        if page:
            params["pageToken"] = page
        body = self._api_call(
            account,
            "list_events",
            "GET",
            f"/calendars/{CALENDAR_ID}/events",
            params=params,
        )
        body = body if isinstance(body, dict) else {}
        events = [self.event(item) for item in body.get("items") or [] if isinstance(item, dict)]
        return EventPage(
            events=[e for e in events if e is not None],
            next_page=body.get("nextPageToken") or None,
            sync_cursor=body.get("nextSyncToken") or None,
        )

    def event(self, item: dict[str, Any]) -> CalendarEvent | None:
        if not item.get("id"):
            return None
        start, end = item.get("start") or {}, item.get("end") or {}
        all_day = bool(start.get("date")) and not start.get("dateTime")
        organizer = str((item.get("organizer") or {}).get("email") or "").strip().lower()
        attendees = emails(
            a.get("email")
            for a in item.get("attendees") or []
            if isinstance(a, dict) and not a.get("resource")
        )
        return CalendarEvent(
            external_id=str(item["id"]),
            ical_uid=str(item.get("iCalUID") or ""),
            title=str(item.get("summary") or ""),
            starts_at=utc_midnight(start.get("date")) if all_day else parse_when(start.get("dateTime")),
            ends_at=utc_midnight(end.get("date")) if all_day else parse_when(end.get("dateTime")),
            all_day=all_day,
            organizer=organizer,
            attendees=attendees,
            private=item.get("visibility") in PRIVATE_VISIBILITY,
            cancelled=item.get("status") == "cancelled",
            updated_at=parse_when(item.get("updated")),
        )

    def watch(self, account: Account, *, address: str, secret: str, channel_id: str) -> PushChannel:
        body = {"id": channel_id, "type": "web_hook", "address": address, "token": secret}
        answer = self._api_call(
            account, "watch", "POST", f"/calendars/{CALENDAR_ID}/events/watch", json=body, secrets=(secret,)
        )
        answer = answer if isinstance(answer, dict) else {}
        if not answer.get("resourceId"):
            raise Permanent(self.name, "invalid_watch_response", "the watch answer names no resourceId")
        expiration = str(answer.get("expiration") or "")
        expires_at = (
            datetime.fromtimestamp(int(expiration) / 1000, tz=UTC)
            if expiration.isascii() and expiration.isdigit()
            else timezone.now() + FALLBACK_CHANNEL_LIFE
        )
        return PushChannel(str(answer.get("id") or channel_id), str(answer["resourceId"]), expires_at)

    def renew(self, account: Account, channel: PushChannel, *, address: str, secret: str) -> PushChannel:
        """Google channels cannot be extended: open a new one, then stop the old one. Failing to
        stop the old one does not fail the renewal (it ends by itself at its expiry, and the
        notifications it still sends name a channel id the connection no longer holds)."""
        fresh = self.watch(account, address=address, secret=secret, channel_id=str(uuid.uuid4()))
        try:
            self.stop(account, channel)
        except ProviderError as exc:
            log.warning(
                "google: the replaced push channel was not stopped: %s",
                exc.code,
                extra={"category": "provider", "error_code": exc.code},
            )
        return fresh

    def stop(self, account: Account, channel: PushChannel) -> None:
        body = {"id": channel.channel_id, "resourceId": channel.resource_id}
        try:
            self._api_call(account, "stop_channel", "POST", "/channels/stop", json=body)
        except Permanent as exc:
            if exc.http_status != 404:  # already gone
                raise

    # --- error mapping ---
    def default_retry_after(self, resp: requests.Response) -> float:
        return DEFAULT_RETRY_AFTER

    def _message(self, resp: requests.Response) -> str:
        return error_message(json_or_none(resp), resp.status_code)

    def classify_client_error(self, resp: requests.Response, operation: str) -> ProviderError:
        status = resp.status_code
        body = json_or_none(resp)
        message = short(error_message(body, status))
        oauth_error = body.get("error") if isinstance(body, dict) else None
        if isinstance(oauth_error, str):  # the token, revoke and userinfo endpoints
            if oauth_error == "invalid_grant":
                if operation == "refresh":
                    return AuthRevoked(self.name, None, message, http_status=status)
                return Permanent(self.name, "invalid_authorization_code", message, http_status=status)
            if oauth_error in ("invalid_client", "unauthorized_client"):
                return Permanent(self.name, "invalid_client", message, http_status=status)
            if status == 401:
                return TokenExpired(self.name, None, message, http_status=status)
            return Permanent(
                self.name, error_code(oauth_error, f"http_{status}"), message, http_status=status
            )
        reasons = error_reasons(body)
        if status == 401:
            return TokenExpired(self.name, None, message, http_status=status)
        if status == 410:
            return CursorExpired(self.name)
        if status == 403 and RATE_LIMIT_REASONS & set(reasons):
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            return RateLimited(
                self.name,
                "rate_limited",
                message,
                retry_after=DEFAULT_RETRY_AFTER if retry_after is None else retry_after,
                http_status=status,
            )
        if status == 403 and SCOPE_REASONS & set(reasons):
            return MissingScope(self.name, list(self.required_scopes), message, http_status=status)
        code = error_code(reasons[0] if reasons else "", f"http_{status}")
        return Permanent(self.name, code, message, details={"reasons": reasons}, http_status=status)
