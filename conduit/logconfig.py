"""The one logging configuration (dictConfig) used by Django, Celery and gunicorn:
JSON lines through conduit.logging's formatter, the redaction filter on the handler.
No imports from Django here: gunicorn loads it before Django is set up."""

from __future__ import annotations

from typing import Any


def json_logging(level: str, loggers: list[str], *, root: bool = True) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "conduit.logging.RedactSecrets"}},
        "formatters": {"json": {"()": "conduit.logging.json_formatter"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["redact"]},
        },
        "loggers": {name: {"handlers": ["console"], "level": level, "propagate": False} for name in loggers},
    }
    if root:
        config["root"] = {"handlers": ["console"], "level": level}
    return config
