"""A workspace's write settings (crm_write_policies), as its admins edit them on Settings →
Integrations → Write settings: note or task per direction, the internal domains, and when a task
is due. Parsing what a user typed, and the one audited action that saves it. The planner
(curation.rules_for) reads the saved policy for every write it plans next."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction

from conduit.audit import record_audit
from conduit.models import Workspace
from conduit.services import ConduitError
from conduit.tenancy import workspace_scope
from reconcile.curation import rules_for
from reconcile.models import WriteOperation, WritePolicy

MAX_DOMAINS = 50
MAX_DOMAINS_TEXT = 5000
MIN_DUE_DAYS, MAX_DUE_DAYS = 0, 30
MAX_ERRORS_SHOWN = 10
SEPARATORS = re.compile(r"[,;\s]+")
LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DOMAIN = re.compile(rf"^{LABEL}(\.{LABEL})*\.([a-z]{{2,63}}|xn--[a-z0-9-]{{1,59}})$")


class DomainsInvalid(ValueError):
    """One sentence per bad entry (at most MAX_ERRORS_SHOWN, then a count of the rest)."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__(" ".join(messages))
        self.messages = messages


def domain_error(entry: str) -> str | None:
    """Why `entry` (lower-cased) is not a domain Conduit can match, or None when it is one."""
    if "@" in entry:
        domain = entry.rsplit("@", 1)[-1] or "example.com"
        return f"“{entry}”: enter the domain only, without “@” ({domain})."
    if not entry.isascii():
        return f"“{entry}”: write an international domain in its xn-- form (as email addresses carry it)."
    if len(entry) > 253:
        return f"“{entry[:40]}…” is longer than a domain can be (253 characters)."
    if not DOMAIN.match(entry):
        return f"“{entry}” is not a domain (like example.com: letters, digits, hyphens and dots)."
    return None


def parse_domains(text: str) -> list[str]:
    """Comma-, semicolon- or newline-separated domains -> lower-case, deduplicated, in order.
    Raises DomainsInvalid naming each bad entry."""
    entries = [e.lower().rstrip(".") for e in SEPARATORS.split(text.strip()) if e]
    domains = list(dict.fromkeys(entries))
    bad = [msg for e in domains if (msg := domain_error(e))]
    if len(bad) > MAX_ERRORS_SHOWN:
        bad = [
            *bad[:MAX_ERRORS_SHOWN],
            f"…and {len(bad) - MAX_ERRORS_SHOWN} more entries that are not domains.",
        ]
    if not bad and len(domains) > MAX_DOMAINS:
        bad = [f"List at most {MAX_DOMAINS} domains (you entered {len(domains)})."]
    if bad:
        raise DomainsInvalid(bad)
    return domains


@dataclass(frozen=True)
class WriteSettings:
    inbound_operation: str
    outbound_operation: str
    internal_domains: list[str]
    task_due_days: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def settings_of(policy: WritePolicy) -> WriteSettings:
    return WriteSettings(
        inbound_operation=policy.inbound_operation,
        outbound_operation=policy.outbound_operation,
        internal_domains=list(policy.internal_domains or []),
        task_due_days=policy.task_due_days,
    )


def policy_for(workspace: Workspace) -> WritePolicy:
    """The saved policy, or an unsaved one with the defaults."""
    with workspace_scope(workspace):
        return WritePolicy.objects.filter(workspace=workspace).first() or WritePolicy(workspace=workspace)


def domains_in_use(workspace: Workspace) -> list[str]:
    """The domains the planner treats as internal now (the members' when none are saved)."""
    with workspace_scope(workspace):
        return sorted(rules_for(workspace).internal_domains)


class WriteSettingsConflict(ConduitError):
    error_code = "write_policy_conflict"


def do_update_write_policy(
    workspace: Workspace, after: WriteSettings, *, actor: AbstractBaseUser
) -> list[str]:
    """Save the settings and audit `write_policy_updated` (each changed field's old and new value)
    in one transaction; returns the changed fields (none: nothing written, no row created)."""
    if {after.inbound_operation, after.outbound_operation} - set(WriteOperation.values):
        raise ValueError("operations are create_note or create_task")  # the form offers only these
    with workspace_scope(workspace):
        saved = WritePolicy.objects.select_for_update().filter(workspace=workspace).first()
        policy = saved or WritePolicy(workspace=workspace)
        before = settings_of(policy).as_dict()
        changed = {k: {"old": before[k], "new": v} for k, v in after.as_dict().items() if before[k] != v}
        if not changed:
            return []
        for field, value in after.as_dict().items():
            setattr(policy, field, value)
        try:
            with transaction.atomic():  # a savepoint: another admin's first save may win the insert
                policy.save()
        except IntegrityError:
            raise WriteSettingsConflict(
                "Someone saved the write settings at the same moment. Reload the page and try again."
            ) from None
        record_audit(
            "write_policy_updated",
            actor=actor,
            workspace=workspace,
            target=policy,
            payload={"changed": changed},
        )
    return list(changed)
