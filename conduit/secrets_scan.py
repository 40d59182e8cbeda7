"""What looks like a secret: shared by the audit helper and the log redaction filter."""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.conf import settings

SECRET_KEY_HINTS = ("token", "secret", "password", "authorization", "body", "api_key", "apikey")

BEARER_RE = re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9\-._~+/]{8,}=*")
PARAM_RE = re.compile(
    r"(?i)\b(access_token|refresh_token|id_token|client_secret|code_verifier|password)"
    r"(\s*[=:]\s*|\"\s*:\s*\")[^\s&\"',;]+"
)
AUTH_HEADER_RE = re.compile(r"(?i)(authorization\s*[:=]\s*)(\S+(\s+\S+)?)")
FERNET_TOKEN_RE = re.compile(r"gAAAAA[A-Za-z0-9_\-]{40,}=*")
API_TOKEN_RE = re.compile(r"\bcdt_[A-Za-z0-9_\-]{16,}")

_extra_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a secret value (client secret, signing key) so logs and audit never show it."""
    if value and len(value) >= 8:
        _extra_secrets.add(value)


def known_secret_values() -> Iterable[str]:
    yield settings.SECRET_KEY
    yield from settings.CONDUIT_ENCRYPTION_KEYS
    yield from _extra_secrets


def looks_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(hint in lowered for hint in SECRET_KEY_HINTS)


def looks_secret_value(value: str) -> bool:
    if (
        BEARER_RE.search(value)
        or PARAM_RE.search(value)
        or FERNET_TOKEN_RE.search(value)
        or API_TOKEN_RE.search(value)
    ):
        return True
    return any(secret in value for secret in known_secret_values())


def redact_text(text: str) -> str:
    text = AUTH_HEADER_RE.sub(r"\1[redacted]", text)
    text = BEARER_RE.sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = PARAM_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
    text = FERNET_TOKEN_RE.sub("[redacted]", text)
    text = API_TOKEN_RE.sub("cdt_[redacted]", text)
    for secret in known_secret_values():
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
