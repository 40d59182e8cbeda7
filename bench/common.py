"""What the benchmark scripts share: verdicts, percentiles, a scratch database.

Imported as `bench.common` (the scripts put the project root first on sys.path, because
bench/reconcile.py shares its name with the reconcile app)."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def percentile(values: list[float], pct: int) -> float:
    """Inclusive percentile (1..99); 100 is the maximum; 0.0 for no values."""
    if not values:
        return 0.0
    if pct >= 100:
        return max(values)
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def recreate_database(server_url: str, name: str) -> str:
    """Drop and create `name` on the server; return its URL."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlsplit(server_url)._replace(path=f"/{name}").geturl()


AREAS = (  # the first match names a frame's area (by its file path)
    ("psycopg", "psycopg (driver)"),
    ("django/db/models", "Django ORM (queries, rows)"),
    ("django/db", "Django db (connections, cursors)"),
    ("django", "Django (other)"),
    ("requests", "requests"),
    ("urllib3", "urllib3"),
    ("http/client", "http.client"),
    ("socket", "sockets"),
    ("json", "json"),
    ("limits", "rate limiter (limits)"),
    ("redis", "redis client"),
    ("prometheus_client", "prometheus_client"),
    ("logging", "logging"),
    ("/conduit/", "Conduit: conduit"),
    ("/integrations/", "Conduit: integrations"),
    ("/reconcile/", "Conduit: reconcile"),
)


def area_of(path: str) -> str:
    return next((name for key, name in AREAS if key in path), "other (stdlib, interpreter)")


def process_cpu(pid: int) -> float | None:
    """CPU seconds of a local process (a Postgres backend), None when it is not visible here."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
            return None
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
