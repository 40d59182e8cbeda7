"""The Pause sync card of the Integrations page (runbook 001, section 3: "Settings → Integrations →
Pause Sync"): every pause holding this workspace's writes, who set it, since when and why, and the
form a workspace admin pauses the workspace with. Plain values only (templates run no queries);
pausing and resuming go through integrations.connections.pauses, as operators' pauses do."""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.utils import timezone
from django.utils.timesince import timesince

from conduit.models import Workspace
from integrations.connections.pauses import ActivePauses, active_pauses, pausing_users, set_by_workspace
from integrations.models import CRM_CHOICES, CrmConnection, SyncPause

REASON_MAX = SyncPause._meta.get_field("reason").max_length or 500
DEFAULT_REASON = "No reason given (paused on the Integrations page)"
OPERATORS = "Conduit's operators"
LABELS = dict(CRM_CHOICES)


class PauseForm(forms.Form):
    reason = forms.CharField(
        label="Reason (optional)",
        required=False,
        max_length=REASON_MAX,
        error_messages={
            "max_length": f"Keep the reason to {REASON_MAX} characters or fewer.",
            "null_characters_not_allowed": "The reason may not contain control characters.",
        },
        widget=forms.TextInput(
            attrs={"maxlength": str(REASON_MAX), "placeholder": "e.g. CRM data migration this weekend"}
        ),
    )

    def clean_reason(self) -> str:
        reason: str = self.cleaned_data["reason"]
        if any(unicodedata.category(ch) == "Cc" for ch in reason):
            raise forms.ValidationError("The reason may not contain control characters.")
        return reason

    def pause_reason(self) -> str:
        return self.cleaned_data["reason"] or DEFAULT_REASON


def holding(workspace: Workspace, connections: list[CrmConnection], active: ActivePauses) -> list[SyncPause]:
    """The pauses that hold some write of this workspace, broadest first."""
    found = [
        active.everything,
        *(active.providers.get(crm) for crm in sorted({c.crm for c in connections})),
        active.workspaces.get(workspace.pk),
        *(active.connections.get(c.pk) for c in connections),
    ]
    return [p for p in found if p is not None]


def still_paused(workspace: Workspace) -> bool:
    """Whether any pause still holds a write of the workspace's live connections."""
    live = list(CrmConnection.objects.filter(workspace=workspace).exclude(status="disconnected"))
    return bool(holding(workspace, live, active_pauses()))


def applies_to(pause: SyncPause, connections: list[CrmConnection]) -> str:
    if pause.scope == SyncPause.Scope.GLOBAL:
        return "Every CRM, for all of Conduit"
    if pause.scope == SyncPause.Scope.PROVIDER:
        return f"{LABELS.get(pause.provider, pause.provider)}, for all of Conduit"
    if pause.scope == SyncPause.Scope.WORKSPACE:
        return "This workspace, every CRM"
    crm = next((c.crm for c in connections if c.pk == pause.connection_id), "")
    return f"This workspace's {LABELS.get(crm, crm)} connection"


def ago(when: datetime) -> str:
    return "just now" if timezone.now() - when < timedelta(minutes=1) else f"{timesince(when)} ago"


def what_is_held(pauses: list[SyncPause], connections: list[CrmConnection]) -> str:
    """What the pauses hold, for the banner: the workspace's CRMs, or the ones named."""
    if any(p.scope in (SyncPause.Scope.GLOBAL, SyncPause.Scope.WORKSPACE) for p in pauses):
        return "your CRMs"
    crms = {p.provider for p in pauses if p.provider}
    crms |= {c.crm for p in pauses for c in connections if c.pk == p.connection_id}
    names = [LABELS.get(crm, crm) for crm, _ in CRM_CHOICES if crm in crms]
    return " or ".join(names)


def entry_for(pause: SyncPause, connections: list[CrmConnection], user: User | None) -> dict[str, Any]:
    """One pause of the card; `user`: who set it (pausing_users), if a user still there."""
    own = set_by_workspace(pause, user)
    return {
        "id": pause.pk,
        "scope": pause.scope,
        "applies_to": applies_to(pause, connections),
        "own": own,
        "by": (user.email or user.username) if own and user is not None else OPERATORS,
        "since": pause.paused_at,
        "ago": ago(pause.paused_at),
        "reason": pause.reason,
    }


def sync_card(
    workspace: Workspace,
    connections: list[CrmConnection],
    *,
    can_admin: bool,
    form: PauseForm | None = None,
    active: ActivePauses | None = None,
) -> dict[str, Any]:
    """The card's values: the pauses in force for this workspace and what an admin may do."""
    active = active if active is not None else active_pauses()
    held = holding(workspace, connections, active)
    users = pausing_users(held)
    pauses = [entry_for(p, connections, users.get(p.pk)) for p in held]
    workspace_pause = next((p for p in pauses if p["scope"] == SyncPause.Scope.WORKSPACE), None)
    return {
        "paused": bool(pauses),
        "pauses": pauses,
        "holds": what_is_held(held, connections),
        "by_id": {p["id"]: p for p in pauses},
        "workspace_pause": workspace_pause,
        "operators_only": bool(pauses) and not any(p["own"] for p in pauses),
        "can_pause": can_admin and workspace_pause is None,
        "can_resume": can_admin and workspace_pause is not None and workspace_pause["own"],
        "form": form or PauseForm(),
    }


def card_note(pause: SyncPause | None, by_id: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """What a connection's card says about the pause holding it (None: not paused)."""
    if pause is None:
        return None
    return by_id.get(pause.pk) or {"own": False, "by": OPERATORS, "reason": pause.reason}
