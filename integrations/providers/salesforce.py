"""Salesforce: OAuth web-server flow with PKCE, identity from the `id` URL (and the org's name
from one Organization query), REST v66.0 Tasks and Events.

Facts: ../shared/provider-facts.md, "Salesforce". No token is ever sent to an instance_url
before `validate_instance_url` accepts it. The login vs test host is the connection's
`environment` ("login" or "test").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests
from django.conf import settings

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
    parse_retry_after,
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
    InvalidInstanceUrl,
    MissingScope,
    Permanent,
    ProviderError,
    RateLimited,
    TokenExpired,
)
from integrations.providers.ratelimit import Bucket, get_limiter
from integrations.providers.synclog import NO_CONTEXT, CallContext

# [verify] .salesforce.mil (Government Cloud) per provider-facts.md.
INSTANCE_SUFFIXES = (".salesforce.com", ".force.com", ".cloudforce.com", ".salesforce.mil")
ENVIRONMENTS = ("login", "test")
SCOPE_SYNONYMS = {"refresh_token": {"refresh_token", "offline_access"}, "api": {"api", "full"}}
LIMIT_INFO_RE = re.compile(r"api-usage=(\d+)/(\d+)")


def api_usage(headers: Mapping[str, str]) -> tuple[int, int] | None:
    """(used, limit) of the org's daily API allocation from `Sforce-Limit-Info: api-usage=18/15000`."""
    match = LIMIT_INFO_RE.search(headers.get("Sforce-Limit-Info") or "")
    return (int(match[1]), int(match[2])) if match else None


OPEN_OPPORTUNITY_SOQL = (
    "SELECT OpportunityId FROM OpportunityContactRole WHERE ContactId = {contact} "
    "AND Opportunity.IsClosed = false ORDER BY Opportunity.LastModifiedDate DESC LIMIT 1"
)
# Description is a long textarea, which SOQL cannot filter on: the marker also ends the Subject.
MARKED_TASK_SOQL = "SELECT Id FROM Task WHERE WhoId = {contact} AND Subject LIKE {pattern} LIMIT 1"
# The same for a meeting: an Event's Description is a long textarea too, so its Subject ends with
# the marker as well.
MARKED_EVENT_SOQL = "SELECT Id FROM Event WHERE WhoId = {contact} AND Subject LIKE {pattern} LIMIT 1"
# [verify] an Event that is not all-day may last at most 14 days; a longer one is cut to that.
EVENT_MAX_DURATION = timedelta(days=14)
# What the incremental pull reads of each object; the keyset (SystemModstamp, Id) pages it.
CHANGED_SOQL = {
    "contact": "SELECT Id, Email, SystemModstamp FROM Contact",
    "deal": "SELECT Id, SystemModstamp FROM Opportunity",
}
SUBJECT_MAX = 255
ORG_NAME_SOQL = "SELECT Name FROM Organization LIMIT 1"
ORG_NAME_MAX = 200
# What each write operation sends, as the sync log and the metrics name the call: Salesforce gets a
# Task either way, a completed one for a note. A fixed set, so metric labels stay bounded.
SENT_AS = {
    "create_note": "create_completed_task",
    "create_task": "create_task",
    "create_meeting": "create_event",
}
DESCRIPTION_MAX = 32000
ID_URL_RE = re.compile(r"/id/(?P<org>[A-Za-z0-9]{15,18})/(?P<user>[A-Za-z0-9]{15,18})/?$")


def validate_instance_url(url: str) -> str:
    """Return the normalised origin of a legitimate instance_url, or raise InvalidInstanceUrl.

    https on port 443 and a hostname ending in one of Salesforce's own suffixes, compared on
    the parsed hostname (never the string); userinfo, paths and query strings are refused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInstanceUrl("salesforce", None, "instance_url is not a URL") from None
    host = (parts.hostname or "").lower().rstrip(".")
    origin = f"{parts.scheme}://{parts.netloc}".rstrip("/").lower()
    if origin in {o.lower() for o in settings.SALESFORCE_EXTRA_INSTANCE_ORIGINS} and not parts.username:
        return origin
    if parts.scheme != "https" or port not in (None, 443):
        raise InvalidInstanceUrl("salesforce", None, "instance_url must be https on port 443")
    if parts.username or parts.password or parts.path.strip("/") or parts.query or parts.fragment:
        raise InvalidInstanceUrl("salesforce", None, "instance_url must be a bare origin")
    if not host or not host.endswith(INSTANCE_SUFFIXES):
        raise InvalidInstanceUrl("salesforce", None, f"instance_url host {host!r} is not a Salesforce domain")
    return f"https://{host}"


def soql_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def soql_datetime(when: datetime) -> str:
    """A SOQL datetime literal (UTC, whole seconds: SystemModstamp has no finer precision)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def changed_where(since: datetime, after: str | None) -> str:
    """Records at or after `since`; after a page, the ones past its last (SystemModstamp, Id),
    so records sharing one timestamp are paged by Id and none is read twice."""
    if not after:
        return f"SystemModstamp >= {soql_datetime(since)}"
    stamp, last_id = split_token(after)
    return f"(SystemModstamp > {stamp} OR (SystemModstamp = {stamp} AND Id > {soql_quote(last_id)}))"


def api_bucket() -> Bucket:
    # Salesforce paces by a daily allocation, not a burst window: the bucket is only blocked.
    return Bucket("salesforce", "api", 0, 1)


class SalesforceProvider(Provider):
    name = "salesforce"
    label = "Salesforce"
    required_scopes = ("api", "refresh_token")
    supports_pkce = True
    # `api-usage=<used>/<limit>` (and `; api-bursts=...` on newer versions) on every REST answer.
    rate_limit_header_names = ("Sforce-Limit-Info",)

    def host(self, environment: str) -> str:
        if environment not in ENVIRONMENTS:
            raise Permanent(self.name, "invalid_environment", "environment must be 'login' or 'test'")
        return settings.SALESFORCE_LOGIN_URL if environment == "login" else settings.SALESFORCE_TEST_URL

    def missing_scopes(self, granted: tuple[str, ...] | list[str]) -> list[str]:
        have = set(granted)
        return [s for s in self.required_scopes if not (SCOPE_SYNONYMS.get(s, {s}) & have)]

    # --- OAuth ---
    def authorize_url(
        self, *, state: str, redirect_uri: str, code_challenge: str | None = None, environment: str = "login"
    ) -> str:
        self._require_credentials()
        query = {
            "response_type": "code",
            "client_id": settings.SALESFORCE_CLIENT_ID,
            "redirect_uri": redirect_uri,
            "scope": " ".join((*self.required_scopes, "id")),
            "state": state,
        }
        if code_challenge:
            query |= {"code_challenge": code_challenge, "code_challenge_method": "S256"}
        return f"{self.host(environment)}/services/oauth2/authorize?{urlencode(query, quote_via=quote)}"

    def _require_credentials(self) -> None:
        if not (settings.SALESFORCE_CLIENT_ID and settings.SALESFORCE_CLIENT_SECRET):
            raise Permanent(
                self.name, "not_configured", "SALESFORCE_CLIENT_ID and SALESFORCE_CLIENT_SECRET are not set"
            )

    def _token(
        self, operation: str, form: dict[str, str], environment: str, context: CallContext
    ) -> TokenSet:
        self._require_credentials()
        form = {
            **form,
            "client_id": settings.SALESFORCE_CLIENT_ID,
            "client_secret": settings.SALESFORCE_CLIENT_SECRET,
        }
        url = f"{self.host(environment)}/services/oauth2/token"
        body = self._call(operation, "POST", url, context=context, data=form) or {}
        if not body.get("access_token") or not body.get("instance_url"):
            raise Permanent(
                self.name, "invalid_token_response", "the token response lacks a token or instance_url"
            )
        return TokenSet(
            access_token=body["access_token"],
            refresh_token=body.get("refresh_token"),
            expires_at=None,  # Salesforce sends no expires_in: refresh after a 401
            scopes=tuple(str(body.get("scope") or "").split()),
            instance_url=validate_instance_url(str(body["instance_url"])),
            identity_url=str(body.get("id") or ""),
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
        if code_verifier:
            form["code_verifier"] = code_verifier
        return self._token("exchange_code", form, environment, context)

    def refresh(
        self, refresh_token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> TokenSet:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self._token("refresh", form, environment, context)

    def revoke(self, token: str, *, environment: str = "login", context: CallContext = NO_CONTEXT) -> None:
        self._call(
            "revoke",
            "POST",
            f"{self.host(environment)}/services/oauth2/revoke",
            context=context,
            data={"token": token},
        )

    def identify(
        self, tokens: TokenSet, *, environment: str = "login", context: CallContext = NO_CONTEXT
    ) -> ExternalAccount:
        match = ID_URL_RE.search(urlsplit(tokens.identity_url).path)
        if not match:
            raise Permanent(
                self.name, "invalid_identity_url", "the token response's id URL names no org and user"
            )
        instance_url = validate_instance_url(tokens.instance_url)
        info = (
            self._call(
                "identify",
                "GET",
                f"{instance_url}/services/oauth2/userinfo",
                context=context,
                token=tokens.access_token,
            )
            or {}
        )
        details = {
            "instance_url": instance_url,
            "org_id": match["org"],
            "user_id": match["user"],
            "environment": environment,
            "username": str(info.get("preferred_username") or ""),
        }
        if org_name := self.org_name(instance_url, tokens.access_token, context):
            details["org_name"] = org_name
        return ExternalAccount(
            key=match["org"], details=details, scopes=tokens.scopes, user_email=str(info.get("email") or "")
        )

    def org_name(self, instance_url: str, token: str, context: CallContext) -> str:
        """The org's name (Setup → Company Information), which the Integrations card shows: one
        query at connect (userinfo does not carry it). Only a label: when the query is refused
        (a user who may not read Organization) or fails, the connection is made all the same and
        the card shows the instance's host."""
        url = f"{instance_url}/services/data/{settings.SALESFORCE_API_VERSION}/query"
        try:
            result = self._call(
                "identify", "GET", url, context=context, token=token, params={"q": ORG_NAME_SOQL}
            )
        except ProviderError:  # recorded in crm_sync_logs like any failed call
            return ""
        records = result.get("records") if isinstance(result, dict) else None
        first = records[0] if isinstance(records, list) and records and isinstance(records[0], dict) else {}
        return str(first.get("Name") or "")[:ORG_NAME_MAX]

    # --- API ---
    def _rest(self, account: Account, operation: str, method: str, path: str, **kw: Any) -> Any:
        base = validate_instance_url(account.instance_url)
        url = f"{base}/services/data/{settings.SALESFORCE_API_VERSION}/{path}"
        return self._call_as(account, operation, method, url, **kw)

    def api_bucket(self) -> Bucket:
        return api_bucket()

    def check_health(self, account: Account) -> HealthResult:
        # userinfo is authenticated and does not count against the daily API allocation.
        base = validate_instance_url(account.instance_url)
        info = self._call_as(account, "health_check", "GET", f"{base}/services/oauth2/userinfo") or {}
        usage = get_limiter().daily_usage(self.name, account.account_key)
        details: dict[str, Any] = {"org_id": info.get("organization_id")}
        if usage:
            details["api_usage"] = {"used": usage[0], "limit": usage[1]}
        return HealthResult(latency_ms=last_call_ms() or 0, details=details)

    def _query_first(self, account: Account, operation: str, soql: str, field: str) -> str | None:
        result = self._rest(account, operation, "GET", "query", params={"q": soql}) or {}
        records = result.get("records") or []
        return str(records[0][field]) if records else None

    def find_contact(self, account: Account, email: str) -> str | None:
        soql = f"SELECT Id, Name, Email FROM Contact WHERE Email = {soql_quote(email)} LIMIT 1"  # noqa: S608 - SOQL, quoted
        return self._query_first(account, "find_contact", soql, "Id")

    def find_open_deal(self, account: Account, contact_id: str) -> str | None:
        soql = OPEN_OPPORTUNITY_SOQL.format(contact=soql_quote(contact_id))
        return self._query_first(account, "find_open_deal", soql, "OpportunityId")

    def changed_since(
        self, account: Account, object: str, since: datetime, after: str | None, limit: int
    ) -> ChangedPage:
        # [verify] Id > '<id>' (an Id keyset) is the documented way to page a large SOQL result by Id.
        soql = (
            f"{CHANGED_SOQL[check_object(object)]} WHERE {changed_where(since, after)} "
            f"ORDER BY SystemModstamp ASC, Id ASC LIMIT {limit}"
        )
        result = self._rest(account, f"pull_{object}s", "GET", "query", params={"q": soql}) or {}
        try:
            records = [
                Changed(str(r["Id"]), parse_time(r["SystemModstamp"]), str(r.get("Email") or ""))
                for r in result.get("records") or []
            ]
        except (KeyError, TypeError, ValueError):
            raise Permanent(
                self.name, "invalid_query_response", "a record lacks Id or SystemModstamp"
            ) from None
        if len(records) < limit:
            return ChangedPage(records)
        return ChangedPage(records, join_token(soql_datetime(records[-1].modified_at), records[-1].id))

    def task_payload(self, activity: Activity, *, completed: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "Subject": marked(activity.subject, activity.marker, SUBJECT_MAX),
            "Description": with_marker(activity, DESCRIPTION_MAX),
            "WhoId": activity.contact_id,
            "ActivityDate": (activity.due_at or activity.occurred_at).date().isoformat(),
            "Status": "Completed" if completed else "Not Started",
            "Priority": "Normal",
        }
        if activity.deal_id:
            payload["WhatId"] = activity.deal_id
        return payload

    def _create_task(
        self, account: Account, operation: str, payload: dict[str, Any], sobject: str = "Task"
    ) -> str:
        created = (
            self._rest(account, operation, "POST", f"sobjects/{sobject}", json=payload, write=True) or {}
        )
        if not created.get("id"):
            raise Permanent(self.name, "invalid_create_response", "the create response has no id")
        return str(created["id"])

    def event_payload(self, activity: Activity) -> dict[str, Any]:
        """A meeting is an Event on the Contact (and its open Opportunity). Its Description is
        Conduit's curated text (never the calendar event's description); the marker ends both the
        Description and the Subject (the one SOQL can filter on)."""
        ends_at = activity.ends_at or activity.occurred_at
        ends_at = min(max(ends_at, activity.occurred_at), activity.occurred_at + EVENT_MAX_DURATION)
        payload: dict[str, Any] = {
            "Subject": marked(activity.subject, activity.marker, SUBJECT_MAX),
            "Description": with_marker(activity, DESCRIPTION_MAX),
            "WhoId": activity.contact_id,
            "StartDateTime": soql_datetime(activity.occurred_at),
            "EndDateTime": soql_datetime(ends_at),
        }
        if activity.deal_id:
            payload["WhatId"] = activity.deal_id
        return payload

    def write_payload(self, operation: str, activity: Activity) -> dict[str, Any]:
        if check_operation(operation) == "create_meeting":
            return self.event_payload(activity)
        # Salesforce has no note in Conduit's scope: a note is a completed Task (logged activity).
        return self.task_payload(activity, completed=operation == "create_note")

    def create_note(self, account: Account, activity: Activity) -> str:
        payload = self.write_payload("create_note", activity)
        return self._create_task(account, SENT_AS["create_note"], payload)

    def create_task(self, account: Account, activity: Activity) -> str:
        return self._create_task(account, SENT_AS["create_task"], self.write_payload("create_task", activity))

    def create_meeting(self, account: Account, activity: Activity) -> str:
        payload = self.write_payload("create_meeting", activity)
        return self._create_task(account, SENT_AS["create_meeting"], payload, sobject="Event")

    def find_marked(self, account: Account, operation: str, activity: Activity) -> str | None:
        # Notes and tasks are both Tasks; the marker alone tells them apart. A meeting is an
        # Event. The marker is validated (letters and digits only), so it holds no LIKE wildcard.
        template = MARKED_EVENT_SOQL if operation == "create_meeting" else MARKED_TASK_SOQL
        soql = template.format(
            contact=soql_quote(activity.contact_id), pattern=soql_quote(f"%{activity.marker}%")
        )
        return self._query_first(account, "find_write", soql, "Id")

    # --- usage and error mapping ---
    def observe_response(self, account_key: str, resp: requests.Response) -> None:
        if usage := api_usage(resp.headers):
            get_limiter().record_daily_usage(self.name, account_key, *usage)

    def rate_limit_quota(self, headers: Mapping[str, str]) -> tuple[int | None, int | None]:
        if not (usage := api_usage(headers)):
            return None, None
        used, limit = usage
        return limit, max(limit - used, 0)

    def before_call(self, account_key: str, *, write: bool) -> None:
        if (
            write
            and get_limiter().daily_ratio(self.name, account_key) >= settings.SALESFORCE_DAILY_PAUSE_RATIO
        ):
            raise RateLimited(
                self.name,
                "daily_budget_paused",
                f"writes paused at {settings.SALESFORCE_DAILY_PAUSE_RATIO:.0%} of the daily API allocation",
                retry_after=float(settings.SALESFORCE_DAILY_PAUSE_SECONDS),
            )

    def default_retry_after(self, resp: requests.Response) -> float:
        return float(settings.SALESFORCE_DAILY_PAUSE_SECONDS)

    def classify_client_error(self, resp: requests.Response, operation: str) -> ProviderError:
        status = resp.status_code
        body = json_or_none(resp)
        if isinstance(body, dict):  # OAuth endpoints answer {"error", "error_description"}
            error = body.get("error")
            message = short(body.get("error_description") or error or f"HTTP {status}")
            if error == "invalid_grant" and operation == "refresh":
                return AuthRevoked(self.name, None, message, http_status=status)
            if error == "invalid_grant":
                return Permanent(self.name, "invalid_authorization_code", message, http_status=status)
            if error == "invalid_client":
                return Permanent(self.name, "invalid_client", message, http_status=status)
            return Permanent(self.name, str(error or f"http_{status}").lower(), message, http_status=status)
        first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else {}
        error_code = str(first.get("errorCode") or f"http_{status}")
        message = short(first.get("message") or f"HTTP {status}")
        if status == 401:
            return TokenExpired(self.name, "invalid_session_id", message, http_status=status)
        if status == 403 and error_code == "REQUEST_LIMIT_EXCEEDED":
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if retry_after is None:
                retry_after = self.default_retry_after(resp)
            return RateLimited(
                self.name, "request_limit_exceeded", message, retry_after=retry_after, http_status=status
            )
        if status == 403 and error_code == "INVALID_SESSION_ID":
            # [verify] a token without the `api` scope is refused on REST with this 403.
            return MissingScope(self.name, ["api"], message, http_status=status)
        fields = first.get("fields") or []
        return Permanent(
            self.name,
            error_code.lower(),
            message,
            details={"errorCode": error_code, "fields": fields},
            http_status=status,
        )
