"""The operator database role: a login for running runbook SQL in psql across every workspace.

The application role is under forced row-level security, so a runbook's SELECT run as it returns
0 rows outside a scope. The operator role has BYPASSRLS instead, and nothing more than the
runbooks need: SELECT on the tables they read (never a token, a hash of one, or an email body)
and UPDATE only on the columns they update. Every statement it runs goes to the Postgres server
log (`log_statement = 'all'` on the role).

Each app declares the grants on its own tables from AppConfig.ready() (the core never names
another app's table); `manage.py create_operator_role` applies them all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DEFAULT_ROLE = "conduit_operator"
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class OperatorGrant:
    """SELECT on `table` (a table or view) except the `hidden` columns; UPDATE on `update`."""

    table: str
    hidden: tuple[str, ...] = ()
    update: tuple[str, ...] = ()


_grants: dict[str, OperatorGrant] = {}


def register_grants(grants: Iterable[OperatorGrant]) -> None:
    for grant in grants:
        _grants[grant.table] = grant


def operator_grants() -> list[OperatorGrant]:
    return sorted(_grants.values(), key=lambda g: g.table)


CORE_GRANTS = (
    OperatorGrant("workspaces"),
    OperatorGrant("profiles"),
    OperatorGrant("memberships"),
    OperatorGrant("messages", hidden=("body_text", "body_html", "raw")),
    OperatorGrant("attachments"),
    OperatorGrant("audit_events"),
    OperatorGrant("api_tokens", hidden=("token_hash",)),
    OperatorGrant("invitations", hidden=("token_hash",)),
    OperatorGrant("staff_api_tokens", hidden=("token_hash",)),
    OperatorGrant("heartbeats"),
    OperatorGrant("periodic_runs"),
    OperatorGrant("auth_user", hidden=("password",)),
    OperatorGrant("django_celery_beat_periodictask"),
    OperatorGrant("django_celery_beat_periodictasks"),
    OperatorGrant("django_celery_beat_crontabschedule"),
    OperatorGrant("django_celery_beat_intervalschedule"),
)


def quote(name: str) -> str:
    """An identifier from our own declarations or a validated role name, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def role_statements(role: str, columns: dict[str, list[str]], database: str) -> list[str]:
    """The statements that make `role` what the runbooks need, given each table's columns.

    Idempotent: the role's table privileges are revoked first, then granted from the list."""
    r = quote(role)
    statements = [
        f"ALTER ROLE {r} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS",
        f"ALTER ROLE {r} SET log_statement = 'all'",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {r}",
        f"GRANT CONNECT ON DATABASE {quote(database)} TO {r}",
        f"GRANT USAGE ON SCHEMA public TO {r}",
    ]
    for grant in operator_grants():
        readable = [c for c in columns[grant.table] if c not in grant.hidden]
        statements.append(f"GRANT SELECT ({', '.join(map(quote, readable))}) ON {quote(grant.table)} TO {r}")
        if grant.update:
            statements.append(
                f"GRANT UPDATE ({', '.join(map(quote, grant.update))}) ON {quote(grant.table)} TO {r}"
            )
    return statements


def table_columns(cursor: Any, tables: list[str]) -> dict[str, list[str]]:
    cursor.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = ANY(%s) ORDER BY table_name, ordinal_position",
        [tables],
    )
    columns: dict[str, list[str]] = {}
    for table, column in cursor.fetchall():
        columns.setdefault(table, []).append(column)
    return columns
