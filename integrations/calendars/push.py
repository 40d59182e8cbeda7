"""STUB (helper D replaces): push channels / subscriptions and their notifications."""

from __future__ import annotations


def renew_due_channels() -> int:
    raise NotImplementedError
