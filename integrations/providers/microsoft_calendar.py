"""Microsoft 365 calendars through Microsoft Graph: identity-platform OAuth (offline_access,
PKCE, rotating refresh tokens), the member's calendar view by delta query (full listing of a
window, then the stored deltaLink) and change-notification subscriptions.

Facts: ../shared/provider-facts.md, "Microsoft Graph (calendar)". Every call goes through the
base's seam (`_call` / `_call_as`); this module only builds requests and reads answers.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    InvalidInstanceUrl,
    MissingScope,
    Permanent,
    ProviderError,
    TokenExpired,
)
from integrations.providers.ratelimit import Bucket
from integrations.providers.synclog import NO_CONTEXT, CallContext

CALENDAR_SCOPE = "Calendars.Read"
SCOPES = ("offline_access", "openid", "email", "User.Read", CALENDAR_SCOPE)
# The token endpoint names Graph scopes with their resource ("https://graph.microsoft.com/Calendars.Read").
GRAPH_RESOURCE = "https://graph.microsoft.com/"
PAGE_SIZE = 100
PREFER = f'odata.maxpagesize={PAGE_SIZE}, outlook.timezone="UTC"'
# Outlook event subscriptions live at most 4,230 minutes; ask for a little less.
SUBSCRIPTION_MINUTES = 4000
CHANGE_TYPES = "created,updated,deleted"
DEFAULT_RETRY_AFTER = 30.0
PRIVATE_SENSITIVITY = {"private", "confidential"}
# AADSTS codes of a refresh that needs the member back (provider-facts.md).
INTERACTION_CODES = {"50076", "50079"}
CONSENT_CODES = {"65001"}
REVOKED_ERRORS = {"invalid_grant", "interaction_required", "consent_required"}
CURSOR_CODES = {"syncstatenotfound", "resyncrequired", "syncstateinvalid"}
AADSTS_RE = re.compile(r"AADSTS(\d+)")
INSUFFICIENT_RE = re.compile(r"insufficient privileges|access is denied", re.IGNORECASE)


def api_bucket() -> Bucket:
    return Bucket.budgeted("microsoft", "graph", settings.MICROSOFT_GRAPH_REQUESTS_PER_TEN_MINUTES, 600)


def graph_scope(scope: str) -> str:
    return scope[len(GRAPH_RESOURCE) :] if scope.lower().startswith(GRAPH_RESOURCE) else scope


def aadsts_codes(body: dict[str, Any]) -> set[str]:
    codes = {str(c) for c in body.get("error_codes") or [] if isinstance(c, int | str)}
    return codes | set(AADSTS_RE.findall(str(body.get("error_description") or "")))


def error_message(body: Any, status: int) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error.get("code") or f"HTTP {status}")
        return str(body.get("error_description") or error or f"HTTP {status}")
    return f"HTTP {status}"


def graph_time(value: Any) -> datetime | None:
    """A Graph dateTimeTimeZone ({dateTime, timeZone}) as UTC. Conduit asks for UTC
    (outlook.timezone); an IANA zone is honoured, anything else is read as UTC."""
    if not isinstance(value, dict):
        return None
    parsed = parse_when(value.get("dateTime"))
    zone = str(value.get("timeZone") or "UTC")
    if parsed is None or zone.upper() in ("UTC", "ETC/UTC"):
        return parsed
    try:
        return parsed.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    except (ZoneInfoNotFoundError, ValueError):
        return parsed


class MicrosoftCalendarProvider(CalendarProvider):
    name = "microsoft"
    label = "Microsoft 365"
    required_scopes = (CALENDAR_SCOPE,)
    supports_pkce = True
    # Graph sends no standard rate-limit headers (only Retry-After on a 429).
    rate_limit_header_names = ()

    @property
    def graph(self) -> str:
        return settings.MICROSOFT_GRAPH_URL.rstrip("/")

    def authority(self) -> str:
        tenant = quote(settings.MICROSOFT_TENANT, safe="")
        return f"{settings.MICROSOFT_LOGIN_URL.rstrip('/')}/{tenant}/oauth2/v2.0"

    def missing_scopes(self, granted: tuple[str, ...] | list[str]) -> list[str]:
        have = {graph_scope(s).lower() for s in granted}
        return [s for s in self.required_scopes if s.lower() not in have]

    # --- OAuth ---
    client_setting = "MICROSOFT"

    def token_url(self) -> str:
        return f"{self.authority()}/token"

    def token_form(self) -> dict[str, str]:
        return {"scope": " ".join(SCOPES)}

    def token_scopes(self, body: dict[str, Any]) -> tuple[str, ...]:
        return tuple(graph_scope(s) for s in str(body.get("scope") or "").split())

    def authorize_url(
        self, *, state: str, redirect_uri: str, code_challenge: str | None = None, environment: str = "login"
    ) -> str:
        self._require_credentials()
        query = {
            "client_id": settings.MICROSOFT_CLIENT_ID,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "response_mode": "query",
            "scope": " ".join(SCOPES),
            "state": state,
        }
        if code_challenge:
            query |= {"code_challenge": code_challenge, "code_challenge_method": "S256"}
        return f"{self.authority()}/authorize?{urlencode(query, quote_via=quote)}"

    def revoke(self, token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT) -> None:
        """Nothing to call: the identity platform has no endpoint that revokes one app's refresh
        token (Graph's revokeSignInSessions signs the member out of every app, far too broad).
        Disconnecting deletes Conduit's copy of the tokens; the member can remove the app's
        consent at myapps.microsoft.com, and an unused refresh token dies after 90 days."""

    def identify(
        self, tokens: TokenSet, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> ExternalAccount:
        me = self._call("identify", "GET", f"{self.graph}/me", context=context, token=tokens.access_token)
        me = me if isinstance(me, dict) else {}
        email = str(me.get("mail") or me.get("userPrincipalName") or "").strip().lower()
        if not email:
            raise Permanent(self.name, "invalid_userinfo", "/me names no mail or userPrincipalName")
        return ExternalAccount(key=email, details={"email": email}, scopes=tokens.scopes, user_email=email)

    # --- API ---
    def api_bucket(self) -> Bucket:
        return api_bucket()

    def check_health(self, account: Account) -> HealthResult:
        self._call_as(account, "health_check", "GET", f"{self.graph}/me")
        return HealthResult(latency_ms=last_call_ms() or 0, details={"calendar": "me"})

    def graph_link(self, url: str) -> str:
        """A nextLink / deltaLink, refused unless it points at Conduit's Graph base: the
        member's token is never sent to another host."""
        base = urlsplit(self.graph)
        link = urlsplit(url)
        same_origin = (link.scheme, link.netloc) == (base.scheme, base.netloc)
        if not (same_origin and url.startswith(self.graph + "/")) or any(c in url for c in "\\\r\n\t "):
            raise InvalidInstanceUrl(
                self.name, None, "a Graph paging link points outside MICROSOFT_GRAPH_URL"
            )
        return url

    def list_events(
        self,
        account: Account,
        *,
        cursor: str | None,
        page: str | None,
        window: tuple[datetime, datetime],
    ) -> EventPage:
        headers = {"Prefer": PREFER}
        if page or cursor:
            link = self.graph_link(page or cursor or "")
            body = self._call_as(account, "list_events", "GET", link, headers=headers)
        else:
            params = {"startDateTime": rfc3339(window[0]), "endDateTime": rfc3339(window[1])}
            url = f"{self.graph}/me/calendarView/delta"
            body = self._call_as(account, "list_events", "GET", url, params=params, headers=headers)
        body = body if isinstance(body, dict) else {}
        events = [self.event(item) for item in body.get("value") or [] if isinstance(item, dict)]
        return EventPage(
            events=[e for e in events if e is not None],
            next_page=body.get("@odata.nextLink") or None,
            sync_cursor=body.get("@odata.deltaLink") or None,
        )

    def event(self, item: dict[str, Any]) -> CalendarEvent | None:
        if not item.get("id"):
            return None
        if "@removed" in item:
            return CalendarEvent(external_id=str(item["id"]), cancelled=True)
        all_day = bool(item.get("isAllDay"))
        start, end = item.get("start") or {}, item.get("end") or {}
        organizer = ((item.get("organizer") or {}).get("emailAddress") or {}).get("address")
        attendees = emails(
            (a.get("emailAddress") or {}).get("address")
            for a in item.get("attendees") or []
            if isinstance(a, dict) and a.get("type") != "resource"
        )
        return CalendarEvent(
            external_id=str(item["id"]),
            ical_uid=str(item.get("iCalUId") or ""),
            title=str(item.get("subject") or ""),
            starts_at=utc_midnight(start.get("dateTime")) if all_day else graph_time(start),
            ends_at=utc_midnight(end.get("dateTime")) if all_day else graph_time(end),
            all_day=all_day,
            organizer=str(organizer or "").strip().lower(),
            attendees=attendees,
            private=str(item.get("sensitivity") or "").lower() in PRIVATE_SENSITIVITY,
            cancelled=bool(item.get("isCancelled")),
            updated_at=parse_when(item.get("lastModifiedDateTime")),
        )

    def expiry(self) -> str:
        return rfc3339(timezone.now() + timedelta(minutes=SUBSCRIPTION_MINUTES))

    def subscription(self, answer: Any, fallback_id: str = "") -> PushChannel:
        answer = answer if isinstance(answer, dict) else {}
        expires_at = parse_when(answer.get("expirationDateTime"))
        if not (answer.get("id") or fallback_id) or expires_at is None:
            raise Permanent(self.name, "invalid_subscription_response", "the answer lacks id or expiry")
        return PushChannel(str(answer.get("id") or fallback_id), "", expires_at)

    def watch(self, account: Account, *, address: str, secret: str, channel_id: str) -> PushChannel:
        """`channel_id` is unused: Graph names the subscription itself."""
        body = {
            "changeType": CHANGE_TYPES,
            "notificationUrl": address,
            "lifecycleNotificationUrl": address,
            "resource": "me/events",
            "expirationDateTime": self.expiry(),
            "clientState": secret,
        }
        answer = self._call_as(
            account, "watch", "POST", f"{self.graph}/subscriptions", json=body, secrets=(secret,)
        )
        return self.subscription(answer)

    def renew(self, account: Account, channel: PushChannel, *, address: str, secret: str) -> PushChannel:
        """PATCH the subscription's expiry; one Graph no longer knows (404: it ended or was
        removed) is replaced by a new subscription."""
        url = f"{self.graph}/subscriptions/{quote(channel.channel_id, safe='')}"
        try:
            answer = self._call_as(account, "renew", "PATCH", url, json={"expirationDateTime": self.expiry()})
        except Permanent as exc:
            if exc.http_status != 404:
                raise
            return self.watch(account, address=address, secret=secret, channel_id=channel.channel_id)
        return self.subscription(answer, channel.channel_id)

    def stop(self, account: Account, channel: PushChannel) -> None:
        url = f"{self.graph}/subscriptions/{quote(channel.channel_id, safe='')}"
        try:
            self._call_as(account, "stop_channel", "DELETE", url)
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
        body = body if isinstance(body, dict) else {}
        message = short(error_message(body, status))
        oauth_error = body.get("error")
        if isinstance(oauth_error, str):  # the token endpoint
            return self.token_error(oauth_error, aadsts_codes(body), operation, message, status)
        graph_code = str((oauth_error or {}).get("code") or "") if isinstance(oauth_error, dict) else ""
        if status == 401:
            return TokenExpired(self.name, None, message, http_status=status)
        if status == 410 or graph_code.lower() in CURSOR_CODES:
            return CursorExpired(self.name)
        if status == 403 and INSUFFICIENT_RE.search(message):
            return MissingScope(self.name, list(self.required_scopes), message, http_status=status)
        code = error_code(graph_code, f"http_{status}")
        return Permanent(self.name, code, message, details={"code": graph_code}, http_status=status)

    def token_error(
        self, error: str, codes: set[str], operation: str, message: str, status: int
    ) -> ProviderError:
        if error in ("invalid_client", "unauthorized_client"):
            return Permanent(self.name, "invalid_client", message, http_status=status)
        if operation == "refresh" and error in REVOKED_ERRORS:
            if error == "interaction_required" or codes & INTERACTION_CODES:
                return AuthRevoked(self.name, "interaction_required", message, http_status=status)
            if error == "consent_required" or codes & CONSENT_CODES:
                return AuthRevoked(self.name, "consent_required", message, http_status=status)
            return AuthRevoked(self.name, None, message, http_status=status)
        if error == "invalid_grant":
            return Permanent(self.name, "invalid_authorization_code", message, http_status=status)
        return Permanent(self.name, error_code(error, f"http_{status}"), message, http_status=status)
