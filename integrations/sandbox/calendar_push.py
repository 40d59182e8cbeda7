"""Push deliveries of the calendar sandboxes (Google channel notifications, Graph change and
lifecycle notifications, Graph's validation handshake), each recorded with what the receiver
answered so tests and benches can inspect them (GET /_sandbox/deliveries). Notifications go out
in order on one background thread with a short timeout; the handshake is sent at once, with the
state lock released while the receiver answers. `Outbox.transport` is the one seam that posts."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

# (url, headers, body, timeout seconds) -> (status, content type, body text)
Transport = Callable[[str, dict[str, str], bytes, float], tuple[int, str, str]]
REPLY_CHARS = 2000


def http_post(url: str, headers: dict[str, str], body: bytes, timeout: float) -> tuple[int, str, str]:
    resp = requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    return resp.status_code, resp.headers.get("Content-Type", ""), resp.text[:REPLY_CHARS]


@dataclass
class Delivery:
    id: int
    kind: str  # "push" (Google), "validation" | "notification" | "lifecycle" (Graph)
    url: str
    headers: dict[str, str]
    body: str
    target: str  # the channel id / subscription id it belongs to ("" for a handshake)
    created: float
    status: int | None = None  # None: not answered (yet, or the connection failed: see error)
    error: str = ""
    content_type: str = ""
    reply: str = field(default="", repr=False)
    done: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "url": self.url,
            "headers": dict(self.headers),
            "body": self.body,
            "target": self.target,
            "created": self.created,
            "status": self.status,
            "error": self.error,
            "done": self.done,
        }


class Outbox:
    """The deliveries of one sandbox. Callers hold the state lock (bound with `bind`)."""

    def __init__(self) -> None:
        self.transport: Transport = http_post
        self.deliveries: list[Delivery] = []
        self._queue: queue.Queue[tuple[int, Delivery, float]] = queue.Queue()
        self._epoch = 0
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.changed = threading.Condition(self._lock)

    def bind(self, lock: threading.Lock, stopping: threading.Event) -> None:
        self._lock, self._stopping = lock, stopping
        self.changed = threading.Condition(lock)

    def clear(self) -> None:
        """Forget every delivery; ones still queued are dropped unsent."""
        self._epoch += 1
        self.deliveries = []

    def _new(
        self, kind: str, url: str, headers: dict[str, str], body: str, target: str, now: float
    ) -> Delivery:
        delivery = Delivery(len(self.deliveries) + 1, kind, url, headers, body, target, now)
        self.deliveries.append(delivery)
        return delivery

    def send_later(
        self,
        kind: str,
        url: str,
        headers: dict[str, str],
        body: str,
        *,
        target: str,
        now: float,
        timeout: float,
    ) -> Delivery:
        delivery = self._new(kind, url, headers, body, target, now)
        self._queue.put((self._epoch, delivery, timeout))
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._run, name="sandbox-calendar-push", daemon=True)
            self._worker.start()
        return delivery

    def send_now(
        self, kind: str, url: str, headers: dict[str, str], body: str, *, now: float, timeout: float
    ) -> Delivery:
        """Post while the caller's lock is released (the receiver may call this sandbox back)."""
        delivery = self._new(kind, url, headers, body, "", now)
        self._lock.release()
        try:
            result = self._post(delivery, timeout)
        finally:
            self._lock.acquire()
        self._finish(delivery, result)
        return delivery

    def wait(self, count: int, seconds: float) -> None:
        """Until `count` deliveries are answered (or failed), at most `seconds`."""
        self.changed.wait_for(lambda: sum(d.done for d in self.deliveries) >= count, timeout=seconds)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                epoch, delivery, timeout = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            result = self._post(delivery, timeout)
            with self._lock:
                if epoch == self._epoch:
                    self._finish(delivery, result)

    def _post(self, delivery: Delivery, timeout: float) -> tuple[int | None, str, str, str]:
        try:
            status, content_type, text = self.transport(
                delivery.url, delivery.headers, delivery.body.encode("utf-8"), timeout
            )
        except Exception as exc:  # the receiver's failure is recorded, never raised into the sandbox
            return None, "", "", type(exc).__name__
        return status, content_type, text, ""

    def _finish(self, delivery: Delivery, result: tuple[int | None, str, str, str]) -> None:
        delivery.status, delivery.content_type, delivery.reply, delivery.error = result
        delivery.done = True
        self.changed.notify_all()
