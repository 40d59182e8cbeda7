"""Curation: which writes a stored message becomes, and what they say.

One write per (connection, message, external participant): a note, or a task where the
workspace's write policy says so for that direction and the provider has tasks (an ATS has none:
its candidates get a note instead). A provider that takes no writes (Workday) gets none planned.
The text names the subject, the participants, the time, the direction and a link back to the
message in Conduit. It never carries the body or an attachment: the planner does not read them.

Planning is database work only (no provider call), so it runs right after a message is
stored; which CRM contact the participant is gets resolved just before sending.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from conduit.models import Membership, Message, Workspace
from conduit.tenancy import workspace_scope
from integrations.models import CrmConnection
from integrations.providers import PROVIDERS, get_provider
from reconcile.models import CrmWriteLog, WriteOperation, WritePolicy

log = logging.getLogger("conduit.reconcile")
SUBJECT_MAX = 200


def idempotency_key(
    workspace_id: int, connection_id: int, message_id: int, operation: str, target: str
) -> str:
    """Deterministic: planning the same message twice yields the same key (and no new row)."""
    raw = f"{workspace_id}|{connection_id}|{message_id}|{operation}|{target.lower()}"
    return hashlib.sha256(raw.encode()).hexdigest()


def addresses(values: Iterable[str]) -> list[str]:
    """Bare, lower-cased email addresses, in order, without repeats."""
    found: list[str] = []
    for _name, addr in getaddresses([v for v in values if v]):
        addr = addr.strip().lower()
        if "@" in addr and addr not in found:
            found.append(addr)
    return found


@dataclass(frozen=True)
class Rules:
    internal_domains: frozenset[str]
    internal_addresses: frozenset[str]
    inbound_operation: str
    outbound_operation: str
    task_due_days: int

    def is_internal(self, address: str) -> bool:
        return address in self.internal_addresses or address.rsplit("@", 1)[-1] in self.internal_domains


def rules_for(workspace: Workspace) -> Rules:
    policy = WritePolicy.objects.filter(workspace=workspace).first() or WritePolicy(workspace=workspace)
    members = {
        e.lower()
        for e in Membership.objects.filter(workspace=workspace).values_list("user__email", flat=True)
        if e
    }
    domains = {d.strip().lower().lstrip("@") for d in policy.internal_domains if str(d).strip()}
    return Rules(
        internal_domains=frozenset(domains or {m.rsplit("@", 1)[-1] for m in members}),
        internal_addresses=frozenset(members),
        inbound_operation=policy.inbound_operation,
        outbound_operation=policy.outbound_operation,
        task_due_days=policy.task_due_days,
    )


@dataclass(frozen=True)
class Curated:
    direction: str
    external: list[str]
    participants: dict[str, list[str]]


def curate(message: Message, rules: Rules) -> Curated:
    sender = addresses([message.from_address])
    to, cc = addresses(message.to_addresses or []), addresses(message.cc_addresses or [])
    direction = "inbound" if sender and not rules.is_internal(sender[0]) else "outbound"
    everyone = addresses([*sender, *to, *cc])
    external = [a for a in everyone if not rules.is_internal(a)][: settings.CONDUIT_MAX_WRITES_PER_MESSAGE]
    return Curated(direction, external, {"from": sender, "to": to, "cc": cc})


def message_link(message: Message) -> str:
    return settings.CONDUIT_PUBLIC_URL + reverse("message-detail", args=[message.pk])


def summary_text(message: Message, curated: Curated, when: datetime) -> str:
    """What the CRM record says. Metadata only: never the body, never an attachment."""
    lines = [
        f"Email ({curated.direction}): {(message.subject or '(no subject)')[:SUBJECT_MAX]}",
        f"From: {', '.join(curated.participants['from']) or '(unknown)'}",
        f"To: {', '.join(curated.participants['to']) or '(none)'}",
    ]
    if curated.participants["cc"]:
        lines.append(f"Cc: {', '.join(curated.participants['cc'])}")
    lines += [f"Time: {when:%Y-%m-%d %H:%M} UTC", f"In Conduit: {message_link(message)}"]
    return "\n".join(lines)


def payload_for(
    message: Message, curated: Curated, rules: Rules, operation: str, target: str
) -> dict[str, Any]:
    when = (message.sent_at or message.received_at).astimezone(UTC)
    payload: dict[str, Any] = {
        "subject": f"Email: {(message.subject or '(no subject)')[:SUBJECT_MAX]}",
        "text": summary_text(message, curated, when),
        "occurred_at": when.isoformat(),
        "direction": curated.direction,
        "participants": curated.participants,
        "link": message_link(message),
        "contact_email": target,
    }
    if operation == WriteOperation.TASK:
        payload["due_at"] = (when + timedelta(days=rules.task_due_days)).isoformat()
    return payload


def writing_providers() -> list[str]:
    """The providers Conduit writes curated activity to (not Workday: no verified write API)."""
    return [name for name in PROVIDERS if get_provider(name).supports_writes]


def writable_connections(workspace: Workspace) -> list[CrmConnection]:
    """Connections that get planned writes: connected ones, live or in dry run, of a provider
    that takes writes."""
    return list(
        CrmConnection.objects.filter(
            workspace=workspace, status=CrmConnection.Status.CONNECTED, crm__in=writing_providers()
        )
    )


def operation_for(conn: CrmConnection, operation: str) -> str:
    """The policy's operation, or a note where the provider has no task (the ATS)."""
    if operation == WriteOperation.TASK and not get_provider(conn.crm).supports_tasks:
        return str(WriteOperation.NOTE)
    return operation


def is_dry_run(conn: CrmConnection) -> bool:
    return conn.dry_run or settings.CONDUIT_FORCE_DRY_RUN


@dataclass
class PlanResult:
    messages: int = 0
    planned: int = 0
    dry_run: int = 0
    already_planned: int = 0
    planned_ids: list[int] = field(default_factory=list)
    dry_run_ids: list[int] = field(default_factory=list)

    def add(self, other: PlanResult) -> None:
        self.messages += other.messages
        self.planned += other.planned
        self.dry_run += other.dry_run
        self.already_planned += other.already_planned
        self.planned_ids += other.planned_ids
        self.dry_run_ids += other.dry_run_ids


def plan_rows(
    messages: list[Message], connections: list[CrmConnection], rules: Rules, now: datetime
) -> list[CrmWriteLog]:
    rows: list[CrmWriteLog] = []
    for message in messages:
        curated = curate(message, rules)
        policy_operation = (
            rules.inbound_operation if curated.direction == "inbound" else rules.outbound_operation
        )
        for conn in connections:
            dry = is_dry_run(conn)
            operation = operation_for(conn, policy_operation)
            for target in curated.external:
                rows.append(
                    CrmWriteLog(
                        workspace_id=message.workspace_id,
                        connection=conn,
                        message=message,
                        provider=conn.crm,
                        operation=operation,
                        target=target,
                        idempotency_key=idempotency_key(
                            message.workspace_id, conn.pk, message.pk, operation, target
                        ),
                        payload=payload_for(message, curated, rules, operation, target),
                        status=CrmWriteLog.Status.DRY_RUN if dry else CrmWriteLog.Status.PLANNED,
                        next_retry_at=None if dry else now,
                        created_at=now,
                    )
                )
    return rows


def insert_new(rows: list[CrmWriteLog], result: PlanResult) -> list[CrmWriteLog]:
    """Insert the rows whose idempotency key is not in the ledger yet (a concurrent planner's
    win is skipped) and count them on `result` with their ids; returns the rows that were new."""
    keys = [r.idempotency_key for r in rows]
    existing = set(
        CrmWriteLog.objects.filter(idempotency_key__in=keys).values_list("idempotency_key", flat=True)
    )
    fresh = [r for r in rows if r.idempotency_key not in existing]
    CrmWriteLog.objects.bulk_create(fresh, ignore_conflicts=True)
    for pk, status in CrmWriteLog.objects.filter(
        idempotency_key__in=[r.idempotency_key for r in fresh]
    ).values_list("pk", "status"):
        (result.dry_run_ids if status == CrmWriteLog.Status.DRY_RUN else result.planned_ids).append(pk)
    result.dry_run = sum(r.status == CrmWriteLog.Status.DRY_RUN for r in fresh)
    result.planned = len(fresh) - result.dry_run
    result.already_planned = len(rows) - len(fresh)
    return fresh


def plan_messages(workspace: Workspace, message_ids: list[int], *, now: datetime | None = None) -> PlanResult:
    """Plan the writes of these messages for every connected CRM of the workspace.

    Idempotent: a key planned before is left as it is (ON CONFLICT DO NOTHING)."""
    now = now or timezone.now()
    result = PlanResult(messages=len(message_ids))
    if not message_ids:
        return result
    with workspace_scope(workspace):
        connections = writable_connections(workspace)
        if not connections:
            return result
        rules = rules_for(workspace)
        messages = list(
            Message.objects.filter(workspace=workspace, pk__in=message_ids).only(
                "pk",
                "workspace_id",
                "subject",
                "from_address",
                "to_addresses",
                "cc_addresses",
                "sent_at",
                "received_at",
            )
        )
        rows = plan_rows(messages, connections, rules, now)
        fresh = insert_new(rows, result)
    if fresh:
        log.info(
            "planned %d write(s) (%d in dry run) for %d message(s)",
            len(fresh),
            result.dry_run,
            len(messages),
            extra={"category": "reconcile"},
        )
    return result


def plan_since(workspace: Workspace, since: datetime, *, batch_size: int = 500) -> PlanResult:
    """Plan (or re-plan, idempotently) every message received since `since`."""
    total = PlanResult()
    last_id = 0
    while True:
        with workspace_scope(workspace):
            ids = list(
                Message.objects.filter(Q(workspace=workspace) & Q(received_at__gte=since) & Q(pk__gt=last_id))
                .order_by("pk")
                .values_list("pk", flat=True)[:batch_size]
            )
        if not ids:
            return total
        total.add(plan_messages(workspace, ids))
        last_id = ids[-1]
