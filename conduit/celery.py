"""The Celery app: configuration from Django settings (CELERY_*), tasks from every app."""

import logging.config
import os
from typing import Any

from celery import Celery, signals

from conduit.startup import CelerySettings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conduit.settings")

app = Celery("conduit")


@signals.setup_logging.connect
def use_django_logging(**kwargs: Any) -> None:
    """Celery installs no handlers of its own (task loggers included): every line goes
    through Django's LOGGING, i.e. JSON with the redaction filter."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


app.config_from_object(CelerySettings(), namespace="CELERY")
app.autodiscover_tasks()
