"""Gunicorn settings (`gunicorn -c python:conduit.gunicorn`): its error and access logs use
the same JSON formatter and redaction filter as the rest of Conduit."""

accesslog = "-"
errorlog = "-"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "conduit.logging.RedactSecrets"}},
    "formatters": {"json": {"()": "conduit.logging.json_formatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["redact"]},
    },
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
