"""Workday: one customer tenant, connected with the API client its administrator registered
("Register API Client for Integrations") and the refresh token of its Integration System User.

Facts: ../shared/provider-facts.md ("Workday"); docs/connectors.md lists every [verify] item.
The customer types five fields: the host of the tenant's token endpoint (e.g.
wd2-impl-services1.workday.com), the tenant, the client id, the client secret and the refresh
token. Nothing is sent before `workday_origin` accepts the host: https on port 443 and a parsed,
lower-cased hostname (no trailing dot) under one of Workday's own domains; in development the
sandbox's origin (WORKDAY_EXTRA_ORIGINS) too. Every access token comes from
`POST https://{host}/ccx/oauth2/{tenant}/token` (grant refresh_token, the client authenticated
with HTTP Basic); the refresh bundle stored encrypted with the connection is the JSON of what that
call needs. The health check is one harmless GET on the Recruiting REST API.

Writes: Workday's public REST documentation that Conduit could check names no call that finds a
candidate by email and adds a note to it, so every curated write is refused as
`operation_unsupported`; Conduit connects, validates and checks health only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from django.conf import settings
from django.utils import timezone

from integrations.providers import pinned
from integrations.providers.base import (
    Account,
    Activity,
    CredentialGrant,
    ExternalAccount,
    HealthResult,
    Provider,
    TokenSet,
    basic_auth,
    check_operation,
    json_or_none,
    last4,
    last_call_ms,
    safe_code,
    short,
)
from integrations.providers.changes import ChangedPage
from integrations.providers.errors import (
    AuthRevoked,
    InvalidInstanceUrl,
    MissingScope,
    Permanent,
    ProviderError,
    TokenExpired,
    Transient,
)
from integrations.providers.ratelimit import Bucket
from integrations.providers.synclog import NO_CONTEXT, CallContext

# Workday's data-centre hosts: *.workday.com (wd2-impl-services1.workday.com) and *.myworkday.com
# (wd5-services1.myworkday.com). [verify] *.workdaysuv.com: Workday's demo (SUV) tenants.
HOST_SUFFIXES = (".workday.com", ".myworkday.com", ".workdaysuv.com")
HOST_EXAMPLE = "e.g. wd2-impl-services1.workday.com"
TENANT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
SECRET_RE = re.compile(r"[\x21-\x7e]+")  # one word of printable ASCII
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
LABELS = {
    "host": "Workday host",
    "tenant": "tenant",
    "client_id": "client ID",
    "client_secret": "client secret",
    "refresh_token": "refresh token",
}
LIMITS = {"host": 300, "tenant": 64, "client_id": 256, "client_secret": 512, "refresh_token": 2048}
BUNDLE_FIELDS = ("client_id", "client_secret", "host", "refresh_token", "tenant")
TOKEN_OPERATIONS = ("connect", "refresh")
# [verify] the Recruiting service's version and that `GET jobPostings?limit=1` is readable by an
# API client with the Recruiting functional area; Conduit reads one posting and keeps nothing.
HEALTH_PATH = "recruiting/v4/{tenant}/jobPostings"
HEALTH_SCOPES = ["Recruiting"]  # the functional area the API client needs, named on a 403 [verify]
# [verify] Workday publishes no REST rate limit; Conduit paces itself to 10 calls a second per
# tenant (settings.WORKDAY_REQUESTS_PER_SECOND) and waits this long after a 429 that names no Retry-After.
DEFAULT_RETRY_AFTER = 30.0
# [verify] a token answer without expires_in: tenants were seen issuing 3600 s and 1800 s tokens;
# Conduit assumes the shorter one, and refreshes after a 401 anyway.
DEFAULT_TOKEN_SECONDS = 1800
WRITES_UNSUPPORTED = "Workday writes are not verified; Conduit connects, validates and checks health only"


def unsupported() -> Permanent:
    return Permanent("workday", "operation_unsupported", WRITES_UNSUPPORTED)


def refuse_host(message: str) -> InvalidInstanceUrl:
    return InvalidInstanceUrl("workday", None, message)


def trusted_origin(url: str, *, typed_scheme: bool) -> str | None:
    """The WORKDAY_EXTRA_ORIGINS entry `url` names (the sandbox, development only), or None. A host
    typed without a scheme matches on host and port alone."""
    parts = urlsplit(url)
    for origin in settings.WORKDAY_EXTRA_ORIGINS:
        trusted = urlsplit(str(origin).rstrip("/"))
        if not trusted.netloc or parts.netloc.lower() != trusted.netloc.lower():
            continue
        if not typed_scheme or parts.scheme.lower() == trusted.scheme.lower():
            return f"{trusted.scheme}://{trusted.netloc}".lower()
    return None


def workday_origin(value: str) -> str:
    """The normalised origin (`https://{host}`) of a Workday host, typed bare or as an https URL,
    or InvalidInstanceUrl naming the host field: https on port 443, a host name under one of
    HOST_SUFFIXES compared on the parsed, lower-cased hostname without a trailing dot; no user,
    password, path, query or fragment."""
    value = value.strip() if isinstance(value, str) else ""
    if not value:
        raise refuse_host(f"Enter the Workday host ({HOST_EXAMPLE}).")
    if "@" in value or "\\" in value or any(ord(ch) <= 32 or ord(ch) == 127 for ch in value):
        raise refuse_host(
            "The Workday host must not contain '@', a backslash, a space or a control character."
        )
    typed_scheme = "://" in value
    url = value if typed_scheme else f"https://{value}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refuse_host(f"The Workday host is not a host name ({HOST_EXAMPLE}).") from None
    if parts.path.strip("/") or parts.query or parts.fragment or "?" in url or "#" in url:
        raise refuse_host(f"Enter only the Workday host, without a path ({HOST_EXAMPLE}).")
    if origin := trusted_origin(url, typed_scheme=typed_scheme):
        return origin
    if parts.scheme.lower() != "https" or port not in (None, 443):
        raise refuse_host("The Workday host must be reached over https on the standard port (443).")
    try:
        host = pinned.normalise_host(parts.hostname or "", "workday")
    except InvalidInstanceUrl:
        raise refuse_host(f"The Workday host is not a valid host name ({HOST_EXAMPLE}).") from None
    if not host.endswith(HOST_SUFFIXES):
        names = ", ".join(s.lstrip(".") for s in HOST_SUFFIXES)
        raise refuse_host(f"The Workday host must be a name under {names} ({HOST_EXAMPLE}).")
    return f"https://{host}"


def check_tenant(value: str) -> str:
    if not TENANT_RE.fullmatch(value):
        raise ValueError(
            "The tenant is the name after /oauth2/ in the token endpoint: letters, digits, '_' and '-' "
            "only, at most 64 characters."
        )
    return value


def clean_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """The five fields, trimmed and checked; ValueError with one sentence naming the first at fault."""
    values = {name: str(fields.get(name) or "").strip() for name in LABELS}
    for name, value in values.items():
        label = LABELS[name]
        if not value:
            raise ValueError(f"Enter the {label}.")
        if len(value) > LIMITS[name]:
            raise ValueError(f"The {label} is longer than {LIMITS[name]} characters.")
        if CONTROL_RE.search(value):
            raise ValueError(f"The {label} contains a control character.")
        if name in ("client_id", "client_secret", "refresh_token") and not SECRET_RE.fullmatch(value):
            raise ValueError(f"The {label} is one word: letters, digits and punctuation, without spaces.")
    check_tenant(values["tenant"])
    return values


def make_bundle(creds: Mapping[str, str]) -> str:
    """What `refresh` needs, as compact JSON with sorted keys (stored encrypted, never shown)."""
    return json.dumps({k: creds[k] for k in BUNDLE_FIELDS}, separators=(",", ":"), sort_keys=True)


def read_bundle(raw: str) -> dict[str, str]:
    """The stored bundle; AuthRevoked when it is not one (the customer enters the credentials again)."""
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        data = None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) and data[k] for k in BUNDLE_FIELDS):
        raise AuthRevoked("workday", "credentials_invalid", "the stored Workday credentials are incomplete")
    return {k: str(data[k]) for k in BUNDLE_FIELDS}


def basic_credentials(creds: Mapping[str, str]) -> str:
    """The HTTP Basic credentials of the API client (`client_id:client_secret`, base64)."""
    return basic_auth(creds["client_id"], creds["client_secret"])


def bundled_secrets(values: tuple[str, ...]) -> list[str]:
    """The client secret, refresh token and Basic credentials inside any refresh bundle among a
    connection's secrets, so that an error quoting one of them alone is scrubbed too."""
    found: list[str] = []
    for value in values:
        try:
            bundle = read_bundle(value)
        except AuthRevoked:
            continue
        found += [bundle["client_secret"], bundle["refresh_token"], basic_credentials(bundle)]
    return found


def account_key(origin: str, tenant: str) -> str:
    return f"{tenant}@{urlsplit(origin).netloc}".lower()[:100]


def api_bucket() -> Bucket:
    return Bucket.budgeted("workday", "api", int(settings.WORKDAY_REQUESTS_PER_SECOND), 1)


class WorkdayProvider(Provider):
    name = "workday"
    label = "Workday"
    required_scopes = ()  # functional areas are chosen on the API client in Workday, not requested
    uses_oauth = False
    refreshes_tokens = True
    credential_fields = ("host", "tenant", "client_id", "client_secret", "refresh_token")
    pulls_changes = False  # no incremental pull: changed_since is unsupported
    supports_tasks = False
    supports_writes = False  # no verified REST call finds a candidate by email or adds a note
    # [verify] Workday documents no rate-limit headers; Retry-After is logged whenever it is sent.
    rate_limit_header_names = ()

    def revoke(self, token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT) -> None:
        # [verify] no REST call revokes an integration's refresh token; its Workday admin does.
        raise Permanent(
            self.name,
            "revoke_not_supported",
            "revoke the refresh token in Workday: View API Clients > Manage Refresh Tokens for Integrations",
        )

    def _call(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        context: CallContext,
        secrets: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> Any:
        """Provider._call, scrubbing also the parts of the connection's refresh bundle."""
        secrets = (*secrets, *bundled_secrets(context.secrets))
        return super()._call(operation, method, url, context=context, secrets=secrets, **kwargs)

    # --- tokens ---
    def _token(self, operation: str, creds: Mapping[str, str], context: CallContext) -> TokenSet:
        """One access token from the tenant's token endpoint; the bundle in `refresh_token` only
        when Workday answered with a refresh token other than the one sent (rotation)."""
        origin, tenant = workday_origin(creds["host"]), creds["tenant"]
        basic = basic_credentials(creds)
        url = f"{origin}/ccx/oauth2/{quote(tenant, safe='')}/token"
        try:
            answer = self._call(
                operation,
                "POST",
                url,
                context=context,
                headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
                data={"grant_type": "refresh_token", "refresh_token": creds["refresh_token"]},
                secrets=(creds["client_secret"], basic),
            )
        except Transient as exc:
            # [verify] an unknown tenant may be answered 503 "Invalid Tenant Name"
            if exc.http_status == 503 and "tenant" in exc.message.lower():
                raise Permanent(self.name, "unknown_tenant", exc.message, http_status=503) from None
            raise
        body: dict[str, Any] = answer if isinstance(answer, dict) else {}
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise Permanent(self.name, "invalid_token_response", "the token response holds no access token")
        rotated = body.get("refresh_token")
        bundle = None
        if isinstance(rotated, str) and rotated and rotated != creds["refresh_token"]:
            bundle = make_bundle({**creds, "refresh_token": rotated})
        return TokenSet(
            access_token=access,
            refresh_token=bundle,
            expires_at=self.expiry(body.get("expires_in")),
            instance_url=origin,
            account_key=account_key(origin, tenant),
        )

    @staticmethod
    def expiry(expires_in: Any, *, now: datetime | None = None) -> datetime:
        try:
            seconds = int(expires_in)
        except (TypeError, ValueError):
            seconds = 0
        return (now or timezone.now()) + timedelta(seconds=seconds if seconds > 0 else DEFAULT_TOKEN_SECONDS)

    def refresh(
        self, refresh_token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> TokenSet:
        return self._token("refresh", read_bundle(refresh_token), context)

    def check_credentials(
        self, fields: Mapping[str, str], *, context: CallContext = NO_CONTEXT
    ) -> CredentialGrant:
        """Two calls: a first access token, then one harmless read. Nothing is stored here."""
        creds = clean_fields(fields)
        try:
            origin = workday_origin(creds["host"])
        except InvalidInstanceUrl as exc:
            raise ValueError(exc.message) from None
        creds["host"] = origin
        first = self._token("connect", creds, context)
        tenant, key = creds["tenant"], account_key(origin, creds["tenant"])
        try:
            self._call(
                "check_credentials",
                "GET",
                self.api_url(origin, tenant, HEALTH_PATH),
                context=context,
                token=first.access_token,
                bucket=api_bucket(),
                account_key=key,
                params={"limit": 1},
                secrets=(creds["client_secret"], creds["refresh_token"]),
            )
        except TokenExpired as exc:  # a token just issued and refused: the API client cannot call
            raise AuthRevoked(self.name, "credentials_invalid", exc.message, http_status=401) from None
        details = {"host": urlsplit(origin).netloc, "tenant": tenant}
        tokens = TokenSet(
            access_token=first.access_token,
            refresh_token=first.refresh_token or make_bundle(creds),
            expires_at=first.expires_at,
            instance_url=origin,
            account_key=key,
        )
        return CredentialGrant(
            ExternalAccount(key=key, details=details), tokens, last4(creds["client_secret"])
        )

    # --- API ---
    @staticmethod
    def api_url(origin: str, tenant: str, path: str) -> str:
        return f"{origin}/ccx/api/{path.format(tenant=quote(tenant, safe=''))}"

    def target(self, account: Account) -> tuple[str, str]:
        """The checked origin and tenant of a connection (no call goes anywhere else)."""
        origin = workday_origin(account.instance_url or str(account.details.get("host") or ""))
        tenant = str(account.details.get("tenant") or "")
        if not TENANT_RE.fullmatch(tenant):
            raise Permanent(self.name, "invalid_tenant", "the connection names no valid Workday tenant")
        return origin, tenant

    def api_bucket(self) -> Bucket:
        return api_bucket()

    def check_health(self, account: Account) -> HealthResult:
        origin, tenant = self.target(account)
        body = self._call_as(
            account, "health_check", "GET", self.api_url(origin, tenant, HEALTH_PATH), params={"limit": 1}
        )
        details: dict[str, Any] = {"host": urlsplit(origin).netloc, "tenant": tenant}
        if isinstance(body, dict) and isinstance(body.get("total"), int):
            details["job_postings"] = body["total"]
        return HealthResult(latency_ms=last_call_ms() or 0, details=details)

    # --- curated writes: not verified, so refused (see the module docstring) ---
    def find_contact(self, account: Account, email: str) -> str | None:
        raise unsupported()

    def find_open_deal(self, account: Account, contact_id: str) -> str | None:
        return None  # an ATS has no deals

    def create_note(self, account: Account, activity: Activity) -> str:
        raise unsupported()

    def create_task(self, account: Account, activity: Activity) -> str:
        raise unsupported()

    def write_payload(self, operation: str, activity: Activity) -> dict[str, Any]:
        check_operation(operation)
        raise unsupported()

    def find_marked(self, account: Account, operation: str, activity: Activity) -> str | None:
        raise unsupported()

    def changed_since(
        self, account: Account, object: str, since: datetime, after: str | None, limit: int
    ) -> ChangedPage:
        raise Permanent(self.name, "operation_unsupported", "Conduit pulls no changes from an ATS")

    # --- error mapping ---
    def default_retry_after(self, resp: requests.Response) -> float:
        return DEFAULT_RETRY_AFTER

    def classify_client_error(self, resp: requests.Response, operation: str) -> ProviderError:
        status = resp.status_code
        body = json_or_none(resp)
        data: dict[str, Any] = body if isinstance(body, dict) else {}
        error = str(data.get("error") or "")
        message = short(data.get("error_description") or error or f"HTTP {status}")
        if operation in TOKEN_OPERATIONS:
            return self.token_error(status, error, message)
        if status == 401:
            return TokenExpired(self.name, "invalid_token", message, http_status=status)
        if status == 403:
            # the Integration System User lacks a domain security policy, or the API client the
            # functional area [verify]
            return MissingScope(self.name, HEALTH_SCOPES, message, http_status=status)
        if status == 404:
            return Permanent(self.name, "not_found", message, http_status=status)
        return Permanent(self.name, f"http_{status}", message, http_status=status)

    def token_error(self, status: int, error: str, message: str) -> ProviderError:
        if status == 404:
            # the host serves no token endpoint for this tenant [verify: or 503 "Invalid Tenant Name"]
            return Permanent(
                self.name, "unknown_tenant", "Workday knows no such tenant at this host", http_status=status
            )
        if error in ("invalid_client", "invalid_grant", "unauthorized_client") or status == 401:
            return AuthRevoked(self.name, "credentials_invalid", message, http_status=status)
        return Permanent(self.name, safe_code(error.lower(), status), message, http_status=status)
