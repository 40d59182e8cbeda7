"""The operator database role in tests: a name per run (roles belong to the whole cluster), a
connection that logs in as it, and the clean-up."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import connection


def unique_role() -> str:
    return f"conduit_operator_t{os.getpid()}_{secrets.token_hex(3)}"


@contextmanager
def operator_connection(role: str) -> Iterator[Any]:
    """An autocommit cursor logged in as `role` to the test database (trust auth on this machine)."""
    settings = connection.settings_dict
    with (
        psycopg.connect(
            dbname=settings["NAME"],
            host=settings["HOST"] or "127.0.0.1",
            port=settings["PORT"] or 5432,
            user=role,
            autocommit=True,
        ) as conn,
        conn.cursor() as cur,
    ):
        yield cur


def drop_role(role: str) -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cur.fetchone():
            cur.execute(f'DROP OWNED BY "{role}"')
            cur.execute(f'DROP ROLE "{role}"')
