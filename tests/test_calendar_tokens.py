"""A calendar connection's tokens: refreshed ahead of expiry under the row lock (once, even when
two workers ask at the same time), Microsoft's rotated refresh token kept, Google's old one kept,
a revoked grant puts the connection in error, a 401 is refreshed and retried once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from conduit.models import AuditEvent
from conduit.secrets_scan import redact_text
from conduit.tenancy import system_scope
from integrations.calendars import tokens
from integrations.connections.tokens import NotConnected
from integrations.providers.base import Account
from integrations.providers.errors import AuthRevoked, TokenExpired, Transient
from tests.conftest import Tenant
from tests.test_calendar_oauth import ACCESS, REFRESH, FakeCalendar, install_fakes, make_connection

SOON = timedelta(seconds=30)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, settings: Any) -> dict[str, FakeCalendar]:
    return install_fakes(monkeypatch, settings)


@pytest.fixture
def fake(fakes: dict[str, FakeCalendar]) -> FakeCalendar:
    return fakes["google"]


def test_a_fresh_token_is_used_as_it_is(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(alice)
    account = tokens.valid_account(conn.pk)
    assert account.access_token == ACCESS and account.provider == "google"
    assert account.account_key == f"google:{conn.pk}"
    assert account.context.workspace_id == alice.workspace.pk and account.context.connection_id is None
    assert ACCESS in account.context.secrets and REFRESH in account.context.secrets
    assert ACCESS not in repr(account)
    assert not fake.called("refresh")


def test_a_token_about_to_expire_is_refreshed_and_google_keeps_its_refresh_token(
    alice: Tenant, fake: FakeCalendar, caplog: pytest.LogCaptureFixture
) -> None:
    conn = make_connection(alice, token_expiry=timezone.now() + SOON)
    with caplog.at_level(logging.INFO, logger="conduit.integrations.calendar"):
        account = tokens.valid_account(conn.pk)
    [line] = [r.getMessage() for r in caplog.records if r.name == "conduit.integrations.calendar"]
    assert line == "calendar access refreshed" == redact_text(line)  # the runbook's line, readable
    assert account.access_token == f"{ACCESS}-r" and fake.called("refresh") == [REFRESH]
    conn.refresh_from_db()
    assert conn.access_token == f"{ACCESS}-r" and conn.refresh_token == REFRESH
    assert conn.token_expiry is not None and conn.token_expiry > timezone.now() + timedelta(minutes=30)


def test_microsoft_rotates_the_refresh_token_and_the_new_one_is_stored(
    alice: Tenant, fakes: dict[str, FakeCalendar]
) -> None:
    conn = make_connection(alice, "microsoft", token_expiry=timezone.now() - SOON)
    tokens.valid_account(conn.pk)
    conn.refresh_from_db()
    assert conn.refresh_token == f"{REFRESH}-rotated"
    assert fakes["microsoft"].called("refresh") == [REFRESH]


def test_the_refresh_rechecks_under_the_lock(alice: Tenant, fake: FakeCalendar) -> None:
    """What a worker that queued on the lock sees: a token another worker refreshed is used."""
    conn = make_connection(alice)  # fresh: someone refreshed while we waited
    assert tokens.refresh_connection(conn.pk).access_token == ACCESS
    assert tokens.refresh_connection(conn.pk, rejected_token="an-older-token").access_token == ACCESS
    assert not fake.called("refresh")
    assert tokens.refresh_connection(conn.pk, force=True).access_token == f"{ACCESS}-r"


@pytest.mark.django_db(transaction=True)
def test_two_workers_refresh_once(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(alice, token_expiry=timezone.now() + SOON)
    entered, release = threading.Event(), threading.Event()
    slow_refresh = fake.refresh

    def refresh(refresh_token: str, *, context: Any) -> Any:
        entered.set()
        release.wait(5)
        return slow_refresh(refresh_token, context=context)

    fake.refresh = refresh  # type: ignore[method-assign]
    results: list[str] = []

    def worker() -> None:
        try:
            results.append(tokens.valid_account(conn.pk).access_token)
        finally:
            db_connection.close()

    first = threading.Thread(target=worker)
    first.start()
    assert entered.wait(5)
    second = threading.Thread(target=worker)
    second.start()
    second.join(0.5)  # the second worker waits on the row lock
    assert second.is_alive()
    release.set()
    first.join(5)
    second.join(5)
    assert results == [f"{ACCESS}-r", f"{ACCESS}-r"]
    assert fake.called("refresh") == [REFRESH]


def test_a_revoked_refresh_token_puts_the_connection_in_error(
    alice: Tenant, fake: FakeCalendar, capture_json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    conn = make_connection(alice, token_expiry=timezone.now() + SOON)
    fake.fail["refresh"] = AuthRevoked(
        "google", "invalid_grant", f"Token has been expired or revoked {REFRESH}"
    )
    with pytest.raises(AuthRevoked) as raised:
        tokens.valid_account(conn.pk)
    assert raised.value.code == "refresh_token_revoked"
    conn.refresh_from_db()
    assert (conn.status, conn.last_error, conn.access_token, conn.refresh_token) == (
        "error",
        "refresh_token_revoked",
        "",
        "",
    )
    with system_scope():
        audit = AuditEvent.objects.get(event="calendar_connection_error")
    assert audit.payload_json == {
        "provider": "google",
        "connection_id": conn.pk,
        "last_error": "refresh_token_revoked",
    }
    lines = capture_json_logs()
    [line] = [x for x in lines if x.get("error_code") == "refresh_token_revoked"]
    assert line["level"] == "ERROR" and line["category"] == "calendar_sync"
    assert REFRESH not in str(lines) and ACCESS not in str(lines)
    with pytest.raises(NotConnected):  # and it stays refused until the member reconnects
        tokens.valid_account(conn.pk)


def test_a_missing_refresh_token_counts_as_revoked(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(alice, refresh_token="", token_expiry=timezone.now() - SOON)
    with pytest.raises(AuthRevoked):
        tokens.valid_account(conn.pk)
    conn.refresh_from_db()
    assert conn.last_error == "refresh_token_revoked" and not fake.called("refresh")


def test_a_transient_refresh_failure_changes_nothing(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(alice, token_expiry=timezone.now() + SOON)
    fake.fail["refresh"] = Transient("google", "network_error")
    with pytest.raises(Transient):
        tokens.valid_account(conn.pk)
    conn.refresh_from_db()
    assert conn.status == "connected" and conn.access_token == ACCESS


def test_a_disconnected_calendar_has_no_token(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(alice, status="disconnected", access_token="", refresh_token="")
    with pytest.raises(NotConnected):
        tokens.valid_account(conn.pk)


def test_a_connection_without_an_expiry_is_not_refreshed_ahead(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(alice, token_expiry=None)
    assert tokens.valid_account(conn.pk).access_token == ACCESS and not fake.called("refresh")


def test_a_401_is_refreshed_and_retried_once(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(alice)
    seen: list[str] = []

    def call(account: Account) -> str:
        seen.append(account.access_token)
        if len(seen) == 1:
            raise TokenExpired("google", "unauthorized")
        return "page"

    assert tokens.call_with_token(conn.pk, call) == "page"
    assert seen == [ACCESS, f"{ACCESS}-r"] and len(fake.called("refresh")) == 1


def test_a_second_401_puts_the_connection_in_error(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(alice)
    calls: list[str] = []

    def call(account: Account) -> str:
        calls.append(account.access_token)
        raise TokenExpired("google", "unauthorized")

    with pytest.raises(AuthRevoked) as raised:
        tokens.call_with_token(conn.pk, call)
    assert raised.value.code == "access_token_rejected" and len(calls) == 2
    assert ACCESS not in str(raised.value)
    conn.refresh_from_db()
    assert (conn.status, conn.last_error) == ("error", "access_token_rejected")


def test_a_reconnect_during_the_retry_wins_over_the_401(alice: Tenant, fake: FakeCalendar) -> None:
    conn = make_connection(alice)

    def call(account: Account) -> str:
        if account.access_token != ACCESS:  # the retry: meanwhile the member reconnected
            with system_scope():
                type(conn).objects.filter(pk=conn.pk).update(access_token="reconnected-token")
        raise TokenExpired("google", "unauthorized")

    with pytest.raises(AuthRevoked):
        tokens.call_with_token(conn.pk, call)
    conn.refresh_from_db()
    assert conn.status == "connected" and conn.access_token == "reconnected-token"
