"""The Microsoft Graph sandbox: the identity platform's v2.0 endpoints (consent picking the member,
PKCE, refresh tokens that rotate on every use, AADSTS errors) and Graph v1.0's /me,
/me/calendarView/delta (absolute @odata.nextLink / @odata.deltaLink, @removed, 410
SyncStateNotFound) and /subscriptions (validation handshake before creation, the 4,230-minute
cap, change and lifecycle notifications), with Graph's error shapes (401, 429 + Retry-After)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from integrations.sandbox.calendar_app import CalendarApp
from integrations.sandbox.calendar_data import (
    CalendarState,
    CalEvent,
    CalUser,
    PageCursor,
    parse_time,
    rfc3339,
)
from integrations.sandbox.common import Reply, Request, empty_reply, iso, json_reply, setting
from integrations.sandbox.faults import Fault
from integrations.sandbox.oauth import client_ok
from integrations.sandbox.pages import Section

TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"
AUTHORIZE = re.compile(r"^/[\w.-]+/oauth2/v2\.0/authorize$")
TOKEN = re.compile(r"^/[\w.-]+/oauth2/v2\.0/token$")
SUBSCRIPTION = re.compile(r"^/v1\.0/subscriptions/([\w-]+)$")
MAX_PAGE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)")
DEFAULT_PAGE_SIZE = 10
CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "missed", "subscriptionRemoved"})
RESPONSES = {"accepted": "accepted", "declined": "declined", "tentative": "tentativelyAccepted"}
REVOKED = (
    "AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is "
    "needed. The user might have changed or reset their password."
)


@dataclass
class Subscription:
    id: str
    email: str
    resource: str
    change_types: list[str]
    notification_url: str
    lifecycle_url: str
    client_state: str
    expires: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": "00000000-0000-0000-0000-00000000c0de",
            "changeType": ",".join(self.change_types),
            "clientState": self.client_state or None,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url or None,
            "expirationDateTime": rfc3339(self.expires),
            "creatorId": self.email,
            "latestSupportedTlsVersion": "v1_2",
            "notificationContentType": "application/json",
        }


def ms_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    inner = {"date": rfc3339(datetime.now(UTC)), "request-id": str(uuid.uuid4())}
    return json_reply(status, {"error": {"code": code, "message": message, "innerError": inner}}, headers)


def graph_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000")


class MicrosoftState(CalendarState):
    DEFAULT_CONFIG = {
        **CalendarState.DEFAULT_CONFIG,
        "user_rate_limit": 10000,
        "rate_window_seconds": 600,
        "throttle_retry_after": 10,
        "validate_subscriptions": 1,
        "handshake_timeout": 10,
        "subscription_max_minutes": 4230,
    }
    cursor_prefix = "sbxd"

    def seed_channels(self) -> None:
        self.subscriptions: dict[str, Subscription] = {}

    def live(self, sub_id: str, user: CalUser | None = None) -> Subscription | None:
        sub = self.subscriptions.get(sub_id)
        if sub is None or sub.expires <= datetime.fromtimestamp(self.clock(), UTC):
            return None
        return sub if user is None or sub.email == user.email else None

    def on_change(self, user: CalUser, event: CalEvent, change: str) -> None:
        for sub in list(self.subscriptions.values()):
            if self.live(sub.id, user) and change in sub.change_types:
                resource = f"Users/{user.id}/Events/{event.id}"
                item = {
                    "subscriptionId": sub.id,
                    "subscriptionExpirationDateTime": rfc3339(sub.expires),
                    "changeType": change,
                    "resource": resource,
                    "resourceData": {
                        "@odata.type": "#Microsoft.Graph.Event",
                        "@odata.id": resource,
                        "@odata.etag": f'W/"{event.seq}"',
                        "id": event.id,
                    },
                    "clientState": sub.client_state or None,
                    "tenantId": TENANT_ID,
                }
                self.notify("notification", sub.notification_url, sub.id, item)

    def notify(self, kind: str, url: str, target: str, item: dict[str, Any]) -> None:
        body = json.dumps({"value": [item]})
        headers = {"Content-Type": "application/json; charset=utf-8"}
        timeout = self.config["delivery_timeout"]
        self.outbox.send_later(kind, url, headers, body, target=target, now=self.clock(), timeout=timeout)


class MicrosoftApp(CalendarApp):
    provider = "microsoft"
    title = "Microsoft 365"
    account = "your Microsoft 365 calendar"
    client_setting = "MICROSOFT_CLIENT_ID"
    decision_path = "/common/oauth2/v2.0/authorize/decision"
    deny_description = "AADSTS65004: User declined to consent to access the app."
    grant_prefix = "0.AAAA-sbx-"
    access_prefix = "eyJ0eXAi.sbx-"
    default_scopes = ("offline_access", "openid", "email", "User.Read", "Calendars.Read")
    state: MicrosoftState

    def __init__(self) -> None:
        super().__init__(MicrosoftState())

    def is_api(self, path: str) -> bool:
        return path.startswith("/v1.0/")

    def is_create(self, req: Request) -> bool:
        return (req.method, req.path) == ("POST", "/v1.0/subscriptions")

    def endpoint(self, req: Request) -> str:
        path, method = req.path, req.method
        if TOKEN.match(path):
            return "token"
        if path == "/v1.0/me":
            return "me"
        if path == "/v1.0/me/calendarView/delta":
            return "calendarView.delta"
        if path == "/v1.0/subscriptions" or SUBSCRIPTION.match(path):
            verbs = {"POST": "create", "PATCH": "update", "DELETE": "delete", "GET": "get"}
            return f"subscriptions.{verbs.get(method, method.lower())}"
        return ""

    def route(self, req: Request) -> Reply:
        path, method = req.path, req.method
        if method == "GET" and AUTHORIZE.match(path):
            return self.authorize_page(req)
        if (method, path) == ("POST", self.decision_path):
            return self.decide(req)
        if method == "POST" and TOKEN.match(path):
            return self.token(req)
        if not self.is_api(path):
            return ms_error(404, "BadRequest", f"Resource not found for the segment '{path}'.")
        user, refused = self.api_user(req)
        if user is None:
            return refused  # type: ignore[return-value]
        if (method, path) == ("GET", "/v1.0/me"):
            return json_reply(
                200,
                {
                    "@odata.context": f"{self.graph(req)}/$metadata#users/$entity",
                    "id": user.id,
                    "displayName": user.email.partition("@")[0].title(),
                    "mail": user.email,
                    "userPrincipalName": user.email,
                },
            )
        if (method, path) == ("GET", "/v1.0/me/calendarView/delta"):
            return self.delta(req, user)
        if (method, path) == ("POST", "/v1.0/subscriptions"):
            return self.subscribe(req, user)
        if m := SUBSCRIPTION.match(path):
            return self.subscription(req, user, m[1])
        return ms_error(400, "BadRequest", f"Unsupported request: {method} {path}")

    def graph(self, req: Request) -> str:
        host = req.headers.get("host")
        return f"http://{host}/v1.0" if host else f"{self.state.base_url}/v1.0"

    # OAuth

    def token(self, req: Request) -> Reply:
        form, state = req.form(), self.state
        ttl = state.config["access_token_ttl"]
        if not client_ok(form, setting("MICROSOFT_CLIENT_ID"), setting("MICROSOFT_CLIENT_SECRET")):
            message = "AADSTS7000215: Invalid client secret provided."
            return json_reply(401, {"error": "invalid_client", "error_description": message})
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            error, code, email, _ = self.exchange_code(form)
            if code is None:
                message = (
                    "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the "
                    "authorization request."
                    if error == "verifier"
                    else "AADSTS70000: The provided value for the 'code' parameter is not valid."
                )
                return json_reply(400, {"error": "invalid_grant", "error_description": message})
            grant = self.new_grant(email, code.scopes) if "offline_access" in code.scopes else None
            return json_reply(200, self.token_answer(email, code.scopes, ttl, grant))
        if grant_type == "refresh_token":
            refresh = form.get("refresh_token", "")
            fault = state.faults.take(req.path, grant=True)
            if fault or refresh not in state.tokens.grants:
                return json_reply(400, {"error": "invalid_grant", "error_description": REVOKED})
            scopes, email = state.tokens.grants.pop(refresh), state.owners.pop(refresh)
            return json_reply(200, self.token_answer(email, scopes, ttl, self.new_grant(email, scopes)))
        message = f"AADSTS70003: The app requested an unsupported grant type '{grant_type}'."
        return json_reply(400, {"error": "unsupported_grant_type", "error_description": message})

    def token_answer(self, email: str, scopes: list[str], ttl: int, grant: str | None) -> dict[str, Any]:
        return {**self.token_json(email, scopes, ttl, grant), "ext_expires_in": ttl}

    # calendarView delta

    def event_json(self, event: CalEvent) -> dict[str, Any]:
        if event.deleted:
            return {
                "@odata.type": "#microsoft.graph.event",
                "id": event.id,
                "@removed": {"reason": "deleted"},
            }

        def person(email: str) -> dict[str, str]:
            return {"name": email.partition("@")[0], "address": email}

        return {
            "@odata.type": "#microsoft.graph.event",
            "@odata.etag": f'W/"{event.seq}"',
            "id": event.id,
            "createdDateTime": iso(event.created),
            "lastModifiedDateTime": iso(event.updated),
            "changeKey": str(event.seq),
            "iCalUId": event.ical_uid,
            "subject": event.summary,
            "bodyPreview": event.description[:255],
            "body": {"contentType": "text", "content": event.description},
            "importance": "normal",
            "sensitivity": "private" if event.private else "normal",
            "isAllDay": event.all_day,
            "isCancelled": event.cancelled,
            "isOrganizer": event.organizer == event.owner,
            "showAs": "busy",
            "type": "singleInstance",
            "webLink": f"https://outlook.office365.com/owa/?itemid={event.id}",
            "start": {"dateTime": graph_time(event.start), "timeZone": "UTC"},
            "end": {"dateTime": graph_time(event.end), "timeZone": "UTC"},
            "location": {"displayName": ""},
            "organizer": {"emailAddress": person(event.organizer)},
            "attendees": [
                {
                    "type": "required",
                    "status": {"response": RESPONSES.get(status, "none"), "time": "0001-01-01T00:00:00Z"},
                    "emailAddress": person(email),
                }
                for email, status in event.attendees
            ],
        }

    def delta(self, req: Request, user: CalUser) -> Reply:
        state, q = self.state, req.query
        wanted = MAX_PAGE.search(req.headers.get("prefer", ""))
        size = max(1, min(int(wanted[1]), 1000)) if wanted else DEFAULT_PAGE_SIZE
        if q.get("$skiptoken"):
            cursor = state.pages.get(q["$skiptoken"])
            if (
                cursor is None
                or cursor.email != user.email
                or (cursor.incremental and cursor.gen != user.gen)
            ):
                return self.gone()
        elif q.get("$deltatoken"):
            found = state.read_sync_token(q["$deltatoken"], user)
            if found is None or len(found[1]) != 2:
                return self.gone()
            low, high = (parse_time(t, "window")[0] for t in found[1])
            ids = [
                i
                for i in state.changes_since(user, found[0])
                if user.events[i].end > low and user.events[i].start < high
            ]
            cursor = PageCursor(
                user.email, ids, 0, size, state.seq, user.gen, True, (found[1][0], found[1][1])
            )
        else:
            try:
                low, high = (
                    parse_time(q.get("startDateTime"), "startDateTime")[0],
                    parse_time(q.get("endDateTime"), "endDateTime")[0],
                )
            except ValueError:
                message = (
                    "This request requires a time window specified by the query string parameters "
                    "StartDateTime and EndDateTime."
                )
                return ms_error(400, "ErrorInvalidParameter", message)
            ids = state.full_listing(user, (low, high), deleted=False, cancelled=True)
            cursor = PageCursor(
                user.email, ids, 0, size, state.seq, user.gen, False, (rfc3339(low), rfc3339(high))
            )
        size = cursor.size
        chunk = cursor.ids[cursor.offset : cursor.offset + size]
        base = f"{self.graph(req)}/me/calendarView/delta"
        body: dict[str, Any] = {
            "@odata.context": f"{self.graph(req)}/$metadata#Collection(event)",
            "value": [self.event_json(user.events[i]) for i in chunk],
        }
        if cursor.offset + size < len(cursor.ids):
            token = state.open_listing(replace(cursor, offset=cursor.offset + size))
            body["@odata.nextLink"] = f"{base}?$skiptoken={token}"
        else:
            token = state.sync_token(user, cursor.sync_seq, *cursor.window)
            body["@odata.deltaLink"] = f"{base}?$deltatoken={token}"
        return json_reply(200, body, {"Preference-Applied": f"odata.maxpagesize={size}"})

    def gone(self) -> Reply:
        message = "The sync state generation is not found or has expired. Restart the synchronization."
        return ms_error(410, "SyncStateNotFound", message)

    # subscriptions

    def expiry(self, value: Any) -> datetime | Reply:
        try:
            expires = parse_time(value, "expirationDateTime")[0]
        except ValueError:
            return ms_error(400, "InvalidRequest", "expirationDateTime must be an ISO date-time.")
        now = datetime.fromtimestamp(self.state.clock(), UTC)
        limit = self.state.config["subscription_max_minutes"]
        if expires <= now:
            return ms_error(400, "InvalidRequest", "Subscription expiration must be in the future.")
        if expires > now + timedelta(minutes=limit):
            return ms_error(
                400, "InvalidRequest", f"Subscription expiration can only be {limit} minutes in the future."
            )
        return expires

    def subscribe(self, req: Request, user: CalUser) -> Reply:
        try:
            data = req.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return ms_error(400, "BadRequest", "The request body must be a JSON object.")
        kinds = [k.strip() for k in str(data.get("changeType") or "").split(",") if k.strip()]
        url, lifecycle = data.get("notificationUrl"), data.get("lifecycleNotificationUrl") or ""
        resource, client_state = data.get("resource"), data.get("clientState") or ""
        if not kinds or set(kinds) - CHANGE_TYPES:
            return ms_error(400, "InvalidRequest", "changeType must list created, updated and/or deleted.")
        for name, value in (("notificationUrl", url), ("lifecycleNotificationUrl", lifecycle)):
            if value == "" and name == "lifecycleNotificationUrl":
                continue
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                return ms_error(400, "InvalidRequest", f"{name} must be an http(s) URL.")
        if not isinstance(resource, str) or "events" not in resource.lower():
            return ms_error(400, "InvalidRequest", "resource must name the user's events (me/events).")
        if not isinstance(client_state, str) or len(client_state) > 128:
            return ms_error(400, "InvalidRequest", "clientState must be at most 128 characters.")
        expires = self.expiry(data.get("expirationDateTime"))
        if isinstance(expires, Reply):
            return expires
        if self.state.config["validate_subscriptions"]:
            for target in dict.fromkeys([url, lifecycle] if lifecycle else [url]):
                if refused := self.handshake(str(target)):
                    return refused
        sub = Subscription(
            str(uuid.uuid4()), user.email, resource, kinds, str(url), lifecycle, client_state, expires
        )
        self.state.subscriptions[sub.id] = sub
        return json_reply(
            201, {"@odata.context": f"{self.graph(req)}/$metadata#subscriptions/$entity", **sub.as_json()}
        )

    def handshake(self, url: str) -> Reply | None:
        """Graph's validation request: 200, text/plain and the decoded token back within 10 s."""
        token = (
            f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        )
        target = f"{url}{'&' if '?' in url else '?'}validationToken={quote(token)}"
        state = self.state
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        sent = state.outbox.send_now(
            "validation", target, headers, "", now=state.clock(), timeout=state.config["handshake_timeout"]
        )
        if sent.status == 200 and sent.content_type.startswith("text/plain") and sent.reply == token:
            return None
        message = (
            "Subscription validation request failed. Notification endpoint must respond with 200 OK "
            "to validation request."
        )
        return ms_error(400, "ValidationError", message)

    def subscription(self, req: Request, user: CalUser, sub_id: str) -> Reply:
        sub = self.state.live(sub_id, user)
        if sub is None:
            return ms_error(404, "ResourceNotFound", "The object was not found.")
        if req.method == "GET":
            return json_reply(200, sub.as_json())
        if req.method == "DELETE":
            del self.state.subscriptions[sub_id]
            return empty_reply(204)
        if req.method != "PATCH":
            return ms_error(405, "MethodNotAllowed", f"{req.method} is not allowed here.")
        try:
            data = req.json()
        except ValueError:
            data = None
        expires = self.expiry(data.get("expirationDateTime") if isinstance(data, dict) else None)
        if isinstance(expires, Reply):
            return expires
        sub.expires = expires
        return json_reply(200, sub.as_json())

    def extra_control(self, req: Request, path: str) -> Any:
        if (req.method, path) == ("POST", "/_sandbox/lifecycle"):
            return self.lifecycle
        return None

    def lifecycle(self, data: Any) -> Reply:
        """POST /_sandbox/lifecycle {subscription_id, event}: send a lifecycle notification."""
        if not isinstance(data, dict) or data.get("event") not in LIFECYCLE_EVENTS:
            raise ValueError(f"body must name subscription_id and an event among {sorted(LIFECYCLE_EVENTS)}")
        sub = self.state.subscriptions.get(str(data.get("subscription_id")))
        if sub is None:
            raise KeyError(str(data.get("subscription_id")))
        if not sub.lifecycle_url:
            raise ValueError("that subscription has no lifecycleNotificationUrl")
        item = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": rfc3339(sub.expires),
            "tenantId": TENANT_ID,
            "clientState": sub.client_state or None,
            "lifecycleEvent": data["event"],
        }
        self.state.notify("lifecycle", sub.lifecycle_url, sub.id, item)
        if data["event"] == "subscriptionRemoved":
            del self.state.subscriptions[sub.id]
        return json_reply(202, {"queued": item})

    # errors, faults, overview

    def unauthorized(self) -> Reply:
        return ms_error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")

    def throttled(self) -> Reply:
        retry = str(self.state.config["throttle_retry_after"])
        message = "Application is over its MailboxConcurrency limit."
        return ms_error(429, "ApplicationThrottled", message, {"Retry-After": retry})

    def fault_reply(self, fault: Fault) -> Reply:
        kind, retry = fault.kind, {"Retry-After": str(fault.retry_after)}
        if kind == "rate_limit":
            return ms_error(429, "TooManyRequests", "Too many requests.", retry)
        if kind == "invalid_session":
            return self.unauthorized()
        if kind == "missing_scope":
            return ms_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        if kind == "validation":
            return ms_error(400, "ErrorInvalidRequest", "The request is invalid (sandbox validation fault).")
        if kind == "server_error":
            return ms_error(500, "generalException", "An internal server error occurred.")
        if kind == "unavailable":
            return ms_error(503, "serviceNotAvailable", "The service is unavailable.", retry)
        return ms_error(504, "UnknownError", "Gateway timeout.")

    def index_sections(self) -> tuple[list[tuple[str, str]], list[Section]]:
        state = self.state
        summary = [
            ("Client id", str(setting("MICROSOFT_CLIENT_ID"))),
            ("Tenant", TENANT_ID),
            ("Requests", str(state.requests_total)),
        ]
        subs = Section(
            "Subscriptions",
            ["Id", "Member", "Notification URL", "Expires", "Change types"],
            [
                [s.id, s.email, s.notification_url, rfc3339(s.expires), ",".join(s.change_types)]
                for s in state.subscriptions.values()
            ],
        )
        return summary, [
            self.user_rows(),
            subs,
            self.delivery_rows(),
            self.calls_rows(),
            self.fault_section(),
        ]
