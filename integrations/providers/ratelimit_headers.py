"""The rate-limit headers of a provider's answer, for the one log line of each provider call.

Each provider declares the headers it sends (`rate_limit_header_names`) and how they read as a
limit and what is left of it (`rate_limit_quota`). This module keeps only those headers and
`Retry-After` (never Authorization, Set-Cookie or any other header), bounds their values, and adds
a normalised X-RateLimit-Remaining / X-RateLimit-Limit pair, so that one `grep X-RateLimit` finds
every provider's quota while the provider's own header names stay verbatim beside it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import ClassVar, Protocol

from requests.structures import CaseInsensitiveDict

REMAINING = "X-RateLimit-Remaining"
LIMIT = "X-RateLimit-Limit"
# Any provider (or a proxy in front of a customer's Odoo) may send it with a rate-limit answer.
COMMON_HEADER_NAMES = ("Retry-After",)
VALUE_MAX = 64
COUNT_DIGITS_MAX = 12
_SPACES = re.compile(r"\s+")
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")


class DeclaresRateLimitHeaders(Protocol):
    rate_limit_header_names: ClassVar[tuple[str, ...]]

    def rate_limit_quota(self, headers: Mapping[str, str]) -> tuple[int | None, int | None]: ...


def as_count(value: str | None) -> int | None:
    """A header's value as a non-negative count, or None when it is not one."""
    value = (value or "").strip()
    if value.isascii() and value.isdigit() and len(value) <= COUNT_DIGITS_MAX:
        return int(value)
    return None


def bounded(value: str) -> str:
    """One line of printable ASCII, at most VALUE_MAX characters (a hostile host picks the value)."""
    text = _NOT_PRINTABLE_ASCII.sub("?", _SPACES.sub(" ", value).strip())
    return text if len(text) <= VALUE_MAX else text[: VALUE_MAX - 1] + "…"


def rate_limit_headers(provider: DeclaresRateLimitHeaders, headers: Mapping[str, str]) -> dict[str, str]:
    """The normalised pair (when the provider's headers give it), then the provider's declared
    headers and Retry-After as they were named, each only when the answer carried it."""
    received: CaseInsensitiveDict[str] = CaseInsensitiveDict(headers)
    found: dict[str, str] = {}
    limit, remaining = provider.rate_limit_quota(received)
    if remaining is not None:
        found[REMAINING] = str(remaining)
    if limit is not None:
        found[LIMIT] = str(limit)
    for name in (*provider.rate_limit_header_names, *COMMON_HEADER_NAMES):
        value = received.get(name)
        if value is not None and name.lower() not in {key.lower() for key in found}:
            found[name] = bounded(value)
    return found


def as_text(found: Mapping[str, str]) -> str:
    """`Name=value` pairs for the message text; a value with a space is quoted."""
    return " ".join(f"{name}={json.dumps(value) if ' ' in value else value}" for name, value in found.items())
