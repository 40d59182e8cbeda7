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

# HubSpot's own servers decode these escapes in the URI before signing; every other escape stays
# as sent. HubSpot's official client library signs the URI exactly as given, so both are accepted.
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


def signed_forms(uri: str) -> list[str]:
    """The URIs a genuine signature may cover: with HubSpot's escapes decoded (its servers), as
    given (its client library), and with the bare trailing "?" that a server's parsed path drops."""
    forms = [decode_uri(uri), uri]
    if "?" not in uri:
        forms += [decode_uri(uri) + "?", uri + "?"]
    return list(dict.fromkeys(forms))


def digest_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> bytes:
    message = method.upper().encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest())


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The signature HubSpot's servers send: over the URI with their escapes decoded."""
    return digest_v3(secret, method, decode_uri(uri), body, timestamp).decode()


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
    given = request.signature.encode()
    if not any(
        hmac.compare_digest(digest_v3(secret, request.method, uri, request.body, request.timestamp), given)
        for uri in signed_forms(request.uri)
    ):
        raise SignatureRejected("bad_signature", "the signature does not match this request")
