"""The `calendar_sync` log lines runbook 004 filters on: category, level, error_code, metadata.

Every line goes through the logging config's redaction filter as well, but nothing here is
handed a token: metadata is ids, counts and error codes only.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("conduit.integrations.calendar")
CATEGORY = "calendar_sync"


def calendar_log(level: int, message: str, *, error_code: str = "", **metadata: Any) -> None:
    log.log(
        level,
        message,
        extra={"category": CATEGORY, "error_code": error_code or None, "metadata": metadata},
    )
