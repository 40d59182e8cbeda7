"""Start a sandbox provider on a background thread: `start_sandbox("hubspot", port=0)`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from integrations.sandbox.common import SandboxApp, SandboxServer, SandboxState
from integrations.sandbox.google_calendar import GoogleApp
from integrations.sandbox.greenhouse import GreenhouseApp
from integrations.sandbox.hubspot import HubSpotApp
from integrations.sandbox.lever import LeverApp
from integrations.sandbox.microsoft_graph import MicrosoftApp
from integrations.sandbox.odoo import OdooApp
from integrations.sandbox.salesforce import SalesforceApp
from integrations.sandbox.workday import WorkdayApp
from integrations.sandbox.zoho import ZohoApp

APPS: dict[str, Callable[[], SandboxApp]] = {
    "hubspot": HubSpotApp,
    "salesforce": SalesforceApp,
    "zoho": ZohoApp,
    "odoo": OdooApp,
    "google": GoogleApp,
    "microsoft": MicrosoftApp,
    "greenhouse": GreenhouseApp,
    "lever": LeverApp,
    "workday": WorkdayApp,
}


@dataclass
class RunningSandbox:
    provider: str  # "hubspot" | "salesforce" | "zoho" | "odoo" | "google" | "microsoft" | an ATS
    base_url: str  # e.g. "http://127.0.0.1:54321", no trailing slash
    state: SandboxState  # that provider's state (HubSpotState, ...); tests may change it under state.lock
    _server: SandboxServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self) -> None:
        """Stop serving, wake any handler hanging on a fault, close the socket, join the thread."""
        self.state.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_sandbox(provider: str, host: str = "127.0.0.1", port: int = 0) -> RunningSandbox:
    """Serve one provider's sandbox; port 0 picks a free port. Raises OSError if the port is taken."""
    if provider not in APPS:
        raise ValueError(f"unknown sandbox provider {provider!r}; choose one of {', '.join(sorted(APPS))}")
    app = APPS[provider]()
    server = SandboxServer((host, port), app)
    base_url = f"http://{host}:{server.server_address[1]}"
    app.state.base_url = base_url
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sandbox-{provider}", daemon=True
    )
    thread.start()
    return RunningSandbox(provider, base_url, app.state, server, thread)
