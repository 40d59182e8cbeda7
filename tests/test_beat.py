"""Exactly one run of each periodic job per slot, however many beats run, and no beat outlives
the worker that embedded it: unit tests of the slot rule, then drills with real processes on
the embedded default (SQLite and kombu's filesystem broker)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from celery.schedules import crontab, schedule
from django.utils import timezone

from conduit.beat import claim_slot, prune_runs, slot_of, slot_seconds
from conduit.models import PeriodicRun

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DRILL_JOB = "conduit.heartbeat"


def test_slots_are_the_interval_aligned_to_the_epoch_or_the_minute() -> None:
    every_30 = schedule(timedelta(seconds=30))
    assert slot_seconds(every_30) == 30
    assert slot_of(every_30, 1_800_000_095.9) == 1_800_000_090
    assert slot_of(every_30, 1_800_000_089.9) == 1_800_000_060
    assert slot_seconds(crontab(minute="30", hour="3")) == 60
    assert slot_of(crontab(minute="30", hour="3"), 1_800_000_119.0) == 1_800_000_060


@pytest.mark.django_db
def test_a_slot_is_claimed_once_and_old_claims_are_pruned() -> None:
    assert claim_slot("job.a", 60, by="host:1") is True
    assert claim_slot("job.a", 60, by="host:2") is False
    assert claim_slot("job.a", 90, by="host:2") is True
    assert claim_slot("job.b", 60, by="host:2") is True
    PeriodicRun.objects.filter(slot=60, job="job.b").update(sent_at=timezone.now() - timedelta(days=3))
    assert prune_runs() == 1
    assert sorted(PeriodicRun.objects.values_list("job", "slot")) == [("job.a", 60), ("job.a", 90)]


def drill_env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": "", "REDIS_URL": "", "CONDUIT_VAR_DIR": str(tmp_path)}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def migrate_with_one_fast_job(env: dict[str, str]) -> None:
    """A fresh embedded database whose only enabled periodic job is the heartbeat, every 2 s."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=180
    )
    script = (
        "from django_celery_beat.models import IntervalSchedule, PeriodicTask\n"
        "PeriodicTask.objects.update(enabled=False)\n"
        "every = IntervalSchedule.objects.create(every=2, period='seconds')\n"
        f"PeriodicTask.objects.create(name='drill', task='{DRILL_JOB}', interval=every)\n"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )


def sent_jobs(tmp_path: Path) -> Counter[str]:
    """Task names of the messages waiting in the filesystem broker (no worker consumed them)."""
    names: Counter[str] = Counter()
    for path in (tmp_path / "celery" / "in").glob("*.msg"):
        message = json.loads(path.read_text())
        names[message["headers"]["task"]] += 1
    return names


def claimed_slots(tmp_path: Path) -> list[int]:
    with sqlite3.connect(tmp_path / "conduit.sqlite3", timeout=10) as db:
        return [row[0] for row in db.execute("SELECT slot FROM periodic_runs WHERE job = ?", [DRILL_JOB])]


def test_two_beats_send_each_job_once_per_slot(tmp_path: Path) -> None:
    env = drill_env(tmp_path)
    migrate_with_one_fast_job(env)
    command = [str(BIN / "celery"), "-A", "conduit", "beat", "--loglevel", "INFO", "--max-interval", "1"]
    beats = [
        subprocess.Popen(
            [*command, "--pidfile", str(tmp_path / f"beat{n}.pid")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n in (1, 2)
    ]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(claimed_slots(tmp_path)) < 5:
            time.sleep(0.5)
        assert all(beat.poll() is None for beat in beats), "a beat exited early"
    finally:
        logs = []
        for beat in beats:
            beat.send_signal(signal.SIGTERM)
            logs.append(beat.communicate(timeout=30)[1].decode())
    slots = claimed_slots(tmp_path)
    assert len(slots) >= 5, logs
    assert len(slots) == len(set(slots)) and all(slot % 2 == 0 for slot in slots)
    assert sent_jobs(tmp_path) == Counter({DRILL_JOB: len(slots)}), "one message per slot, no more"
    skipped = sum(log.count("was sent by another beat; skipped") for log in logs)
    assert skipped >= 1, "both beats must have found the job due, or the drill proves nothing"


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_an_embedded_beat_dies_with_its_killed_worker(tmp_path: Path) -> None:
    env = drill_env(tmp_path)
    migrate_with_one_fast_job(env)
    worker = subprocess.Popen(
        [str(BIN / "celery"), "-A", "conduit", "worker", "-B", "--pool=solo", "--loglevel", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    beat_pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not beat_pids:
            time.sleep(0.5)
            beat_pids = children_of(worker.pid)
        assert beat_pids, "the worker started no embedded beat"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(alive(pid) for pid in beat_pids):
            time.sleep(0.2)
        assert not any(alive(pid) for pid in beat_pids), "the embedded beat outlived its worker"
    finally:
        for pid in beat_pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if worker.poll() is None:
            worker.kill()


def test_a_beat_whose_worker_died_while_it_started_exits_at_once() -> None:
    # the watcher is handed the worker's pid recorded before the fork; if that worker is already
    # gone (the beat's parent is now someone else), the beat exits without waiting for a poll
    code = (
        "import time, django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'conduit.settings'); "
        "django.setup(); from conduit.beat import exit_with_parent; "
        "exit_with_parent(os.getppid() + 987654, poll=60); time.sleep(30)"
    )
    started = time.monotonic()
    done = subprocess.run([str(BIN / "python"), "-c", code], cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0 and time.monotonic() - started < 25


def test_the_embedding_worker_is_the_pid_recorded_before_the_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    from conduit import beat

    class Child:
        _parent_pid = 4242

    monkeypatch.setattr(beat, "current_process", lambda: Child())
    assert beat.embedding_worker_pid() == 4242
    Child._parent_pid = None  # type: ignore[assignment]
    assert beat.embedding_worker_pid() == os.getppid()
