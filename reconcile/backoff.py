"""Full-jitter exponential backoff (provider-facts.md, "Retry and backoff").

Written out rather than taken from tenacity: tenacity's waits need a RetryCallState and assume
the caller sleeps; Conduit only needs the number, stored in next_retry_at."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings

_random = random.SystemRandom()


def ceiling(attempt: int, *, base: float | None = None, cap: float | None = None) -> float:
    """The largest delay the attempt-th retry may get: min(cap, base * 2**attempt)."""
    base = settings.CONDUIT_WRITE_BACKOFF_BASE_SECONDS if base is None else base
    cap = settings.CONDUIT_WRITE_BACKOFF_CAP_SECONDS if cap is None else cap
    return min(cap, base * 2 ** min(attempt, 60))


def full_jitter(
    attempt: int,
    *,
    base: float | None = None,
    cap: float | None = None,
    draw: Callable[[], float] = _random.random,
) -> float:
    """A delay drawn uniformly from [0, ceiling(attempt)]."""
    return draw() * ceiling(attempt, base=base, cap=cap)


def next_retry_at(attempt: int, now: datetime, *, draw: Callable[[], float] = _random.random) -> datetime:
    return now + timedelta(seconds=full_jitter(attempt, draw=draw))
