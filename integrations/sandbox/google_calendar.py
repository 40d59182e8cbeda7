"""The Google Calendar sandbox: Google OAuth (consent picking the member, PKCE, offline refresh
tokens, revoke, userinfo) and Calendar v3's primary calendar: events.list with paging, sync tokens
and 410 fullSyncRequired, events.watch push channels (notifications with the X-Goog-* headers)
and channels.stop, with Google's error shapes (401 authError, 403/429 rateLimitExceeded)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from email.utils import formatdate
from typing import Any

from integrations.sandbox.calendar_app import CalendarApp
from integrations.sandbox.calendar_data import (
    CalendarState,
    CalEvent,
    CalUser,
    PageCursor,
    parse_time,
    rfc3339,
)
from integrations.sandbox.common import Reply, Request, iso, json_reply, setting
from integrations.sandbox.faults import Fault
from integrations.sandbox.oauth import client_ok
from integrations.sandbox.pages import Section

CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.readonly"
CALENDAR = re.compile(r"^/calendar/v3/calendars/([^/]+)(/events(?:/watch)?)?$")
CHANNEL_ID = re.compile(r"^[A-Za-z0-9\-_+/=]{1,64}$")
MAX_RESULTS = 2500


@dataclass
class Channel:
    id: str
    resource_id: str
    resource_uri: str
    email: str
    address: str
    token: str
    expiration_ms: int
    messages: int = 0
    stopped: bool = False


def g_error(status: int, reason: str, message: str, domain: str = "global", **extra: str) -> Reply:
    error = {"domain": domain, "reason": reason, "message": message, **extra}
    return json_reply(status, {"error": {"errors": [error], "code": status, "message": message}})


def bad_request(message: str, location: str = "") -> Reply:
    extra = {"locationType": "parameter", "location": location} if location else {}
    return g_error(400, "invalid", message, **extra)


class GoogleState(CalendarState):
    DEFAULT_CONFIG = {
        **CalendarState.DEFAULT_CONFIG,
        "rate_limit_status": 403,
        "channel_max_seconds": 7 * 86400,
    }
    cursor_prefix = "CPsbx"

    def seed_channels(self) -> None:
        self.channels: dict[str, Channel] = {}

    def on_change(self, user: CalUser, event: CalEvent, change: str) -> None:
        for channel in self.channels.values():
            if channel.email == user.email and not channel.stopped:
                self.push(channel, "exists")

    def push(self, channel: Channel, resource_state: str) -> None:
        now = self.clock()
        if channel.expiration_ms <= now * 1000:
            return
        channel.messages += 1
        headers = {
            "X-Goog-Channel-ID": channel.id,
            "X-Goog-Channel-Expiration": formatdate(channel.expiration_ms / 1000, usegmt=True),
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Resource-URI": channel.resource_uri,
            "X-Goog-Resource-State": resource_state,
            "X-Goog-Message-Number": str(channel.messages),
        }
        if channel.token:
            headers["X-Goog-Channel-Token"] = channel.token
        timeout = self.config["delivery_timeout"]
        self.outbox.send_later(
            "push", channel.address, headers, "", target=channel.id, now=now, timeout=timeout
        )


class GoogleApp(CalendarApp):
    provider = "google"
    title = "Google Calendar"
    account = "your Google Calendar"
    client_setting = "GOOGLE_CLIENT_ID"
    decision_path = "/o/oauth2/v2/auth/decision"
    deny_description = "The user denied access"
    grant_prefix = "1//sbx-"
    access_prefix = "ya29.sbx-"
    default_scopes = ("openid", "email", CALENDAR_SCOPE)
    state: GoogleState

    def __init__(self) -> None:
        super().__init__(GoogleState())

    def is_api(self, path: str) -> bool:
        return path.startswith("/calendar/v3/") or path == "/v1/userinfo"

    def is_create(self, req: Request) -> bool:
        return req.method == "POST" and req.path.endswith("/events/watch")

    def endpoint(self, req: Request) -> str:
        path = req.path
        if path in ("/token", "/revoke"):
            return path[1:]
        if path == "/v1/userinfo":
            return "userinfo"
        if path == "/calendar/v3/channels/stop":
            return "channels.stop"
        if m := CALENDAR.match(path):
            return {None: "calendars.get", "/events": "events.list", "/events/watch": "events.watch"}[m[2]]
        return ""

    def _parse_config(self, data: Any) -> dict[str, int]:
        parsed = super()._parse_config(data)
        if parsed.get("rate_limit_status", 403) not in (403, 429):
            raise ValueError("rate_limit_status must be 403 or 429")
        return parsed

    def route(self, req: Request) -> Reply:
        path, method = req.path, req.method
        if (method, path) == ("GET", "/o/oauth2/v2/auth"):
            return self.authorize_page(req)
        if (method, path) == ("POST", self.decision_path):
            return self.decide(req)
        if (method, path) == ("POST", "/token"):
            return self.token(req)
        if (method, path) == ("POST", "/revoke"):
            return self.revoke(req)
        if not self.is_api(path):
            return g_error(404, "notFound", f"No route for {method} {path}")
        user, refused = self.api_user(req)
        if user is None:
            return refused  # type: ignore[return-value]
        if (method, path) == ("GET", "/v1/userinfo"):
            return json_reply(200, {"sub": user.id, "email": user.email, "email_verified": True})
        if (method, path) == ("POST", "/calendar/v3/channels/stop"):
            return self.stop(req, user)
        m = CALENDAR.match(path)
        if m is None or m[1] not in ("primary", user.email):
            return g_error(404, "notFound", "Not Found")
        if method == "GET" and m[2] is None:
            return json_reply(
                200,
                {"kind": "calendar#calendar", "id": user.email, "summary": user.email, "timeZone": "UTC"},
            )
        if method == "GET" and m[2] == "/events":
            return self.list_events(req, user)
        if method == "POST" and m[2] == "/events/watch":
            return self.watch(req, user)
        return g_error(405, "httpMethodNotAllowed", f"Method {method} not allowed")

    # OAuth

    def token(self, req: Request) -> Reply:
        form, state = req.form(), self.state
        ttl = state.config["access_token_ttl"]
        if not client_ok(form, setting("GOOGLE_CLIENT_ID"), setting("GOOGLE_CLIENT_SECRET")):
            return json_reply(
                401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}
            )
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            error, code, email, offline = self.exchange_code(form)
            if code is None:
                message = "Invalid code verifier." if error == "verifier" else "Malformed auth code."
                return json_reply(400, {"error": "invalid_grant", "error_description": message})
            grant = self.new_grant(email, code.scopes) if offline else None
            return json_reply(200, self.token_json(email, code.scopes, ttl, grant))
        if grant_type == "refresh_token":
            refresh = form.get("refresh_token", "")
            fault = state.faults.take(req.path, grant=True)
            if fault or refresh not in state.tokens.grants:
                revoked = {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                }
                return json_reply(400, revoked)
            scopes = state.tokens.grants[refresh]
            return json_reply(
                200, self.token_json(state.owners[refresh], scopes, ttl, refresh, include_refresh=False)
            )
        return json_reply(
            400, {"error": "unsupported_grant_type", "error_description": f"Invalid grant_type: {grant_type}"}
        )

    def revoke(self, req: Request) -> Reply:
        tokens = self.state.tokens
        token = req.form().get("token") or req.query.get("token", "")
        access = tokens.access.get(token)
        grant = access.grant if access else token
        revoked = bool(grant) and tokens.revoke_grant(str(grant))
        if tokens.revoke_access(token) or revoked:
            return json_reply(200, {})
        return json_reply(400, {"error": "invalid_token", "error_description": "Token expired or revoked"})

    # Calendar v3

    def event_json(self, event: CalEvent) -> dict[str, Any]:
        etag = f'"{int(event.updated * 1000)}{event.seq:06d}"'
        if event.deleted:
            return {"kind": "calendar#event", "etag": etag, "id": event.id, "status": "cancelled"}

        def when(moment: Any) -> dict[str, str]:
            return (
                {"date": moment.date().isoformat()}
                if event.all_day
                else {"dateTime": rfc3339(moment), "timeZone": "UTC"}
            )

        data: dict[str, Any] = {
            "kind": "calendar#event",
            "etag": etag,
            "id": event.id,
            "status": "cancelled" if event.cancelled else "confirmed",
            "htmlLink": f"https://calendar.google.com/calendar/event?eid={event.id}",
            "created": iso(event.created),
            "updated": iso(event.updated),
            "creator": {"email": event.organizer},
            "organizer": {
                "email": event.organizer,
                **({"self": True} if event.organizer == event.owner else {}),
            },
            "start": when(event.start),
            "end": when(event.end),
            "iCalUID": event.ical_uid,
            "sequence": 0,
            "eventType": "default",
        }
        if event.summary:
            data["summary"] = event.summary
        if event.description:
            data["description"] = event.description
        if event.private:
            data["visibility"] = "private"
        if event.attendees:
            data["attendees"] = [
                {
                    "email": email,
                    "responseStatus": status,
                    **({"organizer": True} if email == event.organizer else {}),
                    **({"self": True} if email == event.owner else {}),
                }
                for email, status in event.attendees
            ]
        return data

    def list_events(self, req: Request, user: CalUser) -> Reply:
        state, q = self.state, req.query
        try:
            size = int(q.get("maxResults", "250"))
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_RESULTS:
            return bad_request("Invalid value for maxResults", "maxResults")
        if q.get("pageToken"):
            cursor = state.pages.get(q["pageToken"])
            if cursor is None or cursor.email != user.email:
                return bad_request("Invalid page token value.", "pageToken")
            if cursor.incremental and cursor.gen != user.gen:
                return self.gone()
        elif q.get("syncToken"):
            if any(q.get(k) for k in ("timeMin", "timeMax", "orderBy", "q", "updatedMin")):
                return bad_request(
                    "Sync token cannot be combined with timeMin, timeMax, orderBy, q or updatedMin."
                )
            found = state.read_sync_token(q["syncToken"], user)
            if found is None:
                return self.gone()
            ids = state.changes_since(user, found[0])
            cursor = PageCursor(user.email, ids, 0, size, state.seq, user.gen, True)
        else:
            try:
                low = parse_time(q["timeMin"], "timeMin")[0] if q.get("timeMin") else None
                high = parse_time(q["timeMax"], "timeMax")[0] if q.get("timeMax") else None
            except ValueError as exc:
                return bad_request(str(exc))
            shown = q.get("showDeleted") == "true"
            ids = state.full_listing(user, (low, high), deleted=shown, cancelled=shown)
            cursor = PageCursor(user.email, ids, 0, size, state.seq, user.gen, False)
        chunk = cursor.ids[cursor.offset : cursor.offset + size]
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"{state.seq}"',
            "summary": user.email,
            "updated": iso(state.clock()),
            "timeZone": "UTC",
            "accessRole": "owner",
            "defaultReminders": [],
            "items": [self.event_json(user.events[i]) for i in chunk],
        }
        if cursor.offset + size < len(cursor.ids):
            body["nextPageToken"] = state.open_listing(replace(cursor, offset=cursor.offset + size))
        else:
            body["nextSyncToken"] = state.sync_token(user, cursor.sync_seq)
        return json_reply(200, body)

    def gone(self) -> Reply:
        return g_error(
            410,
            "fullSyncRequired",
            "Sync token is no longer valid, a full sync is required.",
            domain="calendar",
            location="syncToken",
            locationType="parameter",
        )

    def watch(self, req: Request, user: CalUser) -> Reply:
        state, now_ms = self.state, int(self.state.clock() * 1000)
        try:
            data = req.json()
        except ValueError:
            return bad_request("Parse Error")
        if not isinstance(data, dict):
            return bad_request("Parse Error")
        channel_id, address, token = data.get("id"), data.get("address"), data.get("token", "")
        if not isinstance(channel_id, str) or not CHANNEL_ID.match(channel_id):
            return g_error(400, "required", "channel id is required (at most 64 characters)")
        if data.get("type") not in ("web_hook", "webhook"):
            return g_error(400, "invalid", f"Invalid channel type {data.get('type')!r}")
        if not isinstance(address, str) or not address.startswith(("https://", "http://")):
            return g_error(400, "invalid", "WebHook callback must be an http(s) URL")
        if not isinstance(token, str) or len(token) > 256:
            return g_error(400, "invalid", "token must be a string of at most 256 characters")
        if channel_id in state.channels:
            return g_error(400, "channelIdNotUnique", f"Channel id {channel_id} not unique", domain="push")
        longest = now_ms + state.config["channel_max_seconds"] * 1000
        try:
            expiration = int(data.get("expiration") or longest)
        except (TypeError, ValueError):
            return bad_request("Invalid expiration", "expiration")
        if expiration <= now_ms:
            return bad_request("Expiration must be in the future", "expiration")
        base = f"http://{req.headers['host']}" if req.headers.get("host") else state.base_url
        channel = Channel(
            channel_id,
            f"sbx-res-{user.id}",
            f"{base}/calendar/v3/calendars/primary/events?alt=json",
            user.email,
            address,
            token,
            min(expiration, longest),
        )
        state.channels[channel_id] = channel
        state.push(channel, "sync")
        answer = {
            "kind": "api#channel",
            "id": channel.id,
            "resourceId": channel.resource_id,
            "resourceUri": channel.resource_uri,
            "expiration": str(channel.expiration_ms),
        }
        if token:
            answer["token"] = token
        return json_reply(200, answer)

    def stop(self, req: Request, user: CalUser) -> Reply:
        try:
            data = req.json()
        except ValueError:
            data = None
        data = data if isinstance(data, dict) else {}
        channel = self.state.channels.get(str(data.get("id")))
        if (
            channel is None
            or channel.stopped
            or channel.email != user.email
            or channel.resource_id != data.get("resourceId")
        ):
            return g_error(404, "notFound", f"Channel '{data.get('id')}' not found for project 'sandbox'")
        channel.stopped = True
        return Reply(204, b"", "")

    # errors, faults, overview

    def unauthorized(self) -> Reply:
        return g_error(
            401, "authError", "Invalid Credentials", locationType="header", location="Authorization"
        )

    def throttled(self) -> Reply:
        status = self.state.config["rate_limit_status"]
        return g_error(status, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")

    def fault_reply(self, fault: Fault) -> Reply:
        kind = fault.kind
        if kind == "rate_limit":
            reply = g_error(429, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")
            reply.headers["Retry-After"] = str(fault.retry_after)
            return reply
        if kind == "invalid_session":
            return self.unauthorized()
        if kind == "missing_scope":
            return g_error(403, "insufficientPermissions", "Request had insufficient authentication scopes.")
        if kind == "validation":
            return bad_request("Invalid Value")
        if kind == "server_error":
            return g_error(500, "backendError", "Backend Error")
        if kind == "unavailable":
            return g_error(503, "backendError", "The service is currently unavailable.")
        return g_error(504, "backendError", "Deadline exceeded")

    def index_sections(self) -> tuple[list[tuple[str, str]], list[Section]]:
        state = self.state
        summary = [("Client id", str(setting("GOOGLE_CLIENT_ID"))), ("Requests", str(state.requests_total))]
        channels = Section(
            "Push channels",
            ["Id", "Member", "Address", "Expires (ms)", "Messages", "Stopped"],
            [
                [c.id, c.email, c.address, c.expiration_ms, c.messages, c.stopped]
                for c in state.channels.values()
            ],
        )
        return summary, [
            self.user_rows(),
            channels,
            self.delivery_rows(),
            self.calls_rows(),
            self.fault_section(),
        ]
