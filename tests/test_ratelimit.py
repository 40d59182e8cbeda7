"""The shared rate limiter: moving window, blocks, daily usage; Redis and the file fallback."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
from django.conf import settings

from integrations.providers.errors import RateLimited
from integrations.providers.ratelimit import Bucket, FileStore, RateLimiter, RedisStore, Store, get_limiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture(params=["file", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "redis":
        if not settings.REDIS_URL:
            pytest.skip("REDIS_URL not set")
        return RedisStore(settings.REDIS_URL)
    return FileStore(tmp_path / "rl")


def test_budget_is_a_share_of_the_provider_limit(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CONDUIT_RATE_BUDGET = 0.9
    assert Bucket.budgeted("hubspot", "api", 110, 10).limit == 99
    settings.CONDUIT_RATE_BUDGET = 0.1
    assert Bucket.budgeted("hubspot", "search", 5, 1).limit == 1


def test_window_admits_the_limit_then_waits_for_the_oldest_slot(store: Store) -> None:
    # the Redis store's moving window uses real time; keep the window short
    bucket = Bucket("test", f"w{time.monotonic_ns()}", 3, 1)
    limiter = RateLimiter(store)
    started = time.monotonic()
    waits = [limiter.acquire(bucket, "acct", max_wait=5) for _ in range(6)]
    elapsed = time.monotonic() - started
    assert waits[:3] == [0.0, 0.0, 0.0] or max(waits[:3]) < 0.05
    assert 0.9 <= elapsed < 3.0  # the 4th..6th waited for the window to slide once


def test_wait_beyond_max_wait_raises_rate_limited_with_the_wait(tmp_path: Path) -> None:
    clock = FakeClock()
    limiter = RateLimiter(FileStore(tmp_path, clock=clock), clock=clock, sleep=clock.sleep)
    bucket = Bucket("hubspot", "api", 2, 10)
    limiter.acquire(bucket, "p1")
    limiter.acquire(bucket, "p1")
    with pytest.raises(RateLimited) as err:
        limiter.acquire(bucket, "p1", max_wait=1)
    assert err.value.code == "local_rate_limit"
    assert err.value.retry_after == pytest.approx(10, abs=0.01)
    assert clock.slept == []
    clock.now += 10.01
    assert limiter.acquire(bucket, "p1", max_wait=1) == 0


def test_accounts_have_separate_windows(tmp_path: Path) -> None:
    clock = FakeClock()
    limiter = RateLimiter(FileStore(tmp_path, clock=clock), clock=clock, sleep=clock.sleep)
    bucket = Bucket("hubspot", "api", 1, 10)
    limiter.acquire(bucket, "p1")
    assert limiter.acquire(bucket, "p2", max_wait=0) == 0


def test_waiting_sleeps_until_the_slot_frees(tmp_path: Path) -> None:
    clock = FakeClock()
    limiter = RateLimiter(FileStore(tmp_path, clock=clock), clock=clock, sleep=clock.sleep)
    bucket = Bucket("hubspot", "api", 1, 10)
    limiter.acquire(bucket, "p1")
    clock.now += 4
    waited = limiter.acquire(bucket, "p1", max_wait=15)
    assert 6 <= waited < 6.1
    assert len(clock.slept) == 1


def test_block_pauses_the_account_until_retry_after(store: Store) -> None:
    limiter = RateLimiter(store)
    bucket = Bucket("hubspot", f"b{time.monotonic_ns()}", 100, 10)
    limiter.block(bucket, "p1", 30)
    with pytest.raises(RateLimited) as err:
        limiter.acquire(bucket, "p1", max_wait=1)
    assert 29 < err.value.retry_after <= 30
    assert limiter.acquire(bucket, "p2", max_wait=0) == 0


def test_unpaced_bucket_is_only_blocked(tmp_path: Path) -> None:
    limiter = RateLimiter(FileStore(tmp_path))
    bucket = Bucket("salesforce", "api", 0, 1)
    for _ in range(50):
        assert limiter.acquire(bucket, "org", max_wait=0) == 0


def test_daily_usage_round_trips(store: Store) -> None:
    limiter = RateLimiter(store)
    account = f"org{time.monotonic_ns()}"
    assert limiter.daily_usage("salesforce", account) is None
    assert limiter.daily_ratio("salesforce", account) == 0.0
    limiter.record_daily_usage("salesforce", account, 850, 1000)
    assert limiter.daily_usage("salesforce", account) == (850, 1000)
    assert limiter.daily_ratio("salesforce", account) == 0.85


def test_file_store_forgets_daily_usage_after_a_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path)
    store.set_daily_usage("salesforce", "org", 1, 10)
    real = time.time()
    monkeypatch.setattr(time, "time", lambda: real + 86401)
    assert store.daily_usage("salesforce", "org") is None


def test_get_limiter_uses_redis_when_configured(settings) -> None:  # type: ignore[no-untyped-def]
    from integrations.providers import ratelimit

    settings.REDIS_URL = ""
    ratelimit._limiter_for.cache_clear()
    assert isinstance(get_limiter().store, FileStore)
    settings.REDIS_URL = "redis://127.0.0.1:6379/15"
    assert isinstance(get_limiter().store, RedisStore)


def _hammer(
    kind: str,
    directory: str,
    redis_url: str,
    bucket_name: str,
    seconds: float,
    out: multiprocessing.Queue[list[float]],
) -> None:
    store: Store = RedisStore(redis_url) if kind == "redis" else FileStore(Path(directory))
    limiter = RateLimiter(store)
    bucket = Bucket("test", bucket_name, 10, 1)
    stamps: list[float] = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        limiter.acquire(bucket, "shared", max_wait=5)
        stamps.append(time.time())
    out.put(stamps)


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_processes_share_one_budget(kind: str, tmp_path: Path) -> None:
    """4 processes for 3 s against 10 per second: no 1-second window ever holds more than 10."""
    if kind == "redis" and not settings.REDIS_URL:
        pytest.skip("REDIS_URL not set")
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[list[float]] = ctx.Queue()
    name = f"mp{time.monotonic_ns()}"
    procs = [
        ctx.Process(target=_hammer, args=(kind, str(tmp_path), settings.REDIS_URL, name, 3.0, out))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    stamps = sorted(s for _ in procs for s in out.get(timeout=30))
    for p in procs:
        p.join(timeout=10)
    # stamps are taken just after each grant; a 0.8 s window leaves room for that delay
    worst = max(sum(1 for t in stamps if s <= t < s + 0.8) for s in stamps)
    assert worst <= 10
    assert len(stamps) >= 25  # the budget was used, not starved (about 10/s over 3 s)


def test_a_shorter_block_never_shortens_a_longer_one(store: Store) -> None:
    limiter = RateLimiter(store)
    bucket = Bucket("hubspot", f"k{time.monotonic_ns()}", 100, 10)
    limiter.block(bucket, "p1", 60)
    limiter.block(bucket, "p1", 5)
    assert store.blocked_until(bucket, "p1") - time.time() > 55
