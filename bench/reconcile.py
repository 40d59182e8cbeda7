"""Reconcile-queue benchmark on Postgres: due-row selection, concurrent claimers, live delivery.

1. selection: --rows crm_write_log rows, --due-pct of them due and --blocked-pct due by time but on
   an errored connection; the SELECT inside claim_due's UPDATE (LIMIT 500, FOR UPDATE SKIP LOCKED,
   rolled back) timed --samples times as planned, then with index and bitmap scans off.
   Targets: plan uses crm_write_due, p95 < 5 ms, seq/index >= 50x at p50 and p95.
2. claimers: --claim-rows due rows; --claimers processes call claim_due(500) until they get nothing.
   Target: every due row claimed exactly once.
3. delivery: --writes notes to an in-process HubSpot sandbox, --workers processes looping
   reconcile_crm_writes handing groups of CONDUIT_DELIVERY_GROUP_SIZE to deliver_writes (as the
   Celery task does). Targets: >= 90% of the limit (measured after the first 10 s window, whose
   burst the moving window allows), < 1% 429s, 0 duplicates. Prints CPU
   and SQL statements per delivered write; --profile adds where the workers' CPU goes. Set
   REDIS_URL, production's limiter store: without it the file store's JSON read and write per
   call adds several ms of CPU to every write.

The database (--db-name on DATABASE_URL's server) is dropped and recreated at the start and kept
afterwards for inspection. Exits 0 unless something broke (or, with --strict, a target was missed).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# This file shares its name with the reconcile app: the app must win the import.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != BENCH)]

from bench.common import area_of, percentile, process_cpu, recreate_database, verdict  # noqa: E402

SELECT_LIMIT = 500
TARGET_P95_MS = 5.0
TARGET_RATIO = 50.0
TARGET_SHARE = 0.90
TARGET_429 = 0.01
FORCE_SEQ = ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan")
SANDBOX_CONTACTS = {  # seeded in integrations/sandbox/hubspot_crm.py: email -> (contact, open deal)
    "maya.lopez@acme-logistics.example": ("101", "201"),
    "jonas@brightfield-energy.example": ("102", "203"),
    "lee@northwind.example": ("103", ""),
}
MARKER = re.compile(r"cdw[0-9a-f]{24}")
ACTUAL_ROWS = re.compile(r"actual time=[\d.]+\.\.[\d.]+ rows=(\d+) loops")

# Rows by kind, in basis points after the due share: the rest have succeeded. `waiting_reconnect`
# rows are due by time but belong to an errored connection (what delivery leaves after a 401):
# the claim must step over them. The other kinds go to the live connections in turn.
SEED = """
WITH k AS (
  SELECT i, CASE
      WHEN b < %(due)s THEN 'due'
      WHEN b < %(due)s + 150 THEN 'retry_later'
      WHEN b < %(due)s + 250 THEN 'permanent'
      WHEN b < %(due)s + 270 THEN 'sending'
      WHEN b < %(due)s + 670 THEN 'dry_run'
      WHEN b < %(due)s + 1170 THEN 'skipped'
      WHEN b < %(due)s + 1170 + %(blocked)s THEN 'waiting_reconnect'
      ELSE 'succeeded' END AS kind,
    %(now)s - make_interval(secs => (%(rows)s - i) * 30) AS created,
    'contact' || i %% 20000 || '@customer' || i %% 500 || '.example' AS target
  FROM generate_series(1, %(rows)s) AS g(i), LATERAL (SELECT (i::bigint * 7919) %% 10000 AS b) AS x
), r AS (
  SELECT k.*, CASE kind WHEN 'dry_run' THEN %(dry_conn)s WHEN 'waiting_reconnect' THEN %(error_conn)s
      ELSE (%(live)s::bigint[])[1 + i %% cardinality(%(live)s::bigint[])] END AS conn_id,
    CASE WHEN kind IN ('retry_later', 'permanent', 'waiting_reconnect') OR (kind = 'due' AND i %% 3 = 0)
      THEN 'failed' WHEN kind = 'due' THEN 'planned' ELSE kind END AS row_status
  FROM k
)
INSERT INTO crm_write_log (workspace_id, connection_id, provider, operation, target, idempotency_key,
  payload, status, retry_count, next_retry_at, permanent_failure, last_error_code, last_error_message,
  external_id, outcome_unknown, lease_token, lease_expires_at, sent_at, created_at, updated_at)
SELECT c.workspace_id, c.id, c.crm, CASE WHEN i %% 5 = 0 THEN 'create_task' ELSE 'create_note' END,
  target, md5('bench-key-' || i) || md5('bench-key2-' || i),
  jsonb_build_object('subject', 'Email: Renewal terms #' || i,
    'text', 'Email (inbound): Renewal terms #' || i || E'\\nFrom: ' || target
      || E'\\nTo: owner@bench.example\\nTime: ' || to_char(created, 'YYYY-MM-DD HH24:MI')
      || E' UTC\\nIn Conduit: https://conduit.example/messages/' || i || '/',
    'occurred_at', to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'),
    'direction', 'inbound', 'link', 'https://conduit.example/messages/' || i || '/',
    'participants', jsonb_build_object('from', jsonb_build_array(target),
      'to', jsonb_build_array('owner@bench.example'), 'cc', '[]'::jsonb),
    'contact_email', target),
  row_status, CASE WHEN row_status = 'failed' THEN 1 + i %% 7 ELSE 0 END,
  CASE kind WHEN 'due' THEN %(now)s - make_interval(secs => 1 + i %% 7200)
    WHEN 'retry_later' THEN %(now)s + make_interval(secs => 3600 + i %% 604800)
    WHEN 'waiting_reconnect' THEN %(now)s - make_interval(secs => 1 + i %% 86400)
    WHEN 'sending' THEN %(now)s - make_interval(secs => 1 + i %% 600) END,
  kind = 'permanent',
  CASE kind WHEN 'permanent' THEN 'validation_error' WHEN 'waiting_reconnect' THEN 'token_expired'
    WHEN 'skipped' THEN 'no_matching_contact' ELSE CASE WHEN row_status = 'failed' THEN 'http_503' ELSE '' END
    END, '', CASE WHEN kind = 'succeeded' THEN (90000 + i)::text ELSE '' END, false,
  CASE WHEN kind = 'sending' THEN md5('lease-' || i) ELSE '' END,
  CASE WHEN kind = 'sending' THEN %(now)s + interval '10 minutes' END,
  CASE WHEN kind = 'succeeded' THEN created + interval '1 minute' END, created, %(now)s
FROM r JOIN crm_connections c ON c.id = r.conn_id"""

# Due rows on live connections leave the queue (as if sent), so a part starts from its own rows.
DRAIN = """
UPDATE crm_write_log w SET status = 'succeeded', next_retry_at = NULL, lease_token = '',
  lease_expires_at = NULL, sent_at = %(now)s, last_error_code = ''
FROM crm_connections c
WHERE c.id = w.connection_id AND c.status = 'connected' AND NOT c.dry_run AND NOT w.permanent_failure
  AND (w.status = 'sending' OR (w.status IN ('failed', 'planned') AND w.next_retry_at <= %(until)s))"""

# Rows the claim's index range covers but its join drops, older than the oldest claimable row.
BLOCKED = """
SELECT count(*) FROM crm_write_log w JOIN crm_connections c ON c.id = w.connection_id
WHERE w.status IN ('failed', 'planned') AND NOT w.permanent_failure
  AND NOT (c.status = 'connected' AND NOT c.dry_run)
  AND w.next_retry_at < (
    SELECT min(w2.next_retry_at) FROM crm_write_log w2 JOIN crm_connections c2 ON c2.id = w2.connection_id
    WHERE w2.status IN ('failed', 'planned') AND NOT w2.permanent_failure AND w2.next_retry_at <= %(now)s
      AND c2.status = 'connected' AND NOT c2.dry_run)"""

MAKE_DUE = """
UPDATE crm_write_log SET status = CASE WHEN id %% 3 = 0 THEN 'failed' ELSE 'planned' END,
  next_retry_at = %(now)s - make_interval(secs => 1 + id %% 3600), sent_at = NULL, external_id = ''
WHERE id IN (
  SELECT w.id FROM crm_write_log w JOIN crm_connections c ON c.id = w.connection_id
  WHERE w.status = 'succeeded' AND c.status = 'connected' AND NOT c.dry_run
  ORDER BY md5(w.id::text) LIMIT %(n)s)"""

LIVE_WRITES = """
INSERT INTO crm_write_log (workspace_id, connection_id, provider, operation, target, idempotency_key,
  payload, status, retry_count, next_retry_at, permanent_failure, last_error_code, last_error_message,
  external_id, outcome_unknown, lease_token, created_at, updated_at)
SELECT %(ws)s, %(conn)s, 'hubspot', 'create_note', (%(emails)s::text[])[1 + i %% 3],
  encode(sha256(convert_to('bench-live-' || i, 'UTF8')), 'hex'),
  jsonb_build_object('subject', 'Email: bench delivery #' || i,
    'text', 'Email (inbound): bench delivery #' || i,
    'occurred_at', to_char(%(now)s AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')),
  'planned', 0, %(now)s, false, '', '', '', false, '', %(now)s, %(now)s
FROM generate_series(1, %(n)s) AS g(i)"""


def setup_django() -> None:
    import django

    django.setup()


def cursor_value(statement: str, params: dict[str, Any]) -> Any:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchone()[0]


def cpu_seconds(usage: Any) -> float:
    return float(usage.ru_utime + usage.ru_stime)


def cursor_run(statement: str, params: dict[str, Any] | None = None) -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(statement, params)
        return cur.rowcount


def make_connections() -> tuple[list[int], int, int]:
    """Four workspaces with HubSpot and Salesforce each: (live ids, a dry-run id, an errored id)."""
    from django.utils import timezone

    from conduit.models import Workspace
    from integrations.models import CrmConnection

    live: list[int] = []
    dry = error = 0
    for slug in ("bench-a", "bench-b", "bench-c", "bench-d"):
        workspace = Workspace.objects.create(slug=slug, name=slug.title())
        for crm in ("hubspot", "salesforce"):
            conn = CrmConnection.objects.create(
                workspace=workspace,
                crm=crm,
                status="error" if (slug, crm) == ("bench-d", "salesforce") else "connected",
                dry_run=(slug, crm) == ("bench-c", "hubspot"),
                external_account_key=f"{slug}-{crm}",
                connected_at=timezone.now(),
            )
            if conn.status == "error":
                error = conn.pk
            elif conn.dry_run:
                dry = conn.pk
            else:
                live.append(conn.pk)
    return live, dry, error


def seed_ledger(args: argparse.Namespace) -> None:
    from django.utils import timezone

    live, dry, error = make_connections()
    started = time.perf_counter()
    params = {"rows": args.rows, "due": round(args.due_pct * 100), "blocked": round(args.blocked_pct * 100)}
    cursor_run(SEED, {**params, "now": timezone.now(), "live": live, "dry_conn": dry, "error_conn": error})
    from reconcile.queue import park_and_unpark

    park_started = time.perf_counter()
    parked, unparked = park_and_unpark(now=timezone.now())  # what every reconcile run does first
    print(
        f"reconcile's park step: parked {parked} write(s) of connections that are not live, "
        f"resumed {unparked}, in {(time.perf_counter() - park_started) * 1000:.0f} ms"
    )
    cursor_run("ANALYZE crm_write_log")
    cursor_run("ANALYZE crm_connections")
    print(
        f"seeded {args.rows} crm_write_log rows in {time.perf_counter() - started:.1f} s (one INSERT ... "
        f"SELECT generate_series, then ANALYZE); connections: {len(live)} live, 1 dry run, 1 errored"
    )


def claim_select() -> tuple[str, list[Any]]:
    """The SELECT inside claim_due's UPDATE and its parameters, taken from the statement it runs."""
    from django.db import connection, transaction
    from django.utils import timezone

    from integrations.connections.pauses import active_pauses
    from reconcile.queue import claim_due

    seen: list[tuple[str, list[Any]]] = []

    def record(execute: Callable[..., Any], statement: str, params: Any, many: bool, context: Any) -> Any:
        if statement.lstrip().startswith("UPDATE crm_write_log SET status = 'sending'"):
            seen.append((statement, list(params)))
        return execute(statement, params, many, context)

    with transaction.atomic(), connection.execute_wrapper(record):
        claim_due(SELECT_LIMIT, pauses=active_pauses(), now=timezone.now())
        transaction.set_rollback(True)
    [(update, params)] = seen
    opening = "WHERE id IN ("
    start, end = update.index(opening) + len(opening), update.rindex(")")
    assert update[end:].split() == [")", "RETURNING", "id"], update
    return update[start:end].strip(), params[update[:start].count("%s") :]


def in_rolled_back_transaction(select: str, params: list[Any], off: tuple[str, ...]) -> tuple[float, Any]:
    """(ms, rows) of one run of `select` with the planner settings `off` switched off."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cur:
        for name in off:
            cur.execute(f"SET LOCAL {name} = off")
        started = time.perf_counter()
        cur.execute(select, params)
        rows = cur.fetchall()
        elapsed = (time.perf_counter() - started) * 1000
        transaction.set_rollback(True)
    return elapsed, rows


def explain(select: str, params: list[Any], off: tuple[str, ...]) -> list[str]:
    _ms, rows = in_rolled_back_transaction("EXPLAIN (ANALYZE, BUFFERS) " + select, params, off)
    return [row[0] for row in rows]


def timed(select: str, params: list[Any], samples: int, off: tuple[str, ...]) -> list[float]:
    for _ in range(5):  # warm-up, not counted
        in_rolled_back_transaction(select, params, off)
    return [in_rolled_back_transaction(select, params, off)[0] for _ in range(samples)]


def part_selection(args: argparse.Namespace) -> bool:
    from django.utils import timezone

    from integrations.connections.pauses import active_pauses
    from reconcile.queue import count_due

    select, params = claim_select()
    due = count_due(pauses=active_pauses(), now=timezone.now())
    print(f"\n== 1. due selection: {args.rows} rows, {due} due ({due / args.rows:.2%}), LIMIT {SELECT_LIMIT}")
    print("claim SELECT: " + " ".join(select.split()))
    index = timed(select, params, args.samples, ())
    seq = timed(select, params, args.samples, FORCE_SEQ)
    i50, i95 = percentile(index, 50), percentile(index, 95)
    s50, s95 = percentile(seq, 50), percentile(seq, 95)
    plan = explain(select, params, ())
    print("EXPLAIN (ANALYZE, BUFFERS), planner free, after the timed runs:")
    print("\n".join("    " + line for line in plan))
    uses_index = any("crm_write_due" in line for line in plan)
    print(f"plan uses the crm_write_due index: {'yes' if uses_index else 'NO'} {verdict(uses_index)}")
    walked = [int(m[1]) for line in plan if "crm_write_due" in line and (m := ACTUAL_ROWS.search(line))]
    blocked = cursor_value(BLOCKED, {"now": params[0]})  # the claim's first parameter is its `now`
    print(
        f"index entries the claim reads: {walked[0] if walked else '?'} for {SELECT_LIMIT} rows returned; "
        f"{blocked} rows of connections that cannot be claimed (errored) are still in the due range "
        "(parked rows have next_retry_at NULL, outside it)"
    )
    print("EXPLAIN (ANALYZE, BUFFERS), index scans off:")
    print("\n".join("    " + line for line in explain(select, params, FORCE_SEQ)))
    p95_ok = i95 < TARGET_P95_MS
    ratio_ok = s50 / i50 >= TARGET_RATIO and s95 / i95 >= TARGET_RATIO
    print(
        f"planner free ({args.samples} runs): p50 {i50:.2f} ms  p95 {i95:.2f} ms  max {max(index):.2f} ms"
        f"  (target p95 < {TARGET_P95_MS:.0f} ms) {verdict(p95_ok)}"
    )
    print(f"index scans off ({args.samples} runs): p50 {s50:.2f} ms  p95 {s95:.2f} ms  max {max(seq):.2f} ms")
    print(
        f"seq / index: {s50 / i50:.0f}x at p50, {s95 / i95:.0f}x at p95"
        f"  (target >= {TARGET_RATIO:.0f}x at both) {verdict(ratio_ok)}"
    )
    return uses_index and p95_ok and ratio_ok


def claimer(barrier: Any, out: Any, batch: int) -> None:
    setup_django()
    from django.db import connection
    from django.utils import timezone

    from integrations.connections.pauses import active_pauses
    from reconcile.queue import claim_due

    connection.ensure_connection()
    barrier.wait()
    claimed: list[int] = []
    batches = 0
    while True:
        _token, ids = claim_due(batch, pauses=active_pauses(), now=timezone.now())
        if not ids:
            break
        claimed += ids
        batches += 1
    out.put({"ids": claimed, "batches": batches})


def part_claimers(args: argparse.Namespace) -> bool:
    from django.db import connection
    from django.utils import timezone

    from integrations.connections.pauses import active_pauses
    from reconcile.queue import due_filter

    now = timezone.now()
    cursor_run(DRAIN, {"now": now, "until": now})
    cursor_run(MAKE_DUE, {"now": now, "n": args.claim_rows})
    cursor_run("ANALYZE crm_write_log")
    where, params = due_filter(active_pauses(), None, timezone.now())
    with connection.cursor() as cur:
        join = "JOIN crm_connections c ON c.id = w.connection_id"
        cur.execute(f"SELECT w.id FROM crm_write_log w {join} WHERE {where}", params)
        due_ids = {row[0] for row in cur.fetchall()}
    print(
        f"\n== 2. concurrent claimers: {len(due_ids)} due rows, {args.claimers} processes "
        f"calling claim_due({SELECT_LIMIT}) until it returns nothing"
    )
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(args.claimers + 1), ctx.Queue()
    procs = [ctx.Process(target=claimer, args=(barrier, out, SELECT_LIMIT)) for _ in range(args.claimers)]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=120)
    started = time.perf_counter()
    results = [out.get(timeout=600) for _ in procs]
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join(timeout=30)
    every = [i for r in results for i in r["ids"]]
    twice = len(every) - len(set(every))
    exact = twice == 0 and set(every) == due_ids
    counts = ", ".join(f"{len(r['ids'])} ({r['batches']})" for r in results)
    print(f"claimed {len(every)} rows in {elapsed:.2f} s = {len(every) / elapsed:.0f} rows/s")
    print(f"per claimer, rows (batches): {counts}")
    print(
        f"claimed twice: {twice}; due, not claimed: {len(due_ids - set(every))}; claimed, not due: "
        f"{len(set(every) - due_ids)}  (target: every due row exactly once) {verdict(exact)}"
    )
    return exact


def deliverer(barrier: Any, out: Any, batch: int, deadline: float, profile_to: str = "") -> None:
    setup_django()
    import cProfile
    import resource

    from django.db import connection

    from reconcile.delivery import deliver_writes
    from reconcile.models import CrmWriteLog
    from reconcile.queue import reconcile_crm_writes

    outcomes: Counter[str] = Counter()
    queries = 0

    def dispatch(write_ids: list[int], token: str) -> None:
        outcomes.update(o.code for o in deliver_writes(write_ids, token).values())

    def count(execute: Callable[..., Any], *args: Any) -> Any:
        nonlocal queries
        queries += 1
        return execute(*args)

    waiting = CrmWriteLog.objects.filter(
        status__in=["planned", "failed", "sending"], permanent_failure=False, connection__status="connected"
    )
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    backend_start = process_cpu(backend)
    barrier.wait()
    profiler = cProfile.Profile(time.process_time) if profile_to else None
    own_start = resource.getrusage(resource.RUSAGE_SELF)
    if profiler is not None:
        profiler.enable()
    with connection.execute_wrapper(count):
        while time.time() < deadline:
            result = reconcile_crm_writes(limit=batch, dispatch_group=dispatch)
            if result.paused or (not result.claimed and not waiting.exists()):
                break
            if not result.claimed:
                time.sleep(0.1)  # rows wait for their retry time or for another worker's lease
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{profile_to}/worker-{os.getpid()}.prof")
    own = cpu_seconds(resource.getrusage(resource.RUSAGE_SELF)) - cpu_seconds(own_start)
    backend_end = process_cpu(backend)
    backend_cpu = None if backend_start is None or backend_end is None else backend_end - backend_start
    out.put({"outcomes": dict(outcomes), "queries": queries, "cpu": own, "backend_cpu": backend_cpu})


def live_connection(sandbox_url: str) -> tuple[int, int]:
    """A live HubSpot connection holding tokens the sandbox issued, and a contact->deal mapping per
    seeded contact so delivery makes no lookups. Returns (workspace id, connection id)."""
    import requests
    from django.utils import timezone

    from conduit.models import Workspace
    from integrations.models import CrmConnection
    from reconcile.models import DealMapping

    tokens = requests.post(f"{sandbox_url}/_sandbox/tokens", json={}, timeout=5).json()
    workspace = Workspace.objects.create(slug="bench-live", name="Bench live")
    now = timezone.now()
    conn = CrmConnection.objects.create(
        workspace=workspace,
        crm="hubspot",
        status="connected",
        dry_run=False,
        external_account_key=str(tokens["hub_id"]),
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        token_expires_at=now + timedelta(seconds=int(tokens["expires_in"])),
        granted_scopes=tokens["scopes"],
        connected_at=now,
    )
    DealMapping.objects.bulk_create(
        DealMapping(workspace=workspace, connection=conn, email=email, contact_id=contact, deal_id=deal)
        for email, (contact, deal) in SANDBOX_CONTACTS.items()
    )
    return workspace.pk, conn.pk


def redis_cpu() -> float | None:
    from django.conf import settings

    if not settings.REDIS_URL:
        return None
    import redis

    info: Any = redis.Redis.from_url(settings.REDIS_URL).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_deliverers(
    args: argparse.Namespace, expected: float, profile_to: str = ""
) -> tuple[list[dict[str, Any]], float, Any]:
    """(per-worker results, seconds from the start signal until the last worker finished, start time)."""
    from django.utils import timezone

    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(args.workers + 1), ctx.Queue()
    deadline = time.time() + 120 + 3 * expected
    procs = [
        ctx.Process(target=deliverer, args=(barrier, out, args.delivery_batch, deadline, profile_to))
        for _ in range(args.workers)
    ]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=120)
    started, started_at = time.perf_counter(), timezone.now()
    results = [out.get(timeout=deadline - time.time() + 120) for _ in procs]
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join(timeout=30)
    return results, elapsed, started_at


def part_delivery(args: argparse.Namespace) -> bool:
    import resource

    import requests
    from django.conf import settings
    from django.utils import timezone

    from integrations.sandbox.server import start_sandbox
    from reconcile.models import CrmWriteLog

    limit, budget = args.hubspot_limit, settings.CONDUIT_RATE_BUDGET
    sandbox = start_sandbox("hubspot", port=0)
    os.environ["HUBSPOT_API_BASE_URL"] = settings.HUBSPOT_API_BASE_URL = sandbox.base_url  # for the workers
    try:
        requests.post(f"{sandbox.base_url}/_sandbox/config", json={"ten_second_limit": limit}, timeout=5)
        if settings.REDIS_URL:
            import redis

            client = redis.Redis.from_url(settings.REDIS_URL)
            for key in client.scan_iter("conduit-rl*"):
                client.delete(key)
        now = timezone.now()
        drained = cursor_run(DRAIN, {"now": now, "until": now + timedelta(days=30)})
        workspace_id, conn_id = live_connection(sandbox.base_url)
        params = {"ws": workspace_id, "conn": conn_id, "emails": list(SANDBOX_CONTACTS), "now": now}
        cursor_run(LIVE_WRITES, {**params, "n": args.writes})
        cursor_run("ANALYZE crm_write_log")
        store = f"redis {settings.REDIS_URL}" if settings.REDIS_URL else "file store (no REDIS_URL)"
        print(
            f"\n== 3. live delivery: {args.writes} notes to the HubSpot sandbox ({sandbox.base_url}, in this "
            f"process), {args.workers} worker processes looping reconcile_crm_writes(limit="
            f"{args.delivery_batch}) handing groups of {settings.CONDUIT_DELIVERY_GROUP_SIZE} "
            "to deliver_writes"
        )
        print(
            f"limit: {limit} requests / 10 s (sandbox ten_second_limit = HUBSPOT_TEN_SECOND_LIMIT"
            f"{'; the real HubSpot limit is 110' if limit != 110 else ''}); limiter {store}, budget "
            f"{budget:.0%}; {drained} queued rows of parts 1-2 drained first; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        self_start, redis_start = resource.getrusage(resource.RUSAGE_SELF), redis_cpu()
        profile_to = tempfile.mkdtemp(prefix="conduit-profile-") if args.profile else ""
        results, elapsed, started_at = run_deliverers(args, args.writes / (limit * budget / 10), profile_to)
        self_end, redis_end = resource.getrusage(resource.RUSAGE_SELF), redis_cpu()
        state = requests.get(f"{sandbox.base_url}/_sandbox/state", timeout=30).json()
    finally:
        sandbox.stop()

    rows = list(
        CrmWriteLog.objects.filter(connection_id=conn_id).only("idempotency_key", "status", "sent_at")
    )
    statuses = Counter(row.status for row in rows)
    done = [row.sent_at for row in rows if row.status == "succeeded" and row.sent_at]
    notes = Counter(m for n in state["notes"] for m in MARKER.findall(n["properties"]["hs_note_body"]))
    markers = {row.marker for row in rows}
    duplicates = sum(n - 1 for m, n in notes.items() if m in markers and n > 1)
    missing = sum(1 for m in markers if notes[m] == 0)
    outcomes: Counter[str] = Counter()
    for result in results:
        outcomes.update(result["outcomes"])
    print(f"write statuses: {dict(statuses)}; delivery outcomes: {dict(outcomes)}")

    per_second = limit / 10
    rate = len(done) / elapsed
    steady_from = started_at + timedelta(seconds=10)
    last = max(done, default=started_at)
    steady = sum(1 for t in done if t >= steady_from)
    steady_rate = steady / (last - steady_from).total_seconds() if last > steady_from else rate
    rate_ok = steady_rate / per_second >= TARGET_SHARE
    print(
        f"{len(done)} writes in {elapsed:.1f} s = {rate:.1f} writes/s = {rate / per_second:.1%} of the limit "
        f"({per_second:.0f}/s) overall"
    )
    print(
        f"after the first 10 s window: {steady_rate:.1f} writes/s = {steady_rate / per_second:.1%} of the "
        f"limit  (target >= {TARGET_SHARE:.0%}) {verdict(rate_ok)}"
    )
    total, limited = state["requests"]["total"], state["requests"]["rate_limited"]
    share_429 = limited / total if total else 0.0
    print(
        f"sandbox requests {total}, 429s {limited} = {share_429:.2%}  (target < {TARGET_429:.0%}) "
        f"{verdict(share_429 < TARGET_429)}"
    )
    exact = duplicates == 0 and missing == 0
    print(
        f"notes in the sandbox {sum(notes.values())}; of {len(markers)} write markers: {duplicates} "
        f"duplicated, {missing} missing  (target 0 duplicates, none missing) {verdict(exact)}"
    )
    n = max(len(done), 1)
    worker_ms = 1000 * sum(r["cpu"] for r in results) / n
    backends = [r["backend_cpu"] for r in results]
    backend_ms = 1000 * sum(backends) / n if None not in backends else None
    sandbox_ms = 1000 * (cpu_seconds(self_end) - cpu_seconds(self_start)) / n
    redis_ms = None if redis_end is None or redis_start is None else 1000 * (redis_end - redis_start) / n
    parts = [("workers", worker_ms), ("their Postgres backends", backend_ms), ("sandbox", sandbox_ms)]
    parts.append(("redis", redis_ms))
    known = sum(ms for _name, ms in parts if ms is not None)
    print(
        "CPU per write: "
        + ", ".join(f"{name} {'n/a' if ms is None else f'{ms:.1f} ms'}" for name, ms in parts)
        + f" = {known:.1f} ms; {sum(r['queries'] for r in results) / n:.1f} SQL statements per write; "
        f"{per_second * TARGET_SHARE:.0f} writes/s needs {known * per_second * TARGET_SHARE / 1000:.1f} CPUs"
    )
    if profile_to:
        print_profile(profile_to, n)
    return rate_ok and share_429 < TARGET_429 and exact


def print_profile(directory: str, writes: int) -> None:
    """The workers' CPU profile (cProfile on process time; its overhead inflates call-heavy code)
    by area of self time, and Conduit's functions by cumulative time, per delivered write."""
    import pstats

    stats = pstats.Stats(*sorted(str(p) for p in Path(directory).glob("*.prof")))
    table: Any = stats.stats  # type: ignore[attr-defined]
    by_area: Counter[str] = Counter()
    for (path, _line, _name), (_cc, _nc, tottime, _cum, _callers) in table.items():
        by_area[area_of(path)] += tottime
    total = sum(by_area.values())
    print(
        f"profile: {1000 * total / writes:.1f} ms of worker CPU per write under cProfile "
        "(its overhead included)"
    )
    for name, seconds in by_area.most_common():
        print(f"  {seconds / total:6.1%}  {name}")
    ours = [
        (cum, f"{Path(path).relative_to(ROOT)}:{line} {name}")
        for (path, line, name), (_cc, _nc, _tt, cum, _callers) in table.items()
        if path.startswith(str(ROOT)) and "/.venv/" not in path and "/bench/" not in path
    ]
    print("  top functions by self CPU per write:")
    selfs = sorted(((tt, key) for key, (_cc, _nc, tt, _cum, _callers) in table.items()), reverse=True)
    for tt, (path, line, name) in selfs[:12]:
        print(f"    {1000 * tt / writes:6.2f} ms  {area_of(path)}: {Path(path).name}:{line} {name}")
    print("  Conduit's functions by cumulative CPU per write:")
    for cum, where in sorted(ours, reverse=True)[:14]:
        print(f"    {1000 * cum / writes:6.2f} ms  {where}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["selection", "claimers", "delivery", "all"], default="all")
    parser.add_argument("--rows", type=int, default=1_000_000, help="crm_write_log rows for parts 1-2")
    parser.add_argument("--due-pct", type=float, default=2.0, help="percent of --rows that are due")
    parser.add_argument(
        "--blocked-pct", type=float, default=0.3, help="percent of --rows due on an errored connection"
    )
    parser.add_argument("--samples", type=int, default=200, help="timed runs per selection variant")
    parser.add_argument("--claim-rows", type=int, default=10_000)
    parser.add_argument("--claimers", type=int, default=8)
    parser.add_argument("--writes", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4, help="delivery worker processes")
    parser.add_argument("--delivery-batch", type=int, default=50, help="limit per reconcile_crm_writes call")
    parser.add_argument("--hubspot-limit", type=int, default=1100, help="per 10 s; HubSpot's own is 110")
    parser.add_argument("--db-name", default="conduit_bench_reconcile")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--profile", action="store_true", help="delivery: cProfile the workers and print where their CPU goes"
    )
    args = parser.parse_args()
    if args.due_pct <= 0 or args.blocked_pct < 0 or args.due_pct + args.blocked_pct > 88:
        parser.error("--due-pct must be > 0, --blocked-pct >= 0, together at most 88 (other kinds take 12%)")

    server_url = os.environ.get("DATABASE_URL", "")
    if urlsplit(server_url).scheme not in ("postgres", "postgresql", "pgsql"):
        print(f"bench/reconcile.py needs Postgres: set DATABASE_URL=postgres://... (it is {server_url!r})")
        return 1
    db_url = recreate_database(server_url, args.db_name)
    parts = ["selection", "claimers", "delivery"] if args.part == "all" else [args.part]
    with tempfile.TemporaryDirectory(prefix="conduit-bench-") as var_dir:
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "conduit.settings",
                "CONDUIT_VAR_DIR": var_dir,
                "DATABASE_URL": db_url,
                "HUBSPOT_TEN_SECOND_LIMIT": str(args.hubspot_limit),
                "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
                "DEBUG": os.environ.get("DEBUG", "false"),  # no per-query recording in the workers
            }
        )
        setup_django()
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        with connection.cursor() as cur:
            cur.execute("SELECT version()")
            version = cur.fetchone()[0].split(" on ")[0]
        print(f"database {args.db_name} ({version}), recreated and migrated; parts: {', '.join(parts)}")
        if "selection" in parts or "claimers" in parts:
            seed_ledger(args)
        met = [globals()[f"part_{part}"](args) for part in parts]
    print(f"\noverall: {verdict(all(met))} (one run on this machine; DEBUG={os.environ['DEBUG']})")
    return 1 if args.strict and not all(met) else 0


if __name__ == "__main__":
    sys.exit(main())
