"""Per-task context that logs read without touching the database (no model imports here)."""

from contextvars import ContextVar

# The workspace a block of code acts for (set by conduit.tenancy scopes); fills log `workspace_id`.
current_workspace_id: ContextVar[int | None] = ContextVar("current_workspace_id", default=None)
