"""Providers: one module per provider on one base (base.py, the only HTTP seam), registered by
name here and nowhere else; the closed set of errors (errors.py); and the transport every call
goes through: the shared rate limiter (ratelimit.py), the crm_sync_logs writer (synclog.py) and
the Prometheus metrics with the /metrics view (metrics.py). The lowest room: uses only
integrations.models and the core.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from integrations.providers.base import Provider
    from integrations.providers.calendar_base import CalendarProvider

PROVIDERS: dict[str, str] = {
    "hubspot": "integrations.providers.hubspot.HubSpotProvider",
    "salesforce": "integrations.providers.salesforce.SalesforceProvider",
    "zoho": "integrations.providers.zoho.ZohoProvider",
    "odoo": "integrations.providers.odoo.OdooProvider",
    "greenhouse": "integrations.providers.greenhouse.GreenhouseProvider",
    "lever": "integrations.providers.lever.LeverProvider",
    "workday": "integrations.providers.workday.WorkdayProvider",
}

# Members' calendars (runbook 004): the keys are the binding external_calendar_connections.provider values.
CALENDAR_PROVIDERS: dict[str, str] = {
    "google": "integrations.providers.google_calendar.GoogleCalendarProvider",
    "microsoft": "integrations.providers.microsoft_calendar.MicrosoftCalendarProvider",
}


class UnknownProvider(KeyError):
    def __str__(self) -> str:
        return f"unknown provider {self.args[0]!r}; known: {', '.join(sorted(PROVIDERS))}"


@cache
def get_provider(name: str) -> Provider:
    if name not in PROVIDERS:
        raise UnknownProvider(name)
    provider: Provider = import_string(PROVIDERS[name])()
    return provider


@cache
def get_calendar_provider(name: str) -> CalendarProvider:
    if name not in CALENDAR_PROVIDERS:
        raise UnknownCalendarProvider(name)
    provider: CalendarProvider = import_string(CALENDAR_PROVIDERS[name])()
    return provider


class UnknownCalendarProvider(KeyError):
    def __str__(self) -> str:
        return f"unknown calendar provider {self.args[0]!r}; known: {', '.join(sorted(CALENDAR_PROVIDERS))}"
