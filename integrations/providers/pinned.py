"""The stricter SSRF guard for a provider URL the customer types (Odoo's instance URL).

The customer chooses the host, so Conduit must not let it reach anything inside Conduit's own
network. Rules, in the order they are checked (nothing is sent before all pass):

1. The URL: `https://` (plain `http://` only with CONDUIT_ODOO_ALLOW_INSECURE, development and
   tests); no user, password or any `@`, no backslash, space or control character; a host name
   (IDNA, lower-cased, no trailing dot) or an IP literal, never an empty host; port 443 only
   (any port with the same setting); the instance URL itself has no path, query or fragment.
2. The host is resolved once (`socket.getaddrinfo`). Every address it resolves to must be a
   global unicast address: one that is loopback, private, link-local, multicast, reserved,
   unspecified or otherwise not global refuses the URL (an IPv4-mapped, 6to4 or Teredo IPv6
   address is judged by the IPv4 address it carries too). Only the addresses listed in
   CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS (the sandbox on 127.0.0.1, never in production) pass.
3. The request goes to the checked address: the URL names the IP, the Host header, TLS SNI and
   the certificate check use the original name (PinnedAdapter), so nothing resolves the name a
   second time between the check and the connection. The session ignores proxies and netrc
   from the environment (a proxy would resolve the name itself), and `Provider._send` never
   follows a redirect (a 3xx is `Permanent` `unexpected_redirect`).

A refusal is `UnsafeUrl` (a `Permanent`, code `unsafe_url`, `reason` naming the rule). Its
message never repeats the address a name resolved to, so the form cannot be used to read
Conduit's internal DNS.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from integrations.providers.base import http_session
from integrations.providers.errors import InvalidInstanceUrl, Transient

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_PORTS = {"https": 443, "http": 80}
LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
EXAMPLE = "e.g. https://mycompany.odoo.com"
# The checks an address must pass, most specific first (169.254.169.254 is link-local before it is
# private). Anything else that is not global is refused as "not_global".
ADDRESS_CHECKS: tuple[tuple[str, str], ...] = (
    ("loopback", "is_loopback"),
    ("unspecified", "is_unspecified"),
    ("link_local", "is_link_local"),
    ("multicast", "is_multicast"),
    ("private", "is_private"),
    ("reserved", "is_reserved"),
)


class UnsafeUrl(InvalidInstanceUrl):
    """A customer-typed URL Conduit refuses to call; `reason` names the rule. Nothing was sent."""

    code = "unsafe_url"

    def __init__(self, provider: str, reason: str, message: str) -> None:
        super().__init__(provider, None, message, details={"reason": reason})
        self.reason = reason


@dataclass(frozen=True)
class Target:
    """Where a call goes: scheme, host (ASCII; an IPv6 literal without brackets) and port."""

    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.netloc}"


@dataclass(frozen=True)
class CheckedUrl:
    """An instance URL that passed every rule, and the address its host resolved to."""

    target: Target
    address: Address

    @property
    def origin(self) -> str:
        return self.target.origin


def refuse(provider: str, reason: str, message: str) -> UnsafeUrl:
    return UnsafeUrl(provider, reason, message)


def normalise_host(raw: str, provider: str) -> str:
    """An IP literal as Python writes it, or a host name as lower-case IDNA ASCII."""
    host = raw.rstrip(".")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if isinstance(literal, ipaddress.IPv6Address) and literal.scope_id:
            raise refuse(provider, "host", "An IPv6 address with a zone (%) is not a server address.")
        return str(literal)
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise refuse(provider, "host", f"The host name {raw!r} is not valid.") from None
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(LABEL_RE.fullmatch(label) for label in labels):
        raise refuse(provider, "host", "The host name is not valid.")
    if labels[-1].isdigit() or re.fullmatch(r"0x[0-9a-f]*", labels[-1]):
        # 127.1, 2130706433, 0x7f.1: numeric forms of an address, not names
        raise refuse(provider, "host", "Enter a host name or a full IP address.")
    return ascii_host


def parse_target(url: str, *, provider: str = "odoo", bare: bool = True) -> tuple[Target, str]:
    """The checked scheme, host and port of `url`, and the rest (path and query) for a call.
    With `bare` the URL must be an origin alone: the instance URL as the customer types it."""
    url = url.strip() if isinstance(url, str) else ""
    if not url:
        raise refuse(provider, "empty", f"Enter the address of the server, {EXAMPLE}.")
    if "@" in url:
        raise refuse(provider, "userinfo", "The address must not contain '@', a user name or a password.")
    if "\\" in url or any(ord(ch) <= 32 or ord(ch) == 127 for ch in url):
        raise refuse(
            provider, "characters", "The address contains a space, a backslash or a control character."
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if settings.CONDUIT_ODOO_ALLOW_INSECURE else ("https",)
    if scheme not in allowed:
        raise refuse(provider, "scheme", f"The address must start with https:// ({EXAMPLE}).")
    try:
        port = parts.port
    except ValueError:
        raise refuse(provider, "port", "The port is not a number between 1 and 65535.") from None
    if not parts.hostname:
        raise refuse(provider, "empty_host", f"The address names no server ({EXAMPLE}).")
    host = normalise_host(parts.hostname, provider)
    port = DEFAULT_PORTS[scheme] if port is None else port
    if port == 0 or (port != 443 and not settings.CONDUIT_ODOO_ALLOW_INSECURE):
        raise refuse(
            provider, "port", "Use the standard HTTPS port (443): leave the port out of the address."
        )
    if parts.fragment or (bare and (parts.path.strip("/") or parts.query)):
        raise refuse(
            provider, "path", f"Enter only the address of the server, without a path or query ({EXAMPLE})."
        )
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, host, port), rest


def allowed_private() -> set[Address]:
    allowed: set[Address] = set()
    for entry in settings.CONDUIT_ODOO_ALLOWED_PRIVATE_HOSTS:
        try:
            allowed.add(ipaddress.ip_address(str(entry).strip()))
        except ValueError:
            continue  # a host name here would need a lookup: only addresses count
    return allowed


def carried_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for (mapped, 6to4, Teredo server and client)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    carried = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    return [a for a in carried if a is not None]


def refusal_of(address: Address) -> str | None:
    """Why Conduit must not connect to `address` (the rule's name), or None."""
    if address in allowed_private():
        return None
    for candidate in [*carried_ipv4(address), address]:
        for reason, attribute in ADDRESS_CHECKS:
            if getattr(candidate, attribute):
                return reason
        if not candidate.is_global:
            return "not_global"
    return None


def resolve(target: Target, *, provider: str = "odoo") -> Address:
    """Resolve the host once; refuse when any address fails; return the first address."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise Transient(provider, "dns_error", f"{target.host} could not be resolved") from None
    addresses: list[Address] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            addresses.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
    if not addresses:
        raise Transient(provider, "dns_error", f"{target.host} has no IPv4 or IPv6 address")
    for address in addresses:
        if reason := refusal_of(address):
            raise refuse(
                provider,
                reason,
                f"{target.host} resolves to an address inside a private or reserved network; "
                "Conduit calls only public addresses.",
            )
    return addresses[0]


def check_url(url: str, *, provider: str = "odoo") -> CheckedUrl:
    """Every rule for an instance URL as typed: the URL itself, then its host's addresses."""
    target, _rest = parse_target(url, provider=provider, bare=True)
    return CheckedUrl(target, resolve(target, provider=provider))


class PinnedAdapter(HTTPAdapter):
    """Connects to the address the URL names (the checked IP) while TLS sends the original host
    name as SNI and checks the certificate against it."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        super().__init__()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["server_hostname"] = self.hostname
        pool_kwargs["assert_hostname"] = self.hostname
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)


@lru_cache(maxsize=128)
def pinned_session(pid: int, hostname: str) -> requests.Session:
    """One session per process and host name (its adapter carries the name for TLS)."""
    session = requests.Session()
    session.trust_env = False  # no proxy (it would resolve the name again) and no netrc
    session.headers.update(http_session().headers)
    adapter = PinnedAdapter(hostname)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def pinned_transport(url: str, *, provider: str = "odoo") -> tuple[requests.Session, str, dict[str, str]]:
    """Check `url` (a full call URL), resolve its host once and return the session, the URL
    rewritten to the checked address, and the Host header of the original name."""
    target, rest = parse_target(url, provider=provider, bare=False)
    address = resolve(target, provider=provider)
    pinned = Target(target.scheme, str(address), target.port)
    session = pinned_session(os.getpid(), target.host)
    return session, f"{pinned.origin}{rest}", {"Host": target.netloc}
