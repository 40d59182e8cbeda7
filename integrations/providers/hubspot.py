"""HubSpot: OAuth (v1 token endpoint), token info, CRM v3 notes, tasks and meetings with associations.

Facts: ../shared/provider-facts.md, "HubSpot". Deviations and [verify] items are marked here
and listed in docs/connectors.md.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

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
    short,
    with_marker,
)
from integrations.providers.changes import (
    Changed,
    ChangedPage,
    check_object,
    join_token,
    parse_time,
    split_token,
)
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    Permanent,
    ProviderError,
    TokenExpired,
)
from integrations.providers.ratelimit import Bucket
from integrations.providers.synclog import NO_CONTEXT, CallContext

# [verify] OAuth v1 is deprecated on 2027-02-16; /oauth/v3/token takes the same form fields.
TOKEN_PATH = "/oauth/v1/token"  # noqa: S105 - a path, not a secret
# HUBSPOT_DEFINED default association type ids (provider-facts.md, associations v4 table).
ASSOCIATION_TYPES = {
    ("notes", "contact"): 202,
    ("notes", "deal"): 214,
    ("tasks", "contact"): 204,
    ("tasks", "deal"): 216,
    # [verify] meeting -> contact 200, meeting -> deal 212 (HubSpot's associations v4 table;
    # provider-facts.md lists notes and tasks only).
    ("meetings", "contact"): 200,
    ("meetings", "deal"): 212,
}
REVOKED_STATUSES = {"BAD_REFRESH_TOKEN", "BAD_HUB"}
NOTE_BODY_MAX = 65536
# Where each write carries its marker (" [<marker>]" at the end of the body) and where to search.
MARKED_WRITES = {
    "create_note": ("notes", "hs_note_body"),
    "create_task": ("tasks", "hs_task_body"),
    "create_meeting": ("meetings", "hs_meeting_body"),
}
# [verify] CONTAINS_TOKEN is assumed to split the body at the brackets, so the bare marker is a
# token; if it does not, "*{marker}*" (wildcards are documented for CONTAINS_TOKEN) is the fix.
MARKER_SEARCH_VALUE = "{marker}"
# The search object and its last-modified property for each object a sync cursor follows.
CHANGED_SEARCH = {"contact": ("contacts", "lastmodifieddate"), "deal": ("deals", "hs_lastmodifieddate")}
# Search pages no further than this many results (after + limit); paging past it answers 400.
SEARCH_WINDOW = 10000


def api_bucket() -> Bucket:
    return Bucket.budgeted("hubspot", "api", settings.HUBSPOT_TEN_SECOND_LIMIT, 10)


def search_bucket() -> Bucket:
    return Bucket.budgeted("hubspot", "search", settings.HUBSPOT_SEARCH_PER_SECOND, 1)


def epoch_ms(when: Any) -> str:
    return str(int(when.timestamp() * 1000))


def iso_utc(when: datetime) -> str:
    """2026-05-04T14:00:00.000Z, the form HubSpot's meeting examples use for start and end."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class HubSpotProvider(Provider):
    name = "hubspot"
    label = "HubSpot"
    # Notes and tasks have no scope of their own: they need the contacts scopes.
    required_scopes = (
        "oauth",
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.objects.deals.read",
    )
    supports_pkce = False  # HubSpot's documented flow has no PKCE parameters
    search_window = SEARCH_WINDOW
    # OAuth calls get Max / Remaining / Interval-Milliseconds; Daily* only API-key calls, Secondly*
    # are deprecated; search answers carry none (provider-facts.md).
    rate_limit_header_names = (
        "X-HubSpot-RateLimit-Max",
        "X-HubSpot-RateLimit-Remaining",
        "X-HubSpot-RateLimit-Interval-Milliseconds",
        "X-HubSpot-RateLimit-Daily",
        "X-HubSpot-RateLimit-Daily-Remaining",
        "X-HubSpot-RateLimit-Secondly",
        "X-HubSpot-RateLimit-Secondly-Remaining",
    )
    rate_limit_limit_header = "X-HubSpot-RateLimit-Max"
    rate_limit_remaining_header = "X-HubSpot-RateLimit-Remaining"

    @property
    def api(self) -> str:
        return settings.HUBSPOT_API_BASE_URL

    # --- OAuth ---
    def authorize_url(
        self, *, state: str, redirect_uri: str, code_challenge: str | None = None, environment: str = "login"
    ) -> str:
        self._require_credentials()
        query = {
            "client_id": settings.HUBSPOT_CLIENT_ID,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.required_scopes),
            "state": state,
        }
        return f"{settings.HUBSPOT_AUTHORIZE_URL}?{urlencode(query, quote_via=quote)}"

    def _token(self, operation: str, form: dict[str, str], context: CallContext) -> TokenSet:
        self._require_credentials()
        form = {
            **form,
            "client_id": settings.HUBSPOT_CLIENT_ID,
            "client_secret": settings.HUBSPOT_CLIENT_SECRET,
        }
        body = self._call(operation, "POST", self.api + TOKEN_PATH, context=context, data=form) or {}
        if not body.get("access_token"):
            raise Permanent(self.name, "invalid_token_response", "the token response has no access token")
        expires_in = int(body.get("expires_in") or 1800)
        return TokenSet(
            access_token=body["access_token"],
            refresh_token=body.get("refresh_token"),
            expires_at=timezone.now() + timedelta(seconds=expires_in),
            scopes=tuple(body.get("scopes") or ()),
            account_key=str(body.get("hub_id") or ""),
        )

    def _require_credentials(self) -> None:
        if not (settings.HUBSPOT_CLIENT_ID and settings.HUBSPOT_CLIENT_SECRET):
            raise Permanent(
                self.name, "not_configured", "HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET are not set"
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
        return self._token("exchange_code", form, context)

    def refresh(
        self, refresh_token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> TokenSet:
        return self._token(
            "refresh", {"grant_type": "refresh_token", "refresh_token": refresh_token}, context
        )

    def revoke(self, token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT) -> None:
        # [verify] DELETE /oauth/v1/refresh-tokens/{token} is not in provider-facts.md; the
        # app-uninstall alternative is DELETE /appinstalls/v3/external-install.
        self._call(
            "revoke",
            "DELETE",
            f"{self.api}/oauth/v1/refresh-tokens/{quote(token, safe='')}",
            context=context,
            secrets=(token,),
        )

    def identify(
        self, tokens: TokenSet, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> ExternalAccount:
        url = f"{self.api}/oauth/v1/access-tokens/{quote(tokens.access_token, safe='')}"
        info = self._call("identify", "GET", url, context=context, secrets=(tokens.access_token,)) or {}
        hub_id = str(info.get("hub_id") or tokens.account_key)
        if not hub_id:
            raise Permanent(self.name, "invalid_token_info", "token info names no hub id")
        details = {
            "hub_id": hub_id,
            "hub_domain": str(info.get("hub_domain") or ""),
            "app_id": info.get("app_id"),
            "user_id": info.get("user_id"),
        }
        return ExternalAccount(
            key=hub_id,
            details=details,
            scopes=tuple(info.get("scopes") or tokens.scopes),
            user_email=str(info.get("user") or ""),
        )

    # --- API ---
    def _api_call(self, account: Account, operation: str, method: str, path: str, **kw: Any) -> Any:
        bucket = search_bucket() if path.endswith("/search") else api_bucket()
        return self._call_as(account, operation, method, self.api + path, bucket=bucket, **kw)

    def api_bucket(self) -> Bucket:
        return api_bucket()

    def check_health(self, account: Account) -> HealthResult:
        details = self._api_call(account, "health_check", "GET", "/account-info/v3/details") or {}
        return HealthResult(latency_ms=last_call_ms() or 0, details={"portal_id": details.get("portalId")})

    def _search_one(
        self, account: Account, operation: str, object_type: str, body: dict[str, Any]
    ) -> str | None:
        result = (
            self._api_call(account, operation, "POST", f"/crm/v3/objects/{object_type}/search", json=body)
            or {}
        )
        results = result.get("results") or []
        return str(results[0]["id"]) if results else None

    def find_contact(self, account: Account, email: str) -> str | None:
        body = {
            "filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": email}]}],
            "properties": ["email"],
            "limit": 1,
        }
        return self._search_one(account, "find_contact", "contacts", body)

    def find_open_deal(self, account: Account, contact_id: str) -> str | None:
        # [verify] the "associations.contact" search pseudo-property; the alternative is
        # GET /crm/v4/objects/contacts/{id}/associations/deals plus a read per deal.
        filters = [
            {"propertyName": "associations.contact", "operator": "EQ", "value": contact_id},
            {"propertyName": "hs_is_closed", "operator": "EQ", "value": "false"},
        ]
        body = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}],
            "properties": ["dealname"],
            "limit": 1,
        }
        return self._search_one(account, "find_open_deal", "deals", body)

    def changed_since(
        self, account: Account, object: str, since: datetime, after: str | None, limit: int
    ) -> ChangedPage:
        object_type, modified = CHANGED_SEARCH[check_object(object)]
        since_ms, offset = split_token(after) if after else (epoch_ms(since), "")
        body: dict[str, Any] = {
            "filterGroups": [{"filters": [{"propertyName": modified, "operator": "GTE", "value": since_ms}]}],
            "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
            "properties": ["email", modified] if object == "contact" else [modified],
            "limit": limit,
        }
        if offset:
            body["after"] = offset
        path = f"/crm/v3/objects/{object_type}/search"
        result = self._api_call(account, f"pull_{object}s", "POST", path, json=body) or {}
        records = [self.changed_record(r, modified) for r in result.get("results") or []]
        following = ((result.get("paging") or {}).get("next") or {}).get("after")
        return ChangedPage(records, self.next_search(since_ms, str(following or ""), records, limit))

    def changed_record(self, result: dict[str, Any], modified: str) -> Changed:
        try:
            properties = result["properties"]
            return Changed(
                str(result["id"]), parse_time(properties[modified]), str(properties.get("email") or "")
            )
        except (KeyError, TypeError, ValueError):
            raise Permanent(
                self.name, "invalid_search_response", f"a result lacks id or {modified}"
            ) from None

    def next_search(self, since_ms: str, following: str, records: list[Changed], limit: int) -> str | None:
        """The token of the next page. Normally a new search from the newest time read (its
        records are read again): paging by offset would skip a record whenever one already read is
        edited meanwhile, since it moves to the end and every later record shifts back. Only a page
        that is all one millisecond pages on with HubSpot's `after`, within the search window."""
        if not following or not records:
            return None
        newest = epoch_ms(records[-1].modified_at)
        if int(newest) > int(since_ms):
            return join_token(newest, "")
        if following.isascii() and following.isdigit() and int(following) + limit <= self.search_window:
            return join_token(since_ms, following)
        # A window full of one millisecond cannot be paged: the rest of that millisecond is skipped.
        return join_token(str(int(since_ms) + 1), "")

    def associations(self, object_type: str, activity: Activity) -> list[dict[str, Any]]:
        targets = [("contact", activity.contact_id)]
        if activity.deal_id:
            targets.append(("deal", activity.deal_id))
        return [
            {
                "to": {"id": target_id},
                "types": [
                    {
                        "associationCategory": "HUBSPOT_DEFINED",
                        "associationTypeId": ASSOCIATION_TYPES[(object_type, kind)],
                    }
                ],
            }
            for kind, target_id in targets
        ]

    def note_payload(self, activity: Activity) -> dict[str, Any]:
        return {
            "properties": {
                "hs_timestamp": epoch_ms(activity.occurred_at),
                "hs_note_body": with_marker(activity, NOTE_BODY_MAX),
            },
            "associations": self.associations("notes", activity),
        }

    def task_payload(self, activity: Activity) -> dict[str, Any]:
        return {
            "properties": {
                "hs_timestamp": epoch_ms(activity.due_at or activity.occurred_at),
                "hs_task_subject": activity.subject,
                "hs_task_body": with_marker(activity, NOTE_BODY_MAX),
                "hs_task_status": "NOT_STARTED",
                "hs_task_priority": "MEDIUM",
                "hs_task_type": "EMAIL",
            },
            "associations": self.associations("tasks", activity),
        }

    def meeting_payload(self, activity: Activity) -> dict[str, Any]:
        """A scheduled meeting on the contact (and its open deal). The body is Conduit's curated
        text (title, time, organizer, attendees, link) ending with the marker: never the
        event's description."""
        ends_at = activity.ends_at or activity.occurred_at
        return {
            "properties": {
                "hs_timestamp": epoch_ms(activity.occurred_at),
                "hs_meeting_title": activity.subject,
                "hs_meeting_start_time": iso_utc(activity.occurred_at),
                "hs_meeting_end_time": iso_utc(ends_at),
                "hs_meeting_body": with_marker(activity, NOTE_BODY_MAX),
                "hs_meeting_outcome": "SCHEDULED",
            },
            "associations": self.associations("meetings", activity),
        }

    def write_payload(self, operation: str, activity: Activity) -> dict[str, Any]:
        operation = check_operation(operation)
        if operation == "create_meeting":
            return self.meeting_payload(activity)
        if operation == "create_note":
            return self.note_payload(activity)
        return self.task_payload(activity)

    def _create(self, account: Account, operation: str, activity: Activity) -> str:
        object_type = MARKED_WRITES[operation][0]
        payload = self.write_payload(operation, activity)
        created = self._api_call(
            account, operation, "POST", f"/crm/v3/objects/{object_type}", json=payload, write=True
        )
        return str((created or {})["id"])

    def create_note(self, account: Account, activity: Activity) -> str:
        return self._create(account, "create_note", activity)

    def create_task(self, account: Account, activity: Activity) -> str:
        return self._create(account, "create_task", activity)

    def create_meeting(self, account: Account, activity: Activity) -> str:
        return self._create(account, "create_meeting", activity)

    def find_marked(self, account: Account, operation: str, activity: Activity) -> str | None:
        # [verify] CRM search is eventually consistent: a new note or task is indexed after a
        # short delay, so a search right after a create can miss it. Callers recheck only after
        # a lease has expired (minutes later), never straight after a lost reply.
        object_type, body_property = MARKED_WRITES[operation]
        body = {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": body_property,
                            "operator": "CONTAINS_TOKEN",
                            "value": MARKER_SEARCH_VALUE.format(marker=activity.marker),
                        }
                    ]
                }
            ],
            "properties": ["hs_object_id"],
            "limit": 1,
        }
        return self._search_one(account, "find_write", object_type, body)

    # --- error mapping ---
    def default_retry_after(self, resp: requests.Response) -> float:
        body = json_or_none(resp) or {}
        policy = body.get("policyName") if isinstance(body, dict) else None
        if policy == "SECONDLY":
            return 1.0
        if policy == "DAILY":
            return float(settings.CONDUIT_RETRY_AFTER_MAX_SECONDS)
        interval = resp.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds", "")
        return int(interval) / 1000 if interval.isascii() and interval.isdigit() else 10.0

    def classify_client_error(self, resp: requests.Response, operation: str) -> ProviderError:
        status = resp.status_code
        body = json_or_none(resp)
        body = body if isinstance(body, dict) else {}
        message = short(body.get("message") or body.get("error_description") or f"HTTP {status}")
        error, hs_status, category = body.get("error"), body.get("status"), body.get("category")
        if operation == "refresh" and (error == "invalid_grant" or hs_status in REVOKED_STATUSES):
            return AuthRevoked(self.name, None, message, http_status=status)
        if error == "invalid_client" or hs_status == "BAD_CLIENT_ID":
            return Permanent(self.name, "invalid_client", message, http_status=status)
        if error == "invalid_grant":
            return Permanent(self.name, "invalid_authorization_code", message, http_status=status)
        if status == 401:
            code = "token_expired" if category == "EXPIRED_AUTHENTICATION" else "invalid_authentication"
            return TokenExpired(self.name, code, message, http_status=status)
        if status == 403 and category == "MISSING_SCOPES":
            missing: list[str] = []
            for item in body.get("errors") or []:
                missing.extend((item.get("context") or {}).get("requiredGranularScopes") or [])
            return MissingScope(self.name, sorted(set(missing)) or ["unknown"], message, http_status=status)
        code = str(category or f"http_{status}").lower()
        return Permanent(self.name, code, message, details={"category": category}, http_status=status)
