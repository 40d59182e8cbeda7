"""What looks like a secret: shared by the audit helper and the log redaction filter."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SECRET_KEY_HINTS = ("token", "secret", "password", "authorization", "body", "api_key", "apikey")

# Logs mask "Token <x>" too (an auth scheme); audit refuses only "Bearer <x>", because
# "token" followed by a word is ordinary text in names ("Token Holdings", "zapier token prod").
BEARER_RE = re.compile(r"(?i)\b(bearer|token|zoho-oauthtoken)\s+[A-Za-z0-9\-._~+/]{8,}=*")
STRICT_BEARER_RE = re.compile(r"(?i)\b(bearer|zoho-oauthtoken)\s+[A-Za-z0-9\-._~+/]{8,}=*")
# HTTP Basic credentials ("Basic " + base64 of "key:" or "client_id:client_secret": Lever, Greenhouse,
# Workday): a long base64 word, or one with a digit, '+', '/' or '=' (so "basic information" is text).
BASIC_RE = re.compile(
    r"(?i)\b(basic)\s+(?:[A-Za-z0-9+/]{20,}=*|(?=[A-Za-z0-9+/=]*[0-9+/=])[A-Za-z0-9+/]{8,}=*)"
)
PARAM_RE = re.compile(
    r"(?i)\b(access_token|refresh_token|id_token|client_secret|code_verifier|password)"
    r"(\s*[=:]\s*|[\"']\s*:\s*[\"'])[^\s&\"',;]+"
)
AUTH_HEADER_RE = re.compile(r"(?i)(authorization\s*[:=]\s*)(\S+(\s+\S+)?)")
FERNET_TOKEN_RE = re.compile(r"gAAAAA[A-Za-z0-9_\-]{40,}=*")
# workspace API tokens (cdt_) and invitation tokens (cdi_)
API_TOKEN_RE = re.compile(r"\bcd[ti]_[A-Za-z0-9_\-]{16,}")
# HubSpot puts tokens in URL paths (token info, refresh-token revoke): urllib3 debug lines show them.
TOKEN_PATH_RE = re.compile(r"(?i)(/(?:access|refresh)-tokens/)[^\s/?#\"']+")
# Query and form parameters whose value is a secret or a bearer capability: an OAuth code and state
# (and the PKCE verifier), a claim link's install id, tokens (Zoho revokes one named in the query
# string), a client secret, Microsoft Graph's validationToken. Wherever a URL or a form body lands
# in a text, the value after `?key=`, `&key=`, `;key=` (`&amp;key=`) or `#key=` (or their
# %-encoded forms: a URL inside a redirect_uri) is withheld; the key stays, so the text says what
# was sent. A bare `key=` after a space is left alone: tracebacks quote source such as
# `code=exc.error_code`.
SENSITIVE_QUERY_KEYS = (
    "code",
    "state",
    "session_state",
    "install_id",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "code_verifier",
    "validationtoken",
    "password",
    "api_key",
    "apikey",
)
SENSITIVE_QUERY_RE = re.compile(
    r"(?i)((?:[?&;#]|%3F|%26|%23)(?:" + "|".join(SENSITIVE_QUERY_KEYS) + r")(?:=|%3D))"
    r"(?:(?!%26|%23)[^\s&#\"'<>\\])+"
)

_extra_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a secret value (client secret, signing key) so logs and audit never show it."""
    if value and len(value) >= 8:
        _extra_secrets.add(value)


def known_secret_values() -> Iterable[str]:
    try:
        yield settings.SECRET_KEY
        yield from settings.CONDUIT_ENCRYPTION_KEYS
    except ImproperlyConfigured:
        pass  # startup is failing on configuration; logging that must not fail too
    yield from _extra_secrets


def looks_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(hint in lowered for hint in SECRET_KEY_HINTS)


def looks_secret_value(value: str) -> bool:
    if (
        STRICT_BEARER_RE.search(value)
        or BASIC_RE.search(value)
        or AUTH_HEADER_RE.search(value)
        or PARAM_RE.search(value)
        or FERNET_TOKEN_RE.search(value)
        or API_TOKEN_RE.search(value)
        or TOKEN_PATH_RE.search(value)
        or SENSITIVE_QUERY_RE.search(value)
    ):
        return True
    return any(secret in value for secret in known_secret_values())


def redact_value(value: Any) -> Any:
    """Redact strings inside nested dicts and lists; secret-looking keys lose their value."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: "[redacted]" if looks_secret_key(str(k)) else redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def redact_text(text: str) -> str:
    text = AUTH_HEADER_RE.sub(r"\1[redacted]", text)
    text = BEARER_RE.sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = BASIC_RE.sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = PARAM_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
    text = FERNET_TOKEN_RE.sub("[redacted]", text)
    text = API_TOKEN_RE.sub(lambda m: m.group(0)[:4] + "[redacted]", text)
    text = TOKEN_PATH_RE.sub(r"\1[redacted]", text)
    text = SENSITIVE_QUERY_RE.sub(r"\1[redacted]", text)
    for secret in known_secret_values():
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
