"""Reading the environment for settings: every malformed value stops start-up with one line that
names the variable (conduit/startup.py prints it), never a traceback; and the check that a
production URL does not point at this machine or a private network."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

KINDS = {int: "a whole number", float: "a number", list: "a comma-separated list", dict: "key=value pairs"}
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class Env(environ.Env):
    def get_value(
        self, var: str, cast: Any = None, default: Any = environ.Env.NOTSET, parse_default: bool = False
    ) -> Any:
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except (ValueError, TypeError) as exc:
            kind = KINDS.get(cast, "a valid value") if isinstance(cast, type) else "a valid value"
            raise ImproperlyConfigured(f"{var} must be {kind}") from exc


def legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """What inet_aton reads a host as: 127.1, 0x7f.1, 2130706433 and 0177.0.0.1 are all 127.0.0.1
    (the C library's own parser, so Conduit reads a host exactly as a connect() would)."""
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def points_at_this_machine(url: str) -> bool:
    """True when the URL's host is this machine or a network that is not the internet: a local
    name (with or without the trailing dot), or an address (in any spelling) that is loopback,
    private, link-local, unspecified (0.0.0.0), multicast or reserved."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if not host or host in LOCAL_NAMES or host.endswith(".localhost"):
        return True
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = legacy_ipv4(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast or address.is_unspecified
