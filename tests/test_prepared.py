"""conduit.prepared: statements compiled once give what the ORM gives (instances, related
objects, annotations, decrypted fields), run with each call's values, refuse what they cannot
do, and the write path's update and insert helpers change exactly the rows they name."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet
from django.test.utils import CaptureQueriesContext

from conduit.prepared import Prepared, insert_row, update_row
from conduit.tenancy import system_scope
from integrations.models import CrmConnection, SyncLog, SyncPause
from reconcile.models import DealMapping
from tests.conftest import Tenant

pytestmark = pytest.mark.django_db


def connect_crm(tenant: Tenant, crm: str) -> CrmConnection:
    with system_scope():
        return CrmConnection.objects.create(
            workspace=tenant.workspace, crm=crm, status="connected", access_token=f"{crm}-token-value"
        )


def _connections(workspace_id: int, crm: str) -> QuerySet[CrmConnection]:
    return (
        CrmConnection.objects.select_related("workspace")
        .annotate(held=Exists(SyncPause.objects.filter(connection_id=OuterRef("pk"))))
        .filter(workspace_id=workspace_id, crm=crm)
        .order_by("pk")
    )


CONNECTIONS = Prepared(_connections, workspace_id=int, crm=str)


def test_rows_are_the_querysets_rows(alice: Tenant, bob: Tenant) -> None:
    mine = connect_crm(alice, "hubspot")
    connect_crm(bob, "hubspot")
    with system_scope():
        SyncPause.objects.create(scope=SyncPause.Scope.CONNECTION, connection=mine, reason="drill")
        got = CONNECTIONS.all(workspace_id=alice.workspace.pk, crm="hubspot")
        expected = list(_connections(alice.workspace.pk, "hubspot"))
    assert [c.pk for c in got] == [c.pk for c in expected] == [mine.pk]
    row = got[0]
    assert row.access_token == mine.access_token != ""  # the encrypted field came back decrypted
    assert row.held is True  # type: ignore[attr-defined]
    assert row._state.adding is False and row._state.db == "default"
    with CaptureQueriesContext(connection) as queries:
        assert (
            row.workspace is not None and row.workspace.slug == alice.workspace.slug
        )  # select_related: no query
    assert len(queries) == 0
    with system_scope():
        assert CONNECTIONS.first(workspace_id=bob.workspace.pk, crm="salesforce") is None


def test_compiled_once_per_connection_then_only_run(alice: Tenant) -> None:
    built: list[int] = []

    def build(workspace_id: int) -> QuerySet[CrmConnection]:
        built.append(workspace_id)
        return CrmConnection.objects.filter(workspace_id=workspace_id)

    prepared = Prepared(build, workspace_id=int)
    connect_crm(alice, "hubspot")
    with system_scope():
        for _ in range(3):
            assert len(prepared.all(workspace_id=alice.workspace.pk)) == 1
        with CaptureQueriesContext(connection) as queries:
            prepared.all(workspace_id=alice.workspace.pk)
    assert len(built) == 2  # once for the model, once to compile; never per call
    assert len(queries) == 1 and str(alice.workspace.pk) in queries[0]["sql"]


def test_constants_stay_in_place(alice: Tenant) -> None:
    conn = connect_crm(alice, "hubspot")
    with system_scope():
        DealMapping.objects.create(workspace=alice.workspace, connection=conn, email="a@x", contact_id="1")
        DealMapping.objects.create(
            workspace=alice.workspace, connection=conn, email="b@x", contact_id="2", source="operator"
        )
        by_source = Prepared(
            lambda connection_id: DealMapping.objects.filter(connection_id=connection_id, source="operator"),
            connection_id=int,
        )
        assert [m.email for m in by_source.all(connection_id=conn.pk)] == ["b@x"]


def test_refuses_what_it_cannot_prepare(alice: Tenant) -> None:
    contains = Prepared(lambda email: DealMapping.objects.filter(email__icontains=email), email=str)
    with pytest.raises(ValueError, match=r"slots \['email'\] are not parameters"):
        contains.all(email="x")  # the lookup wraps the value in %...%: no slot to fill
    with pytest.raises(TypeError, match="a slot takes int or str, not float"):
        Prepared(lambda score: DealMapping.objects.all(), score=float)
    with pytest.raises(TypeError, match=r"expected values for \['crm', 'workspace_id'\]"):
        CONNECTIONS.all(workspace_id=1)


def test_update_row_changes_only_the_guarded_row(alice: Tenant) -> None:
    conn = connect_crm(alice, "hubspot")
    other = connect_crm(alice, "salesforce")
    with system_scope():
        changed = update_row(
            CrmConnection,
            where={"pk": conn.pk, "status": "connected"},
            values={"granted_scopes": ["crm.objects.contacts.read"], "last_error": "x", "access_token": "t2"},
        )
        assert changed == 1
        assert (
            update_row(CrmConnection, where={"pk": conn.pk, "status": "error"}, values={"last_error": "y"})
            == 0
        )
        conn.refresh_from_db()
        other.refresh_from_db()
    assert conn.granted_scopes == ["crm.objects.contacts.read"] and conn.last_error == "x"
    assert conn.access_token == "t2"  # written encrypted, read back decrypted
    with connection.cursor() as cur:
        cur.execute("SELECT access_token FROM crm_connections WHERE id = %s", [conn.pk])
        assert cur.fetchone()[0] != "t2"
    assert other.last_error == ""


@pytest.mark.parametrize(
    ("where", "values", "message"),
    [
        ({}, {"last_error": "x"}, "at least one condition"),
        ({"pk": 1}, {}, "at least one condition"),
        ({"last_error": None}, {"last_error": "x"}, "IS NULL is not an equality"),
        ({"pk": 1}, {"writes": 1}, "is not a column"),
    ],
)
def test_update_row_refuses_bad_statements(
    where: dict[str, Any], values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        update_row(CrmConnection, where=where, values=values)


def test_insert_row_writes_defaults_and_values(alice: Tenant) -> None:
    conn = connect_crm(alice, "hubspot")
    row = SyncLog(
        workspace=alice.workspace,
        connection=conn,
        provider="hubspot",
        operation="create_note",
        status="success",
    )
    with system_scope():
        insert_row(row)
        stored = SyncLog.objects.get(connection=conn)
    assert row.pk is None  # not read back
    assert stored.operation == "create_note" and stored.duration_ms == 0
    assert abs((stored.created_at - row.created_at).total_seconds()) < 1
    assert stored.created_at.tzinfo is not None


def test_sample_values_are_unlike_real_ones() -> None:
    prepared = Prepared(lambda a, b: DealMapping.objects.none(), a=int, b=str)
    assert prepared.samples["a"] < -(2**49)
    assert "\u2063" in prepared.samples["b"]


def _by_ids(ids: str) -> QuerySet[CrmConnection]:
    return CrmConnection.objects.filter(pk__in_json=ids).order_by("pk")


BY_IDS = Prepared(_by_ids, ids=str)


def test_a_json_list_of_ids_is_one_slot(alice: Tenant, bob: Tenant) -> None:
    first, second = connect_crm(alice, "hubspot"), connect_crm(bob, "salesforce")
    connect_crm(alice, "zoho")
    with system_scope():
        assert [c.pk for c in BY_IDS.all(ids=f"[{second.pk}, {first.pk}, 0]")] == [first.pk, second.pk]
        assert BY_IDS.all(ids="[]") == []
        assert list(_by_ids(f"[{second.pk}]")) == [second]  # the lookup works in any queryset


def _connected_of(workspace_id: int) -> QuerySet[CrmConnection]:
    return CrmConnection.objects.filter(workspace_id=workspace_id, status="connected").only("id")


CONNECTED_OF = Prepared(_connected_of, workspace_id=int)


def test_update_row_can_require_the_row_in_a_prepared_subquery(alice: Tenant, bob: Tenant) -> None:
    mine, theirs = connect_crm(alice, "hubspot"), connect_crm(bob, "hubspot")
    with system_scope():
        sql, params = CONNECTED_OF.statement(workspace_id=alice.workspace.pk)
        assert params.count(alice.workspace.pk) == 1 and sql.startswith("SELECT")
        for conn in (mine, theirs):  # only alice's connection is in the subquery
            update_row(CrmConnection, where={"pk": conn.pk}, values={"last_error": "x"}, pk_in=(sql, params))
        assert {c.pk: c.last_error for c in CrmConnection.objects.all()} == {mine.pk: "x", theirs.pk: ""}
        with pytest.raises(TypeError):
            CONNECTED_OF.statement()
