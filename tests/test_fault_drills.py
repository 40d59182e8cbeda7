"""Fault drills with real processes: the broker and limiter's Redis restarted while a Celery worker
delivers writes, and a private Postgres restarted while writes, webhook deliveries and ingest are
in flight through gunicorn and the worker. Afterwards every write is delivered exactly once (the
ten-minute reconcile sweep, run with its clock past the lease, recovers what a restart lost),
every webhook event is stored once and processed, every accepted ingest is stored, and /healthz
comes back to 200 without a restart of Conduit's processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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
from integrations.sandbox.webhooks import hubspot_event, signed_delivery
from reconcile.delivery import deliver_write
from reconcile.models import CrmWriteLog, DealMapping
from reconcile.queue import reconcile_crm_writes
from tests.conftest import Tenant
from tests.reconcile_helpers import connect_crm, created_records, writes
from tests.test_reconcile_drills import seed_due_rows
from tests.test_webhooks import SECRET

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
Status = CrmWriteLog.Status
WRITES = 120
MAYA = "maya.lopez@acme-logistics.example"  # a contact of the sandbox portal (id 101)


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
        except requests.RequestException:  # refused, or busy past the timeout
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
        result = reconcile_crm_writes(  # the groups reconcile hands over, one task each
            dispatch_group=lambda ids, token: broker.send_task(
                "reconcile.deliver_crm_writes", args=(ids, token)
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


# --- Postgres restarted under load -------------------------------------------------------------

PG_BIN = (
    Path("/usr/lib/postgresql")
    / (sorted(os.listdir("/usr/lib/postgresql"))[-1] if Path("/usr/lib/postgresql").is_dir() else "none")
    / "bin"
)

SEED = """
import hashlib, json, sys, requests
from datetime import timedelta
from django.utils import timezone
from conduit.models import Message
from conduit.services import do_create_api_token, do_sign_up
from conduit.tenancy import system_scope
from conduit.models import Workspace
from integrations.models import CrmConnection
from reconcile.models import CrmWriteLog, DealMapping
user = do_sign_up(email="drill@alice.example", password="drill-password-1234", workspace_name="Alice")
with system_scope():
    ws = Workspace.objects.get()
    grant = requests.post(sys.argv[1] + "/_sandbox/tokens", json={}, timeout=5).json()
    conn = CrmConnection.objects.create(workspace=ws, crm="hubspot", status="connected",
        external_account_key="4400001", external_account_json={"environment": "login"},
        access_token=grant["access_token"], refresh_token=grant["refresh_token"],
        token_expires_at=timezone.now() + timedelta(hours=2), connected_at=timezone.now(), dry_run=False)
    message = Message.objects.create(
        workspace=ws, message_id="seed@x", subject="s", from_address="a@b.example")
    now = timezone.now()
    CrmWriteLog.objects.bulk_create([CrmWriteLog(workspace=ws, connection=conn, message=message,
        provider="hubspot", operation="create_note", target=f"p{i}@customer.example",
        idempotency_key=hashlib.sha256(f"pg-drill-{i}".encode()).hexdigest(),
        payload={"subject": "s", "text": "t", "occurred_at": now.isoformat()},
        status="planned", next_retry_at=now - timedelta(minutes=1)) for i in range(int(sys.argv[2]))])
    DealMapping.objects.bulk_create([DealMapping(workspace=ws, connection=conn,
        email=f"p{i}@customer.example", contact_id="101") for i in range(int(sys.argv[2]))])
print(json.dumps({"token": do_create_api_token(ws, "drill", actor=user).raw}))
"""

RECOVER = """
import json
from datetime import timedelta
from django.conf import settings
from django.utils import timezone
from integrations.webhooks.processing import process_backlog
from reconcile.delivery import deliver_write
from reconcile.queue import reconcile_crm_writes
for step in range(10):
    at = timezone.now() + timedelta(seconds=settings.CONDUIT_WRITE_LEASE_SECONDS + 1 + 600 * step)
    done = reconcile_crm_writes(now=lambda: at, dispatch=lambda i, t: deliver_write(i, t, now=lambda: at))
    if done.claimed == 0:
        break
process_backlog(now=timezone.now() + timedelta(minutes=5))
"""

HEARTBEAT = """
from django.utils import timezone
from conduit.models import Heartbeat
Heartbeat.objects.update_or_create(name="beat", defaults={"beat_at": timezone.now()})
"""

REPORT = """
import json
from collections import Counter
from conduit.models import Message
from conduit.tenancy import system_scope
from integrations.models import WebhookEvent
from reconcile.models import CrmWriteLog
with system_scope():
    print(json.dumps({
        "messages": sorted(Message.objects.exclude(message_id="seed@x").values_list("message_id", flat=True)),
        "events": list(WebhookEvent.objects.values_list("event_id", "status", "deliveries")),
        "writes": Counter(CrmWriteLog.objects.values_list("status", flat=True)),
        "markers": [w.marker for w in CrmWriteLog.objects.all()],
    }))
"""


class PrivatePostgres:
    """A Postgres cluster of the test's own (never the machine's shared one), run as the postgres
    user in a directory it owns, restartable in place."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="conduit-pg-drill-", dir="/tmp"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"

    def as_postgres(self, *command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120
        )

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/conduit"

    def init(self) -> None:
        self.as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"
        )
        self.start()
        self.as_postgres(
            str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "conduit"
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        self.as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Any:
    if not (PG_BIN / "initdb").exists() or not shutil.which("runuser"):
        pytest.skip("no Postgres server binaries to start a private cluster")
    cluster = PrivatePostgres()
    cluster.init()
    yield cluster
    cluster.remove()


def manage(env: dict[str, str], *args: str, timeout: int = 300) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def shell(env: dict[str, str], script: str, *argv: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, sys; django.setup(); sys.argv = ['drill', *sys.argv[1:]]; exec("
            + repr(script)
            + ")",
            *argv,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


UNANSWERED: Counter[str] = Counter()


def post_until_answered(send: Any, *, attempts: int = 1) -> int:
    """The status of one request (0 when the server did not answer), retried like a sender would;
    every answer that is not a 2xx is counted in UNANSWERED."""
    status = 0
    for _ in range(attempts):
        try:
            status = send().status_code
        except requests.RequestException:
            status = 0
        if 200 <= status < 300:
            break
        UNANSWERED[str(status)] += 1
        time.sleep(0.5)
    return status


def test_postgres_restarted_while_writes_webhooks_and_ingest_are_in_flight(
    crm_env: dict[str, str], private_postgres: PrivatePostgres, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    UNANSWERED.clear()
    web_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DATABASE_URL": private_postgres.url,
        "REDIS_URL": private_redis.url,
        "CONDUIT_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "conduit.settings",
        "HUBSPOT_API_BASE_URL": crm_env["hubspot"],
        "HUBSPOT_CLIENT_SECRET": SECRET,
        "ALLOWED_HOSTS": "127.0.0.1",
        "CONDUIT_PUBLIC_URL": f"http://127.0.0.1:{web_port}",
        "CONDUIT_BEAT_STALE_SECONDS": "3600",
    }
    manage(env, "migrate", "-v", "0")
    token = json.loads(shell(env, SEED, crm_env["hubspot"], str(WRITES)))["token"]
    shell(env, HEARTBEAT)
    web = subprocess.Popen(
        [str(BIN / "gunicorn"), "conduit.wsgi", "--bind", f"127.0.0.1:{web_port}", "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [str(BIN / "celery"), "-A", "conduit", "worker", "--pool=solo", "--loglevel", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{web_port}"
    accepted: list[str] = []
    events = [
        hubspot_event(
            {
                "subscriptionType": "contact.propertyChange",
                "objectId": 101,
                "propertyName": "firstname",
                "propertyValue": f"v{i}",
            },
            now_ms=int(time.time() * 1000),
        )
        for i in range(30)
    ]
    refused: list[dict[str, Any]] = []

    def ingest() -> None:
        for i in range(40):
            body = {"message_id": f"pg-drill-{i}@x", "from": MAYA, "subject": f"Drill {i}"}
            status = post_until_answered(
                lambda body=body: requests.post(
                    f"{base}/api/v1/messages",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=10,
                )
            )
            if 200 <= status < 300:
                accepted.append(body["message_id"])
            time.sleep(0.05)

    def webhooks() -> None:
        for item in events:
            body, headers = signed_delivery(
                f"{base}/webhooks/hubspot", [item], secret=SECRET, now_ms=int(time.time() * 1000)
            )
            status = post_until_answered(
                lambda body=body, headers=headers: requests.post(
                    f"{base}/webhooks/hubspot", data=body, headers=headers, timeout=10
                )
            )
            if status != 200:
                refused.append(item)
            time.sleep(0.05)

    try:
        assert healthz(web_port, until=200, within=60) == 200
        manage(env, "reconcile_crm_writes")
        senders = [threading.Thread(target=ingest), threading.Thread(target=webhooks)]
        for sender in senders:
            sender.start()
        time.sleep(1.0)
        private_postgres.stop("immediate")  # in-flight transactions are cut off mid-way
        assert healthz(web_port, until=503) == 503
        time.sleep(1)
        private_postgres.start()
        assert healthz(web_port, until=200) == 200, "/healthz did not recover without a restart"
        for sender in senders:
            sender.join(timeout=120)
        for item in refused:  # HubSpot redelivers what was not acknowledged
            body, headers = signed_delivery(
                f"{base}/webhooks/hubspot", [item], secret=SECRET, now_ms=int(time.time() * 1000)
            )
            assert (
                post_until_answered(
                    lambda body=body, headers=headers: requests.post(
                        f"{base}/webhooks/hubspot", data=body, headers=headers, timeout=10
                    ),
                    attempts=10,
                )
                == 200
            )
        time.sleep(5)  # the worker finishes what it still holds
        assert worker.poll() is None and web.poll() is None, "a process died with the database"
        shell(env, RECOVER)
        report = json.loads(shell(env, REPORT))
    finally:
        web.terminate()
        worker.terminate()
        web.wait(timeout=30)
        _, err = worker.communicate(timeout=60)
    assert sum(UNANSWERED.values()) > 0, "no request met the outage: the drill proves nothing"
    assert accepted and set(accepted) <= set(report["messages"]), "an accepted message was lost"
    assert len(report["messages"]) == len(set(report["messages"]))
    stored = Counter(event_id for event_id, _, _ in report["events"])
    assert set(stored) == {str(e["eventId"]) for e in events} and set(stored.values()) == {1}
    assert {status for _, status, _ in report["events"]} <= {"processed", "duplicate"}, report["events"]
    assert set(report["writes"]) == {"succeeded"}, (report["writes"], err.decode()[-2000:])
    bodies = [str(r) for r in created_records("hubspot", crm_env["hubspot"])]
    assert len(bodies) == sum(report["writes"].values())
    assert all(sum(marker in body for body in bodies) == 1 for marker in report["markers"]), (
        "a write made twice"
    )
