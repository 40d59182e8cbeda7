from __future__ import annotations

import pytest
from django_celery_beat.models import PeriodicTask

from conduit.celery import app
from conduit.models import Heartbeat
from conduit.tasks import heartbeat


def test_celery_is_configured_for_safe_delivery() -> None:
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_soft_time_limit and conf.task_time_limit > conf.task_soft_time_limit
    assert conf.beat_scheduler == "conduit.beat:SingleRunScheduler"
    assert conf.worker_hijack_root_logger is False


def test_broker_follows_redis_url(settings) -> None:  # type: ignore[no-untyped-def]
    if settings.REDIS_URL:
        assert app.conf.broker_url == settings.REDIS_URL
        assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache")
    else:
        assert app.conf.broker_url == "filesystem://"
        assert "data_folder_in" in app.conf.broker_transport_options


def test_heartbeat_task_records_last_beat(db: None) -> None:
    first = heartbeat.apply().get()
    second = heartbeat.apply().get()
    beat = Heartbeat.objects.get(name="beat")
    assert beat.beat_at.isoformat() == second and second >= first


@pytest.mark.parametrize(
    ("name", "task", "minutes"),
    [
        ("run calendar jobs", "integrations.run_calendar_jobs", 5),
        ("renew calendar channels", "integrations.renew_calendar_channels", 60),
    ],
)
def test_calendar_beat_entries_exist_by_data_migration(db: None, name: str, task: str, minutes: int) -> None:
    import integrations.tasks  # noqa: F401  (registers the integrations tasks, as the worker does)

    entry = PeriodicTask.objects.get(name=name)
    assert entry.task == task and entry.enabled and task in app.tasks
    assert entry.interval.every * {"minutes": 1, "hours": 60}[entry.interval.period] == minutes


def test_heartbeat_beat_entry_exists_by_data_migration(db: None) -> None:
    entry = PeriodicTask.objects.get(name="conduit heartbeat")
    assert entry.task == "conduit.heartbeat" and entry.enabled
    assert (entry.interval.every, entry.interval.period) == (30, "seconds")
    assert "conduit.heartbeat" in app.tasks
