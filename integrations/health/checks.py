"""Connection checks: the provider's cheapest authenticated call, its verdict in connection_health.

Verdicts: a passing call -> ok (warning when granted scopes no longer cover what Conduit
needs: scope drift); a rate limit, an unreachable CRM or a rejected check -> warning; the CRM
refusing Conduit's token -> warning, and error (crm_connections.status='error') once that has
lasted CONDUIT_HEALTH_AUTH_FAILURES_TO_ERROR checks in a row. A refresh token the CRM no
longer accepts goes to error at once (tokens.refresh_connection -> mark_revoked), and so do
typed credentials (an ATS) the provider refuses (`credentials_invalid`: rotated, revoked or
deleted; only the admin's Update credentials brings them back).

The hourly run (reconcile_connections) spreads the checks over CONDUIT_HEALTH_SPREAD_SECONDS
in CONDUIT_HEALTH_WAVES waves: a connection always lands in the same wave (id modulo waves),
so it is checked about an hour apart. A wave runs its checks CONDUIT_HEALTH_CONCURRENCY at a
time (worker threads: the work is waiting on the CRM); every call goes through the rate
limiter like any other call to that CRM.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from conduit.audit import actor_label
from conduit.logging import log_failure
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from integrations.connections import health_rows as health_state
from integrations.connections.health_rows import Status, Verdict
from integrations.connections.tenant_switch import enabled_connections
from integrations.connections.tokens import NotConnected, call_with_token, locked_connection, mark_revoked
from integrations.models import ConnectionHealth, CrmConnection
from integrations.providers import get_provider
from integrations.providers.base import HealthResult, Provider, last_call_ms
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    Permanent,
    ProviderError,
    RateLimited,
)
from integrations.providers.ratelimit import get_limiter

log = logging.getLogger("conduit.integrations")
CREDENTIALS_INVALID = "credentials_invalid"
ACTOR = "system:reconcile_connections"
Clock = Callable[[], datetime]


class CheckTooSoon(ConduitError):
    error_code = "check_too_soon"


@dataclass(frozen=True)
class CheckResult:
    connection_id: int
    workspace_id: int | None
    crm: str
    account: str
    status: str  # ok / warning / error, or skipped (not connected any more) / failed (Conduit's bug)
    previous: str
    reason: str
    latency_ms: int | None = None


def scope_details(provider: Provider, conn: CrmConnection) -> dict[str, Any]:
    granted = sorted(str(s) for s in conn.granted_scopes)
    return {
        "granted": granted,
        "required": list(provider.required_scopes),
        "missing": provider.missing_scopes(granted),
    }


def base_details(provider: Provider, conn: CrmConnection) -> dict[str, Any]:
    """What every verdict shows besides its outcome; never a token."""
    return {
        "scopes": scope_details(provider, conn),
        "token_expires_at": conn.token_expires_at.isoformat() if conn.token_expires_at else None,
        "rate_limit": get_limiter().headroom(provider.api_bucket(), conn.external_account_key),
    }


def verdict_of_success(provider: Provider, conn: CrmConnection, result: HealthResult) -> Verdict:
    details = {
        **base_details(provider, conn),
        "error_code": "",
        "http_status": 200,
        "latency_ms": result.latency_ms,
        "account": result.details,
    }
    if details["scopes"]["missing"]:
        return Verdict(Status.WARNING, "scope_drift", {**details, "error_code": "missing_scope"})
    return Verdict(Status.OK, "ok", details)


def verdict_of_error(provider: Provider, conn: CrmConnection, exc: ProviderError) -> Verdict:
    details: dict[str, Any] = {
        **base_details(provider, conn),
        "error_code": exc.code,
        "http_status": exc.http_status,
        "latency_ms": last_call_ms(),
        "message": exc.message[:200],
    }
    if isinstance(exc, RateLimited):
        details["retry_after_seconds"] = round(exc.retry_after, 1)
        return Verdict(Status.WARNING, "rate_limited", details, failure=True, auth_failure=None)
    if isinstance(exc, MissingScope):
        details["scopes"] = {**details["scopes"], "missing": sorted(exc.missing)}
        return Verdict(Status.WARNING, "missing_scope", details, failure=True)
    if isinstance(exc, AuthRevoked) and exc.code == CREDENTIALS_INVALID and not provider.uses_oauth:
        return Verdict(Status.ERROR, CREDENTIALS_INVALID, details, failure=True, auth_failure=True)
    if isinstance(exc, AuthRevoked):
        return Verdict(Status.WARNING, "auth_failed", details, failure=True, auth_failure=True)
    if isinstance(exc, Permanent):
        return Verdict(Status.WARNING, "check_rejected", details, failure=True)
    return Verdict(Status.WARNING, "unreachable", details, failure=True, auth_failure=None)


def probe(conn: CrmConnection, *, now: Clock) -> Verdict | None:
    """Make the check call; None when the connection stopped being connected meanwhile
    (a refused refresh token already recorded its own error verdict)."""
    provider = get_provider(conn.crm)
    try:
        result = call_with_token(conn.pk, provider.check_health, now=now, revoke_on_reject=False)
    except NotConnected:
        return None
    except ProviderError as exc:
        return verdict_of_error(provider, conn, exc)
    return verdict_of_success(provider, conn, result)


def conclude(
    checked: CrmConnection, verdict: Verdict, *, now: datetime, actor: AbstractBaseUser | str
) -> ConnectionHealth | None:
    """Record the verdict under the connection's lock; escalate a sustained auth failure.

    `checked` is the connection as it was when the call started: a verdict about a grant that
    was replaced (reconnect) or ended (disconnect) meanwhile is dropped."""
    with system_scope():
        conn = locked_connection(checked.pk)
        if conn.status != CrmConnection.Status.CONNECTED or conn.connected_at != checked.connected_at:
            return None
        row = health_state.locked_row(conn)
        run = health_state.auth_run(row, now)
        if verdict.reason == CREDENTIALS_INVALID:  # typed credentials refused: no run to wait for
            mark_revoked(conn, CREDENTIALS_INVALID, actor=actor_label(actor), health_details=verdict.details)
            return health_state.locked_row(conn)
        if verdict.auth_failure and run >= settings.CONDUIT_HEALTH_AUTH_FAILURES_TO_ERROR:
            details = {**verdict.details, "auth_failures_in_a_row": run}
            mark_revoked(conn, "access_token_rejected", actor=actor_label(actor), health_details=details)
            return health_state.locked_row(conn)
        return health_state.record(conn, verdict, now=now, actor=actor)


def check_connection(
    connection_id: int, *, actor: AbstractBaseUser | str = ACTOR, now: Clock = timezone.now
) -> CheckResult:
    """Check one connection (only a connected one is called) and report its verdict."""
    with system_scope():
        conn = CrmConnection.objects.get(pk=connection_id)
        before = health_state.rows_of(conn).first()
    verdict = probe(conn, now=now) if conn.status == CrmConnection.Status.CONNECTED else None
    if verdict is not None:
        conclude(conn, verdict, now=now(), actor=actor)
    with system_scope():
        conn.refresh_from_db(fields=["status"])
        row = health_state.rows_of(conn).first()
    status, reason = (row.status, row.reason) if row else ("skipped", "")
    if conn.status == CrmConnection.Status.DISCONNECTED:
        status, reason = "skipped", "disconnected"
    return CheckResult(
        conn.pk,
        conn.workspace_id,
        conn.crm,
        conn.account_label,
        status,
        before.status if before else "",
        reason,
        verdict.details.get("latency_ms") if verdict else None,
    )


def safe_check(connection_id: int, *, actor: AbstractBaseUser | str = ACTOR) -> CheckResult:
    """One check that never takes the rest of its wave down (Conduit's own bugs are logged)."""
    try:
        return check_connection(connection_id, actor=actor)
    except Exception as exc:
        log_failure(
            log,
            "health check of connection %s failed",
            connection_id,
            exc=exc,
            category="health",
            error_code="internal_error",
        )
        return CheckResult(connection_id, None, "", "", "failed", "", "internal_error")


def run_checks(ids: Iterable[int], *, concurrency: int | None = None) -> list[CheckResult]:
    """Check these connections, at most `concurrency` at once (results in the order given).

    Each worker thread takes ids from a shared queue and keeps one database connection for
    all its checks, closed when the queue is empty."""
    ids = list(dict.fromkeys(ids))
    concurrency = min(concurrency or settings.CONDUIT_HEALTH_CONCURRENCY, len(ids))
    if concurrency <= 1:
        return [safe_check(i) for i in ids]
    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    for connection_id in ids:
        work.put(connection_id)
    results: dict[int, CheckResult] = {}

    def worker() -> None:
        try:
            while True:
                try:
                    connection_id = work.get_nowait()
                except queue.Empty:
                    return
                results[connection_id] = safe_check(connection_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, name=f"health-{n}") for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [results[i] for i in ids]


def in_scope(status: str, workspace_id: int | None, crm: str | None) -> Q:
    """Workspace-bound connections in `status`, narrowed to one workspace and / or CRM."""
    query = Q(status=status, workspace__isnull=False)
    if workspace_id is not None:
        query &= Q(workspace_id=workspace_id)
    if crm:
        query &= Q(crm=crm)
    return query


def connections_to_check(*, workspace_id: int | None = None, crm: str | None = None) -> list[int]:
    query = in_scope(CrmConnection.Status.CONNECTED, workspace_id, crm)
    with system_scope():
        return list(
            CrmConnection.objects.filter(query, enabled_connections())
            .order_by("id")
            .values_list("id", flat=True)
        )


def record_errored(*, workspace_id: int | None = None, crm: str | None = None) -> int:
    """Connections in error get an error verdict without a call (their grant is unusable);
    only where the row does not say so already, so nothing is re-audited every hour."""
    query = in_scope(CrmConnection.Status.ERROR, workspace_id, crm)
    with system_scope():
        said = set(ConnectionHealth.objects.filter(status=Status.ERROR).values_list("workspace_id", "crm"))
        stale = [
            pk
            for pk, workspace_id, crm in CrmConnection.objects.filter(query).values_list(
                "id", "workspace_id", "crm"
            )
            if (workspace_id, crm) not in said
        ]
    for connection_id in stale:
        with system_scope():
            conn = locked_connection(connection_id)
            if conn.status == CrmConnection.Status.ERROR:  # not reconnected since the read
                health_state.record(
                    conn, Verdict.error(conn.last_error or "error"), now=timezone.now(), actor=ACTOR
                )
    return len(stale)


def wave_plan(ids: list[int], *, waves: int, spread: int) -> list[tuple[list[int], float]]:
    """(connection ids, countdown seconds) per wave: stable membership, jittered start."""
    step = spread / waves
    plan = []
    for wave in range(waves):
        members = [i for i in ids if i % waves == wave]
        if members:
            plan.append((members, wave * step + random.uniform(0, step / 2)))  # noqa: S311 - jitter
    return plan


QueueWave = Callable[[list[int], float], object]


def schedule_checks(queue_wave: QueueWave, *, workspace_id: int | None = None, crm: str | None = None) -> int:
    """The hourly entry point: hand today's waves to `queue_wave(ids, countdown)` (the task
    module passes its Celery task); returns how many connections are queued."""
    record_errored(workspace_id=workspace_id, crm=crm)
    ids = connections_to_check(workspace_id=workspace_id, crm=crm)
    for members, countdown in wave_plan(
        ids, waves=settings.CONDUIT_HEALTH_WAVES, spread=settings.CONDUIT_HEALTH_SPREAD_SECONDS
    ):
        queue_wave(members, countdown)
    log.info("queued %s connection checks", len(ids), extra={"category": "health"})
    return len(ids)


def do_check_now(
    conn: CrmConnection, *, actor: AbstractBaseUser | str, now: Clock = timezone.now
) -> CheckResult:
    """The "check now" button: one check at once, at most once per connection per cooldown."""
    cooldown = timedelta(seconds=settings.CONDUIT_HEALTH_CHECK_NOW_COOLDOWN_SECONDS)
    at = now()
    with system_scope():
        # the connection first, then its health row: the order conclude() and mark_revoked()
        # lock in (a request holds its locks until it ends, so the order matters)
        locked_connection(conn.pk)
        rows = health_state.rows_of(conn)
        claimed = rows.filter(Q(manual_check_at__isnull=True) | Q(manual_check_at__lte=at - cooldown)).update(
            manual_check_at=at
        )
        row = None if claimed else rows.first()
    if row is not None and row.manual_check_at is not None:
        wait = int((row.manual_check_at + cooldown - at).total_seconds()) + 1
        raise CheckTooSoon(f"{conn.get_crm_display()} was checked moments ago; try again in {wait} s.")
    result = check_connection(conn.pk, actor=actor, now=now)
    if not claimed:  # the first check ever created the row: start its cooldown now
        with system_scope():
            rows.filter(manual_check_at__isnull=True).update(manual_check_at=at)
    return result
