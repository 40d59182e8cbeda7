"""Greenhouse Harvest v3: connected with the customer's own client credentials, writing curated
activity as candidate notes.

Facts: ../shared/provider-facts.md ("Greenhouse Harvest") and docs/connectors.md ("Greenhouse");
each fact this module could not confirm is marked [verify]. The customer creates a "Harvest V3
(OAuth)" credential in Dev Center > API Credentials, picks its scopes, and may name a user
(`user_id`, sent as `sub`) the calls act as; without one they act as the credential's service
account. The client-credentials grant (HTTP Basic client auth, form body) gives a one-hour bearer
token; the connection keeps the credentials as the refresh bundle and `refresh` asks again.
Conduit finds the candidate by email, posts a note on it (its text ends with the marker) and finds
that note again among the candidate's notes. Harvest v3 has no tasks, deals or change feed here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import requests
from django.conf import settings
from django.utils import timezone

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
    with_marker,
)
from integrations.providers.changes import ChangedPage
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    Permanent,
    ProviderError,
    TokenExpired,
)
from integrations.providers.ratelimit import Bucket
from integrations.providers.synclog import NO_CONTEXT, CallContext

# Scopes of the Harvest v3 credential (harvest:<resource>:<action>, chosen per credential).
CANDIDATES_LIST, NOTES_LIST, NOTES_CREATE = (
    "harvest:candidates:list",
    "harvest:notes:list",
    "harvest:notes:create",
)
SCOPE_FOR = {
    "health_check": CANDIDATES_LIST,
    "check_access": CANDIDATES_LIST,
    "find_contact": CANDIDATES_LIST,
    "find_write": NOTES_LIST,
    "create_note": NOTES_CREATE,
    "create_meeting": NOTES_CREATE,
}
SCOPE_RE = re.compile(r"harvest:[a-z_]+:[a-z_]+")
# The calls to the authorization server (token and introspection): their refusals are the
# credentials' refusals, not an expired token's.
TOKEN_OPERATIONS = ("get_token", "refresh", "identify")
# RFC 6749 token-endpoint errors meaning these credentials (or the `sub` user) are refused. [verify]
REFUSED_ERRORS = {"invalid_client", "unauthorized_client", "invalid_grant", "access_denied"}
TOKEN_TTL_SECONDS = 3600  # when the answer names no expiry: access tokens live one hour [verify]
# The organization claim of the introspection answer (auth.greenhouse.io/introspect). [verify]
ORG_CLAIMS = "https://auth.greenhouse.io/claims"
NOTE_BODY_MAX = 10000  # Conduit's cap; Greenhouse documents no limit on a note body [verify]
NOTE_VISIBILITY = "admin_only"  # seen by Job and Site Admins, like a note added in the UI
NOTE_TYPE = "NOTE"  # [verify] the create field is `note_type`; answers name it `type`
PER_PAGE = 500  # the largest page Harvest serves
PAGES_MAX = 10  # a candidate with more than 5,000 notes is refused rather than half-searched
FIELD_LABELS = {"client_id": "client ID", "client_secret": "client secret", "user_id": "user ID"}
FIELD_MAX = {"client_id": 200, "client_secret": 500, "user_id": 20}
WORD_RE = re.compile(r"[\x21-\x7e]+")  # one word of printable ASCII: no space, no control character


def api_bucket() -> Bucket:
    # Harvest's published default for its rolling 10 s window (settings.GREENHOUSE_TEN_SECOND_LIMIT,
    # 50 [verify] for v3 client-credentials integrations); answers carry the real X-RateLimit-Limit.
    limit = int(settings.GREENHOUSE_TEN_SECOND_LIMIT)
    return Bucket.budgeted("greenhouse", "api", limit, 10)


def api_base() -> str:
    return f"{settings.GREENHOUSE_API_BASE_URL.rstrip('/')}/v3"


def introspect_url() -> str:
    """The token endpoint's sibling `/introspect` (https://auth.greenhouse.io/introspect) [verify]."""
    configured = str(getattr(settings, "GREENHOUSE_INTROSPECT_URL", "") or "")
    return configured or settings.GREENHOUSE_TOKEN_URL.rsplit("/", 1)[0] + "/introspect"


@dataclass(frozen=True)
class ClientCredentials:
    """A Harvest v3 credential and the user its calls act as ("": the service account)."""

    client_id: str
    client_secret: str = field(repr=False)
    user_id: str = ""

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> ClientCredentials:
        """The form's fields, checked; ValueError names the first field at fault."""
        values = {name: str(fields.get(name) or "") for name in FIELD_LABELS}
        for name in ("client_id", "client_secret", "user_id"):
            value, label = values[name], FIELD_LABELS[name]
            if not value and name != "user_id":
                raise ValueError(f"Enter the {label}.")
            if len(value) > FIELD_MAX[name]:
                raise ValueError(f"The {label} is longer than {FIELD_MAX[name]} characters.")
            if value and not WORD_RE.fullmatch(value):
                raise ValueError(f"The {label} must be one word, without spaces or control characters.")
        if ":" in values["client_id"]:
            raise ValueError("The client ID cannot contain ':'; copy it exactly as Greenhouse shows it.")
        if values["user_id"] and not values["user_id"].isdigit():
            raise ValueError("The user ID is the number at the end of the user's address in Greenhouse.")
        return cls(values["client_id"], values["client_secret"], values["user_id"])

    @classmethod
    def from_bundle(cls, bundle: str) -> ClientCredentials:
        try:
            data = json.loads(bundle)
            return cls(str(data["client_id"]), str(data["client_secret"]), str(data.get("user_id") or ""))
        except (ValueError, TypeError, KeyError):
            raise AuthRevoked(
                "greenhouse", "credentials_unreadable", "the stored credentials are unreadable"
            ) from None

    def bundle(self) -> str:
        """What `refresh` needs, for the connection's encrypted refresh token."""
        values = {"client_id": self.client_id, "client_secret": self.client_secret, "user_id": self.user_id}
        return json.dumps(values, sort_keys=True, separators=(",", ":"))

    def basic(self) -> str:
        return "Basic " + basic_auth(self.client_id, self.client_secret)


def expiry(body: dict[str, Any], now: datetime) -> datetime:
    """When the token expires: `expires_at` (ISO 8601, what Greenhouse answers [verify]), else
    `expires_in` seconds, else an hour."""
    stamp = body.get("expires_at")
    if isinstance(stamp, str):
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            return when.astimezone(UTC)
    seconds = body.get("expires_in")
    if isinstance(seconds, int) and not isinstance(seconds, bool) and seconds > 0:
        return now + timedelta(seconds=seconds)
    return now + timedelta(seconds=TOKEN_TTL_SECONDS)


def scopes_of(value: Any) -> tuple[str, ...]:
    return tuple(str(value).split()) if isinstance(value, str) else ()


def message_of(body: Any) -> str:
    """Harvest's `message`, the first of its `errors`, or an OAuth `error_description`."""
    if isinstance(body, dict):
        errors = body.get("errors")
        first = errors[0] if isinstance(errors, list) and errors else None
        nested = first.get("message") if isinstance(first, dict) else None
        return str(body.get("message") or nested or body.get("error_description") or body.get("error") or "")
    return ""


def candidate_id(value: str) -> int:
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()):
        raise Permanent("greenhouse", "invalid_id", f"{text[:40]!r} is not a Greenhouse candidate id")
    return int(text)


def id_or_placeholder(value: str) -> int | str:
    """A candidate id for a preview: the id, or the placeholder shown before the lookup."""
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() else text


class GreenhouseProvider(Provider):
    name = "greenhouse"
    label = "Greenhouse"
    required_scopes = (CANDIDATES_LIST, NOTES_LIST, NOTES_CREATE)
    uses_oauth = False
    refreshes_tokens = True
    credential_fields = ("client_id", "client_secret", "user_id")
    pulls_changes = False  # no incremental pull: changed_since is unsupported
    supports_tasks = False
    rate_limit_header_names: ClassVar[tuple[str, ...]] = (
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    )
    rate_limit_limit_header = "X-RateLimit-Limit"
    rate_limit_remaining_header = "X-RateLimit-Remaining"

    # --- no OAuth consent: the credentials form connects (the auth-code flow is partner-only, and
    # integrations/connections/oauth.py refuses a provider that does not use OAuth) ---
    def revoke(self, token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT) -> None:
        # Tokens expire within the hour; only the customer can delete or rotate the credential.
        raise Permanent(
            self.name,
            "revoke_not_supported",
            "delete or rotate the credential in Greenhouse: Dev Center > API Credentials",
        )

    # --- tokens: the client-credentials grant ---
    def _token(self, creds: ClientCredentials, operation: str, context: CallContext) -> TokenSet:
        form = {"grant_type": "client_credentials"}
        if creds.user_id:
            form["sub"] = creds.user_id  # the on-behalf-of user; without it, the service account
        basic = creds.basic()
        answer = self._call(
            operation,
            "POST",
            settings.GREENHOUSE_TOKEN_URL,
            context=context,
            data=form,
            headers={"Authorization": basic, "Accept": "application/json"},
            secrets=(creds.client_secret, basic),
        )
        body: dict[str, Any] = answer if isinstance(answer, dict) else {}
        if not isinstance(body.get("access_token"), str) or not body["access_token"]:
            raise Permanent(self.name, "invalid_token_response", "the token answer holds no access token")
        return TokenSet(
            access_token=body["access_token"],
            expires_at=expiry(body, timezone.now()),
            scopes=scopes_of(body.get("scope")),  # [verify] whether the token answer names scopes
        )

    def refresh(
        self, refresh_token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> TokenSet:
        """A new access token from the stored credentials; the bundle itself never changes."""
        return self._token(ClientCredentials.from_bundle(refresh_token), "refresh", context)

    def check_credentials(
        self, fields: Mapping[str, str], *, context: CallContext = NO_CONTEXT
    ) -> CredentialGrant:
        """A first token, then one call naming the account: introspection gives the organization,
        the acting user and the credential's scopes; where it is not served, a one-candidate read
        proves access and the account is named after the client id."""
        creds = ClientCredentials.from_fields(fields)
        tokens = self._token(creds, "get_token", context)
        info = self._introspect(creds, tokens.access_token, context)
        if info is None:
            self._check_access(tokens, creds, context)
            info = {}
        granted = tokens.scopes or scopes_of(info.get("scope"))
        if granted and (missing := self.missing_scopes(granted)):
            raise MissingScope(self.name, missing, "the credential lacks " + " ".join(missing))
        account = self.account_of(creds, info, granted)
        grant = TokenSet(
            access_token=tokens.access_token,
            refresh_token=creds.bundle(),
            expires_at=tokens.expires_at,
            scopes=granted,
            account_key=account.key,
        )
        return CredentialGrant(account=account, tokens=grant, last4=last4(creds.client_secret))

    def _introspect(
        self, creds: ClientCredentials, token: str, context: CallContext
    ) -> dict[str, Any] | None:
        """The token's claims, or None where the authorization server has no introspection."""
        basic = creds.basic()
        try:
            answer = self._call(
                "identify",
                "POST",
                introspect_url(),
                context=context,
                data={"token": token, "token_type_hint": "access_token"},
                headers={"Authorization": basic, "Accept": "application/json"},
                secrets=(creds.client_secret, basic),
            )
        except Permanent as exc:
            if exc.http_status in (404, 405):
                return None
            raise
        if not isinstance(answer, dict) or answer.get("active") is not True:
            raise Permanent(self.name, "token_inactive", "Greenhouse called the new token inactive")
        return answer

    def _check_access(self, tokens: TokenSet, creds: ClientCredentials, context: CallContext) -> None:
        account = Account(self.name, tokens.access_token, self.fallback_key(creds), context=context)
        try:
            self._api(account, "check_access", "GET", "candidates", params={"per_page": 1})
        except TokenExpired as exc:  # refused straight after it was issued: the credentials are
            raise AuthRevoked(
                self.name, "credentials_invalid", exc.message, http_status=exc.http_status
            ) from None

    def fallback_key(self, creds: ClientCredentials) -> str:
        return "gh-" + hashlib.sha256(creds.client_id.encode()).hexdigest()[:24]

    def account_of(
        self, creds: ClientCredentials, info: dict[str, Any], scopes: tuple[str, ...]
    ) -> ExternalAccount:
        """The organization (`key`: its id) and the user the calls act as (`user_id`: the one
        named on the form, else the token's subject, the credential's service account)."""
        claims = info.get(ORG_CLAIMS)
        organization = claims.get("organization") if isinstance(claims, dict) else None
        org_id = organization.get("id") if isinstance(organization, dict) else None
        org_ok = isinstance(org_id, int | str) and not isinstance(org_id, bool) and str(org_id).isdigit()
        subject = str(info.get("sub") or "")
        details: dict[str, Any] = {
            "organization_id": str(org_id) if org_ok else "",
            "organization_name": str((organization or {}).get("name") or "") if org_ok else "",
            "user_id": creds.user_id or (subject if subject.isdigit() else ""),
            "acting_as": "user" if creds.user_id else "service_account",
        }
        key = str(org_id) if org_ok else self.fallback_key(creds)
        return ExternalAccount(key=key, details=details, scopes=scopes)

    # --- API ---
    def api_bucket(self) -> Bucket:
        return api_bucket()

    def _api(self, account: Account, operation: str, method: str, path: str, **kw: Any) -> Any:
        headers = {"Accept": "application/json"}
        return self._call_as(account, operation, method, f"{api_base()}/{path}", headers=headers, **kw)

    def _pages(
        self, account: Account, operation: str, path: str, params: dict[str, Any]
    ) -> Iterator[list[Any]]:
        """Each page of a list, following Link rel="next" (whose cursor must be the only
        parameter) up to PAGES_MAX pages, never to another host."""
        url, query = f"{api_base()}/{path}", dict(params)
        for _ in range(PAGES_MAX):
            rows, following = self._call_as(
                account,
                operation,
                "GET",
                url,
                params=query,
                headers={"Accept": "application/json"},
                decode=page_of,
            )
            yield rows
            if not following:
                return
            if not following.startswith(api_base() + "/"):
                raise Permanent(self.name, "invalid_next_link", "the next page is not on the Harvest API")
            url, query = following, {}
        raise Permanent(self.name, "lookup_limit", f"more than {PAGES_MAX} pages to search")

    def check_health(self, account: Account) -> HealthResult:
        self._api(account, "health_check", "GET", "candidates", params={"per_page": 1})
        details = {key: account.details.get(key) for key in ("organization_id", "acting_as")}
        return HealthResult(latency_ms=last_call_ms() or 0, details=details)

    def find_contact(self, account: Account, email: str) -> str | None:
        """The candidate with this email address. [verify] whether the filter ignores case:
        the answer is checked here too."""
        given = email.strip()
        wanted = given.lower()
        for rows in self._pages(
            account, "find_contact", "candidates", {"email": given, "per_page": PER_PAGE}
        ):
            for row in rows:
                if isinstance(row, dict) and row.get("id") and wanted in emails_of(row):
                    return str(row["id"])
        return None

    def find_open_deal(self, account: Account, contact_id: str) -> str | None:
        return None  # an ATS has candidates, not deals

    def changed_since(
        self, account: Account, object: str, since: datetime, after: str | None, limit: int
    ) -> ChangedPage:
        raise Permanent(self.name, "operation_unsupported", "Conduit pulls no changes from an ATS")

    # --- curated writes: a note on the candidate ---
    def note_payload(self, activity: Activity) -> dict[str, Any]:
        return {
            "candidate_id": id_or_placeholder(activity.contact_id),
            "body": with_marker(activity, NOTE_BODY_MAX),
            "visibility": NOTE_VISIBILITY,
            "note_type": NOTE_TYPE,
        }

    def write_payload(self, operation: str, activity: Activity) -> dict[str, Any]:
        """The note's JSON body, without `user_id` (the acting user, added at send time when the
        connection names one). A meeting is a note describing it; a task is refused."""
        if check_operation(operation) == "create_task":
            raise self.no_tasks()
        return self.note_payload(activity)

    def no_tasks(self) -> Permanent:
        return Permanent(self.name, "operation_unsupported", "Harvest v3 has no tasks; Conduit writes notes")

    def create_note(self, account: Account, activity: Activity) -> str:
        payload: dict[str, Any] = {
            **self.note_payload(activity),
            "candidate_id": candidate_id(activity.contact_id),
        }
        user = str(account.details.get("user_id") or "")
        if user.isdigit():  # [verify] without it the note is the token subject's
            payload["user_id"] = int(user)
        created = self._api(account, "create_note", "POST", "notes", json=payload, write=True)
        note = created.get("id") if isinstance(created, dict) else None
        if isinstance(note, bool) or not isinstance(note, int | str) or not str(note):
            raise Permanent(self.name, "invalid_create_response", "the note answer holds no id")
        return str(note)

    def create_task(self, account: Account, activity: Activity) -> str:
        raise self.no_tasks()

    def find_marked(self, account: Account, operation: str, activity: Activity) -> str | None:
        if operation == "create_task":
            return None  # never written
        params = {"candidate_ids": candidate_id(activity.contact_id), "per_page": PER_PAGE}
        for rows in self._pages(account, "find_write", "notes", params):
            for row in rows:
                if isinstance(row, dict) and row.get("id") and activity.marker in str(row.get("body") or ""):
                    return str(row["id"])
        return None

    # --- error mapping ---
    def default_retry_after(self, resp: requests.Response) -> float:
        """Until X-RateLimit-Reset (a Unix time [verify]; a small number is read as seconds),
        else the 10 s window."""
        reset = resp.headers.get("X-RateLimit-Reset", "").strip()
        if reset.isascii() and reset.isdigit():
            value = float(reset)
            wait = value - timezone.now().timestamp() if value > 1_000_000_000 else value
            return min(max(wait, 1.0), float(settings.CONDUIT_RETRY_AFTER_MAX_SECONDS))
        return 10.0

    def classify_client_error(self, resp: requests.Response, operation: str) -> ProviderError:
        status, body = resp.status_code, json_or_none(resp)
        message = short(message_of(body) or f"HTTP {status}")
        if operation in TOKEN_OPERATIONS:
            return self.token_error(status, body, message)
        if status == 401:
            return TokenExpired(self.name, "token_expired", message, http_status=status)
        if status == 403:
            named = sorted(set(SCOPE_RE.findall(message)))
            missing = named or [SCOPE_FOR.get(operation, "harvest permission")]
            return MissingScope(self.name, missing, message, http_status=status)
        if status == 404:
            return Permanent(self.name, "not_found", message, http_status=status)
        if status == 422:
            return Permanent(
                self.name, "validation_error", message, details=field_of(body), http_status=status
            )
        return Permanent(self.name, f"http_{status}", message, http_status=status)

    def token_error(self, status: int, body: Any, message: str) -> ProviderError:
        error = str(body.get("error") or "") if isinstance(body, dict) else ""
        if error in ("invalid_scope", "insufficient_scope"):
            return MissingScope(self.name, list(self.required_scopes), message, http_status=status)
        if status in (401, 403) or error in REFUSED_ERRORS:
            return AuthRevoked(self.name, "credentials_invalid", message, http_status=status)
        return Permanent(self.name, safe_code(error, status), message, http_status=status)


def emails_of(row: dict[str, Any]) -> set[str]:
    """A candidate's email addresses, lower-cased (a row that lists none matches no email)."""
    listed = row.get("email_addresses")
    return (
        {str(e.get("value") or "").lower() for e in listed if isinstance(e, dict)}
        if isinstance(listed, list)
        else set()
    )


def page_of(resp: requests.Response) -> tuple[list[Any], str]:
    """A list answer's rows and its next page's URL ("" on the last page)."""
    rows = json_or_none(resp)
    if not isinstance(rows, list):
        raise Permanent("greenhouse", "invalid_response", "a list answer is not a JSON array")
    return rows, str(resp.links.get("next", {}).get("url") or "")


def field_of(body: Any) -> dict[str, object]:
    errors = body.get("errors") if isinstance(body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    return {"field": first.get("field")} if first.get("field") else {}
