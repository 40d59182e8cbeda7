"""The beat scheduler Conduit runs: django-celery-beat's database schedule, plus two guarantees.

1. **One run per job and slot, however many beats run.** Before a beat sends a due job it
   inserts (job, slot) into periodic_runs under a unique constraint; the beat whose insert
   loses sends nothing. A slot is the job's interval aligned to the epoch (a 30-second job has
   slots 00:00:00, 00:00:30, ...; crontab and other schedules use the minute), so two beats,
   whatever their clocks of last run, name the same slot the same way.
2. **An embedded beat dies with its worker.** `celery worker -B` runs beat in a child process;
   when the worker is killed (SIGKILL leaves no chance to stop it) the child would live on as
   an orphan and a restarted worker would make two beats. The child watches its parent and exits
   when it is gone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta
from typing import Any

from billiard.process import current_process
from celery.schedules import schedule as interval_schedule
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler

from conduit.models import PeriodicRun

log = logging.getLogger("conduit.beat")
KEEP_RUNS = timedelta(days=2)
PARENT_POLL_SECONDS = 1.0


def slot_seconds(entry_schedule: Any) -> int:
    """The length of one slot: the interval of an interval schedule, else one minute."""
    # exactly celery's interval schedule: crontab and solar subclass it with no fixed interval
    every = getattr(entry_schedule, "run_every", None) if type(entry_schedule) is interval_schedule else None
    return max(int(every.total_seconds()), 1) if isinstance(every, timedelta) else 60


def slot_of(entry_schedule: Any, now: float) -> int:
    length = slot_seconds(entry_schedule)
    return int(now // length) * length


def claim_slot(job: str, slot: int, *, by: str) -> bool:
    """True for the one beat that may send `job` for `slot`; False for every other."""
    try:
        with transaction.atomic():
            PeriodicRun.objects.create(job=job, slot=slot, sent_at=timezone.now(), sent_by=by)
    except IntegrityError:
        return False
    return True


def prune_runs() -> int:
    return PeriodicRun.objects.filter(sent_at__lt=timezone.now() - KEEP_RUNS).delete()[0]


def is_embedded() -> bool:
    """Beat runs inside a worker (`-B`): Celery starts it as a billiard child named "Beat"."""
    return current_process().name == "Beat"


def exit_with_parent(parent_pid: int, *, poll: float = PARENT_POLL_SECONDS) -> threading.Thread:
    """Exit this process once `parent_pid` is no longer its parent (the parent died)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll)
        log.warning("beat: the worker that embedded this beat is gone; stopping", extra={"category": "beat"})
        os._exit(0)

    thread = threading.Thread(target=watch, name="beat-parent-watch", daemon=True)
    thread.start()
    return thread


def embedding_worker_pid() -> int:
    """The worker that started this embedded beat, as billiard recorded it before the fork: if the
    worker died while beat was still starting, os.getppid() would already name its new parent."""
    return getattr(current_process(), "_parent_pid", None) or os.getppid()


class SingleRunScheduler(DatabaseScheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if is_embedded():
            # before the database work of the scheduler's start-up, which can take seconds
            exit_with_parent(embedding_worker_pid())
        super().__init__(*args, **kwargs)
        self.sender = f"{socket.gethostname()}:{os.getpid()}"
        self.sends = 0

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        slot = slot_of(entry.schedule, time.time())
        if not claim_slot(entry.task, slot, by=self.sender):
            log.info(
                "beat: %s for slot %s was sent by another beat; skipped",
                entry.task,
                slot,
                extra={"category": "beat"},
            )
            return None
        self.sends += 1
        if self.sends % 100 == 0:
            prune_runs()
        return super().apply_async(entry, producer, advance, **kwargs)
