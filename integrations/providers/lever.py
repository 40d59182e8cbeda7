"""Lever: an ATS connected with an API key; curated activity becomes a note on the candidate's
opportunity.

Facts: ../shared/provider-facts.md ("Lever") and docs/connectors.md ("Lever"); what could not be
confirmed is marked [verify]. The key is sent as HTTP Basic with the key as the user name and a
blank password, to LEVER_API_BASE_URL (https://api.lever.co/v1). A key never expires and cannot be
refreshed: a 401 means it was deleted or rotated, and its admin saves a new one. Conduit's
"contact" is a Lever opportunity (a candidate's notes live on an opportunity, not on the person):
`find_contact` picks one of the opportunities Lever lists for the email. Lever has no account id
in its API, so the account is named by its oldest user (`account_anchor`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from django.conf import settings

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
    short,
    with_marker,
)
from integrations.providers.changes import ChangedPage
from integrations.providers.errors import AuthRevoked, MissingScope, Permanent, ProviderError
from integrations.providers.ratelimit import Bucket
from integrations.providers.synclog import NO_CONTEXT, CallContext

KEY_MIN, KEY_MAX = 16, 256  # [verify] Lever shows a key once; its length is not documented
# One word of printable ASCII without ':' (RFC 7617: a Basic user-id cannot hold a colon).
API_KEY_RE = re.compile(r"[\x21-\x39\x3b-\x7e]+")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
OPPORTUNITY_ID_RE = re.compile(r"[A-Za-z0-9-]{1,64}")  # Lever ids are UUIDs
NOTE_MAX = 10000  # [verify] Lever documents no limit on a note's value; Conduit's cap
PAGE_LIMIT = 100  # the largest `limit` a Lever list takes (1 to 100)
USER_PAGES_MAX = 50  # naming the account reads at most 5,000 users
NOTE_PAGES_MAX = 10  # looking for a marker reads at most the 1,000 newest notes [verify] order
CREDENTIAL_CHECK_KEY = "credential-check"  # the limiter account of checks made before a key is saved
# The API-key permission each call needs, named as Lever's key settings list them, with the
# matching OAuth scope [verify] (help.lever.co "Generating and using API credentials").
PERMISSIONS_FOR = {
    "identify": ["Find all users (users:read:admin)"],
    "health_check": ["Find all users (users:read:admin)"],
    "find_contact": ["Find all opportunities (opportunities:read:admin)"],
    "create_note": ["Create an opportunity note (notes:write:admin)"],
    "find_write": ["Find all opportunity notes (notes:read:admin)"],
}


def api_bucket() -> Bucket:
    # About 10 requests per second per key, bursts to 20 (provider-facts.md); the 2 per second
    # limit is for application POSTs to postings, which Conduit never sends.
    return Bucket.budgeted("lever", "api", int(settings.LEVER_REQUESTS_PER_SECOND), 1)


def check_api_key(fields: Mapping[str, str]) -> str:
    """The API key from the credentials form, or ValueError with one sentence naming the field."""
    key = fields.get("api_key", "")
    if not key:
        raise ValueError("Enter the Lever API key.")
    if len(key) > KEY_MAX:
        raise ValueError(f"The Lever API key is longer than {KEY_MAX} characters.")
    if CONTROL_RE.search(key):
        raise ValueError("The Lever API key contains a control character.")
    if not API_KEY_RE.fullmatch(key):
        raise ValueError("A Lever API key is one word of letters and digits, with no spaces or colons.")
    if len(key) < KEY_MIN:
        raise ValueError(f"The Lever API key is shorter than {KEY_MIN} characters; copy all of it.")
    return key


def records_of(body: Any) -> list[dict[str, Any]]:
    """The items of a list answer ({"data": [...], "hasNext": ..., "next": ...})."""
    data = body.get("data") if isinstance(body, dict) else None
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []


def next_offset(body: Any) -> str | None:
    """The offset token of the next page, or None on the last one."""
    if isinstance(body, dict) and body.get("hasNext") and body.get("next"):
        return str(body["next"])
    return None


def read_pages(fetch: Callable[[str | None], Any], max_pages: int) -> tuple[list[dict[str, Any]], bool]:
    """Every item of a paged list (at most `max_pages` pages) and whether the list was read to
    its end."""
    items: list[dict[str, Any]] = []
    offset: str | None = None
    for _ in range(max_pages):
        body = fetch(offset)
        items.extend(records_of(body))
        offset = next_offset(body)
        if offset is None:
            return items, True
    return items, False


def millis(value: Any) -> int:
    """A Lever timestamp (milliseconds since the epoch), 0 when absent or not a number."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def is_open(opportunity: dict[str, Any]) -> bool:
    """Not archived: Lever archives an opportunity when the candidate is hired or rejected."""
    return not opportunity.get("archived") and not opportunity.get("archivedAt")


def pick_opportunity(opportunities: list[dict[str, Any]]) -> str | None:
    """The opportunity a candidate's activity is written on: the most recently updated open one;
    when every one is archived (hired or rejected), the most recently updated of those, since the
    candidate's profile still shows its notes. Ties go to the greater id, so the choice is stable."""

    def rank(opportunity: dict[str, Any]) -> tuple[bool, int, str]:
        updated = opportunity.get("updatedAt") or opportunity.get("lastInteractionAt")
        return is_open(opportunity), millis(updated or opportunity.get("createdAt")), opportunity["id"]

    named = [o for o in opportunities if isinstance(o.get("id"), str) and o["id"]]
    return max(named, key=rank)["id"] if named else None


def account_anchor(users: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The account's oldest user (deactivated ones included): Lever's API names no account or
    company, and a user is deactivated, never deleted [verify], so the first user created is a
    stable name for the account that a new key of the same account finds again. Ties on the
    creation time go to the smaller id."""
    named = [u for u in users if isinstance(u.get("id"), str) and u["id"] and millis(u.get("createdAt"))]
    return min(named, key=lambda u: (millis(u["createdAt"]), u["id"])) if named else None


def note_text(note: dict[str, Any]) -> str:
    """What a note says: its text and its fields' values [verify] which one holds the value sent."""
    fields = note.get("fields")
    items = fields if isinstance(fields, list) else []
    values = [str(f.get("value") or "") for f in items if isinstance(f, dict)]
    return " ".join([str(note.get("text") or ""), *values])


def created_note_id(body: Any) -> str:
    """The new note's id: `data.noteId`, or `data.id` [verify] which one Lever answers with."""
    data = body.get("data") if isinstance(body, dict) else None
    note_id = (data.get("noteId") or data.get("id")) if isinstance(data, dict) else None
    if not isinstance(note_id, str) or not note_id:
        raise Permanent("lever", "invalid_create_response", "the create answer holds no note id")
    return note_id


def path_id(opportunity_id: str) -> str:
    if not OPPORTUNITY_ID_RE.fullmatch(opportunity_id):
        raise Permanent("lever", "invalid_id", f"{opportunity_id[:40]!r} is not a Lever opportunity id")
    return quote(opportunity_id, safe="")


class LeverProvider(Provider):
    name = "lever"
    label = "Lever"
    required_scopes = ()  # an API key carries per-endpoint permissions, not scopes Conduit can read
    uses_oauth = False
    refreshes_tokens = False
    credential_fields = ("api_key",)
    pulls_changes = False  # no incremental pull: changed_since is unsupported
    supports_tasks = False
    # [verify] Lever documents no rate-limit headers; logged only when an answer carries them.
    rate_limit_header_names = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
    rate_limit_limit_header = "X-RateLimit-Limit"
    rate_limit_remaining_header = "X-RateLimit-Remaining"

    @property
    def api(self) -> str:
        return str(settings.LEVER_API_BASE_URL).rstrip("/")

    def authorization(self, token: str) -> str:
        return f"Basic {basic_auth(token)}"

    def refresh(
        self, refresh_token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> TokenSet:
        # Never called (refreshes_tokens is False); a key that needs replacing is a refused key.
        raise AuthRevoked(self.name, "credentials_invalid", "a Lever API key cannot be refreshed")

    def revoke(self, token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT) -> None:
        # Conduit forgets the key; only a Lever Super Admin can delete it.
        raise Permanent(
            self.name,
            "revoke_not_supported",
            "delete the key in Lever: Settings > Integrations and API > API Credentials",
        )

    # --- connecting ---
    def check_credentials(
        self, fields: Mapping[str, str], *, context: CallContext = NO_CONTEXT
    ) -> CredentialGrant:
        """Check the key by reading the account's users (the first page is the one cheap call;
        a large account takes a few more pages to find its oldest user); nothing is stored."""
        key = check_api_key(fields)
        account = self.identify_key(key, context=context)
        tokens = TokenSet(access_token=key, refresh_token="", account_key=account.key)
        return CredentialGrant(account=account, tokens=tokens, last4=last4(key))

    def identify_key(self, key: str, *, context: CallContext) -> ExternalAccount:
        """The account the key belongs to, named by its oldest user (`account_anchor`)."""

        def fetch(offset: str | None) -> Any:
            params: dict[str, Any] = {"limit": PAGE_LIMIT, "includeDeactivated": "true"}  # [verify] name
            return self._call(
                "identify",
                "GET",
                f"{self.api}/users",
                context=context,
                token=key,
                bucket=self.api_bucket(),
                account_key=CREDENTIAL_CHECK_KEY,
                secrets=self.key_forms(key),
                params={**params, "offset": offset} if offset else params,
            )

        users, complete = read_pages(fetch, USER_PAGES_MAX)
        if not complete:
            raise Permanent(
                self.name,
                "account_unidentified",
                f"the account has more than {USER_PAGES_MAX * PAGE_LIMIT} users; Conduit cannot name it",
            )
        anchor = account_anchor(users)
        if anchor is None:
            raise Permanent(self.name, "invalid_response", "the users answer names no user")
        details = {
            "anchor_user_id": anchor["id"],
            "users": len(users),
            "api_host": urlsplit(self.api).netloc,
        }
        return ExternalAccount(key=str(anchor["id"])[:100], details=details)

    def key_forms(self, key: str) -> tuple[str, ...]:
        """The key as sent (in the Authorization header), to scrub if an answer echoes it."""
        return (key, basic_auth(key))

    # --- API ---
    def api_bucket(self) -> Bucket:
        return api_bucket()

    def _api(self, account: Account, operation: str, method: str, path: str, **kw: Any) -> Any:
        return self._call_as(
            account,
            operation,
            method,
            f"{self.api}/{path}",
            secrets=self.key_forms(account.access_token),
            **kw,
        )

    def check_health(self, account: Account) -> HealthResult:
        body = self._api(account, "health_check", "GET", "users", params={"limit": 1})
        details = {"api_host": urlsplit(self.api).netloc, "users_readable": bool(records_of(body))}
        return HealthResult(latency_ms=last_call_ms() or 0, details=details)

    def find_contact(self, account: Account, email: str) -> str | None:
        """The opportunity of the candidate with this email (`pick_opportunity`). One page of up to
        100 opportunities: a person with more candidacies than that does not occur. Confidential
        opportunities are left out, as Lever does unless asked [verify]."""
        params = {"email": email.strip(), "limit": PAGE_LIMIT}
        body = self._api(account, "find_contact", "GET", "opportunities", params=params)
        return pick_opportunity(records_of(body))

    def find_open_deal(self, account: Account, contact_id: str) -> str | None:
        return None  # an ATS has no deals

    def changed_since(
        self, account: Account, object: str, since: datetime, after: str | None, limit: int
    ) -> ChangedPage:
        raise self.unsupported("changed_since", "Lever connections have no incremental pull")

    def unsupported(self, operation: str, message: str) -> Permanent:
        return Permanent(self.name, "operation_unsupported", message, details={"operation": operation})

    # --- curated writes: a note on the opportunity ---
    def note_payload(self, activity: Activity) -> dict[str, Any]:
        # No perform_as: the note is attributed to the key [verify]; followers are not notified.
        return {"value": with_marker(activity, NOTE_MAX), "notifyFollowers": False}

    def write_payload(self, operation: str, activity: Activity) -> dict[str, Any]:
        """The note's body (the opportunity id is in the path). A meeting is a note describing it;
        Lever's API has no tasks (ValueError, like an unknown operation)."""
        if check_operation(operation) == "create_task":
            raise ValueError("Lever has no tasks: Conduit writes notes to Lever")
        return self.note_payload(activity)

    def create_note(self, account: Account, activity: Activity) -> str:
        path = f"opportunities/{path_id(activity.contact_id)}/notes"
        payload = self.note_payload(activity)
        body = self._api(account, "create_note", "POST", path, json=payload, write=True)
        return created_note_id(body)

    def create_task(self, account: Account, activity: Activity) -> str:
        raise self.unsupported("create_task", "Lever's API has no tasks; Conduit writes notes to Lever")

    def find_marked(self, account: Account, operation: str, activity: Activity) -> str | None:
        """The note on the opportunity that carries the marker: its notes are read page by page
        (newest first [verify]); the write looked for is minutes old."""
        if operation == "create_task":
            raise self.unsupported("create_task", "Lever's API has no tasks")
        path = f"opportunities/{path_id(activity.contact_id)}/notes"

        def fetch(offset: str | None) -> Any:
            params: dict[str, Any] = {"limit": PAGE_LIMIT}
            return self._api(
                account, "find_write", "GET", path, params={**params, "offset": offset} if offset else params
            )

        notes, complete = read_pages(fetch, NOTE_PAGES_MAX)
        for note in notes:
            if activity.marker in note_text(note) and isinstance(note.get("id"), str):
                return str(note["id"])
        if not complete:  # "not found" would resend a note that may be on a page not read
            raise Permanent(
                self.name, "lookup_limit", f"the opportunity has more than {NOTE_PAGES_MAX} pages of notes"
            )
        return None

    # --- error mapping ---
    def default_retry_after(self, resp: requests.Response) -> float:
        return 1.0  # [verify] a 429 without Retry-After: the token bucket refills ten a second

    def classify_client_error(self, resp: requests.Response, operation: str) -> ProviderError:
        status = resp.status_code
        body = json_or_none(resp)
        body = body if isinstance(body, dict) else {}
        message = short(body.get("message") or f"HTTP {status}")
        details: dict[str, object] = {"code": str(body.get("code") or "")}
        if status == 401:  # a deleted or rotated key: its admin saves a new one
            return AuthRevoked(self.name, "credentials_invalid", message, http_status=status)
        if status == 403:  # the key lacks the endpoint's permission [verify] (or the plan the Data API)
            missing = PERMISSIONS_FOR.get(operation, ["unknown"])
            return MissingScope(self.name, missing, message, http_status=status)
        if status == 404:
            return Permanent(self.name, "not_found", message, details=details, http_status=status)
        if status in (400, 422):
            return Permanent(self.name, "invalid_request", message, details=details, http_status=status)
        return Permanent(self.name, f"http_{status}", message, details=details, http_status=status)
