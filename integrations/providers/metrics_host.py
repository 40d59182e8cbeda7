"""A worker-only host's own /metrics.

A host that runs Celery workers and no gunicorn still has metrics: its worker processes write
them to the host's PROMETHEUS_MULTIPROC_DIR like gunicorn's workers do. With
CONDUIT_WORKER_METRICS_PORT set, the worker's main process serves that directory on
`CONDUIT_WORKER_METRICS_BIND:port` at `GET /metrics`, through the same view and authorization
as the web /metrics (the scraper's CONDUIT_METRICS_TOKEN or an operator token; a worker host has
no login sessions). Nothing else is served there. A pool process that exits is marked dead, as
gunicorn's child_exit does, so its live gauges leave the sums.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from celery import signals
from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.db import close_old_connections

log = logging.getLogger("conduit.metrics")

StartResponse = Callable[..., Any]
_server: WSGIServer | None = None


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress never holds the worker's shutdown


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (one line every 15 s per scraper is noise)."""


def metrics_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """GET /metrics through integrations.providers.metrics.metrics_view; 404 for anything else."""
    from integrations.providers.metrics import metrics_view

    if environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"a worker host serves only GET /metrics\n"]
    try:
        response = metrics_view(WSGIRequest(environ))
    finally:
        close_old_connections()  # an operator token is looked up in this thread's connection
    start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
    return [response.content]


def start_metrics_server(port: int, bind: str) -> WSGIServer:
    """Serve metrics_app on a daemon thread; returns the server (its port when `port` is 0)."""
    server = make_server(bind, port, metrics_app, server_class=ThreadingServer, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server


@signals.worker_ready.connect
def serve_worker_metrics(**_: Any) -> None:
    global _server
    port = settings.CONDUIT_WORKER_METRICS_PORT
    if not port or _server is not None:
        return
    _server = start_metrics_server(port, settings.CONDUIT_WORKER_METRICS_BIND)
    log.info(
        "worker metrics on http://%s:%s/metrics (%s)",
        settings.CONDUIT_WORKER_METRICS_BIND,
        _server.server_port,
        settings.PROMETHEUS_MULTIPROC_DIR,
        extra={"category": "metrics"},
    )


@signals.worker_shutdown.connect
def stop_worker_metrics(**_: Any) -> None:
    global _server
    if _server is not None:
        _server.shutdown()
        _server.server_close()
        _server = None


@signals.worker_process_shutdown.connect
def mark_pool_process_dead(pid: int | None = None, **_: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid or os.getpid())
