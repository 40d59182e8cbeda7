"""How the operator console shows values (ConsoleAdmin, the base of every Conduit admin): long
text clipped to its column with the full value on hover, JSON pretty-printed in a wrapped,
scrolling block, booleans and times as short words.

Django shows a read-only boolean as a green tick or a red cross, which reads as good / bad; for
"permanent failure: no" or "outcome unknown: no" the red cross is the good state, so the console
says Yes / No instead."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import capfirst

EMPTY = "-"  # as Django shows an empty value


def clip(value: Any) -> SafeString | str:
    """A cell the stylesheet cuts to its column (class `clip`); the full text is its title."""
    text = "" if value is None else str(value)
    if not text:
        return EMPTY
    return format_html('<span class="clip" title="{}">{}</span>', text, text)


def pretty_json(value: Any) -> SafeString:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="json">{}</pre>', text)


def short_time(value: datetime | None) -> SafeString | str:
    """`Dec 7 10:40` this year, `2025-12-07` before, in the current time zone; the exact time
    on hover."""
    if value is None:
        return EMPTY
    local = timezone.localtime(value)
    shown = (
        f"{local:%b} {local.day} {local:%H:%M}"
        if local.year == timezone.localtime().year
        else f"{local:%Y-%m-%d}"
    )
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', value.isoformat(), f"{local:%Y-%m-%d %H:%M:%S %Z}", shown
    )


Display = Callable[..., Any]


def _column(field: str, description: str, render: Callable[[Any], Any]) -> Display:
    # called as show(obj) from a list_display entry, as show(model_admin, obj) as an admin attribute
    @admin.display(description=description or field.replace("_", " "), ordering=field)
    def show(*args: Any) -> Any:
        return render(args[-1])

    show.__name__ = field  # keeps the cells' CSS class, field-<name>
    return show


def clipped(field: str, description: str = "") -> Display:
    """A list column showing `field` clipped (see `clip`), sortable by the field."""
    return _column(field, description, lambda obj: clip(getattr(obj, field)))


def when(field: str, description: str = "") -> Display:
    """A list column showing the datetime `field` compactly, sortable by the field."""
    return _column(field, description, lambda obj: short_time(getattr(obj, field)))


def words(field: str, yes: str, no: str, description: str = "") -> Display:
    """A boolean `field` as words (`no` may be blank), sortable by the field."""
    return _column(field, description, lambda obj: (yes if getattr(obj, field) else no) or EMPTY)


def _list_cell(model: type[models.Model], name: Any) -> Any:
    """How a list shows the field `name`: text clipped, times short, booleans as yes / no."""
    if not isinstance(name, str):
        return name
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return name
    if not isinstance(field, models.Field):
        return name  # a reverse relation
    label = str(field.verbose_name)
    if isinstance(field, models.BooleanField):
        return words(name, "yes", "no", label)
    if isinstance(field, models.DateTimeField):
        return when(name, label)
    if isinstance(field, models.ForeignKey | models.OneToOneField):
        return clipped(name, label)
    if isinstance(field, models.CharField | models.TextField):
        if field.choices:
            return _column(name, label, lambda obj: clip(getattr(obj, f"get_{name}_display")()))
        return clipped(name, label)
    return name


def _readable(field: models.Field[Any, Any]) -> Callable[[Any], Any]:
    """The read-only change-page value of a JSON or boolean field."""
    name = field.name

    def show(obj: Any) -> Any:
        value = getattr(obj, name)
        if isinstance(field, models.BooleanField):
            return "Yes" if value else "No"
        return pretty_json(value) if value not in (None, "", [], {}) else EMPTY

    show.__name__ = name  # keeps the row's CSS class (field-<name>) and the field's help text
    return admin.display(description=capfirst(field.verbose_name))(show)


class ConsoleAdmin(admin.ModelAdmin):
    """The console's base admin. Lists: long text clipped to its column (full value on hover),
    times short, booleans as yes / no. Change pages shown read-only: JSON pretty-printed and
    wrapped, booleans as Yes / No. A column or field given as a callable is left as it is."""

    def get_list_display(self, request: HttpRequest) -> Any:
        return [_list_cell(self.model, name) for name in super().get_list_display(request)]

    def get_list_select_related(self, request: HttpRequest) -> Any:
        # the changelist no longer sees the related fields behind the cells: name them
        chosen = super().get_list_select_related(request)
        if chosen is not False:
            return chosen
        related = [
            name
            for name in super().get_list_display(request)
            if isinstance(name, str) and _is_relation(self.model, name)
        ]
        return related or False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = super().get_fields(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fields  # an add or change form keeps its widgets
        # a callable stands in for each JSON or boolean field (the admin shows callables read-only)
        return [self._readable(name) for name in fields]

    def _readable(self, name: Any) -> Any:
        if not isinstance(name, str):
            return name
        try:
            field = self.model._meta.get_field(name)
        except FieldDoesNotExist:
            return name
        if isinstance(field, models.JSONField | models.BooleanField):
            return _readable(field)
        return name


def _is_relation(model: type[models.Model], name: str) -> bool:
    try:
        return bool(model._meta.get_field(name).is_relation)
    except FieldDoesNotExist:
        return False
