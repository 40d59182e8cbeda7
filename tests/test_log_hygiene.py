"""No secret reaches a log line through a request or a database error: every 4xx and 5xx path
of the OAuth callback, the claim link and the webhook inbox, with Django's own request loggers
captured, leaves no code, state, install id or event payload value in any line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import IntegrityError
from django.test import Client, RequestFactory

from conduit.logging import RedactSecrets, json_formatter, redacted_query, request_for_log
from integrations.webhooks import inbox
from tests.conftest import Tenant
from tests.test_webhooks import SECRET, deliver, event

CODE, STATE, INSTALL = "oauthcode-7f3a9c1e", "oauthstate-2b8d4e6f", "install-5c1a7e9b3d"
PAYLOAD_EMAIL = "payload.value.41d2@acme.example"
Lines = Callable[[], list[str]]


@pytest.fixture
def every_line() -> Iterator[Lines]:
    """Every line any logger writes (Django's request and server loggers do not propagate to
    the root), through a handler built like the configured one."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(RedactSecrets())
    names = [
        "",
        "django",
        "django.request",
        "django.server",
        "django.security",
        "celery",
        "conduit",
        "gunicorn.error",  # gunicorn's own config (conduit/gunicorn.py) stops them propagating
        "gunicorn.access",
    ]
    for name in names:
        logging.getLogger(name).addHandler(handler)
    try:
        yield lambda: stream.getvalue().splitlines()
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(handler)


def assert_clean(lines: list[str], *secrets: str) -> None:
    assert lines, "the path logged nothing: the test would prove nothing"
    for line in lines:
        json.loads(line)
        for secret in secrets:
            assert secret not in line, line


def test_a_request_appears_as_method_path_and_query_keys_only() -> None:
    request = RequestFactory().get("/integrations/oauth/callback/hubspot/", {"code": CODE, "state": STATE})
    assert (
        request_for_log(request)
        == "GET /integrations/oauth/callback/hubspot/?code=[redacted]&state=[redacted]"
    )
    assert redacted_query("") == ""
    assert redacted_query("a=1&&b") == "?a=[redacted]&b=[redacted]"
    assert redacted_query("&".join(f"k{i}=v" for i in range(50))).count("[redacted]") == 20


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        {"code": CODE, "state": STATE},  # unknown state: 400
        {"code": CODE},  # missing state: 400
        {"state": STATE, "error": "access_denied"},  # the user refused: 400
    ],
)
def test_oauth_callback_refusals_log_no_code_or_state(every_line: Lines, query: dict[str, str]) -> None:
    response = Client().get("/integrations/oauth/callback/hubspot/", query)
    assert response.status_code == 400
    assert_clean(every_line(), CODE, STATE)


@pytest.mark.django_db
def test_an_unknown_crm_on_the_callback_logs_no_code_or_state(every_line: Lines) -> None:
    response = Client().get("/integrations/oauth/callback/pipedrive/", {"code": CODE, "state": STATE})
    assert response.status_code == 404
    assert_clean(every_line(), CODE, STATE)


@pytest.mark.django_db
def test_claim_link_refusals_log_no_install_id(every_line: Lines, alice: Tenant) -> None:
    client = alice.client()
    assert client.get("/claim-install", {"install_id": INSTALL}).status_code in (400, 404)
    assert client.post("/claim-install", {"install_id": INSTALL, "workspace": "1"}).status_code in (400, 404)
    assert Client().get("/claim-install", {"install_id": INSTALL}).status_code in (200, 302, 400)
    assert_clean(every_line(), INSTALL)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case",
    ["bad_signature", "stale", "missing_signature", "malformed", "not_configured"],
)
def test_webhook_refusals_log_no_payload_value(
    every_line: Lines, settings: Any, case: str, alice: Tenant
) -> None:
    settings.CONDUIT_PUBLIC_URL = "http://testserver"
    settings.HUBSPOT_CLIENT_SECRET = "" if case == "not_configured" else SECRET
    events = [event("contact.propertyChange", propertyName="email", propertyValue=PAYLOAD_EMAIL)]
    if case == "bad_signature":
        response = deliver(events, secret="not-the-secret")
    elif case == "stale":
        response = deliver(events, age_seconds=3600)
    elif case == "missing_signature":
        response = deliver(events, **{"X-HubSpot-Signature-v3": ""})
    elif case == "malformed":
        response = Client().post(
            "/webhooks/hubspot", data=f'{{"x": "{PAYLOAD_EMAIL}"', content_type="application/json"
        )
    else:
        response = deliver(events)
    assert 400 <= response.status_code < 600
    assert_clean(every_line(), PAYLOAD_EMAIL)


@pytest.mark.django_db
def test_a_failing_webhook_insert_logs_the_error_type_and_frames_not_the_values(
    every_line: Lines, settings: Any, alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CONDUIT_PUBLIC_URL = "http://testserver"
    settings.HUBSPOT_CLIENT_SECRET = SECRET

    def failing_insert(*args: Any, **kwargs: Any) -> Any:
        raise IntegrityError(
            f'duplicate key value violates unique constraint DETAIL: (payload)=("{PAYLOAD_EMAIL}")'
        )

    monkeypatch.setattr(inbox.WebhookEvent.objects, "bulk_create", failing_insert)
    client_events = [event("contact.propertyChange", propertyName="email", propertyValue=PAYLOAD_EMAIL)]
    with pytest.raises(IntegrityError):
        deliver(client_events)
    lines = every_line()
    assert_clean(lines, PAYLOAD_EMAIL)
    assert any("IntegrityError (text withheld) at" in line for line in lines)


def test_the_development_servers_request_line_keeps_keys_not_values(every_line: Lines) -> None:
    logging.getLogger("django.server").info(
        '"%s" %s %s', f"GET /integrations/oauth/callback/hubspot/?code={CODE}&state={STATE} HTTP/1.1", 400, 12
    )
    lines = every_line()
    assert_clean(lines, CODE, STATE)
    assert "/integrations/oauth/callback/hubspot/?code=[redacted]&state=[redacted] HTTP/1.1" in lines[-1]


def test_a_database_error_raised_from_another_is_withheld_too(every_line: Lines) -> None:
    try:
        try:
            raise IntegrityError(f"DETAIL: Key (email)=({PAYLOAD_EMAIL}) already exists")
        except IntegrityError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError:
        logging.getLogger("conduit.test").exception("boom")
    lines = every_line()
    assert_clean(lines, PAYLOAD_EMAIL)
    assert "RuntimeError (text withheld)" in lines[-1]


@pytest.fixture
def configured_lines() -> Iterator[Lines]:
    """Every line the handlers configured by settings.LOGGING write (their own filters and
    formatter), redirected from stderr to a buffer."""
    stream = io.StringIO()
    handlers = {h for name in ("", "django", "celery") for h in logging.getLogger(name).handlers}
    streams = [h for h in handlers if isinstance(h, logging.StreamHandler) and h.filters]
    assert streams, "settings.LOGGING configured no filtered stream handler"
    # swapped without setStream(), which flushes the old stream: an earlier test may have left a
    # handler on a capture stream pytest has closed since
    previous = [(h, h.stream) for h in streams]
    for handler in streams:
        handler.stream = stream
    try:
        yield lambda: stream.getvalue().splitlines()
    finally:
        for handler, old in previous:
            handler.stream = old


@pytest.mark.django_db
def test_a_failed_callback_is_one_warning_with_its_query_keys_and_no_values(configured_lines: Lines) -> None:
    response = Client().get("/integrations/oauth/callback/hubspot/", {"code": CODE, "state": STATE})
    assert response.status_code == 400
    lines = configured_lines()
    assert_clean(lines, CODE, STATE)
    records = [json.loads(line) for line in lines]
    (warning,) = [r for r in records if r["logger"] == "django.request"]
    assert warning["level"] == "WARNING" and warning["status_code"] == 400
    assert warning["request"] == "GET /integrations/oauth/callback/hubspot/?code=[redacted]&state=[redacted]"
    assert any(r["message"] == "oauth callback refused" for r in records)


SENSITIVE = {
    "code": CODE,
    "state": STATE,
    "install_id": INSTALL,
    "token": "tok-9d8e7f6a5b4c",
    "access_token": "at-1a2b3c4d5e6f",
    "refresh_token": "rt-6f5e4d3c2b1a",
    "client_secret": "cs-0a9b8c7d6e5f",
    "validationToken": "vt-3c4d5e6f7a8b",
}


def test_sensitive_query_values_are_withheld_from_every_logger_and_field(every_line: Lines) -> None:
    query = "&".join(f"{key}={value}" for key, value in SENSITIVE.items())
    url = f"https://conduit.example/integrations/oauth/callback/hubspot/?crm=hubspot&{query}"
    encoded = "redirect_uri=https%3A%2F%2Fc.example%2Fcb%3Fcode%3D" + CODE + "%26state%3D" + STATE
    logging.getLogger("gunicorn.error").warning("Invalid request from ip=10.0.0.1: %s", url)
    logging.getLogger("conduit.test").info("redirecting", extra={"location": url, "hops": [{"to": encoded}]})
    try:
        raise ValueError(f"Unsafe redirect to {url}")
    except ValueError:
        logging.getLogger("django.request").exception("redirect refused")
    lines = every_line()
    assert_clean(lines, *SENSITIVE.values())
    by_logger = {json.loads(line)["logger"]: line for line in lines}
    keys_only = "?crm=hubspot&code=[redacted]&state=[redacted]&install_id=[redacted]&token=[redacted]"
    assert (
        keys_only in by_logger["gunicorn.error"]
        and "validationToken=[redacted]" in by_logger["gunicorn.error"]
    )
    assert keys_only in by_logger["conduit.test"]
    assert "%3Fcode%3D[redacted]%26state%3D[redacted]" in by_logger["conduit.test"]
    assert "Unsafe redirect to https://conduit.example/" in by_logger["django.request"]
    assert keys_only in by_logger["django.request"]


def test_every_configured_handler_carries_the_redaction_filter() -> None:
    # the filter is the one place lines are scrubbed: no handler may go without it
    from conduit.gunicorn import logconfig_dict
    from conduit.logconfig import json_logging

    for config in (
        settings.LOGGING,
        json_logging("INFO", ["django"], integrations_log="/tmp/integrations.log"),
        logconfig_dict,
    ):
        redact = {name for name, f in config["filters"].items() if f["()"].endswith("RedactSecrets")}
        for name, handler in config["handlers"].items():
            assert redact & set(handler.get("filters", [])), name


def test_the_filter_withholds_a_claim_links_install_id(every_line: Lines) -> None:
    logging.getLogger("conduit.test").info("GET /claim-install?install_id=%s", INSTALL)
    assert INSTALL not in every_line()[-1] and "install_id=[redacted]" in every_line()[-1]


def test_error_codes_and_source_in_tracebacks_are_not_mistaken_for_query_values(every_line: Lines) -> None:
    logging.getLogger("conduit.test").info("refused error_code=invalid_state http_status=400 code=kept")
    assert "error_code=invalid_state http_status=400 code=kept" in every_line()[-1]
