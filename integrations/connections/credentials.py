"""Connections made with typed credentials instead of OAuth (Odoo): an owner or admin enters the
instance URL, database, login and API key; Conduit checks them with one authenticated call
before anything is stored, then creates or updates the workspace's connection, the key in the
encrypted access_token, audited in the same transaction (`odoo_credentials_saved` /
`odoo_credentials_updated`). Disconnect is the shared `lifecycle.do_disconnect`.

A refusal is `CredentialsRefused`: one sentence per field (`url`, `database`, `login`,
`api_key`, or `""` for the form as a whole) and nothing stored. No message, log line, sync-log
row or audit payload carries the key; the connection keeps only its last four characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from conduit.audit import record_audit
from conduit.models import Membership, Workspace
from conduit.services import ConduitError
from conduit.tenancy import system_scope
from integrations.connections import health_rows as health_state
from integrations.connections.lifecycle import live_connection
from integrations.models import CrmConnection
from integrations.providers import get_provider, pinned
from integrations.providers.base import ExternalAccount
from integrations.providers.errors import (
    AuthRevoked,
    MissingScope,
    ProviderError,
    RateLimited,
    Transient,
)
from integrations.providers.odoo import OdooProvider
from integrations.providers.synclog import CallContext

ODOO = "odoo"
LABELS = {"url": "instance URL", "database": "database name", "login": "login", "api_key": "API key"}
LIMITS = {"url": 300, "database": 63, "login": 254, "api_key": 256}
DATABASE_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")  # Odoo's DBNAME_PATTERN
API_KEY_RE = re.compile(r"[\x21-\x7e]{16,256}")  # one word of printable ASCII (Odoo makes 40 hex digits)
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class CredentialsRefused(ConduitError):
    """The credentials were not saved; `errors` maps each field at fault to one sentence."""

    error_code = "credentials_refused"

    def __init__(self, errors: dict[str, str], *, error_code: str = "credentials_refused") -> None:
        super().__init__(" ".join(errors.values()))
        self.errors = errors
        self.error_code = error_code


class NotWorkspaceAdmin(ConduitError):
    error_code = "not_workspace_admin"


@dataclass(frozen=True)
class OdooCredentials:
    url: str
    database: str
    login: str
    api_key: str = field(repr=False)


def require_admin(workspace: Workspace, actor: AbstractBaseUser) -> None:
    with system_scope():
        membership = Membership.objects.filter(workspace=workspace, user_id=actor.pk).first()
    if membership is None or not membership.administers:
        raise NotWorkspaceAdmin("Only the workspace's owners and admins can connect a CRM.")


def clean_odoo_credentials(
    *, url: str, database: str, login: str, api_key: str
) -> tuple[OdooCredentials, pinned.CheckedUrl]:
    """The fields, trimmed and checked, and the instance URL checked against the SSRF rules
    (parsed, its host resolved once). Raises CredentialsRefused naming every field at fault."""
    values = {
        name: value.strip() if isinstance(value, str) else ""
        for name, value in (("url", url), ("database", database), ("login", login), ("api_key", api_key))
    }
    errors: dict[str, str] = {}
    for name, value in values.items():
        if not value:
            errors[name] = f"Enter the {LABELS[name]}."
        elif len(value) > LIMITS[name]:
            errors[name] = f"The {LABELS[name]} is longer than {LIMITS[name]} characters."
    if "database" not in errors and not DATABASE_RE.fullmatch(values["database"]):
        errors["database"] = (
            "A database name has letters, digits, '_', '.' and '-' only, and starts with a letter or digit."
        )
    if "login" not in errors and CONTROL_RE.search(values["login"]):
        errors["login"] = "The login contains a control character."
    if "api_key" not in errors and not API_KEY_RE.fullmatch(values["api_key"]):
        errors["api_key"] = (
            "An Odoo API key is one word of letters and digits (Odoo shows it once, 40 characters)."
        )
    checked = None
    if "url" not in errors:
        try:
            checked = pinned.check_url(values["url"], provider=ODOO)
        except ProviderError as exc:  # UnsafeUrl, or a name that does not resolve
            errors["url"] = (
                exc.message if exc.code == "unsafe_url" else "Conduit could not resolve this host name."
            )
    if errors or checked is None:
        raise CredentialsRefused(errors)
    return OdooCredentials(values["url"], values["database"], values["login"], values["api_key"]), checked


def refusal_for(exc: ProviderError, creds: OdooCredentials, host: str) -> CredentialsRefused:
    """What the form says when the check call fails (never the key, never a stack trace)."""
    if isinstance(exc, AuthRevoked):
        what = "login and API key" if exc.code == "invalid_credentials" else "API key"
        message = f"Odoo refused this {what}. Check it, and that the key has not expired."
        return CredentialsRefused({"api_key": message}, error_code=exc.code)
    if exc.code == "unknown_database" or (exc.code == "not_found" and exc.http_status == 404):
        message = f"Odoo at {host} has no database named {creds.database!r}."
        return CredentialsRefused({"database": message}, error_code="unknown_database")
    url_errors = {
        "unsafe_url": exc.message,
        "not_odoo": f"The server at {host} did not answer like Odoo. Check the address.",
        "unexpected_redirect": (
            f"{host} answered with a redirect, which Conduit does not follow. Enter the address it "
            "redirects to (the https:// address of the Odoo server)."
        ),
        "dns_error": "Conduit could not resolve this host name.",
        "network_error": f"Conduit could not connect to {host}. Check the address, and that the server is "
        "reachable from the internet.",
    }
    if exc.code in url_errors:
        return CredentialsRefused({"url": url_errors[exc.code]}, error_code=exc.code)
    if isinstance(exc, RateLimited):
        message = "Odoo asked Conduit to slow down. Try again in a minute."
    elif isinstance(exc, MissingScope):
        message = "This Odoo user lacks the access rights the check needs."
    elif isinstance(exc, Transient):
        message = f"{host} did not answer properly ({exc.code}). Try again later."
    else:
        message = f"Odoo refused the check ({exc.code})."
    return CredentialsRefused({"": message}, error_code=exc.code)


def check_odoo_credentials(
    workspace: Workspace, creds: OdooCredentials, checked: pinned.CheckedUrl, connection_id: int | None
) -> ExternalAccount:
    """One authenticated call (after the version question) with the typed credentials."""
    provider = cast(OdooProvider, get_provider(ODOO))
    context = CallContext(workspace_id=workspace.pk, connection_id=connection_id, secrets=(creds.api_key,))
    try:
        return provider.verify_credentials(
            base=checked.origin,
            database=creds.database,
            login=creds.login,
            api_key=creds.api_key,
            context=context,
        )
    except ProviderError as exc:
        raise refusal_for(exc, creds, checked.target.netloc) from None


def do_save_odoo_credentials(
    workspace: Workspace,
    *,
    url: str,
    database: str,
    login: str,
    api_key: str,
    actor: AbstractBaseUser,
    now: Callable[[], datetime] = timezone.now,
) -> CrmConnection:
    """Check the credentials, then connect the workspace to Odoo (or update its connection in
    place), the key encrypted, audited; a refusal stores nothing."""
    require_admin(workspace, actor)
    creds, checked = clean_odoo_credentials(url=url, database=database, login=login, api_key=api_key)
    with system_scope():
        current = live_connection(workspace, ODOO)
    account = check_odoo_credentials(workspace, creds, checked, current.pk if current else None)
    moment = now()
    with system_scope():
        existing = live_connection(workspace, ODOO)  # locked until the audit row is written
        conn = existing or CrmConnection(workspace=workspace, crm=ODOO, dry_run=True)
        previous = (
            {
                "status": existing.status,
                "external_account_key": existing.external_account_key,
                "key_last4": existing.external_account_json.get("key_last4", ""),
            }
            if existing
            else None
        )
        key_last4 = creds.api_key[-4:]
        conn.external_account_key = account.key
        conn.external_account_json = {
            **account.details,
            "key_last4": key_last4,
            "address_check": {"address": str(checked.address), "checked_at": moment.isoformat()},
        }
        conn.granted_scopes = []
        conn.access_token = creds.api_key
        conn.refresh_token = ""
        conn.token_expires_at = None
        conn.status = CrmConnection.Status.CONNECTED
        conn.last_error = ""
        conn.connected_at = conn.last_refreshed_at = moment
        conn.save()
        payload: dict[str, Any] = {
            "crm": ODOO,
            "external_account_key": account.key,
            "url": account.details["url"],
            "database": creds.database,
            "login": creds.login,
            "api": account.details["api"],
            "version": account.details["version"],
            "key_last4": key_last4,
        }
        if previous:
            payload["previous"] = previous
        event = "odoo_credentials_updated" if existing else "odoo_credentials_saved"
        record_audit(event, actor=actor, workspace=workspace, target=conn, payload=payload)
        # the check call just succeeded with these credentials: that is a passing check
        verdict = health_state.Verdict(health_state.Status.OK, "connected")
        health_state.record(conn, verdict, now=moment, actor=actor)
    return conn
