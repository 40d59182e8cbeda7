"""What a server connection carries from one transaction to the next, and a pytest plugin that
looks for it behind PgBouncer.

In transaction pooling a server connection serves another client after each transaction, so any
state a transaction leaves in its session (a SET without LOCAL, set_config(..., false), a
session advisory lock, LISTEN, a prepared statement, a WITH HOLD cursor, a temporary table) ends
up in someone else's transactions. The pooled run (ops/pgbouncer/pytest.sh) loads this module as
a plugin (`-p tests.pgbouncer_probe`): after every test it borrows each idle server connection
of the test database's pool, all at once, and fails the test's teardown naming what any of them
still carries (then has PgBouncer replace them, so the next test starts clean).
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator
from contextlib import ExitStack
from typing import Any

import psycopg
import pytest

# Parameters PgBouncer itself keeps per client and sets on the server connection it lends.
POOLER_TRACKED = (
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "standard_conforming_strings",
    "application_name",
)
# Server connections the pool keeps (as ops/pgbouncer/start.sh's min_pool_size): with round robin,
# a client's next transaction runs on another one, so code that counts on its session fails.
ROUND = 3
APP_SETTINGS = ("conduit.workspace_id", "conduit.system")  # tenancy's, transaction-local by design

# One row per piece of state this session carries outside any transaction.
SESSION_STATE = """
SELECT 'setting ' || name || ' = ' || setting FROM pg_settings
 WHERE source = 'session' AND name <> ALL(%(tracked)s)
UNION ALL SELECT 'setting ' || g || ' = ' || current_setting(g, true) FROM unnest(%(app)s::text[]) g
 WHERE coalesce(current_setting(g, true), '') <> ''
UNION ALL SELECT 'role ' || current_user WHERE current_user <> session_user
UNION ALL SELECT 'session authorization ' || session_user WHERE session_user <> %(login)s
UNION ALL SELECT 'advisory lock ' || classid || '/' || objid FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid()
UNION ALL SELECT 'listening on ' || c FROM pg_listening_channels() c
UNION ALL SELECT 'prepared statement ' || name FROM pg_prepared_statements
UNION ALL SELECT 'open cursor ' || name FROM pg_cursors WHERE name <> ''  -- '': this query's own
UNION ALL SELECT 'temporary table ' || relname FROM pg_class WHERE relnamespace = pg_my_temp_schema()
"""


def session_state(conn: psycopg.Connection[Any], login: str) -> list[str]:
    """The state the session behind `conn` carries (run it in a transaction of its own: what that
    transaction holds itself is not state the session carries)."""
    rows = conn.execute(
        SESSION_STATE, {"tracked": list(POOLER_TRACKED), "app": list(APP_SETTINGS), "login": login}
    ).fetchall()
    return [row[0] for row in rows]


def idle_servers(host: str, port: int, user: str, database: str) -> int:
    """How many server connections of (database, user)'s pool sit idle (PgBouncer's console)."""
    with psycopg.connect(host=host, port=port, user=user, dbname="pgbouncer", autocommit=True) as admin:
        cur = admin.execute("SHOW POOLS")
        names = [column.name for column in cur.description or ()]
        for row in cur.fetchall():
            pool = dict(zip(names, row, strict=True))
            if (pool["database"], pool["user"]) == (database, user):
                return int(pool["sv_idle"]) + int(pool["sv_used"])
    return 0


def pooled_state(
    host: str, port: int, user: str, database: str, *, at_least: int = 0
) -> dict[int, list[str]]:
    """{backend pid: its state} for every idle server connection of the pool, lent all at once
    (one open transaction per client pins one server connection), so none is missed; at least
    `at_least` of them, so the pool keeps that many for the next test to go round."""
    found: dict[int, list[str]] = {}
    with ExitStack() as stack:
        for _ in range(max(idle_servers(host, port, user, database), at_least)):
            conn = stack.enter_context(
                psycopg.connect(host=host, port=port, user=user, dbname=database, prepare_threshold=None)
            )
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()  # opens the transaction
            assert pid is not None
            if state := session_state(conn, user):
                found[pid[0]] = state
    return found


def recycle_servers(host: str, port: int, user: str, database: str) -> None:
    """Have PgBouncer close the pool's server connections (each once released), so what one test
    left behind is not blamed on the next."""
    if not re.fullmatch(r"\w+", database):
        raise ValueError(f"unexpected database name {database!r}")
    with psycopg.connect(host=host, port=port, user=user, dbname="pgbouncer", autocommit=True) as admin:
        admin.execute(f"RECONNECT {database}")


def _pooled_database() -> tuple[str, int, str, str] | None:
    from django.db import connection

    params = connection.settings_dict
    if os.environ.get("DATABASE_POOLER") != "pgbouncer-transaction" or not params.get("PORT"):
        return None
    if not params["NAME"].startswith("test_"):
        return None  # no test has used the database yet: pytest-django has not created it
    return params["HOST"] or "127.0.0.1", int(params["PORT"]), params["USER"], params["NAME"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """After the test's fixtures are gone (its transaction rolled back, its threads' connections
    closed), no server connection may carry anything it left."""
    yield
    if (pooled := _pooled_database()) is None:
        return
    if leaks := pooled_state(*pooled, at_least=ROUND):
        recycle_servers(*pooled)
        pooled_state(*pooled, at_least=ROUND)  # fresh ones, for the next test to go round
        lines = "; ".join(f"server pid {pid}: {', '.join(state)}" for pid, state in sorted(leaks.items()))
        pytest.fail(f"session state left on PgBouncer's server connections after {item.nodeid}: {lines}")
