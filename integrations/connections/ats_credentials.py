"""Connections to an ATS (Greenhouse, Lever, Workday) made with typed credentials instead of OAuth:
a workspace admin pastes the provider's credentials (`Provider.credential_fields`); Conduit checks
them with the provider's one cheap authenticated call (`Provider.check_credentials`) before
anything is stored, then creates the workspace's connection or updates it in place, the secrets
encrypted, audited in the same transaction (`integration_credentials_set` /
`integration_credentials_rotated`, never a secret in the payload). A refusal stores nothing, so
the credentials saved before keep working until new ones validate. Disconnect is the shared
`lifecycle.do_disconnect` (Conduit cannot revoke these credentials: it forgets its copy).

A refusal is `CredentialsRefused`: one sentence per field (`""` for the form as a whole). No
message, log line, sync-log row or audit payload carries a secret; the connection keeps only the
last four characters of the secret (`key_last4`) and when the credentials were set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from conduit.audit import record_audit
from conduit.models import Workspace
from conduit.tenancy import system_scope
from integrations.connections import health_rows as health_state
from integrations.connections.credentials import CredentialsRefused, require_admin
from integrations.connections.lifecycle import live_connection
from integrations.models import CrmConnection
from integrations.providers import PROVIDERS, get_provider
from integrations.providers.base import CredentialGrant
from integrations.providers.errors import AuthRevoked, MissingScope, ProviderError, RateLimited, Transient
from integrations.providers.synclog import CallContext


@dataclass(frozen=True)
class FormField:
    """One field of a credentials form: its label, help, and whether it is a secret (a password
    input, never typed back) or optional."""

    name: str
    label: str
    help: str
    secret: bool = False
    required: bool = True
    maxlength: int = 256
    placeholder: str = ""


@dataclass(frozen=True)
class CredentialsForm:
    """What the credentials page of one ATS shows; `refused_field` carries a refusal."""

    intro: str
    fields: tuple[FormField, ...]
    refused_field: str
    refused: str  # the sentence on `refused_field` when the provider refuses the credentials
    revoke_hint: str  # where the customer deletes the credentials Conduit cannot revoke


FORMS: dict[str, CredentialsForm] = {
    "greenhouse": CredentialsForm(
        intro=(
            "Conduit connects to Greenhouse with a Harvest API v3 credential (client credentials). "
            "Before saving anything it asks Greenhouse for a token and checks it with one call."
        ),
        fields=(
            FormField(
                "client_id",
                "Client ID",
                "In Greenhouse: Configure → Dev Center → API Credential Management → Create new API "
                "credential (type Harvest V3). Copy the client ID.",
                maxlength=200,
            ),
            FormField(
                "client_secret",
                "Client secret",
                "Shown once when the credential is created. It needs the candidates and notes permissions.",
                secret=True,
                maxlength=500,
            ),
            FormField(
                "user_id",
                "On behalf of user (optional)",
                "The Greenhouse user id notes are written as (the number at the end of the user's "
                "address). Empty: the credential's service account.",
                required=False,
                maxlength=20,
            ),
        ),
        refused_field="client_secret",
        refused=(
            "Greenhouse refused these credentials. Check the client ID and secret, and that the "
            "credential has not been rotated or deleted."
        ),
        revoke_hint="Configure → Dev Center → API Credential Management",
    ),
    "lever": CredentialsForm(
        intro=(
            "Conduit connects to Lever with an API key. Before saving anything it checks the key "
            "with one call to Lever."
        ),
        fields=(
            FormField(
                "api_key",
                "API key",
                "In Lever (Super Admin): Settings → Integrations and API → API Credentials → Generate "
                "new key, with the opportunities, notes and users permissions.",
                secret=True,
                maxlength=256,
            ),
        ),
        refused_field="api_key",
        refused="Lever refused this API key. Check it, and that it has not been deleted or regenerated.",
        revoke_hint="Settings → Integrations and API → API Credentials",
    ),
    "workday": CredentialsForm(
        intro=(
            "Conduit connects to Workday with an API client for integrations and its refresh token. "
            "Before saving anything it asks your tenant for a token and checks it with one call. "
            "Conduit writes nothing to Workday yet: it checks the connection's health."
        ),
        fields=(
            FormField(
                "host",
                "Workday host",
                "The host of your tenant's REST endpoint (View API Clients → Workday REST API Endpoint), "
                "e.g. wd2-impl-services1.workday.com.",
                maxlength=300,
                placeholder="wd2-impl-services1.workday.com",
            ),
            FormField(
                "tenant",
                "Tenant",
                "The tenant name: the part after /oauth2/ in the token endpoint.",
                maxlength=64,
            ),
            FormField(
                "client_id",
                "Client ID",
                "Register API Client for Integrations (functional area Recruiting), then copy its client ID.",
            ),
            FormField(
                "client_secret",
                "Client secret",
                "Shown once when the API client is registered.",
                secret=True,
                maxlength=512,
            ),
            FormField(
                "refresh_token",
                "Refresh token",
                "Manage Refresh Tokens for Integrations → Generate New Refresh Token for the "
                "integration system user.",
                secret=True,
                maxlength=2048,
            ),
        ),
        refused_field="client_secret",
        refused=(
            "Workday refused these credentials. Check the client ID, client secret and refresh token, "
            "and that the refresh token has not been revoked or regenerated."
        ),
        revoke_hint="View API Clients → Manage Refresh Tokens for Integrations",
    ),
}


def ats_providers() -> list[str]:
    """The providers connected by this form (the ATS), in registration order."""
    return [name for name in PROVIDERS if name in FORMS]


def form_for(crm: str) -> CredentialsForm:
    return FORMS[crm]


def secret_values(crm: str, fields: Mapping[str, str]) -> tuple[str, ...]:
    """The typed secrets, for the sync-log scrubber (never logged, never shown)."""
    return tuple(fields[f.name] for f in form_for(crm).fields if f.secret and fields.get(f.name))


def clean_fields(crm: str, fields: Mapping[str, Any]) -> dict[str, str]:
    """Every field of the form, a stripped string ("" when missing or not a string)."""
    return {
        f.name: value.strip() if isinstance(value := fields.get(f.name), str) else ""
        for f in form_for(crm).fields
    }


def field_named_in(crm: str, sentence: str) -> str:
    """The field a provider's ValueError sentence names (its label, the longest that matches),
    or "" for the form as a whole."""
    lowered = sentence.lower()
    labels = {f.name: f.name.replace("_", " ") for f in form_for(crm).fields}
    matching = [(len(label), name) for name, label in labels.items() if label in lowered]
    return max(matching)[1] if matching else ""


def refusal_for(crm: str, exc: ProviderError) -> CredentialsRefused:
    """What the form says when the check call fails (never a secret, never a stack trace)."""
    form = form_for(crm)
    label = get_provider(crm).label
    if isinstance(exc, AuthRevoked):
        return CredentialsRefused({form.refused_field: form.refused}, error_code="credentials_invalid")
    if isinstance(exc, MissingScope):
        missing = ", ".join(exc.missing) or "the permissions Conduit needs"
        message = (
            f"These {label} credentials lack a permission Conduit needs: {missing}. Grant it and try again."
        )
        return CredentialsRefused({form.refused_field: message}, error_code="missing_scope")
    if exc.code == "unknown_tenant":
        message = f"{label} has no tenant by this name at this host. Check the tenant name."
        return CredentialsRefused({"tenant": message}, error_code="unknown_tenant")
    if isinstance(exc, RateLimited):
        message = f"{label} asked Conduit to slow down. Try again in a minute."
    elif isinstance(exc, Transient):
        message = f"{label} did not answer properly ({exc.code}). Nothing was saved; try again later."
    else:
        message = f"{label} refused the check ({exc.code})."
    return CredentialsRefused({"": message}, error_code=exc.code)


def check_fields(
    workspace: Workspace, crm: str, values: dict[str, str], connection_id: int | None
) -> CredentialGrant:
    """The provider's check call with the typed credentials; nothing is stored."""
    context = CallContext(
        workspace_id=workspace.pk, connection_id=connection_id, secrets=secret_values(crm, values)
    )
    try:
        return get_provider(crm).check_credentials(values, context=context)
    except ValueError as exc:
        sentence = str(exc)
        raise CredentialsRefused(
            {field_named_in(crm, sentence): sentence}, error_code="invalid_field"
        ) from None
    except ProviderError as exc:
        raise refusal_for(crm, exc) from None


def store_grant(conn: CrmConnection, grant: CredentialGrant, moment: datetime) -> None:
    """The connection holds the grant: tokens encrypted (EncryptedTextField), the account's
    non-secret facts, the secret's last 4 characters and when it was set; connected, no error."""
    tokens = grant.tokens
    conn.external_account_key = grant.account.key
    conn.external_account_json = {
        **grant.account.details,
        "instance_url": tokens.instance_url,
        "key_last4": grant.last4,
        "credentials_set_at": moment.isoformat(),
    }
    conn.granted_scopes = list(grant.account.scopes or tokens.scopes)
    conn.access_token = tokens.access_token
    conn.refresh_token = tokens.refresh_token or ""
    conn.token_expires_at = tokens.expires_at
    conn.status = CrmConnection.Status.CONNECTED
    conn.last_error = ""
    conn.connected_at = conn.last_refreshed_at = moment
    conn.save()


def do_save_ats_credentials(
    workspace: Workspace,
    crm: str,
    fields: Mapping[str, Any],
    *,
    actor: AbstractBaseUser,
    now: Callable[[], datetime] = timezone.now,
) -> CrmConnection:
    """Check the credentials, then connect the workspace to the ATS (or update its connection in
    place), audited; a refusal stores nothing and leaves the saved credentials as they were."""
    if crm not in FORMS:
        raise ValueError(f"{crm!r} is not connected with a credentials form")
    require_admin(workspace, actor)
    values = clean_fields(crm, fields)
    with system_scope():
        current = live_connection(workspace, crm)
    grant = check_fields(workspace, crm, values, current.pk if current else None)
    moment = now()
    with system_scope():
        existing = live_connection(workspace, crm)  # locked until the audit row is written
        conn = existing or CrmConnection(workspace=workspace, crm=crm, dry_run=True)
        previous = (
            {
                "status": existing.status,
                "external_account_key": existing.external_account_key,
                "key_last4": str(existing.external_account_json.get("key_last4") or ""),
            }
            if existing
            else None
        )
        store_grant(conn, grant, moment)
        payload: dict[str, Any] = {
            "crm": crm,
            "external_account_key": grant.account.key,
            "key_last4": grant.last4,
        }
        if previous:
            payload["previous"] = previous
        event = "integration_credentials_rotated" if existing else "integration_credentials_set"
        record_audit(event, actor=actor, workspace=workspace, target=conn, payload=payload)
        # the check call just succeeded with these credentials: that is a passing check
        health_state.record(
            conn, health_state.Verdict(health_state.Status.OK, "connected"), now=moment, actor=actor
        )
    return conn
