"""JSON log lines (ts, level, logger, category, error_code, workspace_id, message) and the
redaction filter that every handler carries."""

from __future__ import annotations

import logging
import re
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from conduit.context import current_workspace_id
from conduit.secrets_scan import looks_secret_key, redact_text, redact_value

STANDARD_FIELDS = ("category", "error_code", "workspace_id")
_RECORD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


QUERY_KEYS_SHOWN = 20
# "GET /path?query HTTP/1.1" in a server's request line
REQUEST_LINE_QUERY_RE = re.compile(r'("[A-Z]+ [^ ?"]*)\?([^ "]*)')


def redacted_query(query: str) -> str:
    """A query string with every value withheld: its keys say what was sent, never the values
    (OAuth callbacks carry code= and state=, claim links an install id, a bearer capability)."""
    keys = [part.split("=", 1)[0][:40] for part in query.split("&") if part][:QUERY_KEYS_SHOWN]
    return "?" + "&".join(f"{key}=[redacted]" for key in keys) if keys else ""


def request_for_log(request: Any) -> str:
    """The one way a request appears in a log line: method, path and the query's keys only.
    Django's request loggers attach the request itself to the record; this renders it."""
    query = getattr(request, "META", {}).get("QUERY_STRING", "")
    return f"{getattr(request, 'method', '')} {getattr(request, 'path', '')}{redacted_query(query)}".strip()


def is_request(value: Any) -> bool:
    return hasattr(value, "get_full_path") and hasattr(value, "META")


def is_database_error(exc: BaseException | None) -> bool:
    """Database errors quote the statement's values (a row's email, an event's payload)."""
    while exc is not None:
        module = type(exc).__module__
        if module.startswith(("django.db", "psycopg", "sqlite3")):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class RedactSecrets(logging.Filter):
    """Last line of defence: masks bearer tokens, token=... values, Authorization headers, known
    secret values and sensitive query values (code=, state=, install_id=, ...) in the message, its
    arguments, extras and the traceback; shows a request only through request_for_log, and a
    database error only by its type and frames."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # bad %-args must not break the caller
            message = f"{record.msg} [unformattable arguments]"
        if record.name == "django.server":  # the development server's request line
            message = REQUEST_LINE_QUERY_RE.sub(lambda m: m.group(1) + redacted_query(m.group(2)), message)
        record.msg = redact_text(message)
        record.args = None
        raised = record.exc_info[1] if record.exc_info else None
        if raised is not None and is_database_error(raised):
            record.exc_text = failure_text(raised)
            record.exc_info = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        for key, value in list(vars(record).items()):
            if key in _RECORD_ATTRS:
                continue
            if is_request(value):
                value = request_for_log(value)
            setattr(record, key, "[redacted]" if looks_secret_key(key) else redact_value(value))
        for name in STANDARD_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, current_workspace_id.get() if name == "workspace_id" else None)
        return True


PROJECT_ROOT = str(Path(__file__).resolve().parent.parent) + "/"


def _short(filename: str) -> str:
    """A library's path from its package (django/db/...), else a path relative to the project."""
    if "site-packages/" in filename:
        return filename.rsplit("site-packages/", 1)[-1]
    return filename.removeprefix(PROJECT_ROOT)


def failure_frames(exc: BaseException) -> str:
    """Where an exception went: Conduit's own frames (innermost first), and what raised it."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if f.filename.startswith(PROJECT_ROOT) and "site-packages" not in f.filename]
    # Conduit's own frames say where it broke; the innermost frame says what raised (a library's)
    innermost = frames[-1:] if not own or own[-1] is not frames[-1] else []
    shown = own[-5:] + innermost
    return " <- ".join(f"{_short(f.filename)}:{f.lineno} {f.name}" for f in reversed(shown)) or "?"


def failure_text(exc: BaseException) -> str:
    return f"{type(exc).__name__} (text withheld) at {failure_frames(exc)}"


def log_failure(logger: logging.Logger, message: str, *args: Any, exc: BaseException, **extra: Any) -> None:
    """Log an unexpected exception at a per-item boundary (one cursor, one check, one write): its
    type and the frames it was raised through, never its text. Code there holds decrypted tokens
    and rows, and an exception's text can quote either; redaction only knows patterns."""
    logger.error(f"{message}: %s at %s", *args, type(exc).__name__, failure_frames(exc), extra=extra)


def _redact_lines(text: str | list[str]) -> str | list[str]:
    return redact_text(text) if isinstance(text, str) else [redact_text(line) for line in text]


class ConduitJsonFormatter(JsonFormatter):
    def formatException(self, ei: Any) -> str | list[str]:  # type: ignore[override]
        return _redact_lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str | list[str]:  # type: ignore[override]
        return _redact_lines(super().formatStack(stack_info))

    def add_fields(
        self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_record, record, message_dict)
        log_record["ts"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
        log_record["level"] = record.levelname
        log_record["logger"] = record.name
        for name in STANDARD_FIELDS:
            log_record.setdefault(name, getattr(record, name, None))


def json_formatter() -> ConduitJsonFormatter:
    return ConduitJsonFormatter("%(message)s", reserved_attrs=[*_RECORD_ATTRS - {"message"}])
