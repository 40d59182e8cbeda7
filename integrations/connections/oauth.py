"""OAuth: start an authorization (from settings or from a marketplace install) and finish it.

A state is 32 random bytes, stored only as its sha256, single-use, valid for
CONDUIT_OAUTH_STATE_TTL_SECONDS. The callback URL is exact, from settings. Salesforce gets PKCE
(S256); the verifier is stored encrypted on the state.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from conduit.models import Workspace
from conduit.paths import safe_relative_path
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from integrations.connections import claims
from integrations.connections.lifecycle import (
    do_connect,
    do_record_missing_scopes,
    live_connection,
    revoke_quietly,
)
from integrations.models import CRM_CHOICES, CrmConnection, OAuthState, PendingInstall
from integrations.providers import PROVIDERS, get_provider
from integrations.providers.base import ExternalAccount, TokenSet
from integrations.providers.errors import InvalidInstanceUrl, Permanent, ProviderError, Transient
from integrations.providers.synclog import CallContext

STATE_BYTES = 32
ENVIRONMENTS = {"hubspot": ("login",), "salesforce": ("login", "test"), "zoho": ("login",)}


class BadState(ConduitError):
    error_code = "invalid_oauth_state"


class CallbackFailed(ConduitError):
    error_code = "oauth_callback_failed"


class NotConfigured(ConduitError):
    error_code = "provider_not_configured"


class NotOAuth(ConduitError):
    """The CRM connects with typed credentials (Odoo's API key), not through a consent page."""

    error_code = "not_oauth"


def crm_label(crm: str) -> str:
    return dict(CRM_CHOICES)[crm]


def check_crm(crm: str) -> str:
    if crm not in PROVIDERS:
        choices = ", ".join(label for _, label in CRM_CHOICES)
        raise BadState(f"Conduit does not connect to {crm!r}; choose one of {choices}.")
    return crm


def hash_state(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def redirect_uri(crm: str) -> str:
    return f"{settings.CONDUIT_PUBLIC_URL}/integrations/oauth/callback/{crm}/"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)[:96]
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def begin_authorization(
    crm: str,
    *,
    workspace: Workspace | None,
    user: User | None,
    environment: str = "login",
    return_path: str = "",
    now: datetime | None = None,
) -> str:
    """Create a state and return the provider's consent URL (no workspace: install-first)."""
    check_crm(crm)
    if not get_provider(crm).uses_oauth:
        raise NotOAuth(
            f"{crm_label(crm)} connects with an API key: an admin enters it on the Integrations page "
            "(Connect opens the form); there is no sign-in link or marketplace install."
        )
    if environment not in ENVIRONMENTS[crm]:
        raise BadState(f"{crm_label(crm)} has no {environment!r} environment; choose production or sandbox.")
    provider = get_provider(crm)
    raw = secrets.token_urlsafe(STATE_BYTES)
    verifier, challenge = pkce_pair() if provider.supports_pkce else ("", None)
    try:
        url = provider.authorize_url(
            state=raw, redirect_uri=redirect_uri(crm), code_challenge=challenge, environment=environment
        )
    except Permanent as exc:
        raise NotConfigured(f"{crm_label(crm)} is not set up on this Conduit: {exc.message}.") from None
    now = now or timezone.now()
    with system_scope():
        OAuthState.objects.create(
            state_hash=hash_state(raw),
            crm=crm,
            workspace=workspace,
            user=user,
            environment=environment,
            code_verifier=verifier,
            return_path=safe_relative_path(return_path),
            expires_at=now + timedelta(seconds=settings.CONDUIT_OAUTH_STATE_TTL_SECONDS),
        )
    return url


@dataclass
class CallbackOutcome:
    kind: str  # connected | reconnected | missing_scope | confirm_replace | pending_install | denied
    crm: str
    state: OAuthState
    connection: CrmConnection | None = None
    pending: PendingInstall | None = None
    missing: list[str] = field(default_factory=list)


def consume_state(crm: str, raw: str | None, now: datetime, user_id: int | None = None) -> OAuthState:
    """Find, check and use up the state (caller is in system scope, inside a transaction)."""
    if not raw:
        raise BadState("The sign-in answer carries no state. Start again from the Integrations page.")
    # crm__in: oauth_states also holds members' calendar states (integrations.calendars.oauth)
    state = (
        OAuthState.objects.select_for_update()
        .filter(state_hash=hash_state(raw), crm__in=list(PROVIDERS))
        .first()
    )
    if state is None:
        raise BadState("This sign-in link is not one Conduit issued. Start again from the Integrations page.")
    if state.crm != crm:
        raise BadState(f"This sign-in link was started for {crm_label(state.crm)}, not {crm_label(crm)}.")
    if state.user_id is not None and state.user_id != user_id:
        # a consent finished in someone else's session must not land in the starter's workspace
        raise BadState(
            "This connection was started by another Conduit user. Sign in as them, or start again."
        )
    if state.used_at is not None:
        raise BadState("This sign-in link was already used. Start again from the Integrations page.")
    if state.expires_at <= now:
        minutes = settings.CONDUIT_OAUTH_STATE_TTL_SECONDS // 60
        raise BadState(f"This sign-in link expired (links last {minutes} minutes). Start again.")
    state.used_at = now
    state.save(update_fields=["used_at"])
    return state


def exchange_and_identify(state: OAuthState, code: str) -> tuple[TokenSet, ExternalAccount]:
    provider = get_provider(state.crm)
    context = CallContext(workspace_id=state.workspace_id)
    label = crm_label(state.crm)
    try:
        tokens = provider.exchange_code(
            code=code,
            redirect_uri=redirect_uri(state.crm),
            code_verifier=state.code_verifier or None,
            environment=state.environment,
            context=context,
        )
        account = provider.identify(tokens, environment=state.environment, context=context)
    except InvalidInstanceUrl:
        raise CallbackFailed(
            f"{label} sent an instance address outside {label}'s own domains; nothing was saved."
        ) from None
    except Transient:
        raise CallbackFailed(
            f"{label} could not be reached to finish the connection. Try again shortly."
        ) from None
    except ProviderError as exc:
        raise CallbackFailed(f"{label} did not accept the authorization ({exc.code}). Start again.") from None
    return tokens, account


def finish_authorization(
    crm: str, params: dict[str, str], *, user_id: int | None = None, now: datetime | None = None
) -> CallbackOutcome:
    check_crm(crm)
    now = now or timezone.now()
    with system_scope():  # used up even when what follows fails
        state = consume_state(crm, params.get("state"), now, user_id)
    if params.get("error"):
        return CallbackOutcome("denied", crm, state)
    if not params.get("code"):
        raise BadState("The sign-in answer carries no authorization code. Start again.")
    locate_account(state, params)
    tokens, account = exchange_and_identify(state, params["code"])
    missing = get_provider(crm).missing_scopes(account.scopes or tokens.scopes)
    with system_scope():
        if state.workspace_id is None:
            return install_first(state, tokens, account, missing, now)
        return connect_workspace(state, tokens, account, missing, now)


def locate_account(state: OAuthState, params: dict[str, str]) -> None:
    """Where the callback says the account lives (Zoho's data centre), checked before the code is
    sent anywhere and kept on the state: the exchange, a held account switch and the stored
    connection all use it."""
    label = crm_label(state.crm)
    try:
        environment = get_provider(state.crm).callback_environment(params, state.environment)
    except InvalidInstanceUrl:
        raise CallbackFailed(
            f"{label} named a server outside {label}'s own domains; nothing was sent to it or saved."
        ) from None
    if environment != state.environment:
        state.environment = environment
        with system_scope():
            state.save(update_fields=["environment"])


def connect_workspace(
    state: OAuthState, tokens: TokenSet, account: ExternalAccount, missing: list[str], now: datetime
) -> CallbackOutcome:
    workspace = state.workspace
    assert workspace is not None
    existing = live_connection(workspace, state.crm)
    actor = state.user
    if missing:
        revoke_quietly(state.crm, tokens.refresh_token or tokens.access_token, environment=state.environment)
        healthy = existing is not None and existing.status == CrmConnection.Status.CONNECTED
        other_account = existing is not None and existing.external_account_key not in ("", account.key)
        if healthy or other_account:  # a short grant never replaces what works or another account
            return CallbackOutcome("missing_scope", state.crm, state, connection=existing, missing=missing)
        conn = do_record_missing_scopes(
            workspace,
            state.crm,
            account,
            missing,
            environment=state.environment,
            actor=actor,
            existing=existing,
        )
        return CallbackOutcome("missing_scope", state.crm, state, connection=conn, missing=missing)
    if existing and existing.external_account_key and existing.external_account_key != account.key:
        hold_for_confirmation(state, tokens, account)
        return CallbackOutcome("confirm_replace", state.crm, state, connection=existing)
    conn = do_connect(
        workspace,
        state.crm,
        tokens,
        account,
        environment=state.environment,
        actor=actor,
        now=now,
        existing=existing,
    )
    return CallbackOutcome("reconnected" if existing else "connected", state.crm, state, connection=conn)


def install_first(
    state: OAuthState, tokens: TokenSet, account: ExternalAccount, missing: list[str], now: datetime
) -> CallbackOutcome:
    if missing:
        revoke_quietly(state.crm, tokens.refresh_token or tokens.access_token, environment=state.environment)
        return CallbackOutcome("missing_scope", state.crm, state, missing=missing)
    pending = claims.upsert_pending_install(
        state.crm, tokens, account, environment=state.environment, now=now
    )
    return CallbackOutcome(
        "pending_install", state.crm, state, connection=pending.connection, pending=pending
    )


# --- reconnecting to a different external account waits for the admin's yes ------------------


def hold_for_confirmation(state: OAuthState, tokens: TokenSet, account: ExternalAccount) -> None:
    state.pending_account_json = {
        "key": account.key,
        "details": account.details,
        "scopes": list(account.scopes or tokens.scopes),
        "user_email": account.user_email,
    }
    state.pending_tokens = json.dumps(
        {
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "expires_at": tokens.expires_at.isoformat() if tokens.expires_at else None,
            "instance_url": tokens.instance_url,
        }
    )
    state.save(update_fields=["pending_account_json", "pending_tokens"])


def held_grant(state: OAuthState) -> tuple[TokenSet, ExternalAccount]:
    raw: dict[str, Any] = json.loads(state.pending_tokens)
    expires = datetime.fromisoformat(raw["expires_at"]) if raw.get("expires_at") else None
    tokens = TokenSet(
        access_token=raw["access_token"],
        refresh_token=raw.get("refresh_token"),
        expires_at=expires,
        instance_url=raw.get("instance_url") or "",
    )
    held = state.pending_account_json
    account = ExternalAccount(
        key=held["key"],
        details=held["details"],
        scopes=tuple(held["scopes"]),
        user_email=held.get("user_email", ""),
    )
    return tokens, account


def decide_replacement(
    state_id: int, *, workspace: Workspace, user: User, accept: bool, now: datetime | None = None
) -> CrmConnection | None:
    """The admin confirms (or refuses) switching the connection to the newly authorized account."""
    now = now or timezone.now()
    with system_scope():
        state = (
            OAuthState.objects.select_for_update().filter(pk=state_id, workspace=workspace, user=user).first()
        )
        if state is None or not state.pending_tokens:
            raise BadState(
                "There is no account switch waiting for your answer. Start again from Integrations."
            )
        tokens, account = held_grant(state)
        state.pending_tokens = ""
        state.pending_account_json = {}
        state.save(update_fields=["pending_tokens", "pending_account_json"])
        too_late = state.expires_at + timedelta(seconds=settings.CONDUIT_OAUTH_STATE_TTL_SECONDS) <= now
        conn = None
        if not accept or too_late:
            revoke_quietly(
                state.crm, tokens.refresh_token or tokens.access_token, environment=state.environment
            )
        else:
            conn = do_connect(
                workspace,
                state.crm,
                tokens,
                account,
                environment=state.environment,
                actor=user,
                now=now,
                existing=live_connection(workspace, state.crm),
            )
    if too_late:  # raised after the block, so the held grant stays cleared and revoked
        raise BadState("This account switch waited too long and was discarded. Start the connection again.")
    return conn
