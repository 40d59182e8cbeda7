"""STUB (helper D replaces): a calendar connection's valid access token, refreshed under its row lock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from django.utils import timezone

from integrations.providers.base import Account

T = TypeVar("T")


def valid_account(connection_id: int, *, now: Callable[[], datetime] = timezone.now) -> Account:
    raise NotImplementedError


def call_with_token(connection_id: int, call: Callable[[Account], T]) -> T:
    raise NotImplementedError
