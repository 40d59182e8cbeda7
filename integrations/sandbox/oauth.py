"""OAuth pieces both sandboxes share: codes, refresh grants, access tokens, PKCE, consent."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

CODE_TTL = 600  # authorization codes live 10 minutes


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    expires_at: float
    challenge: str = ""


@dataclass
class AccessToken:
    token: str = field(repr=False)
    scopes: list[str]
    expires_at: float
    grant: str | None = field(default=None, repr=False)  # the refresh token it came from


@dataclass
class Consent:
    """What the consent form carries from the authorize page to the decision endpoint."""

    client_id: str
    redirect_uri: str
    scopes: list[str]
    state: str = ""
    challenge: str = ""

    def hidden_fields(self) -> dict[str, str]:
        return {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self.scopes),
            "state": self.state,
            "code_challenge": self.challenge,
        }


def same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def consent_error(client_id: str, redirect_uri: str, expected_client_id: str) -> str | None:
    """Why an authorize (or decision) request must be refused with a 400 page, or None."""
    if not client_id:
        return "The request has no client_id."
    if not same(client_id, expected_client_id):
        return f"Unknown client_id {client_id!r}: no app with this client id is installed in the sandbox."
    if not redirect_uri:
        return "The request has no redirect_uri."
    if not redirect_uri.startswith(("http://", "https://")):
        return "The redirect_uri must be an http:// or https:// URL."
    return None


def client_ok(form: dict[str, str], client_id: str, client_secret: str) -> bool:
    return same(form.get("client_id", ""), client_id) & same(form.get("client_secret", ""), client_secret)


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class TokenStore:
    """Codes, refresh grants and access tokens of one sandbox. The caller holds the state lock."""

    def __init__(self) -> None:
        self.codes: dict[str, AuthCode] = {}
        self.grants: dict[str, list[str]] = {}  # refresh token -> granted scopes
        self.access: dict[str, AccessToken] = {}

    def issue_code(self, consent: Consent, now: float) -> str:
        code = secrets.token_urlsafe(24)
        self.codes[code] = AuthCode(
            consent.client_id, consent.redirect_uri, consent.scopes, now + CODE_TTL, consent.challenge
        )
        return code

    def take_code(self, code: str, client_id: str, redirect_uri: str, now: float) -> AuthCode | None:
        """Single use: a code is gone after its first exchange attempt, good or bad."""
        found = self.codes.pop(code, None)
        if found is None or found.expires_at <= now:
            return None
        if found.client_id != client_id or found.redirect_uri != redirect_uri:
            return None
        return found

    def issue_grant(self, scopes: list[str], prefix: str) -> str:
        token = prefix + secrets.token_urlsafe(32)
        self.grants[token] = list(scopes)
        return token

    def issue_access(self, scopes: list[str], ttl: int, now: float, prefix: str, grant: str | None) -> str:
        token = prefix + secrets.token_urlsafe(48)
        self.access[token] = AccessToken(token, list(scopes), now + ttl, grant)
        return token

    def revoke_grant(self, token: str) -> bool:
        if self.grants.pop(token, None) is None:
            return False
        self.access = {k: v for k, v in self.access.items() if v.grant != token}
        return True

    def revoke_access(self, token: str) -> bool:
        return self.access.pop(token, None) is not None

    def active(self, now: float) -> int:
        return sum(1 for t in self.access.values() if t.expires_at > now)
