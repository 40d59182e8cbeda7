"""RabbitMQ as the broker, against the machine's RabbitMQ on 127.0.0.1:5672: writes,
a beat job and webhook processing go through it to a real Celery worker; a worker SIGKILLed while
it holds a delivery leaves that message to RabbitMQ, which hands it to the next worker, and the
write ledger still makes the note exactly once. The worker host serves its own /metrics.

Each test has a queue of its own (CELERY_TASK_DEFAULT_QUEUE), deleted afterwards, so runs on one
broker never meet. `.ci/run` sets CONDUIT_REQUIRE_RABBITMQ=1: there a broker that does not answer
fails the test instead of skipping it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from celery import Celery
from django.conf import settings
from django.utils import timezone
from kombu import Connection

from conduit.models import Heartbeat
from conduit.tenancy import system_scope
from integrations.models import WebhookEvent
from integrations.sandbox.webhooks import hubspot_event, signed_delivery
from reconcile.models import CrmWriteLog, DealMapping
from reconcile.queue import reconcile_crm_writes
from tests.conftest import Tenant
from tests.reconcile_helpers import connect_crm, created_records, writes
from tests.test_reconcile_drills import seed_due_rows
from tests.test_webhooks import SECRET

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RABBITMQ_URL = os.environ.get("CONDUIT_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
METRICS_TOKEN = "worker-metrics-token-" + "x" * 12
Status = CrmWriteLog.Status


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_answers() -> bool:
    try:
        with Connection(RABBITMQ_URL, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


@pytest.fixture
def queue() -> Iterator[str]:
    if not broker_answers():
        if os.environ.get("CONDUIT_REQUIRE_RABBITMQ"):
            pytest.fail(f"RabbitMQ does not answer at {RABBITMQ_URL}: .ci/run starts it")
        pytest.skip("RabbitMQ does not answer on 127.0.0.1:5672")
    name = f"conduit-test-{uuid.uuid4().hex[:12]}"
    yield name
    with Connection(RABBITMQ_URL) as conn:
        conn.default_channel.queue_delete(name)


def ready_messages(queue: str) -> int:
    """Messages RabbitMQ holds for the queue and has handed to no consumer."""
    with Connection(RABBITMQ_URL) as conn:
        _, ready, _consumers = conn.default_channel.queue_declare(queue=queue, passive=True)
    return int(ready)


def host_env(queue: str, sandbox: str, var_dir: Path, **extra: str) -> dict[str, str]:
    db = settings.DATABASES["default"]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return {
        **env,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": RABBITMQ_URL,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "HUBSPOT_API_BASE_URL": sandbox,
        "HUBSPOT_CLIENT_SECRET": SECRET,
        "CONDUIT_VAR_DIR": str(settings.VAR_DIR),  # the encryption keys the tests use
        "PROMETHEUS_MULTIPROC_DIR": str(var_dir / "prometheus"),
        "CONDUIT_METRICS_TOKEN": METRICS_TOKEN,
        "DJANGO_SETTINGS_MODULE": "conduit.settings",
        **extra,
    }


def start_worker(env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            "conduit",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "-n",
            f"{name}@%h",
            "-l",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> str:
    """SIGTERM (warm shutdown), then SIGKILL; returns the end of stderr, also printed when a
    test is failing (pytest shows it)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate(timeout=10)
    text = (err or b"").decode(errors="replace")[-3000:]
    if sys.exc_info()[0] is not None:
        print(f"--- stderr of {process.args}:\n{text}")
    return text


def wait_for(check: Callable[[], bool], what: str | Callable[[], str], within: float = 90) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, (
            f"timed out waiting for {what if isinstance(what, str) else what()}"
        )
        time.sleep(0.2)


def due_writes(alice: Tenant, count: int) -> list[int]:
    conn = connect_crm(alice, "hubspot")
    ids = seed_due_rows(alice, conn, count)
    with system_scope():
        DealMapping.objects.bulk_create(
            DealMapping(
                workspace=alice.workspace, connection=conn, email=f"p{i}@customer.example", contact_id="101"
            )
            for i in range(count)
        )
    return ids


def dispatch_through(queue: str) -> Callable[[int, str], Any]:
    broker = Celery(broker=RABBITMQ_URL, set_as_current=False)  # never the tests' (Redis) app
    return lambda write_id, token: broker.send_task(
        "reconcile.deliver_crm_write", args=(write_id, token), queue=queue
    )


def exactly_once(crm_env: dict[str, str], count: int) -> None:
    rows = writes()
    assert Counter(r.status for r in rows) == {Status.SUCCEEDED: count}
    bodies = [str(r) for r in created_records("hubspot", crm_env["hubspot"])]
    assert len(bodies) == count
    assert all(sum(row.marker in body for body in bodies) == 1 for row in rows), "a write made twice"


def test_writes_a_beat_job_and_webhooks_go_through_rabbitmq_and_the_worker_serves_its_metrics(
    crm_env: dict[str, str], alice: Tenant, queue: str, tmp_path: Path
) -> None:
    count = 25
    due_writes(alice, count)
    started = timezone.now()
    metrics_port = free_port()
    env = host_env(queue, crm_env["hubspot"], tmp_path, CONDUIT_WORKER_METRICS_PORT=str(metrics_port))
    worker = start_worker(env, "rabbit-a")
    beat = web = None
    try:
        result = reconcile_crm_writes(dispatch=dispatch_through(queue), limit=count)
        assert result.claimed == count
        wait_for(lambda: len(writes(status=Status.SUCCEEDED)) == count, "the deliveries")

        # a beat job: one fast heartbeat schedule, sent by `celery beat` to RabbitMQ, run by the worker
        from django_celery_beat.models import IntervalSchedule, PeriodicTask

        PeriodicTask.objects.update(enabled=False)
        every = IntervalSchedule.objects.create(every=2, period="seconds")
        PeriodicTask.objects.create(name="rabbit heartbeat", task="conduit.heartbeat", interval=every)
        Heartbeat.objects.filter(name="beat").delete()
        beat = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "conduit",
                "beat",
                "-l",
                "WARNING",
                "--max-interval",
                "1",
                "--pidfile",
                str(tmp_path / "beat.pid"),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        wait_for(lambda: Heartbeat.objects.filter(name="beat", beat_at__gte=started).exists(), "a heartbeat")

        # webhooks: received by gunicorn, queued on RabbitMQ, processed by the worker
        web_port = free_port()
        web = subprocess.Popen(
            [str(BIN / "gunicorn"), "conduit.wsgi", "--bind", f"127.0.0.1:{web_port}", "--workers", "1"],
            cwd=ROOT,
            env={**env, "ALLOWED_HOSTS": "127.0.0.1", "CONDUIT_PUBLIC_URL": f"http://127.0.0.1:{web_port}"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{web_port}"
        wait_for(lambda: _answers(f"{base}/healthz"), "gunicorn")
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
            for i in range(5)
        ]
        body, headers = signed_delivery(
            f"{base}/webhooks/hubspot", events, secret=SECRET, now_ms=int(time.time() * 1000)
        )
        assert (
            requests.post(f"{base}/webhooks/hubspot", data=body, headers=headers, timeout=10).status_code
            == 200
        )
        health = requests.get(f"{base}/healthz", timeout=10).json()
        wait_for(
            lambda: WebhookEvent.objects.filter(status__in=("processed", "duplicate")).count() == len(events),
            lambda: f"webhook processing: {list(WebhookEvent.objects.values_list('status', 'error'))}",
        )

        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        refused = requests.get(metrics, timeout=10)
        scraped = requests.get(metrics, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
        other = requests.get(f"http://127.0.0.1:{metrics_port}/admin/", timeout=10)
    finally:
        for process in (web, beat):
            if process is not None:
                stop(process)
        err = stop(worker)
    exactly_once(crm_env, count)
    assert health["broker"] == {"ok": True, "transport": "amqp"}
    assert refused.status_code == 401 and "metrics" in refused.json()["message"]
    assert scraped.status_code == 200, err
    assert 'crm_sync_duration_seconds_count{operation="create_note",provider="hubspot"}' in scraped.text
    assert "crm_webhook_events_total{" in scraped.text
    assert WebhookEvent.objects.filter(status="processed").exists()
    assert other.status_code == 404
    assert METRICS_TOKEN not in err


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code in (200, 503)
    except requests.RequestException:
        return False


def test_a_worker_killed_holding_a_delivery_leaves_it_to_rabbitmq_for_the_next_worker(
    crm_env: dict[str, str], alice: Tenant, queue: str, tmp_path: Path
) -> None:
    count = 8
    due_writes(alice, count)
    sandbox = crm_env["hubspot"]
    # the first note hangs at the provider: the worker holds its message, unacknowledged (acks_late)
    requests.post(
        f"{sandbox}/_sandbox/faults",
        json={"kind": "hang", "hang_seconds": 60, "count": 1, "path_contains": "/objects/notes"},
        timeout=5,
    ).raise_for_status()
    env = host_env(queue, sandbox, tmp_path)
    first = start_worker(env, "rabbit-killed")
    second = None
    try:
        result = reconcile_crm_writes(dispatch=dispatch_through(queue), limit=count)
        assert result.claimed == count
        wait_for(
            lambda: not requests.get(f"{sandbox}/_sandbox/state", timeout=5).json()["faults"], "the hang"
        )
        wait_for(
            lambda: ready_messages(queue) == count - 1,
            lambda: f"the worker to hold one message ({ready_messages(queue)} ready)",
        )
        os.killpg(first.pid, signal.SIGKILL)  # the worker dies mid-send, before its ack
        first.wait(timeout=10)
        wait_for(lambda: ready_messages(queue) == count, "RabbitMQ to take the message back", within=30)
        with system_scope():
            held = CrmWriteLog.objects.filter(status=Status.SENDING, outcome_unknown=True).count()
        second = start_worker(env, "rabbit-next")
        wait_for(lambda: len(writes(status=Status.SUCCEEDED)) == count, "the next worker")
        left = ready_messages(queue)
    finally:
        err = stop(second) if second is not None else ""
        if first.poll() is None:
            stop(first)
    assert held == 1, "exactly one write was in flight when its worker died"
    assert left == 0
    exactly_once(crm_env, count)
    assert "Traceback" not in err, err


def test_rabbitmq_is_configured_from_celery_broker_url(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "CELERY_BROKER_URL": RABBITMQ_URL,
        "CONDUIT_VAR_DIR": str(tmp_path),
    }
    code = (
        "from django.conf import settings as s; from conduit.celery import app; "
        "print(app.conf.broker_url.split(':')[0], s.CELERY_BROKER_TRANSPORT_OPTIONS, "
        "s.CONDUIT_BROKER_ACK_TIMEOUT_SECONDS, s.CONDUIT_HEALTH_SPREAD_SECONDS, app.conf.task_acks_late)"
    )
    shown = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "conduit.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split(maxsplit=1)
    assert shown[0] == "amqp"
    assert shown[1].strip() == "{'confirm_publish': True} 1800 1500 True"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"CELERY_BROKER_URL": "kafka://x"}, "CELERY_BROKER_URL must be a redis, rediss, amqp, amqps URL"),
        ({"CELERY_BROKER_URL": RABBITMQ_URL, "REDIS_URL": ""}, "CELERY_BROKER_URL needs REDIS_URL too"),
        (
            {"CELERY_BROKER_URL": RABBITMQ_URL, "CONDUIT_HEALTH_SPREAD_SECONDS": "3000"},
            "CONDUIT_HEALTH_SPREAD_SECONDS must stay 300 s below CONDUIT_BROKER_ACK_TIMEOUT_SECONDS",
        ),
        ({"CONDUIT_BROKER_ACK_TIMEOUT_SECONDS": "60"}, "CONDUIT_BROKER_ACK_TIMEOUT_SECONDS must be between"),
    ],
)
def test_a_broker_setting_that_would_lose_or_double_work_stops_the_process(
    tmp_path: Path, extra: dict[str, str], message: str
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "CONDUIT_VAR_DIR": str(tmp_path),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        **extra,
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_raised_consumer_timeout_allows_the_hour_long_health_spread(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "CONDUIT_VAR_DIR": str(tmp_path),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "CELERY_BROKER_URL": RABBITMQ_URL,
        "CONDUIT_BROKER_ACK_TIMEOUT_SECONDS": "3900",
    }
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.CONDUIT_HEALTH_SPREAD_SECONDS)",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "conduit.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert shown.stdout.strip() == "3000"


def test_the_queue_length_is_read_passively_on_rabbitmq(queue: str, settings: Any) -> None:
    from conduit import health
    from conduit.celery import app

    with Connection(RABBITMQ_URL) as conn:
        channel = conn.default_channel
        channel.queue_declare(queue=queue, durable=True, auto_delete=False)
        conn.Producer().publish("x", exchange="", routing_key=queue, serializer="json")
    settings.BROKER_AMQP = True
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    old = app.conf.broker_url
    app.conf.broker_url = RABBITMQ_URL
    try:
        app.pool.force_close_all()
        wait_for(lambda: health.broker_queue_length()["length"] == 1, "the published message")
        shown = health.broker_queue_length()
        missing = health.broker_queue_length(f"{queue}-never-declared")
    finally:
        app.conf.broker_url = old
        app.pool.force_close_all()
    assert shown == {"queue": queue, "length": 1, "transport": "amqp"}
    assert missing["length"] is None and missing["error"]
