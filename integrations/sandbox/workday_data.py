"""The Workday sandbox's data: one tenant, its API client for integrations (client id and secret)
and its Integration System User's refresh token, the access tokens issued from them, and the
seeded recruiting data (job postings, candidates) the API and the overview page show.

`rotate_credentials` is what a Workday admin does on a leaked secret: a new client secret and a
new refresh token, the old ones (and every access token they issued) revoked at once."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from integrations.sandbox.common import SandboxState
from integrations.sandbox.faults import RollingWindow
from integrations.sandbox.oauth import same

TENANT = "conduit_sandbox"
CLIENT_ID = "Y29uZHVpdC1zYW5kYm94LXdvcmtkYXk"  # Workday's client ids look like this (base64 text)
# The sandbox's own seeded credentials, shown on its overview page (never a real secret).
SEEDED_CLIENT_SECRET = "sandbox-workday-client-secret-0001"  # noqa: S105
SEEDED_REFRESH_TOKEN = "sandbox-workday-refresh-token-0001"  # noqa: S105
ACCESS_PREFIX, REFRESH_PREFIX = "wd-at-", "wd-rt-"
JOB_POSTINGS = [  # id, title, location, start date
    ("7d3a2f0c1e5b4a6f9c8d7e6f5a4b3c21", "Senior Backend Engineer", "Berlin", "2026-10-01"),
    ("8e4b3a1d2f6c5b7a0d9e8f7a6b5c4d32", "Product Designer", "Remote (EU)", "2026-10-15"),
    ("9f5c4b2e3a7d6c8b1e0f9a8b7c6d5e43", "Customer Success Lead", "London", "2026-11-02"),
]
CANDIDATES = [  # id, name, email
    ("c1a2b3c4d5e6f7a8b9c0d1e2f3a4b501", "Maya Lopez", "maya.lopez@acme-logistics.example"),
    ("c1a2b3c4d5e6f7a8b9c0d1e2f3a4b502", "Jonas Weber", "jonas@brightfield-energy.example"),
    ("c1a2b3c4d5e6f7a8b9c0d1e2f3a4b503", "Lee Park", "lee@northwind.example"),
]


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(client id, secret) of an HTTP Basic Authorization header, or None."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:
        return None
    client_id, colon, secret = decoded.partition(":")
    return (client_id, secret) if colon else None


class WorkdayState(SandboxState):
    # rotate_refresh_tokens: 1 answers each refresh with a new refresh token (the old one dies)
    DEFAULT_CONFIG = {"requests_per_second": 10, "access_token_ttl": 3600, "rotate_refresh_tokens": 0}

    def seed(self) -> None:
        self.client_secret = SEEDED_CLIENT_SECRET
        self.refresh_token = SEEDED_REFRESH_TOKEN
        self.tokens.grants[SEEDED_REFRESH_TOKEN] = []
        self.rotations = 0
        self.window = RollingWindow(1.0)
        self.job_postings: list[dict[str, Any]] = [
            {"id": i, "title": title, "primaryLocation": {"descriptor": place}, "startDate": start}
            for i, title, place, start in JOB_POSTINGS
        ]
        self.candidates: list[dict[str, str]] = [
            {"id": i, "name": name, "email": email} for i, name, email in CANDIDATES
        ]

    def client_ok(self, client_id: str, client_secret: str) -> bool:
        return same(client_id, CLIENT_ID) & same(client_secret, self.client_secret)

    def grant_ok(self, refresh_token: str) -> bool:
        return refresh_token in self.tokens.grants

    def issue(self, refresh_token: str) -> dict[str, Any]:
        """The token answer for a refresh grant; with rotation on, a new refresh token replaces it."""
        if self.config["rotate_refresh_tokens"]:
            self.tokens.grants.pop(refresh_token, None)
            refresh_token = self.tokens.issue_grant([], REFRESH_PREFIX)
            self.refresh_token = refresh_token
        ttl = self.config["access_token_ttl"]
        access = self.tokens.issue_access([], ttl, self.clock(), ACCESS_PREFIX, refresh_token)
        # [verify] Workday answers a refresh grant with the refresh token it used (or a new one)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl,
            "refresh_token": refresh_token,
        }

    def session_ok(self, token: str | None) -> bool:
        found = self.tokens.access.get(token or "")
        return found is not None and found.expires_at > self.clock()

    def credentials(self) -> dict[str, str]:
        return {
            "host": self.base_url,
            "tenant": TENANT,
            "client_id": CLIENT_ID,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
        }

    def rotate_credentials(self) -> dict[str, str]:
        """A new client secret and refresh token; the old ones and all their access tokens revoked."""
        self.tokens.grants.clear()
        self.tokens.access.clear()
        self.client_secret = "sandbox-workday-client-secret-" + secrets.token_hex(8)
        self.refresh_token = self.tokens.issue_grant([], REFRESH_PREFIX)
        self.rotations += 1
        return self.credentials()

    def page_of_postings(self, limit: int, offset: int) -> dict[str, Any]:
        return {"total": len(self.job_postings), "data": self.job_postings[offset : offset + limit]}
