"""Gunicorn settings (`gunicorn -c python:conduit.gunicorn`): its error and access logs use
the same JSON formatter and redaction filter as the rest of Conduit."""

from conduit.logconfig import json_logging
from conduit.startup import configured_settings

configured_settings()  # a bad environment stops the master in one line, before it logs

accesslog = "-"
# Path without the query string: callbacks and claim links carry codes, states and install ids there.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'

# gunicorn's own default, stated because the message search depends on it: a search just over
# SEARCH_MAX_CHARS (conduit/forms.py), even all 4-byte characters percent-encoded, must still reach
# Django, which answers with the page and a sentence instead of gunicorn's bare "URI Too Long".
limit_request_line = 4094

errorlog = "-"
logconfig_dict = json_logging("INFO", ["gunicorn.error", "gunicorn.access"], root=False)


def child_exit(server: object, worker: object) -> None:
    """Multiprocess Prometheus: drop a dead worker's live gauges (its counters stay summed)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
