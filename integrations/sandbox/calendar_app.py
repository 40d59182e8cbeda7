"""What the Google and Microsoft calendar sandbox apps share on top of SandboxApp: the consent page
that picks the member's email, code exchange with PKCE (S256), the access-token -> user check
with the per-user rate window, the per-endpoint call counters, and the control endpoints:

  POST   /_sandbox/events              {email, id?, summary, description, start, end, all_day,
                                        attendees, organizer, private, cancelled} -> the event (201)
  PATCH  /_sandbox/events/{id}         change fields -> the event; DELETE /_sandbox/events/{id} -> 204
  GET    /_sandbox/events?email=       the member's events as the API shows them
  POST   /_sandbox/seed                {count, email? | users?, domain?, attendee_domains?}
  POST   /_sandbox/cursors/invalidate  {email}: every sync token / delta link of the member -> 410
  POST   /_sandbox/grants/revoke       {email}: refresh and access tokens die
  POST   /_sandbox/tokens              {email?, scopes?, expires_in?} -> a token answer
  GET    /_sandbox/deliveries?min=&wait=  pushes made and the receivers' status codes
  GET    /_sandbox/calls               API calls per endpoint
and the base's /_sandbox/state, /config, /faults and /reset."""

from __future__ import annotations

import re
from html import escape
from typing import Any
from urllib.parse import parse_qs, urlsplit

from integrations.sandbox import pages
from integrations.sandbox.calendar_data import DEFAULT_EMAIL, CalendarState, CalEvent, CalUser
from integrations.sandbox.common import (
    Reply,
    Request,
    SandboxApp,
    empty_reply,
    html_reply,
    json_reply,
    setting,
)
from integrations.sandbox.oauth import AuthCode, Consent, consent_error, pkce_challenge, same

EVENT_PATH = re.compile(r"^/_sandbox/events/([A-Za-z0-9]+)$")
MAX_SEED_USERS = 100_000
MAX_SEED_EVENTS = 10_000


def _email(data: Any) -> str:
    email = data.get("email") if isinstance(data, dict) else None
    if not isinstance(email, str) or "@" not in email:
        raise ValueError("body must be an object with the member's 'email'")
    return email.strip().lower()


def _count(data: dict[str, Any], key: str, default: int, high: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise ValueError(f"{key} must be an integer from 0 to {high}")
    return value


class CalendarApp(SandboxApp):
    state: CalendarState
    grant_prefix = "sbx-rt-"
    access_prefix = "sbx-at-"

    # hooks the provider fills in
    def event_json(self, event: CalEvent) -> dict[str, Any]:
        raise NotImplementedError

    def endpoint(self, req: Request) -> str:
        """The counter name of an API call ("" when it is not one)."""
        raise NotImplementedError

    def unauthorized(self) -> Reply:
        raise NotImplementedError

    def throttled(self) -> Reply:
        raise NotImplementedError

    def token_json(
        self, email: str, scopes: list[str], ttl: int, grant: str | None, *, include_refresh: bool = True
    ) -> dict[str, Any]:
        """A token answer; the access token dies with `grant`, which it carries when asked."""
        access = self.state.tokens.issue_access(scopes, ttl, self.state.clock(), self.access_prefix, grant)
        self.state.owners[access] = email
        data: dict[str, Any] = {
            "access_token": access,
            "expires_in": ttl,
            "scope": " ".join(scopes),
            "token_type": "Bearer",
        }
        if grant and include_refresh:
            data["refresh_token"] = grant
        return data

    def new_grant(self, email: str, scopes: list[str]) -> str:
        grant = self.state.tokens.issue_grant(scopes, self.grant_prefix)
        self.state.owners[grant] = email
        return grant

    # consent

    def requested_scopes(self, query: dict[str, str]) -> list[str]:
        return query.get("scope", "").split()

    def authorize_error(self, query: dict[str, str]) -> str | None:
        if query.get("response_type") != "code":
            return "response_type must be code."
        if not query.get("scope", "").strip():
            return "The request has no scope."
        if query.get("code_challenge") and query.get("code_challenge_method") != "S256":
            return "code_challenge_method must be S256."
        return None

    def authorize_page(self, req: Request) -> Reply:
        q = req.query
        error = consent_error(q.get("client_id", ""), q.get("redirect_uri", ""), setting(self.client_setting))
        if error := error or self.authorize_error(q):
            return html_reply(400, pages.error_page(self.title, error))
        consent = Consent(
            q["client_id"],
            q["redirect_uri"],
            self.requested_scopes(q),
            q.get("state", ""),
            q.get("code_challenge", ""),
        )
        hidden = {
            **consent.hidden_fields(),
            "access_type": q.get("access_type", ""),
            "login_hint": q.get("login_hint", ""),
        }
        items = "".join(f"<li>{escape(s)}</li>" for s in consent.scopes)
        inputs = "".join(
            f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in hidden.items()
        )
        email = escape(q.get("login_hint") or DEFAULT_EMAIL)
        body = (
            f'<div class="card narrow"><h1>{escape(self.title)}</h1>\n'
            f'<p class="sub">Connect the app <strong>{escape(consent.client_id)}</strong> '
            f"to {escape(self.account)}?</p>\n"
            f'<p>The app asks for these permissions:</p>\n<ul class="scopes">{items}</ul>\n'
            f'<form method="post" action="{escape(self.decision_path)}">{inputs}\n'
            f'<p><label>Sign in as <input type="email" name="email" value="{email}" required></label></p>'
            '<div class="actions">'
            '<button class="allow" type="submit" name="decision" value="allow">Allow</button>'
            '<button class="deny" type="submit" name="decision" value="deny">Deny</button>'
            "</div></form></div>"
        )
        return html_reply(200, pages.page(f"{self.title}: authorize", body))

    def decide(self, req: Request) -> Reply:
        form = req.form()
        email = (form.get("email") or form.get("login_hint") or DEFAULT_EMAIL).strip().lower()
        if form.get("decision") == "allow" and "@" not in email:
            return html_reply(400, pages.error_page(self.title, "Enter the email address to sign in as."))
        reply = super().decide(req)
        code = parse_qs(urlsplit(reply.headers.get("Location", "")).query).get("code", [""])[0]
        if code in self.state.tokens.codes:
            self.state.owners[code] = email
            if form.get("access_type") == "offline":
                self.state.offline.add(code)
        return reply

    def exchange_code(self, form: dict[str, str]) -> tuple[str, AuthCode | None, str, bool]:
        """Take a code (the client is already checked) -> (error, code, email, offline); error is
        "" | "code" | "verifier"."""
        raw = form.get("code", "")
        email, offline = self.state.owners.pop(raw, None), raw in self.state.offline
        self.state.offline.discard(raw)
        code = self.state.tokens.take_code(
            raw, form["client_id"], form.get("redirect_uri", ""), self.state.clock()
        )
        if code is None or email is None:
            return "code", None, "", False
        if code.challenge and not same(pkce_challenge(form.get("code_verifier", "")), code.challenge):
            return "verifier", None, "", False
        self.state.user(email)
        return "", code, email, offline

    # the API's gate

    def api_user(self, req: Request) -> tuple[CalUser | None, Reply | None]:
        user = self.state.access_owner(req.bearer())
        if user is None:
            return None, self.unauthorized()
        if self.state.over_limit(user):
            self.state.rate_limited += 1
            return None, self.throttled()
        return user, None

    def finish(self, req: Request, reply: Reply) -> Reply:
        if name := self.endpoint(req):
            self.state.calls[name] += 1
        return reply

    def mint(self, email: str, scopes: list[str] | None, ttl: int | None) -> dict[str, Any]:
        granted = list(self.default_scopes if scopes is None else scopes)
        ttl = self.state.config["access_token_ttl"] if ttl is None else ttl
        self.state.user(email)
        return self.token_json(email, granted, ttl, self.new_grant(email, granted))

    default_scopes: tuple[str, ...] = ()

    # control endpoints

    def control(self, req: Request) -> Reply:
        state, path = self.state, req.path.rstrip("/")
        if req.method == "GET" and path == "/_sandbox/deliveries":
            try:
                least, wait = int(req.query.get("min", "0")), min(float(req.query.get("wait", "0")), 30.0)
            except ValueError:
                return json_reply(400, {"error": "min and wait must be numbers"})
            state.outbox.wait(least, wait)
            return json_reply(200, {"deliveries": [d.as_json() for d in state.outbox.deliveries]})
        if req.method == "GET" and path == "/_sandbox/calls":
            return json_reply(200, {"calls": dict(state.calls), "total": sum(state.calls.values())})
        if req.method == "GET" and path == "/_sandbox/events":
            user = state.user(req.query.get("email") or DEFAULT_EMAIL)
            return json_reply(200, {"items": [self.event_json(e) for e in user.events.values()]})
        if req.method == "DELETE" and (m := EVENT_PATH.match(path)):
            try:
                state.delete_event(m[1])
            except KeyError:
                return json_reply(404, {"error": f"no event {m[1]}"})
            return empty_reply(204)
        posts = (
            "/_sandbox/events",
            "/_sandbox/seed",
            "/_sandbox/cursors/invalidate",
            "/_sandbox/grants/revoke",
        )
        patch = req.method == "PATCH" and EVENT_PATH.match(path)
        extra = self.extra_control(req, path)
        if (
            extra is None
            and not patch
            and not (req.method == "POST" and path in (*posts, "/_sandbox/tokens"))
        ):
            return super().control(req)
        try:
            data = req.json()
        except ValueError:
            return json_reply(400, {"error": "body must be JSON"})
        try:
            if extra is not None:
                return extra(data)
            if patch:
                return json_reply(200, self.event_json(state.put_event(data, patch[1])[0]))
            if path == "/_sandbox/events":
                event, change = state.put_event(data)
                return json_reply(201 if change == "created" else 200, self.event_json(event))
            if path == "/_sandbox/seed":
                return self.seed(data)
            if path == "/_sandbox/tokens":
                return self.mint_control(data)
            email = _email(data)
            if path == "/_sandbox/cursors/invalidate":
                return json_reply(200, {"email": email, "generation": state.invalidate(email).gen})
            return json_reply(200, {"email": email, "revoked": state.revoke_user(email)})
        except KeyError as exc:
            return json_reply(404, {"error": f"no event {exc.args[0]}"})
        except ValueError as exc:
            return json_reply(400, {"error": str(exc)})

    def extra_control(self, req: Request, path: str) -> Any:
        """A provider's own control endpoint: a callable taking the JSON body, or None."""
        return None

    def mint_control(self, data: Any) -> Reply:
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise ValueError("body must be an object")
        email = _email(data) if "email" in data else DEFAULT_EMAIL
        scopes, ttl = self._parse_mint({k: v for k, v in data.items() if k != "email"})
        return json_reply(200, self.mint(email, scopes, ttl))

    def seed(self, data: Any) -> Reply:
        """Bulk events: {"count": 200, "users": 1000, "domain": "bench.example"} seeds
        user00001@bench.example ...; {"count": 50, "email": "a@x.example"} one member."""
        if not isinstance(data, dict) or set(data) - {
            "count",
            "email",
            "users",
            "domain",
            "attendee_domains",
        }:
            raise ValueError("body must be an object with count and email, or users (and domain)")
        count = _count(data, "count", 200, MAX_SEED_EVENTS)
        domains = data.get("attendee_domains", ["customer.example"])
        if not isinstance(domains, list) or not all(isinstance(d, str) and d for d in domains):
            raise ValueError("attendee_domains must be a list of domains")
        if "email" in data:
            emails = [_email(data)]
        else:
            domain = data.get("domain", "bench.example")
            if not isinstance(domain, str) or not domain:
                raise ValueError("domain must be a domain name")
            emails = [f"user{n:05d}@{domain}" for n in range(1, _count(data, "users", 1, MAX_SEED_USERS) + 1)]
        for email in emails:
            self.state.seed_user(email, count, tuple(domains))
        return json_reply(200, {"users": emails, "events": count * len(emails)})

    def user_rows(self) -> pages.Section:
        rows = [
            [u.email, len(u.events) + (u.pending[0] if u.pending else 0), u.gen]
            for u in list(self.state.users.values())[:200]
        ]
        return pages.Section("Members (first 200)", ["Email", "Events", "Cursor generation"], rows)

    def delivery_rows(self) -> pages.Section:
        rows = [
            [d.id, d.kind, d.target, d.url, d.status, d.error] for d in self.state.outbox.deliveries[-50:]
        ]
        return pages.Section("Deliveries (last 50)", ["#", "Kind", "Channel", "URL", "Status", "Error"], rows)

    def calls_rows(self) -> pages.Section:
        rows = [[k, v] for k, v in sorted(self.state.calls.items())]
        return pages.Section("API calls", ["Endpoint", "Calls"], rows)
