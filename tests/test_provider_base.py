"""The HTTP seam's helpers: Retry-After parsing, one session per process, error scrubbing; the
write dispatch and marker checks every provider shares."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import pytest

from integrations.providers import base
from integrations.providers.base import Account, http_session, parse_retry_after
from integrations.providers.errors import MissingScope, Permanent, RateLimited
from tests.provider_helpers import MARKER, activity

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("999999", 3600.0),
        ("Mon, 23 Nov 2026 12:00:30 GMT", 30.0),
        ("Mon, 23 Nov 2026 11:59:00 GMT", 0.0),
        ("", None),
        ("   ", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("Mon, 23 Nov 2026 12:00:30", None),  # an HTTP date without a zone is not trusted
    ],
)
def test_retry_after_accepts_seconds_and_http_dates_clamped(
    value: str | None, expected: float | None
) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_one_session_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    first = http_session()
    assert http_session() is first
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert http_session() is not first


def test_account_repr_hides_the_token() -> None:
    account = Account("hubspot", "very-secret-token-value", "1")
    assert "very-secret-token-value" not in repr(account)


def test_scrub_removes_echoed_secrets_from_message_and_str() -> None:
    error = Permanent("hubspot", "validation_error", "bad value abc-SECRET-123 in field")
    error.scrub(["abc-SECRET-123", ""])
    assert "abc-SECRET-123" not in str(error) and "abc-SECRET-123" not in repr(error)
    assert error.message == "bad value [redacted] in field"


def test_error_classes_keep_their_data() -> None:
    limited = RateLimited("salesforce", None, retry_after=12)
    assert (limited.code, limited.retry_after) == ("rate_limited", 12)
    missing = MissingScope("hubspot", ["crm.objects.contacts.write"])
    assert str(missing) == "hubspot: missing_scope: missing scopes: crm.objects.contacts.write"


def test_base_provider_hooks_are_abstract() -> None:
    provider = base.Provider()
    for call in (
        lambda: provider.authorize_url(state="s", redirect_uri="r"),
        lambda: provider.exchange_code(code="c", redirect_uri="r"),
        lambda: provider.refresh("r"),
        lambda: provider.revoke("t"),
        lambda: provider.identify(base.TokenSet(access_token="a")),
        lambda: provider.check_health(Account("x", "t", "k")),
        lambda: provider.find_contact(Account("x", "t", "k"), "a@b.c"),
        lambda: provider.find_open_deal(Account("x", "t", "k"), "1"),
        lambda: provider.create_note(Account("x", "t", "k"), None),  # type: ignore[arg-type]
        lambda: provider.create_task(Account("x", "t", "k"), None),  # type: ignore[arg-type]
        lambda: provider.write_payload("create_note", activity("1")),
        lambda: provider.find_write(Account("x", "t", "k"), "create_task", activity("1")),
    ):
        with pytest.raises(NotImplementedError):
            call()


class Recorder(base.Provider):
    name = "recorder"

    def create_note(self, account: Account, activity: base.Activity) -> str:
        return f"note {activity.marker}"

    def create_task(self, account: Account, activity: base.Activity) -> str:
        return f"task {activity.marker}"


def test_write_dispatches_on_the_operation() -> None:
    account = Account("x", "t", "k")
    assert Recorder().write(account, "create_note", activity("1")) == f"note {MARKER}"
    assert Recorder().write(account, "create_task", activity("1")) == f"task {MARKER}"


@pytest.mark.parametrize("operation", ["delete_note", "create_deal", "", "CREATE_NOTE"])
@pytest.mark.parametrize("name", ["hubspot", "salesforce"])
def test_unknown_write_operations_are_refused(name: str, operation: str) -> None:
    from integrations.providers import get_provider

    provider, account = (
        get_provider(name),
        Account(name, "t", "k", instance_url="https://a.my.salesforce.com"),
    )
    message = (
        f"unknown write operation {operation!r}; expected one of create_note, create_task, create_meeting"
    )
    for call in (
        lambda: provider.write(account, operation, activity("1")),
        lambda: provider.write_payload(operation, activity("1")),
        lambda: provider.find_write(account, operation, activity("1")),
        lambda: Recorder().write(account, operation, activity("1")),
    ):
        with pytest.raises(ValueError) as raised:
            call()
        assert str(raised.value) == message


@pytest.mark.parametrize(
    ("marker", "ok"),
    [
        (MARKER, True),
        ("cdw" + "f" * 24, True),
        ("cdw" + "0" * 23, False),
        ("cdw" + "0" * 25, False),
        ("CDW" + "0" * 24, False),
        ("cdw" + "A" * 24, False),
        ("cdw" + "g" * 24, False),
        (f"{MARKER}\n", False),
        (f" {MARKER}", False),
        ("cdw%" + "0" * 23, False),
        ("conduit:abc123", False),
        ("", False),
    ],
)
def test_marker_must_be_cdw_and_24_lowercase_hex_digits(marker: str, ok: bool) -> None:
    if ok:
        assert base.check_marker(marker) == marker
    else:
        with pytest.raises(ValueError, match="invalid marker"):
            base.check_marker(marker)


def test_marker_is_always_carried_and_the_text_cut_to_the_field_limit() -> None:
    plain = activity("101", text="x" * 100, marker="conduit:k1")
    assert base.with_marker(plain, 50) == "x" * 37 + " [conduit:k1]"
    assert len(base.with_marker(plain, 50)) == 50
    already = activity("101", text="note [conduit:k1]", marker="conduit:k1")
    assert base.with_marker(already, 50) == "note [conduit:k1]"
    assert base.marked("Follow up", MARKER, 255) == f"Follow up [{MARKER}]"
    assert base.marked("y" * 300, MARKER, 255) == "y" * 225 + f" [{MARKER}]"


def test_authorize_url_refuses_without_client_credentials(settings) -> None:  # type: ignore[no-untyped-def]
    from integrations.providers import get_provider

    settings.HUBSPOT_CLIENT_ID = ""
    settings.SALESFORCE_CLIENT_SECRET = ""
    for name in ("hubspot", "salesforce"):
        with pytest.raises(Permanent, match="not_configured"):
            get_provider(name).authorize_url(state="s", redirect_uri="https://conduit.example/cb")


def test_client_secrets_are_registered_for_redaction(settings) -> None:  # type: ignore[no-untyped-def]
    from conduit.secrets_scan import redact_text

    assert settings.HUBSPOT_CLIENT_SECRET not in redact_text(f"oops {settings.HUBSPOT_CLIENT_SECRET} leaked")


def test_the_oauth_methods_refuse_a_credentials_provider_and_demand_an_oauth_one() -> None:
    class Typed(base.Provider):
        name, label, uses_oauth = "typed", "Typed", False

    class Unfinished(base.Provider):
        name, label = "unfinished", "Unfinished"

    typed, unfinished = Typed(), Unfinished()
    for provider, raised in ((typed, Permanent), (unfinished, NotImplementedError)):
        for call in (
            lambda p=provider: p.authorize_url(state="s", redirect_uri="https://x"),
            lambda p=provider: p.exchange_code(code="c", redirect_uri="https://x"),
            lambda p=provider: p.identify(base.TokenSet("t")),
        ):
            with pytest.raises(raised) as refused:
                call()
            if raised is Permanent:
                assert refused.value.code == "credentials_only"  # type: ignore[attr-defined]
                assert "Typed connects with typed credentials" in str(refused.value)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("invalid_request", "invalid_request"),
        ("Bearer s3cr3t-token", "http_400"),
        ("x" * 41, "http_400"),
        ("", "http_400"),
    ],
)
def test_only_an_error_name_becomes_a_code(error: str, code: str) -> None:
    assert base.safe_code(error, 400) == code


def test_a_short_secret_shows_no_characters() -> None:
    assert base.last4("abcdefghijkl") == "ijkl"
    assert base.last4("short") == ""


@pytest.mark.django_db
def test_basic_credentials_echoed_bare_are_scrubbed() -> None:
    class Echo(base.Provider):
        name, label = "echo", "Echo"

        def classify_client_error(self, resp: Any, operation: str) -> Permanent:
            return Permanent(self.name, "refused", resp.text)

        def authorization(self, token: str) -> str:
            return f"Basic {base.basic_auth(token)}"

    import responses

    secret = "lever-like-key-0123456789"
    bare = base.basic_auth(secret)
    client = base.basic_auth("client-id", "client-secret-value")
    with responses.RequestsMock() as mock:
        mock.get("https://echo.example/a", body=f"you sent {bare}", status=400)
        mock.post("https://echo.example/token", body=f"bad client {client}", status=400)
        with pytest.raises(Permanent) as first:
            Echo()._call("read", "GET", "https://echo.example/a", context=base.NO_CONTEXT, token=secret)
        with pytest.raises(Permanent) as second:
            Echo()._call(
                "token",
                "POST",
                "https://echo.example/token",
                context=base.NO_CONTEXT,
                headers={"Authorization": f"Basic {client}"},
            )
    assert bare not in str(first.value) and "[redacted]" in str(first.value)
    assert client not in str(second.value) and "[redacted]" in str(second.value)
