"""Every entry point (manage.py, wsgi, gunicorn, Celery) refuses a bad configuration the same
way: one line naming the variable, exit status 1, no traceback."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured


def configured_settings() -> Any:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conduit.settings")
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018 - loading settings validates the environment
    except ImproperlyConfigured as exc:
        sys.exit(f"conduit: configuration error: {exc}")
    return settings


class CelerySettings:
    """What Celery reads its CELERY_* configuration from: Django's settings, loaded through
    configured_settings() so a worker with a bad environment stops in one line too."""

    def __getattr__(self, name: str) -> Any:
        return getattr(configured_settings(), name)

    def __dir__(self) -> list[str]:
        return dir(configured_settings())
