"""Push channels (Google events.watch) and subscriptions (Graph) of calendar connections, and
what a verified notification does.

Each channel carries a fresh secret (secrets.token_urlsafe(32), stored encrypted in
channel_secret) that every notification must echo (Google X-Goog-Channel-Token, Graph
clientState); it is compared in constant time. A verified change marks the connection
sync_needed in one UPDATE and queues its sync after the commit (the job runner picks it up
anyway if that dispatch is lost). Channels ending within CALENDAR_CHANNEL_RENEW_BEFORE_HOURS are
renewed by the hourly pass, which also opens one for a connection that has none.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from conduit.logging import log_failure
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from integrations.calendars import flags, jobs, tokens
from integrations.calendars.logs import calendar_log
from integrations.models import ExternalCalendarConnection
from integrations.providers import get_calendar_provider
from integrations.providers.base import Account
from integrations.providers.calendar_base import PushChannel
from integrations.providers.errors import ProviderError

Connection = ExternalCalendarConnection
log = logging.getLogger("conduit.integrations.calendar")
CHANNEL_FIELDS = ["channel_id", "channel_resource_id", "channel_secret", "channel_expires_at"]


def address(provider: str) -> str:
    return f"{settings.CALENDAR_WEBHOOK_BASE_URL}/webhooks/calendar/{provider}"


def error_code_of(exc: ProviderError | ConduitError) -> str:
    return exc.code if isinstance(exc, ProviderError) else exc.error_code


def secret_matches(given: str, stored: str) -> bool:
    return bool(given) and bool(stored) and hmac.compare_digest(given.encode(), stored.encode())


def channel_of(conn: Connection) -> PushChannel:
    expires = conn.channel_expires_at or timezone.now()
    return PushChannel(channel_id=conn.channel_id, resource_id=conn.channel_resource_id, expires_at=expires)


def clear_channel(conn: Connection) -> None:
    """Forget the channel (the caller saves CHANNEL_FIELDS)."""
    conn.channel_id = conn.channel_resource_id = conn.channel_secret = ""
    conn.channel_expires_at = None


def store_channel(connection_id: int, channel: PushChannel, secret: str) -> bool:
    """Keep a new channel on a connection that is still connected; False when it no longer is."""
    with system_scope():
        conn = tokens.locked_connection(connection_id)
        if conn.status != Connection.Status.CONNECTED:
            return False
        conn.channel_id, conn.channel_resource_id = channel.channel_id, channel.resource_id
        conn.channel_secret, conn.channel_expires_at = secret, channel.expires_at
        conn.save(update_fields=[*CHANNEL_FIELDS, "updated_at"])
    return True


def stop_quietly(conn: Connection, channel: PushChannel) -> bool:
    """Close a channel at the provider; a failure is logged, never raised."""
    provider = get_calendar_provider(conn.provider)
    try:
        tokens.call_with_token(conn.pk, lambda account: provider.stop(account, channel))
    except (ProviderError, ConduitError) as exc:
        code = error_code_of(exc)
        calendar_log(logging.WARNING, "calendar channel not stopped", error_code=code, connection_id=conn.pk)
        return False
    return True


def open_channel(connection_id: int) -> None:
    """Open a push channel for a connected calendar (an existing one is closed first).

    Raises CalendarForbidden when push is switched off for it, and what the provider raises."""
    with system_scope():
        conn = Connection.objects.get(pk=connection_id)
    flags.check(flags.Feature.WEBHOOK, provider_id=conn.profile_id, connection_id=conn.pk)
    tokens.connected(conn)
    if conn.channel_id:
        stop_quietly(conn, channel_of(conn))
    provider = get_calendar_provider(conn.provider)
    secret, where = secrets.token_urlsafe(32), address(conn.provider)
    used: list[Account] = []

    def watch(account: Account) -> PushChannel:
        used.append(account)
        return provider.watch(account, address=where, secret=secret, channel_id=str(uuid.uuid4()))

    channel = tokens.call_with_token(conn.pk, watch)
    if not store_channel(conn.pk, channel, secret):  # disconnected meanwhile: do not leave it open
        try:
            provider.stop(used[-1], channel)
        except ProviderError as exc:
            calendar_log(
                logging.WARNING, "calendar channel not stopped", error_code=exc.code, connection_id=conn.pk
            )
        return
    calendar_log(
        logging.INFO,
        "calendar channel opened",
        connection_id=conn.pk,
        provider=conn.provider,
        expires_at=channel.expires_at.isoformat(),
    )


def open_channel_quietly(connection_id: int) -> bool:
    """open_channel for a caller that must not fail because of it (connect): logged instead."""
    try:
        open_channel(connection_id)
    except flags.CalendarForbidden as exc:
        calendar_log(
            logging.INFO, "calendar channel not opened", error_code=exc.code, connection_id=connection_id
        )
        return False
    except (ProviderError, ConduitError) as exc:
        code = error_code_of(exc)
        calendar_log(
            logging.WARNING, "calendar channel not opened", error_code=code, connection_id=connection_id
        )
        return False
    return True


def close_channel(connection_id: int) -> None:
    """Stop the connection's channel at the provider (best effort) and forget it."""
    with system_scope():
        conn = Connection.objects.get(pk=connection_id)
    if not conn.channel_id:
        return
    if conn.status == Connection.Status.CONNECTED and conn.access_token:
        stop_quietly(conn, channel_of(conn))
    with system_scope():
        Connection.objects.filter(pk=connection_id, channel_id=conn.channel_id).update(
            channel_id="", channel_resource_id="", channel_secret="", channel_expires_at=None
        )
    calendar_log(logging.INFO, "calendar channel closed", connection_id=connection_id, provider=conn.provider)


def renew_channel(conn: Connection) -> None:
    """Extend a channel before it ends (Google: a new channel replaces it, same secret)."""
    provider = get_calendar_provider(conn.provider)
    secret = conn.channel_secret or secrets.token_urlsafe(32)
    old, where = channel_of(conn), address(conn.provider)
    channel = tokens.call_with_token(
        conn.pk, lambda account: provider.renew(account, old, address=where, secret=secret)
    )
    if store_channel(conn.pk, channel, secret):
        calendar_log(
            logging.INFO,
            "calendar channel renewed",
            connection_id=conn.pk,
            provider=conn.provider,
            expires_at=channel.expires_at.isoformat(),
        )


def renew_due_channels(*, now: datetime | None = None) -> int:
    """The hourly pass: renew channels ending within CALENDAR_CHANNEL_RENEW_BEFORE_HOURS (an
    ended one is replaced), open one where a connection has none. Returns how many were renewed
    or opened; one connection's failure is logged and does not stop the pass."""
    now = now or timezone.now()
    if not flags.enabled(flags.Feature.WEBHOOK):
        calendar_log(logging.INFO, "calendar channel renewal skipped", error_code="calendar_disabled")
        return 0
    horizon = now + timedelta(hours=settings.CALENDAR_CHANNEL_RENEW_BEFORE_HOURS)
    with system_scope():
        due = list(
            Connection.objects.filter(status=Connection.Status.CONNECTED, sync_enabled=True)
            .filter(
                Q(channel_id="") | Q(channel_expires_at__isnull=True) | Q(channel_expires_at__lte=horizon)
            )
            .order_by("pk")
        )
    done = 0
    for conn in due:
        if flags.refusal(flags.Feature.WEBHOOK, provider_id=conn.profile_id, connection_id=conn.pk):
            continue
        try:
            if conn.channel_id and conn.channel_expires_at and conn.channel_expires_at > now:
                renew_channel(conn)
            else:
                open_channel(conn.pk)
        except (ProviderError, ConduitError) as exc:
            code = error_code_of(exc)
            calendar_log(
                logging.WARNING, "calendar channel not renewed", error_code=code, connection_id=conn.pk
            )
            continue
        except Exception as exc:  # one connection's bug must not stop the others' renewals
            log_failure(log, "calendar channel renewal failed", exc=exc, category="calendar_sync")
            continue
        done += 1
    calendar_log(logging.INFO, "calendar channels renewed", renewed=done, due=len(due))
    return done


# --- notifications -----------------------------------------------------------------------------


def mark_sync_needed(conn: Connection) -> None:
    """Flag the connection due and queue one sync once that commits, unless it is flagged
    already: a burst of notifications for one calendar is one write and one sync. A sync clears
    the flag before it reads, so a change it may have missed flags it (and queues one) again;
    `conn` is the row as the notification loaded it, so a flag seen set needs no statement."""
    if conn.sync_needed:
        return
    with system_scope():
        flipped = Connection.objects.filter(pk=conn.pk, sync_needed=False).update(
            sync_needed=True, updated_at=timezone.now()
        )
        if flipped:
            transaction.on_commit(lambda: jobs.enqueue_sync(conn.pk))


def listening(conn: Connection) -> bool:
    return conn.status == Connection.Status.CONNECTED and conn.sync_enabled


def find_channel(provider: str, channel_id: str) -> Connection | None:
    if not channel_id:
        return None
    with system_scope():
        return Connection.objects.filter(provider=provider, channel_id=channel_id).first()


def google_notification(*, channel_id: str, token: str, resource_id: str, state: str) -> tuple[int, str]:
    """What one Google channel message does: (HTTP status, outcome code). Only a message that
    names a known channel with its token and resource id changes anything."""
    conn = find_channel("google", channel_id)
    outcome = ""
    if conn is None:
        outcome, status = "unknown_channel", 401
    elif not secret_matches(token, conn.channel_secret) or resource_id != conn.channel_resource_id:
        outcome, status = "unverified", 401
    elif refused := flags.refusal(flags.Feature.WEBHOOK, provider_id=conn.profile_id, connection_id=conn.pk):
        outcome, status = refused.code, 403
    elif not listening(conn):
        outcome, status = "inactive", 200
    elif state == "sync":
        outcome, status = "sync", 200
    elif state in ("exists", "not_exists"):
        mark_sync_needed(conn)
        outcome, status = "changed", 200
    else:
        outcome, status = "unknown_state", 200
    level = logging.WARNING if status >= 400 else logging.INFO
    calendar_log(
        level,
        "google calendar notification",
        error_code=outcome if status >= 400 else "",
        outcome=outcome,
        connection_id=conn.pk if conn is not None and status != 401 else None,
        resource_state=state[:20],
    )
    return status, outcome


def microsoft_item(item: object) -> tuple[Connection | None, str]:
    """The connection a Graph notification item verifiably belongs to, else None."""
    if not isinstance(item, dict):
        return None, ""
    subscription, client_state = item.get("subscriptionId"), item.get("clientState")
    if not isinstance(subscription, str) or not isinstance(client_state, str):
        return None, ""
    conn = find_channel("microsoft", subscription)
    if conn is None or not secret_matches(client_state, conn.channel_secret):
        return None, ""
    lifecycle = item.get("lifecycleEvent")
    return conn, lifecycle if isinstance(lifecycle, str) else ""


def microsoft_lifecycle(conn: Connection, event: str) -> str:
    """What a verified Graph item does; returns the outcome code."""
    if event == "reauthorizationRequired":
        try:
            renew_channel(conn)
        except (ProviderError, ConduitError) as exc:
            code = error_code_of(exc)
            calendar_log(
                logging.WARNING, "calendar subscription not renewed", error_code=code, connection_id=conn.pk
            )
            with system_scope():  # the next renewal pass opens a new one
                Connection.objects.filter(pk=conn.pk, channel_id=conn.channel_id).update(
                    channel_expires_at=timezone.now()
                )
        mark_sync_needed(conn)  # like every lifecycle event: a cheap delta read catches up
        return "reauthorized"
    if event == "subscriptionRemoved":
        with system_scope():
            Connection.objects.filter(pk=conn.pk, channel_id=conn.channel_id).update(
                channel_id="", channel_resource_id="", channel_secret="", channel_expires_at=None
            )
        mark_sync_needed(conn)  # changes may have been missed while it was gone
        return "subscription_removed"
    mark_sync_needed(conn)
    return "missed" if event == "missed" else "changed"


def microsoft_notifications(items: list[object]) -> tuple[int, list[str]]:
    """What one Graph delivery does: (HTTP status, outcome per verified item). Unverified items
    are ignored; a delivery with none verified changes nothing (401)."""
    outcomes: list[str] = []
    verified = refused = 0
    marked: set[tuple[int, str]] = set()
    for item in items:
        conn, event = microsoft_item(item)
        if conn is None:
            continue
        verified += 1
        if no := flags.refusal(flags.Feature.WEBHOOK, provider_id=conn.profile_id, connection_id=conn.pk):
            refused += 1
            outcomes.append(no.code)
            continue
        if not listening(conn):
            outcomes.append("inactive")
            continue
        if (conn.pk, event) in marked:
            continue
        marked.add((conn.pk, event))
        outcomes.append(microsoft_lifecycle(conn, event))
    if not verified:
        status = 401
    elif refused == verified:
        status = 403
    else:
        status = 202
    calendar_log(
        logging.WARNING if status >= 400 else logging.INFO,
        "microsoft calendar notification",
        error_code="unverified" if status == 401 else ("calendar_not_allowlisted" if status == 403 else ""),
        items=len(items),
        verified=verified,
        outcomes=outcomes,
    )
    return status, outcomes
