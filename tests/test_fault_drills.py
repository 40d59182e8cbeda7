"""Fault drills with real processes: the broker and limiter's Redis restarted while a Celery worker
delivers writes. Afterwards every write is delivered exactly once (the ten-minute reconcile
sweep, run here with its clock past the lease, recovers what the restart lost), and the worker
carries on without a restart of its own."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from celery import Celery
from django.conf import settings
from django.utils import timezone

from conduit.models import Heartbeat
from conduit.tenancy import system_scope
from reconcile.delivery import deliver_write
from reconcile.models import CrmWriteLog, DealMapping
from reconcile.queue import reconcile_crm_writes
from tests.conftest import Tenant
from tests.reconcile_helpers import connect_crm, created_records, writes
from tests.test_reconcile_drills import seed_due_rows

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
Status = CrmWriteLog.Status
WRITES = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server of the test's own (never the machine's shared one), restartable in place."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(shutil.which("redis-server") or "redis-server", "--port", str(self.port)),
                *("--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "private redis did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Any:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process and server.process.poll() is None:
        server.kill()


def worker_env(redis_url: str, crm_env: dict[str, str]) -> dict[str, str]:
    db = settings.DATABASES["default"]
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": redis_url,
        "HUBSPOT_API_BASE_URL": crm_env["hubspot"],
        "CONDUIT_VAR_DIR": str(settings.VAR_DIR),
        "DJANGO_SETTINGS_MODULE": "conduit.settings",
    }


def healthz(port: int, *, until: int, within: float = 30) -> int:
    """Poll /healthz until it answers `until` (or the time is up); returns the last status."""
    deadline, status = time.monotonic() + within, 0
    while time.monotonic() < deadline:
        try:
            status = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code
        except requests.ConnectionError:
            status = 0
        if status == until:
            break
        time.sleep(0.2)
    return status


def recover_with_the_sweep(rounds: int = 10) -> Counter[str]:
    """The ten-minute reconcile, its clock moved past the lease and then past each retry (the
    burst may meet the provider's rate limit), delivering in-process until nothing is due."""
    outcomes: Counter[str] = Counter()
    for step in range(rounds):
        at = timezone.now() + timedelta(seconds=settings.CONDUIT_WRITE_LEASE_SECONDS + 1 + 600 * step)
        result = reconcile_crm_writes(
            now=lambda at=at: at,
            dispatch=lambda i, t, at=at: outcomes.update([deliver_write(i, t, now=lambda: at).code]),
        )
        if result.claimed == 0:
            break
    return outcomes


def test_redis_restarted_while_writes_are_in_flight_delivers_each_write_once(
    crm_env: dict[str, str], alice: Tenant, private_redis: PrivateRedis
) -> None:
    conn = connect_crm(alice, "hubspot")
    ids = seed_due_rows(alice, conn, WRITES)
    with system_scope():
        DealMapping.objects.bulk_create(
            [
                DealMapping(
                    workspace=alice.workspace,
                    connection=conn,
                    email=f"p{i}@customer.example",
                    contact_id="101",
                )
                for i in range(WRITES)
            ]
        )
    with system_scope():
        Heartbeat.objects.update_or_create(name="beat", defaults={"beat_at": timezone.now()})
    env = worker_env(private_redis.url, crm_env)
    worker = subprocess.Popen(
        [str(BIN / "celery"), "-A", "conduit", "worker", "--pool=solo", "--loglevel", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    web_port = free_port()
    web = subprocess.Popen(
        [str(BIN / "gunicorn"), "conduit.wsgi", "--bind", f"127.0.0.1:{web_port}", "--workers", "1"],
        cwd=ROOT,
        env={**env, "ALLOWED_HOSTS": "127.0.0.1", "CONDUIT_BEAT_STALE_SECONDS": "3600"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    broker = Celery(broker=private_redis.url, set_as_current=False)  # never the tests' app
    try:
        assert healthz(web_port, until=200) == 200
        result = reconcile_crm_writes(
            dispatch=lambda write_id, token: broker.send_task(
                "reconcile.deliver_crm_write", args=(write_id, token)
            ),
            limit=WRITES,
        )
        assert result.claimed == WRITES
        deadline = time.monotonic() + 90
        while len(created_records("hubspot", crm_env["hubspot"])) < WRITES // 4:
            assert time.monotonic() < deadline, "the worker delivered nothing"
            time.sleep(0.1)
        private_redis.kill()  # queued and unacknowledged deliveries are gone with it
        assert healthz(web_port, until=503) == 503
        private_redis.start()
        assert healthz(web_port, until=200) == 200, "/healthz did not recover without a restart"
        settled = time.monotonic() + 60
        done = 0
        while time.monotonic() < settled:  # the worker reconnects and finishes what it still holds
            time.sleep(2)
            now_done = len(writes(status=Status.SUCCEEDED))
            if now_done == done and not writes(status=Status.PLANNED):
                break
            done = now_done
        assert worker.poll() is None, "the worker died with its broker"
        lost = len(writes(status=Status.SENDING))
        outcomes = recover_with_the_sweep()
    finally:
        web.terminate()
        web.wait(timeout=30)
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    rows = writes()
    assert Counter(r.status for r in rows) == {Status.SUCCEEDED: WRITES}, err.decode()[-2000:]
    assert lost > 0, "the restart lost no delivery: the drill proves nothing"
    assert outcomes["succeeded"] + outcomes["found_existing"] >= lost, outcomes
    records = created_records("hubspot", crm_env["hubspot"])
    bodies = [str(r) for r in records]
    assert len(records) == WRITES
    assert all(sum(row.marker in body for body in bodies) == 1 for row in rows), "a write made twice"
    assert len({r.external_id for r in rows}) == WRITES
    assert sorted(ids) == sorted(r.pk for r in rows)
