"""Webhook inbox benchmark: signed HubSpot deliveries over real sockets to gunicorn, processed by a
Celery worker, as in production.

A database conduit_bench_webhooks_<pid> on DATABASE_URL's server (else BENCH_PG_URL's, else the
local postgres) is created and migrated, with one workspace whose HubSpot connection names the
portal and --mappings cached contact lookups. Child processes: gunicorn (2 workers, the Procfile's
command) and a Celery worker (--concurrency 2, prefork) on a Redis broker (BENCH_REDIS_URL, default
redis://127.0.0.1:6379/10, flushed before and after). --senders threads post --deliveries
deliveries of --events contact.propertyChange events each, signed with the v3 scheme; --redeliver
of them are sent a second time (HubSpot retries), and --forged deliveries carry a wrong signature.

Figures: acknowledgement time per delivery (p50 / p95 / max), intake rate, and receipt ->
processed latency per event from webhook_events (p50 / p95 / max), the number runbook 003 alerts on.
Targets: every delivery acknowledged well inside HubSpot's 5 s timeout (p95 < 1 s); processing P95
under 2 s (runbook 003: webhook_latency_p95 > 2s is a warning); every distinct event stored once and
processed once (attempts = 1), redeliveries counted in `deliveries`, forged ones not stored. The
database is dropped at the end, also on error. Exits 0 unless something broke (or, with --strict,
a target was missed).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import requests
from psycopg import sql

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != BENCH)]

from bench.common import percentile, verdict  # noqa: E402

DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/10"
SECRET = "bench-hubspot-client-secret"  # a throwaway secret of this bench
PORTAL = 4400001


# History: processed events of earlier days, so lookups are measured against a table that has rows.
PREFILL = """
INSERT INTO webhook_events (provider, event_id, event_type, external_account_key, object_id, occurred_at,
  status, attempts, deliveries, payload, error, received_at, processed_at)
SELECT 'hubspot', 'old-' || g, 'contact.propertyChange', %(portal)s, (1000 + g %% 5000)::text,
  now() - interval '2 days' + g * interval '1 ms', 'processed', 1, 1,
  jsonb_build_object('propertyName', 'firstname'), '', now() - interval '2 days', now() - interval '2 days'
FROM generate_series(1, %(n)s) g"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def signed(url: str, events: list[dict[str, Any]], secret: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    timestamp = str(int(time.time() * 1000))
    digest = hmac.new(secret.encode(), f"POST{url}".encode() + body + timestamp.encode(), hashlib.sha256)
    return body, {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": base64.b64encode(digest.digest()).decode(),
        "X-HubSpot-Request-Timestamp": timestamp,
    }


def delivery(index: int, events: int) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    return [
        {
            "eventId": index * 1000 + n,
            "subscriptionId": 1,
            "portalId": PORTAL,
            "appId": 1,
            "occurredAt": now,
            "subscriptionType": "contact.propertyChange",
            "attemptNumber": 0,
            "objectId": 1000 + (index * events + n) % 5000,
            "propertyName": "firstname",
            "propertyValue": "x",
            "changeSource": "CRM",
        }
        for n in range(events)
    ]


def child_env(db_url: str, redis_url: str, var_dir: str, public_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "conduit.settings",
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "CONDUIT_VAR_DIR": var_dir,
        "CONDUIT_PUBLIC_URL": public_url,
        "HUBSPOT_CLIENT_ID": "bench-client",
        "HUBSPOT_CLIENT_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
        "DEBUG": "false",
    }


def seed(env: dict[str, str], mappings: int) -> None:
    """One workspace, its HubSpot connection for PORTAL, and cached lookups the events touch."""
    script = f"""
import django; django.setup()
from django.utils import timezone
from conduit.models import Workspace
from conduit.tenancy import system_scope
from integrations.models import CrmConnection
from reconcile.models import DealMapping
with system_scope():
    ws = Workspace.objects.create(name="Bench", slug="bench")
    conn = CrmConnection.objects.create(workspace=ws, crm="hubspot", status="connected",
        external_account_key="{PORTAL}", access_token="bench-at", refresh_token="bench-rt",
        connected_at=timezone.now(), dry_run=False)
    DealMapping.objects.bulk_create([DealMapping(workspace=ws, connection=conn,
        email=f"c{{i}}@bench.example", contact_id=str(1000 + i), deal_id="", refreshed_at=timezone.now())
        for i in range({mappings})], batch_size=2000)
"""
    subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True)


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_healthy(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code in (200, 503):
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError("gunicorn did not answer /healthz")


def send_all(
    url: str, plan: list[tuple[list[dict[str, Any]], str]], senders: int, rate: float = 0
) -> list[tuple[int, float]]:
    """Post every (events, secret) of the plan from `senders` threads, at most `rate` deliveries per
    second in all (0: as fast as they go); (status, seconds) each."""
    results: list[tuple[int, float]] = []
    lock, cursor = threading.Lock(), iter(enumerate(plan))
    begin = time.perf_counter()

    def run() -> None:
        session = requests.Session()
        while True:
            with lock:
                numbered = next(cursor, None)
            if numbered is None:
                return
            index, item = numbered
            if rate:
                time.sleep(max(0.0, begin + index / rate - time.perf_counter()))
            body, headers = signed(url, item[0], item[1])
            started = time.perf_counter()
            status = session.post(url, data=body, headers=headers, timeout=30).status_code
            with lock:
                results.append((status, time.perf_counter() - started))

    threads = [threading.Thread(target=run) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def wait_processed(db_url: str, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM webhook_events WHERE status <> 'received' AND event_id NOT LIKE 'old-%'"
            ).fetchone()
            if row and row[0] >= expected:
                return
            time.sleep(0.5)
    raise RuntimeError(f"events still unprocessed after {timeout:.0f} s")


def outcome(db_url: str) -> dict[str, Any]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        latencies = [
            float(r[0])
            for r in conn.execute(
                "SELECT extract(epoch FROM processed_at - received_at) FROM webhook_events "
                "WHERE processed_at IS NOT NULL AND event_id NOT LIKE 'old-%'"
            )
        ]
        stats = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE attempts = 1), count(*) FILTER (WHERE deliveries = 2),"
            " count(*) FILTER (WHERE status = 'processed'), count(*) FILTER (WHERE status = 'duplicate')"
            " FROM webhook_events WHERE event_id NOT LIKE 'old-%'"
        ).fetchone()
        stale = conn.execute(
            "SELECT count(*) FROM crm_deal_mappings WHERE refreshed_at < '2001-01-01'"
        ).fetchone()
    assert stats is not None and stale is not None
    return {
        "latencies": latencies,
        "stored": stats[0],
        "once": stats[1],
        "redelivered": stats[2],
        "processed": stats[3],
        "duplicate": stats[4],
        "stale_mappings": stale[0],
    }


# The duplicate check of integrations/webhooks/processing.py for one event (a batch asks the same
# index with lists of accounts, objects and moments).
SAME_CHANGE = """
SELECT 1 FROM webhook_events
WHERE provider = 'hubspot' AND external_account_key = %s AND object_id = %s AND event_type = %s
  AND occurred_at = %s AND (payload -> 'propertyName') = to_jsonb(%s::text) AND status = 'processed'
  AND NOT id = %s
LIMIT 1"""


def same_change_ms(db_url: str, samples: int) -> float:
    """Mean time of the duplicate check for `samples` events of the history, in ms."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, external_account_key, object_id, event_type, occurred_at FROM webhook_events "
            "WHERE event_id LIKE 'old-%%' ORDER BY random() LIMIT %s",
            [samples],
        ).fetchall()
        started = time.perf_counter()
        for pk, account, object_id, event_type, occurred_at in rows:
            conn.execute(
                SAME_CHANGE, [account, object_id, event_type, occurred_at, "firstname", pk]
            ).fetchall()
        return (time.perf_counter() - started) * 1000 / max(len(rows), 1)


def index_effect(db_url: str, samples: int = 200) -> tuple[float, float]:
    """(with the webhook_same_change index, without it) mean duplicate-check time, in one run."""
    indexed = same_change_ms(db_url, samples)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP INDEX webhook_same_change")
        conn.execute("ANALYZE webhook_events")
    return indexed, same_change_ms(db_url, samples)


def spread(values: list[float]) -> str:
    p50, p95, top = (percentile(values, q) * 1000 for q in (50, 95, 100))
    return f"p50 {p50:.0f} / p95 {p95:.0f} / max {top:.0f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--events", type=int, default=5, help="events per delivery")
    parser.add_argument("--redeliver", type=int, default=200, help="deliveries sent twice")
    parser.add_argument("--forged", type=int, default=100, help="deliveries with a wrong signature")
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument(
        "--rate",
        type=float,
        default=20,
        help="deliveries per second in all (0: a burst, as fast as possible)",
    )
    parser.add_argument("--mappings", type=int, default=5000)
    parser.add_argument(
        "--prefill", type=int, default=200_000, help="processed events already in webhook_events (history)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for processing")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    server = os.environ.get("DATABASE_URL") or os.environ.get("BENCH_PG_URL") or DEFAULT_PG
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)
    name = f"conduit_bench_webhooks_{os.getpid()}"
    parts = urlsplit(server)
    admin_url = parts._replace(path="/postgres").geturl()
    db_url = parts._replace(path=f"/{name}").geturl()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/webhooks/hubspot"
    started = time.perf_counter()
    children: list[subprocess.Popen[bytes]] = []
    import redis

    broker = redis.Redis.from_url(redis_url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with tempfile.TemporaryDirectory(prefix="conduit-bench-webhooks-") as var_dir:
            env = child_env(db_url, redis_url, var_dir, base)
            manage = [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"]
            subprocess.run(manage, env=env, cwd=ROOT, check=True)
            seed(env, args.mappings)
            broker.flushdb()
            bin_dir = Path(sys.executable).parent
            gunicorn = [str(bin_dir / "gunicorn"), "conduit.wsgi", "-c", "python:conduit.gunicorn"]
            children.append(
                start(
                    [*gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", "2"],
                    env,
                    Path(var_dir) / "web.log",
                )
            )
            worker = [
                str(bin_dir / "celery"),
                "-A",
                "conduit",
                "worker",
                "--concurrency",
                "2",
                "--loglevel",
                "WARNING",
            ]
            children.append(start(worker, env, Path(var_dir) / "worker.log"))
            wait_healthy(base)
            # warm-up: one delivery through web and worker, so worker start-up is not measured
            send_all(url, [(delivery(99_000_000, 1), SECRET)], 1)
            wait_processed(db_url, 1, timeout=120)
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("DELETE FROM webhook_events")
                conn.execute(PREFILL, {"n": args.prefill, "portal": str(PORTAL)})
                conn.execute("ANALYZE webhook_events")

            plan = [(delivery(i, args.events), SECRET) for i in range(args.deliveries)]
            plan += [
                plan[i * max(1, args.deliveries // max(1, args.redeliver))] for i in range(args.redeliver)
            ]
            plan += [(delivery(10_000_000 + i, args.events), "forged-secret") for i in range(args.forged)]
            sent_at = time.perf_counter()
            results = send_all(url, plan, args.senders, args.rate)
            intake = time.perf_counter() - sent_at
            unique = args.deliveries * args.events
            try:
                wait_processed(db_url, unique, timeout=args.timeout)
            except RuntimeError:
                print((Path(var_dir) / "worker.log").read_text()[-3000:], file=sys.stderr)
                raise
            got = outcome(db_url)
            indexed_ms, unindexed_ms = index_effect(db_url)
    finally:
        for child in children:
            try:
                os.killpg(child.pid, 15)
                child.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(child.pid, 9)
        broker.flushdb()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    acks = [seconds for status, seconds in results if status == 200]
    refused = sum(1 for status, _ in results if status == 401)
    ack_p95, proc_p95 = percentile(acks, 95), percentile(got["latencies"], 95)
    print(
        f"webhook inbox: {len(plan)} deliveries ({args.deliveries} x {args.events} events, "
        f"{args.redeliver} redelivered, {args.forged} forged) from {args.senders} senders, "
        f"{'as fast as they go' if not args.rate else f'paced at {args.rate:.0f} deliveries/s'}"
    )
    print(
        f"  intake: {len(plan) / intake:.0f} deliveries/s, {unique / intake:.0f} events/s over {intake:.1f} s"
    )
    print(f"  acknowledgement: {spread(acks)}  [{verdict(ack_p95 < 1.0)} p95 < 1000 ms]")
    print(f"  receipt -> processed: {spread(got['latencies'])}  [{verdict(proc_p95 < 2.0)} p95 < 2000 ms]")
    redelivered = args.redeliver * args.events
    once = got["stored"] == unique and got["once"] == unique and got["redelivered"] == redelivered
    exact = once and refused == args.forged
    print(
        f"  stored {got['stored']} of {unique} distinct events, {got['once']} processed exactly once, "
        f"{got['redelivered']} of {redelivered} redelivered events with deliveries = 2, "
        f"{refused} of {args.forged} forged deliveries refused (401)  [{verdict(exact)}]"
    )
    print(
        f"  outcomes: {got['processed']} processed, {got['duplicate']} duplicate; "
        f"{got['stale_mappings']} cached lookups marked stale"
    )
    ratio = unindexed_ms / max(indexed_ms, 1e-6)
    print(
        f"  duplicate check over {args.prefill} history rows: {indexed_ms:.2f} ms with the "
        f"webhook_same_change index, {unindexed_ms:.2f} ms without it ({ratio:.0f}x)  "
        f"[{verdict(indexed_ms < 5)} < 5 ms per event]"
    )
    print(f"database {name} dropped; the bench ran {time.perf_counter() - started:.0f} s")
    ok = ack_p95 < 1.0 and proc_p95 < 2.0 and exact and indexed_ms < 5
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    raise SystemExit(main())
