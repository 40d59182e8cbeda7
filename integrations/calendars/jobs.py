"""STUB (helper C replaces): the calendar job runner."""

from __future__ import annotations

from integrations.models import ExternalCalendarConnection


def request_sync(connection: ExternalCalendarConnection) -> None:
    raise NotImplementedError
