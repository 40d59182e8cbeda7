"""The one logging configuration (dictConfig) used by Django, Celery and gunicorn:
JSON lines through conduit.logging's formatter, the redaction filter on the handler.
No imports from Django here: gunicorn loads it before Django is set up."""

from __future__ import annotations

from typing import Any

# The loggers of provider calls (one line per call, with its rate-limit headers) and of webhook
# intake: what an optional integrations log file holds.
INTEGRATION_LOGGERS = ("conduit.integrations", "conduit.webhooks")


def json_logging(
    level: str, loggers: list[str], *, root: bool = True, integrations_log: str = ""
) -> dict[str, Any]:
    """`integrations_log`, when set, is a file that also receives INTEGRATION_LOGGERS' lines (they
    still reach the console too), reopened when logrotate moves it."""
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
    if integrations_log:
        config["handlers"]["integrations_file"] = {
            "class": "logging.handlers.WatchedFileHandler",
            "filename": integrations_log,
            "encoding": "utf-8",
            "formatter": "json",
            "filters": ["redact"],
        }
        for name in INTEGRATION_LOGGERS:
            config["loggers"][name] = {"handlers": ["integrations_file"], "level": level, "propagate": True}
    return config
