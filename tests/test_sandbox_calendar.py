"""The Google Calendar and Microsoft Graph sandboxes, driven over real sockets with `requests`:
consent (allow / deny, the member's email), code exchange with PKCE, refresh (Graph rotates),
full listings with paging, sync tokens and delta links, incremental changes (cancelled /
@removed), 410 after invalidation, push channels and their deliveries, Graph's validation
handshake and lifetime cap, the error shapes (401 / 403 / 429 / faults) and the control endpoints."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from integrations.sandbox.calendar_push import http_post
from integrations.sandbox.google_calendar import GoogleState
from integrations.sandbox.oauth import pkce_challenge
from integrations.sandbox.server import RunningSandbox, start_sandbox
from tests.sandbox_helpers import answer_consent

TIMEOUT = 5
REDIRECT = "https://conduit.example/settings/calendar/callback/x/"
VERIFIER = "v" * 50
WIDE = {"timeMin": "2000-01-01T00:00:00Z", "timeMax": "2100-01-01T00:00:00Z"}
GRAPH_WIDE = {"startDateTime": "2000-01-01T00:00:00Z", "endDateTime": "2100-01-01T00:00:00Z"}
G_CLIENT = {"client_id": "conduit-sandbox-google", "client_secret": "sandbox-google-client-secret"}
M_CLIENT = {"client_id": "conduit-sandbox-microsoft", "client_secret": "sandbox-microsoft-client-secret"}


@pytest.fixture(autouse=True)
def _credentials(settings: Any) -> None:
    settings.GOOGLE_CLIENT_ID, settings.GOOGLE_CLIENT_SECRET = G_CLIENT.values()
    settings.MICROSOFT_CLIENT_ID, settings.MICROSOFT_CLIENT_SECRET = M_CLIENT.values()
    settings.PRODUCTION = False


@pytest.fixture
def google() -> Iterator[RunningSandbox]:
    sandbox = start_sandbox("google", port=0)
    yield sandbox
    sandbox.stop()


@pytest.fixture
def microsoft() -> Iterator[RunningSandbox]:
    sandbox = start_sandbox("microsoft", port=0)
    yield sandbox
    sandbox.stop()


class Receiver:
    """A webhook endpoint: records each POST; `mode` decides the answer ("echo" returns Graph's
    validationToken as text/plain, "json" answers the token as JSON, "fail" answers 500)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.mode = "echo"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                token = query.get("validationToken", "")
                status, ctype, text = 202, "text/plain", ""
                if token and receiver.mode == "echo":
                    status, text = 200, token
                elif token and receiver.mode == "json":
                    status, ctype, text = 200, "application/json", f'"{token}"'
                elif receiver.mode == "fail":
                    status = 500
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(text.encode())))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/calendar"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.stop()


def post(base: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
    return requests.post(f"{base}{path}", json=body, timeout=TIMEOUT, **kw)


def mint(base: str, email: str = "member@example.com", **extra: Any) -> dict[str, Any]:
    answer = post(base, "/_sandbox/tokens", {"email": email, **extra})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def deliveries(base: str, least: int = 0) -> list[dict[str, Any]]:
    answer = requests.get(f"{base}/_sandbox/deliveries", params={"min": least, "wait": 5}, timeout=10)
    return list(answer.json()["deliveries"])


# --- Google: OAuth ---------------------------------------------------------------------------


def google_authorize(base: str, **extra: str) -> str:
    query = {
        "response_type": "code",
        "client_id": G_CLIENT["client_id"],
        "redirect_uri": REDIRECT,
        "scope": "openid email https://www.googleapis.com/auth/calendar.readonly",
        "state": "st-1",
        "access_type": "offline",
        "code_challenge": pkce_challenge(VERIFIER),
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{base}/o/oauth2/v2/auth?{urlencode(query)}"


def redirect_params(location: str) -> dict[str, str]:
    assert location.startswith(REDIRECT)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def google_code(base: str, **extra: str) -> str:
    return redirect_params(answer_consent(google_authorize(base, **extra)))["code"]


def google_exchange(base: str, code: str, verifier: str = VERIFIER) -> requests.Response:
    form = {**G_CLIENT, "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    return requests.post(f"{base}/token", data={**form, "code_verifier": verifier}, timeout=TIMEOUT)


def test_google_consent_allow_names_the_member_and_exchanges_with_pkce(google: RunningSandbox) -> None:
    base = google.base_url
    page = requests.get(google_authorize(base, login_hint="ann@acme.example"), timeout=TIMEOUT)
    assert 'name="email" value="ann@acme.example"' in page.text and "Deny" in page.text
    params = redirect_params(answer_consent(google_authorize(base, login_hint="ann@acme.example")))
    assert params["state"] == "st-1"
    answer = google_exchange(base, params["code"])
    assert answer.status_code == 200
    tokens = answer.json()
    assert tokens["expires_in"] == 3600 and tokens["token_type"] == "Bearer"
    assert tokens["refresh_token"] and "calendar.readonly" in tokens["scope"]
    who = requests.get(f"{base}/v1/userinfo", headers=bearer(tokens["access_token"]), timeout=TIMEOUT)
    assert who.json() == {"sub": who.json()["sub"], "email": "ann@acme.example", "email_verified": True}
    # a code is single use
    assert google_exchange(base, params["code"]).json()["error"] == "invalid_grant"


def test_google_consent_defaults_the_member_and_a_browser_may_type_another(google: RunningSandbox) -> None:
    base = google.base_url
    code = google_code(base)
    access = google_exchange(base, code).json()["access_token"]
    email = requests.get(f"{base}/v1/userinfo", headers=bearer(access), timeout=TIMEOUT).json()["email"]
    assert email == "member@example.com"
    page = requests.get(google_authorize(base), timeout=TIMEOUT)
    assert page.status_code == 200
    form = {
        "client_id": G_CLIENT["client_id"],
        "redirect_uri": REDIRECT,
        "scope": "openid",
        "state": "s",
        "code_challenge": "",
        "email": "Bob@Acme.example",
        "decision": "allow",
    }
    answer = requests.post(
        f"{base}/o/oauth2/v2/auth/decision", data=form, allow_redirects=False, timeout=TIMEOUT
    )
    code = redirect_params(answer.headers["Location"])["code"]
    tokens = google_exchange(base, code, verifier="").json()
    assert "refresh_token" not in tokens  # no access_type=offline: no refresh token
    who = requests.get(f"{base}/v1/userinfo", headers=bearer(tokens["access_token"]), timeout=TIMEOUT)
    assert who.json()["email"] == "bob@acme.example"
    form |= {"email": "not-an-email"}
    refused = requests.post(f"{base}/o/oauth2/v2/auth/decision", data=form, timeout=TIMEOUT)
    assert refused.status_code == 400


def test_google_consent_deny_and_bad_requests(google: RunningSandbox) -> None:
    base = google.base_url
    params = redirect_params(answer_consent(google_authorize(base), decision="deny"))
    assert params == {
        "error": "access_denied",
        "error_description": "The user denied access",
        "state": "st-1",
    }
    for bad in (
        {"client_id": "someone-else"},
        {"response_type": "token"},
        {"scope": ""},
        {"code_challenge_method": "plain"},
    ):
        assert requests.get(google_authorize(base, **bad), timeout=TIMEOUT).status_code == 400


def test_google_token_refuses_a_bad_verifier_client_or_grant_type(google: RunningSandbox) -> None:
    base = google.base_url
    refused = google_exchange(base, google_code(base), verifier="w" * 50)
    assert refused.status_code == 400
    assert refused.json() == {"error": "invalid_grant", "error_description": "Invalid code verifier."}
    bad_client = requests.post(
        f"{base}/token", data={"client_id": "x", "client_secret": "y"}, timeout=TIMEOUT
    )
    assert bad_client.status_code == 401 and bad_client.json()["error"] == "invalid_client"
    odd = requests.post(f"{base}/token", data={**G_CLIENT, "grant_type": "password"}, timeout=TIMEOUT)
    assert odd.json()["error"] == "unsupported_grant_type"


def test_google_refresh_revoke_and_the_revoked_grant(google: RunningSandbox) -> None:
    base = google.base_url
    tokens = google_exchange(base, google_code(base)).json()
    form = {**G_CLIENT, "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    fresh = requests.post(f"{base}/token", data=form, timeout=TIMEOUT).json()
    assert fresh["access_token"] != tokens["access_token"] and "refresh_token" not in fresh
    # Google's refresh token does not rotate: it works again
    assert requests.post(f"{base}/token", data=form, timeout=TIMEOUT).status_code == 200
    revoked = requests.post(f"{base}/revoke", data={"token": fresh["access_token"]}, timeout=TIMEOUT)
    assert revoked.status_code == 200
    again = requests.post(f"{base}/token", data=form, timeout=TIMEOUT)
    assert again.status_code == 400
    assert again.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    api = requests.get(f"{base}/v1/userinfo", headers=bearer(tokens["access_token"]), timeout=TIMEOUT)
    assert api.status_code == 401
    assert requests.post(f"{base}/revoke", data={"token": "nope"}, timeout=TIMEOUT).status_code == 400


def test_google_control_revokes_a_members_grant_and_faults_revoke_refreshes(google: RunningSandbox) -> None:
    base = google.base_url
    tokens = mint(base, "ann@acme.example")
    other = mint(base, "bob@acme.example")
    assert post(base, "/_sandbox/grants/revoke", {"email": "ann@acme.example"}).json()["revoked"] == 1
    form = {**G_CLIENT, "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert requests.post(f"{base}/token", data=form, timeout=TIMEOUT).status_code == 400
    assert (
        requests.get(
            f"{base}/v1/userinfo", headers=bearer(tokens["access_token"]), timeout=TIMEOUT
        ).status_code
        == 401
    )
    assert (
        requests.get(
            f"{base}/v1/userinfo", headers=bearer(other["access_token"]), timeout=TIMEOUT
        ).status_code
        == 200
    )
    post(base, "/_sandbox/faults", {"kind": "invalid_grant"})
    form["refresh_token"] = other["refresh_token"]
    assert requests.post(f"{base}/token", data=form, timeout=TIMEOUT).json()["error"] == "invalid_grant"
    assert requests.post(f"{base}/token", data=form, timeout=TIMEOUT).status_code == 200


def test_google_token_lifetime_is_configurable_and_an_expired_token_is_401(google: RunningSandbox) -> None:
    base = google.base_url
    assert post(base, "/_sandbox/config", {"access_token_ttl": 0}).status_code == 200
    tokens = mint(base)
    assert tokens["expires_in"] == 0
    answer = requests.get(
        f"{base}/calendar/v3/calendars/primary", headers=bearer(tokens["access_token"]), timeout=TIMEOUT
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == 401
    assert answer.json()["error"]["message"] == "Invalid Credentials"
    assert answer.json()["error"]["errors"][0]["reason"] == "authError"
    assert requests.get(f"{base}/calendar/v3/calendars/primary", timeout=TIMEOUT).status_code == 401


# --- Google: events --------------------------------------------------------------------------


def glist(base: str, token: str, **params: Any) -> requests.Response:
    return requests.get(
        f"{base}/calendar/v3/calendars/primary/events", params=params, headers=bearer(token), timeout=TIMEOUT
    )


def full_sync(base: str, token: str, size: int = 10) -> tuple[list[dict[str, Any]], str, int]:
    items, page, pages = [], None, 0
    while True:
        params = {**WIDE, "singleEvents": "true", "showDeleted": "true", "maxResults": size}
        body = glist(base, token, **params, **({"pageToken": page} if page else {})).json()
        pages += 1
        items += body["items"]
        assert ("nextPageToken" in body) != ("nextSyncToken" in body)
        if "nextSyncToken" in body:
            return items, body["nextSyncToken"], pages
        page = body["nextPageToken"]


def test_google_full_listing_pages_then_sync_token_returns_only_changes(google: RunningSandbox) -> None:
    base = google.base_url
    token = mint(base)["access_token"]
    assert post(base, "/_sandbox/seed", {"email": "member@example.com", "count": 25}).json()["events"] == 25
    items, sync, pages = full_sync(base, token)
    assert len(items) == 25 and pages == 3 and len({i["id"] for i in items}) == 25
    first = items[0]
    assert first["status"] == "confirmed" and first["description"].startswith("Agenda")
    assert {"dateTime", "timeZone"} <= set(first["start"]) and first["organizer"][
        "email"
    ] == "member@example.com"
    assert first["iCalUID"] and first["updated"] and first["attendees"][0]["responseStatus"]
    assert [i["start"]["dateTime"] for i in items] == sorted(i["start"]["dateTime"] for i in items)
    # nothing changed: an empty incremental page with a new sync token
    quiet = glist(base, token, syncToken=sync).json()
    assert quiet["items"] == [] and quiet["nextSyncToken"]
    created = post(
        base,
        "/_sandbox/events",
        {
            "email": "member@example.com",
            "summary": "Renewal call",
            "description": "Confidential notes",
            "start": "2030-05-01T10:00:00Z",
            "end": "2030-05-01T11:00:00Z",
            "attendees": [
                "member@example.com",
                {"email": "Buyer@Customer.example", "responseStatus": "accepted"},
            ],
            "private": True,
        },
    )
    assert created.status_code == 201
    new = created.json()
    assert new["visibility"] == "private" and new["attendees"][1] == {
        "email": "buyer@customer.example",
        "responseStatus": "accepted",
    }
    moved = requests.patch(
        f"{base}/_sandbox/events/{items[0]['id']}", json={"summary": "Moved"}, timeout=TIMEOUT
    )
    assert moved.status_code == 200 and moved.json()["summary"] == "Moved"
    assert requests.delete(f"{base}/_sandbox/events/{items[1]['id']}", timeout=TIMEOUT).status_code == 204
    changes = glist(base, token, syncToken=sync).json()
    assert [(i["id"], i["status"]) for i in changes["items"]] == [
        (new["id"], "confirmed"),
        (items[0]["id"], "confirmed"),
        (items[1]["id"], "cancelled"),
    ]
    assert changes["items"][2] == {
        "kind": "calendar#event",
        "etag": changes["items"][2]["etag"],
        "id": items[1]["id"],
        "status": "cancelled",
    }
    after = glist(base, token, syncToken=changes["nextSyncToken"]).json()
    assert after["items"] == []
    # a full listing without showDeleted leaves the deleted event out
    plain = glist(base, token, **WIDE, maxResults=2500).json()
    assert len(plain["items"]) == 25 and items[1]["id"] not in {i["id"] for i in plain["items"]}


def test_google_window_cancelled_events_and_parameter_errors(google: RunningSandbox) -> None:
    base = google.base_url
    token = mint(base)["access_token"]
    for day, cancelled in (("2030-01-01", False), ("2030-02-01", True), ("2031-01-01", False)):
        post(base, "/_sandbox/events", {"start": f"{day}T09:00:00Z", "cancelled": cancelled, "summary": day})
    post(base, "/_sandbox/events", {"start": "2030-01-05", "end": "2030-01-06", "summary": "holiday"})
    window = {"timeMin": "2029-12-01T00:00:00Z", "timeMax": "2030-12-31T00:00:00Z"}
    listed = glist(base, token, **window).json()["items"]
    assert [i["summary"] for i in listed] == ["2030-01-01", "holiday"]
    assert listed[1]["start"] == {"date": "2030-01-05"}
    shown = glist(base, token, **window, showDeleted="true").json()["items"]
    assert [i["status"] for i in shown] == ["confirmed", "confirmed", "cancelled"]
    sync = glist(base, token, **window).json()["nextSyncToken"]
    assert glist(base, token, syncToken=sync, **window).status_code == 400
    assert glist(base, token, maxResults=0).status_code == 400
    assert glist(base, token, timeMin="yesterday").status_code == 400
    assert glist(base, token, pageToken="nope").status_code == 400
    assert glist(base, token, maxResults="many").status_code == 400
    bare = post(base, "/_sandbox/events", {"summary": "", "attendees": []}).json()
    assert "summary" not in bare and "attendees" not in bare and "description" not in bare
    delete = requests.delete(f"{base}/calendar/v3/calendars/primary", headers=bearer(token), timeout=TIMEOUT)
    assert delete.status_code == 405
    calendar = requests.get(f"{base}/calendar/v3/calendars/primary", headers=bearer(token), timeout=TIMEOUT)
    assert calendar.json()["id"] == "member@example.com"
    other = requests.get(
        f"{base}/calendar/v3/calendars/someone@else.example", headers=bearer(token), timeout=TIMEOUT
    )
    assert other.status_code == 404


def test_google_invalidated_sync_token_is_410_full_sync_required(google: RunningSandbox) -> None:
    base = google.base_url
    token = mint(base)["access_token"]
    post(base, "/_sandbox/seed", {"email": "member@example.com", "count": 30})
    _, sync, _ = full_sync(base, token, size=50)
    post(base, "/_sandbox/events", {"summary": "one"})
    post(base, "/_sandbox/events", {"summary": "two"})
    pending = glist(base, token, syncToken=sync, maxResults=1)
    assert pending.status_code == 200 and pending.json()["nextPageToken"]
    assert (
        post(base, "/_sandbox/cursors/invalidate", {"email": "member@example.com"}).json()["generation"] == 1
    )
    gone = glist(base, token, syncToken=sync)
    assert gone.status_code == 410
    assert gone.json() == {
        "error": {
            "errors": [
                {
                    "domain": "calendar",
                    "reason": "fullSyncRequired",
                    "message": "Sync token is no longer valid, a full sync is required.",
                    "location": "syncToken",
                    "locationType": "parameter",
                }
            ],
            "code": 410,
            "message": "Sync token is no longer valid, a full sync is required.",
        }
    }
    assert glist(base, token, syncToken="garbage").status_code == 410
    forged = json.loads(base64.urlsafe_b64decode(sync[5:] + "=" * (-len(sync[5:]) % 4)))
    forged[1:4] = ["member@example.com", 1, "7"]
    raw = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    assert glist(base, token, syncToken="CPsbx" + raw).status_code == 410
    assert glist(base, token, syncToken="CPsbx!!!").status_code == 410
    assert glist(base, token, pageToken=pending.json()["nextPageToken"]).status_code == 410
    items, fresh, _ = full_sync(base, token, size=50)
    assert len(items) == 32 and glist(base, token, syncToken=fresh).status_code == 200


def test_google_rate_limit_is_403_or_429_per_member(google: RunningSandbox) -> None:
    base = google.base_url
    ann, bob = mint(base, "ann@acme.example")["access_token"], mint(base, "bob@acme.example")["access_token"]
    post(base, "/_sandbox/config", {"user_rate_limit": 2})
    assert [glist(base, ann).status_code for _ in range(3)] == [200, 200, 403]
    refused = glist(base, ann).json()["error"]
    assert refused["code"] == 403 and refused["errors"][0] == {
        "domain": "usageLimits",
        "reason": "rateLimitExceeded",
        "message": "Rate Limit Exceeded",
    }
    assert glist(base, bob).status_code == 200
    assert post(base, "/_sandbox/config", {"rate_limit_status": 429}).status_code == 200
    assert glist(base, ann).status_code == 429
    assert post(base, "/_sandbox/config", {"rate_limit_status": 500}).status_code == 400
    assert requests.get(f"{base}/_sandbox/state", timeout=TIMEOUT).json()["requests"]["rate_limited"] == 3


@pytest.mark.parametrize(
    ("kind", "status", "reason"),
    [
        ("rate_limit", 429, "rateLimitExceeded"),
        ("server_error", 500, "backendError"),
        ("unavailable", 503, "backendError"),
        ("invalid_session", 401, "authError"),
        ("missing_scope", 403, "insufficientPermissions"),
        ("validation", 400, "invalid"),
        ("hang", 504, "backendError"),
    ],
)
def test_google_faults(google: RunningSandbox, kind: str, status: int, reason: str) -> None:
    base = google.base_url
    token = mint(base)["access_token"]
    post(base, "/_sandbox/faults", {"kind": kind, "retry_after": 7, "hang_seconds": 0})
    answer = glist(base, token)
    assert answer.status_code == status and answer.json()["error"]["errors"][0]["reason"] == reason
    if kind == "rate_limit":
        assert answer.headers["Retry-After"] == "7"
    assert glist(base, token).status_code == 200


def test_google_watch_delivers_sync_then_changes_and_stop(google: RunningSandbox, receiver: Receiver) -> None:
    base = google.base_url
    token = mint(base)["access_token"]
    other = mint(base, "other@acme.example")["access_token"]
    body = {"id": "chan-1", "type": "web_hook", "address": receiver.url, "token": "secret-token"}
    watch = post(base, "/calendar/v3/calendars/primary/events/watch", body, headers=bearer(token))
    assert watch.status_code == 200
    channel = watch.json()
    assert (
        channel["kind"] == "api#channel" and channel["id"] == "chan-1" and channel["token"] == "secret-token"
    )
    assert channel["resourceId"] and channel["resourceUri"].startswith(base)
    expires = int(channel["expiration"])
    now_ms = datetime.now(UTC).timestamp() * 1000
    assert now_ms + 6 * 86400_000 < expires <= now_ms + 7 * 86400_000 + 5000
    first = deliveries(base, 1)
    assert first[0]["status"] == 202 and first[0]["headers"]["X-Goog-Resource-State"] == "sync"
    post(base, "/_sandbox/events", {"summary": "new"})
    post(base, "/_sandbox/events", {"email": "other@acme.example", "summary": "not this member"})
    made = deliveries(base, 2)
    assert len(made) == 2
    headers = receiver.requests[1]["headers"]
    assert headers["X-Goog-Channel-ID"] == "chan-1"
    assert headers["X-Goog-Channel-Token"] == "secret-token"
    assert headers["X-Goog-Resource-ID"] == channel["resourceId"]
    assert headers["X-Goog-Resource-URI"] == channel["resourceUri"]
    assert headers["X-Goog-Resource-State"] == "exists"
    assert headers["X-Goog-Message-Number"] == "2"
    assert headers["X-Goog-Channel-Expiration"].endswith("GMT")
    assert receiver.requests[1]["body"] == ""
    again = post(base, "/calendar/v3/calendars/primary/events/watch", body, headers=bearer(token))
    assert again.status_code == 400 and again.json()["error"]["errors"][0]["reason"] == "channelIdNotUnique"
    stop = {"id": "chan-1", "resourceId": channel["resourceId"]}
    assert post(base, "/calendar/v3/channels/stop", stop, headers=bearer(other)).status_code == 404
    assert post(base, "/calendar/v3/channels/stop", stop, headers=bearer(token)).status_code == 204
    assert post(base, "/calendar/v3/channels/stop", stop, headers=bearer(token)).status_code == 404
    post(base, "/_sandbox/events", {"summary": "after stop"})
    assert len(deliveries(base)) == 2
    post(base, "/calendar/v3/calendars/primary/events/watch", {**body, "id": "chan-2"}, headers=bearer(token))
    assert len(deliveries(base, 3)) == 3
    state = google.state
    assert isinstance(state, GoogleState)
    with state.lock:
        state.channels["chan-2"].expiration_ms = 0  # the channel has run out
    post(base, "/_sandbox/events", {"summary": "after expiry"})
    assert len(deliveries(base)) == 3
    calls = requests.get(f"{base}/_sandbox/calls", timeout=TIMEOUT).json()
    assert calls["calls"]["events.watch"] == 3 and calls["calls"]["channels.stop"] == 3


def test_google_watch_validation_expiry_and_failed_delivery(
    google: RunningSandbox, receiver: Receiver
) -> None:
    base = google.base_url
    token = mint(base)["access_token"]
    url = "/calendar/v3/calendars/primary/events/watch"
    good = {"id": "c2", "type": "web_hook", "address": receiver.url}
    for bad in (
        {"id": ""},
        {"type": "email"},
        {"address": "ftp://x"},
        {"token": 5},
        {"expiration": "1"},
        {"expiration": "soon"},
    ):
        assert post(base, url, {**good, **bad}, headers=bearer(token)).status_code == 400, bad
    assert requests.post(f"{base}{url}", data="{", headers=bearer(token), timeout=TIMEOUT).status_code == 400
    assert post(base, url, [1], headers=bearer(token)).status_code == 400
    stop = requests.post(
        f"{base}/calendar/v3/channels/stop", data="{", headers=bearer(token), timeout=TIMEOUT
    )
    assert stop.status_code == 404
    soon = int((datetime.now(UTC) + timedelta(hours=1)).timestamp() * 1000)
    answer = post(base, url, {**good, "expiration": str(soon)}, headers=bearer(token)).json()
    assert answer["expiration"] == str(soon) and "token" not in answer
    assert [d["status"] for d in deliveries(base, 1)] == [202]  # the channel's "sync" message
    receiver.mode = "fail"
    post(base, "/_sandbox/events", {"summary": "x"})
    made = deliveries(base, 2)
    assert [d["status"] for d in made] == [202, 500]
    assert "X-Goog-Channel-Token" not in made[0]["headers"]
    dead = {"id": "c3", "type": "web_hook", "address": "http://127.0.0.1:9/nothing"}
    assert post(base, url, dead, headers=bearer(token)).status_code == 200
    failed = deliveries(base, 3)[2]
    assert failed["status"] is None and failed["error"] == "ConnectionError" and failed["done"]


def test_google_control_endpoints_and_reset(google: RunningSandbox) -> None:
    base = google.base_url
    assert post(base, "/_sandbox/events", {"email": "nope"}).status_code == 400
    assert post(base, "/_sandbox/events", {"colour": "red"}).status_code == 400
    assert (
        post(
            base, "/_sandbox/events", {"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T09:00:00Z"}
        ).status_code
        == 400
    )
    assert post(base, "/_sandbox/events", {"start": "never"}).status_code == 400
    assert post(base, "/_sandbox/events", {"private": "yes"}).status_code == 400
    assert post(base, "/_sandbox/events", {"summary": 5}).status_code == 400
    assert post(base, "/_sandbox/events", {"attendees": "x@y"}).status_code == 400
    assert post(base, "/_sandbox/events", {"attendees": ["nobody"]}).status_code == 400
    assert post(base, "/_sandbox/events", {"id": "bad id!"}).status_code == 400
    assert requests.post(f"{base}/_sandbox/events", data="{", timeout=TIMEOUT).status_code == 400
    made = post(base, "/_sandbox/events", {"id": "abc123", "summary": "one"})
    assert made.status_code == 201 and made.json()["id"] == "abc123"
    same = post(base, "/_sandbox/events", {"id": "abc123", "summary": "two"})
    assert same.status_code == 200 and same.json()["summary"] == "two"
    assert requests.patch(f"{base}/_sandbox/events/zzz", json={}, timeout=TIMEOUT).status_code == 404
    assert requests.delete(f"{base}/_sandbox/events/zzz", timeout=TIMEOUT).status_code == 404
    assert requests.delete(f"{base}/_sandbox/events/abc123", timeout=TIMEOUT).status_code == 204
    assert requests.delete(f"{base}/_sandbox/events/abc123", timeout=TIMEOUT).status_code == 404
    assert (
        requests.patch(f"{base}/_sandbox/events/abc123", json={"summary": "x"}, timeout=TIMEOUT).status_code
        == 404
    )
    listed = requests.get(f"{base}/_sandbox/events", params={"email": "member@example.com"}, timeout=TIMEOUT)
    assert listed.json()["items"][0]["status"] == "cancelled"
    assert post(base, "/_sandbox/cursors/invalidate", {}).status_code == 400
    assert post(base, "/_sandbox/seed", {"count": -1}).status_code == 400
    assert post(base, "/_sandbox/seed", {"count": 1, "attendee_domains": "x"}).status_code == 400
    assert post(base, "/_sandbox/seed", {"count": 1, "domain": ""}).status_code == 400
    assert post(base, "/_sandbox/seed", [1]).status_code == 400
    assert post(base, "/_sandbox/tokens", [1]).status_code == 400
    assert post(base, "/_sandbox/tokens", {"scopes": "x"}).status_code == 400
    assert (
        requests.get(f"{base}/_sandbox/deliveries", params={"min": "x"}, timeout=TIMEOUT).status_code == 400
    )
    assert post(base, "/_sandbox/lifecycle", {}).status_code == 404  # Graph only
    assert post(base, "/_sandbox/config", {"user_rate_limit": 1}).status_code == 200
    index = requests.get(f"{base}/", timeout=TIMEOUT)
    assert index.status_code == 200 and "Push channels" in index.text
    assert requests.post(f"{base}/_sandbox/reset", timeout=TIMEOUT).status_code == 204
    state = requests.get(f"{base}/_sandbox/state", timeout=TIMEOUT).json()
    assert state["users"] == 0 and state["events"] == 0 and state["config"]["user_rate_limit"] == 600
    assert requests.get(f"{base}/nowhere", timeout=TIMEOUT).status_code == 404


def test_bulk_seed_is_cheap_deterministic_and_lazy(google: RunningSandbox) -> None:
    base = google.base_url
    seeded = post(base, "/_sandbox/seed", {"users": 1000, "count": 200, "domain": "bench.example"})
    assert seeded.status_code == 200 and seeded.json()["events"] == 200_000
    assert seeded.json()["users"][0] == "user00001@bench.example"
    assert requests.get(f"{base}/_sandbox/state", timeout=TIMEOUT).json()["events"] == 200_000
    token = mint(base, "user00007@bench.example")["access_token"]
    items, _, _ = full_sync(base, token, size=250)
    assert len(items) == 200
    assert sum(any(a["email"].endswith("@customer.example") for a in i["attendees"]) for i in items) == 100
    assert sum(i.get("visibility") == "private" for i in items) == 20
    requests.post(f"{base}/_sandbox/reset", timeout=TIMEOUT)
    post(base, "/_sandbox/seed", {"users": 1000, "count": 10, "domain": "bench.example"})
    mint(base, "user00007@bench.example")  # reading the member makes the first seeding's events
    post(base, "/_sandbox/seed", {"users": 1000, "count": 200, "domain": "bench.example"})
    token = mint(base, "user00007@bench.example")["access_token"]
    again, _, _ = full_sync(base, token, size=250)
    assert [(i["id"], i["start"]) for i in again] == [(i["id"], i["start"]) for i in items]


# --- Microsoft: OAuth ------------------------------------------------------------------------


def ms_authorize(base: str, **extra: str) -> str:
    query = {
        "client_id": M_CLIENT["client_id"],
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "response_mode": "query",
        "scope": "offline_access openid email User.Read Calendars.Read",
        "state": "st-9",
        "code_challenge": pkce_challenge(VERIFIER),
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{base}/common/oauth2/v2.0/authorize?{urlencode(query)}"


def ms_token(base: str, **form: str) -> requests.Response:
    return requests.post(f"{base}/common/oauth2/v2.0/token", data={**M_CLIENT, **form}, timeout=TIMEOUT)


def ms_code(base: str, **extra: str) -> str:
    return redirect_params(answer_consent(ms_authorize(base, **extra)))["code"]


def test_microsoft_consent_pkce_and_rotating_refresh(microsoft: RunningSandbox) -> None:
    base = microsoft.base_url
    denied = redirect_params(answer_consent(ms_authorize(base), decision="deny"))
    assert denied["error"] == "access_denied" and denied["state"] == "st-9"
    bad = ms_token(
        base,
        grant_type="authorization_code",
        code=ms_code(base),
        redirect_uri=REDIRECT,
        code_verifier="x" * 50,
    )
    assert bad.status_code == 400 and bad.json()["error_description"].startswith("AADSTS501481")
    code = ms_code(base, login_hint="ann@contoso.example")
    tokens = ms_token(
        base, grant_type="authorization_code", code=code, redirect_uri=REDIRECT, code_verifier=VERIFIER
    ).json()
    assert (
        tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600 and tokens["ext_expires_in"] == 3600
    )
    me = requests.get(f"{base}/v1.0/me", headers=bearer(tokens["access_token"]), timeout=TIMEOUT).json()
    assert me["mail"] == me["userPrincipalName"] == "ann@contoso.example" and me["id"] and me["displayName"]
    reused = ms_token(
        base, grant_type="authorization_code", code=code, redirect_uri=REDIRECT, code_verifier=VERIFIER
    )
    assert reused.json()["error_description"].startswith("AADSTS70000")
    rotated = ms_token(base, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    old = ms_token(base, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant"
    assert old.json()["error_description"].startswith(
        "AADSTS50173: The provided grant has expired due to it being revoked"
    )
    assert (
        ms_token(base, grant_type="refresh_token", refresh_token=rotated["refresh_token"]).status_code == 200
    )
    no_offline = ms_code(base, scope="openid Calendars.Read")
    plain = ms_token(
        base, grant_type="authorization_code", code=no_offline, redirect_uri=REDIRECT, code_verifier=VERIFIER
    )
    assert "refresh_token" not in plain.json()
    assert ms_token(base, grant_type="client_credentials").json()["error"] == "unsupported_grant_type"
    wrong = requests.post(f"{base}/common/oauth2/v2.0/token", data={"client_id": "x"}, timeout=TIMEOUT)
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"


def test_microsoft_revoked_grant_and_fault(microsoft: RunningSandbox) -> None:
    base = microsoft.base_url
    tokens = mint(base, "ann@contoso.example")
    post(base, "/_sandbox/faults", {"kind": "invalid_grant"})
    assert (
        ms_token(base, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 400
    )
    fresh = ms_token(base, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    post(base, "/_sandbox/grants/revoke", {"email": "ann@contoso.example"})
    assert ms_token(base, grant_type="refresh_token", refresh_token=fresh["refresh_token"]).status_code == 400
    gone = requests.get(f"{base}/v1.0/me", headers=bearer(fresh["access_token"]), timeout=TIMEOUT)
    assert gone.status_code == 401 and gone.json()["error"]["code"] == "InvalidAuthenticationToken"


# --- Microsoft: delta ------------------------------------------------------------------------


def mdelta(url: str, token: str, size: int = 10, **params: Any) -> requests.Response:
    prefer = f'odata.maxpagesize={size}, outlook.timezone="UTC"'
    return requests.get(url, params=params, headers=bearer(token, Prefer=prefer), timeout=TIMEOUT)


def ms_full_sync(base: str, token: str, size: int = 10) -> tuple[list[dict[str, Any]], str, int]:
    body = mdelta(f"{base}/v1.0/me/calendarView/delta", token, size, **GRAPH_WIDE).json()
    items, pages = list(body["value"]), 1
    while "@odata.nextLink" in body:
        assert "@odata.deltaLink" not in body and "$skiptoken=" in body["@odata.nextLink"]
        body = mdelta(body["@odata.nextLink"], token, size).json()
        items += body["value"]
        pages += 1
    assert "$deltatoken=" in body["@odata.deltaLink"] and body["@odata.deltaLink"].startswith(base)
    return items, body["@odata.deltaLink"], pages


def test_microsoft_delta_pages_then_changes_with_removed(microsoft: RunningSandbox) -> None:
    base = microsoft.base_url
    token = mint(base)["access_token"]
    post(base, "/_sandbox/seed", {"email": "member@example.com", "count": 25})
    items, delta, pages = ms_full_sync(base, token)
    assert len(items) == 25 and pages == 3
    first = items[0]
    assert first["subject"] and first["body"]["content"].startswith("Agenda") and first["bodyPreview"]
    assert first["start"]["timeZone"] == "UTC" and first["start"]["dateTime"].endswith(".0000000")
    assert first["organizer"]["emailAddress"]["address"] == "member@example.com"
    assert (
        first["attendees"][0]["emailAddress"]["address"]
        and first["iCalUId"]
        and first["lastModifiedDateTime"]
    )
    assert (
        first["isAllDay"] is False
        and first["isCancelled"] is False
        and first["sensitivity"] in ("normal", "private")
    )
    page = mdelta(f"{base}/v1.0/me/calendarView/delta", token, 7, **GRAPH_WIDE)
    assert page.headers["Preference-Applied"] == "odata.maxpagesize=7" and len(page.json()["value"]) == 7
    assert len(mdelta(f"{base}/v1.0/me/calendarView/delta", token, 1000, **GRAPH_WIDE).json()["value"]) == 25
    quiet = mdelta(delta, token).json()
    assert quiet["value"] == [] and "@odata.deltaLink" in quiet
    new = post(
        base, "/_sandbox/events", {"summary": "Kickoff", "start": "2030-03-01T10:00:00Z", "private": True}
    )
    assert (
        new.status_code == 201
        and new.json()["sensitivity"] == "private"
        and new.json()["subject"] == "Kickoff"
    )
    requests.patch(f"{base}/_sandbox/events/{items[0]['id']}", json={"cancelled": True}, timeout=TIMEOUT)
    requests.delete(f"{base}/_sandbox/events/{items[1]['id']}", timeout=TIMEOUT)
    post(base, "/_sandbox/events", {"summary": "Out of window", "start": "2200-01-01T10:00:00Z"})
    changes = mdelta(delta, token).json()
    assert [c["id"] for c in changes["value"]] == [new.json()["id"], items[0]["id"], items[1]["id"]]
    assert changes["value"][1]["isCancelled"] is True
    assert changes["value"][2] == {
        "@odata.type": "#microsoft.graph.event",
        "id": items[1]["id"],
        "@removed": {"reason": "deleted"},
    }
    assert mdelta(changes["@odata.deltaLink"], token).json()["value"] == []
    paged = mdelta(delta, token, 2).json()
    assert len(paged["value"]) == 2 and "@odata.nextLink" in paged
    assert len(mdelta(paged["@odata.nextLink"], token, 2).json()["value"]) == 1


def test_microsoft_delta_410_and_bad_requests(microsoft: RunningSandbox) -> None:
    base = microsoft.base_url
    token = mint(base)["access_token"]
    other = mint(base, "other@contoso.example")["access_token"]
    post(base, "/_sandbox/seed", {"email": "member@example.com", "count": 12})
    _, delta, _ = ms_full_sync(base, token)
    assert mdelta(delta, other).status_code == 410
    post(base, "/_sandbox/events", {"summary": "a"})
    post(base, "/_sandbox/events", {"summary": "b"})
    partial = mdelta(delta, token, 1).json()
    post(base, "/_sandbox/cursors/invalidate", {"email": "member@example.com"})
    for url in (delta, partial["@odata.nextLink"]):
        gone = mdelta(url, token)
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "SyncStateNotFound"
    assert mdelta(f"{base}/v1.0/me/calendarView/delta?$deltatoken=junk", token).status_code == 410
    assert mdelta(f"{base}/v1.0/me/calendarView/delta?$skiptoken=junk", token).status_code == 410
    missing = mdelta(f"{base}/v1.0/me/calendarView/delta", token)
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "ErrorInvalidParameter"
    items, _, _ = ms_full_sync(base, token, 100)
    assert len(items) == 14
    assert requests.get(f"{base}/v1.0/nowhere", headers=bearer(token), timeout=TIMEOUT).status_code == 400
    assert requests.get(f"{base}/elsewhere", timeout=TIMEOUT).status_code == 404


def test_microsoft_throttling_and_faults(microsoft: RunningSandbox) -> None:
    base = microsoft.base_url
    token = mint(base)["access_token"]
    post(base, "/_sandbox/config", {"user_rate_limit": 1, "throttle_retry_after": 4})
    assert requests.get(f"{base}/v1.0/me", headers=bearer(token), timeout=TIMEOUT).status_code == 200
    throttled = requests.get(f"{base}/v1.0/me", headers=bearer(token), timeout=TIMEOUT)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "4"
    assert throttled.json()["error"]["code"] == "ApplicationThrottled"
    post(base, "/_sandbox/config", {"user_rate_limit": 100})
    expected = {
        "rate_limit": (429, "TooManyRequests"),
        "invalid_session": (401, "InvalidAuthenticationToken"),
        "missing_scope": (403, "ErrorAccessDenied"),
        "validation": (400, "ErrorInvalidRequest"),
        "server_error": (500, "generalException"),
        "unavailable": (503, "serviceNotAvailable"),
        "hang": (504, "UnknownError"),
    }
    for kind, (status, code) in expected.items():
        post(base, "/_sandbox/faults", {"kind": kind, "retry_after": 3, "hang_seconds": 0})
        answer = requests.get(f"{base}/v1.0/me", headers=bearer(token), timeout=TIMEOUT)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), kind
        if kind in ("rate_limit", "unavailable"):
            assert answer.headers["Retry-After"] == "3"
    assert requests.get(f"{base}/v1.0/me", timeout=TIMEOUT).status_code == 401


# --- Microsoft: subscriptions ----------------------------------------------------------------


def in_minutes(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def subscribe(base: str, token: str, url: str, **extra: Any) -> requests.Response:
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": url,
        "lifecycleNotificationUrl": url,
        "resource": "me/events",
        "expirationDateTime": in_minutes(4000),
        "clientState": "client-state-secret",
        **extra,
    }
    return post(base, "/v1.0/subscriptions", body, headers=bearer(token))


def test_microsoft_subscription_handshake_notifications_and_lifecycle(
    microsoft: RunningSandbox, receiver: Receiver
) -> None:
    base = microsoft.base_url
    token = mint(base)["access_token"]
    created = subscribe(base, token, receiver.url)
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["clientState"] == "client-state-secret" and sub["resource"] == "me/events" and sub["id"]
    handshake = receiver.requests[0]
    token_sent = parse_qs(urlsplit(handshake["path"]).query)["validationToken"][0]
    assert token_sent.startswith("Validation: Testing client application reachability")
    assert handshake["headers"]["Content-Type"].startswith("text/plain")
    event = post(base, "/_sandbox/events", {"summary": "Sync me"}).json()
    made = deliveries(base, 2)
    notice = next(d for d in made if d["kind"] == "notification")
    assert notice["status"] == 202
    value = json.loads(notice["body"])["value"][0]
    assert value["subscriptionId"] == sub["id"] and value["clientState"] == "client-state-secret"
    assert value["changeType"] == "created" and value["resource"].endswith(f"/Events/{event['id']}")
    assert value["tenantId"] and value["subscriptionExpirationDateTime"]
    renewed = requests.patch(
        f"{base}/v1.0/subscriptions/{sub['id']}",
        json={"expirationDateTime": in_minutes(4200)},
        headers=bearer(token),
        timeout=TIMEOUT,
    )
    assert renewed.status_code == 200 and renewed.json()["expirationDateTime"] != sub["expirationDateTime"]
    too_long = requests.patch(
        f"{base}/v1.0/subscriptions/{sub['id']}",
        json={"expirationDateTime": in_minutes(4300)},
        headers=bearer(token),
        timeout=TIMEOUT,
    )
    assert too_long.status_code == 400
    got = requests.get(f"{base}/v1.0/subscriptions/{sub['id']}", headers=bearer(token), timeout=TIMEOUT)
    assert got.json()["id"] == sub["id"]
    life = post(
        base, "/_sandbox/lifecycle", {"subscription_id": sub["id"], "event": "reauthorizationRequired"}
    )
    assert life.status_code == 202
    lifecycle = next(d for d in deliveries(base, 3) if d["kind"] == "lifecycle")
    assert json.loads(lifecycle["body"])["value"][0]["lifecycleEvent"] == "reauthorizationRequired"
    post(base, "/_sandbox/lifecycle", {"subscription_id": sub["id"], "event": "subscriptionRemoved"})
    assert (
        requests.delete(
            f"{base}/v1.0/subscriptions/{sub['id']}", headers=bearer(token), timeout=TIMEOUT
        ).status_code
        == 404
    )
    assert (
        post(base, "/_sandbox/lifecycle", {"subscription_id": sub["id"], "event": "missed"}).status_code
        == 404
    )
    assert post(base, "/_sandbox/lifecycle", {"subscription_id": "x", "event": "bogus"}).status_code == 400
    calls = requests.get(f"{base}/_sandbox/calls", timeout=TIMEOUT).json()["calls"]
    assert (
        calls["subscriptions.create"] == 1
        and calls["subscriptions.update"] == 2
        and calls["subscriptions.delete"] == 1
    )


def test_microsoft_subscription_refused_when_validation_fails_or_lifetime_too_long(
    microsoft: RunningSandbox, receiver: Receiver
) -> None:
    base = microsoft.base_url
    token = mint(base)["access_token"]
    for mode in ("json", "fail"):
        receiver.mode = mode
        refused = subscribe(base, token, receiver.url)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "ValidationError", mode
    assert subscribe(base, token, "http://127.0.0.1:9/down").json()["error"]["code"] == "ValidationError"
    receiver.mode = "echo"
    too_long = subscribe(base, token, receiver.url, expirationDateTime=in_minutes(4240))
    assert too_long.status_code == 400 and "4230 minutes" in too_long.json()["error"]["message"]
    for bad in (
        {"expirationDateTime": in_minutes(-5)},
        {"expirationDateTime": "later"},
        {"changeType": "moved"},
        {"notificationUrl": "ftp://x"},
        {"lifecycleNotificationUrl": "mailto:x"},
        {"resource": "me/messages"},
        {"clientState": "x" * 129},
    ):
        assert subscribe(base, token, receiver.url, **bad).status_code == 400, bad
    assert post(base, "/v1.0/subscriptions", [1], headers=bearer(token)).status_code == 400
    broken = requests.post(f"{base}/v1.0/subscriptions", data="{", headers=bearer(token), timeout=TIMEOUT)
    assert broken.status_code == 400
    ok = subscribe(base, token, receiver.url, changeType="deleted", lifecycleNotificationUrl="")
    assert ok.status_code == 201
    assert (
        post(base, "/_sandbox/lifecycle", {"subscription_id": ok.json()["id"], "event": "missed"}).status_code
        == 400
    )
    before = len(deliveries(base))
    post(base, "/_sandbox/events", {"summary": "created, not deleted"})
    assert len(deliveries(base)) == before  # the subscription wants deletions only
    post(base, "/_sandbox/config", {"validate_subscriptions": 0})
    assert subscribe(base, token, "http://testserver/hooks").status_code == 201
    sub_url = f"{base}/v1.0/subscriptions/{ok.json()['id']}"
    assert requests.put(sub_url, json={}, headers=bearer(token), timeout=TIMEOUT).status_code == 405
    assert requests.patch(sub_url, data="{", headers=bearer(token), timeout=TIMEOUT).status_code == 400
    assert requests.delete(sub_url, headers=bearer(token), timeout=TIMEOUT).status_code == 204
    index = requests.get(f"{base}/", timeout=TIMEOUT)
    assert index.status_code == 200 and "Subscriptions" in index.text


def test_http_post_returns_status_type_and_text(receiver: Receiver) -> None:
    status, content_type, text = http_post(receiver.url + "?validationToken=abc", {}, b"", 5)
    assert (status, content_type, text) == (200, "text/plain", "abc")


def test_calendar_env_points_conduit_at_fresh_sandboxes(calendar_env: dict[str, str], settings: Any) -> None:
    google, microsoft = calendar_env["google"], calendar_env["microsoft"]
    assert f"{google}/token" == settings.GOOGLE_TOKEN_URL
    assert f"{google}/calendar/v3" == settings.GOOGLE_CALENDAR_API_URL
    assert f"{microsoft}/v1.0" == settings.MICROSOFT_GRAPH_URL
    assert settings.CALENDAR_WEBHOOK_BASE_URL == "http://testserver"
    for base in (google, microsoft):
        assert requests.get(f"{base}/_sandbox/state", timeout=TIMEOUT).json()["users"] == 0
