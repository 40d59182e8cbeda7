"""Create (or bring up to date) the operator database role for runbook SQL; audited.

Run it with a superuser's DATABASE_URL: only a superuser can give a role BYPASSRLS. The password,
if the role logs in with one, comes from an environment variable, never the command line."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection, transaction

from conduit.audit import record_audit
from conduit.operator_role import (
    DEFAULT_ROLE,
    ROLE_NAME,
    operator_grants,
    quote,
    role_statements,
    table_columns,
)
from conduit.tenancy import system_scope


class Command(BaseCommand):
    help = "Create or update the operator database role (BYPASSRLS, runbook grants, every statement logged)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default=DEFAULT_ROLE, help=f"role name (default {DEFAULT_ROLE})")
        parser.add_argument(
            "--password-env",
            metavar="VAR",
            help="environment variable holding the role's password (default: no password set)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        role = options["name"]
        if not ROLE_NAME.match(role):
            raise CommandError(f"role name {role!r} must be lowercase letters, digits and _ (at most 63)")
        password = self.password(options["password_env"])
        if connection.vendor != "postgresql":
            raise CommandError("the operator role needs Postgres: SQLite has no roles or row-level security")
        tables = [grant.table for grant in operator_grants()]
        try:
            with transaction.atomic(), connection.cursor() as cur:
                columns = table_columns(cur, tables)
                if missing := sorted(set(tables) - set(columns)):
                    raise CommandError(f"tables missing (run migrate first): {', '.join(missing)}")
                created = self.ensure_role(cur, role)
                if password is not None:
                    cur.execute(f"ALTER ROLE {quote(role)} PASSWORD %s", [password])
                for statement in role_statements(role, columns, connection.settings_dict["NAME"]):
                    cur.execute(statement)
                with system_scope():
                    record_audit(
                        "operator_role_granted",
                        actor="system:create_operator_role",
                        payload={"role": role, "created": created, "tables": tables},
                    )
        except DatabaseError as exc:
            cause = getattr(exc, "__cause__", None)
            if getattr(cause, "sqlstate", None) == "42501":  # insufficient_privilege
                raise CommandError(
                    "only a superuser can create a BYPASSRLS role: run this with a superuser's DATABASE_URL"
                ) from None
            raise
        verb = "created" if created else "updated"
        self.stdout.write(
            f"operator role {role} {verb}: BYPASSRLS, SELECT on {len(tables)} tables, "
            f"UPDATE on {sum(bool(g.update) for g in operator_grants())}, every statement logged"
        )

    def password(self, var: str | None) -> str | None:
        if var is None:
            return None
        value = os.environ.get(var, "")
        if not value:
            raise CommandError(f"--password-env {var}: that environment variable is empty or unset")
        return value

    def ensure_role(self, cur: Any, role: str) -> bool:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cur.fetchone():
            return False
        cur.execute(f"CREATE ROLE {quote(role)} LOGIN BYPASSRLS")
        return True
