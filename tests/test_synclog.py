"""crm_sync_logs: one row per provider call, workspace-isolated, never a secret."""

from __future__ import annotations

import pytest
import responses
from django.conf import settings
from django.db import DatabaseError, connection

from conduit.tenancy import system_scope, workspace_scope
from integrations.models import SyncLog
from integrations.providers import get_provider, synclog
from integrations.providers.base import TokenSet
from integrations.providers.errors import Transient
from integrations.providers.synclog import CallContext, clean_summary, record_sync
from tests.provider_helpers import HS_TOKEN, activity, hubspot_account

API = settings.HUBSPOT_API_BASE_URL
hs = get_provider("hubspot")


def log_kwargs(**extra: object) -> dict[str, object]:
    return {
        "provider": "hubspot",
        "operation": "op",
        "ok": True,
        "http_status": 200,
        "error_code": "",
        "duration_ms": 3,
        "summary": "op ok",
        **extra,
    }


@pytest.mark.django_db
def test_record_sync_inside_the_same_workspace_scope_joins_it(alice) -> None:  # type: ignore[no-untyped-def]
    with workspace_scope(alice.workspace):
        record_sync(CallContext(workspace_id=alice.workspace.pk), **log_kwargs())  # type: ignore[arg-type]
        assert SyncLog.objects.filter(workspace=alice.workspace).count() == 1


@pytest.mark.django_db
def test_record_sync_from_another_scope_uses_its_own(alice, bob) -> None:  # type: ignore[no-untyped-def]
    with workspace_scope(bob.workspace):
        record_sync(CallContext(workspace_id=alice.workspace.pk), **log_kwargs())  # type: ignore[arg-type]
        record_sync(CallContext(), **log_kwargs(operation="exchange_code"))  # type: ignore[arg-type]
    with system_scope():
        assert list(SyncLog.objects.order_by("id").values_list("workspace_id", "operation")) == [
            (alice.workspace.pk, "op"),
            (None, "exchange_code"),
        ]


@pytest.mark.django_db
def test_a_failing_log_write_never_breaks_the_call(
    monkeypatch: pytest.MonkeyPatch, capture_json_logs
) -> None:  # type: ignore[no-untyped-def]
    def boom(*args: object, **kwargs: object) -> None:
        raise DatabaseError("disk full")

    monkeypatch.setattr(synclog, "insert_row", boom)
    record_sync(CallContext(), **log_kwargs())  # type: ignore[arg-type]
    assert any(line.get("error_code") == "sync_log_write_failed" for line in capture_json_logs())


def test_summary_is_redacted_flattened_and_bounded() -> None:
    text = clean_summary("refresh failed:\n Bearer abcdefghijklmnop access_token=xyz123456 " + "x" * 400)
    assert "abcdefghijklmnop" not in text and "xyz123456" not in text
    assert "\n" not in text
    assert len(text) == 300


@pytest.mark.postgres
@pytest.mark.django_db
def test_sync_logs_are_isolated_by_workspace_for_the_app_role(alice, bob) -> None:  # type: ignore[no-untyped-def]
    from tests.test_tenancy import _grant_probe_role, as_app_role

    _grant_probe_role()
    with as_app_role():
        record_sync(CallContext(workspace_id=alice.workspace.pk), **log_kwargs())  # type: ignore[arg-type]
        record_sync(CallContext(workspace_id=bob.workspace.pk), **log_kwargs())  # type: ignore[arg-type]
        record_sync(CallContext(), **log_kwargs())  # type: ignore[arg-type]
        with workspace_scope(alice.workspace):
            assert list(SyncLog.objects.values_list("workspace_id", flat=True)) == [alice.workspace.pk]
        with system_scope():
            assert SyncLog.objects.count() == 3
        assert SyncLog.objects.count() == 0  # no scope, no rows


@pytest.mark.postgres
@pytest.mark.django_db
def test_failed_query_uses_the_partial_index() -> None:
    with connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute(
            "EXPLAIN SELECT * FROM crm_sync_logs WHERE provider = 'hubspot' AND status = 'FAILED' "
            "ORDER BY created_at DESC LIMIT 20"
        )
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "sync_failed_created" in plan


@responses.activate
@pytest.mark.django_db
def test_no_secret_reaches_logs_sync_logs_or_exceptions(alice, capture_json_logs, settings) -> None:  # type: ignore[no-untyped-def]
    """Drive every failing path with tokens in URLs, headers and bodies; look for them everywhere."""
    import logging

    settings.LOGGING  # noqa: B018 - loaded
    logging.getLogger("urllib3").setLevel(logging.DEBUG)  # the worst case: an operator turned on debug
    refresh_token = "hs-refresh-SECRET-0123456789"
    responses.post(
        f"{API}/oauth/v1/token",
        status=400,
        json={"error": "invalid_grant", "message": f"bad {refresh_token}"},
    )
    responses.get(f"{API}/oauth/v1/access-tokens/{HS_TOKEN}", status=503, body=f"upstream echoed {HS_TOKEN}")
    responses.delete(
        f"{API}/oauth/v1/refresh-tokens/{refresh_token}",
        status=500,
        json={"message": f"Authorization: Bearer {HS_TOKEN}"},
    )
    responses.post(
        f"{API}/crm/v3/objects/notes",
        status=400,
        json={"status": "error", "message": f"access_token={HS_TOKEN}", "category": "VALIDATION_ERROR"},
    )
    errors: list[str] = []
    for call in (
        lambda: hs.refresh(refresh_token),
        lambda: hs.identify(TokenSet(access_token=HS_TOKEN)),
        lambda: hs.revoke(refresh_token),
        lambda: hs.create_note(hubspot_account(workspace_id=alice.workspace.pk), activity("101")),
    ):
        try:
            call()
        except Exception as exc:
            errors.append(f"{exc!s} {exc!r}")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    secrets = (HS_TOKEN, refresh_token, settings.HUBSPOT_CLIENT_SECRET)
    with system_scope():
        summaries = list(SyncLog.objects.values_list("summary", flat=True))
    assert len(errors) == 4 and len(summaries) == 4
    haystack = "\n".join(errors + summaries + [str(line) for line in capture_json_logs()])
    for secret in secrets:
        assert secret not in haystack


@responses.activate
@pytest.mark.django_db
def test_a_transient_failure_is_logged_as_failed_with_its_code(alice) -> None:  # type: ignore[no-untyped-def]
    responses.post(f"{API}/crm/v3/objects/notes", status=502, body="bad gateway")
    with pytest.raises(Transient):
        hs.create_note(hubspot_account(workspace_id=alice.workspace.pk, connection_id=None), activity("101"))
    with workspace_scope(alice.workspace):
        row = SyncLog.objects.get()
    assert (row.status, row.http_status, row.error_code, row.provider) == (
        "FAILED",
        502,
        "http_502",
        "hubspot",
    )
    assert row.duration_ms >= 0
