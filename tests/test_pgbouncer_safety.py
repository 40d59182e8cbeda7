"""Conduit stays safe behind PgBouncer in transaction pooling (docs/deployment.md,
"Behind PgBouncer"): the app's source holds no construct that keeps state in a database session,
DATABASE_POOLER turns off what Django would otherwise keep there, and against a real PgBouncer
(ops/pgbouncer/start.sh) a session-level construct is seen to leak while the transaction-local
ones Conduit uses are not. The pooled run itself is ops/pgbouncer/pytest.sh."""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection

from tests.pgbouncer_probe import pooled_state
from tests.test_settings import run_manage as settings_run_manage

ROOT = Path(__file__).resolve().parent.parent
APPS = ("conduit", "integrations", "reconcile", "retention")

# (label, pattern) searched in every string literal of the app that is not a docstring (an
# f-string as a whole). SQL keywords are upper case in Conduit's source, so "Reset sync state" or
# "Set by an operator" in a label is not SQL. A statement starts a string or follows a ";".
STATEMENT = r"(?:\A|;)\s*"
SQL_CONSTRUCTS = (
    ("session advisory lock", re.compile(r"\bpg_(try_)?advisory_lock(_shared)?\s*\(", re.I)),
    ("session advisory unlock", re.compile(r"\bpg_advisory_unlock(_shared|_all)?\s*\(", re.I)),
    ("set_config(..., false)", re.compile(r"\bset_config\s*\([^)]*,\s*false\s*\)", re.I)),
    ("SET without LOCAL", re.compile(STATEMENT + r"SET\s+(?!LOCAL\b)\S")),
    ("RESET", re.compile(STATEMENT + r"RESET\s")),
    ("LISTEN", re.compile(STATEMENT + r"(UN)?LISTEN\s")),
    ("prepared statement", re.compile(STATEMENT + r"(PREPARE|EXECUTE|DEALLOCATE)\s")),
    ("server-side cursor", re.compile(r"\bDECLARE\b.*\bCURSOR\b|\bWITH\s+HOLD\b", re.S)),
    ("temporary table", re.compile(r"\bCREATE\s+((GLOBAL|LOCAL)\s+)?TEMP(ORARY)?\s+TABLE\b")),
    ("DISCARD", re.compile(STATEMENT + r"DISCARD\s")),
)
# keyword arguments that make psycopg or Django keep state in the session
SESSION_KEYWORDS = {
    "prepare_threshold": "prepared statement",
    "server_side_binding": "prepared statement",
    "assume_role": "SET ROLE at connect",
}
# (path, label): why it may stay. Empty: nothing in the app keeps session state.
ALLOWED: dict[tuple[str, str], str] = {}


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (or other bare string statements)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }


def string_literals(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, text) of each string literal that is not a docstring; an f-string is one literal,
    its replacement fields written {}."""
    skip = docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip |= {id(part) for part in node.values}
            parts = [p.value if isinstance(p, ast.Constant) else "{}" for p in node.values]
            yield node.lineno, "".join(str(p) for p in parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.lineno, node.value


def session_constructs(source: str) -> list[tuple[int, str]]:
    """(line, label) of every session-level construct in a module's source."""
    tree = ast.parse(source)
    found = [
        (line, label)
        for line, text in string_literals(tree)
        for label, rx in SQL_CONSTRUCTS
        if rx.search(text)
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found += [
                (node.lineno, SESSION_KEYWORDS[k.arg]) for k in node.keywords if k.arg in SESSION_KEYWORDS
            ]
            if isinstance(node.func, ast.Attribute) and node.func.attr == "cursor":
                found += [(node.lineno, "server-side cursor") for k in node.keywords if k.arg == "name"]
    return sorted(set(found))


def app_findings() -> dict[tuple[str, str], list[int]]:
    findings: dict[tuple[str, str], list[int]] = {}
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            for line, label in session_constructs(path.read_text()):
                findings.setdefault((str(path.relative_to(ROOT)), label), []).append(line)
    return findings


def test_the_app_keeps_no_state_in_a_database_session() -> None:
    findings = app_findings()
    new = {
        f"{path}:{lines} {label}" for (path, label), lines in findings.items() if (path, label) not in ALLOWED
    }
    assert not new, f"breaks behind PgBouncer in transaction pooling (docs/deployment.md): {sorted(new)}"
    assert not set(ALLOWED) - set(findings), "an allowed construct is gone: drop it from ALLOWED"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('cur.execute("SELECT pg_try_advisory_lock(%s, %s)", key)', "session advisory lock"),
        ('cur.execute("SELECT pg_advisory_lock(1)")', "session advisory lock"),
        ('cur.execute("SELECT pg_advisory_unlock(%s, %s)", key)', "session advisory unlock"),
        ("sql = \"SELECT set_config('conduit.system', 'on', false)\"", "set_config(..., false)"),
        ('cur.execute("SET synchronous_commit TO OFF")', "SET without LOCAL"),
        ('cur.execute(f"SET ROLE {role}")', "SET without LOCAL"),
        ('cur.execute("SET search_path = x")', "SET without LOCAL"),
        ('cur.execute("SELECT 1; SET statement_timeout = 0")', "SET without LOCAL"),
        ('cur.execute("RESET ROLE")', "RESET"),
        ('cur.execute("LISTEN writes")', "LISTEN"),
        ('cur.execute("PREPARE q AS SELECT 1")', "prepared statement"),
        ('cur.execute("DECLARE c CURSOR WITH HOLD FOR SELECT 1")', "server-side cursor"),
        ('cur.execute("CREATE TEMP TABLE ids (id int)")', "temporary table"),
        ('cur.execute("DISCARD ALL")', "DISCARD"),
        ("psycopg.connect(url, prepare_threshold=0)", "prepared statement"),
        ('connection.cursor(name="big")', "server-side cursor"),
    ],
)
def test_each_session_level_construct_is_found(source: str, expected: str) -> None:
    assert [label for _, label in session_constructs(source)] == [expected]


@pytest.mark.parametrize(
    "source",
    [
        'cur.execute("SET LOCAL synchronous_commit TO OFF")',
        "sql = \"SELECT set_config('conduit.system', %s, true)\"",
        'cur.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", key)',
        "sql = \"UPDATE crm_write_log SET status = 'sending' WHERE id = %s\"",
        "sql = \"UPDATE crm_write_log\\nSET status = 'sending'\\nWHERE id = %s\"",
        'def f():\n    """Holds pg_try_advisory_lock, session level; SET ROLE."""',
        'cur.execute("NOTIFY writes")',  # delivered at commit: transaction-scoped
        "cur.execute(f\"ALTER ROLE {r} SET log_statement = 'all'\")",  # for the role's future sessions
        'admin.action(description="Reset sync state: full resync (audited)")',
        'OPERATOR = "operator", "Set by an operator"',
        "rows = Message.objects.filter(workspace=w).iterator()",  # DISABLE_SERVER_SIDE_CURSORS
    ],
)
def test_transaction_scoped_constructs_are_not_reported(source: str) -> None:
    assert session_constructs(source) == []


# --- the setting ----------------------------------------------------------------------------


def run_manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return settings_run_manage(
        *args, env=env, tmp_path=tmp_path, drop=("DATABASE_URL", "DATABASE_POOLER").__contains__
    )


PRINT_DB = (
    "from django.conf import settings; d = settings.DATABASES['default'];"
    "print(d.get('DISABLE_SERVER_SIDE_CURSORS', False), d.get('CONN_HEALTH_CHECKS', False))"
)


@pytest.mark.parametrize(
    ("pooler", "expected"), [("pgbouncer-transaction", "True True"), ("", "False False")]
)
def test_the_pooler_setting_turns_off_server_side_cursors(tmp_path: Path, pooler: str, expected: str) -> None:
    env = {"DATABASE_URL": "postgres://conduit_app@127.0.0.1:6432/conduit", "DATABASE_POOLER": pooler}
    result = run_manage("shell", "-v", "0", "-c", PRINT_DB, env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"DATABASE_POOLER": "pgbouncer-session"},
            "DATABASE_POOLER must be empty or 'pgbouncer-transaction'",
        ),
        ({"DATABASE_URL": ""}, "DATABASE_POOLER needs a postgres:// DATABASE_URL"),
        (
            {"DATABASE_URL": "postgres://conduit_app@127.0.0.1:6432/conduit?prepare_threshold=0"},
            "DATABASE_URL must not set prepare_threshold with DATABASE_POOLER (session state)",
        ),
        (
            {
                "DATABASE_URL": "postgres://a@127.0.0.1:6432/c?server_side_binding=true&assume_role=conduit_app"
            },
            "DATABASE_URL must not set server_side_binding, assume_role with DATABASE_POOLER (session state)",
        ),
    ],
)
def test_the_pooler_setting_refuses_what_needs_a_session(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    base = {
        "DATABASE_URL": "postgres://conduit_app@127.0.0.1:6432/conduit",
        "DATABASE_POOLER": "pgbouncer-transaction",
    }
    result = run_manage("check", env={**base, **env}, tmp_path=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"conduit: configuration error: {expected}"]


# --- against a real PgBouncer ---------------------------------------------------------------

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
needs_pgbouncer = pytest.mark.skipif(not Path(PGBOUNCER).exists(), reason="needs Debian's pgbouncer")


# psycopg prepares a query it has run 5 times, on one server connection: as Django does, not here
NO_PREPARE = {"prepare_threshold": None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pooler(db: None) -> Iterator[dict[str, Any]]:
    """A PgBouncer of our own in transaction pooling in front of the test database's server."""
    params = connection.settings_dict
    # not under tmp_path: run as root, PgBouncer runs as postgres, which must reach its directory
    dir_, port = Path(tempfile.mkdtemp(prefix="conduit-pgbouncer-")), free_port()
    upstream = f"{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}"
    subprocess.run(
        ["bash", str(ROOT / "ops/pgbouncer/start.sh"), str(dir_), str(port), upstream, params["USER"]],
        check=True,
        timeout=30,
    )
    try:
        yield {
            "host": "127.0.0.1",
            "port": port,
            "user": params["USER"],
            "dbname": params["NAME"],
            **NO_PREPARE,
        }
    finally:
        os.kill(int((dir_ / "pgbouncer.pid").read_text()), signal.SIGTERM)
        shutil.rmtree(dir_, ignore_errors=True)


def where(pooler: dict[str, Any]) -> tuple[str, int, str, str]:
    return pooler["host"], pooler["port"], pooler["user"], pooler["dbname"]


def lend_two(pooler: dict[str, Any]) -> None:
    """Make the pool hold two server connections (two transactions open at once)."""
    with psycopg.connect(**pooler) as a, psycopg.connect(**pooler) as b:
        a.execute("SELECT 1")
        b.execute("SELECT 1")


def row(conn: psycopg.Connection[Any], sql: str, params: list[Any] | None = None) -> tuple[Any, ...]:
    found = conn.execute(sql, params).fetchone()
    assert found is not None
    return found


@needs_pgbouncer
@pytest.mark.postgres
def test_a_session_set_leaks_to_another_client_and_the_probe_names_it(pooler: dict[str, Any]) -> None:
    lend_two(pooler)
    with psycopg.connect(**pooler, autocommit=True) as leaker:
        leaker.execute("SET statement_timeout = '4321ms'")
        # round robin: the client's next transactions go round the pool's server connections
        seen = dict(
            row(leaker, "SELECT pg_backend_pid(), current_setting('statement_timeout')") for _ in range(8)
        )
    assert set(seen.values()) == {"0", "4321ms"}  # the client lost its own setting on the others
    carrier = next(pid for pid, value in seen.items() if value == "4321ms")
    leaks = pooled_state(*where(pooler))
    assert leaks == {carrier: ["setting statement_timeout = 4321"]}


@needs_pgbouncer
@pytest.mark.postgres
def test_a_session_advisory_lock_stays_behind_and_cannot_be_released(pooler: dict[str, Any]) -> None:
    lend_two(pooler)
    with psycopg.connect(**pooler, autocommit=True) as worker:
        assert row(worker, "SELECT pg_try_advisory_lock(3233, 7)")[0]
        # the next transaction runs on the other server connection, which does not hold the lock
        assert not row(worker, "SELECT pg_advisory_unlock(3233, 7)")[0]
    leaks = pooled_state(*where(pooler))
    assert list(leaks.values()) == [["advisory lock 3233/7"]]


@needs_pgbouncer
@pytest.mark.postgres
def test_prepared_statements_and_held_cursors_break_behind_the_pooler(pooler: dict[str, Any]) -> None:
    """Why Django must not prepare (it does not: prepare_threshold None) and must not open the
    WITH HOLD cursor of .iterator() in autocommit (DATABASE_POOLER's DISABLE_SERVER_SIDE_CURSORS)."""
    assert connection.get_connection_params()["prepare_threshold"] is None
    lend_two(pooler)
    eager = psycopg.connect(**{**pooler, "prepare_threshold": 0}, autocommit=True)
    with eager, pytest.raises(psycopg.errors.InvalidSqlStatementName):
        eager.execute("SELECT %s::int", [1])  # prepared on one server connection, run on the next
    chunked = psycopg.connect(**pooler, autocommit=True)
    with chunked, pytest.raises(psycopg.errors.InvalidCursorName):
        # declared on one server connection, described and fetched from on the next
        chunked.cursor(name="chunks", withhold=True).execute("SELECT generate_series(1, 10)").fetchmany(2)
    leaks = sorted(state for states in pooled_state(*where(pooler)).values() for state in states)
    assert leaks == ["open cursor chunks", "prepared statement _pg3_0"]


@needs_pgbouncer
@pytest.mark.postgres
def test_what_conduit_uses_leaves_nothing_behind(pooler: dict[str, Any]) -> None:
    """tenancy's set_config(..., true), the purge's SET LOCAL and the calendar sync's
    transaction-level advisory lock end with their transaction."""
    lend_two(pooler)
    with psycopg.connect(**pooler, autocommit=True) as app:
        with app.transaction():
            app.execute("SELECT set_config('conduit.workspace_id', '7', true)")
            app.execute("SET LOCAL synchronous_commit TO OFF")
            assert row(app, "SELECT pg_try_advisory_xact_lock(3233, 7)")[0]
        assert row(app, "SELECT coalesce(current_setting('conduit.workspace_id', true), '')") == ("",)
    assert pooled_state(*where(pooler)) == {}
