"""A member's calendar grant: start the authorization, finish it into a connection (connect or
reconnect), and disconnect.

The state is the CRM flow's (connections.oauth): 32 random bytes stored only as their sha256 in
oauth_states, single use, valid CONDUIT_OAUTH_STATE_TTL_SECONDS, bound to the user and the
workspace; its `crm` column holds the calendar provider ("google" / "microsoft"), which no CRM
callback accepts and no calendar callback confuses with a CRM. Both providers get PKCE (S256).
The callback URL is GOOGLE_REDIRECT_URI / MICROSOFT_REDIRECT_URI. Nothing is stored when the
member declines or grants less than calendar access; tokens are stored encrypted; the audit
rows name the provider, the connection and the account email, never a token.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from conduit.audit import record_audit
from conduit.models import Membership, Profile, Workspace
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from integrations.calendars import flags, push
from integrations.calendars.logs import calendar_log
from integrations.calendars.tokens import context_of
from integrations.connections.oauth import (
    STATE_BYTES,
    BadState,
    CallbackFailed,
    NotConfigured,
    hash_state,
    pkce_pair,
)
from integrations.models import (
    CALENDAR_PROVIDER_CHOICES,
    ExternalCalendarConnection,
    ExternalCalendarEvent,
    OAuthState,
)
from integrations.providers import CALENDAR_PROVIDERS, get_calendar_provider
from integrations.providers.base import ExternalAccount, TokenSet
from integrations.providers.errors import Permanent, ProviderError, Transient
from integrations.providers.synclog import CallContext

Connection = ExternalCalendarConnection
RETURN_PATH = "/settings/calendar/"
ERROR_CODE_RE = re.compile(r"[a-z_]{1,40}")


class UnknownCalendar(ConduitError):
    error_code = "unknown_calendar_provider"


def label(provider: str) -> str:
    return dict(CALENDAR_PROVIDER_CHOICES)[provider]


def check_provider(provider: str) -> str:
    if provider not in CALENDAR_PROVIDERS:
        raise UnknownCalendar(f"Conduit does not connect {provider!r} calendars.")
    return provider


def redirect_uri(provider: str) -> str:
    uri: str = getattr(settings, f"{provider.upper()}_REDIRECT_URI")
    return uri


def client_configured(provider: str) -> bool:
    return bool(getattr(settings, f"{provider.upper()}_CLIENT_ID"))


def profile_of(user: User) -> Profile:
    with system_scope():
        return Profile.objects.get(user=user)


def begin_authorization(
    provider: str, *, workspace: Workspace, user: User, now: datetime | None = None
) -> str:
    """Check the switches, store a state, return the provider's consent URL."""
    check_provider(provider)
    flags.check(flags.Feature.OAUTH, provider_id=profile_of(user).pk)
    if not client_configured(provider):
        raise NotConfigured(
            f"{label(provider)} is not set up on this Conduit ({provider.upper()}_CLIENT_ID is empty); "
            "ask your administrator."
        )
    raw = secrets.token_urlsafe(STATE_BYTES)
    verifier, challenge = pkce_pair()
    try:
        url = get_calendar_provider(provider).authorize_url(
            state=raw, redirect_uri=redirect_uri(provider), code_challenge=challenge
        )
    except Permanent as exc:
        raise NotConfigured(f"{label(provider)} is not set up on this Conduit: {exc.code}.") from None
    now = now or timezone.now()
    with system_scope():
        OAuthState.objects.create(
            state_hash=hash_state(raw),
            crm=provider,
            workspace=workspace,
            user=user,
            code_verifier=verifier,
            return_path=RETURN_PATH,
            expires_at=now + timedelta(seconds=settings.CONDUIT_OAUTH_STATE_TTL_SECONDS),
        )
    calendar_log(logging.INFO, "calendar authorization started", provider=provider, workspace_id=workspace.pk)
    return url


def consume_state(provider: str, raw: str | None, now: datetime, user_id: int | None) -> OAuthState:
    """Find, check and use up a calendar state (caller is in system scope, in a transaction)."""
    again = "Start again from Settings > Calendar."
    if not raw:
        raise BadState(f"The sign-in answer carries no state. {again}")
    state = (
        OAuthState.objects.select_for_update()
        .filter(state_hash=hash_state(raw), crm__in=list(CALENDAR_PROVIDERS))
        .first()
    )
    if state is None or state.workspace_id is None or state.user_id is None:
        raise BadState(f"This sign-in link is not one Conduit issued. {again}")
    if state.crm != provider:
        raise BadState(f"This sign-in link was started for {label(state.crm)}, not {label(provider)}.")
    if state.user_id != user_id:  # a consent finished in someone else's session lands nowhere
        raise BadState(f"This calendar connection was started by another Conduit user. {again}")
    if state.used_at is not None:
        raise BadState(f"This sign-in link was already used. {again}")
    if state.expires_at <= now:
        minutes = settings.CONDUIT_OAUTH_STATE_TTL_SECONDS // 60
        raise BadState(f"This sign-in link expired (links last {minutes} minutes). {again}")
    state.used_at = now
    state.save(update_fields=["used_at"])
    return state


@dataclass
class CallbackOutcome:
    kind: str  # connected | reconnected | denied | missing_scope
    provider: str
    connection: Connection | None = None
    missing: list[str] = field(default_factory=list)


def exchange_and_identify(state: OAuthState, code: str) -> tuple[TokenSet, ExternalAccount]:
    provider = get_calendar_provider(state.crm)
    context = CallContext(workspace_id=state.workspace_id)
    name = label(state.crm)
    try:
        tokens = provider.exchange_code(
            code=code,
            redirect_uri=redirect_uri(state.crm),
            code_verifier=state.code_verifier or None,
            context=context,
        )
        account = provider.identify(tokens, context=context)
    except Transient:
        raise CallbackFailed(
            f"{name} could not be reached to finish the connection. Try again shortly."
        ) from None
    except ProviderError as exc:
        raise CallbackFailed(f"{name} did not accept the authorization ({exc.code}). Start again.") from None
    return tokens, account


def revoke_quietly(provider: str, token: str | None, context: CallContext) -> bool:
    """Revoke at the provider where it can be done; a failure never blocks what follows."""
    if not token:
        return False
    try:
        get_calendar_provider(provider).revoke(token, context=context)
    except ProviderError as exc:
        calendar_log(logging.INFO, "calendar revoke failed", error_code=exc.code, provider=provider)
        return False
    return True


def finish_authorization(
    provider: str, params: dict[str, str], *, user: User, now: datetime | None = None
) -> CallbackOutcome:
    """The callback: use up the state, then connect, reconnect, or store nothing (declined,
    calendar access not granted). Raises BadState / CallbackFailed / CalendarForbidden."""
    check_provider(provider)
    now = now or timezone.now()
    with system_scope():  # used up even when what follows fails
        state = consume_state(provider, params.get("state"), now, user.pk)
        member = Membership.objects.filter(workspace=state.workspace, user=user).exists()
    profile = profile_of(user)
    flags.check(flags.Feature.OAUTH, provider_id=profile.pk)
    if not member:
        raise BadState("You are no longer a member of the workspace this connection was started in.")
    if error := params.get("error"):
        code = error if ERROR_CODE_RE.fullmatch(error) else "error"
        calendar_log(logging.INFO, "calendar authorization declined", error_code=code, provider=provider)
        if code != "access_denied":
            raise CallbackFailed(f"{label(provider)} answered {code}; nothing was saved. Start again.")
        return CallbackOutcome("denied", provider)
    if not params.get("code"):
        raise BadState("The sign-in answer carries no authorization code. Start again.")
    tokens, account = exchange_and_identify(state, params["code"])
    granted = list(account.scopes or tokens.scopes)
    missing = get_calendar_provider(provider).missing_scopes(granted)
    if missing:
        revoke_quietly(provider, tokens.refresh_token or tokens.access_token, CallContext(state.workspace_id))
        calendar_log(logging.INFO, "calendar scope missing", error_code="missing_scope", provider=provider)
        return CallbackOutcome("missing_scope", provider, missing=missing)
    workspace = state.workspace
    assert workspace is not None
    conn, kind = do_connect_calendar(
        workspace, profile, provider, tokens, account, granted, actor=user, now=now
    )
    return CallbackOutcome(kind, provider, connection=conn)


def do_connect_calendar(
    workspace: Workspace,
    profile: Profile,
    provider: str,
    tokens: TokenSet,
    account: ExternalAccount,
    granted: list[str],
    *,
    actor: User,
    now: datetime,
) -> tuple[Connection, str]:
    """Create the member's connection, or renew the live one (reconnect), audited. A reconnect
    to another account starts over: its cursor and stored events are dropped. The push channel
    is (re)opened after the commit when push is on; failing to open it fails nothing."""
    email = account.user_email or account.key
    with system_scope():
        conn = (
            Connection.objects.select_for_update()
            .filter(workspace=workspace, profile=profile, provider=provider)
            .exclude(status=Connection.Status.DISCONNECTED)
            .first()
        )
        kind = "connected" if conn is None else "reconnected"
        dropped = 0
        if conn is None:
            conn = Connection(workspace=workspace, profile=profile, provider=provider, connected_at=now)
        same_account = kind == "reconnected" and conn.account_email.lower() == email.lower()
        if kind == "reconnected" and not same_account:
            dropped, _ = ExternalCalendarEvent.objects.filter(connection=conn).delete()
            conn.sync_cursor, conn.last_synced_at, conn.connected_at = None, None, now
        conn.access_token = tokens.access_token
        # Google may send no refresh token on a repeated consent: the account's old one still works
        conn.refresh_token = tokens.refresh_token or (conn.refresh_token if same_account else "")
        conn.token_expiry = tokens.expires_at
        conn.granted_scopes, conn.account_email = granted, email
        conn.status, conn.error_count = Connection.Status.CONNECTED, 0
        conn.last_error, conn.backoff_until = None, None
        conn.sync_needed = conn.sync_enabled = True
        conn.save()
        record_audit(
            f"calendar_{kind}",
            actor=actor,
            workspace=workspace,
            target=conn,
            payload={
                "provider": provider,
                "connection_id": conn.pk,
                "account_email": email,
                **({"events_dropped": dropped} if dropped else {}),
            },
        )
        if settings.CALENDAR_WEBHOOK_ENABLED:
            conn_id = conn.pk
            transaction.on_commit(lambda: push.open_channel_quietly(conn_id))
    calendar_log(logging.INFO, f"calendar {kind}", provider=provider, connection_id=conn.pk)
    return conn, kind


def own_connection(connection_id: int, user: User, workspace: Workspace) -> Connection | None:
    """The member's own connection in this workspace, else None (someone else's is not found)."""
    with system_scope():
        return (
            Connection.objects.select_related("workspace")
            .filter(pk=connection_id, workspace=workspace, profile__user=user)
            .first()
        )


@dataclass(frozen=True)
class Disconnected:
    revoked: bool
    events_deleted: int


def do_disconnect_calendar(conn: Connection, *, actor: User | str) -> Disconnected:
    """Stop the channel and revoke the grant (both best effort), forget the tokens and channel,
    delete the stored events (privacy), status disconnected, audited."""
    push.close_channel(conn.pk)
    with system_scope():
        conn.refresh_from_db()
    # the provider is called outside any transaction: no row waits on its answer
    revoked = revoke_quietly(conn.provider, conn.refresh_token or conn.access_token, context_of(conn))
    with system_scope():
        deleted, _ = ExternalCalendarEvent.objects.filter(connection=conn).delete()
        conn.access_token = conn.refresh_token = ""
        conn.token_expiry = None
        push.clear_channel(conn)
        conn.status, conn.sync_enabled = Connection.Status.DISCONNECTED, False
        conn.sync_needed, conn.sync_cursor = False, None
        conn.save()
        record_audit(
            "calendar_disconnected",
            actor=actor,
            workspace=conn.workspace,
            target=conn,
            payload={
                "provider": conn.provider,
                "connection_id": conn.pk,
                "account_email": conn.account_email,
                "events_deleted": deleted,
                "revoked": revoked,
            },
        )
    calendar_log(logging.INFO, "calendar disconnected", provider=conn.provider, connection_id=conn.pk)
    return Disconnected(revoked=revoked, events_deleted=deleted)
