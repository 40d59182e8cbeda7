"""JSON log lines (ts, level, logger, category, error_code, workspace_id, message) and the
redaction filter that every handler carries."""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from conduit.context import current_workspace_id
from conduit.secrets_scan import looks_secret_key, redact_text, redact_value

STANDARD_FIELDS = ("category", "error_code", "workspace_id")
_RECORD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class RedactSecrets(logging.Filter):
    """Last line of defence: masks bearer tokens, token=... values, Authorization headers
    and known secret values in the message, its arguments, extras and the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # bad %-args must not break the caller
            message = f"{record.msg} [unformattable arguments]"
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        for key, value in list(vars(record).items()):
            if key in _RECORD_ATTRS:
                continue
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


def log_failure(logger: logging.Logger, message: str, *args: Any, exc: BaseException, **extra: Any) -> None:
    """Log an unexpected exception at a per-item boundary (one cursor, one check, one write): its
    type and the frames it was raised through, never its text. Code there holds decrypted tokens
    and rows, and an exception's text can quote either; redaction only knows patterns."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if f.filename.startswith(PROJECT_ROOT) and "site-packages" not in f.filename]
    # Conduit's own frames say where it broke; the innermost frame says what raised (a library's)
    innermost = frames[-1:] if not own or own[-1] is not frames[-1] else []
    shown = own[-5:] + innermost
    where = " <- ".join(f"{_short(f.filename)}:{f.lineno} {f.name}" for f in reversed(shown))
    logger.error(f"{message}: %s at %s", *args, type(exc).__name__, where or "?", extra=extra)


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
