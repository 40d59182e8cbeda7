"""The Celery tasks of integrations, found here by Celery's autodiscovery: install expiry, and
the rooms' own task modules imported so that their tasks register. Each task calls one service;
the management commands call the same ones."""

from __future__ import annotations

from celery import shared_task

from integrations.calendars import tasks as calendar_tasks
from integrations.connections import claims
from integrations.cursors import tasks as cursor_tasks
from integrations.health import tasks as health_tasks
from integrations.webhooks import tasks as webhook_tasks

ROOM_TASKS = (calendar_tasks, cursor_tasks, health_tasks, webhook_tasks)


@shared_task(name="integrations.expire_pending_installs", acks_late=True)
def expire_pending_installs() -> int:
    return claims.expire_pending_installs()
