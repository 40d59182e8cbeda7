"""Workspace scoping for Postgres row-level security.

Every workspace-owned table has a policy (conduit.rls) that admits a row only when
`conduit.workspace_id` names its workspace or `conduit.system` is 'on'. These context
managers set those settings with set_config(..., true), i.e. for the current transaction
only, so nothing leaks to the next transaction or to a pooled connection's next user. A nested
scope restores the outer settings on exit. Each costs at most one statement to enter, none to
leave when it began the transaction, and none at all when its settings are already in force.
On SQLite they are plain transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from typing import cast

from django.db import connection, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from conduit.context import current_workspace_id
from conduit.models import STAFF_TOKEN_PREFIX, ApiToken, Membership, StaffToken, Workspace, hash_token

WORKSPACE_GUC = "conduit.workspace_id"
SYSTEM_GUC = "conduit.system"


def _uses_rls() -> bool:
    return connection.vendor == "postgresql"


SCOPE_GUCS = (WORKSPACE_GUC, SYSTEM_GUC)
_READ_SCOPE = "SELECT " + ", ".join(f"coalesce(current_setting('{g}', true), '')" for g in SCOPE_GUCS)
_WRITE_SCOPE = "SELECT " + ", ".join(f"set_config('{g}', %s, true)" for g in SCOPE_GUCS)
# read the settings in force, then set new ones, in one round trip (the CTE is computed first)
_SWAP_SCOPE = (
    "WITH before AS MATERIALIZED ("  # noqa: S608 - built from the constant setting names only
    + _READ_SCOPE
    + ") SELECT before.*, "
    + ", ".join(f"set_config('{g}', %s, true)" for g in SCOPE_GUCS)
    + " FROM before"
)
# The scope settings in force on this thread's connection, while one of our scopes runs and so
# knows them; None when unknown (outside our scopes, or inside a transaction someone else began).
_KNOWN = "conduit_scope_in_force"
Scope = tuple[str, ...]


def _read_scope() -> dict[str, str]:
    with connection.cursor() as cur:
        cur.execute(_READ_SCOPE)
        return dict(zip(SCOPE_GUCS, cur.fetchone(), strict=True))


def _write(scope: Scope) -> None:
    with connection.cursor() as cur:
        cur.execute(_WRITE_SCOPE, list(scope))


def _swap(scope: Scope) -> Scope:
    with connection.cursor() as cur:
        cur.execute(_SWAP_SCOPE, list(scope))
        return tuple(cur.fetchone()[: len(SCOPE_GUCS)])


@contextmanager
def _scoped(values: dict[str, str]) -> Iterator[None]:
    workspace_id = values.get(WORKSPACE_GUC) or None
    reset = current_workspace_id.set(int(workspace_id) if workspace_id else None)
    try:
        with _transaction_with(tuple(values.get(g, "") for g in SCOPE_GUCS)):
            yield
    finally:
        current_workspace_id.reset(reset)


@contextmanager
def _transaction_with(wanted: Scope) -> Iterator[None]:
    """At most one statement to enter; none to leave a scope that began the transaction (its
    settings end with it), none at all when `wanted` is already in force, one to restore the
    outer settings otherwise."""
    outermost = not connection.in_atomic_block
    known_before: Scope | None = None if outermost else getattr(connection, _KNOWN, None)
    with transaction.atomic():
        if not _uses_rls():
            yield
            return
        if outermost:
            previous: Scope | None = ("",) * len(SCOPE_GUCS)  # a new transaction starts with none
        else:
            previous = known_before
        if previous != wanted:
            if previous is None:
                previous = _swap(wanted)
            else:
                _write(wanted)
        setattr(connection, _KNOWN, wanted)
        try:
            yield
            # Only on success: on error the atomic block's rollback undoes set_config itself.
            if not outermost and previous != wanted and not connection.needs_rollback:
                _write(previous)
        finally:
            setattr(connection, _KNOWN, known_before)


def workspace_scope(workspace: Workspace | int) -> AbstractContextManager[None]:
    """Run the block in one transaction that sees only this workspace's rows."""
    workspace_id = workspace if isinstance(workspace, int) else workspace.pk
    return _scoped({WORKSPACE_GUC: str(workspace_id), SYSTEM_GUC: ""})


def system_scope() -> AbstractContextManager[None]:
    """Run the block in one transaction that sees every workspace (workers, admin, commands)."""
    return _scoped({SYSTEM_GUC: "on", WORKSPACE_GUC: ""})


def current_scope() -> dict[str, str]:
    """The scope settings of the current transaction (for tests and diagnostics)."""
    return _read_scope() if _uses_rls() else {}


SESSION_WORKSPACE_KEY = "workspace_id"
# /crm/ serves runbook 003's operator paths as the playbook writes them (integrations.api.playbook)
API_PREFIXES = ("/api/", "/crm/")
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ScopedRequest(HttpRequest):
    """An HttpRequest after WorkspaceScopeMiddleware: who acts, for which workspace."""

    workspace: Workspace | None
    membership: Membership | None
    memberships: list[Membership]
    api_token: ApiToken | None
    staff_token: StaffToken | None


def workspace_of(request: HttpRequest) -> Workspace:
    """The request's workspace; views behind workspace_required always have one."""
    workspace = getattr(request, "workspace", None)
    if workspace is None:
        raise PermissionError("request has no workspace scope")
    return workspace


def bearer_token(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    return None


def resolve_token(raw: str) -> ApiToken | None:
    """Look up a live API token by its hash (system scope: the workspace is not known yet)."""
    with system_scope():
        token = (
            ApiToken.objects.select_related("workspace")
            .filter(token_hash=hash_token(raw), revoked_at__isnull=True)
            .first()
        )
        if token is not None:
            # At most one write a minute per token, not one per API call.
            now = timezone.now()
            ApiToken.objects.filter(pk=token.pk).filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
            ).update(last_used_at=now)
    return token


def resolve_staff_token(raw: str) -> StaffToken | None:
    """A live operator token whose user is still active staff (system scope: no workspace)."""
    with system_scope():
        token = (
            StaffToken.objects.select_related("user")
            .filter(
                token_hash=hash_token(raw), revoked_at__isnull=True, user__is_staff=True, user__is_active=True
            )
            .first()
        )
        if token is not None:
            now = timezone.now()
            StaffToken.objects.filter(pk=token.pk).filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
            ).update(last_used_at=now)
    return token


def memberships_of(user_id: int) -> list[Membership]:
    with system_scope():
        return list(
            Membership.objects.select_related("workspace").filter(user_id=user_id).order_by("workspace__name")
        )


def choose_membership(memberships: list[Membership], wanted: object) -> Membership | None:
    """The current workspace: the one kept in the session, else the first."""
    for membership in memberships:
        if membership.workspace_id == wanted:
            return membership
    return memberships[0] if memberships else None


class WorkspaceScopeMiddleware:
    """Customer requests run inside their workspace's scope; admin runs in system scope.

    Sets request.workspace, request.membership, request.api_token and request.staff_token.
    Pages are scoped by the signed-in user's membership only; an API token counts only under
    /api/ (and /crm/), so a token can never open the HTML pages of its workspace. A request that ends in a
    5xx is rolled back.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        scoped = cast(ScopedRequest, request)
        scoped.workspace, scoped.membership, scoped.api_token = None, None, None
        scoped.staff_token = None
        scoped.memberships = []
        if request.path_info.startswith("/admin/"):
            return self._respond(request, system_scope())
        if request.path_info.startswith(API_PREFIXES) and (raw := bearer_token(request)):
            if raw.startswith(STAFF_TOKEN_PREFIX):
                # an operator token acts for no workspace: operator views open system scope themselves
                scoped.staff_token = resolve_staff_token(raw)
            elif (token := resolve_token(raw)) is not None:
                scoped.api_token, scoped.workspace = token, token.workspace
        elif request.user.is_authenticated:
            scoped.memberships = memberships_of(request.user.pk)
            if membership := choose_membership(
                scoped.memberships, request.session.get(SESSION_WORKSPACE_KEY)
            ):
                scoped.membership, scoped.workspace = membership, membership.workspace
        if scoped.workspace is None:
            return self.get_response(request)
        return self._respond(request, workspace_scope(scoped.workspace))

    def _respond(self, request: HttpRequest, scope: AbstractContextManager[None]) -> HttpResponse:
        with scope:
            response = self.get_response(request)
            if response.status_code >= 500:
                # Django already turned the exception into a response; undo the writes.
                transaction.set_rollback(True)
        return response
