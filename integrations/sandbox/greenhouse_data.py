"""Greenhouse's data in the sandbox: one organization with its users, candidates and notes; the
Harvest v3 credentials (client id, secret, scopes, service account) with the access tokens each
one was issued; and the Harvest v3 resources Conduit uses (candidates by email, notes: list and
create), paged by cursor with a Link rel="next" header. Each resource returns
(status, JSON body, headers). greenhouse.py serves them."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from integrations.sandbox.common import Reply, SandboxState, iso, json_reply
from integrations.sandbox.faults import RollingWindow
from integrations.sandbox.records import parse_change

ORG_ID, ORG_NAME = 4012345, "Sandbox Talent Co"
SEEDED_CLIENT_ID = "5f1c0ffee0a14d3c9b7e2a61d4c8b0f3"
SEEDED_CLIENT_SECRET = "gh-sandbox-secret-7d2e41b09c5a46f8a3e0"  # noqa: S105 - sandbox only, on its page
ALL_SCOPES = ["harvest:candidates:list", "harvest:notes:list", "harvest:notes:create", "harvest:users:list"]
SEEDED_AT = "2026-01-05T09:00:00.000Z"
SERVICE_ACCOUNTS_FROM = 4089001  # each credential gets its own service-account user
USERS = [  # id, first, last, email, site admin, disabled
    (4080001, "Riley", "Admin", "riley.admin@sandbox-talent.example", True, False),
    (4080002, "Sam", "Recruiter", "sam.recruiter@sandbox-talent.example", False, False),
    (4080003, "Dana", "Former", "dana.former@sandbox-talent.example", False, True),
]
CANDIDATES = [  # id, first, last, email addresses
    (5120001, "Maya", "Lopez", ["maya.lopez@acme-logistics.example"]),
    (5120002, "Jonas", "Weber", ["jonas@brightfield-energy.example", "jonas.weber@mail.example"]),
    (5120003, "Lee", "Park", ["lee@northwind.example"]),
]
VISIBILITIES = ("admin_only", "private", "public")
NOTE_TYPES = ("NOTE", "ACTIVITY", "EMAIL")
NOTE_FIELDS = {"candidate_id", "application_id", "user_id", "body", "visibility", "note_type"}
BODY_MAX = 10000  # the sandbox's own limit on a note body (Greenhouse documents none [verify])
PER_PAGE_DEFAULT, PER_PAGE_MAX = 100, 500
ORG_CLAIMS = "https://auth.greenhouse.io/claims"

Result = tuple[int, Any, dict[str, str]]


def errors_body(message: str, field_name: str | None = None) -> dict[str, Any]:
    """Harvest v3's validation answer [verify]: a list of errors, each naming its field."""
    item: dict[str, Any] = {"message": message}
    if field_name:
        item["field"] = field_name
    return {"errors": [item]}


def oauth_error(status: int, error: str, description: str) -> Reply:
    return json_reply(status, {"error": error, "error_description": description})


def basic_pair(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


@dataclass
class Credential:
    client_id: str
    secret: str = field(repr=False)
    scopes: list[str]
    service_user: int
    grant: str = field(default="", repr=False)  # the TokenStore grant its access tokens hang on


class GreenhouseState(SandboxState):
    DEFAULT_CONFIG = {"access_token_ttl": 3600, "ten_second_limit": 50, "introspection": 1}

    def seed(self) -> None:
        self.users: dict[int, dict[str, Any]] = {
            uid: {
                "id": uid,
                "first_name": first,
                "last_name": last,
                "primary_email_address": email,
                "site_admin": admin,
                "disabled": disabled,
            }
            for uid, first, last, email, admin, disabled in USERS
        }
        self.candidates: dict[int, dict[str, Any]] = {
            cid: candidate_record(cid, first, last, emails, SEEDED_AT)
            for cid, first, last, emails in CANDIDATES
        }
        self.notes: dict[int, dict[str, Any]] = {}
        self.credentials: dict[str, Credential] = {}
        self.subjects: dict[str, int] = {}  # access token -> the user it acts as
        self.window = RollingWindow(10)
        self.next_note = 7300001
        self.next_candidate = 5120101
        self.add_credential(list(ALL_SCOPES), SEEDED_CLIENT_ID, SEEDED_CLIENT_SECRET)

    def as_json(self) -> dict[str, Any]:
        return {
            "organization": {"id": ORG_ID, "name": ORG_NAME},
            "users": list(self.users.values()),
            "candidates": list(self.candidates.values()),
            "notes": list(reversed(self.notes.values())),
            "credentials": [
                {"client_id": c.client_id, "scopes": c.scopes, "service_account_user_id": c.service_user}
                for c in self.credentials.values()
            ],
            **super().as_json(),
        }

    # --- credentials and tokens ---

    def add_credential(self, scopes: list[str], client_id: str = "", secret: str = "") -> Credential:
        service_user = SERVICE_ACCOUNTS_FROM + len(self.credentials)
        self.users[service_user] = {
            "id": service_user,
            "first_name": "API",
            "last_name": f"Service Account {len(self.credentials) + 1}",
            "primary_email_address": None,
            "site_admin": True,
            "disabled": False,
        }
        credential = Credential(
            client_id or secrets.token_hex(16),
            secret or "gh-" + secrets.token_urlsafe(24),
            scopes,
            service_user,
            self.tokens.issue_grant(scopes, "credential."),
        )
        self.credentials[credential.client_id] = credential
        return credential

    def rotate(self, credential: Credential) -> int:
        """A new secret; the old one and every token issued with it are refused from now on
        (Greenhouse keeps an old secret up to a week; the sandbox revokes it at once, so
        the drill shows the refusal)."""
        before = len(self.tokens.access)
        self.tokens.revoke_grant(credential.grant)
        credential.secret = "gh-" + secrets.token_urlsafe(24)
        credential.grant = self.tokens.issue_grant(credential.scopes, "credential.")
        return before - len(self.tokens.access)

    def client(self, authorization: str) -> Credential | None:
        pair = basic_pair(authorization)
        found = self.credentials.get(pair[0]) if pair else None
        return found if found and pair and same(pair[1], found.secret) else None

    def issue_token(self, credential: Credential, sub: int, scopes: list[str], ttl: int) -> dict[str, Any]:
        now = self.clock()
        token = self.tokens.issue_access(scopes, ttl, now, "ghv3.", credential.grant)
        self.subjects[token] = sub
        return {"access_token": token, "token_type": "Bearer", "expires_at": iso(now + ttl)}

    def credential_of(self, grant: str | None) -> Credential | None:
        return next((c for c in self.credentials.values() if c.grant == grant), None)

    def introspection(self, token: str) -> dict[str, Any]:
        found = self.tokens.access.get(token)
        credential = self.credential_of(found.grant) if found else None
        if found is None or credential is None or found.expires_at <= self.clock():
            return {"active": False}
        sub = self.subjects[token]
        return {
            "active": True,
            "client_id": credential.client_id,
            "sub": str(sub),
            "scope": " ".join(found.scopes),
            "exp": int(found.expires_at),
            ORG_CLAIMS: {
                "organization": {"id": ORG_ID, "name": ORG_NAME},
                "user_role": "site_admin" if self.users[sub]["site_admin"] else "basic",
            },
        }

    def active_user(self, sub: str) -> int | None:
        user = self.users.get(int(sub)) if sub.isdigit() else None
        return None if user is None or user["disabled"] else int(user["id"])

    # --- pages ---

    def page(self, path: str, query: dict[str, str], rows: list[dict[str, Any]]) -> Result:
        """One page of `rows` (already filtered by the first request's query) and its Link."""
        per_page = query.get("per_page", str(PER_PAGE_DEFAULT))
        if not per_page.isdigit() or not 1 <= int(per_page) <= PER_PAGE_MAX:
            return 422, errors_body(f"per_page must be between 1 and {PER_PAGE_MAX}", "per_page"), {}
        offset_text = query.get("_offset", "0")
        if not offset_text.isdigit():
            return 422, errors_body("invalid cursor", "cursor"), {}
        offset, size = int(offset_text), int(per_page)
        headers: dict[str, str] = {}
        if offset + size < len(rows):
            cursor = encode_cursor({**query, "_offset": str(offset + size)})
            headers["Link"] = f'<{self.base_url}/v3/{path}?cursor={cursor}>; rel="next"'
        return 200, rows[offset : offset + size], headers


def encode_cursor(query: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(query, sort_keys=True).encode()).decode().rstrip("=")


def decode_cursor(query: dict[str, str]) -> dict[str, str] | Result:
    """The first request's query (and offset) a cursor stands for; the cursor must come alone."""
    if "cursor" not in query:
        return query
    if len(query) > 1:
        return 422, errors_body("cursor cannot be combined with other parameters", "cursor"), {}
    cursor = query["cursor"]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        decoded = None
    if not isinstance(decoded, dict):
        return 422, errors_body("invalid cursor", "cursor"), {}
    return {str(k): str(v) for k, v in decoded.items()}


def candidate_record(cid: int, first: str, last: str, emails: list[str], stamp: str) -> dict[str, Any]:
    return {
        "id": cid,
        "first_name": first,
        "last_name": last,
        "company": None,
        "title": None,
        "is_private": False,
        "created_at": stamp,
        "updated_at": stamp,
        "last_activity_at": stamp,
        "email_addresses": [
            {"value": email, "type": "personal" if i else "work"} for i, email in enumerate(emails)
        ],
    }


def ids_filter(value: str) -> set[int] | None:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    return {int(p) for p in parts} if parts and all(p.isdigit() for p in parts) else None


def list_candidates(state: GreenhouseState, query: dict[str, str]) -> Result:
    """GET /v3/candidates: `email` matches any of a candidate's addresses, ignoring case
    [verify]; `ids` is a comma-separated list."""
    rows = sorted(state.candidates.values(), key=lambda c: int(c["id"]))
    if email := query.get("email", "").strip().lower():
        rows = [c for c in rows if email in {e["value"].lower() for e in c["email_addresses"]}]
    if "ids" in query:
        wanted = ids_filter(query["ids"])
        if wanted is None:
            return 422, errors_body("ids must be a comma-separated list of ids", "ids"), {}
        rows = [c for c in rows if c["id"] in wanted]
    return state.page("candidates", query, rows)


def list_notes(state: GreenhouseState, query: dict[str, str]) -> Result:
    """GET /v3/notes (the v1 activity feed's notes): `candidate_ids` narrows to candidates."""
    rows = sorted(state.notes.values(), key=lambda n: int(n["id"]))
    if "candidate_ids" in query:
        wanted = ids_filter(query["candidate_ids"])
        if wanted is None:
            return (
                422,
                errors_body("candidate_ids must be a comma-separated list of ids", "candidate_ids"),
                {},
            )
        rows = [n for n in rows if n["candidate_id"] in wanted]
    return state.page("notes", query, rows)


def note_error(state: GreenhouseState, body: Any) -> Result | None:
    if not isinstance(body, dict):
        return 422, errors_body("the body must be a JSON object"), {}
    if unknown := sorted(set(body) - NOTE_FIELDS):
        return 422, errors_body(f"unknown field {unknown[0]}", unknown[0]), {}
    candidate = body.get("candidate_id")
    if isinstance(candidate, bool) or not isinstance(candidate, int) or candidate not in state.candidates:
        return 422, errors_body("candidate_id must name a candidate", "candidate_id"), {}
    text = body.get("body")
    if not isinstance(text, str) or not text.strip():
        return 422, errors_body("body can't be blank", "body"), {}
    if len(text) > BODY_MAX:
        return 422, errors_body(f"body is too long (maximum is {BODY_MAX} characters)", "body"), {}
    if body.get("visibility", "admin_only") not in VISIBILITIES:
        return 422, errors_body(f"visibility must be one of {', '.join(VISIBILITIES)}", "visibility"), {}
    if body.get("note_type", "NOTE") not in NOTE_TYPES:
        return 422, errors_body(f"note_type must be one of {', '.join(NOTE_TYPES)}", "note_type"), {}
    user = body.get("user_id")
    if user is not None and (isinstance(user, bool) or not isinstance(user, int) or user not in state.users):
        return 422, errors_body("user_id must name a user", "user_id"), {}
    return None


def create_note(state: GreenhouseState, body: Any, sub: int) -> Result:
    """POST /v3/notes: written by `user_id`, else by the token's user. [verify] the field names."""
    if error := note_error(state, body):
        return error
    note_id, stamp = state.next_note, iso(state.clock())
    state.next_note += 1
    state.notes[note_id] = note = {
        "id": note_id,
        "candidate_id": body["candidate_id"],
        "application_id": body.get("application_id"),
        "user_id": body.get("user_id") or sub,
        "body": body["body"],
        "visibility": body.get("visibility", "admin_only"),
        "type": body.get("note_type", "NOTE"),
        "created_at": stamp,
        "updated_at": stamp,
    }
    state.candidates[body["candidate_id"]]["last_activity_at"] = stamp
    return 201, note, {}


def upsert_candidate(state: GreenhouseState, data: Any) -> Reply:
    """POST /_sandbox/records {"object": "contact", "id"?, "fields": {"first_name", "last_name",
    "email"}}: a candidate added or changed in Greenhouse; an unknown or missing id creates one."""
    try:
        change = parse_change(data, "fields")
    except ValueError as exc:
        return json_reply(400, {"error": str(exc)})
    if change.object != "contact":
        return json_reply(400, {"error": "Greenhouse has candidates only: object must be 'contact'"})
    stamp = iso(state.clock())
    cid = int(change.id) if change.id.isdigit() else 0
    if cid not in state.candidates:
        cid = cid or state.next_candidate
        state.next_candidate += 0 if change.id else 1
        state.candidates[cid] = candidate_record(cid, "", "", [], stamp)
    record, values = state.candidates[cid], change.values
    for name in ("first_name", "last_name"):
        if name in values:
            record[name] = str(values[name] or "")
    if values.get("email"):
        record["email_addresses"] = [{"value": str(values["email"]), "type": "work"}]
    record["updated_at"] = stamp
    return json_reply(200, record)
