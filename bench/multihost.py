"""The multi-host drill: several worker "hosts" around one Postgres, one broker and one
beat deliver writes to many HubSpot portals; one host is killed mid-run.

Each host is a `celery worker` (prefork, --concurrency per host) in a process group of its own,
with its own node name, PROMETHEUS_MULTIPROC_DIR and /metrics port (CONDUIT_WORKER_METRICS_PORT).
One `celery beat` sends the reconcile job every few seconds; reconcile claims due writes and
queues their deliveries on the broker (RabbitMQ by default, or Redis). The HubSpot sandbox runs in
this process with one rate-limit window per portal (tokens minted with a hub_id).

Targets (printed with PASS/FAIL):
- every portal stays under its limit across all hosts: 0 answers 429 from the sandbox, and the
  most calls any portal accepted in ten seconds is within Conduit's budget of its limit;
- every write delivered, none twice: --writes notes at the sandbox, one per write marker;
- the killed host's work is finished by the others (its in-flight writes succeed, the run ends);
- each surviving host serves /metrics, and the hosts' create_note counts add up to the notes made.

The database (--db-name on DATABASE_URL's server) is dropped and recreated at the start and kept
afterwards. Needs DATABASE_URL (Postgres) and REDIS_URL (the shared limiter); --broker amqp uses
CELERY_BROKER_URL or RabbitMQ on 127.0.0.1:5672. Exits 0 unless a target was missed.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != BENCH)]

from bench.common import recreate_database, verdict  # noqa: E402

BIN = Path(sys.executable).parent
MARKER = re.compile(r"cdw[0-9a-f]{24}")
FIRST_HUB = 5_000_001
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
SANDBOX_CONTACTS = {  # seeded in integrations/sandbox/hubspot_crm.py: email -> (contact, open deal)
    "maya.lopez@acme-logistics.example": ("101", "201"),
    "jonas@brightfield-energy.example": ("102", "203"),
    "lee@northwind.example": ("103", ""),
}
# Writes interleaved across the portals, oldest first, so each claim spreads over every portal;
# --hot-share of them go to the first --hot-portals portals, which then need more than their limit.
WRITES = """
INSERT INTO crm_write_log (workspace_id, connection_id, provider, operation, target, idempotency_key,
  payload, status, retry_count, next_retry_at, permanent_failure, last_error_code, last_error_message,
  external_id, outcome_unknown, lease_token, created_at, updated_at)
SELECT c.workspace_id, c.id, 'hubspot', 'create_note', (%(emails)s::text[])[1 + i %% 3],
  encode(sha256(convert_to('multihost-' || i, 'UTF8')), 'hex'),
  jsonb_build_object('subject', 'Email: multi-host drill #' || i,
    'text', 'Email (inbound): multi-host drill #' || i,
    'occurred_at', to_char(%(now)s AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')),
  'planned', 0, %(now)s - make_interval(secs => %(n)s - i), false, '', '', '', false, '', %(now)s, %(now)s
FROM generate_series(1, %(n)s) AS g(i)
JOIN crm_connections c ON c.id = (%(conns)s::bigint[])[CASE WHEN i %% 100 < %(hot_pct)s THEN 1 + i %% %(hot)s
  ELSE 1 + %(hot)s + i %% (cardinality(%(conns)s::bigint[]) - %(hot)s) END]"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conduit.settings")
    import django

    django.setup()


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=600
    )


def connect_portals(sandbox_url: str, portals: int) -> list[int]:
    """A live HubSpot connection per portal, with tokens the sandbox minted for that portal and
    contact -> deal mappings so delivery makes no lookups. Returns the connection ids."""
    from datetime import timedelta

    import requests
    from django.utils import timezone

    from conduit.models import Workspace
    from integrations.models import CrmConnection
    from reconcile.models import DealMapping

    ids = []
    now = timezone.now()
    for n in range(portals):
        hub = FIRST_HUB + n
        tokens = requests.post(f"{sandbox_url}/_sandbox/tokens", json={"hub_id": hub}, timeout=5).json()
        workspace = Workspace.objects.create(slug=f"portal-{hub}", name=f"Portal {hub}")
        conn = CrmConnection.objects.create(
            workspace=workspace,
            crm="hubspot",
            status="connected",
            dry_run=False,
            external_account_key=str(hub),
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            token_expires_at=now + timedelta(seconds=int(tokens["expires_in"])),
            granted_scopes=tokens["scopes"],
            connected_at=now,
        )
        DealMapping.objects.bulk_create(
            DealMapping(workspace=workspace, connection=conn, email=e, contact_id=c, deal_id=d)
            for e, (c, d) in SANDBOX_CONTACTS.items()
        )
        ids.append(conn.pk)
    return ids


def schedule_reconcile_every(seconds: int) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    PeriodicTask.objects.update(enabled=False)
    every = IntervalSchedule.objects.create(every=seconds, period="seconds")
    PeriodicTask.objects.create(name="drill reconcile", task="reconcile.reconcile_crm_writes", interval=every)


class Host:
    """One worker "host": a celery worker in its own process group, metrics dir and port."""

    def __init__(self, n: int, env: dict[str, str], workdir: Path, concurrency: int) -> None:
        self.name = f"host{n}"
        self.metrics_dir = workdir / self.name / "prometheus"
        self.metrics_dir.mkdir(parents=True)
        self.port = free_port()
        self.log = (workdir / f"{self.name}.log").open("wb")
        self.process = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "conduit",
                "worker",
                "--pool=prefork",
                f"--concurrency={concurrency}",
                "-n",
                f"{self.name}@multihost",
                "-l",
                "WARNING",
            ],
            cwd=ROOT,
            env={
                **env,
                "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
                "CONDUIT_WORKER_METRICS_PORT": str(self.port),
                "HOSTNAME": self.name,
            },
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()

    def created_notes(self, token: str) -> float | None:
        """create_note calls this host's /metrics counts (None when it does not answer)."""
        import requests

        try:
            text = requests.get(
                f"http://127.0.0.1:{self.port}/metrics",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            ).text
        except requests.RequestException:
            return None
        pattern = r'crm_sync_duration_seconds_count\{operation="create_note",provider="hubspot"\} ([0-9.e+]+)'
        found = re.search(pattern, text)
        return float(found[1]) if found else 0.0


def statuses(conn_ids: list[int]) -> Counter[str]:
    from reconcile.models import CrmWriteLog

    return Counter(CrmWriteLog.objects.filter(connection_id__in=conn_ids).values_list("status", flat=True))


def run(args: argparse.Namespace) -> bool:
    server = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not server.startswith("postgres") or not redis_url:
        sys.exit("multihost: DATABASE_URL (Postgres) and REDIS_URL are required")
    broker = redis_url if args.broker == "redis" else os.environ.get("CELERY_BROKER_URL") or RABBITMQ
    queue = f"bench-multihost-{uuid.uuid4().hex[:8]}"
    token = "multihost-metrics-" + uuid.uuid4().hex
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        "DJANGO_SETTINGS_MODULE": "conduit.settings",
        "DATABASE_URL": recreate_database(server, args.db_name),
        "CELERY_BROKER_URL": broker,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "CONDUIT_METRICS_TOKEN": token,
        "CONDUIT_WRITE_LEASE_SECONDS": str(args.lease),
        "CONDUIT_RECONCILE_LIMIT": str(args.claim),
    }
    migrate(env)
    setup_django(env)
    import requests
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from integrations.sandbox.server import start_sandbox

    sandbox = start_sandbox("hubspot", port=0)
    env["HUBSPOT_API_BASE_URL"] = sandbox.base_url
    requests.post(f"{sandbox.base_url}/_sandbox/config", json={"ten_second_limit": args.limit}, timeout=5)
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("conduit-rl*"):
        client.delete(key)
    conn_ids = connect_portals(sandbox.base_url, args.portals)
    with connection.cursor() as cur:
        cur.execute(
            WRITES,
            {
                "emails": list(SANDBOX_CONTACTS),
                "now": timezone.now(),
                "n": args.writes,
                "conns": conn_ids,
                "hot": args.hot_portals,
                "hot_pct": round(100 * args.hot_share),
            },
        )
    schedule_reconcile_every(args.every)
    budget = int(args.limit * settings.CONDUIT_RATE_BUDGET)
    print(
        f"== multi-host drill: {args.hosts} worker hosts x {args.concurrency} processes, one beat (reconcile "
        f"every {args.every} s, {args.claim} claims per run, lease {args.lease} s), broker "
        f"{broker.split(':')[0]}, {args.portals} sandbox portals at {args.limit} calls / 10 s each "
        f"(Conduit's budget {budget}), {args.writes} writes, {args.hot_share:.0%} of them on "
        f"{args.hot_portals} portals; host {args.hosts} killed at {args.kill_at:.0%} delivered; "
        f"{os.cpu_count()} CPUs"
    )
    workdir = Path(tempfile.mkdtemp(prefix="multihost-"))
    hosts = [Host(n + 1, env, workdir, args.concurrency) for n in range(args.hosts)]
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
            str(workdir / "beat.pid"),
            "--schedule",
            str(workdir / "beat-schedule"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    started = time.monotonic()
    killed_at = None
    in_flight_at_kill = 0
    deadline = started + args.timeout
    done = Counter[str]()
    try:
        while time.monotonic() < deadline:
            time.sleep(1)
            done = statuses(conn_ids)
            if killed_at is None and done["succeeded"] >= args.kill_at * args.writes:
                in_flight_at_kill = done["sending"]
                hosts[-1].kill()
                killed_at = time.monotonic() - started
                print(
                    f"{killed_at:.0f} s: killed {hosts[-1].name} ({done['succeeded']} delivered, "
                    f"{in_flight_at_kill} claimed and not finished)"
                )
            if done["succeeded"] == args.writes:
                break
        elapsed = time.monotonic() - started
        metrics = {host.name: host.created_notes(token) for host in hosts}
        state = requests.get(f"{sandbox.base_url}/_sandbox/state", timeout=60).json()
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=60)
        for host in hosts:
            host.stop()
        sandbox.stop()
        if broker.startswith("amqp"):
            from kombu import Connection

            with Connection(broker) as conn:
                conn.default_channel.queue_delete(queue)

    from reconcile.models import CrmWriteLog

    markers = set(
        CrmWriteLog.objects.filter(connection_id__in=conn_ids).values_list("idempotency_key", flat=True)
    )
    notes = Counter(m for n in state["notes"] for m in MARKER.findall(n["properties"]["hs_note_body"]))
    row_markers = {f"cdw{key[:24]}" for key in markers}
    duplicates = sum(n - 1 for m, n in notes.items() if m in row_markers and n > 1)
    missing = sum(1 for m in row_markers if notes[m] == 0)
    portals = state.get("portals", {})
    limited = sum(p["rate_limited"] for p in portals.values())
    peak = max((p["peak_ten_seconds"] for p in portals.values()), default=0)
    hot = [portals.get(str(FIRST_HUB + n), {}) for n in range(args.hot_portals)]
    print(
        "hot portals (requests, 429s, peak per 10 s): "
        + ", ".join(
            f"({p.get('requests')}, {p.get('rate_limited')}, {p.get('peak_ten_seconds')})" for p in hot
        )
    )
    print(
        f"write statuses after {elapsed:.0f} s: {dict(done)}; "
        f"{done['succeeded'] / elapsed:.1f} writes/s overall"
    )
    under = limited == 0 and peak <= budget
    print(
        f"portals: {len(portals)}; sandbox 429s {limited}; most calls one portal accepted in 10 s: {peak} "
        f"(budget {budget}, limit {args.limit})  (target: 0 429s, peak <= budget) {verdict(under)}"
    )
    exact = duplicates == 0 and missing == 0 and done["succeeded"] == args.writes
    print(
        f"notes for {len(row_markers)} writes: {duplicates} duplicated, {missing} missing  "
        f"(target 0 / 0) {verdict(exact)}"
    )
    recovered = killed_at is not None and done["succeeded"] == args.writes
    print(
        f"killed {hosts[-1].name} at {killed_at or 0:.0f} s with {in_flight_at_kill} writes claimed; "
        f"the others finished everything  {verdict(recovered)}"
    )
    alive = {name: count for name, count in metrics.items() if count is not None}
    served = len(alive) == args.hosts - 1
    share = ", ".join(f"{name} {int(count)}" for name, count in alive.items())
    print(
        f"/metrics create_note counts per surviving host: {share}; sum {int(sum(alive.values()))} of "
        f"{sum(notes.values())} notes (the killed host's share died with it)  {verdict(served)}"
    )
    print(f"host logs: {workdir}")
    return under and exact and recovered and served


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes per host")
    parser.add_argument("--portals", type=int, default=50)
    parser.add_argument("--writes", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=40, help="each portal's calls per 10 s at the sandbox")
    parser.add_argument(
        "--hot-portals", type=int, default=5, help="portals that get --hot-share of the writes"
    )
    parser.add_argument("--hot-share", type=float, default=0.3)
    parser.add_argument("--broker", choices=("amqp", "redis"), default="amqp")
    parser.add_argument("--kill-at", type=float, default=0.3, help="share delivered when the last host dies")
    parser.add_argument("--every", type=int, default=5, help="seconds between beat's reconcile runs")
    parser.add_argument("--claim", type=int, default=200, help="writes one reconcile run claims")
    parser.add_argument("--lease", type=int, default=600, help="CONDUIT_WRITE_LEASE_SECONDS")
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--db-name", default="bench_multihost")
    args = parser.parse_args()
    if args.hosts < 2 or args.writes < 1 or not 0 < args.kill_at < 1 or not 0 <= args.hot_share < 1:
        parser.error("--hosts >= 2, --writes >= 1, 0 < --kill-at < 1 and 0 <= --hot-share < 1")
    if not 1 <= args.hot_portals < args.portals:
        parser.error("--hot-portals must be at least 1 and fewer than --portals")
    return 0 if run(args) else 1


if __name__ == "__main__":
    raise SystemExit(main())
