"""Injected faults (the queue /_sandbox/faults fills) and the rolling-window rate counter."""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

FAULT_KINDS = frozenset(
    {
        "rate_limit",
        "server_error",
        "unavailable",
        "hang",
        "commit_then_hang",
        "invalid_grant",
        "invalid_session",
        "missing_scope",
        "validation",
    }
)
_random = secrets.SystemRandom()


@dataclass
class Fault:
    kind: str
    count: int = 1
    rate: float | None = None  # when set the fault stays queued and fires with this probability
    retry_after: int = 1
    hang_seconds: float = 30.0
    path_contains: str | None = None


def parse_fault(data: Any) -> Fault:
    if not isinstance(data, dict):
        raise ValueError("fault must be a JSON object")
    unknown = set(data) - {"kind", "count", "rate", "retry_after", "hang_seconds", "path_contains"}
    if unknown:
        raise ValueError(f"unknown fault fields: {sorted(unknown)}")
    if data.get("kind") not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {data.get('kind')!r}; kinds: {sorted(FAULT_KINDS)}")
    fault = Fault(data["kind"])
    checks: list[tuple[str, type | tuple[type, ...], Callable[[Any], bool]]] = [
        ("count", int, lambda v: v >= 1),
        ("rate", (int, float), lambda v: 0 <= v <= 1),
        ("retry_after", int, lambda v: v >= 0),
        ("hang_seconds", (int, float), lambda v: 0 <= v <= 600),
        ("path_contains", str, bool),
    ]
    for name, kind, ok in checks:
        if name in data:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, kind) or not ok(value):
                raise ValueError(f"invalid {name}: {value!r}")
            setattr(fault, name, value)
    return fault


class FaultQueue:
    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)

    def clear(self) -> None:
        self._faults.clear()

    def as_list(self) -> list[dict[str, Any]]:
        return [asdict(f) for f in self._faults]

    def take(self, path: str, *, grant: bool, create: bool = False) -> Fault | None:
        """The first queued fault that applies: invalid_grant only to refresh grants (grant=True),
        commit_then_hang only to API calls that create a note or task (create=True), every other
        kind to any API call."""
        for fault in self._faults:
            if (fault.kind == "invalid_grant") != grant:
                continue
            if fault.kind == "commit_then_hang" and not create:
                continue
            if fault.path_contains and fault.path_contains not in path:
                continue
            if fault.rate is not None:
                if _random.random() < fault.rate:
                    return fault
                continue
            fault.count -= 1
            if fault.count <= 0:
                self._faults.remove(fault)
            return fault
        return None


class RollingWindow:
    """Hits accepted in the last `seconds`; a refused hit is not recorded."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._hits: deque[float] = deque()

    def used(self, now: float) -> int:
        while self._hits and self._hits[0] <= now - self.seconds:
            self._hits.popleft()
        return len(self._hits)

    def try_hit(self, now: float, limit: int) -> bool:
        if self.used(now) >= limit:
            return False
        self._hits.append(now)
        return True
