"""The provider base class and the one HTTP seam every provider call goes through.

`Provider._call` paces the call through the shared rate limiter, sends it on the process's
requests.Session with connect/read timeouts and no redirects, maps every failure into the
closed set in errors.py, and records a crm_sync_logs row, a log line with the answer's rate-limit
headers and the Prometheus metrics. Providers override the hooks (`classify_client_error`,
`refused_in_body`, `default_retry_after`, `observe_response`, `rate_limit_quota`, `before_call`,
`open_transport`) and never look at a status code outside them.
"""

from __future__ import annotations

import base64
import email.utils
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import requests
from django.conf import settings
from django.utils import timezone

from conduit.secrets_scan import redact_text
from integrations.providers import metrics
from integrations.providers.changes import ChangedPage
from integrations.providers.errors import (
    Permanent,
    ProviderError,
    RateLimited,
    Transient,
)
from integrations.providers.ratelimit import Bucket, get_limiter
from integrations.providers.ratelimit_headers import as_count, rate_limit_headers
from integrations.providers.session import EnvironmentOnceSession
from integrations.providers.synclog import NO_CONTEXT, CallContext, log_call, record_sync

_sessions: dict[int, requests.Session] = {}
_last_call = threading.local()


def last_call_ms() -> int | None:
    """How long this thread's last provider call took on the wire (no pacing, no bookkeeping);
    None when it was never sent (refused by Conduit's limiter, or a bad URL)."""
    return getattr(_last_call, "ms", None)


def http_session() -> requests.Session:
    """One Session per process (a forked worker must not share its parent's sockets)."""
    pid = os.getpid()
    if pid not in _sessions:
        session = EnvironmentOnceSession()
        session.headers["User-Agent"] = "Conduit/1.0 (+integrations)"
        _sessions[pid] = session
    return _sessions[pid]


@dataclass(frozen=True)
class Account:
    """The credentials of one connection for one call; repr never shows the token."""

    provider: str
    access_token: str = field(repr=False)
    account_key: str
    instance_url: str = ""
    environment: str = "login"
    context: CallContext = field(default_factory=CallContext)
    # The connection's external_account_json (Odoo: database, user id, API flavour); never a token.
    details: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class TokenSet:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()
    instance_url: str = ""
    identity_url: str = ""
    account_key: str = ""


@dataclass(frozen=True)
class ExternalAccount:
    """The account a grant belongs to: `key` is the HubSpot hub id or the Salesforce org id."""

    key: str
    details: dict[str, Any]
    scopes: tuple[str, ...] = ()
    user_email: str = ""


@dataclass(frozen=True)
class CredentialGrant:
    """What a provider connected by typed credentials (the ATS) gives back once one cheap
    authenticated call accepted them: the account they belong to and the tokens to store.
    `tokens.access_token` is the API key itself (Lever) or a first access token (Greenhouse v3,
    Workday); `tokens.refresh_token` is the encrypted bundle `refresh` needs to get the next
    one (a JSON object of the client credentials), empty when there is nothing to refresh.
    `last4` is the only part of a secret ever shown again."""

    account: ExternalAccount
    tokens: TokenSet
    last4: str


@dataclass(frozen=True)
class Activity:
    """One curated write. `text` is Conduit's summary (subject, participants, time, link);
    never a raw email body nor an event description. `marker` is the idempotency key, carried
    into the CRM record. A meeting (create_meeting) starts at `occurred_at` and ends at
    `ends_at` (None: unknown), with its `attendees`' emails."""

    subject: str
    text: str
    occurred_at: datetime
    contact_id: str
    marker: str
    deal_id: str | None = None
    due_at: datetime | None = None
    ends_at: datetime | None = None
    attendees: tuple[str, ...] = ()


WRITE_OPERATIONS = ("create_note", "create_task", "create_meeting")
# "cdw" and 24 lowercase hex digits: one alphanumeric token, so it needs no escaping in a SOQL
# LIKE or a HubSpot CONTAINS_TOKEN filter.
MARKER_RE = re.compile(r"cdw[0-9a-f]{24}")


def check_operation(operation: str) -> str:
    if operation not in WRITE_OPERATIONS:
        raise ValueError(
            f"unknown write operation {operation!r}; expected one of {', '.join(WRITE_OPERATIONS)}"
        )
    return operation


def check_marker(marker: str) -> str:
    if not MARKER_RE.fullmatch(marker):
        raise ValueError(f"invalid marker {marker!r}; expected 'cdw' and 24 lowercase hex digits")
    return marker


def marked(text: str, marker: str, limit: int) -> str:
    """`text` cut so that it and ` [marker]` fit `limit` characters, ending with the marker
    (nothing is appended when the text already contains it)."""
    suffix = "" if marker in text else f" [{marker}]"
    return text[: limit - len(suffix)] + suffix


def with_marker(activity: Activity, limit: int) -> str:
    """The activity text, cut to the provider's field limit, always ending with the marker
    (so a write whose outcome is unknown can be found at the provider again)."""
    return marked(activity.text, activity.marker, limit)


@dataclass(frozen=True)
class HealthResult:
    latency_ms: int
    details: dict[str, Any]


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), clamped; None when absent or bad."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - (now or timezone.now())).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), float(settings.CONDUIT_RETRY_AFTER_MAX_SECONDS))


def json_or_none(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def short(text: Any, limit: int = 200) -> str:
    return redact_text(str(text or ""))[:limit]


def basic_auth(user: str, password: str = "") -> str:
    """The base64 credentials of HTTP Basic (`user:password`; Lever's key with a blank password,
    a token endpoint's client id and secret)."""
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


LAST4_FROM = 12  # a secret shorter than this shows no characters at all


def last4(secret: str) -> str:
    """The only part of a typed secret shown again: its last 4 characters, none for a short one."""
    return secret[-4:] if len(secret) >= LAST4_FROM else ""


ERROR_CODE_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")


def safe_code(error: str, status: int) -> str:
    """A provider's own error name as Conduit's error code when it looks like one, else
    `http_<status>`: a code is never scrubbed, so nothing the provider echoes may become one."""
    return error if ERROR_CODE_RE.fullmatch(error) else f"http_{status}"


class Provider:
    name: ClassVar[str]
    label: ClassVar[str]
    required_scopes: ClassVar[tuple[str, ...]]
    supports_pkce: ClassVar[bool] = False
    auth_scheme: ClassVar[str] = "Bearer"  # the Authorization scheme of API calls (Zoho: Zoho-oauthtoken)
    # False for a provider connected with typed credentials (Odoo, the ATS): nothing to authorize.
    uses_oauth: ClassVar[bool] = True
    # Whether `refresh` gets a new access token: OAuth providers, and the credential providers
    # whose secret is exchanged for short-lived tokens (Greenhouse v3, Workday).
    refreshes_tokens: ClassVar[bool] = True
    # The fields of the credentials form, in order (empty: connected by OAuth).
    credential_fields: ClassVar[tuple[str, ...]] = ()
    # Whether `changed_since` reads the CRM's changes (the incremental pull); False for the ATS,
    # which have no contact -> deal lookups to keep fresh.
    pulls_changes: ClassVar[bool] = True
    # Whether the provider has a natural task (create_task); the planner plans a note instead.
    supports_tasks: ClassVar[bool] = True
    # Whether Conduit writes curated activity at all (False: Workday, no verified write API);
    # the planner never plans a write for such a connection.
    supports_writes: ClassVar[bool] = True
    # The answer headers that carry the provider's rate-limit state, logged verbatim with each call
    # (ratelimit_headers.py); the two after them give the normalised X-RateLimit-* pair.
    rate_limit_header_names: ClassVar[tuple[str, ...]] = ()
    rate_limit_limit_header: ClassVar[str] = ""
    rate_limit_remaining_header: ClassVar[str] = ""

    # --- OAuth (overridden by each provider) ---
    def not_oauth(self) -> Exception:
        """What the OAuth methods raise by default: a Permanent `credentials_only` for a provider
        connected with typed credentials (the OAuth doors refuse it before this is reached)."""
        if self.uses_oauth:
            return NotImplementedError(f"{type(self).__name__} must implement its OAuth methods")
        return Permanent(
            self.name, "credentials_only", f"{self.label} connects with typed credentials, not OAuth"
        )

    def authorize_url(
        self, *, state: str, redirect_uri: str, code_challenge: str | None = None, environment: str = "login"
    ) -> str:
        raise self.not_oauth()

    def exchange_code(
        self,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str | None = None,
        environment: str = "login",
        context: CallContext = NO_CONTEXT,
    ) -> TokenSet:
        raise self.not_oauth()

    def refresh(
        self, refresh_token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> TokenSet:
        raise NotImplementedError

    def revoke(self, token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT) -> None:
        raise NotImplementedError

    def identify(
        self, tokens: TokenSet, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> ExternalAccount:
        raise self.not_oauth()

    def check_credentials(
        self, fields: Mapping[str, str], *, context: CallContext = NO_CONTEXT
    ) -> CredentialGrant:
        """Validate typed credentials with one cheap authenticated call; nothing is stored here.
        Raises AuthRevoked (refused), MissingScope (a permission is missing), Permanent
        (e.g. unknown tenant), RateLimited or Transient."""
        raise NotImplementedError

    def callback_environment(self, params: dict[str, str], environment: str) -> str:
        """Where the account lives, from the OAuth callback's query: the environment the
        authorization started in, unless the provider's redirect names it (Zoho's data centre).
        Refuses (InvalidInstanceUrl) a server outside the provider's own domains."""
        return environment

    # --- API ---
    def check_health(self, account: Account) -> HealthResult:
        raise NotImplementedError

    def api_bucket(self) -> Bucket:
        """Conduit's budget for this provider's ordinary API calls (health shows its headroom)."""
        raise NotImplementedError

    def find_contact(self, account: Account, email: str) -> str | None:
        raise NotImplementedError

    def find_open_deal(self, account: Account, contact_id: str) -> str | None:
        raise NotImplementedError

    def create_note(self, account: Account, activity: Activity) -> str:
        raise NotImplementedError

    def create_task(self, account: Account, activity: Activity) -> str:
        raise NotImplementedError

    def create_meeting(self, account: Account, activity: Activity) -> str:
        """A meeting from a member's calendar. By default a note describing it (its text names
        the title, time, organizer and attendees), for a CRM without a native meeting in
        Conduit's scope; HubSpot and Salesforce override it."""
        return self.create_note(account, activity)

    def write(self, account: Account, operation: str, activity: Activity) -> str:
        """Send one write ("create_note", "create_task" or "create_meeting"); returns the new
        record's id."""
        operation = check_operation(operation)
        if operation == "create_meeting":
            return self.create_meeting(account, activity)
        if operation == "create_note":
            return self.create_note(account, activity)
        return self.create_task(account, activity)

    def write_payload(self, operation: str, activity: Activity) -> dict[str, Any]:
        """The exact JSON body `write(account, operation, activity)` sends."""
        check_operation(operation)
        raise NotImplementedError

    def find_write(self, account: Account, operation: str, activity: Activity) -> str | None:
        """The id of the record an earlier `write` of this activity created, found at the
        provider by its marker, or None. Called before any resend of a write whose outcome
        is unknown. Refuses (ValueError) an unknown operation or a malformed marker."""
        check_operation(operation)
        check_marker(activity.marker)
        return self.find_marked(account, operation, activity)

    def find_marked(self, account: Account, operation: str, activity: Activity) -> str | None:
        """Hook for `find_write`: look the record up by `activity.marker` (already validated)."""
        raise NotImplementedError

    def changed_since(
        self, account: Account, object: str, since: datetime, after: str | None, limit: int
    ) -> ChangedPage:
        """Up to `limit` contacts or deals (`object`: "contact" or "deal") changed at or after
        `since`, oldest first; pass the page's `next` as `after` for the following page."""
        raise NotImplementedError

    def missing_scopes(self, granted: tuple[str, ...] | list[str]) -> list[str]:
        return [scope for scope in self.required_scopes if scope not in set(granted)]

    # --- hooks for _call ---
    def classify_client_error(self, resp: requests.Response, operation: str) -> ProviderError:
        """Map a 4xx other than 429 (and the provider's own rate-limit shapes) to an error."""
        raise NotImplementedError

    def default_retry_after(self, resp: requests.Response) -> float:
        """Seconds to wait after a rate-limit answer that carries no usable Retry-After."""
        raise NotImplementedError

    def observe_response(self, account_key: str, resp: requests.Response) -> None:
        """Read usage headers (e.g. Salesforce's daily allocation)."""

    def rate_limit_quota(self, headers: Mapping[str, str]) -> tuple[int | None, int | None]:
        """(limit, remaining) of the provider's rate limit, from an answer's headers (looked up
        case-insensitively); None for what the headers do not say."""
        return (
            as_count(headers.get(self.rate_limit_limit_header)),
            as_count(headers.get(self.rate_limit_remaining_header)),
        )

    def before_call(self, account_key: str, *, write: bool) -> None:
        """Refuse a call before it is sent (e.g. writes paused near a daily limit)."""

    def refused_in_body(self, body: Any, operation: str) -> ProviderError | None:
        """An error the provider reports inside a 2xx answer (Zoho's token endpoint and record
        writes), or None."""
        return None

    # --- the seam ---
    def _call_as(
        self,
        account: Account,
        operation: str,
        method: str,
        url: str,
        *,
        bucket: Bucket | None = None,
        **kw: Any,
    ) -> Any:
        """`_call` on behalf of one connection: its token, its call context (the sync log's
        workspace and the secrets to scrub), its rate-limit account, the provider's API bucket."""
        return self._call(
            operation,
            method,
            url,
            context=account.context,
            token=account.access_token,
            bucket=bucket or self.api_bucket(),
            account_key=account.account_key,
            **kw,
        )

    def _call(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        context: CallContext,
        token: str | None = None,
        bucket: Bucket | None = None,
        account_key: str = "",
        write: bool = False,
        secrets: tuple[str, ...] = (),
        decode: Callable[[requests.Response], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """`decode` reads a 2xx answer that is not JSON (Odoo's XML-RPC); a ProviderError it
        raises is recorded like any other failure."""
        started = time.monotonic()
        http_status: int | None = None
        error: ProviderError | None = None
        rate_limit: dict[str, str] = {}
        _last_call.ms = None
        try:
            if account_key:
                if bucket is not None:
                    get_limiter().acquire(bucket, account_key)
                self.before_call(account_key, write=write)
            started = time.monotonic()  # the pacing wait is not the provider's latency
            try:
                resp = self._send(method, url, token, **kwargs)
            finally:
                _last_call.ms = int((time.monotonic() - started) * 1000)
            http_status = resp.status_code
            rate_limit = rate_limit_headers(self, resp.headers)
            if account_key:
                self.observe_response(account_key, resp)
            if not 200 <= resp.status_code < 300:
                raise self._classify(resp, operation)
            if decode is not None:
                return decode(resp)
            body = json_or_none(resp) if resp.content else None
            if (refused := self.refused_in_body(body, operation)) is not None:
                raise refused
            return body
        except ProviderError as exc:
            exc.scrub([*secrets, *context.secrets, *self._sent_secrets(token, kwargs)])
            error = exc
            if isinstance(exc, RateLimited) and http_status is not None:
                metrics.RATE_LIMIT_HITS.labels(provider=self.name).inc()
                if bucket is not None and account_key:
                    get_limiter().block(bucket, account_key, exc.retry_after)
            raise
        finally:
            self._record(operation, context, started, http_status, error, rate_limit)

    SECRET_FORM_FIELDS = ("code", "refresh_token", "client_secret", "code_verifier", "token")

    def _sent_secrets(self, token: str | None, kwargs: dict[str, Any]) -> list[str]:
        """What this call sent that must never come back in a message: the token and its
        Authorization value (bare too: a Basic value is the credentials themselves), any
        Authorization header passed in, and the secret form fields."""
        data = kwargs.get("data")
        form: dict[str, Any] = data if isinstance(data, dict) else {}
        headers = kwargs.get("headers")
        sent = [self.authorization(token)] if token else []
        if isinstance(headers, dict) and isinstance(headers.get("Authorization"), str):
            sent.append(headers["Authorization"])
        bare = [value.partition(" ")[2] for value in sent]
        candidates = [token, *sent, *bare, *(form.get(f) for f in self.SECRET_FORM_FIELDS)]
        return [v for v in candidates if isinstance(v, str) and v]

    def open_transport(self, url: str) -> tuple[requests.Session, str, dict[str, str]]:
        """The session, URL and extra headers a call to `url` goes out with: by default the
        process's session as it is; Odoo pins the checked address of the customer's host."""
        return http_session(), url, {}

    def authorization(self, token: str) -> str:
        """The Authorization header of an API call made with `token` (Lever: HTTP Basic with the
        key as the user name)."""
        return f"{self.auth_scheme} {token}"

    def _send(self, method: str, url: str, token: str | None, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if token:
            headers["Authorization"] = self.authorization(token)
        session, url, pinned_headers = self.open_transport(url)
        headers.update(pinned_headers)
        try:
            return session.request(
                method,
                url,
                headers=headers,
                timeout=settings.CONDUIT_PROVIDER_TIMEOUT,
                allow_redirects=False,
                **kwargs,
            )
        except requests.Timeout:
            raise Transient(self.name, "timeout", "the provider did not answer in time") from None
        except requests.RequestException as exc:
            # The exception text can carry the URL (and so a token in a path): keep only its type.
            raise Transient(self.name, "network_error", type(exc).__name__) from None

    def _classify(self, resp: requests.Response, operation: str) -> ProviderError:
        status = resp.status_code
        if 300 <= status < 400:
            return Permanent(self.name, "unexpected_redirect", f"HTTP {status}", http_status=status)
        if status == 429:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if retry_after is None:
                retry_after = self.default_retry_after(resp)
            return RateLimited(
                self.name,
                "rate_limited",
                short(self._message(resp)),
                retry_after=retry_after,
                http_status=status,
            )
        if status == 423:
            return Transient(self.name, "locked", "HTTP 423", http_status=status)
        if status == 477:
            return Transient(self.name, "migration_in_progress", "HTTP 477", http_status=status)
        if status >= 500:
            return Transient(self.name, f"http_{status}", short(self._message(resp)), http_status=status)
        if 200 <= status < 300:  # pragma: no cover - _call only classifies failures
            raise ValueError("not an error")
        return self.classify_client_error(resp, operation)

    def _message(self, resp: requests.Response) -> str:
        body = json_or_none(resp)
        if isinstance(body, dict):
            return str(body.get("message") or body.get("error_description") or body.get("error") or "")
        if isinstance(body, list) and body and isinstance(body[0], dict):
            return str(body[0].get("message", ""))
        return f"HTTP {resp.status_code}"

    def _record(
        self,
        operation: str,
        context: CallContext,
        started: float,
        http_status: int | None,
        error: ProviderError | None,
        rate_limit: dict[str, str],
    ) -> None:
        elapsed = time.monotonic() - started
        sent = http_status is not None or isinstance(error, Transient)
        if sent:  # calls Conduit held back itself (pacing, daily pause, bad URL) are not provider calls
            metrics.SYNC_DURATION.labels(provider=self.name, operation=operation).observe(elapsed)
        if error is not None and sent:
            metrics.SYNC_ERRORS.labels(provider=self.name, operation=operation, error_code=error.code).inc()
        log_call(
            provider=self.name,
            operation=operation,
            http_status=http_status,
            error_code=error.code if error else None,
            duration_ms=int(elapsed * 1000),
            rate_limit=rate_limit,
        )
        if error is not None:
            summary = f"{operation} failed: {error.code}" + (f": {error.message}" if error.message else "")
        else:
            summary = f"{operation} ok"
        if operation == "health_check":
            metrics.set_connection_status(self.name, context.workspace_id, ok=error is None)
        record_sync(
            context,
            provider=self.name,
            operation=operation,
            ok=error is None,
            http_status=http_status,
            error_code=error.code if error else "",
            duration_ms=int(elapsed * 1000),
            summary=summary,
        )
