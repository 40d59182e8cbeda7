"""Lever's data in the sandbox: one account's users, its candidates' opportunities and their
notes, its API keys (each with the endpoint permissions it was given), and each key's token
bucket. integrations/sandbox/lever.py serves them; a `LeverError` is the error the real API
answers with ({"code": ..., "message": ...} [verify] the code strings).

Lists answer Lever's shape, {"data": [...], "hasNext": bool, "next": "<offset token>"}, with
opaque offset tokens; timestamps are milliseconds since the epoch, as Lever sends them."""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from typing import Any

from integrations.sandbox.common import Reply, SandboxState, json_reply, new_uuid
from integrations.sandbox.records import parse_change

ACCOUNT = "Sandbox Talent"
SEEDED_API_KEY = "lvr-sandbox-7c1e4b9a2d8f4e6a9b3c5d7e1f2a4b6c8d0e"
# The endpoint permissions a key may hold, and how Lever's key settings name them [verify].
PERMISSIONS = {
    "users:read": "Find all users",
    "opportunities:read": "Find all opportunities",
    "notes:read": "Find all opportunity notes",
    "notes:write": "Create an opportunity note",
}
DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ANCHOR_USER = "5d0c1a7e-8e21-4b6f-9c3d-000000000001"  # the oldest user: deactivated, still listed
KEY_OWNER = "5d0c1a7e-8e21-4b6f-9c3d-000000000002"  # whose name a note created with a key carries
USERS = [  # id, name, email, access role, created (ms), deactivated (ms or None)
    (ANCHOR_USER, "Ada Founder", "ada@sandbox-talent.example", "super admin", 1_556_755_200_000, T0),
    (KEY_OWNER, "Sam Recruiter", "sam@sandbox-talent.example", "super admin", 1_583_020_800_000, None),
    (
        "5d0c1a7e-8e21-4b6f-9c3d-000000000003",
        "Riley Coordinator",
        "riley@sandbox-talent.example",
        "team member",
        1_692_057_600_000,
        None,
    ),
]
MAYA, JONAS, LEE = (
    "maya.lopez@acme-logistics.example",
    "jonas@brightfield-energy.example",
    "lee@northwind.example",
)
MAYA_OPEN = "0a1b2c3d-0000-4000-8000-000000000101"
MAYA_OLDER = "0a1b2c3d-0000-4000-8000-000000000102"
MAYA_ARCHIVED = "0a1b2c3d-0000-4000-8000-000000000103"
JONAS_HIRED = "0a1b2c3d-0000-4000-8000-000000000104"
LEE_OPEN = "0a1b2c3d-0000-4000-8000-000000000105"
LEE_CONFIDENTIAL = "0a1b2c3d-0000-4000-8000-000000000106"
OPPORTUNITIES = [  # id, name, email, stage, updated (days after T0), archive reason, confidential
    (MAYA_OPEN, "Maya Lopez", MAYA, "phone-screen", 63, None, False),
    (MAYA_OLDER, "Maya Lopez", MAYA, "applicant-new", 31, None, False),
    (MAYA_ARCHIVED, "Maya Lopez", MAYA, "offer", 68, "rejected", False),
    (JONAS_HIRED, "Jonas Weber", JONAS, "offer", 50, "hired", False),
    (LEE_OPEN, "Lee Park", LEE, "applicant-new", 14, None, False),
    (LEE_CONFIDENTIAL, "Lee Park", LEE, "on-site", 78, None, True),
]
NOTE_FIELDS = {"value", "secret", "score", "notifyFollowers", "createdAt"}


class LeverError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def reply(self) -> Reply:
        return json_reply(self.status, {"code": self.code, "message": self.message})


def bad_request(message: str) -> LeverError:
    return LeverError(400, "BadRequestError", message)


@dataclass
class ApiKey:
    permissions: frozenset[str]
    created_ms: int
    active: bool = True


@dataclass
class TokenBucket:
    """Lever's limit per key: `rate` requests a second, bursts up to `capacity` [verify]."""

    tokens: float
    updated: float

    def take(self, now: float, rate: int, capacity: int) -> bool:
        self.tokens = min(float(capacity), self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def page_token(kind: str, index: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{index}".encode()).decode("ascii").rstrip("=")


def page_start(kind: str, token: str | None) -> int:
    """Where the page named by an offset token starts; a token not handed out is refused."""
    if not token:
        return 0
    try:
        name, _, index = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        name, index = "", ""
    if name != kind or not index.isdigit():
        raise bad_request("Invalid offset token")
    return int(index)


def page_limit(raw: str | None, default: int = 100) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise bad_request("limit must be between 1 and 100")
    return int(raw)


def listing(kind: str, items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    start, limit = page_start(kind, query.get("offset")), page_limit(query.get("limit"))
    chunk = items[start : start + limit]
    answer: dict[str, Any] = {"data": chunk, "hasNext": start + limit < len(items)}
    if answer["hasNext"]:
        answer["next"] = page_token(kind, start + limit)
    return answer


class LeverState(SandboxState):
    DEFAULT_CONFIG = {"requests_per_second": 10, "burst": 20}

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def seed(self) -> None:
        self.api_keys: dict[str, ApiKey] = {SEEDED_API_KEY: ApiKey(frozenset(PERMISSIONS), T0)}
        self.primary_key = SEEDED_API_KEY
        self.buckets: dict[str, TokenBucket] = {}
        self.users: list[dict[str, Any]] = [
            {
                "id": uid,
                "name": name,
                "username": email.split("@")[0],
                "email": email,
                "accessRole": role,
                "createdAt": created,
                "deactivatedAt": deactivated,
            }
            for uid, name, email, role, created, deactivated in USERS
        ]
        self.opportunities: dict[str, dict[str, Any]] = {
            row[0]: self.opportunity(*row) for row in OPPORTUNITIES
        }
        self.notes: dict[str, list[dict[str, Any]]] = {oid: [] for oid in self.opportunities}

    @staticmethod
    def opportunity(
        oid: str, name: str, email: str, stage: str, updated_day: int, reason: str | None, confidential: bool
    ) -> dict[str, Any]:
        updated = T0 + updated_day * DAY_MS
        return {
            "id": oid,
            "name": name,
            "contact": "c0" + oid[2:],
            "emails": [email],
            "stage": stage,
            "confidentiality": "confidential" if confidential else "non-confidential",
            "archived": {"archivedAt": updated, "reason": reason} if reason else None,
            "createdAt": updated - 7 * DAY_MS,
            "updatedAt": updated,
            "urls": {"show": f"https://hire.sandbox.lever.co/candidates/{oid}"},
        }

    def as_json(self) -> dict[str, Any]:
        return {
            **super().as_json(),
            "users": list(self.users),
            "opportunities": list(self.opportunities.values()),
            "notes": [{**n, "opportunity": oid} for oid, notes in self.notes.items() for n in notes],
            "api_keys": [
                {"last4": key[-4:], "active": k.active, "permissions": sorted(k.permissions)}
                for key, k in self.api_keys.items()
            ],
        }

    # --- keys ---
    def mint_key(self, permissions: frozenset[str] | None = None) -> str:
        key = "lvr-" + secrets.token_hex(20)
        self.api_keys[key] = ApiKey(
            frozenset(PERMISSIONS) if permissions is None else permissions, self.now_ms()
        )
        return key

    def rotate(self, old: str | None) -> tuple[str, str]:
        """A new key with the old one's permissions; the old one is refused from now on."""
        old = old or self.primary_key
        record = self.api_keys.get(old)
        if record is None or not record.active:
            raise bad_request("no active API key to rotate")
        record.active = False
        new = self.mint_key(record.permissions)
        self.primary_key = new
        return new, old

    def authenticate(self, key: str | None, permission: str) -> None:
        record = self.api_keys.get(key or "")
        if record is None or not record.active:
            raise LeverError(401, "UnauthorizedError", "Invalid API key")
        if permission not in record.permissions:
            raise LeverError(
                403, "ForbiddenError", f"This API key lacks the permission '{PERMISSIONS[permission]}'"
            )

    def admit(self, key: str) -> bool:
        """Whether the key's token bucket has a request left now."""
        now = self.clock()
        rate, burst = self.config["requests_per_second"], self.config["burst"]
        bucket = self.buckets.setdefault(key, TokenBucket(float(burst), now))
        return bucket.take(now, rate, burst)

    # --- the API ---
    def list_users(self, query: dict[str, str]) -> dict[str, Any]:
        users = sorted(self.users, key=lambda u: u["createdAt"], reverse=True)  # newest first [verify]
        if query.get("includeDeactivated") != "true":
            users = [u for u in users if u["deactivatedAt"] is None]
        return listing("users", users, query)

    def list_opportunities(self, query: dict[str, str]) -> dict[str, Any]:
        rows = sorted(self.opportunities.values(), key=lambda o: (o["createdAt"], o["id"]), reverse=True)
        if (email := query.get("email", "").strip().lower()) != "":
            rows = [o for o in rows if email in [e.lower() for e in o["emails"]]]
        if query.get("confidentiality") != "all":
            rows = [o for o in rows if o["confidentiality"] == "non-confidential"]
        if (archived := query.get("archived")) in ("true", "false"):
            rows = [o for o in rows if (o["archived"] is not None) == (archived == "true")]
        return listing("opportunities", rows, query)

    def opportunity_notes(self, oid: str) -> list[dict[str, Any]]:
        if oid not in self.notes:
            raise LeverError(404, "NotFoundError", "Opportunity not found")
        return self.notes[oid]

    def list_notes(self, oid: str, query: dict[str, str]) -> dict[str, Any]:
        return listing(f"notes-{oid}", list(self.opportunity_notes(oid)), query)

    def add_note(self, oid: str, body: Any, perform_as: str | None) -> str:
        notes = self.opportunity_notes(oid)
        check_note(body, self.now_ms())
        author = KEY_OWNER
        if perform_as is not None:
            if perform_as not in {u["id"] for u in self.users if u["deactivatedAt"] is None}:
                raise bad_request("perform_as must be the id of an active user")
            author = perform_as
        note_id, created = new_uuid(), int(body.get("createdAt") or self.now_ms())
        score = body.get("score")
        notes.insert(
            0,
            {
                "id": note_id,
                "text": body["value"],
                "fields": [{"type": "score", "text": "Rating", "value": score}] if score else [],
                "user": author,
                "secret": bool(body.get("secret")),
                "completedAt": created,
                "createdAt": created,
                "deletedAt": None,
            },
        )
        self.opportunities[oid]["updatedAt"] = self.now_ms()
        return note_id

    def upsert(self, data: Any) -> Reply:
        """POST /_sandbox/records: add or change a candidate's opportunity ("contact"), with
        fields name, email, archived (a reason, or null) and confidential."""
        try:
            change = parse_change(data, "fields")
            if change.object != "contact":
                raise ValueError("Lever has no deals: only 'contact' (an opportunity) can change")
            if unknown := set(change.values) - {"name", "email", "archived", "confidential"}:
                raise ValueError(f"unknown fields: {sorted(unknown)}")
        except ValueError as exc:
            return json_reply(400, {"error": str(exc)})
        oid = change.id or new_uuid()
        record = self.opportunities.get(oid)
        if record is None:
            record = self.opportunities[oid] = self.opportunity(oid, "", "", "applicant-new", 0, None, False)
            record["emails"], self.notes[oid] = [], []
        values, now = change.values, self.now_ms()
        if "name" in values:
            record["name"] = str(values["name"] or "")
        if "email" in values:
            record["emails"] = [str(values["email"])] if values["email"] else []
        if "archived" in values:
            reason = values["archived"]
            record["archived"] = {"archivedAt": now, "reason": str(reason)} if reason else None
        if "confidential" in values:
            record["confidentiality"] = "confidential" if values["confidential"] else "non-confidential"
        record["updatedAt"] = now
        return json_reply(200, record)


def check_note(body: Any, now_ms: int) -> None:
    """A note's body as Lever validates it [verify]: a text value; optional secret, score (1 to
    4), notifyFollowers and a createdAt that is not in the future."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object")
    if unknown := set(body) - NOTE_FIELDS:
        raise bad_request(f"Unrecognized fields: {', '.join(sorted(unknown))}")
    value = body.get("value")
    if not isinstance(value, str) or not value.strip():
        raise bad_request("value is required and must be a non-empty string")
    for name in ("secret", "notifyFollowers"):
        if name in body and not isinstance(body[name], bool):
            raise bad_request(f"{name} must be a boolean")
    score = body.get("score")
    if score is not None and (isinstance(score, bool) or score not in (1, 2, 3, 4)):
        raise bad_request("score must be 1, 2, 3 or 4")
    created = body.get("createdAt")
    if created is not None and (
        isinstance(created, bool) or not isinstance(created, int) or created > now_ms
    ):
        raise bad_request("createdAt must be a timestamp in milliseconds, not in the future")
