"""Zoho CRM: OAuth at the account's data centre, REST API v7 Notes and Tasks, COQL reads.

Facts: ../shared/provider-facts.md ("Zoho CRM"); docs/connectors.md ("Zoho CRM") lists every
[verify] item. Consent starts at ZOHO_ACCOUNTS_URL; the redirect names the account's data centre
(`accounts-server`), where the code is exchanged and the token refreshed and revoked, and the token
response names its API domain (`api_domain`). Neither receives a code or a token before
`validate_accounts_server` / `validate_api_domain` accepts it. A Zoho connection's `environment`
is that accounts server's origin ("login": ZOHO_ACCOUNTS_URL itself); its `instance_url` is the
API domain.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests
from django.conf import settings
from django.utils import timezone

from integrations.providers.base import (
    Account,
    Activity,
    ExternalAccount,
    HealthResult,
    Provider,
    TokenSet,
    check_operation,
    json_or_none,
    last_call_ms,
    marked,
    short,
    with_marker,
)
from integrations.providers.changes import (
    Changed,
    ChangedPage,
    check_object,
    join_token,
    parse_time,
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
from integrations.providers.zoho_coql import (
    CHANGED_COQL,
    MARKED_TASK_COQL,
    OPEN_DEAL_COQL,
    changed_where,
    coql_datetime,
    coql_quote,
)
from integrations.providers.zoho_domains import check_location, validate_accounts_server, validate_api_domain

# What each operation needs, named when Zoho answers OAUTH_SCOPE_MISMATCH (which names none).
SCOPES_FOR = {
    "identify": ["ZohoCRM.org.READ"],
    "health_check": ["ZohoCRM.org.READ"],
    "find_contact": ["ZohoCRM.modules.contacts.READ"],
    "find_open_deal": ["ZohoCRM.coql.READ", "ZohoCRM.modules.deals.READ"],
    "create_note": ["ZohoCRM.modules.notes.CREATE"],
    "create_task": ["ZohoCRM.modules.tasks.CREATE"],
    "find_write": ["ZohoCRM.coql.READ", "ZohoCRM.modules.notes.READ", "ZohoCRM.modules.tasks.READ"],
    "pull_contacts": ["ZohoCRM.coql.READ", "ZohoCRM.modules.contacts.READ"],
    "pull_deals": ["ZohoCRM.coql.READ", "ZohoCRM.modules.deals.READ"],
}
TOKEN_OPERATIONS = ("exchange_code", "refresh", "revoke")
WRITE_MODULES = {"create_note": "Notes", "create_task": "Tasks"}
# [verify] the field limits: Note_Title 120, Subject 255, Note_Content and Description 32,000.
NOTE_TITLE_MAX = 120
SUBJECT_MAX = 255
TEXT_MAX = 32000


def granted_scopes(raw: Any) -> tuple[str, ...]:
    """The token response's `scope`, comma- or space-separated [verify which]."""
    return tuple(s for s in re.split(r"[\s,]+", str(raw or "")) if s)


def covers(granted: set[str], scope: str) -> bool:
    """Whether a grant includes `scope`: itself, its service's or module's ALL, or the operation
    on every module (ZohoCRM.modules.READ covers ZohoCRM.modules.contacts.READ)."""
    parts = scope.lower().split(".")
    operation, prefix = parts[-1], parts[:-1]
    while len(prefix) >= 2:
        if {".".join([*prefix, operation]), ".".join([*prefix, "all"])} & granted:
            return True
        prefix = prefix[:-1]
    return False


def records_of(body: Any) -> list[dict[str, Any]]:
    """The records of a list answer (`data`); none for 204 No Content."""
    data = body.get("data") if isinstance(body, dict) else None
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []


def api_bucket() -> Bucket:
    # Zoho caps concurrent calls per org; Conduit paces calls per second to that many (a call
    # rarely takes a second), so no more than that many are in flight.
    return Bucket.budgeted("zoho", "api", settings.ZOHO_CONCURRENCY_LIMIT, 1)


class ZohoProvider(Provider):
    name = "zoho"
    label = "Zoho CRM"
    required_scopes = (
        "ZohoCRM.modules.contacts.READ",
        "ZohoCRM.modules.deals.READ",
        "ZohoCRM.modules.notes.CREATE",
        "ZohoCRM.modules.notes.READ",
        "ZohoCRM.modules.tasks.CREATE",
        "ZohoCRM.modules.tasks.READ",
        "ZohoCRM.coql.READ",
        "ZohoCRM.org.READ",
    )
    supports_pkce = False  # [verify] Conduit uses the documented web-server flow without PKCE
    auth_scheme = "Zoho-oauthtoken"
    # [verify] named by Zoho's v2 API-limits page (per-minute limits); whether today's credit-based
    # API still sends them is unconfirmed. Logged only when an answer carries them.
    rate_limit_header_names = ("X-RATELIMIT-LIMIT", "X-RATELIMIT-REMAINING", "X-RATELIMIT-RESET")
    rate_limit_limit_header = "X-RATELIMIT-LIMIT"
    rate_limit_remaining_header = "X-RATELIMIT-REMAINING"

    def missing_scopes(self, granted: tuple[str, ...] | list[str]) -> list[str]:
        have = {s.lower() for s in granted}
        return [s for s in self.required_scopes if not covers(have, s)]

    def accounts_server(self, environment: str) -> str:
        if environment == "login":
            return str(settings.ZOHO_ACCOUNTS_URL)
        return validate_accounts_server(environment)

    def callback_environment(self, params: dict[str, str], environment: str) -> str:
        check_location(params.get("location", ""))
        server = params.get("accounts-server", "")
        return validate_accounts_server(server) if server else environment

    # --- OAuth ---
    def authorize_url(
        self, *, state: str, redirect_uri: str, code_challenge: str | None = None, environment: str = "login"
    ) -> str:
        self._require_credentials()
        query = {
            "response_type": "code",
            "client_id": settings.ZOHO_CLIENT_ID,
            "scope": ",".join(self.required_scopes),
            "redirect_uri": redirect_uri,
            "access_type": "offline",
            "prompt": "consent",  # a refresh token on every consent, not only the first
            "state": state,
        }
        return f"{settings.ZOHO_ACCOUNTS_URL}/oauth/v2/auth?{urlencode(query, quote_via=quote)}"

    def _require_credentials(self) -> None:
        if not (settings.ZOHO_CLIENT_ID and settings.ZOHO_CLIENT_SECRET):
            raise Permanent(self.name, "not_configured", "ZOHO_CLIENT_ID and ZOHO_CLIENT_SECRET are not set")

    def _token(
        self, operation: str, form: dict[str, str], environment: str, context: CallContext
    ) -> TokenSet:
        self._require_credentials()
        url = f"{self.accounts_server(environment)}/oauth/v2/token"
        form = {**form, "client_id": settings.ZOHO_CLIENT_ID, "client_secret": settings.ZOHO_CLIENT_SECRET}
        answer = self._call(operation, "POST", url, context=context, data=form)
        body: dict[str, Any] = answer if isinstance(answer, dict) else {}
        if not body.get("access_token") or (operation == "exchange_code" and not body.get("api_domain")):
            raise Permanent(
                self.name, "invalid_token_response", "the token response lacks a token or api_domain"
            )
        return TokenSet(
            access_token=body["access_token"],
            refresh_token=body.get("refresh_token"),  # a refresh answers none: the old one stays
            expires_at=timezone.now() + timedelta(seconds=int(body.get("expires_in") or 3600)),
            # [verify] no scope in the answer: Zoho's consent grants all requested scopes or none
            scopes=granted_scopes(body.get("scope")) or self.required_scopes,
            instance_url=validate_api_domain(str(body["api_domain"])) if body.get("api_domain") else "",
        )

    def exchange_code(
        self,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str | None = None,
        environment: str = "login",
        context: CallContext = NO_CONTEXT,
    ) -> TokenSet:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        return self._token("exchange_code", form, environment, context)

    def refresh(
        self, refresh_token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> TokenSet:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self._token("refresh", form, environment, context)

    def revoke(self, token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT) -> None:
        url = f"{self.accounts_server(environment)}/oauth/v2/token/revoke"
        self._call("revoke", "POST", url, context=context, params={"token": token}, secrets=(token,))

    def identify(
        self, tokens: TokenSet, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> ExternalAccount:
        url = f"{self._api_base(tokens.instance_url)}/org"
        org = self._org(self._call("identify", "GET", url, context=context, token=tokens.access_token))
        details = {
            "org_id": str(org["id"]),
            "org_name": str(org.get("company_name") or ""),
            "zgid": str(org.get("zgid") or ""),
            "data_centre": urlsplit(self.accounts_server(environment)).netloc,
        }
        return ExternalAccount(key=details["org_id"], details=details, scopes=tokens.scopes)

    def _org(self, body: Any) -> dict[str, Any]:
        orgs = body.get("org") if isinstance(body, dict) else None
        if not isinstance(orgs, list) or not orgs or not isinstance(orgs[0], dict) or not orgs[0].get("id"):
            raise Permanent(self.name, "invalid_org_response", "the org answer names no org id")
        return dict(orgs[0])

    # --- API ---
    def _api_base(self, api_domain: str) -> str:
        return f"{validate_api_domain(api_domain)}/crm/{settings.ZOHO_API_VERSION}"

    def _api(self, account: Account, operation: str, method: str, path: str, **kw: Any) -> Any:
        return self._call_as(
            account, operation, method, f"{self._api_base(account.instance_url)}/{path}", **kw
        )

    def api_bucket(self) -> Bucket:
        return api_bucket()

    def check_health(self, account: Account) -> HealthResult:
        # GET /org: one authenticated call, one credit, no record read
        org = self._org(self._api(account, "health_check", "GET", "org"))
        details = {"org_id": str(org["id"]), "api_domain": urlsplit(account.instance_url).netloc}
        return HealthResult(latency_ms=last_call_ms() or 0, details=details)

    def _coql(self, account: Account, operation: str, query: str) -> list[dict[str, Any]]:
        return records_of(self._api(account, operation, "POST", "coql", json={"select_query": query}))

    def _first_id(self, records: list[dict[str, Any]]) -> str | None:
        return str(records[0]["id"]) if records and records[0].get("id") else None

    def find_contact(self, account: Account, email: str) -> str | None:
        body = self._api(account, "find_contact", "GET", "Contacts/search", params={"email": email})
        return self._first_id(records_of(body))

    def find_open_deal(self, account: Account, contact_id: str) -> str | None:
        query = OPEN_DEAL_COQL.format(contact=coql_quote(contact_id))
        return self._first_id(self._coql(account, "find_open_deal", query))

    def changed_since(
        self, account: Account, object: str, since: datetime, after: str | None, limit: int
    ) -> ChangedPage:
        module, fields = CHANGED_COQL[check_object(object)]
        query = (
            f"select {fields} from {module} where {changed_where(since, after)} "  # noqa: S608 - COQL, quoted
            f"order by Modified_Time asc, id asc limit {limit}"
        )
        try:
            records = [
                Changed(str(r["id"]), parse_time(r["Modified_Time"]), str(r.get("Email") or ""))
                for r in self._coql(account, f"pull_{object}s", query)
            ]
        except (KeyError, TypeError, ValueError):
            raise Permanent(
                self.name, "invalid_query_response", "a record lacks id or Modified_Time"
            ) from None
        if len(records) < limit:
            return ChangedPage(records)
        last = records[-1]
        return ChangedPage(records, join_token(coql_datetime(last.modified_at), last.id))

    # --- writes ---
    def parent(self, activity: Activity) -> tuple[str, str]:
        """The record a note hangs on: the open deal when there is one, else the contact."""
        return ("Deals", activity.deal_id) if activity.deal_id else ("Contacts", activity.contact_id)

    def note_record(self, activity: Activity) -> dict[str, Any]:
        module, parent_id = self.parent(activity)
        return {
            "Note_Title": marked(activity.subject, activity.marker, NOTE_TITLE_MAX),
            "Note_Content": with_marker(activity, TEXT_MAX),
            "Parent_Id": parent_id,
            "$se_module": module,
        }

    def task_record(self, activity: Activity) -> dict[str, Any]:
        record: dict[str, Any] = {
            "Subject": marked(activity.subject, activity.marker, SUBJECT_MAX),
            "Description": with_marker(activity, TEXT_MAX),
            "Due_Date": (activity.due_at or activity.occurred_at).date().isoformat(),
            "Status": "Not Started",
            "Priority": "Normal",
            "Who_Id": {"id": activity.contact_id},
        }
        if activity.deal_id:
            record |= {"What_Id": {"id": activity.deal_id}, "$se_module": "Deals"}
        return record

    def write_payload(self, operation: str, activity: Activity) -> dict[str, Any]:
        # A meeting is a note describing it (Provider.create_meeting).
        if check_operation(operation) in ("create_note", "create_meeting"):
            return {"data": [self.note_record(activity)]}
        return {"data": [self.task_record(activity)]}

    def _create(self, account: Account, operation: str, activity: Activity) -> str:
        payload = self.write_payload(operation, activity)
        body = self._api(account, operation, "POST", WRITE_MODULES[operation], json=payload, write=True)
        return str(self.created_id(body))  # refused_in_body has refused an answer without one

    def created_id(self, body: Any) -> str | None:
        details = self.error_item(body).get("details")
        record_id = details.get("id") if isinstance(details, dict) else None
        return str(record_id) if record_id else None

    def create_note(self, account: Account, activity: Activity) -> str:
        return self._create(account, "create_note", activity)

    def create_task(self, account: Account, activity: Activity) -> str:
        return self._create(account, "create_task", activity)

    def find_marked(self, account: Account, operation: str, activity: Activity) -> str | None:
        # The marker is validated (letters and digits only), so it holds no COQL wildcard.
        if operation == "create_task":
            query = MARKED_TASK_COQL.format(
                contact=coql_quote(activity.contact_id), pattern=coql_quote(f"%{activity.marker}%")
            )
            return self._first_id(self._coql(account, "find_write", query))
        # Notes are not in COQL: read the parent's notes, newest first. [verify] the sort
        # parameters on the notes of a record; the write looked for is minutes old.
        module, parent_id = self.parent(activity)
        params = {"fields": "Note_Title,Note_Content", "per_page": 200, "sort_by": "Created_Time"}
        path = f"{module}/{quote(parent_id, safe='')}/Notes"
        body = self._api(account, "find_write", "GET", path, params={**params, "sort_order": "desc"})
        marked_notes = [
            n
            for n in records_of(body)
            if activity.marker in f"{n.get('Note_Title') or ''} {n.get('Note_Content') or ''}"
        ]
        return self._first_id(marked_notes)

    # --- error mapping ---
    def default_retry_after(self, resp: requests.Response) -> float:
        # [verify] a 429 about concurrency clears in seconds; credits free up as the 24 h window rolls
        item = self.error_item(json_or_none(resp))
        if item.get("code") == "LIMIT_EXCEEDED" or "credit" in str(item.get("message") or "").lower():
            return float(settings.ZOHO_CREDITS_RETRY_SECONDS)
        return float(settings.ZOHO_CONCURRENCY_RETRY_SECONDS)

    def error_item(self, body: Any) -> dict[str, Any]:
        """Zoho's error object: the body itself, or the first record's answer in `data`."""
        if isinstance(body, dict) and isinstance(body.get("data"), list) and body["data"]:
            first = body["data"][0]
            return first if isinstance(first, dict) else {}
        return body if isinstance(body, dict) else {}

    def refused_in_body(self, body: Any, operation: str) -> ProviderError | None:
        if operation in TOKEN_OPERATIONS:
            return self.oauth_error(body, operation, 200)
        if operation not in WRITE_MODULES:
            return None
        if (item := self.error_item(body)).get("status") == "error":
            return self.api_error(item, 200, operation)
        if self.created_id(body) is None:
            return Permanent(self.name, "invalid_create_response", "the create response has no id")
        return None

    def oauth_error(self, body: Any, operation: str, status: int) -> ProviderError | None:
        error = str(body.get("error") or "") if isinstance(body, dict) else ""
        if not error:
            return None
        message = short(body.get("error_description") or error)
        if error == "invalid_code" and operation == "refresh":  # revoked, or deleted past the cap
            return AuthRevoked(self.name, None, message, http_status=status)
        if error == "invalid_code":
            return Permanent(self.name, "invalid_authorization_code", message, http_status=status)
        if error in ("invalid_client", "invalid_client_secret"):
            return Permanent(self.name, "invalid_client", message, http_status=status)
        if error.lower().replace(" ", "_") == "access_denied" and "too many requests" in message.lower():
            # [verify] Zoho throttles token requests ("too many requests continuously")
            return RateLimited(
                self.name, "token_requests_throttled", message, retry_after=60.0, http_status=status
            )
        return Permanent(self.name, error.lower().replace(" ", "_"), message, http_status=status)

    def api_error(self, item: dict[str, Any], status: int, operation: str) -> ProviderError:
        code = str(item.get("code") or f"http_{status}")
        message = short(item.get("message") or f"HTTP {status}")
        raw = item.get("details")
        details: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if code == "OAUTH_SCOPE_MISMATCH":
            missing = SCOPES_FOR.get(operation, ["unknown"])
            return MissingScope(self.name, missing, message, http_status=status)
        if status == 401 or code in ("INVALID_TOKEN", "AUTHENTICATION_FAILURE"):
            return TokenExpired(self.name, code.lower(), message, http_status=status)
        if code in ("TOO_MANY_REQUESTS", "LIMIT_EXCEEDED") and not details.get("api_name"):
            # [verify] an org's credits or concurrency refused outside a 429
            credits = code == "LIMIT_EXCEEDED"
            wait = settings.ZOHO_CREDITS_RETRY_SECONDS if credits else settings.ZOHO_CONCURRENCY_RETRY_SECONDS
            limit = "credits_exhausted" if credits else "concurrency_limit"
            return RateLimited(self.name, limit, message, retry_after=float(wait), http_status=status)
        return Permanent(
            self.name,
            code.lower(),
            message,
            details={"code": code, "api_name": details.get("api_name")},
            http_status=status,
        )

    def classify_client_error(self, resp: requests.Response, operation: str) -> ProviderError:
        body = json_or_none(resp)
        error = self.oauth_error(body, operation, resp.status_code) if operation in TOKEN_OPERATIONS else None
        return error or self.api_error(self.error_item(body), resp.status_code, operation)
