"""The HTTP session provider calls go out on.

requests, with `trust_env` on, reads the proxy variables, the CA-bundle variables and ~/.netrc
again for every request; in a worker that was a tenth of a delivered write's CPU. The
environment of a running process does not change, so this session reads it once per origin
(scheme and host) and never reads ~/.netrc: a provider's credentials belong to its connection,
never to a file on the host.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

MAX_ORIGINS = 1024  # Salesforce and Odoo have one origin per customer; bounded all the same


class EnvironmentOnceSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False  # no ~/.netrc; the environment comes from _environment below
        self._environment = requests.Session()  # trust_env on: what the environment says per URL
        self._by_origin: dict[tuple[str, str], Any] = {}

    def environment_for(self, url: str) -> Any:
        """Proxies and verify for `url` as requests reads them from the environment (no_proxy,
        HTTPS_PROXY, REQUESTS_CA_BUNDLE...), read on the origin's first request only."""
        parts = urlsplit(url)
        origin = (parts.scheme, parts.netloc)
        if origin not in self._by_origin:
            if len(self._by_origin) >= MAX_ORIGINS:
                self._by_origin.clear()
            self._by_origin[origin] = self._environment.merge_environment_settings(url, {}, None, None, None)
        return self._by_origin[origin]

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        environment = self.environment_for(str(url))
        proxies = {**environment["proxies"], **(proxies or {})}
        verify = environment["verify"] if verify is None else verify
        return super().merge_environment_settings(url, proxies, stream, verify, cert)
