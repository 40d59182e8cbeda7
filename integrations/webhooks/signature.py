"""HubSpot webhook signatures, version 3 (provider-facts.md, "Webhook signatures").

The signed string is method + URI + body + timestamp; the key is the app's client secret; the
HMAC-SHA256 digest is base64-encoded and compared in constant time. A timestamp more than five
minutes from now (either way) is refused, so a captured delivery cannot be replayed later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"

# HubSpot decodes these escapes in the URI before signing; every other escape stays as sent.
DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
ESCAPE = re.compile("|".join(DECODED), re.IGNORECASE)


class SignatureRejected(Exception):
    """Why a delivery was refused; `reason` is a metric label, the message is safe to log."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SignedRequest:
    method: str
    uri: str
    body: bytes
    timestamp: str  # milliseconds since the epoch, as sent
    signature: str


def decode_uri(uri: str) -> str:
    return ESCAPE.sub(lambda m: DECODED[m[0].upper()], uri)


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.upper().encode() + decode_uri(uri).encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_v3(request: SignedRequest, secret: str, *, now_ms: int, max_age_seconds: int) -> None:
    """Return when the delivery is HubSpot's and fresh; raise SignatureRejected otherwise."""
    if not request.signature or not request.timestamp:
        raise SignatureRejected(
            "missing_signature", f"{SIGNATURE_HEADER} and {TIMESTAMP_HEADER} are required"
        )
    if not (request.timestamp.isascii() and request.timestamp.isdigit()):
        raise SignatureRejected("bad_timestamp", f"{TIMESTAMP_HEADER} must be milliseconds since the epoch")
    if abs(now_ms - int(request.timestamp)) > max_age_seconds * 1000:
        raise SignatureRejected("stale", f"the request timestamp is more than {max_age_seconds} s from now")
    expected = sign_v3(secret, request.method, request.uri, request.body, request.timestamp)
    if not hmac.compare_digest(expected.encode(), request.signature.encode()):
        raise SignatureRejected("bad_signature", "the signature does not match this request")
