"""Row-level security on Postgres, tested as a role that is neither superuser nor owner."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.apps import apps
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from conduit.models import ApiToken, AuditEvent, Message, Workspace
from conduit.rls import disable_sql, enable_sql
from conduit.tenancy import SYSTEM_GUC, WORKSPACE_GUC, current_scope, system_scope, workspace_scope
from tests.conftest import Tenant, make_message

pytestmark = pytest.mark.postgres
PROBE_ROLE = "conduit_rls_probe"


def _grant_probe_role() -> None:
    with connection.cursor() as cur:
        cur.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{PROBE_ROLE}') "
            f"THEN CREATE ROLE {PROBE_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS; END IF; END $$"
        )
        cur.execute(f"GRANT USAGE ON SCHEMA public TO {PROBE_ROLE}")
        cur.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {PROBE_ROLE}")
        cur.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {PROBE_ROLE}")


@contextmanager
def as_app_role() -> Iterator[None]:
    """Act as a plain application role: not superuser, not table owner, no BYPASSRLS."""
    with connection.cursor() as cur:
        cur.execute(f"SET ROLE {PROBE_ROLE}")
        cur.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert cur.fetchone() == (False, False)
    try:
        yield
    finally:
        with connection.cursor() as cur:
            cur.execute("RESET ROLE")


@pytest.fixture
def two_tenants(alice: Tenant, bob: Tenant) -> tuple[Tenant, Tenant]:
    _grant_probe_role()
    for n in range(3):
        make_message(alice.workspace, f"a{n}@x")
    make_message(bob.workspace, "b0@x")
    return alice, bob


def test_workspace_a_cannot_read_workspace_b(two_tenants: tuple[Tenant, Tenant]) -> None:
    alice, bob = two_tenants
    with as_app_role(), workspace_scope(alice.workspace):
        ids = set(Message.objects.values_list("workspace_id", flat=True))
        assert ids == {alice.workspace.pk}
        assert Message.objects.count() == 3
        assert not Message.objects.filter(workspace=bob.workspace).exists()


def test_no_scope_reads_zero_rows(two_tenants: tuple[Tenant, Tenant]) -> None:
    with as_app_role():
        assert Message.objects.count() == 0
        assert AuditEvent.objects.count() == 0


def test_system_scope_sees_every_workspace(two_tenants: tuple[Tenant, Tenant]) -> None:
    with as_app_role(), system_scope():
        assert Message.objects.count() == 4


def test_scope_refuses_writing_another_workspaces_row(two_tenants: tuple[Tenant, Tenant]) -> None:
    alice, bob = two_tenants
    with as_app_role(), pytest.raises(DatabaseError, match="row-level security"):  # noqa: SIM117
        with workspace_scope(alice.workspace):
            Message.objects.create(workspace=bob.workspace, message_id="sneaky@x")
    with system_scope():
        assert not Message.objects.filter(message_id="sneaky@x").exists()


def test_scope_cannot_update_other_workspace_rows(two_tenants: tuple[Tenant, Tenant]) -> None:
    alice, bob = two_tenants
    with as_app_role(), workspace_scope(alice.workspace):
        assert Message.objects.filter(workspace=bob.workspace).update(subject="hacked") == 0
    with system_scope():
        assert not Message.objects.filter(subject="hacked").exists()


def test_nested_scope_restores_outer_scope(two_tenants: tuple[Tenant, Tenant]) -> None:
    alice, bob = two_tenants
    with workspace_scope(alice.workspace):
        with workspace_scope(bob.workspace):
            assert current_scope()[WORKSPACE_GUC] == str(bob.workspace.pk)
        assert current_scope() == {WORKSPACE_GUC: str(alice.workspace.pk), SYSTEM_GUC: ""}


def test_customer_request_runs_in_its_workspace_scope(two_tenants: tuple[Tenant, Tenant]) -> None:
    alice, bob = two_tenants
    client = alice.client()
    with as_app_role():
        page = client.get("/messages/")
        assert page.status_code == 200
        assert page.context["page"].paginator.count == 3
        with system_scope():
            bobs = Message.objects.get(workspace=bob.workspace)
        assert client.get(f"/messages/{bobs.pk}/").status_code == 404
    assert current_scope() == {WORKSPACE_GUC: "", SYSTEM_GUC: ""}


def test_api_token_request_writes_inside_its_scope(two_tenants: tuple[Tenant, Tenant]) -> None:
    from conduit.services import do_create_api_token
    from tests.conftest import raw_email

    alice, _ = two_tenants
    issued = do_create_api_token(alice.workspace, "gw", actor=alice.user)
    with as_app_role():
        response = alice.client().post(
            "/api/v1/messages",
            data=raw_email("rls-api@x"),
            content_type="message/rfc822",
            HTTP_AUTHORIZATION=f"Bearer {issued.raw}",
        )
    assert response.status_code == 201, response.content
    with system_scope():
        assert Message.objects.get(message_id="rls-api@x").workspace_id == alice.workspace.pk


def test_every_workspace_owned_table_has_forced_rls_and_policy(db: None) -> None:
    owned = [
        m._meta.db_table
        for m in apps.get_models()
        if any(getattr(f, "related_model", None) is Workspace and f.concrete for f in m._meta.get_fields())
    ]
    assert {"messages", "attachments", "audit_events", "memberships", "api_tokens"} <= set(owned)
    with connection.cursor() as cur:
        for table in owned:
            cur.execute(
                "SELECT c.relrowsecurity, c.relforcerowsecurity, "
                "(SELECT count(*) FROM pg_policies p WHERE p.tablename = c.relname) "
                "FROM pg_class c WHERE c.relname = %s",
                [table],
            )
            assert cur.fetchone() == (True, True, 1), table


def test_rls_sql_is_reversible(db: None) -> None:
    with connection.cursor() as cur:
        cur.execute(disable_sql("api_tokens"))
        cur.execute("SELECT relrowsecurity FROM pg_class WHERE relname = 'api_tokens'")
        assert cur.fetchone() == (False,)
        cur.execute(enable_sql("api_tokens"))
        cur.execute("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'api_tokens'")
        assert cur.fetchone() == (True, True)


@pytest.mark.django_db(transaction=True)
def test_scope_does_not_leak_to_the_next_transaction(make_workspace) -> None:  # type: ignore[no-untyped-def]
    alice = make_workspace("leak-a")
    make_message(alice.workspace, "leak@x")
    with transaction.atomic():
        _grant_probe_role()
    try:
        with connection.cursor() as cur:
            cur.execute(f"SET ROLE {PROBE_ROLE}")
        with workspace_scope(alice.workspace):
            assert Message.objects.count() == 1
        # autocommit: a brand-new transaction on the same connection
        assert current_scope() == {WORKSPACE_GUC: "", SYSTEM_GUC: ""}
        assert Message.objects.count() == 0
        assert ApiToken.objects.count() == 0
    finally:
        with connection.cursor() as cur:
            cur.execute("RESET ROLE")
            cur.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {PROBE_ROLE}")
            cur.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {PROBE_ROLE}")
            cur.execute(f"REVOKE ALL ON SCHEMA public FROM {PROBE_ROLE}")


def test_scope_error_rolls_back_and_clears_settings(two_tenants: tuple[Tenant, Tenant]) -> None:
    alice, _ = two_tenants
    with pytest.raises(RuntimeError), workspace_scope(alice.workspace):
        raise RuntimeError("boom")
    assert current_scope() == {WORKSPACE_GUC: "", SYSTEM_GUC: ""}


@pytest.mark.django_db(transaction=True)
def test_scope_settings_are_transaction_local(db: None) -> None:
    """set_config(..., true): even without the restore step, nothing survives the commit."""
    from conduit.tenancy import _write

    with transaction.atomic():
        _write(("5", "on"))
        assert current_scope() == {WORKSPACE_GUC: "5", SYSTEM_GUC: "on"}
    assert current_scope() == {WORKSPACE_GUC: "", SYSTEM_GUC: ""}


def test_admin_reads_every_workspace_as_the_app_role(two_tenants: tuple[Tenant, Tenant]) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    staff = Client()
    staff.force_login(User.objects.create_superuser("ops@example.com", "ops@example.com", "pw-ops-123456"))
    with as_app_role():
        page = staff.get("/admin/conduit/message/")
    assert page.status_code == 200
    assert page.context["cl"].result_count == 4


def test_ingest_command_writes_as_the_app_role(two_tenants: tuple[Tenant, Tenant], tmp_path) -> None:  # type: ignore[no-untyped-def]
    from django.core.management import call_command

    from tests.conftest import raw_email

    alice, _ = two_tenants
    (tmp_path / "m.eml").write_bytes(raw_email("app-role@x"))
    with as_app_role():
        call_command("ingest_eml", "--workspace", "alice", str(tmp_path / "m.eml"))
    with system_scope():
        assert Message.objects.get(message_id="app-role@x").workspace_id == alice.workspace.pk


# --- what a scope costs: statements that set or read the scope settings ---


def scope_statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "set_config" in q["sql"]]


@pytest.mark.django_db(transaction=True)
def test_a_scope_that_begins_the_transaction_costs_one_statement_and_none_to_leave(
    make_workspace,  # type: ignore[no-untyped-def]
) -> None:
    alice = make_workspace("cost-a")
    with CaptureQueriesContext(connection) as queries, workspace_scope(alice.workspace):
        pass
    statements = [q["sql"] for q in queries.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
    assert len(statements) == 1 and scope_statements(queries) == statements
    assert current_scope() == {WORKSPACE_GUC: "", SYSTEM_GUC: ""}  # ended with its transaction
    with CaptureQueriesContext(connection) as queries, system_scope():
        with system_scope():  # already in force: no scope statement (a savepoint only)
            assert current_scope()[SYSTEM_GUC] == "on"
        with workspace_scope(alice.workspace):  # another: one to enter, one to restore
            assert Message.objects.count() == 0
        assert current_scope() == {WORKSPACE_GUC: "", SYSTEM_GUC: "on"}
    # the system scope in; the workspace scope in and its restore out
    assert len(scope_statements(queries)) == 3
    assert not hasattr(connection, "conduit_scope_in_force") or connection.conduit_scope_in_force is None


def test_a_scope_inside_a_transaction_it_did_not_begin_reads_and_sets_in_one_statement(
    alice: Tenant,
) -> None:
    with transaction.atomic():
        with connection.cursor() as cur:  # someone else's settings, unknown to the scopes
            cur.execute("SELECT set_config('conduit.workspace_id', '77', true)")
        with CaptureQueriesContext(connection) as queries:
            with workspace_scope(alice.workspace):
                assert current_scope()[WORKSPACE_GUC] == str(alice.workspace.pk)
            assert current_scope() == {WORKSPACE_GUC: "77", SYSTEM_GUC: ""}  # restored
        assert [s.split()[0] for s in scope_statements(queries)] == ["WITH", "SELECT"]
        with pytest.raises(RuntimeError), workspace_scope(alice.workspace):
            raise RuntimeError("boom")
        assert current_scope() == {WORKSPACE_GUC: "77", SYSTEM_GUC: ""}  # the rollback undid it
        # outside the scopes nothing is assumed: the next scope reads the settings again
        assert getattr(connection, "conduit_scope_in_force", None) is None


def test_an_error_in_a_nested_scope_leaves_the_outer_scope_in_force(
    two_tenants: tuple[Tenant, Tenant],
) -> None:
    alice, bob = two_tenants
    with workspace_scope(alice.workspace):
        with pytest.raises(RuntimeError), workspace_scope(bob.workspace):
            raise RuntimeError("boom")
        assert current_scope()[WORKSPACE_GUC] == str(alice.workspace.pk)
        with as_app_role(), workspace_scope(alice.workspace):  # the same scope again: nothing to set
            assert Message.objects.count() == 3
