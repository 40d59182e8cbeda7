"""The operator console: Conduit's admin site, branded, with a home page that starts the day.

The home page shows panels of numbers, each linking into the filtered changelist that lists
them. Apps contribute panels with `register_panel` from their admin modules (conduit never
imports integrations or reconcile); a panel is built from one or two aggregate queries, so the
page costs the same however many rows there are.

`install` turns the default `admin.site` into a `ConduitAdminSite` in place: every app's
`@admin.register` keeps working and no setting changes (the same move django-otp documents).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode


@dataclass(frozen=True)
class Figure:
    """One number (or short word) on a panel, linking to the rows behind it."""

    label: str
    value: str
    url: str
    tone: str = ""  # "bad", "warn", "ok" or "" (nothing to do)
    note: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    figures: list[Figure] = field(default_factory=list)
    hint: str = ""
    empty: str = "Nothing here."


PanelBuilder = Callable[[datetime], Panel]


@dataclass(frozen=True)
class _Registered:
    order: int
    perm: str
    build: PanelBuilder


_PANELS: dict[str, _Registered] = {}


def register_panel(*, order: int, perm: str) -> Callable[[PanelBuilder], PanelBuilder]:
    """Show the panel `build(now)` on the console's home page to staff holding `perm`."""

    def add(build: PanelBuilder) -> PanelBuilder:
        _PANELS[f"{build.__module__}.{build.__qualname__}"] = _Registered(order, perm, build)
        return build

    return add


def panels_for(request: HttpRequest, now: datetime) -> list[Panel]:
    shown = sorted(_PANELS.values(), key=lambda p: p.order)
    return [p.build(now) for p in shown if request.user.has_perm(p.perm)]


def changelist(model_label: str, **params: Any) -> str:
    """The admin changelist of `app_label.model_name`, filtered by `params`."""
    app_label, model_name = model_label.split(".")
    url = reverse(f"admin:{app_label}_{model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def count_figure(label: str, count: int, url: str, *, tone: str = "bad", note: str = "") -> Figure:
    """A count that asks for attention (`tone`) when it is not zero."""
    return Figure(label=label, value=str(count), url=url, tone=tone if count else "ok", note=note)


class ConduitAdminSite(admin.AdminSite):
    site_header = "Conduit operations"
    site_title = "Conduit operations"
    index_title = "Start of the day"
    # the left-hand model list takes 280 px of a 1,280 px screen; the home page lists every model
    enable_nav_sidebar = False

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        context = {"console_panels": panels_for(request, timezone.now()), **(extra_context or {})}
        return super().index(request, context)


def install(site: admin.AdminSite) -> None:
    site.__class__ = ConduitAdminSite
