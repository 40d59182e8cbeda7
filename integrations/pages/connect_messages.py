"""What the Integrations page says after a connect, reconnect, account switch or claim: the
outcome as it is (a new connection starts in dry run; a reconnect keeps the connection live or
in dry run, as it was), and a warning when another Conduit workspace already connects the same
CRM account. The other workspace is never named to the customer; operators see it in the admin.
"""

from __future__ import annotations

from conduit.tenancy import system_scope
from integrations.connections.lifecycle import workspaces_sharing_account
from integrations.models import CrmConnection

NEW = (
    "New connections start in dry-run mode: Conduit plans the writes and shows them on this page, "
    "and sends nothing until you choose Go live."
)
STILL_DRY_RUN = "It is still in dry run: Conduit sends nothing until you choose Go live."
STILL_LIVE = "It is still live: Conduit goes on writing to it."


def mode_sentence(conn: CrmConnection, *, new: bool) -> str:
    """Dry run or live after the change, in one sentence."""
    if new:
        return NEW
    return STILL_DRY_RUN if conn.dry_run else STILL_LIVE


def connected(label: str, conn: CrmConnection, *, reconnected: bool) -> str:
    """After the OAuth callback connected a new connection or reconnected the same account."""
    if reconnected:
        return f"{label} reconnected to {conn.account_label}. {mode_sentence(conn, new=False)}"
    return f"{label} connected to {conn.account_label}. {mode_sentence(conn, new=True)}"


def switched(label: str, conn: CrmConnection, previous: str) -> str:
    """After the admin confirmed replacing the connected account with another one."""
    was = f" instead of {previous}" if previous and previous != conn.account_label else ""
    return (
        f"{label} now connected to {conn.account_label}{was}: Conduit writes to this account from now "
        f"on. {mode_sentence(conn, new=False)}"
    )


def shared_account_warning(label: str, conn: CrmConnection) -> str:
    """A warning when other workspaces hold a live connection to this CRM account, else ""."""
    with system_scope():  # the other workspaces' rows are out of the customer's scope
        others = workspaces_sharing_account(conn)
    if not others:
        return ""
    who = "Another Conduit workspace" if others == 1 else f"{others} other Conduit workspaces"
    verb = "connects" if others == 1 else "connect"
    return (
        f"{who} already {verb} this {label} account ({conn.account_label}). Each workspace writes its "
        "own email activity to it, so the same conversation can be logged more than once. If that is "
        "not intended, disconnect it here or in the other workspace, or ask Conduit support."
    )
