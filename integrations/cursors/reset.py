"""Runbook "Reset sync cursors": move cursors back so the next pull reads again what changed in
the last N hours. The command twin is `manage.py reset_sync_cursor`; the runbook's SQL does the
same without the audit row."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from conduit.audit import record_audit
from conduit.models import Workspace
from conduit.services import ConduitError, workspace_by_ref
from conduit.tenancy import system_scope
from integrations.models import SyncCursor
from integrations.providers import PROVIDERS, get_provider

MAX_HOURS = 24 * 365
Actor = AbstractBaseUser | str


class InvalidReset(ConduitError):
    error_code = "invalid_cursor_reset"


def check_hours(hours: object) -> int:
    text = str(hours).strip()
    if isinstance(hours, bool) or not text.isdigit() or not 1 <= int(text) <= MAX_HOURS:
        raise InvalidReset(f"--hours must be a whole number of hours from 1 to {MAX_HOURS}, not {hours!r}.")
    return int(text)


def check_target(provider: str, object: str) -> None:
    if provider not in PROVIDERS:
        raise InvalidReset(f"Unknown provider {provider!r}; use one of: {', '.join(sorted(PROVIDERS))}.")
    if not get_provider(provider).pulls_changes:
        raise InvalidReset(
            f"{get_provider(provider).label} has no incremental pull, so no sync cursors to reset."
        )
    if object not in SyncCursor.Object.values:
        raise InvalidReset(f"Unknown object {object!r}; use one of: {', '.join(SyncCursor.Object.values)}.")


def find_workspace(ref: str) -> Workspace:
    """A workspace by id or slug."""
    found = workspace_by_ref(ref)
    if found is None:
        raise InvalidReset(f"No workspace with id or slug {ref!r}.")
    return found


def do_reset_sync_cursors(
    provider: str,
    object: str,
    hours: object,
    *,
    actor: Actor,
    workspace: Workspace | None = None,
    now: Callable[[], datetime] = timezone.now,
) -> int:
    """Set since_ts = now - hours on the matching cursors (creating none); audited per workspace
    as sync_cursor_reset. Refuses bad input and a reset that matches no cursor, changing nothing."""
    check_target(provider, object)
    hours = check_hours(hours)
    with system_scope():
        cursors = SyncCursor.objects.filter(provider=provider, object=object)
        if workspace is not None:
            cursors = cursors.filter(workspace=workspace)
        rows = list(cursors.select_for_update().values_list("pk", "workspace_id"))
        if not rows:
            where = f" in workspace {workspace.slug}" if workspace is not None else ""
            raise InvalidReset(f"No {provider} {object} sync cursor{where}; nothing was reset.")
        changed = SyncCursor.objects.filter(pk__in=[pk for pk, _ in rows]).update(
            since_ts=now() - timedelta(hours=hours)
        )
        per_workspace = Counter(workspace_id for _, workspace_id in rows)
        workspaces = Workspace.objects.in_bulk(list(per_workspace))
        for workspace_id, count in sorted(per_workspace.items()):
            record_audit(
                "sync_cursor_reset",
                actor=actor,
                workspace=workspaces[workspace_id],
                payload={"provider": provider, "object": object, "hours": hours, "cursors": count},
            )
    return changed
