"""Small pieces: model labels, API error shapes, the RLS migration operation, gunicorn logging."""

from __future__ import annotations

import logging.config

import pytest
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest
from rest_framework import exceptions

from conduit import tenancy
from conduit.api_errors import json_exception_handler
from conduit.models import ApiToken, Attachment, AuditEvent, Heartbeat, Membership
from conduit.rls import EnableWorkspaceRLS
from tests.conftest import Tenant, make_message


def test_model_labels_are_readable(alice: Tenant) -> None:
    from django.utils import timezone

    message = make_message(alice.workspace, "s@x", subject="")
    assert str(message) == "(no subject) <s@x>"
    assert str(alice.workspace) == "Alice (alice)"
    assert str(alice.user.profile) == "alice@example.com"
    membership = Membership.objects.get(user=alice.user)
    assert str(membership) == "alice@example.com in Alice (alice) as owner" and membership.administers
    assert str(Attachment(filename="a.pdf")) == "a.pdf"
    assert str(AuditEvent(event="x", actor="system")) == "x by system"
    assert str(ApiToken(name="gw", prefix="cdt_abc")) == "gw (cdt_abc…)"
    assert str(Heartbeat(name="beat", beat_at=timezone.now())).startswith("beat at ")


@pytest.mark.parametrize(
    ("exc", "status", "code", "message"),
    [
        (exceptions.ValidationError({"email": ["bad address"]}), 400, "invalid", "email: bad address"),
        (exceptions.ValidationError(["first problem", "second"]), 400, "invalid", "first problem"),
        (exceptions.NotFound(), 404, "not_found", "Not found."),
        (Http404("gone"), 404, "not_found", "Not found."),
        (
            DjangoPermissionDenied(),
            403,
            "permission_denied",
            "You do not have permission to perform this action.",
        ),
    ],
)
def test_api_errors_are_json_with_code_and_message(
    exc: Exception, status: int, code: str, message: str
) -> None:
    response = json_exception_handler(exc, {"request": None, "view": None})
    assert response is not None and response.status_code == status
    assert response.data["code"] == code and response.data["message"] == message


def test_unhandled_exception_is_left_to_django() -> None:
    assert json_exception_handler(RuntimeError("x"), {}) is None


def test_rls_operation_deconstructs_and_describes() -> None:
    op = EnableWorkspaceRLS("messages")
    assert op.deconstruct() == ("EnableWorkspaceRLS", ["messages"], {})
    assert op.describe() == "Enable row-level security on messages"


def test_rls_operation_is_a_no_op_on_sqlite() -> None:
    from types import SimpleNamespace

    from django.db.migrations.state import ProjectState

    class SqliteEditor:
        connection = SimpleNamespace(vendor="sqlite")

        def execute(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("no SQL may run on SQLite")

    op, state = EnableWorkspaceRLS("api_tokens"), ProjectState()
    op.database_forwards("conduit", SqliteEditor(), state, state)
    op.database_backwards("conduit", SqliteEditor(), state, state)


@pytest.mark.postgres
@pytest.mark.django_db
def test_rls_operation_runs_on_postgres_and_reverses() -> None:
    from django.db import connection
    from django.db.migrations.state import ProjectState

    op, state = EnableWorkspaceRLS("api_tokens"), ProjectState()
    with connection.schema_editor(atomic=True) as editor, connection.cursor() as cur:
        op.database_backwards("conduit", editor, state, state)
        cur.execute("SELECT relrowsecurity FROM pg_class WHERE relname = 'api_tokens'")
        assert cur.fetchone() == (False,)
        op.database_forwards("conduit", editor, state, state)
        cur.execute("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'api_tokens'")
        assert cur.fetchone() == (True, True)


def test_scopes_are_plain_transactions_without_rls(alice: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tenancy, "_uses_rls", lambda: False)
    with tenancy.workspace_scope(alice.workspace):
        assert tenancy.current_scope() == {}


def test_workspace_of_refuses_an_unscoped_request() -> None:
    with pytest.raises(PermissionError):
        tenancy.workspace_of(HttpRequest())


def test_gunicorn_logging_config_is_json_and_redacted() -> None:
    from conduit import gunicorn

    logging.config.dictConfig(gunicorn.logconfig_dict)
    handler = logging.getLogger("gunicorn.access").handlers[0]
    assert handler.filters and type(handler.filters[0]).__name__ == "RedactSecrets"
    assert type(handler.formatter).__name__ == "ConduitJsonFormatter"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/claim-install?crm=hubspot&install_id=x", "/claim-install?crm=hubspot&install_id=x"),
        ("/settings/", "/settings/"),
        ("//evil.example/x", ""),
        ("https://evil.example/", ""),
        ("/\\evil.example", ""),
        ("settings/", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_return_paths_stay_on_this_site(path: str | None, expected: str) -> None:
    from conduit.paths import safe_relative_path

    assert safe_relative_path(path) == expected
