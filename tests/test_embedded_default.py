"""The embedded default of `make run`: SQLite (WAL) and kombu's filesystem broker, with beat
inside a solo worker. Runs the real processes, no Postgres or Redis involved."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_worker_with_beat_on_filesystem_broker_records_heartbeats(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": "", "REDIS_URL": "", "CONDUIT_VAR_DIR": str(tmp_path)}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=180
    )
    worker = subprocess.Popen(
        [str(BIN / "celery"), "-A", "conduit", "worker", "-B", "--pool=solo", "--loglevel", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    beat_at = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and beat_at is None:
            time.sleep(1)
            with sqlite3.connect(tmp_path / "conduit.sqlite3") as db:
                row = db.execute("SELECT beat_at FROM heartbeats WHERE name = 'beat'").fetchone()
            beat_at = row[0] if row else None
        assert worker.poll() is None, "worker exited early"
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=30)
    assert beat_at is not None, err.decode()[-2000:]
    assert list((tmp_path / "celery").iterdir()), "filesystem broker folders under var/celery"
    with sqlite3.connect(tmp_path / "conduit.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
