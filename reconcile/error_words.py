"""Why a write failed, in plain words for the customer's writes page.

A write stores `last_error_code` (a provider error's code, integrations/providers/errors.py and
the provider modules, or one of reconcile's own: max_attempts, lease_expired, internal_error,
no_matching_contact, skipped_at_go_live) and a short `last_error_message`. Each code belongs to
one kind, and each kind has one sentence:

- reconnect: the grant, the token or the API key is refused, or a permission is missing;
- limit: a rate limit or a daily budget; the write waits and goes out by itself;
- unavailable: 5xx, timeouts, network and DNS errors, a locked record;
- refused: the CRM refused the data (validation, unknown record, other 4xx): its message follows;
- setup: Conduit's configuration or an answer Conduit cannot read: support has to look;
- interrupted: a send whose worker stopped, or an error on Conduit's side;
- no_contact / not_sent: the two reasons a write is skipped without an error;
- unknown: a code not listed here: the stored message, scrubbed.

Provider codes not known in advance (Salesforce errorCode, HubSpot category, Zoho code, Odoo
exception name, all lower-cased) are read by their shape: `http_5xx` is unavailable, `http_4xx`
and validation-looking names are refused, and so is any other code on a permanent failure (only
a Permanent error or max_attempts makes a write permanent)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from conduit.secrets_scan import redact_text

RECONNECT = "reconnect"
LIMIT = "limit"
UNAVAILABLE = "unavailable"
REFUSED = "refused"
SETUP = "setup"
INTERRUPTED = "interrupted"
NO_CONTACT = "no_contact"
NOT_SENT = "not_sent"
UNKNOWN = "unknown"

KINDS: dict[str, set[str]] = {
    RECONNECT: {
        "refresh_token_revoked",
        "token_expired",
        "invalid_authentication",
        "invalid_session_id",
        "invalid_token",
        "authentication_failure",
        "access_token_rejected",
        "api_key_rejected",
        "invalid_credentials",
        "not_connected",
        "missing_scope",
        "credentials_invalid",  # an ATS refused its typed credentials (rotated, revoked, deleted)
    },
    LIMIT: {
        "rate_limited",
        "request_limit_exceeded",
        "daily_budget_paused",
        "local_rate_limit",
        "credits_exhausted",
        "concurrency_limit",
        "token_requests_throttled",
    },
    UNAVAILABLE: {
        "transient",
        "timeout",
        "network_error",
        "dns_error",
        "locked",
        "migration_in_progress",
        "server_error",
    },
    REFUSED: {
        "permanent",
        "provider_error",
        "validation_error",
        "invalid_data",
        "mandatory_not_found",
        "required_field_missing",
        "field_custom_validation_exception",
        "field_integrity_exception",
        "string_too_long",
        "malformed_id",
        "invalid_id",
        "invalid_field",
        "invalid_type",
        "duplicate_data",
        "duplicate_value",
        "user_error",
        "missing_error",
        "bad_request",
        "not_found",
        "object_not_found",
        "entity_is_deleted",
        "invalid_cross_reference_key",
        "no_permission",
        "insufficient_access_on_cross_reference_entity",
        "invalid_url_pattern",
        "limit_exceeded",
        "lookup_limit",  # a candidate with more notes than Conduit reads to find its own again
    },
    SETUP: {
        "invalid_client",
        "invalid_authorization_code",
        "not_configured",
        "unexpected_redirect",
        "invalid_instance_url",
        "invalid_accounts_server",
        "invalid_api_domain",
        "invalid_location",
        "invalid_environment",
        "invalid_identity_url",
        "unsafe_url",
        "model_not_found",
        "unknown_database",
        "not_odoo",
        "api_key_only",
        "revoke_not_supported",
        "invalid_create_response",
        "invalid_response",
        "invalid_search_response",
        "invalid_query_response",
        "invalid_org_response",
        "invalid_token_response",
        "invalid_token_info",
        # the ATS (Greenhouse, Lever, Workday)
        "account_unidentified",
        "credentials_only",
        "credentials_unreadable",
        "token_inactive",
        "unknown_tenant",
        "operation_unsupported",
    },
    INTERRUPTED: {"lease_expired", "lease_expired_outcome_unknown", "internal_error"},
    NO_CONTACT: {"no_matching_contact"},
    NOT_SENT: {"skipped_at_go_live"},
}
KIND_OF = {code: kind for kind, codes in KINDS.items() for code in codes}
MAX_ATTEMPTS = "max_attempts"
HTTP_RE = re.compile(r"http_(\d{3})")
MAX_ATTEMPTS_RE = re.compile(r"(\d+) failed attempts; last: ([a-z0-9_]+)")
# shapes of provider codes not listed above that still mean "the CRM refused the data"
REFUSED_RE = re.compile(
    r"valid|required|mandatory|malformed|too_long|duplicate|not_found|deleted|missing_field"
)
MESSAGE_MAX = 240

UNAVAILABLE_DETAIL = {
    "timeout": "it did not answer in time",
    "network_error": "it could not be reached",
    "dns_error": "its address could not be found",
    "locked": "the record was locked by another change",
    "migration_in_progress": "the account was being moved",
    "server_error": "a server error",
}
LIMIT_WORDS = {
    "daily_budget_paused": (
        "Conduit paused writes to stay within {crm}'s daily API allowance; this one is sent "
        "automatically once the allowance renews."
    ),
    "local_rate_limit": (
        "Conduit held this write back to stay within {crm}'s rate limits; it is sent automatically."
    ),
    "credits_exhausted": (
        "{crm}'s API credits for the day are used up; the write is sent automatically when they renew."
    ),
}


@dataclass(frozen=True)
class Reason:
    """Why a write is where it is: its kind (for the page's styling and links) and one sentence."""

    code: str
    kind: str
    words: str

    @property
    def needs_reconnect(self) -> bool:
        return self.kind == RECONNECT


def sentence(text: str) -> str:
    return text if text.endswith(("…", ".", "!", "?")) else text + "."


def scrub(message: str) -> str:
    """A stored provider message made safe to show: secrets redacted, one line, at most
    MESSAGE_MAX characters (cut with an ellipsis)."""
    text = " ".join(redact_text(message or "").split()).rstrip(" .;:")
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1].rstrip() + "…"


def kind_of(code: str, *, permanent: bool = False) -> str:
    """The kind of an error code; UNKNOWN when neither listed nor recognisable by its shape."""
    code = (code or "").lower()
    if code in KIND_OF:
        return KIND_OF[code]
    if code == MAX_ATTEMPTS:
        return UNAVAILABLE
    if match := HTTP_RE.fullmatch(code):
        return UNAVAILABLE if int(match[1]) >= 500 else REFUSED
    if REFUSED_RE.search(code) or (permanent and code):
        return REFUSED
    return UNKNOWN


def _unavailable_detail(code: str, message: str) -> str:
    if match := HTTP_RE.fullmatch(code):
        return f"server error {match[1]}"
    if code == "internal_error":
        return "an error on Conduit's side"
    return UNAVAILABLE_DETAIL.get(code, scrub(message) or "a temporary error")


def _max_attempts(message: str, crm: str) -> str:
    match = MAX_ATTEMPTS_RE.match(message or "")
    if match is None:
        return (
            f"{crm} was unavailable on every attempt; Conduit stopped trying. Retry once {crm} works again."
        )
    attempts, last = match[1], match[2]
    if last == "internal_error":
        return (
            f"Sending failed on all {attempts} attempts because of an error on Conduit's side; Conduit "
            "stopped trying. Retry it, and contact support if it fails again."
        )
    detail = _unavailable_detail(last, "")
    return (
        f"{crm} was unavailable on all {attempts} attempts (last: {detail}); Conduit stopped trying. "
        f"Retry once {crm} works again."
    )


def reason_for(
    code: str, message: str = "", *, crm: str = "The CRM", permanent: bool = False, oauth: bool = True
) -> Reason:
    """One plain sentence saying why a write failed or was skipped, and what happens next.
    `crm` is the CRM's name as the customer knows it ("HubSpot"); `oauth` False for a CRM connected
    with an API key (Odoo), whose fix is new credentials, not a reconnect."""
    code = (code or "").lower()
    kind = kind_of(code, permanent=permanent)
    said = scrub(message)
    if code == MAX_ATTEMPTS:
        words = _max_attempts(message, crm)
    elif kind == RECONNECT and (not oauth or code in ("api_key_rejected", "invalid_credentials")):
        words = (
            f"{crm} refused the API key: update the credentials on the Integrations page; "
            "the write is then sent."
        )
    elif kind == RECONNECT and code == "missing_scope":
        words = (
            f"Conduit lacks a permission in {crm}"
            + (f" ({said})" if said else "")
            + f": reconnect {crm} and grant what it asks for; the write is then sent."
        )
    elif kind == RECONNECT:
        words = f"{crm} no longer accepts Conduit's access: reconnect {crm}; the write is then sent."
    elif kind == LIMIT:
        words = LIMIT_WORDS.get(
            code, "{crm} asked Conduit to slow down (a rate limit); the write is sent automatically."
        )
        words = words.format(crm=crm)
    elif kind == UNAVAILABLE:
        detail = _unavailable_detail(code, message)
        then = "Conduit stopped trying." if permanent else "Conduit tries again automatically."
        words = f"{crm} was unavailable ({detail}); {then}"
    elif kind == REFUSED:
        words = sentence(f"{crm} refused the data: {said}") if said else f"{crm} refused the data ({code})."
    elif kind == SETUP:
        words = (
            f"Conduit could not write to {crm} because of a setup problem"
            + (f" ({said})" if said else f" ({code})")
            + "; contact support."
        )
    elif code == "internal_error":
        words = "Sending failed because of an error on Conduit's side; Conduit tries again automatically."
    elif kind == INTERRUPTED:
        words = (
            f"Sending was interrupted before {crm} answered; Conduit checks whether it arrived before "
            "sending it again."
        )
    elif kind == NO_CONTACT:
        words = (
            f"No {crm} contact has this email address, and Conduit creates no contacts. Add the contact "
            f"in {crm}, then retry."
        )
    elif kind == NOT_SENT:
        words = f"Planned during dry run and not sent when {crm} went live."
    elif said:
        words = sentence(said)
    else:
        words = f"{crm} reported an error ({code})." if code else "No reason was recorded."
    return Reason(code=code, kind=kind, words=words)
