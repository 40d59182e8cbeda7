"""Calendar sync benchmark on Postgres: a full pass, incremental passes, due selection.

1. sync: --connections Google calendar connections of --events events each, served by an
   in-process Google Calendar sandbox (bulk-seeded, tokens minted by /_sandbox/tokens, push
   channels opened by push.open_channel; the sandbox's pushes reach Conduit's real webhook view
   through the outbox's transport seam and a Django test client). A full pass (jobs.run_pass, the
   beat job, CALENDAR_JOB_CONCURRENCY threads), then --changed-pct of the events are changed at the
   sandbox (moved by an hour, renamed), each time a fresh set, and one incremental run per mode:
     push-marked job pass   jobs.run_pass picks only the connections the pushes marked sync_needed
     queued push tasks      the sync tasks the verified notifications queued, run one after another
     all polled job pass    every connection made stale first, so the pass calls each one once
   for two scenarios: (a) the changes concentrated on --changed-pct of the connections, all their
   events; (b) the changes spread at random over all connections.
   Figures per run: provider calls (the sandbox's GET /_sandbox/calls, before and after), row
   writes (INSERT / UPDATE / DELETE statements on external_calendar_events and
   external_calendar_connections, every database connection of every thread counted by an execute
   wrapper), rows they touched, other writes, events/s. Target: the incremental run makes >= 20x
   fewer provider calls and row writes than the full pass.
2. due: --due-total connections inserted by SQL (generate_series), --due-pct of them due (pushed,
   stale or never synced, not in backoff; others in backoff, errored, disabled or fresh). The SQL of
   jobs.due_query: EXPLAIN (ANALYZE, BUFFERS), whether it reads an index (no Seq Scan on the table),
   and --samples runs of jobs.due_connections(now, CALENDAR_JOB_BATCH_SIZE): target p95 < 5 ms. As
   this bench's superuser (row-level security bypassed) and as a plain role (RLS applies).

The database (--db-name on DATABASE_URL's server) is dropped and recreated at the start and kept
afterwards for inspection; Redis --redis-url (the broker the pushes queue sync tasks on, and the
limiter) is flushed before and after. Exits 0 unless something broke (or, with --strict, a target
was missed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != BENCH)]

from bench.common import percentile, recreate_database, verdict  # noqa: E402

TARGET_RATIO = 20.0
TARGET_P95_MS = 5.0
CALENDAR_TABLES = ("external_calendar_events", "external_calendar_connections")
WRITE = re.compile(r'^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.IGNORECASE)
DOMAIN = "bench.example"
CUSTOMERS = "customer.example"
TOKEN_TTL = 86400
PROBE_ROLE = "conduit_rls_probe"  # the plain role tests/test_tenancy.py acts as


# --- counting --------------------------------------------------------------------------------


class Statements:
    """SQL statements of every database connection, in every thread, while `on`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.on = False
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.connects = 0
        self.writes: Counter[tuple[str, str]] = Counter()
        self.rows: Counter[tuple[str, str]] = Counter()

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if self.on:
            match = WRITE.match(sql)
            with self.lock:
                self.total += 1
                if match:
                    key = (match[2], match[1].split()[0].upper())
                    self.writes[key] += 1
                    self.rows[key] += max(context["cursor"].rowcount, 0)
        return result

    def install(self, connection: Any, **_: Any) -> None:
        if self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)
        if self.on:
            with self.lock:
                self.connects += 1

    @contextmanager
    def counting(self) -> Iterator[None]:
        self.reset()
        self.on = True
        try:
            yield
        finally:
            self.on = False


@dataclass
class Run:
    """What one pass (or run of tasks) did."""

    label: str
    syncs: int = 0
    failed: int = 0
    events: int = 0  # created + updated + cancelled
    wall: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    writes: Counter[tuple[str, str]] = field(default_factory=Counter)
    rows: Counter[tuple[str, str]] = field(default_factory=Counter)
    statements: int = 0
    connects: int = 0

    @property
    def provider_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def row_writes(self) -> int:
        return sum(n for (table, _verb), n in self.writes.items() if table in CALENDAR_TABLES)

    @property
    def rows_written(self) -> int:
        return sum(n for (table, _verb), n in self.rows.items() if table in CALENDAR_TABLES)


def sandbox_calls(base: str) -> Counter[str]:
    import requests

    return Counter(requests.get(f"{base}/_sandbox/calls", timeout=30).json()["calls"])


def measured(label: str, counter: Statements, base: str, work: Callable[[Run], None]) -> Run:
    run = Run(label)
    before = sandbox_calls(base)
    with counter.counting():
        started = time.perf_counter()
        work(run)
        run.wall = time.perf_counter() - started
    run.calls = sandbox_calls(base) - before
    run.writes, run.rows = Counter(counter.writes), Counter(counter.rows)
    run.statements, run.connects = counter.total, counter.connects
    return run


def writes_text(
    writes: Counter[tuple[str, str]], rows: Counter[tuple[str, str]], tables: tuple[str, ...]
) -> str:
    parts = [
        f"{table} {verb} {writes[(table, verb)]} ({rows[(table, verb)]} rows)"
        for table, verb in sorted(writes)
        if table in tables
    ]
    return "; ".join(parts) or "none"


def print_run(run: Run) -> None:
    per_second = f" = {run.events / run.wall:.0f} events/s" if run.wall and run.events else ""
    print(
        f"  {run.label}: {run.syncs} syncs ({run.failed} failed), {run.events} events stored or "
        f"changed, {run.wall:.1f} s{per_second}"
    )
    calls = ", ".join(f"{k} {v}" for k, v in sorted(run.calls.items())) or "none"
    print(f"      provider calls {run.provider_calls} ({calls})")
    print(
        f"      row writes {run.row_writes} statements, {run.rows_written} rows: "
        + writes_text(run.writes, run.rows, CALENDAR_TABLES)
    )
    others = tuple(sorted({t for t, _v in run.writes} - set(CALENDAR_TABLES)))
    print(
        f"      other writes: {writes_text(run.writes, run.rows, others)}; {run.statements} SQL "
        f"statements in all; {run.connects} database connections opened"
    )


def ratio(full: float, part: float) -> float:
    return full / part if part else float("inf")


def print_ratios(full: Run, run: Run, push_writes: int | None = None) -> bool:
    calls, writes = ratio(full.provider_calls, run.provider_calls), ratio(full.row_writes, run.row_writes)
    ok = calls >= TARGET_RATIO and writes >= TARGET_RATIO
    print(
        f"      full / this: provider calls {calls:.1f}x, row writes {writes:.1f}x "
        f"(rows {ratio(full.rows_written, run.rows_written):.1f}x)  "
        f"(target >= {TARGET_RATIO:.0f}x both) {verdict(ok)}"
    )
    if push_writes:
        with_push = ratio(full.row_writes, run.row_writes + push_writes)
        print(f"      counting the push notifications' {push_writes} writes too: row writes {with_push:.1f}x")
    return ok


# --- the sandbox and the connections -------------------------------------------------------


def webhook_transport() -> Callable[[str, dict[str, str], bytes, float], tuple[int, str, str]]:
    """The outbox's transport: each push goes to Conduit's webhook view in this process."""
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")

    def post(url: str, headers: dict[str, str], body: bytes, timeout: float) -> tuple[int, str, str]:
        resp = client.post(urlsplit(url).path, data=body, content_type="application/json", headers=headers)
        return resp.status_code, resp.get("Content-Type", ""), resp.content.decode()[:2000]

    return post


def seed_sandbox(base: str, users: int, events: int) -> dict[str, dict[str, Any]]:
    """Members user00001@bench.example ... with `events` events each; their tokens by email."""
    import requests

    config = {"user_rate_limit": 10**9, "access_token_ttl": TOKEN_TTL}
    requests.post(f"{base}/_sandbox/config", json=config, timeout=10).raise_for_status()
    seed = {"count": events, "users": users, "domain": DOMAIN, "attendee_domains": [CUSTOMERS]}
    emails = requests.post(f"{base}/_sandbox/seed", json=seed, timeout=60).json()["users"]
    session = requests.Session()
    body = {"expires_in": TOKEN_TTL}
    return {
        email: session.post(f"{base}/_sandbox/tokens", json={**body, "email": email}, timeout=10).json()
        for email in emails
    }


def make_connections(tokens: dict[str, dict[str, Any]], per_workspace: int) -> list[int]:
    """Workspaces of `per_workspace` members, each member with a connected Google calendar."""
    from django.contrib.auth.models import User
    from django.utils import timezone

    from conduit.models import Membership, Profile, Workspace
    from conduit.tenancy import system_scope
    from integrations.models import ExternalCalendarConnection

    now, emails = timezone.now(), list(tokens)
    with system_scope():
        count = -(-len(emails) // per_workspace)
        workspaces = Workspace.objects.bulk_create(
            Workspace(slug=f"bench-cal-{w}", name=f"Bench calendar {w}") for w in range(count)
        )
        users = User.objects.bulk_create(User(username=e, email=e, password="!") for e in emails)
        profiles = Profile.objects.bulk_create(Profile(user=u, email=u.email) for u in users)
        home = [workspaces[i // per_workspace] for i in range(len(emails))]
        Membership.objects.bulk_create(
            Membership(workspace=w, user=u) for w, u in zip(home, users, strict=True)
        )
        conns = ExternalCalendarConnection.objects.bulk_create(
            (
                ExternalCalendarConnection(
                    workspace=w,
                    profile=p,
                    provider="google",
                    access_token=tokens[p.email]["access_token"],
                    refresh_token=tokens[p.email]["refresh_token"],
                    token_expiry=now + timedelta(seconds=int(tokens[p.email]["expires_in"])),
                    granted_scopes=tokens[p.email]["scope"].split(),
                    account_email=p.email,
                    connected_at=now,
                )
                for w, p in zip(home, profiles, strict=True)
            ),
            batch_size=500,
        )
    return [c.pk for c in conns]


@contextmanager
def deliveries_of(state: Any) -> Iterator[list[Any]]:
    """The push deliveries made inside the block, once every one is answered."""
    with state.lock:
        first = len(state.outbox.deliveries)
    found: list[Any] = []
    yield found
    with state.lock:
        total = len(state.outbox.deliveries)
        state.outbox.wait(total, 600)
        found += state.outbox.deliveries[first:total]
    if not all(d.done for d in found):
        raise RuntimeError(
            f"{sum(not d.done for d in found)} push deliveries were not answered in 10 minutes"
        )


@contextmanager
def quiet(*names: str) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def open_channels(ids: list[int], state: Any) -> None:
    from integrations.calendars import push

    started = time.perf_counter()
    # The sandbox sends a channel's "sync" message while the watch call is still answering, before
    # Conduit stores the channel: the view answers it 401 unknown_channel (one warning line each).
    with quiet("conduit.integrations.calendar", "django.request"), deliveries_of(state) as sent:
        for connection_id in ids:
            push.open_channel(connection_id)
    answers = Counter(d.status for d in sent)
    print(
        f"push channels: {len(ids)} opened by push.open_channel in {time.perf_counter() - started:.1f} s; "
        f"the sandbox's first ('sync') messages answered {dict(answers)} by the webhook view (401: it "
        "arrived before the channel was stored)"
    )


# --- changes at the sandbox ------------------------------------------------------------------


@dataclass
class Pushes:
    notifications: int
    changed: list[int]  # connection id per notification that marked its connection, in order
    writes: int  # row writes the webhook view made
    queued: int  # sync tasks on the broker
    tasks: list[int]  # the connection id of each sync task queued, in order


def concentrated(ids: list[int], events: int, changes: int, rng: random.Random) -> list[Any]:
    """Every event of changes/events connections."""
    from conduit.tenancy import system_scope
    from integrations.models import ExternalCalendarEvent

    chosen = rng.sample(ids, max(1, changes // events))
    with system_scope():
        rows = ExternalCalendarEvent.objects.filter(connection_id__in=chosen, cancelled=False)
        return list(rows.values_list("external_id", "starts_at", "ends_at").order_by("pk")[:changes])


def spread(changes: int, rng: random.Random) -> list[Any]:
    """`changes` events drawn at random from all connections."""
    from conduit.tenancy import system_scope
    from integrations.models import ExternalCalendarEvent

    with system_scope():
        live = ExternalCalendarEvent.objects.filter(cancelled=False)
        rows = list(live.values_list("external_id", "starts_at", "ends_at").order_by("pk"))
    return rng.sample(rows, min(changes, len(rows)))


def change_events(base: str, state: Any, rows: list[Any], tag: str, counter: Statements) -> Pushes:
    """Move each event an hour later and rename it at the sandbox; its pushes reach Conduit."""
    import redis
    import requests
    from django.conf import settings

    from conduit.tenancy import system_scope
    from integrations.calendars import jobs
    from integrations.models import ExternalCalendarConnection

    broker = redis.Redis.from_url(settings.REDIS_URL)
    broker.delete("celery")
    session = requests.Session()
    tasks: list[int] = []
    enqueue = jobs.enqueue_sync

    def recorded(connection_id: int) -> None:
        tasks.append(connection_id)
        enqueue(connection_id)

    jobs.enqueue_sync = recorded  # type: ignore[assignment]
    with counter.counting(), deliveries_of(state) as sent:
        for external_id, starts_at, ends_at in rows:
            body = {
                "summary": f"Moved meeting ({tag})",
                "start": (starts_at + timedelta(hours=1)).astimezone(UTC).isoformat(),
                "end": (ends_at + timedelta(hours=1)).astimezone(UTC).isoformat(),
            }
            session.patch(f"{base}/_sandbox/events/{external_id}", json=body, timeout=10).raise_for_status()
    jobs.enqueue_sync = enqueue  # type: ignore[assignment]
    writes = sum(n for (table, _verb), n in counter.writes.items() if table in CALENDAR_TABLES)
    queued = cast(int, broker.llen("celery"))
    broker.delete("celery")
    with system_scope():
        channels = ExternalCalendarConnection.objects.filter(channel_id__in={d.target for d in sent})
        by_channel = dict(channels.values_list("channel_id", "pk"))
    changed = [
        by_channel[d.target] for d in sent if d.status == 200 and json.loads(d.reply)["outcome"] == "changed"
    ]
    return Pushes(len(sent), changed, writes, queued, tasks)


def print_pushes(pushes: Pushes, changes: int) -> None:
    print(
        f"    {changes} events changed at the sandbox -> {pushes.notifications} push notifications -> "
        f"{len(set(pushes.changed))} connections marked sync_needed; the webhook view made "
        f"{pushes.writes} row writes and queued {pushes.queued} sync tasks"
    )


# --- part 1 ---------------------------------------------------------------------------------


def job_pass(limit: int) -> Callable[[Run], None]:
    from integrations.calendars import jobs

    def work(run: Run) -> None:
        summary = jobs.run_pass(limit=limit)
        run.syncs, run.failed = summary.connections_processed, summary.connections_failed
        run.events = summary.events_created + summary.events_updated + summary.events_deleted

    return work


def queued_tasks(connection_ids: list[int]) -> Callable[[Run], None]:
    from integrations.calendars import tasks

    def work(run: Run) -> None:
        for connection_id in connection_ids:
            outcome = tasks.sync_calendar_connection(connection_id)
            run.syncs += 1
            run.failed += outcome["error_code"] not in (None, "sync_in_progress")
            run.events += outcome["created"] + outcome["updated"] + outcome["deleted"]

    return work


def make_all_stale() -> None:
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    stale = timezone.now() - timedelta(minutes=settings.CALENDAR_SYNC_STALE_MINUTES + 1)
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE external_calendar_connections SET last_synced_at = %s, sync_needed = false", [stale]
        )


def due_now() -> int:
    from django.utils import timezone

    from integrations.calendars.jobs import due_connections

    return len(due_connections(timezone.now(), 10**6))


def scenario(
    name: str, picker: Callable[[], list[Any]], full: Run, ctx: dict[str, Any], counter: Statements
) -> list[bool]:
    base, state, connections = ctx["base"], ctx["state"], ctx["connections"]
    print(f"\n  -- scenario {name}")
    results = []
    for mode in ("push-marked job pass", "queued push tasks", "all polled job pass"):
        ctx["tag"] += 1
        rows = picker()
        pushes = change_events(base, state, rows, f"change set {ctx['tag']}", counter)
        print(f"  [{mode}]")
        print_pushes(pushes, len(rows))
        if mode == "push-marked job pass":
            print(f"    due before the pass: {due_now()} connections")
            run = measured(mode, counter, base, job_pass(connections))
        elif mode == "queued push tasks":
            run = measured(f"{mode} (one sync per task, in order)", counter, base, queued_tasks(pushes.tasks))
        else:
            make_all_stale()
            print(f"    every connection made stale first: {due_now()} due")
            run = measured(mode, counter, base, job_pass(connections))
        print_run(run)
        if run.events != len(rows):
            print(
                f"      NOTE: {run.events} events changed in Conduit for {len(rows)} changed at the sandbox"
            )
        push_writes = pushes.writes if mode != "all polled job pass" else None
        results.append(print_ratios(full, run, push_writes))
    return results


def part_sync(args: argparse.Namespace, counter: Statements) -> bool:
    from django.conf import settings

    from conduit.tenancy import system_scope
    from integrations.models import ExternalCalendarConnection, ExternalCalendarEvent
    from integrations.sandbox.server import start_sandbox

    sandbox = start_sandbox("google", port=0)
    base = sandbox.base_url
    for name, path in (("TOKEN", "/token"), ("REVOKE", "/revoke"), ("USERINFO", "/v1/userinfo")):
        setattr(settings, f"GOOGLE_{name}_URL", base + path)
    settings.GOOGLE_CALENDAR_API_URL = f"{base}/calendar/v3"
    settings.GOOGLE_AUTHORIZE_URL = f"{base}/o/oauth2/v2/auth"
    settings.CALENDAR_WEBHOOK_BASE_URL = "http://127.0.0.1"
    sandbox.state.outbox.transport = webhook_transport()  # type: ignore[attr-defined]
    try:
        started = time.perf_counter()
        tokens = seed_sandbox(base, args.connections, args.events)
        ids = make_connections(tokens, args.members_per_workspace)
        print(
            f"\n== 1. sync: {len(ids)} Google calendar connections x {args.events} events, in-process "
            f"sandbox {base}; {args.members_per_workspace} members a workspace; seeded and connected "
            f"in {time.perf_counter() - started:.1f} s"
        )
        print(
            f"CALENDAR_JOB_CONCURRENCY {settings.CALENDAR_JOB_CONCURRENCY} threads, page size 250, "
            f"{os.cpu_count()} CPUs (the sandbox shares this process)"
        )
        open_channels(ids, sandbox.state)
        full = measured("full pass", counter, base, job_pass(len(ids)))
        print_run(full)
        with system_scope():
            stored = ExternalCalendarEvent.objects.count()
            cursors = ExternalCalendarConnection.objects.exclude(sync_cursor=None).count()
        complete = stored == len(ids) * args.events and cursors == len(ids)
        print(f"      stored {stored} events, {cursors} sync cursors {verdict(complete)}")
        changes = round(len(ids) * args.events * args.changed_pct / 100)
        rng = random.Random(args.seed)
        ctx = {"base": base, "state": sandbox.state, "connections": len(ids), "tag": 0}
        print(f"\nincremental: {changes} events ({args.changed_pct}%) changed per run, a fresh set each time")
        results = scenario(
            f"(a): concentrated on {max(1, changes // args.events)} connections",
            lambda: concentrated(ids, args.events, changes, rng),
            full,
            ctx,
            counter,
        )
        results += scenario(
            "(b): spread at random over all connections", lambda: spread(changes, rng), full, ctx, counter
        )
    finally:
        sandbox.stop()
    return complete and all(results)


# --- part 2 ---------------------------------------------------------------------------------

# Kinds by basis point (b = i * 7919 mod 10000 is a permutation of 0..9999 in every 10000 rows):
# the first --due-pct are due (pushed 40%, stale 40%, never synced 20%); then rows that would be
# due but are in backoff, errored, disconnected or disabled; the rest were synced within the hour.
DUE_ROWS = """
WITH k AS (
  SELECT p.id AS profile_id, p.i, x.b, CASE
      WHEN x.b < %(due)s * 4 / 10 THEN 'pushed'
      WHEN x.b < %(due)s * 8 / 10 THEN 'stale'
      WHEN x.b < %(due)s THEN 'never'
      WHEN x.b < %(due)s + 50 THEN 'stale_backoff'
      WHEN x.b < %(due)s + 70 THEN 'pushed_backoff'
      WHEN x.b < %(due)s + 170 THEN 'error'
      WHEN x.b < %(due)s + 220 THEN 'disconnected'
      WHEN x.b < %(due)s + 270 THEN 'disabled'
      ELSE 'fresh' END AS kind
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS i FROM profiles WHERE email LIKE 'due%%@due.example') p,
    LATERAL (SELECT (p.i * 7919) %% 10000 AS b) x
)
INSERT INTO external_calendar_connections (provider, status, sync_enabled, last_synced_at, error_count,
  last_error, backoff_until, token_expiry, sync_cursor, sync_needed, access_token, refresh_token,
  granted_scopes, account_email, channel_id, channel_resource_id, channel_secret, channel_expires_at,
  full_sync_count, connected_at, created_at, updated_at, provider_id, workspace_id)
SELECT CASE WHEN i %% 3 = 0 THEN 'microsoft' ELSE 'google' END,
  CASE kind WHEN 'error' THEN 'error' WHEN 'disconnected' THEN 'disconnected' ELSE 'connected' END,
  kind <> 'disabled',
  CASE WHEN kind = 'never' THEN NULL
    WHEN kind IN ('pushed', 'pushed_backoff', 'fresh')
      THEN %(now)s - make_interval(secs => (1 + i %% 3500)::int)
    ELSE %(now)s - make_interval(mins => (61 + i %% 2880)::int) END,
  CASE WHEN kind LIKE '%%backoff' THEN 1 + i %% 5 ELSE 0 END,
  CASE WHEN kind LIKE '%%backoff' THEN 'http_503: Backend Error' END,
  CASE WHEN kind LIKE '%%backoff' THEN %(now)s + make_interval(mins => (1 + i %% 300)::int) END,
  %(now)s + interval '30 minutes', CASE WHEN kind <> 'never' THEN 'cursor-' || i END,
  kind IN ('pushed', 'pushed_backoff'), '', '', '["openid"]'::jsonb, 'due' || i || '@due.example',
  'channel-' || i, 'res-' || i, '', %(now)s + interval '5 days', 1,
  %(now)s - interval '90 days', %(now)s - interval '90 days', %(now)s, profile_id,
  (%(workspaces)s::bigint[])[1 + i %% cardinality(%(workspaces)s::bigint[])]
FROM k"""

MEMBERS = """
WITH u AS (
  INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff,
    is_active, date_joined)
  SELECT '!', false, 'due' || i || '@due.example', '', '', 'due' || i || '@due.example', false, true, %(now)s
  FROM generate_series(1, %(n)s) AS g(i) RETURNING id, email)
INSERT INTO profiles (user_id, email, display_name, created_at) SELECT id, email, '', %(now)s FROM u"""

SEQ_SCAN = "Seq Scan on external_calendar_connections"
INDEXES = ("calendar_conn_pushed", "calendar_conn_stale")


def seed_due(args: argparse.Namespace) -> None:
    from django.db import connection
    from django.utils import timezone

    now = timezone.now()
    started = time.perf_counter()
    with connection.cursor() as cur:
        # part 1's rows and their dead versions go: the index ranges hold only this part's rows
        cur.execute("TRUNCATE crm_write_log, external_calendar_events, external_calendar_connections")
        cur.execute(
            "INSERT INTO workspaces (slug, name, created_at) SELECT 'due-' || w, 'Due ' || w, %s "
            "FROM generate_series(1, %s) AS g(w) RETURNING id",
            [now, max(1, args.due_total // 100)],
        )
        workspaces = [row[0] for row in cur.fetchall()]
        cur.execute(MEMBERS, {"now": now, "n": args.due_total})
        cur.execute(DUE_ROWS, {"now": now, "due": round(args.due_pct * 100), "workspaces": workspaces})
        cur.execute("VACUUM ANALYZE external_calendar_connections")  # as autovacuum leaves it
    print(
        f"\n== 2. due selection: {args.due_total} connections inserted by INSERT ... SELECT generate_series "
        f"in {time.perf_counter() - started:.1f} s, then VACUUM ANALYZE"
    )


def plan_lines(sql: str, params: list[Any]) -> list[str]:
    from django.db import connection

    from conduit.tenancy import system_scope

    with system_scope(), connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return [row[0] for row in cur.fetchall()]


def timings(now: datetime, limit: int, samples: int) -> tuple[list[float], list[float]]:
    """(ms of due_connections, ms of its SQL alone inside one open scope), `samples` each."""
    from django.db import connection

    from conduit.tenancy import system_scope
    from integrations.calendars.jobs import due_connections, due_query

    query = due_query(now, limit)
    assert query is not None
    for _ in range(5):  # warm-up, not counted
        due_connections(now, limit)
    calls = []
    for _ in range(samples):
        started = time.perf_counter()
        due_connections(now, limit)
        calls.append((time.perf_counter() - started) * 1000)
    alone = []
    with system_scope(), connection.cursor() as cur:
        for _ in range(samples):
            started = time.perf_counter()
            cur.execute(*query)
            cur.fetchall()
            alone.append((time.perf_counter() - started) * 1000)
    return calls, alone


def judge_plan(who: str, plan: list[str]) -> bool:
    used = [name for name in INDEXES if any(name in line for line in plan)]
    seq = any(SEQ_SCAN in line for line in plan)
    ok = bool(used) and not seq
    print(
        f"  {who}: plan reads the indexes {', '.join(used) or 'NONE'}; "
        f"{'a Seq Scan on the table' if seq else 'no Seq Scan on the table'} {verdict(ok)}"
    )
    return ok


def judge_times(who: str, calls: list[float], alone: list[float], samples: int) -> bool:
    p95 = percentile(calls, 95)
    ok = p95 < TARGET_P95_MS
    print(
        f"  {who}, {samples} runs: due_connections p50 {percentile(calls, 50):.2f} ms  p95 {p95:.2f} ms  "
        f"max {max(calls):.2f} ms (target p95 < {TARGET_P95_MS:.0f} ms) {verdict(ok)}; its SQL alone "
        f"p50 {percentile(alone, 50):.2f} ms  p95 {percentile(alone, 95):.2f} ms"
    )
    return ok


@contextmanager
def plain_role() -> Iterator[None]:
    """Act as a role that is not superuser, not owner, without BYPASSRLS: the policy applies."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{PROBE_ROLE}') "
            f"THEN CREATE ROLE {PROBE_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS; END IF; END $$"
        )
        cur.execute(f"GRANT USAGE ON SCHEMA public TO {PROBE_ROLE}")
        cur.execute(f"GRANT SELECT ON external_calendar_connections TO {PROBE_ROLE}")
        cur.execute(f"SET ROLE {PROBE_ROLE}")
    try:
        yield
    finally:
        with connection.cursor() as cur:
            cur.execute("RESET ROLE")


def part_due(args: argparse.Namespace) -> bool:
    from django.conf import settings
    from django.utils import timezone

    from integrations.calendars.jobs import due_connections, due_query

    seed_due(args)
    now, limit = timezone.now(), settings.CALENDAR_JOB_BATCH_SIZE
    due = len(due_connections(now, 10**6))
    share = due / args.due_total
    print(f"due now: {due} of {args.due_total} ({share:.2%}); a pass takes {limit} (CALENDAR_JOB_BATCH_SIZE)")
    query = due_query(now, limit)
    assert query is not None
    print("due_query SQL: " + query[0])
    ok = True
    for who, scope in (
        ("as superuser (RLS bypassed)", nullcontext),
        ("as a plain role (RLS applies)", plain_role),
    ):
        with scope():
            plan = plan_lines(*query)
            calls, alone = timings(now, limit, args.samples)
        print(f"EXPLAIN (ANALYZE, BUFFERS) {who}:")
        print("\n".join("    " + line for line in plan))
        ok = judge_plan(who, plan) & judge_times(who, calls, alone, args.samples) & ok
    return ok


# --- main ------------------------------------------------------------------------------------


def flush(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--changed-pct", type=float, default=1.0, help="share of all events changed per run")
    parser.add_argument("--members-per-workspace", type=int, default=10)
    parser.add_argument("--due-total", type=int, default=100_000)
    parser.add_argument("--due-pct", type=float, default=1.0)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--parts", default="sync,due", help="comma-separated: sync, due")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--db-name", default="bench_cal")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    os.environ["DATABASE_URL"] = recreate_database(server, args.db_name)
    os.environ["REDIS_URL"] = args.redis_url
    os.environ["GOOGLE_CALENDAR_REQUESTS_PER_MINUTE"] = "100000"  # measure work, not waiting
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conduit.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.backends.signals import connection_created

    call_command("migrate", verbosity=0)
    for flag in ("SYNC", "JOBS", "WEBHOOK", "OAUTH"):
        setattr(settings, f"CALENDAR_{flag}_ENABLED", True)
    settings.CALENDAR_ALLOWLIST_PROVIDER_IDS = settings.CALENDAR_ALLOWLIST_CONNECTION_IDS = ["*"]
    counter = Statements()
    connection_created.connect(counter.install, weak=False)
    counter.install(connection)
    flush(args.redis_url)
    parts = {p.strip() for p in args.parts.split(",")}
    ok = True
    try:
        if "sync" in parts:
            ok = part_sync(args, counter) and ok
        if "due" in parts:
            ok = part_due(args) and ok
    finally:
        flush(args.redis_url)
    print(f"\nall targets met: {'yes' if ok else 'NO'}")
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
