"""Planning on ingest: after the storing transaction commits, plan the new messages' writes,
hand live ones to delivery and look up the contacts of dry-run ones (reads only), so the
Integrations page shows the exact payloads.

A planning failure never fails the ingest: the message is stored, the failure is logged, and
`plan_crm_writes --workspace --since` plans it later (planning is idempotent)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from conduit.logging import log_failure
from conduit.models import Workspace
from conduit.tenancy import system_scope
from reconcile.curation import PlanResult, plan_messages
from reconcile.dispatch import resolve_dry_run_targets
from reconcile.queue import dispatch_writes_now

log = logging.getLogger("conduit.reconcile")


def dispatch_planned(result: PlanResult) -> None:
    """Live writes are claimed at once and handed over in groups (queue.dispatch_writes_now);
    dry-run ones get their contacts looked up."""
    if result.planned_ids:
        dispatch_writes_now(result.planned_ids)
    if result.dry_run_ids:
        resolve_dry_run_targets.delay(result.dry_run_ids)


def plan_and_dispatch(workspace_id: int, message_ids: list[int]) -> None:
    try:
        with system_scope():
            workspace = Workspace.objects.get(pk=workspace_id)
        result = plan_messages(workspace, message_ids)
        dispatch_planned(result)
    except Exception as exc:  # the boundary: ingest has committed; record, and let plan_crm_writes recover
        log_failure(
            log,
            "planning CRM writes failed for %d message(s) of workspace %s; run plan_crm_writes",
            len(message_ids),
            workspace_id,
            exc=exc,
            category="reconcile",
            error_code="planning_failed",
        )


def on_messages_stored(sender: Any, *, workspace_id: int, message_ids: list[int], **kwargs: Any) -> None:
    transaction.on_commit(lambda: plan_and_dispatch(workspace_id, message_ids))
