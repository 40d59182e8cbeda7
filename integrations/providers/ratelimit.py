"""The shared rate limiter: one budget per external account, shared by every Conduit process.

With REDIS_URL set, pacing uses the `limits` library's moving window on Redis (one atomic Lua
script per hit, so gunicorn and every Celery worker on every machine share one count). Without
Redis (the embedded default) a file per account under var/ratelimit, guarded by flock, gives
the same moving window to every process on the one machine; `limits` has no storage that is
shared across processes without a server, hence this small fallback.

Three things are tracked per (bucket, account):
- pacing: at most `limit` calls per `window` seconds (the provider's limit times the budget);
- blocks: after a 429 or a daily-limit answer, no call until the provider's Retry-After;
- daily usage (Salesforce's Sforce-Limit-Info), used to pause writes at a threshold.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol, cast

import redis
from django.conf import settings
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from integrations.providers.errors import RateLimited

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Bucket:
    """A provider budget: `limit` calls per `window` seconds (limit 0: not paced, only blocked)."""

    provider: str
    name: str
    limit: int
    window: int

    @classmethod
    def budgeted(cls, provider: str, name: str, provider_limit: int, window: int) -> Bucket:
        return cls(provider, name, max(1, math.floor(provider_limit * settings.CONDUIT_RATE_BUDGET)), window)

    def key(self, account: str) -> str:
        return f"{self.provider}:{self.name}:{account}"


class Store(Protocol):
    def try_hit(self, bucket: Bucket, account: str, now: float) -> float:
        """Take a slot and return 0, or return the seconds until one frees up."""

    def block(self, bucket: Bucket, account: str, until: float) -> None: ...

    def remaining(self, bucket: Bucket, account: str) -> int:
        """Slots still free in the current window (read only; takes none)."""

    def blocked_until(self, bucket: Bucket, account: str) -> float: ...

    def set_daily_usage(self, provider: str, account: str, used: int, limit: int) -> None: ...

    def daily_usage(self, provider: str, account: str) -> tuple[int, int] | None: ...


class RateLimiter:
    def __init__(self, store: Store, *, clock: Clock = time.time, sleep: Sleep = time.sleep) -> None:
        self.store = store
        self.clock = clock
        self.sleep = sleep

    def acquire(self, bucket: Bucket, account: str, *, max_wait: float | None = None) -> float:
        """Wait for a slot (up to max_wait seconds) and return how long we waited.

        Raises RateLimited(retry_after) instead of waiting longer, so a worker hands the
        wait to next_retry_at rather than sleeping through it."""
        max_wait = settings.CONDUIT_RATE_MAX_WAIT_SECONDS if max_wait is None else max_wait
        waited = 0.0
        while True:
            now = self.clock()
            wait = self.store.blocked_until(bucket, account) - now
            if wait <= 0:
                wait = self.store.try_hit(bucket, account, now) if bucket.limit else 0.0
                if wait <= 0:
                    return waited
            if waited + wait > max_wait:
                raise RateLimited(
                    bucket.provider, "local_rate_limit", f"{bucket.name} budget", retry_after=wait
                )
            # a little jitter so waiting processes do not all wake on the same millisecond
            pause = wait + random.uniform(0, 0.01)  # noqa: S311 - jitter, not security
            self.sleep(pause)
            waited += pause

    def block(self, bucket: Bucket, account: str, seconds: float) -> None:
        self.store.block(bucket, account, self.clock() + seconds)

    def headroom(self, bucket: Bucket, account: str) -> dict[str, Any]:
        """What is left of Conduit's budget for this account now (for health details)."""
        blocked_for = max(self.store.blocked_until(bucket, account) - self.clock(), 0.0)
        return {
            "bucket": bucket.name,
            "limit": bucket.limit,
            "window_seconds": bucket.window,
            "remaining": self.store.remaining(bucket, account) if bucket.limit else None,
            "blocked_for_seconds": round(blocked_for, 1),
        }

    def record_daily_usage(self, provider: str, account: str, used: int, limit: int) -> None:
        self.store.set_daily_usage(provider, account, used, limit)

    def daily_usage(self, provider: str, account: str) -> tuple[int, int] | None:
        return self.store.daily_usage(provider, account)

    def daily_ratio(self, provider: str, account: str) -> float:
        usage = self.daily_usage(provider, account)
        return usage[0] / usage[1] if usage and usage[1] else 0.0


DAILY_TTL_SECONDS = 24 * 3600


class RedisStore:
    def __init__(self, url: str) -> None:
        self.storage = RedisStorage(url, key_prefix="conduit-rl")
        self.window = MovingWindowRateLimiter(self.storage)
        self.redis: redis.Redis = redis.Redis.from_url(url, decode_responses=True)

    def _item(self, bucket: Bucket) -> RateLimitItemPerSecond:
        return RateLimitItemPerSecond(
            bucket.limit, bucket.window, namespace=f"{bucket.provider}-{bucket.name}"
        )

    def try_hit(self, bucket: Bucket, account: str, now: float) -> float:
        item = self._item(bucket)
        if self.window.hit(item, account):
            return 0.0
        reset_at = self.window.get_window_stats(item, account).reset_time
        return max(reset_at - now, 0.001)

    def block(self, bucket: Bucket, account: str, until: float) -> None:
        # keep the later end when two answers race (same rule as the file store)
        until = max(until, self.blocked_until(bucket, account))
        ttl_ms = max(int((until - time.time()) * 1000), 1)
        self.redis.set(f"conduit-rl:block:{bucket.key(account)}", str(until), px=ttl_ms)

    def remaining(self, bucket: Bucket, account: str) -> int:
        return int(self.window.get_window_stats(self._item(bucket), account).remaining)

    def blocked_until(self, bucket: Bucket, account: str) -> float:
        value = cast(str | None, self.redis.get(f"conduit-rl:block:{bucket.key(account)}"))
        return float(value) if value else 0.0

    def set_daily_usage(self, provider: str, account: str, used: int, limit: int) -> None:
        self.redis.set(f"conduit-rl:daily:{provider}:{account}", f"{used}/{limit}", ex=DAILY_TTL_SECONDS)

    def daily_usage(self, provider: str, account: str) -> tuple[int, int] | None:
        value = cast(str | None, self.redis.get(f"conduit-rl:daily:{provider}:{account}"))
        if not value:
            return None
        used, limit = value.split("/")
        return int(used), int(limit)


class FileStore:
    """Moving window in a JSON file per account, one flock per read-modify-write."""

    def __init__(self, directory: Path, clock: Clock = time.time) -> None:
        self.directory = directory
        self.clock = clock
        directory.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self, provider: str, account: str) -> Iterator[dict[str, Any]]:
        name = hashlib.sha256(f"{provider}:{account}".encode()).hexdigest()[:32]
        path = self.directory / f"{provider}-{name}.json"
        with open(path, "a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            raw = fh.read()
            state: dict[str, Any] = json.loads(raw) if raw.strip() else {}
            before = json.dumps(state, sort_keys=True)
            yield state
            if json.dumps(state, sort_keys=True) != before:
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps(state))
                fh.flush()

    def try_hit(self, bucket: Bucket, account: str, now: float) -> float:
        with self._locked(bucket.provider, account) as state:
            now = self.clock()  # read under the lock: a stale time would let a slot expire early
            hits = [t for t in state.get(f"hits:{bucket.name}", []) if t > now - bucket.window]
            if len(hits) < bucket.limit:
                hits.append(now)
                wait = 0.0
            else:
                wait = max(hits[-bucket.limit] + bucket.window - now, 0.001)
            state[f"hits:{bucket.name}"] = hits
            return wait

    def block(self, bucket: Bucket, account: str, until: float) -> None:
        with self._locked(bucket.provider, account) as state:
            state[f"block:{bucket.name}"] = max(until, state.get(f"block:{bucket.name}", 0.0))

    def remaining(self, bucket: Bucket, account: str) -> int:
        with self._locked(bucket.provider, account) as state:
            now = self.clock()
            hits = [t for t in state.get(f"hits:{bucket.name}", []) if t > now - bucket.window]
            return max(bucket.limit - len(hits), 0)

    def blocked_until(self, bucket: Bucket, account: str) -> float:
        with self._locked(bucket.provider, account) as state:
            return float(state.get(f"block:{bucket.name}", 0.0))

    def set_daily_usage(self, provider: str, account: str, used: int, limit: int) -> None:
        with self._locked(provider, account) as state:
            state["daily"] = [used, limit, time.time()]

    def daily_usage(self, provider: str, account: str) -> tuple[int, int] | None:
        with self._locked(provider, account) as state:
            daily = state.get("daily")
            if not daily or daily[2] < time.time() - DAILY_TTL_SECONDS:
                return None
            return int(daily[0]), int(daily[1])


@cache
def _limiter_for(redis_url: str, directory: str) -> RateLimiter:
    store: Store = RedisStore(redis_url) if redis_url else FileStore(Path(directory))
    return RateLimiter(store)


def get_limiter() -> RateLimiter:
    return _limiter_for(settings.REDIS_URL, str(settings.CONDUIT_RATE_LIMIT_DIR))
