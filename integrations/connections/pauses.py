"""Pause switches (kill switches) for CRM sync: global, provider, workspace, connection.

A pause holds writes back without touching them: they stay queued with their retry_count and
next_retry_at, and resume where they were. Every pause and resume is audited.

Operators pause any scope (admin, API, command). A workspace's own admins pause and resume only
their workspace's scope, from the Integrations page (do_resume_own_sync): a pause they set is
theirs to lift; a pause Conduit's operators set is not, whatever its scope (set_by_workspace)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q

from conduit.audit import actor_label, record_audit
from conduit.models import Membership, Workspace
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from integrations.models import CRM_CHOICES, CrmConnection, SyncPause

Actor = AbstractBaseUser | str


class InvalidPause(ConduitError):
    error_code = "invalid_pause"


class PauseNotYours(ConduitError):
    """The workspace's pause was set by Conduit's operators: only they lift it."""

    error_code = "pause_not_yours"


@dataclass(frozen=True)
class PauseTarget:
    """What a pause applies to; exactly one of the four scopes."""

    scope: str
    provider: str = ""
    workspace: Workspace | None = None
    connection: CrmConnection | None = None

    def lookup(self) -> Q:
        return {
            SyncPause.Scope.GLOBAL: Q(scope="global"),
            SyncPause.Scope.PROVIDER: Q(scope="provider", provider=self.provider),
            SyncPause.Scope.WORKSPACE: Q(scope="workspace", workspace=self.workspace),
            SyncPause.Scope.CONNECTION: Q(scope="connection", connection=self.connection),
        }[SyncPause.Scope(self.scope)]

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {"scope": self.scope}
        if self.provider:
            described["provider"] = self.provider
        if self.workspace is not None:
            described["workspace_id"] = self.workspace.pk
        if self.connection is not None:
            described["connection_id"] = self.connection.pk
        return described


def target_for(
    *,
    provider: str = "",
    workspace: Workspace | None = None,
    connection: CrmConnection | None = None,
    everything: bool = False,
) -> PauseTarget:
    """The one scope named by the arguments; refuses none or several."""
    named = sum([bool(provider), workspace is not None, connection is not None, everything])
    if named != 1:
        raise InvalidPause("Name exactly one of: everything, a provider, a workspace or a connection.")
    if provider and provider not in dict(CRM_CHOICES):
        known = ", ".join(name for name, _ in CRM_CHOICES)
        raise InvalidPause(f"Unknown provider {provider!r}; use one of: {known}.")
    if connection is not None:
        return PauseTarget("connection", connection=connection)
    if workspace is not None:
        return PauseTarget("workspace", workspace=workspace)
    if provider:
        return PauseTarget("provider", provider=provider)
    return PauseTarget("global")


def target_of(pause: SyncPause) -> PauseTarget:
    return PauseTarget(
        pause.scope, provider=pause.provider, workspace=pause.workspace, connection=pause.connection
    )


def do_pause_sync(target: PauseTarget, *, reason: str, actor: Actor) -> tuple[SyncPause, bool]:
    """Pause the scope; returns (pause, created). Pausing a paused scope changes nothing."""
    reason = reason.strip()
    if not reason:
        raise InvalidPause("Give a reason for the pause; operators and customers will read it.")
    with system_scope():
        existing = SyncPause.objects.filter(target.lookup()).first()
        if existing is not None:
            return existing, False
        workspace = target.workspace or (target.connection.workspace if target.connection else None)
        try:
            with transaction.atomic():  # a savepoint: a concurrent pause must not break the outer block
                pause = SyncPause.objects.create(
                    scope=target.scope,
                    provider=target.provider,
                    workspace=workspace,
                    connection=target.connection,
                    reason=reason[:500],
                    actor=actor_label(actor),
                )
        except IntegrityError:  # paused concurrently by someone else
            return SyncPause.objects.get(target.lookup()), False
        record_audit(
            "crm_sync_paused",
            actor=actor,
            workspace=workspace,
            target=pause,
            payload={**target.describe(), "reason": pause.reason},
        )
    return pause, True


def do_resume_sync(target: PauseTarget, *, actor: Actor) -> bool:
    """Lift the pause on the scope; returns whether one was lifted."""
    with system_scope():
        pause = SyncPause.objects.select_for_update().filter(target.lookup()).first()
        if pause is None:
            return False
        paused_for = pause.reason
        workspace = pause.workspace
        record_audit(
            "crm_sync_resumed",
            actor=actor,
            workspace=workspace,
            target=pause,
            payload={**target.describe(), "paused_for": paused_for},
        )
        pause.delete()
    return True


def pausing_user_id(pause: SyncPause) -> int | None:
    """The id in the pause's actor `user:<id>`; None when a command, a job or a token set it."""
    kind, _, ref = pause.actor.partition(":")
    return int(ref) if kind == "user" and ref.isascii() and ref.isdigit() else None


def pausing_user(pause: SyncPause) -> User | None:
    """The user who set the pause (actor `user:<id>`), if it was a user and still exists."""
    if (user_id := pausing_user_id(pause)) is None:
        return None
    with system_scope():
        return User.objects.filter(pk=user_id).first()


def pausing_users(pauses: Iterable[SyncPause]) -> dict[int, User]:
    """pausing_user of each pause, in one query: {pause id: user} (absent: none, or deleted)."""
    wanted = {pause.pk: user_id for pause in pauses if (user_id := pausing_user_id(pause)) is not None}
    if not wanted:
        return {}
    with system_scope():
        users = User.objects.in_bulk(set(wanted.values()))
    return {pause_id: users[user_id] for pause_id, user_id in wanted.items() if user_id in users}


def set_by_workspace(pause: SyncPause, user: User | None = None) -> bool:
    """A workspace-scope pause set by one of the workspace's own people: a member of it, or a
    user who is not staff (an admin since removed). Operators' pauses (staff users, commands,
    jobs) are not, nor is any pause of another scope. `user`: pausing_user(pause), if known."""
    if pause.scope != SyncPause.Scope.WORKSPACE or pause.workspace_id is None:
        return False
    user = user if user is not None else pausing_user(pause)
    if user is None:
        return False
    if not user.is_staff:
        return True
    with system_scope():
        return Membership.objects.filter(workspace_id=pause.workspace_id, user=user).exists()


def do_resume_own_sync(workspace: Workspace, *, actor: Actor) -> bool:
    """A workspace admin lifts the workspace's pause; returns whether one was lifted. Refuses
    (PauseNotYours, nothing changed) a pause of the workspace that Conduit's operators set."""
    target = target_for(workspace=workspace)
    with system_scope():
        pause = SyncPause.objects.select_for_update().filter(target.lookup()).first()
        if pause is None:
            return False
        if not set_by_workspace(pause):
            raise PauseNotYours(
                f"Conduit's operators paused sync for this workspace ({pause.reason}); only they can "
                "lift that pause. Contact Conduit support."
            )
        return do_resume_sync(target, actor=actor)


@dataclass(frozen=True)
class ActivePauses:
    """Every pause in force, read once (the queue and delivery check many rows against it)."""

    everything: SyncPause | None
    providers: dict[str, SyncPause]
    workspaces: dict[int, SyncPause]
    connections: dict[int, SyncPause]

    def for_connection(self, conn: CrmConnection) -> SyncPause | None:
        return (
            self.everything
            or self.providers.get(conn.crm)
            or (self.workspaces.get(conn.workspace_id) if conn.workspace_id else None)
            or self.connections.get(conn.pk)
        )


def active_pauses() -> ActivePauses:
    with system_scope():
        rows = list(SyncPause.objects.all())
    return ActivePauses(
        everything=next((p for p in rows if p.scope == "global"), None),
        providers={p.provider: p for p in rows if p.scope == "provider"},
        workspaces={p.workspace_id: p for p in rows if p.scope == "workspace" and p.workspace_id},
        connections={p.connection_id: p for p in rows if p.scope == "connection" and p.connection_id},
    )


def pause_for(conn: CrmConnection) -> SyncPause | None:
    return active_pauses().for_connection(conn)


def pause_covers(connection: str) -> Exists:
    """What pause_for answers, as an expression of the outer query: a pause covers the connection
    at the path `connection` ("connection" from a write). It lets delivery fetch the write and
    learn whether it is held back in one statement, read at the same moment as before."""
    ref = f"{connection}__"
    return Exists(
        SyncPause.objects.filter(
            Q(scope=SyncPause.Scope.GLOBAL)
            | Q(scope=SyncPause.Scope.PROVIDER, provider=OuterRef(f"{ref}crm"))
            | Q(scope=SyncPause.Scope.WORKSPACE, workspace_id=OuterRef(f"{ref}workspace_id"))
            | Q(scope=SyncPause.Scope.CONNECTION, connection_id=OuterRef(f"{ref}id"))
        )
    )
