from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings

from conduit.logging import RedactSecrets
from conduit.secrets_scan import register_secret

Logs = Callable[[], list[dict[str, Any]]]
log = logging.getLogger("conduit.test")


def test_log_lines_are_json_with_the_operator_fields(capture_json_logs: Logs) -> None:
    log.warning(
        "refresh failed for %s",
        "hubspot",
        extra={"category": "oauth", "error_code": "invalid_grant", "workspace_id": 7},
    )
    line = capture_json_logs()[-1]
    assert {"ts", "level", "logger", "category", "error_code", "workspace_id", "message"} <= set(line)
    assert line["message"] == "refresh failed for hubspot"
    assert (line["level"], line["logger"], line["category"], line["error_code"], line["workspace_id"]) == (
        "WARNING",
        "conduit.test",
        "oauth",
        "invalid_grant",
        7,
    )
    assert line["ts"].endswith("+00:00")


def test_missing_operator_fields_are_null(capture_json_logs: Logs) -> None:
    log.info("plain")
    line = capture_json_logs()[-1]
    assert line["category"] is None and line["error_code"] is None and line["workspace_id"] is None


def test_redaction_masks_tokens_headers_and_known_secrets(capture_json_logs: Logs) -> None:
    register_secret("sf-client-secret-0987654321")
    log.error("calling with Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig")
    log.error("token exchange body access_token=ya29.AAAAsecret&refresh_token=1//0gRefresh&x=1")
    log.error('json said {"access_token": "pat-na1-abcdef"}')
    log.error("client secret is %s", "sf-client-secret-0987654321")
    log.error("django key %s", settings.SECRET_KEY)
    log.error("raw", extra={"refresh_token": "1//0gRefresh", "note": "Bearer abcdefghijklmnopq"})
    text = str(capture_json_logs())
    for secret in (
        "eyJhbGciOiJIUzI1NiJ9",
        "ya29.AAAAsecret",
        "1//0gRefresh",
        "pat-na1-abcdef",
        "sf-client-secret-0987654321",
        settings.SECRET_KEY,
        "abcdefghijklmnopq",
    ):
        assert secret not in text
    assert "[redacted]" in text


def test_redaction_covers_exception_tracebacks(capture_json_logs: Logs) -> None:
    try:
        raise RuntimeError("provider said access_token=ya29.leaky in its error")
    except RuntimeError:
        log.exception("call failed")
    line = capture_json_logs()[-1]
    assert "ya29.leaky" not in str(line)
    assert "RuntimeError" in line["exc_info"]


def test_every_configured_handler_carries_the_redaction_filter() -> None:
    handlers = [logging.getLogger(name).handlers for name in ("", "django", "celery")]
    flat = [h for group in handlers for h in group if h.__class__.__name__ == "StreamHandler"]
    configured = settings.LOGGING["handlers"]
    assert all("redact" in h.get("filters", []) for h in configured.values())
    assert any(isinstance(f, RedactSecrets) for h in flat for f in h.filters)


def test_workspace_id_is_filled_from_the_current_scope(capture_json_logs: Logs, alice) -> None:  # type: ignore[no-untyped-def]
    from conduit.tenancy import system_scope, workspace_scope

    with workspace_scope(alice.workspace):
        log.info("inside")
    with system_scope():
        log.info("system")
    log.info("explicit", extra={"workspace_id": 99})
    lines = capture_json_logs()
    assert [line["workspace_id"] for line in lines[-3:]] == [alice.workspace.pk, None, 99]


def test_ingest_logs_counts_and_rejections_without_bodies(capture_json_logs: Logs, alice) -> None:  # type: ignore[no-untyped-def]
    from django.test import Client

    from conduit.services import do_create_api_token
    from tests.conftest import raw_email

    raw = do_create_api_token(alice.workspace, "gw", actor=alice.user).raw
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    Client().post("/api/v1/messages", raw_email("l@x", body="SECRET-BODY-WORDS"), "message/rfc822", **auth)
    Client().post("/api/v1/messages", b"not mail", "message/rfc822", **auth)
    lines = capture_json_logs()
    stored = [x for x in lines if x["message"].startswith("stored 1 new message")]
    assert stored and stored[0]["category"] == "ingest" and stored[0]["workspace_id"] == alice.workspace.pk
    rejected = [x for x in lines if x["message"].startswith("message rejected")]
    assert rejected and rejected[0]["error_code"] == "invalid_message"
    assert "SECRET-BODY-WORDS" not in str(lines) and raw not in str(lines)


def test_nested_extras_and_dict_reprs_are_redacted(capture_json_logs: Logs) -> None:
    log.warning(
        "response %s",
        {"access_token": "ya29.dictrepr", "ok": 1},
        extra={
            "headers": {"Authorization": "Bearer nestedsecret123", "Accept": "json"},
            "items": ["Bearer listsecret123"],
        },
    )
    line = capture_json_logs()[-1]
    text = str(line)
    for secret in ("ya29.dictrepr", "nestedsecret123", "listsecret123"):
        assert secret not in text
    assert line["headers"]["Accept"] == "json"


def test_bad_format_arguments_do_not_break_the_caller(capture_json_logs: Logs) -> None:
    log.warning("%s and %s", "only-one")
    assert capture_json_logs()[-1]["message"] == "%s and %s [unformattable arguments]"


def test_celery_task_loggers_go_through_the_redaction_filter() -> None:
    from celery.utils.log import get_task_logger

    from conduit.celery import app

    app.log.setup(loglevel="INFO")
    logger: logging.Logger | None = get_task_logger("conduit.tasks")
    handlers = []
    while logger is not None:
        handlers.extend(
            h
            for h in logger.handlers
            if not isinstance(h, logging.NullHandler) and not type(h).__module__.startswith("_pytest")
        )
        logger = logger.parent if logger.propagate else None
    assert handlers
    assert all(any(isinstance(f, RedactSecrets) for f in h.filters) for h in handlers)


def test_a_boundary_failure_logs_its_type_and_frames_never_its_text(capture_json_logs: Logs) -> None:
    from conduit.logging import log_failure

    def fetch(raw_token: str) -> None:
        raise RuntimeError(f"could not use {raw_token}")

    try:
        fetch("plain-token-nobody-registered-0123")
    except RuntimeError as exc:
        log_failure(
            logging.getLogger("conduit.test"), "item %s failed", 7, exc=exc, error_code="internal_error"
        )
    [line] = [entry for entry in capture_json_logs() if entry["logger"] == "conduit.test"]
    assert line["level"] == "ERROR" and line["error_code"] == "internal_error"
    assert line["message"].startswith("item 7 failed: RuntimeError at tests/test_logging.py:")
    assert "fetch" in line["message"] and "plain-token" not in str(line)


def test_a_boundary_failure_names_conduits_own_frames_and_what_raised(capture_json_logs: Logs) -> None:
    import json as stdlib_json

    from conduit.logging import log_failure

    def parse(body: str) -> None:
        stdlib_json.loads(body)

    try:
        parse("{secret-body")
    except ValueError as exc:
        log_failure(logging.getLogger("conduit.test"), "parse failed", exc=exc)
    [line] = [entry for entry in capture_json_logs() if entry["logger"] == "conduit.test"]
    message = line["message"]
    assert message.startswith("parse failed: JSONDecodeError at ") and "json/decoder.py" in message
    assert "tests/test_logging.py" in message and " parse" in message and "secret-body" not in message
