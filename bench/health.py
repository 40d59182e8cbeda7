"""Connection-health benchmark: the hourly checks of 10,000 connections against the sandbox CRMs.

Target: every connection is checked within the hourly window at the configured concurrency, within
the rate limiter. A database conduit_bench_health_<pid> on DATABASE_URL's server (else BENCH_PG_URL's,
else the local postgres) is created and migrated; --hubspot + --salesforce connected CrmConnection rows
are bulk-created, each in its own workspace with its own external_account_key, a grant minted by the
sandbox and the provider's required scopes. Then every wave of wave_plan(ids, waves=CONDUIT_HEALTH_WAVES,
spread=CONDUIT_HEALTH_SPREAD_SECONDS) runs through run_checks(wave, concurrency=
CONDUIT_HEALTH_CONCURRENCY), back to back (the countdowns are not slept), with the Redis limiter store
(BENCH_REDIS_URL, default redis://127.0.0.1:6379/13; only the limiter's conduit-rl* keys are deleted,
before and after). The sandboxes serve from threads of this process, as in bench/reconcile.py.

Targets: all checks in less than the spread window and every wave shorter than its slot (spread /
waves); no rate-limit answer (sandbox 429s, rate-limit codes in crm_sync_logs); an ok connection_health
row written by this run for every connection. The checks run as a non-superuser role with row-level
security on (as bench/ingest.py does). The database and the role are dropped at the end, also on
error. Exits 0 unless something broke (or, with --strict, a target was missed).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# bench/reconcile.py shares its name with the reconcile app: the app must win the import.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != BENCH)]

from bench.common import percentile, verdict  # noqa: E402

DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"
LIMITER_KEYS = "conduit-rl*"  # RedisStore's key_prefix (integrations/providers/ratelimit.py)
RATE_LIMIT_CODES = ("rate_limited", "local_rate_limit", "request_limit_exceeded", "daily_budget_paused")
OPEN_LIMIT = 1_000_000_000
HUB_ID_BASE = 50_000_000


def spread_of(values: list[float]) -> str:
    p50, p95, top = (percentile(values, q) for q in (50, 95, 100))
    return f"p50 {p50:.0f} / p95 {p95:.0f} / max {top:.0f} ms"


def on_database(url: str, name: str, user: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc if user is None else f"{user}@{parts.hostname}:{parts.port or 5432}"
    return parts._replace(netloc=netloc, path=f"/{name}").geturl()


def admin(url: str, *statements: sql.Composed) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def migrate(owner_url: str, var_dir: str) -> None:
    """As the database owner, in a child process (bench/ingest.py does the same)."""
    env = {**os.environ, "DATABASE_URL": owner_url, "CONDUIT_VAR_DIR": var_dir, "LOG_LEVEL": "WARNING"}
    env["DJANGO_SETTINGS_MODULE"] = "conduit.settings"
    manage = [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"]
    subprocess.run(manage, env=env, cwd=ROOT, check=True)


def create_app_role(owner_url: str, role: str) -> None:
    """The production app role: no superuser, row-level security enforced."""
    ident = sql.Identifier(role)
    admin(
        owner_url,
        sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS").format(ident),
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(ident),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(ident),
    )


def setup_django(db_url: str, redis_url: str, var_dir: str) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "conduit.settings",
            "CONDUIT_VAR_DIR": var_dir,
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
            "DEBUG": os.environ.get("DEBUG", "false"),  # no per-query recording in the checks
        }
    )
    import django

    django.setup()


def limiter_keys(redis_url: str, delete: bool) -> int:
    """How many keys carry the limiter's prefix (deleted when `delete`)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(LIMITER_KEYS, count=2000))
    if delete:
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    return len(keys)


def start_sandboxes() -> dict[str, Any]:
    """Both sandbox CRMs on free ports, Conduit's provider settings pointing at them (crm_env)."""
    from django.conf import settings

    from integrations.sandbox.server import start_sandbox

    running: dict[str, Any] = {}
    try:
        for name in ("hubspot", "salesforce"):
            running[name] = start_sandbox(name, port=0)
    except Exception:
        for sandbox in running.values():
            sandbox.stop()
        raise
    hubspot, salesforce = running["hubspot"].base_url, running["salesforce"].base_url
    settings.HUBSPOT_API_BASE_URL = hubspot
    settings.HUBSPOT_AUTHORIZE_URL = f"{hubspot}/oauth/authorize"
    settings.SALESFORCE_LOGIN_URL = settings.SALESFORCE_TEST_URL = salesforce
    settings.SALESFORCE_EXTRA_INSTANCE_ORIGINS = [salesforce]
    return running


def open_sandbox_limits(running: dict[str, Any], http: Any) -> None:
    """Real HubSpot limits each portal; the sandbox has one window for all: raise it."""
    base = running["hubspot"].base_url
    before = http.get(f"{base}/_sandbox/state", timeout=10).json()["config"]["ten_second_limit"]
    http.post(f"{base}/_sandbox/config", json={"ten_second_limit": OPEN_LIMIT}, timeout=10).raise_for_status()
    print(
        f"sandbox rate limits: the HubSpot sandbox keys its ten-second limit globally (one RollingWindow "
        f"for every portal and token), real HubSpot keys it per portal; with every connection on its own "
        f"hub id a global {before} / 10 s would 429 a load that no single portal sends, so "
        f"ten_second_limit was raised from {before} to {OPEN_LIMIT:,} via /_sandbox/config. "
        "Salesforce's check (GET /services/oauth2/userinfo) counts against no sandbox limit (only "
        "/services/data calls count, against one global daily_api_limit): left as it is."
    )


def mint(http: Any, base: str, n: int) -> tuple[list[dict[str, Any]], float]:
    started = time.perf_counter()
    grants = []
    for _ in range(n):
        resp = http.post(f"{base}/_sandbox/tokens", json={}, timeout=10)
        resp.raise_for_status()
        grants.append(resp.json())
    return grants, time.perf_counter() - started


def seed(args: argparse.Namespace, running: dict[str, Any], http: Any) -> list[int]:
    """The connections, in bulk: one workspace each, shuffled HubSpot / Salesforce."""
    from django.utils import timezone

    from conduit.models import Workspace
    from conduit.tenancy import system_scope
    from integrations.health.checks import connections_to_check
    from integrations.models import CrmConnection
    from integrations.providers import get_provider

    counts = {"hubspot": args.hubspot, "salesforce": args.salesforce}
    grants: dict[str, list[dict[str, Any]]] = {}
    for crm, n in counts.items():
        grants[crm], seconds = mint(http, running[crm].base_url, n)
        print(
            f"minted {n} {crm} grants (one POST /_sandbox/tokens each) in {seconds:.1f} s = "
            f"{n / seconds if seconds else 0:.0f}/s"
        )
    crms = [crm for crm, n in counts.items() for _ in range(n)]
    random.Random(7).shuffle(crms)
    stale = set(random.Random(11).sample(range(args.hubspot), round(args.stale_share * args.hubspot)))
    now = timezone.now()
    started = time.perf_counter()
    used: Counter[str] = Counter()
    with system_scope():
        workspaces = Workspace.objects.bulk_create(
            [Workspace(slug=f"bench-health-{i:05d}", name=f"Bench health {i:05d}") for i in range(len(crms))],
            batch_size=2000,
        )
        rows = []
        for workspace, crm in zip(workspaces, crms, strict=True):
            k = used[crm]
            used[crm] += 1
            grant = grants[crm][k]
            if crm == "hubspot":
                key = str(HUB_ID_BASE + k)
                details = {
                    "environment": "login",
                    "hub_id": key,
                    "hub_domain": f"bench-{key}.hubspot.example",
                }
                ttl = 60 if k in stale else int(grant["expires_in"])  # stale: inside the refresh margin
                expires_at: datetime | None = now + timedelta(seconds=ttl)
            else:
                key = f"00Dbench{k:010d}"  # 18 characters, like an org id
                details = {"environment": "login", "instance_url": grant["instance_url"], "org_id": key}
                expires_at = None  # Salesforce sends no expiry
            rows.append(
                CrmConnection(
                    workspace=workspace,
                    crm=crm,
                    status=CrmConnection.Status.CONNECTED,
                    dry_run=False,
                    external_account_key=key,
                    external_account_json=details,
                    access_token=grant["access_token"],
                    refresh_token=grant["refresh_token"],
                    token_expires_at=expires_at,
                    granted_scopes=list(get_provider(crm).required_scopes),
                    connected_at=now,
                )
            )
        CrmConnection.objects.bulk_create(rows, batch_size=2000)
    ids = connections_to_check()
    with system_scope():
        keys = CrmConnection.objects.values("crm", "external_account_key").distinct().count()
    print(
        f"created {len(crms)} workspaces and {len(ids)} connected connections ({args.hubspot} HubSpot, "
        f"{args.salesforce} Salesforce; {keys} distinct external_account_keys; {len(stale)} HubSpot tokens "
        f"inside the refresh margin) with bulk_create under system_scope in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return ids


def sandbox_requests(running: dict[str, Any], http: Any) -> dict[str, dict[str, int]]:
    return {
        name: http.get(f"{sandbox.base_url}/_sandbox/state", timeout=30).json()["requests"]
        for name, sandbox in running.items()
    }


def pg_sessions() -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return int(cur.fetchone()[0])


def redis_cpu(redis_url: str) -> float:
    import redis

    info: dict[str, Any] = redis.Redis.from_url(redis_url).info("cpu")  # type: ignore[assignment]
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return float(usage.ru_utime + usage.ru_stime)


def run_waves(ids: list[int]) -> tuple[list[Any], list[float], float]:
    """Every wave of the hourly plan, back to back: (results, wave seconds, total seconds)."""
    from django.conf import settings

    from integrations.health.checks import run_checks, wave_plan

    waves, spread = settings.CONDUIT_HEALTH_WAVES, settings.CONDUIT_HEALTH_SPREAD_SECONDS
    concurrency = settings.CONDUIT_HEALTH_CONCURRENCY
    slot = spread / waves
    plan = wave_plan(ids, waves=waves, spread=spread)
    results: list[Any] = []
    durations: list[float] = []
    started = time.perf_counter()
    for number, (members, countdown) in enumerate(plan, 1):
        wave_started = time.perf_counter()
        got = run_checks(members, concurrency=concurrency)
        seconds = time.perf_counter() - wave_started
        results.extend(got)
        durations.append(seconds)
        statuses = Counter(r.status for r in got)
        print(
            f"wave {number:>2}/{len(plan)}: {len(members)} checks in {seconds:6.1f} s = "
            f"{len(members) / seconds:5.1f}/s (slot {slot:.0f} s, {seconds / slot:5.1%} of it; planned start "
            f"+{countdown:.0f} s); {dict(statuses)}",
            flush=True,
        )
    return results, durations, time.perf_counter() - started


class SqlTimer:
    """An execute wrapper adding up how long the statements of a block took (commits not included)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, execute: Any, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(*args)
        finally:
            self.seconds += time.perf_counter() - started


def profile_checks(running: dict[str, Any], http: Any) -> None:
    """One extra connection per CRM, checked in this thread: its first check (creates the health row,
    audits) and a repeat (the hourly steady state): SQL statements, SQL time, HTTP time, the rest."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from conduit.models import Workspace
    from conduit.tenancy import system_scope
    from integrations.health.checks import check_connection
    from integrations.models import CrmConnection, SyncLog
    from integrations.providers import get_provider

    for crm in ("hubspot", "salesforce"):
        grant = mint(http, running[crm].base_url, 1)[0][0]
        details = {"environment": "login"}
        if crm == "salesforce":
            details["instance_url"] = grant["instance_url"]
        with system_scope():
            workspace = Workspace.objects.create(slug=f"bench-health-profile-{crm}", name=f"Profile {crm}")
            conn = CrmConnection.objects.create(
                workspace=workspace,
                crm=crm,
                status=CrmConnection.Status.CONNECTED,
                external_account_key=f"profile-{crm}",
                external_account_json=details,
                access_token=grant["access_token"],
                refresh_token=grant["refresh_token"],
                token_expires_at=timezone.now() + timedelta(minutes=30) if crm == "hubspot" else None,
                granted_scopes=list(get_provider(crm).required_scopes),
                connected_at=timezone.now(),
            )
        runs = [("first, new conn", True), ("repeat, new conn", True), ("repeat, warm conn", False)]
        for label, fresh in runs:
            connect = 0.0
            if fresh:  # as a pool thread runs it: on a new Postgres connection (a cold backend)
                connection.close()
                started = time.perf_counter()
                connection.ensure_connection()
                connect = (time.perf_counter() - started) * 1000
            timer = SqlTimer()
            with CaptureQueriesContext(connection) as queries, connection.execute_wrapper(timer):
                started = time.perf_counter()
                result = check_connection(conn.pk)
                wall = (time.perf_counter() - started) * 1000
            with system_scope():
                log = SyncLog.objects.filter(connection=conn, operation="health_check").latest("id")
            statements = [q["sql"] for q in queries.captured_queries]
            control = sum(1 for s in statements if s in ("BEGIN", "COMMIT", "ROLLBACK"))
            scope = sum(1 for s in statements if "current_setting('conduit." in s or "set_config(" in s)
            sql_ms = timer.seconds * 1000
            print(
                f"  {crm:<10} {label:<17}: connect {connect:4.1f} ms + check {wall:5.1f} ms = "
                f"{len(statements) - control} SQL statements ({scope} of them reading / setting the RLS "
                f"scope) + {control} BEGIN/COMMIT: SQL {sql_ms:4.1f} ms, provider HTTP {log.duration_ms} ms, "
                f"the rest (commits, Redis, ORM, Python) {wall - sql_ms - log.duration_ms:4.1f} ms; "
                f"{result.status}, latency_ms in the verdict {result.latency_ms}"
            )


def metrics_mb() -> float:
    """The prometheus multiprocess files this process wrote (a gauge per workspace and CRM)."""
    from django.conf import settings

    return sum(f.stat().st_size for f in Path(settings.PROMETHEUS_MULTIPROC_DIR).glob("*.db")) / 2**20


def connect_ms(samples: int = 20) -> float:
    """What a pool thread pays per check to open its Postgres connection (run_checks closes it)."""
    from django.db import connection

    times = []
    for _ in range(samples):
        connection.close()
        started = time.perf_counter()
        connection.ensure_connection()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def report(
    ids: list[int],
    results: list[Any],
    durations: list[float],
    total: float,
    since: datetime,
    sandbox: dict[str, Any],
) -> bool:
    from django.conf import settings
    from django.db.models import Count

    from conduit.models import AuditEvent
    from conduit.tenancy import system_scope
    from integrations.models import ConnectionHealth, SyncLog

    n = len(ids)
    waves, spread = settings.CONDUIT_HEALTH_WAVES, settings.CONDUIT_HEALTH_SPREAD_SECONDS
    concurrency, slot = settings.CONDUIT_HEALTH_CONCURRENCY, spread / waves
    calls = sum(v["total"] for v in sandbox["after"].values()) - sum(
        v["total"] for v in sandbox["before"].values()
    )
    limited = sum(v["rate_limited"] for v in sandbox["after"].values()) - sum(
        v["rate_limited"] for v in sandbox["before"].values()
    )
    with system_scope():
        ok_rows = ConnectionHealth.objects.filter(
            connection_id__in=ids, status="ok", last_checked_at__gte=since
        ).count()
        rows = ConnectionHealth.objects.filter(connection_id__in=ids).count()
        logs = list(
            SyncLog.objects.filter(created_at__gte=since)
            .values("provider", "operation", "status", "error_code")
            .annotate(n=Count("id"))
            .order_by("provider", "operation", "status", "error_code")
        )
        http_ms = [
            float(ms)
            for ms in SyncLog.objects.filter(created_at__gte=since, operation="health_check").values_list(
                "duration_ms", flat=True
            )
        ]
        audits = AuditEvent.objects.filter(event="connection_health_changed", created_at__gte=since).count()
        remaining = Counter(
            ConnectionHealth.objects.filter(connection_id__in=ids, crm="hubspot").values_list(
                "details_json__rate_limit__remaining", flat=True
            )
        )
    statuses = Counter(r.status for r in results)
    reasons = Counter(f"{r.status}/{r.reason}" for r in results if r.status != "ok")
    latency = [float(r.latency_ms) for r in results if r.latency_ms is not None]
    limit_logs = sum(row["n"] for row in logs if row["error_code"] in RATE_LIMIT_CODES)
    slowest = max(durations)

    print(f"\n== results: {n} connections, concurrency {concurrency}, {len(durations)} waves of {waves}")
    print(
        f"total {total:.1f} s for {len(results)} checks = {len(results) / total:.1f} checks/s; "
        f"{calls} sandbox calls = {calls / total:.1f} calls/s; spread window {spread} s "
        f"({total / spread:.1%} of it used); at this rate one window holds "
        f"~{len(results) / total * spread:,.0f} checks"
    )
    print(
        f"slowest wave {slowest:.1f} s vs slot {slot:.0f} s ({slowest / slot:.1%}); waves "
        f"{', '.join(f'{d:.0f}' for d in durations)} s"
    )
    print(f"verdicts by status: {dict(statuses)}" + (f"; not ok: {dict(reasons)}" if reasons else ""))
    print(
        f"check latency_ms (health details): {spread_of(latency)}; provider HTTP time of the same calls "
        f"(crm_sync_logs.duration_ms): {spread_of(http_ms)}"
    )
    print(
        "crm_sync_logs written by the run: "
        + "; ".join(
            f"{r['provider']} {r['operation']} "
            f"{r['status']}{' ' + r['error_code'] if r['error_code'] else ''}: {r['n']}"
            for r in logs
        )
    )
    print(
        f"HubSpot limiter headroom after the run (rate_limit.remaining in the verdicts): "
        f"{dict(sorted(remaining.items(), key=str))}; connection_health_changed audits: {audits}"
    )
    print(
        f"rate-limit answers: sandbox 429s {limited} (HubSpot {sandbox['after']['hubspot']['rate_limited']}, "
        f"Salesforce {sandbox['after']['salesforce']['rate_limited']}), crm_sync_logs with a rate-limit code "
        f"{limit_logs}"
    )
    in_window = total < spread and slowest < slot
    no_limits = limited == 0 and limit_logs == 0
    all_ok = ok_rows == n and rows == n and statuses == Counter({"ok": n})
    print(
        f"\nall checks in < {spread} s ({total:.1f} s) and every wave < its {slot:.0f} s slot "
        f"(slowest {slowest:.1f} s): {verdict(in_window)}"
    )
    print(f"0 rate-limit answers (sandbox {limited}, sync logs {limit_logs}): {verdict(no_limits)}")
    print(
        f"every connection has an ok connection_health row from this run ({ok_rows} of {n}; {rows} rows): "
        f"{verdict(all_ok)}"
    )
    if slowest >= slot / 2:
        print(
            f"note: wave_plan jitters each start within the first half of its slot, so two waves can be as "
            f"little as {slot / 2:.0f} s apart; the slowest wave ({slowest:.0f} s) would overlap the next"
        )
    return in_window and no_limits and all_ok


def bench(args: argparse.Namespace, redis_url: str) -> bool:
    import requests
    from django.conf import settings
    from django.db import connections
    from django.utils import timezone

    print(
        f"limiter store redis {settings.REDIS_URL} ({limiter_keys(redis_url, delete=True)} conduit-rl keys "
        f"deleted), budget {settings.CONDUIT_RATE_BUDGET:.0%}; concurrency "
        f"{settings.CONDUIT_HEALTH_CONCURRENCY}, waves {settings.CONDUIT_HEALTH_WAVES}, spread "
        f"{settings.CONDUIT_HEALTH_SPREAD_SECONDS} s; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    running = start_sandboxes()
    http = requests.Session()
    try:
        open_sandbox_limits(running, http)
        ids = seed(args, running, http)
        connections.close_all()
        sessions_before, since = pg_sessions(), timezone.now()
        sandbox = {"before": sandbox_requests(running, http)}
        cpu_before, redis_before = cpu_seconds(), redis_cpu(redis_url)
        print(f"\n== checks: {len(ids)} connections, waves back to back", flush=True)
        results, durations, total = run_waves(ids)
        cpu_used, redis_used = cpu_seconds() - cpu_before, redis_cpu(redis_url) - redis_before
        sandbox["after"] = sandbox_requests(running, http)
        sessions = pg_sessions() - sessions_before
        keys = limiter_keys(redis_url, delete=False)
        met = report(ids, results, durations, total, since, sandbox)
        n = max(len(results), 1)
        print(
            f"\n== where time goes ({settings.CONDUIT_HEALTH_CONCURRENCY} threads, sandboxes in this process)"
        )
        print(
            f"wall per check in a thread ~{total * settings.CONDUIT_HEALTH_CONCURRENCY / n * 1000:.0f} ms; "
            f"CPU per check: this process (checks + sandboxes) {cpu_used / n * 1000:.1f} ms, "
            f"redis {redis_used / n * 1000:.2f} ms; Postgres sessions opened during the run ~{sessions} "
            f"({sessions / n:.2f} per check; a new connection costs ~{connect_ms():.1f} ms here); "
            f"{keys} conduit-rl keys in redis at the end (the 10 s moving windows expire); prometheus "
            f"multiprocess files {metrics_mb():.1f} MB"
        )
        print("one check at a time in this thread, on one extra connection per CRM (not counted above):")
        profile_checks(running, http)
        return met
    finally:
        http.close()
        for sandbox_server in running.values():
            sandbox_server.stop()
        limiter_keys(redis_url, delete=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hubspot", type=int, default=7000, help="HubSpot connections")
    parser.add_argument("--salesforce", type=int, default=3000, help="Salesforce connections")
    parser.add_argument(
        "--stale-share",
        type=float,
        default=0.0,
        help="share of HubSpot tokens inside the refresh margin (an idle connection's, an hour on)",
    )
    parser.add_argument("--db-name", default=f"conduit_bench_health_{os.getpid()}")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if args.hubspot < 1 or args.salesforce < 1 or not 0 <= args.stale_share <= 1:
        parser.error("--hubspot and --salesforce must be >= 1, --stale-share within 0..1")

    server_url = os.environ.get("DATABASE_URL") or os.environ.get("BENCH_PG_URL") or DEFAULT_PG
    if urlsplit(server_url).scheme not in ("postgres", "postgresql", "pgsql"):
        print(f"bench/health.py needs Postgres: set DATABASE_URL=postgres://... (it is {server_url!r})")
        return 1
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)
    name, role = args.db_name, f"{args.db_name}_app"
    owner_url = on_database(server_url, name)
    started = time.perf_counter()
    admin(server_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    met = False
    try:
        with tempfile.TemporaryDirectory(prefix="conduit-bench-") as var_dir:
            migrate(owner_url, var_dir)
            create_app_role(owner_url, role)
            print(
                f"database {name} created and migrated ({time.perf_counter() - started:.1f} s); checks run "
                f"as role {role} (no superuser, row-level security on); "
                f"DEBUG={os.environ.get('DEBUG', 'false')}"
            )
            setup_django(on_database(server_url, name, user=role), redis_url, var_dir)
            try:
                met = bench(args, redis_url)
            finally:
                from django.db import connections

                connections.close_all()
    finally:
        admin(
            server_url,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
            sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)),
        )
        print(
            f"\ndatabase {name} and role {role} dropped; the bench ran {time.perf_counter() - started:.0f} s"
        )
    print(f"overall: {verdict(met)} (one run on this machine)")
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
