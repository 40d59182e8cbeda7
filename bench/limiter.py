"""Rate-limiter benchmark: 4 worker processes write notes to one sandbox HubSpot portal.

Run 1 goes through Conduit's shared limiter (Redis when REDIS_URL is set, else the file store).
Run 2, in the same invocation, sends the same load with no limiter and retries after a 429
the way most peers do (sleep Retry-After or 1 s). Each run lasts --seconds (default 60).
Prints, per run: successful writes/s, ratio to the provider limit (110 per 10 s), requests
sent, 429 count and share. Targets for the limiter: >= 90% of the limit, < 1% 429s.

Also measures the cost of the crm_sync_logs row on the call path: --overhead-calls sequential
calls with the row written vs not written, interleaved, in the same process.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PROVIDER_LIMIT_PER_SECOND = 110 / 10
WORKERS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def setup_django(port: int, var_dir: str) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "conduit.settings",
            "CONDUIT_VAR_DIR": var_dir,
            "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", ""),
            "HUBSPOT_API_BASE_URL": f"http://127.0.0.1:{port}",
            "SANDBOX_HUBSPOT_PORT": str(port),
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def worker(mode: str, token: str, seconds: float, out: Any) -> None:
    from django.db import connections

    connections.close_all()
    from integrations.providers import get_provider
    from integrations.providers.base import Account, Activity
    from integrations.providers.errors import ProviderError, RateLimited

    provider = get_provider("hubspot")
    account = Account("hubspot", token, "4400001" if mode == "limiter" else "")
    sent = ok = rate_limited = other = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        activity = Activity(
            subject="bench",
            text=f"bench note {sent}",
            occurred_at=datetime.now(UTC),
            contact_id="101",
            marker=f"bench-{os.getpid()}-{sent}",
        )
        try:
            sent += 1
            provider.create_note(account, activity)
            ok += 1
        except RateLimited as exc:
            if exc.http_status is None:  # the limiter handed a long wait back without sending
                sent -= 1
                time.sleep(min(exc.retry_after, max(deadline - time.monotonic(), 0)))
                continue
            rate_limited += 1
            if mode == "naive":
                time.sleep(1.0)  # the common peer: wait a second after a 429 and try again
        except ProviderError:
            other += 1
    out.put({"sent": sent, "ok": ok, "rate_limited": rate_limited, "other": other})


def run(mode: str, sandbox: Any, seconds: float) -> dict[str, float]:
    import requests

    requests.post(f"{sandbox.base_url}/_sandbox/reset", timeout=5)
    token = requests.post(f"{sandbox.base_url}/_sandbox/tokens", json={}, timeout=5).json()["access_token"]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(mode, token, seconds, out)) for _ in range(WORKERS)]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    elapsed = time.monotonic() - started
    total = {key: sum(r[key] for r in results) for key in results[0]}
    rate = total["ok"] / elapsed
    return {
        **total,
        "seconds": elapsed,
        "rate": rate,
        "ratio": rate / PROVIDER_LIMIT_PER_SECOND,
        "share_429": total["rate_limited"] / total["sent"] if total["sent"] else 0.0,
    }


def overhead(sandbox: Any, calls: int) -> tuple[float, float]:
    """Median ms per create_note with and without the sync-log row, interleaved in blocks of 10."""
    import statistics

    import requests

    from integrations.providers import base, get_provider
    from integrations.providers.base import Account, Activity

    requests.post(f"{sandbox.base_url}/_sandbox/reset", timeout=5)
    token = requests.post(f"{sandbox.base_url}/_sandbox/tokens", json={}, timeout=5).json()["access_token"]
    requests.post(f"{sandbox.base_url}/_sandbox/config", json={"ten_second_limit": 1_000_000}, timeout=5)
    provider = get_provider("hubspot")
    account = Account("hubspot", token, "")
    real = base.record_sync
    timings: dict[bool, list[float]] = {True: [], False: []}
    for block in range(calls // 10):
        with_log = block % 2 == 0
        base.record_sync = real if with_log else (lambda *a, **k: None)  # type: ignore[assignment]
        for i in range(10):
            activity = Activity("bench", f"n{block}-{i}", datetime.now(UTC), "101", f"m{block}-{i}")
            started = time.perf_counter()
            provider.create_note(account, activity)
            timings[with_log].append((time.perf_counter() - started) * 1000)
    base.record_sync = real
    return statistics.median(timings[True]), statistics.median(timings[False])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--overhead-calls", type=int, default=400)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="conduit-bench-") as var_dir:
        setup_django(port, var_dir)
        from django.conf import settings
        from django.db import connections

        from integrations.sandbox.server import start_sandbox

        store = "redis " + settings.REDIS_URL if settings.REDIS_URL else "file store (no REDIS_URL)"
        budget = settings.CONDUIT_RATE_BUDGET
        vendor = connections["default"].vendor
        print(f"sandbox HubSpot on :{port}; limiter store: {store}; budget {budget:.0%}")
        print(f"database: {vendor}; {WORKERS} worker processes, {args.seconds:.0f} s per run")
        sandbox = start_sandbox("hubspot", port=port)
        connections.close_all()
        try:
            figures = {mode: run(mode, sandbox, args.seconds) for mode in ("limiter", "naive")}
            with_log, without_log = overhead(sandbox, args.overhead_calls)
        finally:
            sandbox.stop()
    header = ("run", "writes/s", "of limit", "sent", "429s", "429 share", "other err")
    widths = (-10, 10, 10, 8, 8, 11, 11)
    print("".join(f"{h:<{-w}}" if w < 0 else f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for mode, f in figures.items():
        print(
            f"{mode:<10}{f['rate']:>10.2f}{f['ratio']:>10.1%}{f['sent']:>8.0f}{f['rate_limited']:>8.0f}"
            f"{f['share_429']:>11.2%}{f['other']:>11.0f}"
        )
    lim = figures["limiter"]
    ok = lim["ratio"] >= 0.90 and lim["share_429"] < 0.01
    print(f"target (limiter >= 90% of limit, < 1% 429s): {'PASS' if ok else 'FAIL'}")
    added = with_log - without_log
    print(
        f"sync-log row on the call path: median {with_log:.2f} ms per call with it, "
        f"{without_log:.2f} ms without (+{added:.2f} ms, {added / without_log:+.0%})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
