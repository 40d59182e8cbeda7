"""List filters of the integrations admin that a plain field filter cannot express."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from integrations.console.panels import EXPIRING_WITHIN
from integrations.models import PendingInstall


class ExpiresFilter(admin.SimpleListFilter):
    """Pending installs that can still be claimed, or only those about to expire."""

    title = "claimable"
    parameter_name = "expires"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("6h", "Expires within 6 hours"), ("open", "Still claimable")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() not in ("6h", "open"):
            return queryset
        now = timezone.now()
        claimable = queryset.filter(status=PendingInstall.Status.PENDING, expires_at__gt=now)
        return claimable.filter(expires_at__lte=now + EXPIRING_WITHIN) if self.value() == "6h" else claimable
