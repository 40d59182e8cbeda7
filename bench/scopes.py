"""What the row-level-security scopes cost per delivered CRM write, with the old scopes
(re-created here) and the current conduit.tenancy, in one run on Postgres.

--writes notes are delivered to an in-process HubSpot sandbox by reconcile_crm_writes in this
process, twice: first with the scopes as they were (read both settings, set them, read them again
and restore them, on every scope), re-created here as the baseline, then with conduit.tenancy as
it is. Printed per delivered write: SQL statements (a connection execute wrapper), the scope
statements among them (set_config / current_setting) and CPU (process time); then the ratios.
The rate limits are raised out of the way: this measures work, not waiting.

--profile also runs the current scopes' delivery under pyinstrument (the delivering thread only;
the in-process sandbox's threads are not sampled) and prints the top costs: self time by area
(Django's ORM, the psycopg driver, requests / urllib3, Conduit's own code, ...) and the functions
with the most self time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != BENCH)]

from bench.common import area_of, recreate_database  # noqa: E402


@contextmanager
def old_scopes() -> Iterator[None]:
    """conduit.tenancy's scopes as they were before they were made cheaper: four statements a scope."""
    from django.db import connection, transaction

    from conduit import tenancy

    @contextmanager
    def transaction_with(wanted: tuple[str, ...]) -> Iterator[None]:
        with transaction.atomic():
            previous = tenancy._read_scope()  # read
            tenancy._write(wanted)  # set
            yield
            if not connection.needs_rollback:
                restore = tenancy._read_scope()  # read again
                restore.update(previous)
                tenancy._write(tuple(restore[g] for g in tenancy.SCOPE_GUCS))  # restore

    saved = tenancy._transaction_with
    tenancy._transaction_with = transaction_with  # type: ignore[assignment]
    try:
        yield
    finally:
        tenancy._transaction_with = saved  # type: ignore[assignment]


@contextmanager
def new_scopes() -> Iterator[None]:
    yield


def top_costs(session: Any, delivered: int, limit: int = 15) -> None:
    """Print self time per write by area and the functions with the most self time."""
    areas: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    stack = [(session.root_frame(), "", "")]
    while stack:
        frame, parent_path, parent_name = stack.pop()
        # a synthetic "[self]" frame is its caller's own time: name it after the caller
        path = (frame.file_path or parent_path) if frame.is_synthetic else (frame.file_path or "")
        name = (
            parent_name
            if frame.is_synthetic
            else f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
        )
        stack.extend((child, path, name) for child in frame.children)
        own = frame.total_self_time
        if own > 0:
            areas[area_of(path)] += own
            functions[name] += own
    total = sum(areas.values()) or 1.0
    print(
        f"  profile: {total / delivered * 1000:.2f} ms of wall time sampled per write (pyinstrument, this "
        "thread; waiting on Postgres and the sandbox is the sockets' and the driver's share)"
    )
    for name, seconds in areas.most_common():
        print(f"    {seconds / total:6.1%}  {1000 * seconds / delivered:6.2f} ms  {name}")
    print(f"  top {limit} functions by self time:")
    for name, seconds in functions.most_common(limit):
        print(f"    {seconds / total:6.1%}  {name}")


def deliver_all(
    writes: int, conn_id: int, workspace_id: int, sandbox_url: str, *, profile: bool = False
) -> dict[str, float]:
    from django.db import connection
    from django.utils import timezone

    from bench.reconcile import LIVE_WRITES, SANDBOX_CONTACTS, cursor_run
    from reconcile.delivery import deliver_write
    from reconcile.models import CrmWriteLog
    from reconcile.queue import reconcile_crm_writes

    cursor_run("DELETE FROM crm_write_log")
    now = timezone.now()
    params = {"ws": workspace_id, "conn": conn_id, "emails": list(SANDBOX_CONTACTS), "now": now}
    cursor_run(LIVE_WRITES, {**params, "n": writes})
    kinds: Counter[str] = Counter()

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        kinds["all"] += 1
        if "set_config" in sql or "current_setting" in sql:
            kinds["scope"] += 1
        return execute(sql, params, many, context)

    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    started_cpu, started = time.process_time(), time.monotonic()
    with connection.execute_wrapper(count):
        while reconcile_crm_writes(dispatch=lambda write_id, token: deliver_write(write_id, token)).claimed:
            pass
    cpu, wall = time.process_time() - started_cpu, time.monotonic() - started
    if profiler is not None:
        top_costs(profiler.stop(), writes)
    delivered = CrmWriteLog.objects.filter(status="succeeded").count()
    assert delivered == writes, f"{delivered} of {writes} delivered"
    return {
        "delivered": delivered,
        "statements": kinds["all"] / delivered,
        "scope": kinds["scope"] / delivered,
        "cpu_ms": 1000 * cpu / delivered,
        "wall_s": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=600)
    parser.add_argument("--db-name", default="conduit_bench_scopes")
    parser.add_argument("--profile", action="store_true", help="pyinstrument on the current scopes' run")
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    os.environ["DATABASE_URL"] = recreate_database(server, args.db_name)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conduit.settings")
    os.environ["HUBSPOT_TEN_SECOND_LIMIT"] = "1000000"
    import django
    import requests

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from bench.reconcile import live_connection
    from conduit.tenancy import system_scope
    from integrations.sandbox.server import start_sandbox

    call_command("migrate", verbosity=0)
    sandbox = start_sandbox("hubspot", port=0)
    settings.HUBSPOT_API_BASE_URL = sandbox.base_url
    requests.post(f"{sandbox.base_url}/_sandbox/config", json={"ten_second_limit": 1000000}, timeout=5)
    try:
        with system_scope():
            workspace_id, conn_id = live_connection(sandbox.base_url)
        print(f"scopes per delivered write: {args.writes} notes to the HubSpot sandbox, in this process")
        rows = {}
        for name, scopes in (("before", old_scopes), ("after", new_scopes)):
            with scopes():
                rows[name] = deliver_all(args.writes, conn_id, workspace_id, sandbox.base_url)
            row = rows[name]
            print(
                f"  {name:6} statements/write {row['statements']:6.1f}   scope statements/write "
                f"{row['scope']:5.1f}   CPU/write {row['cpu_ms']:6.2f} ms   ({row['wall_s']:.1f} s)"
            )
        before, after = rows["before"], rows["after"]
        print(
            f"  after/before: statements {after['statements'] / before['statements']:.2f}, "
            f"scope statements {after['scope'] / before['scope']:.2f}, "
            f"CPU {after['cpu_ms'] / before['cpu_ms']:.2f}"
        )
        if args.profile:
            print(
                "  a third pass with the current scopes, under pyinstrument (its CPU is the profiler's too):"
            )
            with new_scopes():
                deliver_all(args.writes, conn_id, workspace_id, sandbox.base_url, profile=True)
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
