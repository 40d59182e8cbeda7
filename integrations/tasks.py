"""Thin Celery tasks of the integrations app; each calls one service (the commands call the same)."""

from __future__ import annotations

from celery import shared_task

from integrations import claims


@shared_task(name="integrations.expire_pending_installs", acks_late=True)
def expire_pending_installs() -> int:
    return claims.expire_pending_installs()
