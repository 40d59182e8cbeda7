"""Zoho's data centres: the accounts servers and API domains Conduit sends a code or token to.

The authorize redirect names the account's accounts server and the token response its API
domain; both are checked here before anything is sent to them (the Salesforce instance_url
rules): https on the default port, a suffix match on the parsed, lower-cased hostname without a
trailing dot, no userinfo, path, query or fragment. In development the sandbox's origin is also
trusted (ZOHO_EXTRA_ORIGINS, empty in production).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings

from integrations.providers.errors import InvalidInstanceUrl

# Zoho's data centres (provider-facts.md; multi-dc docs). [verify] .zoho.ca beside .zohocloud.ca.
ACCOUNTS_SUFFIXES = (
    ".zoho.com",
    ".zoho.eu",
    ".zoho.in",
    ".zoho.com.au",
    ".zoho.jp",
    ".zoho.com.cn",
    ".zoho.sa",
    ".zohocloud.ca",
    ".zoho.ca",
)
API_SUFFIXES = (
    ".zohoapis.com",
    ".zohoapis.eu",
    ".zohoapis.in",
    ".zohoapis.com.au",
    ".zohoapis.jp",
    ".zohoapis.com.cn",
    ".zohoapis.sa",
    ".zohoapis.ca",
)
HOST_RE = re.compile(r"[a-z0-9.-]+")
LOCATION_RE = re.compile(r"[a-z]{2,8}")


def validate_zoho_url(url: str, suffixes: tuple[str, ...], what: str, code: str) -> str:
    """The normalised origin of `url` when it is one of Zoho's own hosts (or a trusted sandbox
    origin), else InvalidInstanceUrl: https on the default port, a parsed lower-cased hostname
    (no trailing dot) ending with one of `suffixes`, no userinfo, path, query or fragment."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInstanceUrl("zoho", code, f"{what} is not a URL") from None
    if any(c.isspace() for c in url) or parts.username is not None or parts.password is not None:
        raise InvalidInstanceUrl("zoho", code, f"{what} must be a bare origin")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise InvalidInstanceUrl("zoho", code, f"{what} must be a bare origin")
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    if origin in {o.lower().rstrip("/") for o in settings.ZOHO_EXTRA_ORIGINS}:
        return origin
    if parts.scheme != "https" or port not in (None, 443):
        raise InvalidInstanceUrl("zoho", code, f"{what} must be https on the default port")
    host = (parts.hostname or "").lower().rstrip(".")
    if not HOST_RE.fullmatch(host) or not host.endswith(suffixes):
        raise InvalidInstanceUrl("zoho", code, f"{what} host {host!r} is not one of Zoho's data centres")
    return f"https://{host}"


def validate_accounts_server(url: str) -> str:
    return validate_zoho_url(url, ACCOUNTS_SUFFIXES, "accounts-server", "invalid_accounts_server")


def validate_api_domain(url: str) -> str:
    return validate_zoho_url(url, API_SUFFIXES, "api_domain", "invalid_api_domain")


def check_location(location: str) -> str:
    """The callback's `location` (a data-centre code such as "eu"), or InvalidInstanceUrl."""
    if location and not LOCATION_RE.fullmatch(location):
        raise InvalidInstanceUrl("zoho", "invalid_location", "location is not a data-centre code")
    return location
